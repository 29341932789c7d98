"""A payload index saved to one file and read back: what lets a large collection open in seconds.

Layout: ``MAGIC``, the body (roaring bitmaps in their portable serialization, the sorted columns as raw
little-endian arrays), the header (JSON: format, the owner's ``meta``, the body's size and crc32, where each bitmap
and column lies in the body), the header's length (uint64, little-endian) and ``MAGIC`` again. No pickle.
Written through ``manifest.atomic_write`` (a crash leaves the old file or the new one); a file that does not
read back whole (wrong magic, a short body, a crc that differs) is reported as unusable (``None``), and the
owner rebuilds.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from pyroaring import BitMap

from retrieval.payload_index import PayloadIndex, SortedColumn, Verifier
from retrieval.stores.manifest import atomic_write

MAGIC = b"SLPAYIX1"
FORMAT = 1
_KINDS: dict[str, type[np.float64] | type[np.uint64]] = {"num": np.float64, "hash": np.uint64, "extra": np.uint64}


class _Body:
    """Writes buffers one after another, keeping their offsets and the running crc32."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh, self.offset, self.crc = fh, 0, 0

    def put(self, buf: bytes | memoryview) -> list[int]:
        mv = memoryview(buf).cast("B")
        self.fh.write(mv)
        self.crc = zlib.crc32(mv, self.crc)
        where = [self.offset, len(mv)]
        self.offset += len(mv)
        return where


def save(index: PayloadIndex, path: Path, meta: dict[str, Any], extra: dict[str, SortedColumn] | None = None) -> None:
    """Write the index's postings (not its live set: the owner keeps that), the owner's ``extra`` uint64 columns
    (the point store's id hashes) and ``meta`` to ``path``."""
    cols: list[tuple[str, str, SortedColumn]] = [("num", p, c) for p, c in index._nums.items()]
    cols += [("hash", p, c) for p, c in index._hashed.items()]
    cols += [("extra", p, c) for p, c in (extra or {}).items()]
    for _, _, col in cols:
        col.merge()  # the tail folded in: a column is two arrays

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(MAGIC)
            body = _Body(fh)
            maps = [[k[0], k[1], k[2], *body.put(bm.serialize())] for k, bm in index._maps.items()]
            columns = [[kind, p, *body.put(_le(col.vals)), *body.put(_le(col.fids))] for kind, p, col in cols]
            ever = body.put(index._ever.serialize())
            header = json.dumps(
                {
                    "format": FORMAT,
                    "meta": meta,
                    "crc": body.crc,
                    "size": body.offset,
                    "maps": maps,
                    "columns": columns,
                    "ever": ever,
                },
                separators=(",", ":"),
            ).encode()
            fh.write(header + struct.pack("<Q", len(header)) + MAGIC)

    atomic_write(path, write)


def _le(arr: np.ndarray) -> memoryview:
    """The array's bytes in little-endian order (the file's), without a copy on a little-endian machine."""
    a = np.ascontiguousarray(arr)
    return memoryview(a.astype(a.dtype.newbyteorder("<"), copy=False).data).cast("B")


def _header(data: bytes | memoryview) -> dict[str, Any] | None:
    """The header at the end of a file's bytes (None: not a payload index file)."""
    if len(data) < 2 * len(MAGIC) + 8 or bytes(data[: len(MAGIC)]) != MAGIC or bytes(data[-len(MAGIC) :]) != MAGIC:
        return None
    (n,) = struct.unpack("<Q", data[-len(MAGIC) - 8 : -len(MAGIC)])
    end = len(data) - len(MAGIC) - 8
    if n > end - len(MAGIC):
        return None
    header = json.loads(bytes(data[end - n : end]))
    return header if isinstance(header, dict) and header.get("format") == FORMAT else None


def read_meta(path: Path) -> dict[str, Any] | None:
    """The ``meta`` a file was saved with (its header only; None when missing or unreadable)."""
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, 2)
            if size < 2 * len(MAGIC) + 8:
                return None
            fh.seek(size - len(MAGIC) - 8)
            (n,) = struct.unpack("<Q", fh.read(8))
            if n > size - 2 * len(MAGIC) - 8:
                return None
            fh.seek(size - len(MAGIC) - 8 - n)
            header = json.loads(fh.read(n))
    except (OSError, ValueError, struct.error):
        return None
    meta = header.get("meta") if isinstance(header, dict) and header.get("format") == FORMAT else None
    return meta if isinstance(meta, dict) else None


Loaded = tuple[PayloadIndex, dict[str, SortedColumn], dict[str, Any]]


def load(path: Path, verify: Verifier | None) -> Loaded | None:
    """The index saved at ``path`` (every fid it holds postings of live until the owner says otherwise), the
    extra columns and the meta; None when there is no file or it does not read back whole."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    try:
        return _parse(data, verify)
    except (ValueError, KeyError, TypeError, IndexError, struct.error):
        return None


def _parse(data: bytes, verify: Verifier | None) -> Loaded | None:
    header = _header(data)
    if header is None:
        return None
    body = memoryview(data)[len(MAGIC) : len(MAGIC) + header["size"]]
    if len(body) != header["size"] or zlib.crc32(body) != header["crc"]:
        return None
    index = PayloadIndex(verify)
    extra: dict[str, SortedColumn] = {}
    for kind, p, value, off, size in header["maps"]:
        index._maps[(kind, p, value)] = BitMap.deserialize(bytes(body[off : off + size]))
        if kind == "str":
            index._str_values[p] += 1
    for kind, p, voff, vsize, foff, fsize in header["columns"]:
        dtype = np.dtype(_KINDS[kind]).newbyteorder("<")
        col = SortedColumn(_KINDS[kind])
        vals = np.frombuffer(body[voff : voff + vsize], dtype=dtype).astype(col.dtype)
        fids = np.frombuffer(body[foff : foff + fsize], dtype="<u4").astype(np.uint32)
        if len(vals) != len(fids):
            return None
        col.set_sorted(vals, fids)
        (index._nums if kind == "num" else index._hashed if kind == "hash" else extra)[p] = col
    off, size = header["ever"]
    index._ever = BitMap.deserialize(bytes(body[off : off + size]))
    index.set_live(BitMap(index._ever))
    meta = header["meta"]
    return (index, extra, meta) if isinstance(meta, dict) else None
