"""Passwords given to the CLI: from exactly one of ``--password-stdin`` (first line of standard
input; asked without echo on a terminal), ``--password-file FILE`` (its first line) or an
environment variable — never from a command-line argument, which other users can read."""

from __future__ import annotations

import argparse
import getpass
import os
import stat
import sys
from pathlib import Path

from appliance.errors import BadInputError, NotFoundError, UsageError

PASSWORD_ENV = "VMKEEP_VSPHERE_PASSWORD"


def _warn(message: str) -> None:
    print(f"vmkeep: warning: {message}", file=sys.stderr)


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else ""


def _password_from_file(name: str) -> str:
    path = Path(name)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise NotFoundError(f"password file {name} does not exist; name an existing file "
                            "whose first line is the password") from None
    except OSError as exc:
        raise UsageError(f"password file {name} is unreadable ({exc.strerror}); name a "
                         "readable file whose first line is the password") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInputError(f"password file {name} is not UTF-8 text; write the password as "
                            "its first line") from None
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        _warn(f"password file {name} can be read by other users; "
                       f"`chmod 600 {name}` it")
    return _first_line(text)


def _password_from_stdin(what: str) -> str:
    if sys.stdin is None:
        raise UsageError("--password-stdin: there is no standard input; pipe the password in "
                         "or use --password-file")
    if sys.stdin.isatty():
        return getpass.getpass(f"{what}: ", stream=sys.stderr)
    return sys.stdin.readline().rstrip("\r\n")


def read_password(args: argparse.Namespace, env_name: str = PASSWORD_ENV,
                  what: str = "vSphere password") -> str:
    """The password from exactly one of --password-stdin, --password-file, the environment."""
    env = os.environ.get(env_name)
    # The options' own names (--vcenter-password-stdin …) where the parser gave them; a
    # spelling the user typed (an alias such as --password-stdin) as typed.
    stdin_flag, file_flag = getattr(args, "password_flags",
                                    ("--password-stdin", "--password-file"))
    sources = [name for name, given in (
        (getattr(args, "password_stdin_flag", None) or stdin_flag, args.password_stdin),
        (getattr(args, "password_file_flag", None) or file_flag,
         args.password_file is not None),
        (env_name, bool(env))) if given]
    if not sources:
        raise UsageError(f"no {what} given; pass {stdin_flag} (first line of "
                         f"standard input) or {file_flag} FILE, or set {env_name}")
    if len(sources) > 1:
        raise UsageError(f"the {what} is given by both {' and '.join(sources)}; "
                         f"use exactly one (unset {env_name} to use an option)")
    if args.password_stdin:
        password, where = _password_from_stdin(what), "standard input"
    elif args.password_file is not None:
        password, where = _password_from_file(args.password_file), args.password_file
    else:
        password, where = env or "", env_name
    if not password:
        raise UsageError(f"the {what} from {where} is empty; give the password as "
                         "its first line")
    return password


def optional_password(args: argparse.Namespace, env_name: str, what: str) -> str | None:
    """Like ``read_password``, but None when no source is given at all. Honours
    ``--ssh-password-file`` where a command has it instead of the usual two options."""
    if getattr(args, "ssh_password_file", None):
        return _password_from_file(args.ssh_password_file)
    given = (getattr(args, "password_stdin", False)
             or getattr(args, "password_file", None) is not None
             or bool(os.environ.get(env_name)))
    if not given:
        return None
    if not hasattr(args, "password_stdin"):
        return os.environ.get(env_name) or None
    return read_password(args, env_name, what)


def password_from_file(name: str) -> str:
    """The first line of ``name`` (warning when others can read it)."""
    return _password_from_file(name)
