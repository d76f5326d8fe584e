"""What the ``vmkeep`` command groups share in their parsers: the parser class (a usage
error is one line and exit 2), argument types that check a value as the API does
(``appliance.inputs``), and the option sets several groups take (passwords, certificate pins,
vSphere connections, repositories, schedules)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import TypeAlias

from appliance import inputs
from appliance.errors import UsageError

RAW = argparse.RawDescriptionHelpFormatter

class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        commands = self.commands()
        if commands and message.startswith("the following arguments are required"):
            # `vmkeep job` alone: name the commands rather than the parser's inner `dest`.
            message = f"give a command: {', '.join(commands)}"
        raise UsageError(f"{self.prog}: {message}; see `{self.prog} --help`")

    def commands(self) -> list[str]:
        """The names of this parser's subcommands (none for a command's own parser)."""
        return [name for action in self._actions
                if isinstance(action, argparse._SubParsersAction) for name in action.choices]


def installed_version() -> str:
    """vmkeep's version: the installed package's metadata, else (a source tree run with
    ``python -m appliance.cli``) pyproject.toml's."""
    from importlib import metadata

    try:
        return metadata.version("vmkeep")
    except metadata.PackageNotFoundError:
        import tomllib
        from pathlib import Path

        try:
            pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
            return str(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["version"])
        except (OSError, ValueError, KeyError):
            return "unknown"


class VersionOption(argparse.Action):
    """``--version``: prints ``vmkeep VERSION`` and exits 0 (the version is looked up only
    then, so building the parser stays cheap)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        print(f"vmkeep {installed_version()}")
        parser.exit()


# What ``add_subparsers`` returns: each group's ``add_parser(sub)`` adds itself to it.
Subparsers: TypeAlias = "argparse._SubParsersAction[Parser]"


def whole(low: int, high: int) -> Callable[[str], int]:
    """An argument type: a whole number from ``low`` to ``high``."""

    def whole_number(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a whole number; give {low} to {high}") from None
        problem = inputs.count_problem(value, low=low, high=high)
        if problem:
            raise argparse.ArgumentTypeError(f"{text!r} {problem}")
        return value

    return whole_number


def number(low: float, high: float, *, low_open: bool = False) -> Callable[[str], float]:
    """An argument type: a finite number from ``low`` (excluded with ``low_open``) to
    ``high``; NaN and infinity are refused."""

    def number(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        problem = inputs.number_problem(value, low=low, high=high, low_open=low_open)
        if problem:
            raise argparse.ArgumentTypeError(f"{text!r} {problem}")
        return value

    return number


SECONDS = number(0.0, inputs.SECONDS_MAX)  # seconds to wait: 0 … a week
DAYS = number(0.0, inputs.DAYS_MAX, low_open=True)  # retention days: (0, 36500]
KEEP_LAST = whole(1, inputs.COUNT_MAX)
THREADS = whole(1, 256)


def _checked(problem_of: Callable[[str], str | None], doc: str) -> Callable[[str], str]:
    """An argument type that refuses a value ``problem_of`` finds a problem with, naming the
    value and the problem."""
    def check(text: str) -> str:
        problem = problem_of(text)
        if problem:
            raise argparse.ArgumentTypeError(f"{text!r} {problem}")
        return text

    check.__doc__ = doc
    return check


def _folder_problem(text: str) -> str | None:
    if text.startswith("sftp://"):
        return inputs.text_problem(text, limit=inputs.PATH_MAX)
    return inputs.path_problem(text, absolute=False)


name_arg = _checked(inputs.name_problem, "A name the administrator gives (a vCenter, "
                    "repository, job, image or new VM): printable, one line, 1 to 80 "
                    "characters.")


def _repo_name_problem(text: str) -> str | None:
    problem = inputs.name_problem(text)
    return (f"{problem}: --repo takes a repository's NAME here (`vmkeep repo list`); a folder "
            "is for `vmkeep image … --repo DIR`") if problem else None


repo_name_arg = _checked(_repo_name_problem, "A repository's name in the appliance (as "
                         "``name_arg``); the message says a folder is for ``vmkeep image``.")
vm_name_arg = _checked(inputs.vm_name_problem, "A new VM's name (as ``name_arg``; slashes "
                       "allowed).")
text_arg = _checked(inputs.text_problem, "One line of text that names something (a VM, a "
                    "point, a path in the inventory): no control characters.")
folder_arg = _checked(_folder_problem, "A local folder or file (relative to the current "
                      "folder) that is not a system folder, or an sftp:// URL.")
read_path_arg = _checked(inputs.read_path_problem, "A local path that is only read.")


def port_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)")
    return value


class NoPasswordOption(argparse.Action):
    """``--password``: refused without echoing its value (a password must not be an argument)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        raise UsageError(f"{parser.prog}: there is no {option_string} option: other users of "
                         "this machine can read command lines; give the password with "
                         "--password-stdin, --password-file FILE or VMKEEP_VSPHERE_PASSWORD")


class _Spelled(argparse.Action):
    """Stores the value (``flag=True``: ``True``) and, in ``DEST_flag``, the option string the
    user typed, so a message names the spelling that was given (an alias or the full name)."""

    def __init__(self, option_strings: list[str], dest: str, flag: bool = False,
                 **kwargs: object) -> None:
        self.flag = flag
        if flag:
            kwargs.update(nargs=0, default=False)
        super().__init__(option_strings, dest, **kwargs)  # type: ignore[arg-type]

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        setattr(namespace, self.dest, True if self.flag else values)
        setattr(namespace, f"{self.dest}_flag", option_string)


# Each secret's own options (docs/CLI.md, Grammar): --SECRET-password-stdin / -file, with the
# environment variable that can give it instead; --password-stdin / --password-file stay as
# aliases of whichever secret the command reads.
SECRETS: dict[str, tuple[str, str]] = {
    "vcenter": ("the vCenter (or ESXi) password", "VMKEEP_VSPHERE_PASSWORD"),
    "ssh": ("the SSH password (or the key's passphrase)", "VMKEEP_SSH_PASSWORD"),
    "config": ("the configuration backup password", "VMKEEP_CONFIG_PASSWORD"),
}


def network_pair(text: str) -> tuple[str, str]:
    """``FROM=TO`` of ``--network``: an original network's name and the network at the new
    VM's placement its NICs go on instead."""
    source, sep, target = text.partition("=")
    if not sep or not source.strip() or not target.strip():
        raise argparse.ArgumentTypeError(
            f"{text!r} is not FROM=TO: give the original network's name, '=', and the "
            "network at the new VM's placement, e.g. --network 'VM Network=isolated'")
    return source.strip(), target.strip()


def add_network_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--network", action="append", type=network_pair, default=[],
                   metavar="FROM=TO",
                   help="new VM: put the NICs of the original network FROM on the network TO "
                   "at the placement (repeat for several; default: each NIC's own network, as "
                   "far as it is there)")


def add_password_options(p: argparse.ArgumentParser | argparse._ArgumentGroup, *,
                         secret: str = "vcenter") -> None:
    """``--SECRET-password-stdin`` / ``--SECRET-password-file`` (aliases ``--password-stdin``
    / ``--password-file``; or the secret's environment variable); a plain ``--password`` is
    refused without echoing its value (``appliance.password.read_password`` reads them)."""
    what, env = SECRETS[secret]
    g = p.add_mutually_exclusive_group()
    g.add_argument(f"--{secret}-password-stdin", "--password-stdin", dest="password_stdin",
                   action=_Spelled, flag=True,
                   help=f"{what}: the first line of standard input")
    g.add_argument(f"--{secret}-password-file", "--password-file", dest="password_file",
                   action=_Spelled, metavar="FILE",
                   help=f"{what}: the first line of FILE (or set {env})")
    p.set_defaults(password_flags=(f"--{secret}-password-stdin", f"--{secret}-password-file"))
    p.add_argument("--password", nargs="?", action=NoPasswordOption, help=argparse.SUPPRESS)


def add_json_option(p: argparse.ArgumentParser, what: str = "a JSON object") -> None:
    """``--json``: the command prints its result as JSON on stdout (docs/CLI.md, Grammar)."""
    p.add_argument("--json", action="store_true", help=f"print the result as {what}")


def add_pin_options(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    pin = p.add_mutually_exclusive_group()
    pin.add_argument("--fingerprint", metavar="SHA256HEX",
                     help="the server certificate's SHA-256 fingerprint to pin (colons "
                     "optional; `vmkeep vsphere fingerprint` shows it)")
    pin.add_argument("--insecure", action="store_true",
                     help="do not verify the server's certificate at all")


def add_connection_options(p: argparse.ArgumentParser, *, login: bool = True) -> None:
    """The options every ``vmkeep vsphere`` command that talks to vSphere takes.

    ``login=False``: only where the server is (``--host``, ``--port``).
    """
    conn = p.add_argument_group("vSphere connection")
    conn.add_argument("--host", required=True, help="vCenter or ESXi host name or address")
    conn.add_argument("--port", type=port_arg, default=443, help="HTTPS port (default 443)")
    if not login:
        return
    conn.add_argument("--user", required=True, help="user name, e.g. backup@vsphere.local")
    add_password_options(conn)
    add_pin_options(conn)
    p.add_argument("-v", "--verbose", action="store_true",
                   help="also print informational log lines on stderr")


def add_ssh_login(p: argparse.ArgumentParser, *, password_options: bool = True) -> None:
    """--ssh-key, --host-key-fingerprint and the SSH password: --ssh-password-stdin /
    --ssh-password-file (aliases --password-stdin / --password-file), or only
    --ssh-password-file where those aliases already give another password."""
    ssh = p.add_argument_group("SSH repositories (sftp://…)")
    ssh.add_argument("--ssh-key", metavar="FILE", help="private key to log in with")
    ssh.add_argument("--host-key-fingerprint", metavar="SHA256:…",
                     help="the host key as `ssh-keygen -l -E sha256` prints it; without it the "
                     "key is shown and, on a terminal, asked about")
    if password_options:
        add_password_options(ssh, secret="ssh")
    else:
        ssh.add_argument("--ssh-password-file", metavar="FILE",
                         help="the SSH password (or the key's passphrase) from the first line "
                         "of FILE (or set VMKEEP_SSH_PASSWORD)")


def add_repository_options(p: argparse.ArgumentParser, *, ssh_password: bool = True) -> None:
    """``--repo`` (a folder or sftp://USER@HOST[:PORT]/PATH) with its SSH login options.
    ``ssh_password``: the SSH password may come by --password-stdin / --password-file (not
    where those already give another password: then --ssh-password-file)."""
    p.add_argument("--repo", required=True, metavar="DIR|URL", type=folder_arg,
                   help="repository folder, or sftp://USER@HOST[:PORT]/ABSOLUTE/PATH")
    p.add_argument("--lock-wait", type=SECONDS, default=60.0, metavar="SECONDS",
                   help="how long to wait for a conflicting lock (default 60)")
    add_ssh_login(p, password_options=ssh_password)
    p.add_argument("--encryption-password-file", metavar="FILE",
                   help="the repository's encryption password, first line of FILE (or set "
                   "VMKEEP_ENCRYPTION_PASSWORD): opens an encrypted repository, and makes a "
                   "new repository encrypted")


def add_schedule_options(p: argparse.ArgumentParser) -> None:
    when = p.add_argument_group("schedule (one of --daily, --monthly, --every, --after)")
    kind = when.add_mutually_exclusive_group()
    kind.add_argument("--daily", metavar="HH:MM", help="every day at this time (see --days)")
    kind.add_argument("--monthly", metavar="HH:MM",
                      help="monthly at this time, with --day N or --nth … --weekday …")
    kind.add_argument("--every", metavar="PERIOD", help="periodically: 90s, 30m, 2h")
    kind.add_argument("--after", metavar="JOB", help="when that job's session ends (chained)")
    when.add_argument("--days", metavar="DAYS", help="with --daily: weekdays, or mon,wed,fri")
    when.add_argument("--day", type=int, metavar="N", help="with --monthly: day of month, "
                      "-1 = the last")
    when.add_argument("--nth", choices=("first", "second", "third", "fourth", "last"),
                      help="with --monthly and --weekday: which one in the month")
    when.add_argument("--weekday", metavar="DAY", help="with --nth: mon … sun")
    when.add_argument("--tz", default="UTC", help="IANA time zone of the times (default UTC)")
    when.add_argument("--window", action="append", default=[], metavar="HH:MM-HH:MM",
                      help="backup window: when scheduled runs may run (repeatable); a run "
                      "still going when it closes stops cleanly")
