"""AESCipher and ZlibCompressor on their own, and in the mapper."""

from __future__ import annotations

from uuid import uuid4

import pytest

from eventsourcing.cipher import AESCipher, DecryptionError
from eventsourcing.compressor import ZlibCompressor
from eventsourcing.domain import DomainEvent
from eventsourcing.persistence import DataError, JSONTranscoder, Mapper, default_transcodings
from eventsourcing.utils import Environment


def json_transcoder() -> JSONTranscoder:
    """A transcoder that knows UUID, Decimal and datetime, as applications' do."""
    transcoder = JSONTranscoder()
    for transcoding in default_transcodings():
        transcoder.register(transcoding)
    return transcoder


def make_cipher(key: str | None = None) -> AESCipher:
    env = Environment()
    env["CIPHER_KEY"] = key or AESCipher.create_key(num_bytes=32)
    return AESCipher(env)


@pytest.mark.parametrize("num_bytes", [16, 24, 32])
def test_round_trip_with_each_key_size(num_bytes):
    cipher = make_cipher(AESCipher.create_key(num_bytes))
    ciphertext = cipher.encrypt(b"plain text")
    assert b"plain text" not in ciphertext
    assert cipher.decrypt(ciphertext) == b"plain text"


def test_each_encryption_uses_a_new_nonce():
    cipher = make_cipher()
    assert cipher.encrypt(b"x") != cipher.encrypt(b"x")


def test_create_key_rejects_other_sizes():
    with pytest.raises(ValueError, match="16, 24 or 32"):
        AESCipher.create_key(20)


def test_wrong_key_raises_clear_error():
    ciphertext = make_cipher().encrypt(b"secret")
    with pytest.raises(DecryptionError, match="Decryption failed.*CIPHER_KEY"):
        make_cipher().decrypt(ciphertext)
    assert issubclass(DecryptionError, DataError)


def test_corrupted_data_raises_clear_error():
    cipher = make_cipher()
    ciphertext = bytearray(cipher.encrypt(b"secret"))
    ciphertext[-1] ^= 1
    with pytest.raises(DecryptionError, match="altered"):
        cipher.decrypt(bytes(ciphertext))
    with pytest.raises(DecryptionError):
        cipher.decrypt(b"short")


def test_missing_or_bad_key_names_cipher_key():
    with pytest.raises(ValueError, match="CIPHER_KEY is not set"):
        AESCipher(Environment())
    with pytest.raises(ValueError, match="CIPHER_KEY is not valid base64"):
        make_cipher("not base64!")
    with pytest.raises(ValueError, match="CIPHER_KEY decodes to 5 bytes"):
        make_cipher("aGVsbG8=")


def test_missing_key_is_an_environment_error_too():
    # 9.x raises EnvironmentError (OSError) for a missing key: extension suites expect it.
    with pytest.raises(OSError, match="CIPHER_KEY is not set"):
        AESCipher(Environment())


def test_application_prefixed_key_is_used():
    env = Environment("DogSchool", {"DOGSCHOOL_CIPHER_KEY": AESCipher.create_key(16)})
    cipher = AESCipher(env)
    assert cipher.decrypt(cipher.encrypt(b"a")) == b"a"


def test_zlib_compressor_round_trip():
    compressor = ZlibCompressor()
    data = b"abc" * 100
    compressed = compressor.compress(data)
    assert len(compressed) < len(data)
    assert compressor.decompress(compressed) == data


class Noted(DomainEvent):
    text: str


def test_mapper_compresses_then_encrypts():
    cipher = make_cipher()
    mapper = Mapper(json_transcoder(), compressor=ZlibCompressor(), cipher=cipher)
    event = Noted(
        originator_id=uuid4(),
        originator_version=1,
        timestamp=Noted.create_timestamp(),
        text="hello " * 50,
    )
    stored = mapper.to_stored_event(event)
    assert b"hello" not in stored.state
    # Decrypting alone gives compressed bytes; decompressing them gives the JSON.
    json_bytes = ZlibCompressor().decompress(cipher.decrypt(stored.state))
    assert b'"text":"hello hello' in json_bytes
    assert mapper.to_domain_event(stored) == event

    other = Mapper(json_transcoder(), compressor=ZlibCompressor(), cipher=make_cipher())
    with pytest.raises(DecryptionError, match=str(event.originator_id)):
        other.to_domain_event(stored)
