"""Snapshot compression: ``none`` (``.sql``), ``gzip`` (``.sql.gz``) or ``zstd`` (``.sql.zst``), streamed.

A compressed snapshot is the plain pg_dump script run through ``gzip`` or ``zstd``: the standard tools
(``gunzip -c``, ``zstd -dc``) turn it back into SQL, so it can still be restored by hand. The metadata's
size and sha256 are of the file on disk (the compressed bytes); row counts and the trailer check are of
the SQL inside. Decompression is bounded: a chunk of input never expands into more than ``CHUNK`` bytes
of output at a time, so a hostile file cannot blow up memory.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import BinaryIO

CHUNK = 1 << 20
METHODS = ("none", "gzip", "zstd")
SUFFIXES = {"none": ".sql", "gzip": ".sql.gz", "zstd": ".sql.zst"}
MAGIC = {"gzip": b"\x1f\x8b", "zstd": b"\x28\xb5\x2f\xfd"}
#: What turns the file back into SQL on a shell, for the restore instructions.
BY_HAND = {"gzip": "gunzip -c", "zstd": "zstd -dc"}


def method_of(name: str) -> str:
    return next((m for m in ("gzip", "zstd") if name.endswith(SUFFIXES[m])), "none")


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"unknown compression {method!r} (choose one of {', '.join(METHODS)})")
    return method


class Compressor:
    """``compress(plain) -> bytes`` and ``flush() -> bytes`` for one gzip or zstd snapshot, at the command-line
    tools' default levels, so that a snapshot compresses as ``gzip``/``zstd`` would."""

    def __init__(self, method: str) -> None:
        if method == "gzip":
            obj = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: a gzip header and trailer
        else:
            import zstandard
            # A content checksum in the frame, as the zstd tool writes it, so `zstd -t` can check a file.
            obj = zstandard.ZstdCompressor(level=3, write_checksum=True).compressobj()
        self.compress, self.flush = obj.compress, obj.flush


class HashingReader:
    """A file wrapper that counts (and, given a digest, hashes) every byte read from the file itself,
    compressed or not: progress and integrity are about the file on disk."""

    def __init__(self, fh: BinaryIO, digest=None) -> None:
        self.fh, self.digest, self.read_bytes = fh, digest, 0

    def read(self, n: int = -1) -> bytes:
        data = self.fh.read(n)
        if self.digest is not None:
            self.digest.update(data)
        self.read_bytes += len(data)
        return data


class CorruptCompressedData(ValueError):
    """The compressed stream cannot be decoded (bad data, truncated frame)."""


def iter_plain(raw: HashingReader | BinaryIO, method: str) -> Iterator[bytes]:
    """The SQL inside ``raw`` in chunks of at most ``CHUNK`` bytes. Reads ``raw`` to its end (so a
    HashingReader has hashed the whole file); raises CorruptCompressedData on a damaged or truncated stream."""
    damaged: tuple[type[Exception], ...] = (OSError, EOFError, zlib.error)
    if method == "none":
        reader, damaged = raw, ()  # plain SQL: a read error is the file's, not damaged data
    elif method == "gzip":
        import gzip  # only for reading .sql.gz: not part of every command's start-up
        reader = gzip.GzipFile(fileobj=raw, mode="rb")
    else:
        import zstandard  # only when a .sql.zst is read
        reader = zstandard.ZstdDecompressor().stream_reader(raw, read_size=CHUNK, read_across_frames=True)
        damaged += (zstandard.ZstdError,)
    try:
        while chunk := reader.read(CHUNK):
            yield chunk
    except damaged as exc:
        raise CorruptCompressedData(f"the {method} data is damaged ({exc})") from None
    while raw.read(CHUNK):  # anything after the last frame is still part of the file's hash
        pass
