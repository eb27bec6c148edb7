"""Encryption of stored event state with AES-GCM (needs the ``cryptography`` package).

Select it with ``CIPHER_TOPIC=eventsourcing.cipher:AESCipher`` and give a key in
``CIPHER_KEY`` (base64, as made by ``AESCipher.create_key(num_bytes=32)``).
"""

from __future__ import annotations

import os
from base64 import b64decode, b64encode
from binascii import Error as Base64Error
from collections.abc import Mapping
from typing import Any

from eventsourcing.persistence import Cipher, MapperDeserialisationError

__all__ = ["AESCipher", "Cipher", "DecryptionError"]

NONCE_SIZE = 12  # the size AES-GCM is designed for
KEY_SIZES = (16, 24, 32)


class DecryptionError(MapperDeserialisationError):
    """Ciphertext could not be decrypted: wrong key, or the data was altered."""


class CipherKeyMissingError(OSError, ValueError):
    """No ``CIPHER_KEY`` in the environment. An ``OSError`` (``EnvironmentError``),
    as 9.x raises for a missing setting, and a ``ValueError`` as it was here."""


def _aesgcm(key: bytes) -> Any:
    # Imported here so that the rest of the library works without cryptography installed.
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError as error:  # pragma: no cover (depends on the installation)
        raise ImportError(
            "AESCipher needs the 'cryptography' package: pip install 'keel-eventsourcing[crypto]'"
        ) from error
    return AESGCM(key)


class AESCipher:
    """Encrypts and authenticates bytes with AES-GCM; the key comes from ``CIPHER_KEY``."""

    CIPHER_KEY = "CIPHER_KEY"

    @staticmethod
    def create_key(num_bytes: int) -> str:
        """Return a new random key of 16, 24 or 32 bytes, base64-encoded for ``CIPHER_KEY``."""
        if num_bytes not in KEY_SIZES:
            raise ValueError(f"AES keys are 16, 24 or 32 bytes long, not {num_bytes}")
        return b64encode(os.urandom(num_bytes)).decode("ascii")

    def __init__(self, environment: Mapping[str, str]):
        encoded = environment.get(self.CIPHER_KEY)
        if not encoded:
            raise CipherKeyMissingError(
                f"{self.CIPHER_KEY} is not set: AESCipher needs a base64 key "
                "(make one with AESCipher.create_key(num_bytes=32))"
            )
        self._aes = _aesgcm(_decode_key(encoded))

    def encrypt(self, plaintext: bytes) -> bytes:
        """Return a fresh random nonce followed by the ciphertext and its tag."""
        nonce = os.urandom(NONCE_SIZE)
        return nonce + self._aes.encrypt(nonce, plaintext, None)

    def decrypt(self, ciphertext: bytes) -> bytes:
        """Return the plaintext; raise ``DecryptionError`` if the key is wrong or data altered."""
        from cryptography.exceptions import InvalidTag

        nonce, sealed = ciphertext[:NONCE_SIZE], ciphertext[NONCE_SIZE:]
        try:
            if len(nonce) < NONCE_SIZE:
                raise InvalidTag
            return bytes(self._aes.decrypt(nonce, sealed, None))
        except InvalidTag:
            raise DecryptionError(
                "Decryption failed: the data was not encrypted with this key or was altered "
                f"(is {self.CIPHER_KEY} the key the events were written with?)"
            ) from None


def _decode_key(encoded: str) -> bytes:
    try:
        key = b64decode(encoded.encode("ascii"), validate=True)
    except (Base64Error, UnicodeEncodeError, ValueError):
        raise ValueError(f"{AESCipher.CIPHER_KEY} is not valid base64") from None
    if len(key) not in KEY_SIZES:
        raise ValueError(
            f"{AESCipher.CIPHER_KEY} decodes to {len(key)} bytes: AES keys are 16, 24 or 32 bytes"
        )
    return key
