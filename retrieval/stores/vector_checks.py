"""Checks of vectors: ``as_float32``, the cast every store's input check (``VectorStore.check_vectors``) and every
query entry point uses, which refuses components beyond float32's range; and the integrity of a point store's
vector file: a crc32 per row recorded at each flush (table ``vector_crc`` in points.sqlite, one blob of
little-endian uint32 per ``CRC_CHUNK`` rows), and ``check_vectors``, which ``simlookup verify`` runs: every row
against its checksum, and live rows no upsert could have stored."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from retrieval.errors import InvalidInputError
from retrieval.metric import Metric
from retrieval.stores.vector_file import VectorFile, crcs_of

if TYPE_CHECKING:
    from retrieval.stores.points import PointStore

CRC_SCHEMA = "CREATE TABLE IF NOT EXISTS vector_crc (chunk INTEGER PRIMARY KEY, crcs BLOB NOT NULL)"
CRC_CHUNK = 4096  # rows per vector_crc blob (16 KiB)
UNIT_TOLERANCE = 1e-3  # a stored cosine vector is unit length (normalised on upsert); farther off is damage
FLOAT32_MAX = float(np.finfo(np.float32).max)  # 3.4028235e38


def as_float32(values: Any, what: str = "vector") -> np.ndarray:
    """``values`` as a float32 array, or InvalidInputError: not numeric, or a finite component beyond float32's
    range (±3.4e38), which the cast would turn into inf (numpy only warns). NaN and inf pass through: the
    caller's finiteness check names them."""
    if isinstance(values, np.ndarray) and values.dtype == np.float32:
        return values
    try:
        with np.errstate(over="raise"):
            return np.asarray(values, dtype=np.float32)
    except (FloatingPointError, OverflowError):
        pass
    except (TypeError, ValueError):
        raise InvalidInputError(f"{what}s must be numeric arrays") from None
    rows: list[int] = []
    try:
        wide = np.asarray(values, dtype=np.float64)
        if wide.ndim == 2:
            rows = np.flatnonzero((np.abs(wide) > FLOAT32_MAX).any(axis=1))[:10].tolist()
    except (OverflowError, TypeError, ValueError):
        pass  # an integer beyond float64 too
    where = f"{what} rows {rows} hold" if rows else f"the {what} holds"
    raise InvalidInputError(
        f"{where} a component beyond float32's range (±{FLOAT32_MAX:.4g}): vectors are stored and searched as "
        "float32, where it would become infinite; scale the vector down"
    )


@dataclass
class VectorCheck:
    """What ``PointStore.check_vectors`` found (fids of live points unless said otherwise)."""

    rows: int  # committed rows in the vector file, live or not
    checked: int  # rows compared with their recorded checksum (the rest are not checksummed yet)
    damaged: list[int] = field(default_factory=list)  # live rows that differ from their checksum
    damaged_dead: int = 0  # rows of replaced or deleted points that differ (searches never read them)
    non_finite: list[int] = field(default_factory=list)  # live rows holding NaN or inf
    not_unit: list[int] = field(default_factory=list)  # cosine: live rows of zero or non-unit length


def read_crcs(db: sqlite3.Connection) -> np.ndarray:
    """The recorded checksums of rows 0.. that chunk after chunk cover without a gap (uint32)."""
    parts: list[np.ndarray] = []
    n = 0
    for chunk, blob in db.execute("SELECT chunk, crcs FROM vector_crc ORDER BY chunk"):
        if chunk * CRC_CHUNK != n or not isinstance(blob, bytes) or len(blob) % 4:
            break
        part = np.frombuffer(blob, dtype="<u4").astype(np.uint32)
        parts.append(part)
        n += len(part)
        if len(part) != CRC_CHUNK:
            break
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint32)


def record_crcs(db: sqlite3.Connection, vectors: VectorFile, start: int, end: int) -> None:
    """Record the checksums of the rows committed since the last flush (rewrites the chunks they touch)."""
    first = start // CRC_CHUNK
    cur = db.cursor()
    cur.execute("BEGIN IMMEDIATE")
    try:
        head = b""
        if start % CRC_CHUNK:  # the recorded start of the chunk (recomputed if it went missing meanwhile)
            row = cur.execute("SELECT crcs FROM vector_crc WHERE chunk=?", (first,)).fetchone()
            head = bytes(row[0])[: (start % CRC_CHUNK) * 4] if row and isinstance(row[0], bytes) else b""
            if len(head) != (start % CRC_CHUNK) * 4:
                head, start = b"", first * CRC_CHUNK
        new = vectors.row_crcs(start, end).astype("<u4").tobytes()
        data, width = head + new, CRC_CHUNK * 4
        cur.executemany(
            "INSERT OR REPLACE INTO vector_crc(chunk, crcs) VALUES(?, ?)",
            [(first + i // width, data[i : i + width]) for i in range(0, len(data), width)],
        )
        cur.execute("COMMIT")
    except BaseException:
        cur.execute("ROLLBACK")
        raise


def check_vectors(ps: PointStore) -> VectorCheck:
    """Compare every committed vector row with its recorded checksum, and find live rows that no upsert
    could have stored: NaN or inf, and (cosine) zero or non-unit vectors. Reads the whole vector file."""
    with ps.lock:
        n, live = ps.next_fid, ps.live.copy()
    crcs = ps.recorded_crcs()[:n]
    rep = VectorCheck(rows=n, checked=len(crcs))
    for lo, rows in ps.vectors.iter_rows(0, n):  # one pass over the file
        here = live[lo : lo + len(rows)]
        known = crcs[lo : lo + len(rows)]
        bad = np.zeros(len(rows), dtype=bool)
        bad[: len(known)] = crcs_of(rows[: len(known)]) != known
        rep.damaged += (lo + np.flatnonzero(bad & here)).tolist()
        rep.damaged_dead += int((bad & ~here).sum())
        sq = np.einsum("ij,ij->i", rows, rows, dtype=np.float64)
        ok = np.isfinite(sq)
        rep.non_finite += (lo + np.flatnonzero(~ok & here & ~bad)).tolist()
        if ps.metric is Metric.COSINE:
            off = ok & (np.abs(np.sqrt(np.where(ok, sq, 1.0)) - 1.0) > UNIT_TOLERANCE)
            rep.not_unit += (lo + np.flatnonzero(off & here & ~bad)).tolist()
    return rep
