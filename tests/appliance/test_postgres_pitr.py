"""PostgreSQL: a base backup held open across the snapshot, WAL collected by a log backup job,
and a point-in-time restore replayed by a fresh PostgreSQL — against a real PostgreSQL (Debian's,
run as the ``postgres`` user, data folder under /var/tmp, a free port) in a "guest" that a real
sshd plays, and vcsim's VM.

How the guest's data folder gets onto the VM's disk (the hypervisor's part, played by the
test): the job's pre-freeze script, which vmkeep runs after ``pg_backup_start``, asks the test
(a request file) to copy the live data folder into an ext4 image (``mke2fs -d``) written over
the VM's disk file, and waits until that is done; then vmkeep takes the snapshot and ends the
backup mode, keeping the backup label with the point. On restore the disk comes back from the
vmkeep point, the data folder out of it with ``debugfs rdump``, and the WAL from the vmkeep
repository: the guest's own archive is emptied first.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.appliance.lab import VM, Lab
from tests.helpers import poll, skip_unless_ci
from tests.sshd import Sshd

DISK = 128 << 20


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        skip_unless_ci("PostgreSQL is not installed (scripts/system-packages.txt)")
    return found[-1].parent


def _as_postgres(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups",
                           "--", *cmd], capture_output=True, text=True, timeout=120)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Postgres:
    def __init__(self, base: Path, data: Path, port: int) -> None:
        self.base, self.data, self.port = base, data, port

    def sql(self, query: str) -> str:
        r = subprocess.run(["psql", "-X", "-A", "-t", "-h", "127.0.0.1", "-p", str(self.port),
                            "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c",
                            query], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    def start(self, extra: str = "") -> None:
        r = _as_postgres(str(_pg_bin() / "pg_ctl"), "-D", str(self.data), "-l",
                         str(self.base / f"log-{self.port}"), "-w", "-t", "120", "-o",
                         f"-p {self.port} -k {self.base} {extra}", "start")
        assert r.returncode == 0, r.stdout + r.stderr + _log(self.base, self.port)

    def stop(self) -> None:
        _as_postgres(str(_pg_bin() / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")


def _log(base: Path, port: int) -> str:
    path = base / f"log-{port}"
    return path.read_text() if path.exists() else ""


@pytest.fixture
def pg() -> Iterator[Postgres]:
    bin_dir = _pg_bin()
    base = Path(tempfile.mkdtemp(prefix="vmkeep-pg-", dir="/var/tmp"))
    base.chmod(0o755)
    shutil.chown(base, "postgres", "postgres")
    archive = base / "archive"
    archive.mkdir()
    archive.chmod(0o777)  # postgres writes, the guest account collects and removes
    data = base / "data"
    r = _as_postgres(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
    assert r.returncode == 0, r.stderr
    with (data / "postgresql.conf").open("a") as f:
        f.write(f"listen_addresses = '127.0.0.1'\nwal_level = replica\narchive_mode = on\n"
                f"archive_command = 'install -m 0644 %p {archive}/%f'\n")
    server = Postgres(base, data, _free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def _hypervisor(lab: Lab, pg: Postgres, mailbox: Path, stop: threading.Event) -> None:
    """Copies the data folder onto the VM's disk when the pre-freeze script asks."""
    request, done = mailbox / "request", mailbox / "done"
    while not stop.is_set():
        if request.exists():
            image = mailbox / "disk.img"
            r = subprocess.run(["mke2fs", "-q", "-t", "ext4", "-d", str(pg.data), "-F",
                                str(image), f"{DISK >> 20}M"], capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
            with image.open("rb") as src, lab.flat().open("r+b") as dst:
                shutil.copyfileobj(src, dst)
            request.unlink()
            done.write_text("ok")
            os.chmod(done, 0o644)
        time.sleep(0.05)


def _wait(what: str, check: Any, timeout: float = 60) -> Any:
    return poll(what, check, timeout, every=0.1)


def test_point_in_time_restore_from_vmkeep_alone(lab: Lab, sshd: Sshd, pg: Postgres) -> None:
    lab.grow(DISK)
    mailbox = sshd.owned_folder(f"mailbox-{lab.tmp.name}")
    pre = lab.tmp / "pre-freeze.sh"
    pre.write_text(f"#!/bin/sh\ntouch {mailbox}/request\n"
                   f"for i in $(seq 600); do [ -f {mailbox}/done ] && exit 0; sleep 0.1; done\n"
                   "exit 1\n")
    stop = threading.Event()
    copier = threading.Thread(target=_hypervisor, args=(lab, pg, mailbox, stop), daemon=True)
    copier.start()
    login = ["--guest-host", f"127.0.0.1:{sshd.port}", "--guest-user", sshd.user,
             "--guest-key", str(sshd.key_file), "--guest-host-key-fingerprint",
             sshd.fingerprint]
    archive = pg.base / "archive"
    try:
        pg.sql("CREATE TABLE t (n int)")
        pg.sql("INSERT INTO t VALUES (1)")
        r = lab.vmkeep("job", "create", "db", "--vcenter", "vc", "--vm", VM, "--repo", "main",
                       "--enable-cbt", "--retries", "0", *login, "--pre-freeze", str(pre),
                       "--postgres", f"127.0.0.1:{pg.port}:postgres")
        assert r.code == 0, r.err
        r = lab.vmkeep("job", "run", "db", "--wait")
        assert r.code == 0, r.err
        image_point = json.loads(lab.vmkeep("points", "list", "--json").out)[-1]
        assert "START WAL LOCATION" in image_point["guest_processing"]["postgres"][
            "backup_label"]
        r = lab.vmkeep("job", "create", "wal", "--logs-of", VM, *login, "--log-folder",
                       str(archive), "--log-settle", "1s", "--repo", "main")
        assert r.code == 0, r.err

        # Rows go in over time while the WAL backup job collects.
        pg.sql("INSERT INTO t VALUES (2)")
        between = pg.sql("SELECT clock_timestamp()")
        pg.sql("INSERT INTO t VALUES (3)")
        segment = pg.sql("SELECT pg_walfile_name(pg_current_wal_lsn())")
        pg.sql("SELECT pg_switch_wal()")
        _wait("the segment to be archived", lambda: (archive / segment).exists())
        newest = time.time()
        _wait("the archive to settle", lambda: time.time() - newest > 1.2)
        assert lab.vmkeep("job", "run", "wal", "--wait").code == 0
        for f in archive.iterdir():  # the guest's own archive is gone
            f.unlink()
        pg.stop()

        # Restore: the disk from vmkeep, the data folder out of it, the WAL from vmkeep.
        disk = lab.tmp / "restored.img"
        r = lab.vmkeep("restore", "disk", image_point["id"], "--disk", "0", "--to", str(disk))
        assert r.code == 0, r.err
        restored = pg.base / "restored"
        restored.mkdir()
        r2 = subprocess.run(["debugfs", "-R", f"rdump / {restored}", str(disk)],
                            capture_output=True, text=True)
        assert r2.returncode == 0, r2.stderr
        shutil.rmtree(restored / "lost+found", ignore_errors=True)
        r = lab.vmkeep("restore", "postgres", image_point["id"], "--data-dir", str(restored),
                       "--until", between)
        assert r.code == 0, r.err
        # a restore session, as the disk's: the WAL files' bytes, then what was done
        s = json.loads(lab.vmkeep("session", "list", "--kind", "restore", "--json").out)[-1]
        assert (s["job"], s["result"]) == (f"restore {VM} postgres", "success"), s
        shown = json.loads(lab.vmkeep("session", "show", s["id"], "--json").out)
        wal = shown["tasks"][0]
        assert wal["name"] == f"{VM} · WAL" and wal["bytes_done"] == wal["bytes_total"] > 0
        assert "WAL file(s)" in shown["outcome"]["message"] and "vmkeep-wal" in r.err
        subprocess.run(["chown", "-R", "postgres:postgres", str(restored)], check=True)
        restored.chmod(0o700)
        fresh = Postgres(pg.base, restored, _free_port())
        fresh.start("-c archive_mode=off")
        try:
            _wait("recovery to end",
                  lambda: fresh.sql("SELECT pg_is_in_recovery()") == "f", timeout=120)
            assert fresh.sql("SELECT string_agg(n::text, ',' ORDER BY n) FROM t") == "1,2"
        finally:
            fresh.stop()
    finally:
        stop.set()
        copier.join(timeout=10)


def test_a_failing_archive_command_is_a_warning_and_loses_nothing(lab: Lab, sshd: Sshd,
                                                                  pg: Postgres) -> None:
    """PostgreSQL not archiving (its archive_command fails): the log backup job says so in
    the session (a warning) and removes nothing."""
    archive = pg.base / "archive"
    pg.sql("CREATE TABLE t (n int)")
    pg.sql("INSERT INTO t VALUES (1)")
    pg.sql("SELECT pg_switch_wal()")
    _wait("a first segment to be archived", lambda: list(archive.iterdir()))
    kept = sorted(p.name for p in archive.iterdir())
    pg.sql("ALTER SYSTEM SET archive_command = 'false'")
    pg.sql("SELECT pg_reload_conf()")
    pg.sql("INSERT INTO t VALUES (2)")
    pg.sql("SELECT pg_switch_wal()")
    _wait("the archiver to fail",
          lambda: int(pg.sql("SELECT failed_count FROM pg_stat_archiver")) > 0)
    r = lab.vmkeep("job", "create", "wal", "--logs-of", VM, "--guest-host",
                   f"127.0.0.1:{sshd.port}", "--guest-user", sshd.user, "--guest-key",
                   str(sshd.key_file), "--guest-host-key-fingerprint", sshd.fingerprint,
                   "--postgres", f"127.0.0.1:{pg.port}:postgres", "--log-folder", str(archive),
                   "--log-settle", "1s", "--repo", "main")
    assert r.code == 0, r.err
    r = lab.vmkeep("job", "run", "wal", "--wait")
    assert r.code == 1, r  # a warning
    log = json.loads(lab.vmkeep("session", "show", r.out.strip(), "--json").out)["log"]
    assert any("archive_command is failing" in x["message"] and x["level"] == "warning"
               for x in log), log
    stored = json.loads(lab.vmkeep("points", "list", "--json").out)
    assert sorted(d["label"] for p in stored for d in p["disks"]) == kept  # what was there
