"""Encryption at rest of the alias passwords.

The engine needs the plaintext for the CARP HMAC, so the password is
encrypted (Fernet: AES-128-CBC with an HMAC-SHA256) rather than hashed. The
key is derived from ``settings.CLUSTER_SECRET_KEY``; keys listed in
``settings.CLUSTER_SECRET_KEY_FALLBACKS`` still decrypt, so a key can be
rotated by moving the old one there and re-saving the aliases.
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

# A fixed context string: the same secret used elsewhere yields a different key.
_CONTEXT = b"appliance-cluster/alias-password/v1:"


class PasswordDecryptionError(Exception):
    """The stored token was written with a key that is no longer configured."""


def _fernet_for(secret: str) -> Fernet:
    # Any string the operator chooses becomes a valid 32-byte Fernet key.
    digest = hashlib.sha256(_CONTEXT + secret.encode("utf-8")).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


@lru_cache(maxsize=4)
def _cipher(secret: str, fallbacks: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([_fernet_for(s) for s in (secret, *fallbacks)])


def _current() -> MultiFernet:
    return _cipher(settings.CLUSTER_SECRET_KEY, tuple(settings.CLUSTER_SECRET_KEY_FALLBACKS))


def encrypt(plaintext: str) -> str:
    return _current().encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt(token: str) -> str:
    try:
        return _current().decrypt(token.encode("ascii")).decode("utf-8")
    except InvalidToken as exc:
        raise PasswordDecryptionError(
            "An alias password cannot be decrypted with CLUSTER_SECRET_KEY or its fallbacks."
        ) from exc
