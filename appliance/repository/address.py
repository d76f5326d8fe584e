"""Where a repository is and how to reach it: a local folder, or ``sftp://USER@HOST[:PORT]/PATH``
with an SSH login and a pinned host key. One value the CLIs and the appliance build from what
the administrator gave, and open: ``Address.open`` is the one way a repository is opened.

What differs between the offline CLI and the appliance is a parameter of the value, not a second
opener: the offline CLI builds it from ``--repo`` and its flags for keys and passwords, and,
on a terminal, asks about an SSH host key nobody pinned (``trust``); the appliance builds it
from a stored repository and the secret store, and names its own repair of a damaged block-id
key (``key_repair``). Locking and the catalog come after, in a workspace
(``appliance.jobs.workspace``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from appliance.errors import UsageError
from appliance.private import Tightened, tighten_tree
from appliance.repository.backend import Backend, LocalBackend
from appliance.repository.repo import Repository
from appliance.repository.sftp import Reconnect, SftpBackend, is_sftp, parse_sftp_url
from appliance.ssh import HostKeyUnpinnedError, SshAuth, normalize_fingerprint

#: Asked when the SSH host offers a key nobody pinned: True to go on with that key, False to
#: fail with the error (which names it); it may raise an error of its own.
TrustHostKey = Callable[[HostKeyUnpinnedError], bool]


@dataclass(frozen=True, slots=True)
class Address:
    location: str  # a folder, or sftp://…
    auth: SshAuth | None = None  # SSH only
    fingerprint: str | None = None  # SSH only: the pinned host key, SHA256:…
    reconnect: Reconnect = field(default_factory=Reconnect)
    password: str | None = field(default=None, repr=False)  # encryption (§8): opens / makes
    trust: TrustHostKey | None = field(default=None, compare=False, repr=False)
    #: What to do about a damaged block-id key, as the one who opens it says it (repo.key_repair).
    key_repair: str | None = None

    def __post_init__(self) -> None:
        if self.remote:
            parse_sftp_url(self.location)  # a bad URL fails here, with what to write
            if self.auth is None:
                raise UsageError(f"the SSH repository {self.location} needs a login: "
                                 "--ssh-key FILE, --password-stdin or --password-file")
            if self.fingerprint is not None:
                object.__setattr__(self, "fingerprint", normalize_fingerprint(self.fingerprint))
        elif self.auth is not None or self.fingerprint is not None:
            raise UsageError(f"{self.location} is a local folder: --ssh-key, SSH passwords and "
                             "--host-key-fingerprint are for sftp:// repositories")

    @property
    def remote(self) -> bool:
        return is_sftp(self.location)

    def with_fingerprint(self, fingerprint: str) -> Address:
        return replace(self, fingerprint=fingerprint)

    def open(self, *, create: bool,
             on_reconnect: Callable[[str], None] | None = None) -> Repository:
        """The repository there; with ``create``, a missing or empty folder becomes a new
        one, encrypted when a ``password`` is given. SSH: the host key must be the pinned one
        (``appliance.ssh``); one nobody pinned is put to ``trust``, when there is one."""
        try:
            repo = self._open(create, on_reconnect)
        except HostKeyUnpinnedError as exc:
            if self.trust is None or not self.trust(exc):
                raise
            repo = self.with_fingerprint(exc.offered)._open(create, on_reconnect)
        repo.key_repair = self.key_repair
        return repo

    def _open(self, create: bool, on_reconnect: Callable[[str], None] | None) -> Repository:
        if not self.remote:
            return Repository.open_local(Path(self.location), create=create,
                                         password=self.password)
        backend = self.backend(create=create, on_reconnect=on_reconnect)
        try:
            return Repository.open_backend(backend, create=create, password=self.password)
        except BaseException:
            backend.close()
            raise

    def backend(self, *, create: bool = False,
                on_reconnect: Callable[[str], None] | None = None) -> Backend:
        """The storage alone, connected (a missing SSH folder is made with ``create``)."""
        if not self.remote:
            return LocalBackend(Path(self.location))
        assert self.auth is not None
        return SftpBackend(parse_sftp_url(self.location), self.auth, self.fingerprint,
                           create=create, reconnect=self.reconnect, on_reconnect=on_reconnect)


def tighten(backend: Backend) -> list[Tightened]:
    """Take group and other access off a repository's folder and all it holds (a local one,
    or an SSH one on its host); what was changed, or could not be (an immutable file)."""
    if isinstance(backend, LocalBackend):
        return tighten_tree(backend.root)
    if isinstance(backend, SftpBackend):
        return backend.tighten()
    return []
