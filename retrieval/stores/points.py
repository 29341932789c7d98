"""The point store of one FAISS collection, shared by all its index kinds.

Under ``<data_dir>/faiss/<name>/points/``: ``points.sqlite`` (fid → string id, payload JSON, the live set and the
meta; ``point_rows``), the vector file, ``vectors.f32`` (generation 0) or ``vectors.<generation>.f32`` (float32
row ``fid`` = the vector of point ``fid``, memory-mapped), and ``payloads.idx`` (the payload index and the id
hashes, saved by the writer; ``payload_index_file``). fids only grow: a replaced point gets a new fid, so every
index can tell old from new, and the old row stays as garbage in the vector file until a compaction
(``point_compact``: the live points renumbered 0..n-1; each open kind is told, ``on_renumber``, and remaps; a
kind's manifest records the generation its index numbers, so a kind opened later remaps or rebuilds itself).

RAM holds a few bytes per point, no Python object per point: the live set (one bool per fid), the payload index
(bitmaps and sorted arrays, ``retrieval.payload_index``) and the ids' 64-bit hashes with their fids (a sorted
array: the fid of an id is found without SQLite, and a new id costs no read). Ids and payloads are read from
SQLite on demand, for the hits of a search, a fetch or an upsert's changed points. Opening reads the live set (a
few blobs), the saved index and the rows written since it was saved (the writer saves it at close, and at a flush
once a sixteenth of the rows are not in it): seconds for ten million points. A store without a usable file (none
yet, two compactions behind, rows edited by hand: a trigger counts ``UPDATE``s) rebuilds it from every row; one
saved before the last compaction is renumbered with its record.

A read-only store is a snapshot: its live set and index are those of one committed state, its vector file the one
it opened. Rows read later come from the database as it is then: a row of a live fid is immutable while the fid
lives, so a read either finds the snapshot's row or tells that a writer replaced, deleted or renumbered it since
(``SnapshotMovedError``): the FAISS store then reloads and reads again.

One ``PointStore`` object per folder and process (a refcounted registry): all kinds a process opens share it,
each write happens once and is handed to every open kind (``listen``). One writer process per collection (an
exclusive lock on ``points/.lock``); read-only opens take no lock and read a snapshot (or share this process's
writer). Integrity: every flush records the crc32 of each vector row written since the last one (``vector_crc``,
``vector_checks``); committed rows never change, so ``check_vectors`` (``simlookup verify``) can compare every
row, beside or after a writer.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from retrieval import payload_index_file as pif
from retrieval.disk import file_bytes
from retrieval.errors import CorruptIndexError, ManifestMismatchError, StoreLockedError, StoreNotFoundError
from retrieval.filters import Filter
from retrieval.metric import Metric
from retrieval.payload_index import PayloadIndex, SortedColumn, bitmap, str_hash
from retrieval.stores import point_rows as pr
from retrieval.stores.locks import lock_exclusive, unlock
from retrieval.stores.payloads import Payload, canonical, own_copy
from retrieval.stores.point_compact import CompactReport, compact
from retrieval.stores.point_rows import SnapshotMovedError, stored_generation, stored_seq
from retrieval.stores.vector_checks import CRC_SCHEMA, VectorCheck, check_vectors, read_crcs, record_crcs
from retrieval.stores.vector_file import VectorFile, vector_file_name

__all__ = ["ChangeListener", "CompactReport", "PointStore", "SnapshotMovedError", "stored_generation", "stored_seq"]

_LOAD_TRIES = 20  # read-only opens retried when a compaction replaced the vector file meanwhile
POINTS_FORMAT = "1"
INDEX_FILE = "payloads.idx"
INDEX_SAVE_MIN = 50_000  # rows a flush leaves out of the saved index before it saves it again (or 1/16 of them)


class ChangeListener(Protocol):
    """An open index kind: told about every committed write, under the store's lock."""

    def on_change(self, added: np.ndarray, vectors: np.ndarray, removed: np.ndarray) -> None: ...

    def on_renumber(self, old_fids: np.ndarray) -> None:
        """A compaction renumbered the points: new fid i is ``old_fids[i]`` (the live fids, sorted)."""


class PointStore:
    """ids ↔ int64 fids, payloads and vectors of one collection; see the module docstring."""

    def __init__(self, folder: Path, repair: str, read_only: bool) -> None:
        self.folder = folder
        self.sqlite_path = folder / "points.sqlite"
        self.index_path = folder / INDEX_FILE
        self.vector_path = folder / vector_file_name(0)  # the current generation's, once loaded
        self.generation = 0
        self.read_only = read_only
        self.repair = repair
        self.lock = threading.RLock()
        self._listeners: list[ChangeListener] = []
        self._refs = 0
        self._lockfile: Any = None
        self._db: sqlite3.Connection | None = None
        self._loaded = False
        self._saved: tuple[int, int] | None = None  # (generation, rows) the saved payload index describes
        self._crc_rows = 0  # rows 0.. whose checksums are recorded (the writer's count)
        if not self.sqlite_path.exists():
            raise StoreNotFoundError(f"point store {self.sqlite_path} is missing; {repair}")
        if not read_only:
            self._lockfile = lock_exclusive(
                folder / ".lock",
                f"FAISS collection {folder.parent} is open for writing in another process "
                "(read-only opens are allowed alongside)",
            )
        try:
            self._load_retrying()
        except BaseException:
            self._close_files()
            raise

    # ---- opening ----
    @staticmethod
    def create(folder: Path, dim: int, metric: Metric) -> None:
        """Create an empty point store (a no-op when one exists)."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "points.sqlite"
        if path.exists():
            return
        tmp = folder / ".points.sqlite.tmp"
        tmp.unlink(missing_ok=True)
        db = sqlite3.connect(tmp)
        try:
            db.executescript(f"{pr.SCHEMA}{CRC_SCHEMA};{pr.LIVE_SCHEMA};{pr.EDITS_TRIGGER};")
            db.executemany(
                "INSERT INTO meta(key, value) VALUES(?, ?)",
                [
                    ("format", POINTS_FORMAT),
                    ("dim", str(dim)),
                    ("metric", metric.value),
                    ("seq", "0"),
                    ("next_fid", "0"),
                    ("generation", "0"),
                    ("edits", "0"),
                    ("live_bits", "0"),
                ],
            )
            db.commit()
        finally:
            db.close()
        tmp.replace(path)  # a crash leaves either no store or a whole empty one

    def _connect(self) -> sqlite3.Connection:
        uri = f"file:{self.sqlite_path}?mode=ro" if self.read_only else f"file:{self.sqlite_path}"
        db = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
        if not self.read_only:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
        return db

    def _load_retrying(self) -> None:
        """``_load``; a read-only open whose vector file a compaction deleted between reading the meta and
        opening the file reads the new generation instead (a writer has nothing to retry: it holds the lock)."""
        for attempt in range(_LOAD_TRIES):
            try:
                self._load()
                return
            except (CorruptIndexError, FileNotFoundError):
                self._close_files()
                last = not self.read_only or attempt == _LOAD_TRIES - 1
                if last or stored_generation(self.folder) == self.generation:
                    raise

    def _load(self) -> None:
        """Read one committed state in one read transaction: meta, live set, vector file, payload index."""
        try:
            self._db = db = self._connect()
            db.execute("BEGIN")
            try:
                meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
                self._read_meta(meta)
                live = pr.read_live(db, self.next_fid, self.seq)
                upgrade = live is None
                if live is None:  # a store written before live_bits (or by one without): its writer records them below
                    live = pr.live_from_rows(db, self.next_fid)
                self.vector_path = self.folder / vector_file_name(self.generation)
                self.vectors = VectorFile(self.vector_path, self.dim, self.next_fid, not self.read_only, self.repair)
                self._load_index(db, live)
            finally:
                db.execute("COMMIT")
            if not self.read_only:
                self._upgrade(db, upgrade)
        except (sqlite3.Error, ValueError) as exc:
            raise CorruptIndexError(f"point store {self.sqlite_path} is unreadable ({exc}); {self.repair}") from None
        if not self.read_only:  # files of other generations: the old one of a compaction, or an orphan of a kill
            for other in self.folder.glob("vectors*.f32"):
                if other.name != self.vector_path.name:
                    other.unlink(missing_ok=True)
        self._loaded = True

    def _read_meta(self, meta: dict[str, str]) -> None:
        try:
            self.dim = int(meta["dim"])
            self.metric = Metric.parse(meta["metric"])
            self.seq = int(meta["seq"])
            self.next_fid = int(meta["next_fid"])
            self.generation = int(meta.get("generation", 0))
            self._edits = int(meta.get("edits", 0))
        except (KeyError, ValueError) as exc:
            raise CorruptIndexError(
                f"point store {self.sqlite_path} has no valid meta ({exc}); {self.repair}"
            ) from None
        if self.next_fid < 0:
            raise CorruptIndexError(f"point store {self.sqlite_path}: next_fid {self.next_fid} < 0; {self.repair}")

    def _load_index(self, db: sqlite3.Connection, live: np.ndarray) -> None:
        """The payload index and id hashes: the saved file when it describes these rows (the rows written since
        added), else rebuilt from every row. Runs inside the load's read transaction."""
        loaded = pif.load(self.index_path, self._verify) if self.index_path.exists() else None
        start, usable = 0, False
        if loaded is not None:
            index, extra, meta = loaded
            covered = meta.get("covered")
            ids = extra.get("ids")
            usable = ids is not None and isinstance(covered, int) and meta.get("edits") == self._edits
            old = None  # saved before the last compaction: renumbered with its record
            if usable and meta.get("generation") == self.generation - 1 and isinstance(covered, int):
                old = pr.read_renumbering(db, self.generation, self.next_fid)
                usable = old is not None
            usable = usable and (meta.get("generation") == self.generation or old is not None)
            if usable and ids is not None and isinstance(covered, int):
                if old is not None:
                    index.renumber(old)
                    ids.renumber(old)
                    covered = int(np.searchsorted(old, covered))  # the saved rows' new fids are those below
                if self.read_only or covered <= self.next_fid:  # a writer never builds on fids it may reuse
                    self.index, self._ids, start = index, ids, min(covered, self.next_fid)
                else:
                    usable = False
        if not usable:
            self.index, self._ids = PayloadIndex(self._verify), SortedColumn(np.uint64)
        for batch in pr.stream_rows(db, start, self.next_fid):
            fids = np.fromiter((r[0] for r in batch), np.int64, len(batch))
            if len(fids) and (fids[0] < 0 or not live[fids].all()):
                raise CorruptIndexError(
                    f"point store {self.sqlite_path}: its rows and live bits disagree; {self.repair}"
                )
            payloads = [pr.parse_payload(self.sqlite_path, fid, pid, text) for fid, pid, text in batch]
            self.index.add(fids, payloads)
            self._ids.add(fids, np.fromiter((str_hash(r[1]) for r in batch), np.uint64, len(batch)))
        self._live = np.zeros(max(self.next_fid, 1024), dtype=bool)
        self._live[: self.next_fid] = live
        self.count = int(live.sum())
        self.index.set_live(bitmap(np.flatnonzero(live)))
        self._saved = (self.generation, self.next_fid) if usable and start == self.next_fid else None

    def _upgrade(self, db: sqlite3.Connection, live_bits: bool) -> None:
        """A writer brings a store written by an older simlookup up to date: live bits, the edit counter, and
        checksums of its vector rows (recorded at its next flush)."""
        cur = db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            cur.execute(CRC_SCHEMA)
            if live_bits:
                pr.record_all_live(cur, self.live, self.seq)
            cur.execute("INSERT OR IGNORE INTO meta(key, value) VALUES('edits', ?)", (str(self._edits),))
            cur.execute(pr.EDITS_TRIGGER)
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        try:
            self._crc_rows = min(len(read_crcs(db)), self.next_fid)
        except (sqlite3.Error, ValueError) as exc:
            raise CorruptIndexError(
                f"point store {self.sqlite_path}: its vector checksums are unreadable ({exc}); {self.repair}"
            ) from None

    def check(self, dim: int, metric: Metric, where: Path | None) -> None:
        """Refuse a kind whose manifest (``where``; None for a new kind) disagrees with the vectors stored here."""
        if where is None and (dim != self.dim or metric is not self.metric):
            raise ManifestMismatchError(
                f"the FAISS collection {self.folder.parent} holds {self.dim}-d {self.metric.value} vectors, "
                f"asked for {dim}-d {metric.value}: use another name, or the model it was built with"
            )
        if dim != self.dim:
            raise CorruptIndexError(
                f"{where} says dim {dim} but the point store {self.sqlite_path} holds {self.dim}-d vectors "
                f"(an edited manifest?); {self.repair}"
            )
        if metric is not self.metric:
            raise ManifestMismatchError(
                f"{where} says metric {metric.value} but the point store {self.sqlite_path} holds "
                f"{self.metric.value} vectors; {self.repair}"
            )

    # ---- reads: the live set, the index and the vector file in RAM / mapped; rows from SQLite ----
    def __len__(self) -> int:
        return self.count

    @property
    def live(self) -> np.ndarray:
        """bool per fid below next_fid: True for a live point."""
        return self._live[: self.next_fid]

    def live_fids(self) -> np.ndarray:
        return np.flatnonzero(self.live).astype(np.int64)

    def match(self, flt: Filter) -> np.ndarray:
        """Sorted fids of the live points matching the filter (cost ∝ matches)."""
        return self.index.match(flt)

    def vectors_of(self, fids: np.ndarray) -> np.ndarray:
        return self.vectors.view()[fids]

    def rows_of(self, fids: Iterable[int]) -> pr.Rows:
        """fid → (id, payload JSON text) of the live fids among these (others are left out: no such point)."""
        arr = np.unique(np.fromiter(fids, dtype=np.int64))
        arr = arr[(arr >= 0) & (arr < self.next_fid)]
        return self._read(arr[self._live[arr]]) if len(arr) else {}

    def payload(self, fid: int, row: tuple[str, str]) -> Payload:
        """The payload of a row ``rows_of`` returned (a fresh object: the caller's own)."""
        payload: Payload = pr.parse_payload(self.sqlite_path, fid, row[0], row[1])
        return payload

    def payloads(self, fids: Sequence[int] | np.ndarray) -> list[Payload]:
        """The payloads of these live fids, in their order (SnapshotMovedError / CorruptIndexError when one is
        not live here or its row is gone)."""
        arr = np.asarray(fids, dtype=np.int64).reshape(-1)
        if len(arr) and (arr.min() < 0 or arr.max() >= self.next_fid or not self._live[arr].all()):
            raise CorruptIndexError(f"point store {self.sqlite_path}: asked for the payload of a fid not live")
        rows = self._read(np.unique(arr)) if len(arr) else {}
        return [self.payload(f, rows[f]) for f in arr.tolist()]

    def _verify(self, fids: np.ndarray) -> list[Payload]:
        return self.payloads(fids)

    def _read(self, fids: np.ndarray) -> pr.Rows:
        """The rows of these live fids, checked against this store's state (see the module docstring)."""
        if self._db is None:
            raise StoreLockedError(f"point store {self.sqlite_path} is closed")
        with self.lock:
            rows, gen, seq = pr.read_rows(self._db, fids.tolist())
        if gen == self.generation and len(rows) == len(fids):
            return rows
        if self.read_only and (gen != self.generation or seq != self.seq):
            raise SnapshotMovedError(
                f"point store {self.sqlite_path} was changed by its writer since this read-only snapshot was read "
                f"(seq {self.seq} → {seq}): reload it"
            )
        missing = [f for f in fids.tolist() if f not in rows][:5]
        raise CorruptIndexError(
            f"point store {self.sqlite_path}: the rows of live fids {missing} are missing (generation "
            f"{gen}, expected {self.generation}; deleted by another program?); {self.repair}"
        )

    def lookup(self, ids: Sequence[str], hashes: np.ndarray | None = None) -> dict[str, tuple[int, str]]:
        """id → (fid, payload JSON text) of the live points among these ids: candidates by hash (``hashes``: the
        ids' ``str_hash`` when the caller has them), then their rows."""
        if not ids or not self.count:
            return {}
        if hashes is None:
            hashes = np.fromiter((str_hash(i) for i in ids), np.uint64, len(ids))
        cand = self._ids.find(hashes)
        cand = cand[cand < self.next_fid]
        cand = cand[self._live[cand]]
        if not len(cand):
            return {}
        wanted = set(ids)
        return {pid: (fid, text) for fid, (pid, text) in self._read(cand).items() if pid in wanted}

    def all_ids(self) -> set[str]:
        """Every live point's id."""
        if self._db is None:
            raise StoreLockedError(f"point store {self.sqlite_path} is closed")
        with self.lock:
            out, gen, seq = pr.read_live_ids(self._db, self.live)
        if gen == self.generation and len(out) == self.count:
            return out
        if self.read_only and (gen != self.generation or seq != self.seq):
            raise SnapshotMovedError(f"point store {self.sqlite_path} was changed by its writer: reload it")
        raise CorruptIndexError(
            f"point store {self.sqlite_path} holds {len(out)} rows of its {self.count} live points; {self.repair}"
        )

    def id_of(self, fid: int) -> str | None:
        """The string id of a live fid (None for a replaced or deleted one, or one that cannot be read now)."""
        try:
            row = self.rows_of([fid]).get(fid)
        except (SnapshotMovedError, CorruptIndexError):
            return None
        return None if row is None else row[0]

    def garbage(self) -> int:
        """Vector-file rows of replaced or deleted points (what ``compact`` reclaims)."""
        return self.next_fid - self.count

    def garbage_fraction(self) -> float:
        """The share of the vector file's rows that are garbage (0.0 for an empty store)."""
        return self.garbage() / self.next_fid if self.next_fid else 0.0

    def renumbering(self, generation: int) -> np.ndarray | None:
        """The old fid of each fid of this generation, when ``generation`` is the one before it (the last
        compaction's record); None otherwise (a kind that far behind rebuilds its index)."""
        if generation != self.generation - 1:
            return None
        db = sqlite3.connect(f"file:{self.sqlite_path}?mode=ro", uri=True)
        try:
            return pr.read_renumbering(db, self.generation, self.next_fid)
        finally:
            db.close()

    # ---- writes ----
    def listen(self, who: ChangeListener) -> None:
        with self.lock:
            self._listeners.append(who)

    def unlisten(self, who: ChangeListener) -> None:
        with self.lock:
            self._listeners = [x for x in self._listeners if x is not who]

    def _write(self, fn: Callable[[sqlite3.Cursor], object]) -> None:
        if self.read_only or self._db is None:
            raise StoreLockedError(f"point store {self.sqlite_path} is open read-only")
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            fn(cur)
            cur.execute("UPDATE meta SET value=? WHERE key='seq'", (str(self.seq + 1),))
            pr.mark_live(cur, self.seq + 1)  # every write keeps the live bits
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        self.seq += 1

    def _set_live(self, off: np.ndarray, start: int, end: int) -> None:
        """After a commit: the fids ``off`` died, start..end were born."""
        if end > len(self._live):
            grown = np.zeros(max(end, 2 * len(self._live)), dtype=bool)
            grown[: len(self._live)] = self._live
            self._live = grown
        self._live[off] = False
        self._live[start:end] = True
        self.count += (end - start) - len(off)

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[Payload]) -> None:
        """Insert or replace; unchanged points are left alone (no write, no new fid)."""
        with self.lock:
            texts = [canonical(p) for p in payloads]
            hashes = np.fromiter((str_hash(i) for i in ids), np.uint64, len(ids))
            have = self.lookup(ids, hashes)
            take: list[int] = []
            replaced: list[int] = []
            for i, pid in enumerate(ids):
                old = have.get(pid)
                if old is not None:
                    if old[1] == texts[i] and np.array_equal(self.vectors.view()[old[0]], vectors[i]):
                        continue
                    replaced.append(old[0])
                take.append(i)
            if not take:
                return
            start = self.next_fid
            end = start + len(take)
            new_fids = np.arange(start, end, dtype=np.int64)
            vecs = vectors[take] if len(take) != len(ids) else vectors
            self.vectors.write(start, vecs)  # rows beyond next_fid are garbage until the commit below
            rem = np.array(sorted(replaced), dtype=np.int64)
            bits = pr.live_rows(self._live, rem, start, end)

            def tx(cur: sqlite3.Cursor) -> None:
                if replaced:
                    cur.executemany("DELETE FROM points WHERE fid=?", [(f,) for f in replaced])
                cur.executemany(
                    "INSERT INTO points(fid, id, payload) VALUES(?,?,?)",
                    [(start + j, ids[i], texts[i]) for j, i in enumerate(take)],
                )
                cur.execute("UPDATE meta SET value=? WHERE key='next_fid'", (str(end),))
                pr.write_live(cur, bits)

            self._write(tx)
            self.vectors.commit(end)
            self.next_fid = end
            self._set_live(rem, start, end)
            self.index.remove(rem)
            # the index reads the payloads as stored (JSON keys are strings): the caller's own when that is so
            self.index.add(new_fids, [own_copy(payloads[i], texts[i])[0] for i in take])
            self._ids.add(new_fids, hashes[take])
            for who in self._listeners:
                who.on_change(new_fids, vecs, rem)

    def delete(self, ids: Sequence[str]) -> int:
        """Delete by id; unknown ids are ignored. Returns how many were deleted."""
        with self.lock:
            fids = sorted(fid for fid, _ in self.lookup(list(dict.fromkeys(ids))).values())
            if not fids:
                return 0
            rem = np.array(fids, dtype=np.int64)
            bits = pr.live_rows(self._live, rem, 0, 0)

            def tx(cur: sqlite3.Cursor) -> None:
                cur.executemany("DELETE FROM points WHERE fid=?", [(f,) for f in fids])
                pr.write_live(cur, bits)

            self._write(tx)
            self._set_live(rem, 0, 0)
            self.index.remove(rem)
            empty = np.zeros(0, dtype=np.int64)
            for who in self._listeners:
                who.on_change(empty, np.zeros((0, self.dim), np.float32), rem)
            return len(fids)

    def compact(self) -> CompactReport:
        """Reclaim the rows of replaced and deleted points (``point_compact``): the live points get fids 0..n-1 in
        their old order, and every listener remaps its index. A no-op without garbage."""
        with self.lock:
            return compact(self)

    def after_compaction(self, live: np.ndarray) -> None:
        """The RAM state renumbered after a compaction's commit (``live``: the old fids of the new 0..n-1)."""
        n = len(live)
        self._live = np.zeros(max(n, 1024), dtype=bool)
        self._live[:n] = True
        self.count = n
        self.index.renumber(live)
        self._ids.renumber(live)
        self._saved, self._crc_rows = None, n
        if self._db is not None:  # the renumbered table out of the WAL (a reader mid-read leaves it for later)
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def sync(self) -> None:
        """Make every committed write durable (vectors fsynced, their checksums recorded, SQLite WAL
        checkpointed), and save the payload index when a sixteenth of the rows are not in the saved one."""
        with self.lock:
            if self.read_only or self._db is None:
                return
            self.vectors.sync()
            self._record_crcs()
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            saved_gen, saved_rows = self._saved or (-1, 0)
            if saved_gen != self.generation or self.next_fid - saved_rows > max(INDEX_SAVE_MIN, saved_rows // 16):
                self._save_index()

    @property
    def _state(self) -> tuple[int, int]:
        return self.generation, self.next_fid

    def _save_index(self) -> None:
        """Save the payload index and the id hashes (``payload_index_file``) as of the committed rows."""
        meta = {"generation": self.generation, "covered": self.next_fid, "edits": self._edits}
        pif.save(self.index, self.index_path, meta, extra={"ids": self._ids})
        self._saved = (self.generation, self.next_fid)

    def _record_crcs(self) -> None:
        """Record the checksums of the rows committed since the last flush (rewrites the chunks they touch)."""
        if self._db is not None and self.next_fid > self._crc_rows:
            record_crcs(self._db, self.vectors, self._crc_rows, self.next_fid)
            self._crc_rows = self.next_fid

    def recorded_crcs(self) -> np.ndarray:
        """The recorded checksums of rows 0.. (uint32; empty for a store written before checksums)."""
        db = sqlite3.connect(f"file:{self.sqlite_path}?mode=ro", uri=True)
        try:
            return read_crcs(db)
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return np.zeros(0, dtype=np.uint32)
            raise CorruptIndexError(f"point store {self.sqlite_path} is unreadable ({exc}); {self.repair}") from None
        except (sqlite3.Error, ValueError) as exc:
            raise CorruptIndexError(
                f"point store {self.sqlite_path}: its vector checksums are unreadable ({exc}); {self.repair}"
            ) from None
        finally:
            db.close()

    def check_vectors(self) -> VectorCheck:
        """Every committed vector row against its recorded checksum, and live rows no upsert could have stored
        (``vector_checks.check_vectors``)."""
        return check_vectors(self)

    def disk_bytes(self) -> int:
        """Bytes of the point store: the SQLite file and its WAL (their lengths), the saved payload index and the
        vector file (its blocks)."""
        files = (self.sqlite_path, Path(f"{self.sqlite_path}-wal"), self.index_path)
        return sum(file_bytes(p, apparent=True) for p in files) + self.vectors.disk_bytes()

    def _close_files(self) -> None:
        if self._loaded and not self.read_only and self._db is not None and self._saved != self._state:
            with contextlib.suppress(OSError):  # a full disk: the next open rebuilds it
                self._save_index()  # the next open reads it instead of every row
        self._loaded = False
        vf = getattr(self, "vectors", None)
        if vf is not None:
            vf.close()
        if self._db is not None:
            if not self.read_only:
                try:
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                    # back to a rollback journal: a later read-only open then creates no -wal/-shm files
                    self._db.execute("PRAGMA journal_mode=DELETE")
                except sqlite3.Error:
                    pass  # a reader elsewhere holds it: the WAL stays, which is fine
            self._db.close()
            self._db = None
        lockfile, self._lockfile = self._lockfile, None
        unlock(lockfile)
