"""Encryption at rest (docs/FORMAT.md §8): AES-256-GCM per block and per object file under a
random master key, which is kept in the repository wrapped by a key derived from the user's
password with scrypt.

A sealed value is ``nonce (12 bytes) ‖ ciphertext ‖ tag (16 bytes)``. The associated data
binds it to its place: a block's id, an object file's magic. Without the password nothing but
the framing (sizes, block ids, which are keyed hashes) can be read; a lost password cannot be
recovered.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from appliance.errors import BadInputError, IntegrityError, UsageError

NONCE: Final = 12
TAG: Final = 16
MASTER_AAD: Final = b"vmkeep repository master key v1"
# scrypt's cost: 2^15 × 8 × 128 bytes = 32 MiB and about 0.1 s here, once per open.
SCRYPT_N: Final = 1 << 15
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
MIN_PASSWORD: Final = 8


class WrongPasswordError(BadInputError):
    """The password does not open the repository's master key."""

    code = "wrong_password"


class PasswordRequiredError(BadInputError):
    """The repository is encrypted and no password was given."""

    code = "password_required"


@dataclass(frozen=True, slots=True)
class Sealer:
    """One encryption key (``key_id`` ≠ 0 names it in headers and index entries)."""

    key_id: int
    key: bytes = field(repr=False)

    def seal(self, plain: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE)
        return nonce + AESGCM(self.key).encrypt(nonce, plain, aad)

    def open(self, sealed: bytes, aad: bytes, what: str) -> bytes:
        if len(sealed) < NONCE + TAG:
            raise IntegrityError(f"{what} is too short to be sealed")
        try:
            return AESGCM(self.key).decrypt(sealed[:NONCE], sealed[NONCE:], aad)
        except InvalidTag:
            raise IntegrityError(f"{what} does not open with the repository's key: it is "
                                 "damaged (or was moved from another place)") from None


def _kek(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(password.encode())


def wrap_master(master: bytes, key_id: int, password: str) -> dict[str, Any]:
    """The key file's document for ``master``, wrapped under ``password``."""
    if len(password) < MIN_PASSWORD:
        raise UsageError(f"the encryption password must have at least {MIN_PASSWORD} "
                         "characters")
    salt = os.urandom(16)
    kek = _kek(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    nonce = os.urandom(NONCE)
    wrapped = nonce + AESGCM(kek).encrypt(nonce, master, MASTER_AAD)
    return {"key_id": key_id, "purpose": "encryption", "algorithm": "aes-256-gcm",
            "kdf": "scrypt", "salt": salt.hex(), "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P,
            "wrapped": wrapped.hex()}


def unwrap_master(doc: dict[str, Any], password: str, where: str) -> Sealer:
    """The master key in a key file's document, opened with ``password``."""
    try:
        salt = bytes.fromhex(str(doc["salt"]))
        wrapped = bytes.fromhex(str(doc["wrapped"]))
        n, r, p, key_id = int(doc["n"]), int(doc["r"]), int(doc["p"]), int(doc["key_id"])
    except (KeyError, ValueError, TypeError) as exc:
        raise IntegrityError(f"{where} is not a valid encryption key file ({exc})") from None
    if doc.get("kdf") != "scrypt" or doc.get("algorithm") != "aes-256-gcm" or key_id == 0 \
            or not (2 <= n <= 1 << 22 and 1 <= r <= 32 and 1 <= p <= 16):
        raise IntegrityError(f"{where} is not a valid encryption key file")
    kek = _kek(password, salt, n, r, p)
    try:
        master = AESGCM(kek).decrypt(wrapped[:NONCE], wrapped[NONCE:], MASTER_AAD)
    except (InvalidTag, ValueError):
        raise WrongPasswordError(
            f"the password does not open the encrypted repository ({where}); check it. "
            "A lost password cannot be recovered: the backups are unreadable without it"
        ) from None
    return Sealer(key_id, master)


def new_master() -> bytes:
    return os.urandom(32)
