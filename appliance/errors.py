"""One error family for vmkeep. Each class carries its exit code and a machine code.

An error's message says what was wrong and what to do; it never renders itself with a
traceback. The CLI prints ``str(error)`` on one stderr line and exits with ``error.exit_code``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias


@dataclass(frozen=True, slots=True)
class PinDetail:
    """The server presented this identity and none was pinned: the administrator checks it
    and pins it by sending it in the API field ``field``."""

    fingerprint: str  # as the pin takes it: AB:CD:… (vCenter) or SHA256:… (SSH host)
    what: Literal["vcenter", "ssh_host"]
    field: str  # the API field that pins it: "fingerprint", "host_key_fingerprint"


@dataclass(frozen=True, slots=True)
class ConfirmDetail:
    """What a request would do that cannot be undone: shown to the administrator, who
    confirms it by sending the API field ``field`` as true."""

    plan: tuple[str, ...]  # one line per thing done
    field: str  # e.g. "confirm"


ErrorDetail: TypeAlias = PinDetail | ConfirmDetail


class VmkeepError(Exception):
    """Something went wrong in vmkeep. ``detail`` is structured data a client acts on (the
    fingerprint to pin, the plan to confirm); clients never read it out of the message."""

    exit_code: int = 10
    code: str = "error"

    def __init__(self, message: str, *, detail: ErrorDetail | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def __str__(self) -> str:
        return self.message


class UsageError(VmkeepError):
    """A command was called with arguments that do not fit."""

    exit_code = 2
    code = "usage"


class NotFoundError(VmkeepError):
    """A named file, point, repository or object does not exist."""

    exit_code = 3
    code = "not_found"


class BadInputError(VmkeepError):
    """An input exists but its content is malformed or out of range."""

    exit_code = 4
    code = "bad_input"


class TooLargeError(BadInputError):
    """A request to the appliance is larger than it takes (HTTP 413)."""

    code = "too_large"


class RepositoryFormatError(VmkeepError):
    """A folder is not a vmkeep repository, or one of a format version this build cannot use."""

    exit_code = 5
    code = "repository_format"


class LockedError(VmkeepError):
    """The repository is locked by another process in a conflicting mode."""

    exit_code = 6
    code = "locked"


class NoSpaceError(VmkeepError):
    """The repository's storage is full."""

    exit_code = 7
    code = "no_space"


class StorageIOError(VmkeepError):
    """Reading or writing the repository's storage failed."""

    exit_code = 8
    code = "storage_io"


class IntegrityError(VmkeepError):
    """Stored data does not match its check: the repository is damaged."""

    exit_code = 9
    code = "integrity"


class DamagedKeyError(IntegrityError):
    """A repository's block-id key file is damaged or missing: its points still restore, new
    backups cannot identify blocks until the key is put back."""

    code = "damaged_key"


class SourceError(VmkeepError):
    """The data source (an image file or a VM disk) could not be read."""

    exit_code = 11
    code = "source"


class VSphereError(VmkeepError):
    """A vSphere API call, task, snapshot or CBT query failed."""

    exit_code = 12
    code = "vsphere"


class SshError(VmkeepError):
    """An SSH connection (to a Linux repository or a guest) failed: unreachable, host key not
    the pinned one, login refused."""

    exit_code = 14
    code = "ssh"


class ConflictError(VmkeepError):
    """The name is taken, or the state of the thing forbids what was asked (a running job)."""

    exit_code = 2
    code = "conflict"


class ApplianceError(VmkeepError):
    """The appliance could not be reached, or did not answer as its API says."""

    exit_code = 13
    code = "appliance"


class ApplianceNotRunningError(ApplianceError):
    """No appliance answers on the socket."""

    code = "appliance_not_running"


class SocketTrustError(ApplianceError):
    """The appliance's socket is not provably ours: its folder belongs to another user or
    others may write to it, the socket file belongs to another user, or the process serving
    it runs as another user (``SO_PEERCRED``). The client sends nothing; the message names
    that user and what to do."""

    code = "socket_trust"


class CatalogDamagedError(ApplianceError):
    """The appliance's own catalog (``HOME/catalog.duckdb``) is damaged: it does not start
    on it. The message says how to restore it from the configuration backup."""

    code = "catalog_damaged"


class CatalogMissingError(ApplianceError):
    """The appliance's catalog is missing in a home that has other state (secrets, a
    configuration backup): it does not start empty unless told to (``--new-catalog``)."""

    code = "catalog_missing"


class ApiVersionError(ApplianceError):
    """The appliance and this client speak no common API version."""

    code = "api_version"


class InternalError(VmkeepError):
    """A bug: something vmkeep did not expect went wrong (the appliance logs its traceback)."""

    exit_code = 70
    code = "internal"


class RemoteError(VmkeepError):
    """An error the appliance reported: its code, exit code, message and detail as it sent
    them."""

    def __init__(self, message: str, *, code: str, exit_code: int,
                 detail: ErrorDetail | None = None) -> None:
        super().__init__(message, detail=detail)
        self.code = code
        self.exit_code = exit_code


# Exit codes used by commands that report rather than fail (verify).
EXIT_OK = 0
EXIT_DAMAGE_FOUND = 1
EXIT_INTERRUPTED = 130
