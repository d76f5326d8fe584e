"""A repository: its config, its block-id key, and typed access to packs and manifests.

Folders (see docs/FORMAT.md): ``config``, ``keys/<key_id>``, ``packs/<xx>/<pack_id>.pack``,
``manifests/<point_id>``, ``locks/<lock_id>``, ``tmp/`` (files being written).

An encrypted repository (§8) names its master key file in the config; it is opened with the
password, and then every block, manifest and the block-id key are sealed and opened here.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from appliance.errors import (
    DamagedKeyError,
    IntegrityError,
    LockedError,
    NoSpaceError,
    NotFoundError,
    RepositoryFormatError,
    UsageError,
    VmkeepError,
)
from appliance.faults import crash_point
from appliance.private import make_dir
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
REMOVED: Final = "removed"  # records of points a prune removed (docs/FORMAT.md §7)
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
        # What to do about a damaged block-id key (the appliance names its repair command).
        self.key_repair: str | None = None

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
        crash_point("repo-init-keys-written")
        cfg = RepoConfig(secrets.token_hex(16), datetime.now(UTC).isoformat(), key_id,
                         pack_size, encryption_key)
        # The config is written last: a folder with a config is a complete repository.
        _write_config(backend, cfg)
        return Repository(backend, cfg, sealer)

    @staticmethod
    def open(backend: Backend, password: str | None = None) -> Repository:
        """The repository ``backend`` holds; an encrypted one needs its ``password``."""
        try:
            data = backend.get(CONFIG)
        except ObjectNotFound:
            raise _no_config(backend) from None
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
                make_dir(path)
            except OSError as exc:
                raise RepositoryFormatError(
                    f"cannot create repository folder {path}: {exc.strerror}") from None
            return Repository.init(backend, password=password)
        if create and path.is_dir() and not (path / CONFIG).exists() \
                and _half_created(_all_names(backend)):
            return _complete_or_clean(backend, password)
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
            if create:
                names = _all_names(backend)
                if not names:
                    return Repository.init(backend, password=password)
                if _half_created(names):
                    return _complete_or_clean(backend, password)
        return Repository.open(backend, password)

    # -- keys -------------------------------------------------------------------------------
    def block_key(self) -> bytes:
        if self._key is None:
            name = f"keys/{self.config.key_id}"
            try:
                self._key = _read_block_key(self.backend, name, self.config.key_id,
                                            self.sealer)
            except (IntegrityError, ObjectNotFound) as exc:
                raise DamagedKeyError(
                    f"{exc}: the repository's block-id key is damaged or missing; "
                    "restores still work, backups need the key: "
                    + (self.key_repair or "put the key file back from a copy (the appliance "
                       "that uses this repository keeps one: `vmkeep repo repair-key NAME`)")
                ) from None
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
        """The manifest of ``point_id``; one whose file name is not the point id inside it is
        damage (docs/FORMAT.md §5): never taken for the point it names."""
        name = mf.manifest_name(point_id)
        m = mf.decode(self.backend.get(name), f"manifest {point_id}", self.sealer)
        if m.point_id != point_id:
            raise IntegrityError(f"{name} holds point {m.point_id}: a manifest's file name "
                                 "must be its point id, so it is not taken for either point; "
                                 f"remove it if {mf.manifest_name(m.point_id)} is intact")
        return m

    def note_removed(self, point_ids: list[str]) -> None:
        """Record in the repository that a prune removes these points (``removed/<id>``,
        written before their manifests are deleted): another catalog then knows the
        manifests went on purpose and does not report them as vanished (docs/FORMAT.md)."""
        for point_id in point_ids:
            try:
                self.backend.put(f"{REMOVED}/{point_id}", b"")
            except NoSpaceError:
                # A full repository is still pruned (the record needs no data block, its
                # folder may): other catalogs then report the points as vanished until a
                # rescan.
                break

    def removed_ids(self) -> set[str]:
        """Points a prune removed (their ``removed/`` records)."""
        return {n.rsplit("/", 1)[-1] for n in self.backend.list(REMOVED)}

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


# -- creation leftovers and a lost config (helpers) --------------------------------------------
BLOCK_KEY_NAME: Final = re.compile(r"keys/[0-9a-f]{16}")
MASTER_KEY_PREFIX: Final = "keys/master-"
_FOLDERS: Final = ("keys", TMP_FOLDER, "packs", "manifests", "locks", "appliance-config")


def _write_config(backend: Backend, cfg: RepoConfig) -> None:
    doc: dict[str, object] = {
        "repository_id": cfg.repository_id, "created": cfg.created,
        "block_id_key": cfg.key_id, "pack_size": cfg.pack_size, "block_id": "blake3-keyed",
        "check": "xxh3-128"}
    if cfg.encryption_key is not None:
        doc["encryption"] = {"key": cfg.encryption_key, "algorithm": "aes-256-gcm"}
    backend.put(CONFIG, objfile.encode_json(objfile.MAGIC_CONFIG, doc))


def _read_block_key(backend: Backend, name: str, key_id: str, sealer: Sealer | None) -> bytes:
    """The 32-byte block-id key in ``name``, checked (IntegrityError when damaged)."""
    doc = objfile.decode_json(objfile.MAGIC_KEY, backend.get(name),
                              f"{backend.location}/{name}", sealer)
    try:
        key = bytes.fromhex(str(doc["key"]))
    except (KeyError, ValueError) as exc:
        raise IntegrityError(f"{backend.location}/{name} holds no valid key: {exc}") from None
    if len(key) != 32 or doc.get("key_id") != key_id:
        raise IntegrityError(f"{backend.location}/{name} holds no valid key")
    return key


def _all_names(backend: Backend) -> list[str]:
    """Every file of the repository's folder (the known folders listed one by one too: not
    every backend lists its root)."""
    names = set(backend.list(""))
    for folder in _FOLDERS:
        names.update(backend.list(folder))
    return sorted(names)


def _half_created(names: list[str]) -> bool:
    """Files a repository creation killed before its config leaves: key files and tmp/ only
    (no config, no manifest, no pack, no lock)."""
    return bool(names) and all(n.startswith(("keys/", f"{TMP_FOLDER}/")) for n in names)


def _no_config(backend: Backend) -> RepositoryFormatError:
    """Why a folder without a config is no repository, and what to do about it."""
    loc = backend.location
    names = _all_names(backend)
    if _half_created(names):
        return RepositoryFormatError(
            f"{loc} is a repository whose creation was interrupted (it has key files but no "
            "config file and no restore point); the next backup into it completes it")
    points = sum(1 for n in names if n.startswith("manifests/") and mf.point_id_of(n))
    packs = sum(1 for n in names if n.startswith("packs/") and pack.pack_id_of(n))
    keys = [n for n in names if BLOCK_KEY_NAME.fullmatch(n)]
    if points or packs:
        return RepositoryFormatError(
            f"the repository's config file is missing ({loc}/config), though the folder "
            f"holds {points} restore point(s) and {packs} pack(s)"
            + (f" and its key file {', '.join(keys)}" if keys else " but no key file")
            + f"; recreate the config with `vmkeep image repair-config --repo {loc}`, then "
            "run this again")
    return RepositoryFormatError(
        f"{loc} is not a vmkeep repository (it has no config file); check the path, or name "
        "an empty or missing folder for a new repository")


def _open_master(backend: Backend, masters: list[str], password: str) -> tuple[Sealer, str]:
    """The master key of the first of ``masters`` that opens with ``password``."""
    failure: Exception | None = None
    for name in masters:
        try:
            doc = objfile.decode_json(objfile.MAGIC_KEY, backend.get(name),
                                      f"{backend.location}/{name}")
            return (unwrap_master(doc, password, f"{backend.location}/{name}"),
                    name.removeprefix("keys/"))
        except (VmkeepError, KeyError, TypeError, ValueError) as exc:
            failure = exc
    assert failure is not None
    raise failure


def _complete_or_clean(backend: Backend, password: str | None) -> Repository:
    """A repository whose creation was killed before its config was written (only key files
    and tmp/ files: nothing refers to them). Complete it with the key files it has when they
    fit what is asked now (encrypted with ``password`` or not), else remove them and make a
    new repository; either way tmp/ is emptied."""
    keys = backend.list("keys")
    masters = [n for n in keys if n.startswith(MASTER_KEY_PREFIX)]
    sealer: Sealer | None = None
    encryption_key: str | None = None
    usable = password is None and not masters
    if masters and password is not None:
        with contextlib.suppress(VmkeepError, KeyError, TypeError, ValueError):
            sealer, encryption_key = _open_master(backend, masters, password)
            usable = True
    key_id: str | None = None
    if usable:
        for name in (n for n in keys if BLOCK_KEY_NAME.fullmatch(n)):
            try:
                _read_block_key(backend, name, name.removeprefix("keys/"), sealer)
            except (IntegrityError, RepositoryFormatError, ObjectNotFound):
                continue
            key_id = name.removeprefix("keys/")
            break
    keep = {f"keys/{key_id}", f"keys/{encryption_key}"} if key_id else set()
    for name in [*keys, *backend.list(TMP_FOLDER)]:
        if name not in keep:
            with contextlib.suppress(ObjectNotFound):
                backend.delete(name)
    if key_id is None:
        return Repository.init(backend, password=password)
    cfg = RepoConfig(secrets.token_hex(16), datetime.now(UTC).isoformat(), key_id,
                     DEFAULT_PACK_SIZE, encryption_key)
    _write_config(backend, cfg)
    return Repository(backend, cfg, sealer)


def _key_of_blocks(repo: Repository, keys: dict[str, bytes]) -> str | None:
    """Which of ``keys`` made the block ids of the repository's packs (the first disk block
    found is read and its id recomputed); None when no pack has a readable block."""
    for pack_id in repo.pack_ids():
        try:
            _size, entries = repo.read_pack_index(pack_id)
            entry = next(e for e in entries if e.kind == 1)
            plain = repo.open_block(entry, repo.read_stored(pack_id, entry.offset,
                                                             entry.stored_len),
                                    repo.pack_what(pack_id))
        except (VmkeepError, StopIteration):
            continue
        return next((k for k, key in keys.items()
                     if codec.block_id(key, plain) == entry.block_id), None)
    return None


def repair_config(backend: Backend, *, password: str | None = None,
                  repository_id: str | None = None) -> tuple[Repository, list[str]]:
    """Recreate a lost (or damaged) config from what the repository's files record: the
    block-id key file, the wrapped master key file (encryption), the manifests (when the
    repository was made). The repository id is recorded nowhere else: ``repository_id`` or a
    new one; the pack size is the default. Returns the repository and what was decided."""
    loc = backend.location
    notes: list[str] = []
    try:
        data: bytes | None = backend.get(CONFIG)
    except ObjectNotFound:
        data = None
    if data is not None:
        try:
            objfile.decode_json(objfile.MAGIC_CONFIG, data, f"{loc}/config")
        except IntegrityError as exc:
            notes.append(f"the damaged config was replaced ({exc})")
        else:
            raise UsageError(f"{loc} has a config file that opens: nothing to repair")
    if repository_id is not None and not re.fullmatch(r"[0-9a-f]{32}", repository_id):
        raise UsageError(f"--repository-id {repository_id!r} is not 32 lower-case hex digits")
    keys = backend.list("keys")
    masters = [n for n in keys if n.startswith(MASTER_KEY_PREFIX)]
    blocks = [n.removeprefix("keys/") for n in keys if BLOCK_KEY_NAME.fullmatch(n)]
    if not blocks:
        raise RepositoryFormatError(
            f"{loc} has no key file (keys/ + 16 hex digits): its config cannot be recreated; "
            "check the path (a repository's folder has keys/, manifests/ and packs/)")
    sealer: Sealer | None = None
    encryption_key: str | None = None
    if masters:
        if password is None:
            raise PasswordRequiredError(
                f"{loc} is encrypted (it has {masters[0]}): give its password "
                "(--encryption-password-file FILE or VMKEEP_ENCRYPTION_PASSWORD)")
        sealer, encryption_key = _open_master(backend, masters, password)
        notes.append(f"encrypted: master key file keys/{encryption_key}")
    elif password is not None:
        raise UsageError(f"{loc} is not encrypted (it has no keys/master-* file); leave the "
                         "encryption password out")
    valid: dict[str, bytes] = {}
    for key_id in blocks:
        with contextlib.suppress(IntegrityError, RepositoryFormatError, ObjectNotFound):
            valid[key_id] = _read_block_key(backend, f"keys/{key_id}", key_id, sealer)
    probe = Repository(backend, RepoConfig("0" * 32, "", blocks[0], DEFAULT_PACK_SIZE,
                                           encryption_key), sealer)
    if len(valid) == 1:
        chosen = next(iter(valid))
    elif valid:
        found = _key_of_blocks(probe, valid)
        if found is None:
            raise IntegrityError(
                f"{loc} has several block-id key files ({', '.join(sorted(valid))}) and no "
                "readable block tells which one its points use; keep only the right one")
        chosen = found
    elif len(blocks) == 1:
        chosen = blocks[0]
        notes.append(f"keys/{chosen} is damaged: the config names it; restores work, backups "
                     "need it put back (`vmkeep repo repair-key NAME` on the appliance that "
                     "uses this repository, or a copy of the file)")
    else:
        raise IntegrityError(f"{loc}: every block-id key file ({', '.join(blocks)}) is "
                             "damaged; put one back from a copy first")
    notes.append(f"block-id key: keys/{chosen}")
    created: datetime | None = None
    for point_id in probe.point_ids():
        with contextlib.suppress(VmkeepError):
            when = probe.read_manifest(point_id).created
            created = when if created is None or when < created else created
    if repository_id is None:
        repository_id = secrets.token_hex(16)
        notes.append(f"repository id {repository_id} is new: the old one was recorded only in "
                     "the config (an appliance that used this repository shows it in `vmkeep "
                     "repo list --json`; run again with --repository-id ID to keep it)")
    else:
        notes.append(f"repository id {repository_id} (as given)")
    notes.append(f"pack size: the default {DEFAULT_PACK_SIZE >> 20} MiB (the old one is "
                 "recorded nowhere else; it sizes new packs only)")
    stamp = (created or datetime.now(UTC)).isoformat()
    notes.append(f"created: {stamp}" + (" (the oldest restore point's)" if created else ""))
    cfg = RepoConfig(repository_id, stamp, chosen, DEFAULT_PACK_SIZE, encryption_key)
    _write_config(backend, cfg)
    return Repository(backend, cfg, sealer), notes
