"""Configuration backup: the appliance's authoritative state and its secrets, sealed with a
password, written into a repository; and the restore of it on a fresh appliance.

Without it a lost appliance means lost jobs, vCenters and passwords, and a full re-read of
every VM. With it: a new appliance, ``vmkeep config restore``, and every job's next run is
incremental again (the repositories come back by their paths and are re-indexed; the CBT
change IDs are in their restore points' manifests).

File: ``<repository>/appliance-config/<UTC time>.vmkcfg``, JSON
``{"format": 1, "kdf": "scrypt", "n", "r", "p", "salt", "nonce", "sealed"}`` (base64 values);
``sealed`` is AES-256-GCM of the state document under a key derived from the password with
scrypt, with the header fields as associated data. A wrong password cannot open it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from appliance.errors import BadInputError, NotFoundError, UsageError
from appliance.secret_store import write_private
from catalog.models import JobRow, RepositoryName, VCenterRow

FOLDER = "appliance-config"
SUFFIX = ".vmkcfg"
FORMAT = 1
SCRYPT = {"n": 2**15, "r": 8, "p": 1}


def _key(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(password.encode())


def seal(doc: dict[str, Any], password: str) -> bytes:
    if len(password) < 8:
        raise UsageError("the configuration backup password must have at least 8 characters")
    salt, nonce = os.urandom(16), os.urandom(12)
    header = {"format": FORMAT, "kdf": "scrypt", **SCRYPT,
              "salt": base64.b64encode(salt).decode(), "nonce": base64.b64encode(nonce).decode()}
    aad = json.dumps(header, sort_keys=True).encode()
    sealed = AESGCM(_key(password, salt, **SCRYPT)).encrypt(nonce, json.dumps(doc).encode(), aad)
    return json.dumps({**header, "sealed": base64.b64encode(sealed).decode()}).encode()


def unseal(data: bytes, password: str, what: str) -> dict[str, Any]:
    try:
        outer = json.loads(data)
        header = {k: outer[k] for k in ("format", "kdf", "n", "r", "p", "salt", "nonce")}
        if header["format"] != FORMAT or header["kdf"] != "scrypt":
            raise BadInputError(f"{what} is a configuration backup of format "
                                f"{header['format']}; this vmkeep reads format {FORMAT}")
        aad = json.dumps(header, sort_keys=True).encode()
        key = _key(password, base64.b64decode(header["salt"]), int(header["n"]),
                   int(header["r"]), int(header["p"]))
        plain = AESGCM(key).decrypt(base64.b64decode(header["nonce"]),
                                    base64.b64decode(outer["sealed"]), aad)
    except InvalidTag:
        raise BadInputError(f"{what} does not open with this password (or is damaged); give "
                            "the password it was written with") from None
    except (ValueError, KeyError, TypeError):
        raise BadInputError(f"{what} is not a vmkeep configuration backup") from None
    doc: dict[str, Any] = json.loads(plain)
    return doc


def state_document(vcenters: list[VCenterRow], repositories: list[RepositoryName],
                   jobs: list[JobRow], settings: dict[str, str],
                   secrets: dict[str, str]) -> dict[str, Any]:
    """What a configuration backup holds (pure)."""
    return {
        "created": datetime.now(UTC).isoformat(),
        "vcenters": [{"name": v.name, "host": v.host, "port": v.port, "user": v.user,
                      "fingerprint": v.fingerprint, "insecure": v.insecure,
                      "added": v.added.isoformat(), "appliance_vm": v.appliance_vm}
                     for v in vcenters],
        "repositories": [{"name": r.name, "location": r.location, "repo_id": r.repo_id,
                          "added": r.added.isoformat(),
                          "host_key_fingerprint": r.host_key_fingerprint,
                          "reconnect_every": r.reconnect_every,
                          "reconnect_for": r.reconnect_for}
                         for r in repositories],
        "jobs": [{"name": j.name, "spec": json.loads(j.spec_json), "enabled": j.enabled,
                  "created": j.created.isoformat()} for j in jobs],
        "settings": settings,
        "secrets": secrets,
    }


def digest(doc: dict[str, Any], sealed_secrets: bytes) -> str:
    """A digest of the configuration (pure): the state document without its time and without
    what a scheduled backup writes about itself (when it ran, how it went), and the secret
    store's sealed bytes. Equal digests: nothing to back up again."""
    settings = dict(doc["settings"])
    if "config_backup" in settings:
        view = json.loads(settings["config_backup"])
        for key in ("last_backup", "last_result", "last_message", "last_password_version",
                    "last_sealed_with_current", "changed_since_backup"):
            view.pop(key, None)
        settings["config_backup"] = view
    state = {**doc, "created": None, "settings": settings, "secrets": None}
    h = hashlib.sha256(json.dumps(state, sort_keys=True).encode())
    h.update(hashlib.sha256(sealed_secrets).digest())
    return h.hexdigest()


def _stamp() -> str:
    """A new backup's name: its UTC time to the microsecond, so that two backups in the same
    second (a scheduled one beside an administrator's) never replace each other; names sort
    by time."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ") + SUFFIX


def write(location: Path, data: bytes) -> Path:
    folder = location / FOLDER
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / _stamp()
    write_private(path, data)
    return path


def backup_name() -> str:
    """The name of a new backup inside a repository: ``appliance-config/<UTC time>.vmkcfg``."""
    return f"{FOLDER}/{_stamp()}"


def candidates(path: Path) -> list[Path]:
    """``path`` itself when it is a backup file, else the backups in a repository, newest
    first."""
    if path.is_file():
        return [path]
    found = sorted((path / FOLDER).glob(f"*{SUFFIX}"), reverse=True)
    if not found:
        raise NotFoundError(f"no configuration backup in {path}; give a repository that has "
                            f"one (in {FOLDER}/) or the backup file itself")
    return found


def open_newest(path: Path, password: str) -> tuple[Path, dict[str, Any], int]:
    """The newest backup in ``path`` (a repository folder, or a backup file) that opens with
    ``password``: its file, its document, and how many newer ones did not open with it (the
    automatic backups, sealed with the appliance's own password, sit beside those written
    with an administrator's). BadInputError when none opens."""
    found = candidates(path)
    for skipped, source in enumerate(found[:-1]):
        try:
            return source, unseal(source.read_bytes(), password, str(source)), skipped
        except BadInputError:
            continue
    last = found[-1]  # the oldest
    try:
        return last, unseal(last.read_bytes(), password, str(last)), len(found) - 1
    except BadInputError:
        if len(found) == 1:
            raise
    raise BadInputError(f"no configuration backup in {path} opens with this password: the "
                        f"newest, {found[0].name}, does not open with this password (or is "
                        f"damaged), nor do the {len(found) - 1} older ones; give the password "
                        "one was written with") from None
