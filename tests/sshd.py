"""A real OpenSSH server on 127.0.0.1 for the tests: throwaway host and user keys, a non-root
account (``vmkeep-sftp``, made when missing; root is needed for that and for sshd), stopped by
PID. Folders the account owns live under /var/tmp (the pytest temporary folders are private
to root, so the account could not reach them)."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import poll, skip_unless_ci

USER = "vmkeep-sftp"
PASSWORD = "sftp-test-password-7431"
SSHD = "/usr/sbin/sshd"


@dataclass
class Sshd:
    host: str
    port: int
    user: str
    password: str
    key_file: Path  # the account's private key (ed25519, no passphrase)
    host_key: Path  # the server's private host key
    fingerprint: str  # of the host key, as ssh-keygen -l -E sha256 prints it
    base: Path  # a folder the account owns, for its repositories
    proc: subprocess.Popen[bytes]
    config: Path

    def url(self, name: str) -> str:
        return f"sftp://{self.user}@{self.host}:{self.port}{self.base}/{name}"

    def owned_folder(self, name: str) -> Path:
        """A new empty folder of the account's under ``base``."""
        path = self.base / name
        path.mkdir()
        os.chown(path, *self.ids())
        return path

    def ids(self) -> tuple[int, int]:
        u = pwd.getpwnam(self.user)
        return u.pw_uid, u.pw_gid

    def run_as_user(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        """A command as the account, the way the appliance's SSH login would run it."""
        return subprocess.run(["setpriv", f"--reuid={self.user}", f"--regid={self.user}",
                               "--init-groups", "--", *cmd], capture_output=True, text=True,
                              timeout=60)

    def new_host_key(self) -> str:
        """Replace the server's host key (a reinstalled host) and restart; its fingerprint."""
        self.stop()
        for p in (self.host_key, self.host_key.with_suffix(".pub")):
            p.unlink(missing_ok=True)
        self.fingerprint = _keygen(self.host_key)
        self.proc = _start(self.config, self.port)
        return self.fingerprint

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
                   check=True, capture_output=True)
    out = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", f"{path}.pub"],
                         check=True, capture_output=True, text=True).stdout
    return out.split()[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(config: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)

    def answers() -> bool:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise AssertionError(f"sshd did not start: {err}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                return s.recv(4).startswith(b"SSH-")
        except OSError:
            return False

    try:
        poll("sshd to answer", answers, 30, every=0.05)
    except BaseException:
        proc.kill()
        raise
    return proc


def _ensure_user() -> None:
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", USER], check=True,
                       capture_output=True)
    subprocess.run(["chpasswd"], input=f"{USER}:{PASSWORD}", text=True, check=True,
                   capture_output=True)


def start_sshd() -> Sshd:
    if os.geteuid() != 0 or not os.path.exists(SSHD):
        skip_unless_ci("needs root and openssh-server (scripts/system-packages.txt; `make test` "
                    "installs them)")
    _ensure_user()
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation
    etc = Path(tempfile.mkdtemp(prefix="vmkeep-sshd-"))
    host_key = etc / "host_ed25519"
    fingerprint = _keygen(host_key)
    user_key = etc / "user_ed25519"
    _keygen(user_key)
    keys = etc / "authorized_keys"
    keys.write_text(Path(f"{user_key}.pub").read_text())
    keys.chmod(0o644)
    etc.chmod(0o755)
    base = Path(tempfile.mkdtemp(prefix="vmkeep-sftp-", dir="/var/tmp"))
    base.chmod(0o755)
    account = pwd.getpwnam(USER)
    os.chown(base, account.pw_uid, account.pw_gid)
    port = _free_port()
    config = etc / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile none\n"
        f"AuthorizedKeysFile {keys}\nStrictModes no\nUsePAM no\n"
        "PasswordAuthentication yes\nKbdInteractiveAuthentication no\n"
        f"AllowUsers {USER}\nSubsystem sftp internal-sftp\nLogLevel ERROR\n"
        "MaxSessions 64\nMaxStartups 64\n")
    proc = _start(config, port)
    return Sshd("127.0.0.1", port, USER, PASSWORD, user_key, host_key, fingerprint, base, proc,
                config)


def stop_sshd(sshd: Sshd) -> None:
    sshd.stop()
    shutil.rmtree(sshd.host_key.parent, ignore_errors=True)
    subprocess.run(["chattr", "-R", "-i", str(sshd.base)], capture_output=True)
    shutil.rmtree(sshd.base, ignore_errors=True)
