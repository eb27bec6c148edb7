"""Compression of stored event state (select with ``COMPRESSOR_TOPIC``)."""

from __future__ import annotations

import zlib

from eventsourcing.persistence import Compressor

__all__ = ["Compressor", "ZlibCompressor"]


class ZlibCompressor:
    """Compresses with zlib: ``COMPRESSOR_TOPIC=eventsourcing.compressor:ZlibCompressor``."""

    def compress(self, data: bytes) -> bytes:
        return zlib.compress(data)

    def decompress(self, data: bytes) -> bytes:
        return zlib.decompress(data)
