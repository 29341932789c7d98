"""SQLite sidecar of a FAISS store: string id ↔ int64 faiss id, payloads, float vectors, tombstones.

It is the store's source of truth: the FAISS index can always be rebuilt from it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.filters import Filter

SCHEMA = """
CREATE TABLE IF NOT EXISTS points (
  fid INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  payload TEXT NOT NULL,
  vector BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS tombstones (fid INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS fields (name TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class Sidecar:
    """Thread-safe access to one store's SQLite file."""

    def __init__(self, path: Path, dim: int, read_only: bool = False) -> None:
        self.path = path
        self.dim = dim
        uri = f"file:{path}?mode=ro" if read_only else f"file:{path}"
        self._db = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
        self._lock = threading.RLock()
        self._rows: dict[int, tuple[str, dict[str, Any]]] | None = None
        if not read_only:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)

    # ---- transactions ----
    def write(self, fn: Any) -> Any:
        """Run fn(cursor) in one IMMEDIATE transaction and bump the change sequence."""
        with self._lock:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                out = fn(cur)
                cur.execute(
                    "INSERT INTO meta(key, value) VALUES('seq', '1') "
                    "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
                )
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            return out

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    @property
    def seq(self) -> int:
        rows = self.query("SELECT value FROM meta WHERE key='seq'")
        return int(rows[0][0]) if rows else 0

    # ---- reads ----
    def count(self) -> int:
        return int(self.query("SELECT COUNT(*) FROM points")[0][0])

    def ids(self) -> set[str]:
        return {r[0] for r in self.query("SELECT id FROM points")}

    def has_field(self, name: str) -> bool:
        return bool(self.query("SELECT 1 FROM fields WHERE name=?", (name,)))

    def tombstones(self) -> np.ndarray:
        return np.array([r[0] for r in self.query("SELECT fid FROM tombstones")], dtype=np.int64)

    def all_vectors(self, batch: int = 50_000) -> Iterable[tuple[np.ndarray, np.ndarray]]:
        """(fids, vectors) in fid order, in chunks."""
        last = -1
        while True:
            rows = self.query("SELECT fid, vector FROM points WHERE fid > ? ORDER BY fid LIMIT ?", (last, batch))
            if not rows:
                return
            fids = np.array([r[0] for r in rows], dtype=np.int64)
            vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), self.dim)
            yield fids, vecs
            last = int(fids[-1])

    def vectors_for(self, fids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Stored vectors of these fids (those that exist), as (fids, vectors)."""
        out_f: list[int] = []
        blobs: list[bytes] = []
        for chunk in _chunks(list(map(int, fids)), 900):
            marks = ",".join("?" * len(chunk))
            for fid, blob in self.query(f"SELECT fid, vector FROM points WHERE fid IN ({marks})", chunk):
                out_f.append(fid)
                blobs.append(blob)
        vecs = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(out_f), self.dim)
        return np.array(out_f, dtype=np.int64), vecs

    def rows_for_fids(self, fids: Sequence[int]) -> dict[int, tuple[str, dict[str, Any]]]:
        """(id, payload) of each fid; from the in-RAM row cache when it is enabled."""
        out: dict[int, tuple[str, dict[str, Any]]] = {}
        if self._rows is not None:
            rows = self._rows
            for fid in fids:
                row = rows.get(int(fid))
                if row is not None:
                    out[int(fid)] = (row[0], dict(row[1]))  # a copy: callers may mutate their payload
            return out
        for chunk in _chunks(list(map(int, fids)), 900):
            marks = ",".join("?" * len(chunk))
            for fid, pid, payload in self.query(f"SELECT fid, id, payload FROM points WHERE fid IN ({marks})", chunk):
                out[fid] = (pid, json.loads(payload))
        return out

    def cache_rows(self) -> None:
        """Keep every (fid → id, payload JSON) in RAM, as Qdrant keeps in-memory payloads: no SQLite per hit."""
        self._rows = {fid: (pid, json.loads(pl)) for fid, pid, pl in self.query("SELECT fid, id, payload FROM points")}

    def cache_put(self, rows: Iterable[tuple[int, str, str]]) -> None:
        if self._rows is not None:
            for fid, pid, pl in rows:
                self._rows[fid] = (pid, json.loads(pl))

    def cache_drop(self, fids: Iterable[int]) -> None:
        if self._rows is not None:
            for fid in fids:
                self._rows.pop(int(fid), None)

    def rows_for_ids(self, ids: Sequence[str]) -> dict[str, tuple[int, bytes, str]]:
        out: dict[str, tuple[int, bytes, str]] = {}
        for chunk in _chunks(list(ids), 900):
            marks = ",".join("?" * len(chunk))
            for fid, pid, payload, vec in self.query(
                f"SELECT fid, id, payload, vector FROM points WHERE id IN ({marks})", chunk
            ):
                out[pid] = (fid, vec, payload)
        return out

    def matching_fids(self, flt: Filter) -> np.ndarray:
        """fids of live points whose payload satisfies the filter (the reference evaluation over every row)."""
        if self._rows is not None:
            rows = ((fid, pl) for fid, (_, pl) in self._rows.items())
        else:
            rows = ((fid, json.loads(pl)) for fid, pl in self.query("SELECT fid, payload FROM points"))
        return np.array(sorted(fid for fid, pl in rows if flt.matches(pl)), dtype=np.int64)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _chunks(seq: list[Any], n: int) -> Iterable[list[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]
