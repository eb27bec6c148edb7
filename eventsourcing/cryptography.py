"""Encryption with the ``cryptography`` package: the documented home of ``AESCipher``.

``CIPHER_TOPIC=eventsourcing.cryptography:AESCipher`` and
``CIPHER_TOPIC=eventsourcing.cipher:AESCipher`` select the same class.
"""

from eventsourcing.cipher import AESCipher, DecryptionError

__all__ = ["AESCipher", "DecryptionError"]
