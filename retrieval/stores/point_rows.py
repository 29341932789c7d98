"""The rows of a point store in ``points.sqlite``, read on demand: the SQL a ``PointStore`` runs besides its writes.

Tables: ``points`` (fid INTEGER PRIMARY KEY → string id, payload JSON), ``meta`` (dim, metric, seq, next_fid,
generation, edits, live_bits), ``live_bits`` (the live fids: one blob of ``LIVE_CHUNK`` bits per chunk, bit order
little, written in the same transaction as the rows, so a reader reads the live set of one committed state in
a few blobs; ``meta.live_bits`` names the seq they describe: a store another program wrote since is read from its
rows), ``vector_crc`` (``vector_checks``) and ``renumber`` (the last compaction's). A trigger counts
``UPDATE``s of ``points`` in ``meta.edits``: the store itself never updates a row (a changed point is a new row),
so a changed count means a hand edit, and the saved payload index no longer describes the rows.

A read of rows returns them with the generation and seq the database holds at that moment, in one statement
(one snapshot): the caller compares them with its own and tells a read-only snapshot that fell behind a writer
(``SnapshotMovedError``: reload, then read again) from a row that is gone for no reason (``CorruptIndexError``).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.errors import CorruptIndexError, StoreError

SCHEMA = """
CREATE TABLE IF NOT EXISTS points (fid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, payload TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
LIVE_SCHEMA = "CREATE TABLE IF NOT EXISTS live_bits (chunk INTEGER PRIMARY KEY, bits BLOB NOT NULL)"
EDITS_TRIGGER = (
    "CREATE TRIGGER IF NOT EXISTS points_edited AFTER UPDATE ON points BEGIN "
    "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'edits'; END"
)
RENUMBER_SCHEMA = "CREATE TABLE IF NOT EXISTS renumber (generation INTEGER PRIMARY KEY, old_fids BLOB NOT NULL)"
LIVE_CHUNK = 1 << 16  # fids per live_bits blob (8 KiB)
READ_BATCH = 20_000  # rows per fetch when rows are streamed (a rebuild of the payload index)
_STATE = "SELECT -1 - (key = 'seq'), value, NULL FROM meta WHERE key IN ('generation', 'seq')"
_BY_FID = f"SELECT fid, id, payload FROM points WHERE fid IN (SELECT value FROM json_each(?)) UNION ALL {_STATE}"
_BY_ID = f"SELECT fid, id, payload FROM points WHERE id IN (SELECT value FROM json_each(?)) UNION ALL {_STATE}"


class SnapshotMovedError(StoreError):
    """A read-only snapshot asked for rows a writer has replaced, deleted or renumbered since the snapshot was
    read: the reader reloads and asks again (the FAISS store does it; no caller sees this error)."""


Rows = dict[int, tuple[str, str]]  # fid → (id, payload JSON text)


def read_rows(db: sqlite3.Connection, fids: Sequence[int]) -> tuple[Rows, int, int]:
    """The rows of these fids, and (generation, seq) of the database at that moment (one statement)."""
    return _rows(db.execute(_BY_FID, (json.dumps(list(fids)),)))


def read_ids(db: sqlite3.Connection, ids: Sequence[str]) -> tuple[Rows, int, int]:
    """The rows of these string ids (keyed by fid), and (generation, seq) at that moment."""
    return _rows(db.execute(_BY_ID, (json.dumps(list(ids)),)))


def read_live_ids(db: sqlite3.Connection, live: np.ndarray) -> tuple[set[str], int, int]:
    """The ids of the rows whose fid is live in ``live`` (bool per fid), streamed (no row kept but its id), and
    (generation, seq) of the database at that moment (one read transaction)."""
    db.execute("BEGIN")
    try:
        state = dict(db.execute("SELECT key, value FROM meta WHERE key IN ('generation', 'seq')").fetchall())
        n = len(live)
        out = {pid for fid, pid in db.execute("SELECT fid, id FROM points") if fid < n and live[fid]}
    finally:
        db.execute("COMMIT")
    return out, int(state.get("generation", 0)), int(state.get("seq", -1))


def _rows(cur: sqlite3.Cursor) -> tuple[Rows, int, int]:
    rows: Rows = {}
    gen = seq = -1
    for fid, pid, text in cur:
        if fid >= 0:
            rows[fid] = (pid, text or "")
        elif fid == -1:
            gen = int(pid)
        else:
            seq = int(pid)
    return rows, gen, seq


def stream_rows(db: sqlite3.Connection, start: int, end: int) -> Iterator[list[tuple[int, str, str]]]:
    """Batches of (fid, id, payload) of the rows start <= fid < end, in fid order."""
    cur = db.execute("SELECT fid, id, payload FROM points WHERE fid >= ? AND fid < ? ORDER BY fid", (start, end))
    while batch := cur.fetchmany(READ_BATCH):
        yield batch


def read_live(db: sqlite3.Connection, next_fid: int, seq: int) -> np.ndarray | None:
    """bool per fid below next_fid from ``live_bits`` (None when they do not describe the rows at ``seq``: a store
    written before them, or by a simlookup that did not keep them)."""
    row = db.execute("SELECT value FROM meta WHERE key = 'live_bits'").fetchone()
    if row is None or row[0] != str(seq):
        return None
    chunks = (next_fid + LIVE_CHUNK - 1) // LIVE_CHUNK
    packed = np.zeros(chunks * LIVE_CHUNK // 8, dtype=np.uint8)
    width = LIVE_CHUNK // 8
    for chunk, blob in db.execute("SELECT chunk, bits FROM live_bits WHERE chunk < ?", (chunks,)):
        if not isinstance(blob, bytes) or len(blob) != width or chunk < 0:
            raise ValueError(f"live_bits chunk {chunk} is malformed")
        packed[chunk * width : (chunk + 1) * width] = np.frombuffer(blob, dtype=np.uint8)
    return np.unpackbits(packed, bitorder="little")[:next_fid].astype(bool)


def live_from_rows(db: sqlite3.Connection, next_fid: int) -> np.ndarray:
    """bool per fid below next_fid, from the fids the rows hold (a store written before ``live_bits``)."""
    fids = np.fromiter((r[0] for r in db.execute("SELECT fid FROM points WHERE fid < ?", (next_fid,))), np.int64)
    live = np.zeros(next_fid, dtype=bool)
    live[fids[fids >= 0]] = True
    return live


def live_rows(live: np.ndarray, off: np.ndarray, start: int, end: int) -> list[tuple[int, bytes]]:
    """(chunk, bits) rows of ``live_bits`` for the chunks a write changes, as they are once the fids ``off`` die
    and start..end are born (``live``: bool per fid before the write; only those chunks are copied)."""
    born = np.arange(start // LIVE_CHUNK, (end - 1) // LIVE_CHUNK + 1) if end > start else np.zeros(0, np.int64)
    out = []
    for c in np.unique(np.concatenate([np.asarray(off, dtype=np.int64) // LIVE_CHUNK, born])).tolist():
        lo = c * LIVE_CHUNK
        seg = np.zeros(LIVE_CHUNK, dtype=bool)
        part = live[lo : lo + LIVE_CHUNK]
        seg[: len(part)] = part
        seg[off[(off >= lo) & (off < lo + LIVE_CHUNK)] - lo] = False
        a, b = max(start, lo), min(end, lo + LIVE_CHUNK)
        if b > a:
            seg[a - lo : b - lo] = True
        out.append((c, np.packbits(seg, bitorder="little").tobytes()))
    return out


def write_live(cur: sqlite3.Cursor, rows: list[tuple[int, bytes]]) -> None:
    """Record live-bits rows (inside the caller's transaction)."""
    cur.executemany("INSERT OR REPLACE INTO live_bits(chunk, bits) VALUES(?, ?)", rows)


def record_all_live(cur: sqlite3.Cursor, live: np.ndarray, seq: int) -> None:
    """Rewrite ``live_bits`` whole from a live array, as the rows are at ``seq`` (a store upgraded, or compacted)."""
    cur.execute(LIVE_SCHEMA)
    cur.execute("DELETE FROM live_bits")
    for c in range((len(live) + LIVE_CHUNK - 1) // LIVE_CHUNK):
        write_live(cur, _chunk(live, c))
    mark_live(cur, seq)


def mark_live(cur: sqlite3.Cursor, seq: int) -> None:
    """Say that ``live_bits`` describe the rows at ``seq`` (every write of this store keeps them)."""
    cur.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('live_bits', ?)", (str(seq),))


def _chunk(live: np.ndarray, c: int) -> list[tuple[int, bytes]]:
    seg = np.zeros(LIVE_CHUNK, dtype=bool)
    part = live[c * LIVE_CHUNK : (c + 1) * LIVE_CHUNK]
    seg[: len(part)] = part
    return [(c, np.packbits(seg, bitorder="little").tobytes())]


def read_renumbering(db: sqlite3.Connection, generation: int, next_fid: int) -> np.ndarray | None:
    """The old fid of each fid of ``generation`` as its compaction recorded it (None: no usable record)."""
    try:
        row = db.execute("SELECT old_fids FROM renumber WHERE generation=?", (generation,)).fetchone()
    except sqlite3.Error:
        return None
    if row is None or not isinstance(row[0], bytes) or len(row[0]) % 8 or len(row[0]) > 8 * next_fid:
        return None
    old = np.frombuffer(row[0], dtype="<i8").astype(np.int64)
    return old if len(old) < 2 or bool((np.diff(old) > 0).all()) else None


def parse_payload(sqlite_path: Path, fid: int, pid: str, text: str) -> Any:
    """A row's payload, or the error that names the row whose payload is not a JSON object, and the repair."""
    try:
        value = json.loads(text)
        why = "" if isinstance(value, dict) else f"a JSON {type(value).__name__}"
    except (ValueError, TypeError) as exc:
        why = str(exc)
    if why:
        raise CorruptIndexError(
            f"point store {sqlite_path}: the payload of row fid {fid} (id {pid!r}) is not a JSON "
            f'object ({why}); repair: set it to {{}} (`sqlite3 {sqlite_path} "UPDATE points SET '
            f"payload='{{}}' WHERE fid={fid}\"`), then re-run the ingest, which rewrites that point, or "
            f"delete {sqlite_path.parent.parent} and ingest again"
        )
    return value


def stored_seq(folder: Path) -> int | None:
    """The sequence number the point store's last committed write left on disk (None: unreadable)."""
    try:
        db = sqlite3.connect(f"file:{folder / 'points.sqlite'}?mode=ro", uri=True)
        try:
            row = db.execute("SELECT value FROM meta WHERE key='seq'").fetchone()
        finally:
            db.close()
        return int(row[0]) if row else None
    except (sqlite3.Error, ValueError):
        return None


def stored_generation(folder: Path) -> int | None:
    """The generation (compactions so far) of the point store on disk (None: unreadable)."""
    try:
        db = sqlite3.connect(f"file:{folder / 'points.sqlite'}?mode=ro", uri=True)
        try:
            row = db.execute("SELECT value FROM meta WHERE key='generation'").fetchone()
        finally:
            db.close()
        return int(row[0]) if row else 0
    except (sqlite3.Error, ValueError):
        return None
