"""A repository: its config, its block-id key, and typed access to packs and manifests.

Folders (see docs/FORMAT.md): ``config``, ``keys/<key_id>``, ``packs/<xx>/<pack_id>.pack``,
``manifests/<point_id>``, ``locks/<lock_id>``, ``tmp/`` (files being written).

An encrypted repository (§8) names its master key file in the config; it is opened with the
password, and then every block, manifest and the block-id key are sealed and opened here.
"""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from appliance.errors import (
    IntegrityError,
    LockedError,
    NotFoundError,
    RepositoryFormatError,
    UsageError,
)
from appliance.repository import codec, objfile, pack
from appliance.repository import lock as locks
from appliance.repository import manifest as mf
from appliance.repository.backend import TMP_FOLDER, Backend, LocalBackend, ObjectNotFound
from appliance.repository.codec import new_key
from appliance.repository.crypto import (
    PasswordRequiredError,
    Sealer,
    new_master,
    unwrap_master,
    wrap_master,
)

CONFIG: Final = "config"
DEFAULT_PACK_SIZE: Final = 16 << 20


@dataclass(frozen=True, slots=True)
class RepoConfig:
    repository_id: str
    created: str
    key_id: str
    pack_size: int
    encryption_key: str | None = None  # keys/<name> of the wrapped master key (§8)


class Repository:
    """Typed access to one repository location. Not a lock: callers take one first."""

    def __init__(self, backend: Backend, config: RepoConfig,
                 sealer: Sealer | None = None) -> None:
        self.backend = backend
        self.config = config
        self.sealer = sealer
        self._key: bytes | None = None

    @property
    def id(self) -> str:
        return self.config.repository_id

    @property
    def location(self) -> str:
        return self.backend.location

    def close(self) -> None:
        """Let go of the backend's connections (an SSH repository's)."""
        self.backend.close()

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- creation and opening ---------------------------------------------------------------
    @property
    def encrypted(self) -> bool:
        return self.config.encryption_key is not None

    @staticmethod
    def init(backend: Backend, *, pack_size: int = DEFAULT_PACK_SIZE,
             password: str | None = None) -> Repository:
        """A new repository; with ``password``, an encrypted one (§8)."""
        sealer: Sealer | None = None
        encryption_key: str | None = None
        if password is not None:
            sealer = Sealer(1, new_master())
            encryption_key = f"master-{secrets.token_hex(8)}"
            backend.put(f"keys/{encryption_key}", objfile.encode_json(
                objfile.MAGIC_KEY, wrap_master(sealer.key, sealer.key_id, password)))
        key_id = secrets.token_hex(8)
        key_doc = {"key_id": key_id, "purpose": "block-id", "algorithm": "blake3-keyed",
                   "key": new_key().hex()}
        backend.put(f"keys/{key_id}", objfile.encode_json(objfile.MAGIC_KEY, key_doc, sealer))
        cfg = RepoConfig(secrets.token_hex(16), datetime.now(UTC).isoformat(), key_id,
                         pack_size, encryption_key)
        doc = {"repository_id": cfg.repository_id, "created": cfg.created,
               "block_id_key": key_id, "pack_size": pack_size, "block_id": "blake3-keyed",
               "check": "xxh3-128"}
        if encryption_key is not None:
            doc["encryption"] = {"key": encryption_key, "algorithm": "aes-256-gcm"}
        # The config is written last: a folder with a config is a complete repository.
        backend.put(CONFIG, objfile.encode_json(objfile.MAGIC_CONFIG, doc))
        return Repository(backend, cfg, sealer)

    @staticmethod
    def open(backend: Backend, password: str | None = None) -> Repository:
        """The repository ``backend`` holds; an encrypted one needs its ``password``."""
        try:
            data = backend.get(CONFIG)
        except ObjectNotFound:
            raise RepositoryFormatError(
                f"{backend.location} is not a vmkeep repository (it has no config file); "
                "check the path, or name an empty or missing folder for a new repository"
            ) from None
        doc = objfile.decode_json(objfile.MAGIC_CONFIG, data, f"{backend.location}/config")
        try:
            enc = doc.get("encryption")
            cfg = RepoConfig(str(doc["repository_id"]), str(doc["created"]),
                             str(doc["block_id_key"]), int(doc["pack_size"]),
                             str(enc["key"]) if enc else None)
        except (KeyError, ValueError, TypeError) as exc:
            raise IntegrityError(f"{backend.location}/config lacks {exc}") from None
        if cfg.encryption_key is None:
            if password is not None:
                raise UsageError(f"{backend.location} is not encrypted; leave the encryption "
                                 "password out")
            return Repository(backend, cfg)
        if password is None:
            raise PasswordRequiredError(
                f"{backend.location} is encrypted: give its password (--encryption-password-"
                "file FILE or VMKEEP_ENCRYPTION_PASSWORD)")
        name = f"keys/{cfg.encryption_key}"
        key_doc = objfile.decode_json(objfile.MAGIC_KEY, backend.get(name),
                                      f"{backend.location}/{name}")
        return Repository(backend, cfg, unwrap_master(key_doc, password,
                                                      f"{backend.location}/{name}"))

    @staticmethod
    def open_local(path: Path, *, create: bool, password: str | None = None) -> Repository:
        """Open the repository in ``path``, creating it when the folder is missing or empty
        (encrypted with ``password``, if given)."""
        backend = LocalBackend(path)
        if create and (not path.exists() or (path.is_dir() and not any(path.iterdir()))):
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise RepositoryFormatError(
                    f"cannot create repository folder {path}: {exc.strerror}") from None
            return Repository.init(backend, password=password)
        if not path.exists():
            raise NotFoundError(f"repository folder {path} does not exist; check the path "
                                "(a backup creates a new repository there)")
        if not path.is_dir():
            raise RepositoryFormatError(f"{path} is not a folder; name a repository folder")
        return Repository.open(backend, password)

    @staticmethod
    def open_backend(backend: Backend, *, create: bool,
                     password: str | None = None) -> Repository:
        """Open the repository ``backend`` holds; with ``create``, make a new one when it holds
        nothing at all (its folder exists: the backend made it)."""
        try:
            backend.stat(CONFIG)
        except ObjectNotFound:
            if create and not backend.list(""):
                return Repository.init(backend, password=password)
        return Repository.open(backend, password)

    # -- keys -------------------------------------------------------------------------------
    def block_key(self) -> bytes:
        if self._key is None:
            name = f"keys/{self.config.key_id}"
            doc = objfile.decode_json(objfile.MAGIC_KEY, self.backend.get(name),
                                      f"{self.location}/{name}", self.sealer)
            try:
                key = bytes.fromhex(str(doc["key"]))
            except (KeyError, ValueError) as exc:
                raise IntegrityError(f"{self.location}/{name} holds no valid key: {exc}") from None
            if len(key) != 32 or doc.get("key_id") != self.config.key_id:
                raise IntegrityError(f"{self.location}/{name} holds no valid key")
            self._key = key
        return self._key

    # -- listing ------------------------------------------------------------------------------
    def pack_ids(self) -> list[str]:
        return [p for p in (pack.pack_id_of(n) for n in self.backend.list("packs")) if p]

    def point_ids(self) -> list[str]:
        return [p for p in (mf.point_id_of(n) for n in self.backend.list("manifests")) if p]

    # -- packs --------------------------------------------------------------------------------
    def pack_what(self, pack_id: str) -> str:
        return f"pack {pack_id}"

    def write_pack(self, writer: pack.PackWriter) -> int:
        data = writer.finish()
        self.backend.put(pack.pack_name(writer.pack_id), data)
        return len(data)

    def read_pack(self, pack_id: str) -> bytes:
        return self.backend.get(pack.pack_name(pack_id))

    def read_pack_index(self, pack_id: str) -> tuple[int, list[pack.PackEntry]]:
        """Return (pack size, index), checking header, footer and index checks."""
        name = pack.pack_name(pack_id)
        what = self.pack_what(pack_id)
        size = self.backend.stat(name).size
        if size < pack.HEADER.size + pack.FOOTER.size:
            raise IntegrityError(f"{what}: file of {size} bytes is truncated")
        pack.check_header(self.backend.get_range(name, 0, pack.HEADER.size), pack_id, what)
        footer = self.backend.get_range(name, size - pack.FOOTER.size, pack.FOOTER.size)
        index_offset, count, index_check = pack.parse_footer(footer, size, what)
        index = self.backend.get_range(name, index_offset, count * pack.ENTRY.size)
        return size, pack.parse_index(index, count, index_check, index_offset, what)

    def encode_block(self, data: bytes, compression: codec.Compression, block_id: bytes,
                     check: bytes) -> tuple[int, bytes, bytes, int]:
        """A block's (codec, stored bytes, index check, key id): compressed, and sealed in an
        encrypted repository (then the index's check is zero: it is inside the seal)."""
        codec_id, stored = codec.compress(data, compression)
        if self.sealer is None:
            return codec_id, stored, check, 0
        return (codec_id, pack.seal_block(self.sealer, block_id, stored, check),
                bytes(16), self.sealer.key_id)

    def open_block(self, entry: pack.PackEntry, stored: bytes, what: str) -> bytes:
        """A block's plain bytes from its stored ones, checked (and opened, if sealed)."""
        return pack.open_block(entry, stored, what, self.sealer)

    def read_stored(self, pack_id: str, offset: int, length: int) -> bytes:
        return self.backend.get_range(pack.pack_name(pack_id), offset, length)

    def delete_pack(self, pack_id: str) -> None:
        with contextlib.suppress(ObjectNotFound):
            self.backend.delete(pack.pack_name(pack_id))

    # -- manifests ----------------------------------------------------------------------------
    def write_manifest(self, manifest: mf.Manifest) -> int:
        data = mf.encode(manifest, self.sealer)
        self.backend.put(mf.manifest_name(manifest.point_id), data)
        return len(data)

    def read_manifest(self, point_id: str) -> mf.Manifest:
        return mf.decode(self.backend.get(mf.manifest_name(point_id)), f"manifest {point_id}",
                         self.sealer)

    def delete_manifest(self, point_id: str) -> None:
        with contextlib.suppress(ObjectNotFound):
            self.backend.delete(mf.manifest_name(point_id))

    # -- locks and leftovers ------------------------------------------------------------------
    def lock(self, *, exclusive: bool, operation: str, wait: float = 0.0,
             read_only_ok: bool = False) -> locks.RepoLock:
        return locks.acquire(self.backend, exclusive=exclusive, operation=operation, wait=wait,
                             read_only_ok=read_only_ok)

    def try_exclusive(self, operation: str) -> locks.RepoLock | None:
        try:
            return self.lock(exclusive=True, operation=operation, wait=0.0)
        except LockedError:
            return None

    def sweep_tmp(self) -> int:
        """Remove files a crashed writer left in tmp/. Call only under an exclusive lock."""
        removed = 0
        for name in self.backend.list(TMP_FOLDER):
            try:
                self.backend.delete(name)
                removed += 1
            except ObjectNotFound:
                pass
        return removed
