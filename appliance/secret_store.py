"""The appliance's secret store: vCenter, SSH, guest and encryption passwords and keys.

Secrets live in ``HOME/secrets.enc`` and nowhere else: never in the catalog, logs, API answers
or error messages. Each value is sealed with AES-256-GCM (``cryptography``) under a random
key in ``HOME/secret.key``, with the secret's name as associated data, so a copy of the store
alone (say, in a backup of the home folder) reveals nothing, and a value cannot be moved under
another name. Both files are mode 0600 and replaced atomically (write aside, fsync, rename).

The key beside the store does not protect against someone who can read the appliance's home:
that is the owner's account, and the threat model says so (docs/FORMAT.md §11).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import threading
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from appliance.errors import IntegrityError, NotFoundError

KEY_NAME = "secret.key"
STORE_NAME = "secrets.enc"
_NONCE = 12


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (mode 0600) aside, fsync, then rename into place."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)


class SecretStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._aead: AESGCM | None = None

    @property
    def path(self) -> Path:
        return self.root / STORE_NAME

    def _cipher(self) -> AESGCM:
        if self._aead is None:
            key_path = self.root / KEY_NAME
            try:
                key = key_path.read_bytes()
            except FileNotFoundError:
                key = AESGCM.generate_key(bit_length=256)
                write_private(key_path, key)
            if len(key) != 32:
                raise IntegrityError(f"{key_path} is not a 32-byte key; restore it from the "
                                     "configuration backup (without it the stored passwords "
                                     "are lost)")
            self._aead = AESGCM(key)
        return self._aead

    def _load(self) -> dict[str, str]:
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise IntegrityError(f"secret store {self.path} is unreadable ({exc}); restore "
                                 "it from the configuration backup") from None
        if not isinstance(doc, dict):
            raise IntegrityError(f"secret store {self.path} is damaged")
        return {str(k): str(v) for k, v in doc.items()}

    def put(self, name: str, value: str) -> None:
        with self._lock:
            doc = self._load()
            nonce = os.urandom(_NONCE)
            sealed = nonce + self._cipher().encrypt(nonce, value.encode(), name.encode())
            doc[name] = base64.b64encode(sealed).decode()
            write_private(self.path, json.dumps(doc, sort_keys=True).encode())

    def _open(self, name: str, sealed: str) -> str:
        raw = base64.b64decode(sealed)
        try:
            return self._cipher().decrypt(raw[:_NONCE], raw[_NONCE:], name.encode()).decode()
        except (InvalidTag, ValueError):
            raise IntegrityError(f"the secret {name!r} does not open with "
                                 f"{self.root / KEY_NAME}; was the key replaced? Add the "
                                 "secret again") from None

    def find(self, name: str) -> str | None:
        """The secret ``name``, opened; None when none is stored under that name."""
        with self._lock:
            sealed = self._load().get(name)
            return None if sealed is None else self._open(name, sealed)

    def get(self, name: str) -> str:
        found = self.find(name)
        if found is None:
            raise NotFoundError(f"no secret named {name!r} is stored; add it again")
        return found

    def names(self) -> set[str]:
        """The names of the stored secrets (their values stay sealed)."""
        with self._lock:
            return set(self._load())

    def all(self) -> dict[str, str]:
        """Every secret, opened (for the configuration backup, which seals them again)."""
        with self._lock:
            return {name: self._open(name, sealed) for name, sealed in self._load().items()}

    def delete(self, prefix: str) -> None:
        """Forget every secret whose name starts with ``prefix``."""
        with self._lock:
            doc = self._load()
            kept = {k: v for k, v in doc.items() if not k.startswith(prefix)}
            if kept != doc:
                write_private(self.path, json.dumps(kept, sort_keys=True).encode())
