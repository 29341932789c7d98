"""The point store of one FAISS collection, shared by all its index kinds.

Under ``<data_dir>/faiss/<name>/points/``: ``points.sqlite`` (fid INTEGER → string id, payload JSON;
meta: dim, metric, seq, next_fid, generation) and the vector file, ``vectors.f32`` (generation 0) or
``vectors.<generation>.f32`` (float32 row ``fid`` = the vector of point ``fid``, memory-mapped). Ids,
payloads and the payload index live in RAM from open on; SQLite is written, never read on the query
path. fids only grow: a replaced point gets a new fid, so every index can tell old from new, and the old
row stays as garbage in the vector file until a compaction.

Compaction (``compact``) reclaims the garbage rows: it writes the live rows, in fid order, to the next
generation's vector file (fsynced), then in one SQLite transaction renumbers the points 0..n-1, rewrites
their checksums (carried over from the old rows), records the renumbering (``renumber``: the old fid of
each new one) and the new generation, then deletes the old file. The transaction is the switch: a kill
before it leaves the old store (and an orphan file, deleted at the next writer open), after it the new one.
Each open kind is then told (``on_renumber``) and remaps its index; a kind's manifest records the generation
its index numbers, so a kind opened later remaps (with the recorded renumbering) or rebuilds itself.

One ``PointStore`` object per folder and process (a refcounted registry): all kinds a process opens
share it, each write happens once and is handed to every open kind (``listen``). One writer process
per collection (an exclusive lock on ``points/.lock``); read-only opens take no lock and read a
snapshot (or share this process's writer).

Integrity: every flush records the crc32 of each vector row written since the last one in the table
``vector_crc`` (one blob of little-endian uint32 per ``CRC_CHUNK`` rows; only the chunks a flush touches are
rewritten, in one transaction). Committed rows never change, so a recorded checksum stays valid and
``check_vectors`` (``simlookup verify``) can compare every row, beside or after a writer. A store written
before the table existed gets it, and its rows' checksums, at its next flush.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NoReturn, Protocol

import numpy as np

from retrieval.disk import file_bytes
from retrieval.errors import CorruptIndexError, ManifestMismatchError, StoreLockedError, StoreNotFoundError
from retrieval.filters import Filter
from retrieval.metric import Metric
from retrieval.payload_index import PayloadIndex
from retrieval.stores.faults import fault_point
from retrieval.stores.locks import lock_exclusive, unlock
from retrieval.stores.payloads import Payload, canonical, is_flat, own_copy
from retrieval.stores.vector_checks import CRC_CHUNK, CRC_SCHEMA, VectorCheck, check_vectors, read_crcs, record_crcs
from retrieval.stores.vector_file import VectorFile, vector_file_name, write_gathered

SCHEMA = """
CREATE TABLE IF NOT EXISTS points (fid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, payload TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
RENUMBER_SCHEMA = "CREATE TABLE IF NOT EXISTS renumber (generation INTEGER PRIMARY KEY, old_fids BLOB NOT NULL)"
_LOAD_TRIES = 20  # read-only opens retried when a compaction replaced the vector file meanwhile
POINTS_FORMAT = "1"


@dataclass
class CompactReport:
    """What ``PointStore.compact`` reclaimed (rows: vector-file rows, live or not)."""

    rows_before: int
    rows_after: int
    bytes_before: int
    bytes_after: int
    seconds: float
    generation: int  # the store's generation after it (unchanged when there was nothing to reclaim)
    compacted: bool  # False: no garbage row, nothing written

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ChangeListener(Protocol):
    """An open index kind: told about every committed write, under the store's lock."""

    def on_change(self, added: np.ndarray, vectors: np.ndarray, removed: np.ndarray) -> None: ...

    def on_renumber(self, old_fids: np.ndarray) -> None:
        """A compaction renumbered the points: new fid i was ``old_fids[i]`` (the live fids, sorted)."""


class PointStore:
    """ids ↔ int64 fids, payloads and vectors of one collection; see the module docstring."""

    def __init__(self, folder: Path, repair: str, read_only: bool) -> None:
        self.folder = folder
        self.sqlite_path = folder / "points.sqlite"
        self.vector_path = folder / vector_file_name(0)  # the current generation's, once loaded
        self.generation = 0
        self.read_only = read_only
        self.repair = repair
        self.lock = threading.RLock()
        self._listeners: list[ChangeListener] = []
        self._refs = 0
        self._lockfile: Any = None
        self._db: sqlite3.Connection | None = None
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
            db.executescript(SCHEMA + CRC_SCHEMA + ";")
            db.executemany(
                "INSERT INTO meta(key, value) VALUES(?, ?)",
                [
                    ("format", POINTS_FORMAT),
                    ("dim", str(dim)),
                    ("metric", metric.value),
                    ("seq", "0"),
                    ("next_fid", "0"),
                    ("generation", "0"),
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
                last = not self.read_only or attempt == _LOAD_TRIES - 1
                if last or stored_generation(self.folder) == self.generation:
                    raise

    def _load(self) -> None:
        try:
            db = self._connect()
            try:
                db.execute("BEGIN")
                meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
                rows = db.execute("SELECT fid, id, payload FROM points ORDER BY fid").fetchall()
                db.execute("COMMIT")
            except BaseException:
                db.close()
                raise
        except sqlite3.Error as exc:
            raise CorruptIndexError(f"point store {self.sqlite_path} is unreadable ({exc}); {self.repair}") from None
        if self.read_only:
            db.close()  # a read-only store is a snapshot in RAM: no connection, no files created
        else:
            self._db = db
        try:
            self.dim = int(meta["dim"])
            self.metric = Metric.parse(meta["metric"])
            self.seq = int(meta["seq"])
            self.next_fid = int(meta["next_fid"])
            self.generation = int(meta.get("generation", 0))
        except (KeyError, ValueError) as exc:
            raise CorruptIndexError(
                f"point store {self.sqlite_path} has no valid meta ({exc}); {self.repair}"
            ) from None
        if rows and (rows[-1][0] >= self.next_fid or rows[0][0] < 0):
            raise CorruptIndexError(f"point store {self.sqlite_path}: fids outside 0..next_fid; {self.repair}")
        if self._db is not None:
            try:
                self._db.execute(CRC_SCHEMA)  # a store written before checksums: its next flush records them
                self._crc_rows = min(len(read_crcs(self._db)), self.next_fid)
            except sqlite3.Error as exc:
                raise CorruptIndexError(
                    f"point store {self.sqlite_path}: its vector checksums are unreadable ({exc}); {self.repair}"
                ) from None
        self.vector_path = self.folder / vector_file_name(self.generation)
        self.vectors = VectorFile(self.vector_path, self.dim, self.next_fid, not self.read_only, self.repair)
        if not self.read_only:  # files of other generations: the old one of a compaction, or an orphan of a kill
            for other in self.folder.glob("vectors*.f32"):
                if other.name != self.vector_path.name:
                    other.unlink(missing_ok=True)
        self.id_to_fid: dict[str, int] = {}
        # row fid → (id, payload), None for a fid whose point was replaced or deleted: a list, as one lookup
        # per hit touches one slot (a dict lookup touches its index and its entry: two cold cache lines)
        self.rows: list[tuple[str, Payload] | None] = [None] * self.next_fid
        self.nested: set[int] = set()  # fids whose payload holds a list or an object (copied deeply)
        self._live = np.zeros(max(self.next_fid, 1024), dtype=bool)
        fids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        try:
            payloads = [json.loads(r[2]) for r in rows]
            for (fid, pid, _), pl in zip(rows, payloads, strict=True):
                self.id_to_fid[pid] = fid
                self.rows[fid] = (pid, pl)
                if not is_flat(pl):  # AttributeError: not a JSON object
                    self.nested.add(fid)
        except (ValueError, TypeError, AttributeError):
            self._bad_payload(rows)
        self._live[fids] = True
        self.index = PayloadIndex()
        self.index.add(fids, payloads)

    def _bad_payload(self, rows: list[Any]) -> NoReturn:
        """Raise the error that names the first row whose payload is not a JSON object, and the repair."""
        for fid, pid, text in rows:
            try:
                value = json.loads(text)
                why = "" if isinstance(value, dict) else f"a JSON {type(value).__name__}"
            except (ValueError, TypeError) as exc:
                why = str(exc)
            if why:
                raise CorruptIndexError(
                    f"point store {self.sqlite_path}: the payload of row fid {fid} (id {pid!r}) is not a JSON "
                    f"object ({why}); repair: set it to {{}} (`sqlite3 {self.sqlite_path} \"UPDATE points SET "
                    f"payload='{{}}' WHERE fid={fid}\"`), then re-run the ingest, which rewrites that point, or "
                    f"delete {self.folder.parent} and ingest again"
                )
        raise CorruptIndexError(f"point store {self.sqlite_path} holds an unreadable payload; {self.repair}")

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

    # ---- reads (RAM and mmap only) ----
    def __len__(self) -> int:
        return len(self.id_to_fid)

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

    def garbage(self) -> int:
        """Vector-file rows of replaced or deleted points (what ``compact`` reclaims)."""
        return self.next_fid - len(self.id_to_fid)

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
            row = db.execute("SELECT old_fids FROM renumber WHERE generation=?", (self.generation,)).fetchone()
        except sqlite3.Error:
            return None
        finally:
            db.close()
        if row is None or not isinstance(row[0], bytes) or len(row[0]) % 8 or len(row[0]) > 8 * self.next_fid:
            return None
        old = np.frombuffer(row[0], dtype="<i8").astype(np.int64)
        return old if len(old) < 2 or bool((np.diff(old) > 0).all()) else None

    # ---- writes ----
    def listen(self, who: ChangeListener) -> None:
        with self.lock:
            self._listeners.append(who)

    def unlisten(self, who: ChangeListener) -> None:
        with self.lock:
            self._listeners = [x for x in self._listeners if x is not who]

    def _write(self, fn: Callable[[sqlite3.Cursor], object]) -> None:
        if self._db is None:
            raise StoreLockedError(f"point store {self.sqlite_path} is open read-only")
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            fn(cur)
            cur.execute("UPDATE meta SET value=? WHERE key='seq'", (str(self.seq + 1),))
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        self.seq += 1

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[Payload]) -> None:
        """Insert or replace; unchanged points are left alone (no write, no new fid)."""
        with self.lock:
            texts = [canonical(p) for p in payloads]
            take: list[int] = []
            replaced: list[int] = []
            view = self.vectors.view()
            for i, pid in enumerate(ids):
                old = self.id_to_fid.get(pid)
                if old is not None:
                    row = self.rows[old]
                    assert row is not None  # id_to_fid lists live fids only
                    if np.array_equal(view[old], vectors[i]) and canonical(row[1]) == texts[i]:
                        continue
                    replaced.append(old)
                take.append(i)
            if not take:
                return
            start = self.next_fid
            new_fids = np.arange(start, start + len(take), dtype=np.int64)
            vecs = vectors[take] if len(take) != len(ids) else vectors
            self.vectors.write(start, vecs)  # rows beyond next_fid are garbage until the commit below
            end = start + len(take)

            def tx(cur: sqlite3.Cursor) -> None:
                if replaced:
                    cur.executemany("DELETE FROM points WHERE fid=?", [(f,) for f in replaced])
                cur.executemany(
                    "INSERT INTO points(fid, id, payload) VALUES(?,?,?)",
                    [(start + j, ids[i], texts[i]) for j, i in enumerate(take)],
                )
                cur.execute("UPDATE meta SET value=? WHERE key='next_fid'", (str(end),))

            self._write(tx)
            self.vectors.commit(end)
            self.next_fid = end
            rem = np.array(replaced, dtype=np.int64)
            self._forget(rem)
            if end > len(self._live):
                grown = np.zeros(max(end, 2 * len(self._live)), dtype=bool)
                grown[: len(self._live)] = self._live
                self._live = grown
            self._live[start:end] = True
            copies = [own_copy(payloads[i], texts[i]) for i in take]  # our own: callers may mutate theirs
            pls = [pl for pl, _ in copies]
            self.rows.extend([None] * (end - len(self.rows)))
            for j, i in enumerate(take):
                self.id_to_fid[ids[i]] = start + j
                self.rows[start + j] = (ids[i], pls[j])
            self.nested.update(start + j for j, (_, flat) in enumerate(copies) if not flat)
            self.index.add(new_fids, pls)
            for who in self._listeners:
                who.on_change(new_fids, vecs, rem)

    def delete(self, ids: Sequence[str]) -> int:
        """Delete by id; unknown ids are ignored. Returns how many were deleted."""
        with self.lock:
            fids = sorted({self.id_to_fid[i] for i in ids if i in self.id_to_fid})
            if not fids:
                return 0
            self._write(lambda cur: cur.executemany("DELETE FROM points WHERE fid=?", [(f,) for f in fids]))
            rem = np.array(fids, dtype=np.int64)
            self._forget(rem)
            empty = np.zeros(0, dtype=np.int64)
            for who in self._listeners:
                who.on_change(empty, np.zeros((0, self.dim), np.float32), rem)
            return len(fids)

    def compact(self) -> CompactReport:
        """Reclaim the rows of replaced and deleted points (see the module docstring): the live points get fids
        0..n-1 in their old order, and every listener remaps its index. A no-op without garbage."""
        with self.lock:
            if self._db is None:
                raise StoreLockedError(f"point store {self.sqlite_path} is open read-only: it cannot be compacted")
            t0 = time.perf_counter()
            rows_before, bytes_before = self.next_fid, self.disk_bytes()
            live = self.live_fids()
            n = len(live)
            if n == rows_before:
                return CompactReport(
                    rows_before, n, bytes_before, bytes_before, time.perf_counter() - t0, self.generation, False
                )
            self.sync()  # every row checksummed: the new rows carry their recorded checksums over
            crcs = read_crcs(self._db)[:rows_before]
            if len(crcs) < rows_before:  # a chunk went missing: recomputed from the file, as a flush does
                crcs = np.concatenate([crcs, self.vectors.row_crcs(len(crcs), rows_before)])
            gen = self.generation + 1
            new_path = self.folder / vector_file_name(gen)
            new_path.unlink(missing_ok=True)
            write_gathered(new_path, self.vectors.view(), live)
            fault_point("compact:vectors-written")
            data, width = crcs[live].astype("<u4").tobytes(), CRC_CHUNK * 4
            renumber = live.astype("<i8").tobytes()

            def tx(cur: sqlite3.Cursor) -> None:
                old = cur.execute("SELECT fid, id, payload FROM points ORDER BY fid").fetchall()
                if not np.array_equal(np.fromiter((r[0] for r in old), np.int64, len(old)), live):
                    raise CorruptIndexError(
                        f"point store {self.sqlite_path}: its rows differ from the ones this process read "
                        f"(written by another program?); {self.repair}"
                    )
                cur.execute("DELETE FROM points")
                cur.executemany(
                    "INSERT INTO points(fid, id, payload) VALUES(?,?,?)", [(i, r[1], r[2]) for i, r in enumerate(old)]
                )
                cur.execute("DELETE FROM vector_crc")
                cur.executemany(
                    "INSERT INTO vector_crc(chunk, crcs) VALUES(?, ?)",
                    [(i // width, data[i : i + width]) for i in range(0, len(data), width)],
                )
                cur.execute(RENUMBER_SCHEMA)
                cur.execute("DELETE FROM renumber")
                cur.execute("INSERT INTO renumber(generation, old_fids) VALUES(?, ?)", (gen, renumber))
                cur.execute("UPDATE meta SET value=? WHERE key='next_fid'", (str(n),))
                cur.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('generation', ?)", (str(gen),))

            self._db.execute("PRAGMA synchronous=FULL")  # the switch is durable when the commit returns
            try:
                self._write(tx)
            except BaseException:
                new_path.unlink(missing_ok=True)
                raise
            finally:
                self._db.execute("PRAGMA synchronous=NORMAL")
            fault_point("compact:committed")
            self._switch(live, new_path, gen)
            fault_point("compact:old-removed")
            for who in list(self._listeners):
                who.on_renumber(live)
                fault_point("compact:kind-renumbered")
            return CompactReport(
                rows_before, n, bytes_before, self.disk_bytes(), time.perf_counter() - t0, gen, True
            )

    def _switch(self, live: np.ndarray, new_path: Path, gen: int) -> None:
        """After the compaction's commit: map the new vector file, delete the old, renumber the RAM state."""
        n = len(live)
        old_vf, old_path = self.vectors, self.vector_path
        self.vectors = VectorFile(new_path, self.dim, n, True, self.repair)
        for _ in range(old_vf.resident_holders):
            self.vectors.hold_resident()
        old_vf.discard()
        self.vector_path, self.generation, self.next_fid, self._crc_rows = new_path, gen, n, n
        old_path.unlink(missing_ok=True)  # readers elsewhere that mapped it keep their pages
        dfd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        rows = [self.rows[f] for f in live.tolist()]
        self.rows = rows
        self.id_to_fid = {r[0]: i for i, r in enumerate(rows) if r is not None}
        if self.nested:
            self.nested = set(np.searchsorted(live, np.fromiter(self.nested, np.int64)).tolist())
        self._live = np.zeros(max(n, 1024), dtype=bool)
        self._live[:n] = True
        self.index = PayloadIndex()
        self.index.add(np.arange(n, dtype=np.int64), [r[1] for r in rows if r is not None])
        if self._db is not None:  # the renumbered table out of the WAL (a reader mid-read leaves it for later)
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _forget(self, fids: np.ndarray) -> None:
        if not len(fids):
            return
        for fid in fids.tolist():
            row = self.rows[fid]
            assert row is not None
            self.rows[fid] = None
            del self.id_to_fid[row[0]]
            self.nested.discard(fid)
        self._live[fids] = False
        self.index.remove(fids)

    def sync(self) -> None:
        """Make every committed write durable (vectors fsynced, their checksums recorded, SQLite WAL
        checkpointed)."""
        with self.lock:
            if self._db is None:
                return
            self.vectors.sync()
            self._record_crcs()
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")

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

    def id_of(self, fid: int) -> str | None:
        """The string id of a live fid (None for a replaced or deleted one)."""
        row = self.rows[fid] if 0 <= fid < len(self.rows) else None
        return None if row is None else row[0]

    def disk_bytes(self) -> int:
        """Bytes of the point store: the SQLite file and its WAL (their lengths) and the vector file (its blocks)."""
        sqlite = sum(file_bytes(p, apparent=True) for p in (self.sqlite_path, Path(f"{self.sqlite_path}-wal")))
        return sqlite + self.vectors.disk_bytes()

    def _close_files(self) -> None:
        vf = getattr(self, "vectors", None)
        if vf is not None:
            vf.close()
        if self._db is not None:
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
