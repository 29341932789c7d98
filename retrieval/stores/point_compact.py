"""Compaction of a point store (``PointStore.compact``): the rows of replaced and deleted points reclaimed.

The live rows are written, in fid order, to the next generation's vector file (fsynced); then one SQLite
transaction renumbers the points 0..n-1 (in SQL: no row passes through Python), rewrites their checksums (carried
over from the old rows) and live bits, records the renumbering (``renumber``: the old fid of each new one) and the
new generation; then the old file is deleted. The transaction is the switch: a kill before it leaves the old store
(and an orphan file, deleted at the next writer open), after it the new one. Each open kind is then told
(``on_renumber``) and remaps its index.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from retrieval.errors import CorruptIndexError, StoreLockedError
from retrieval.stores import point_rows as pr
from retrieval.stores.faults import fault_point
from retrieval.stores.vector_checks import CRC_CHUNK, read_crcs
from retrieval.stores.vector_file import VectorFile, vector_file_name, write_gathered

if TYPE_CHECKING:
    from retrieval.stores.points import PointStore


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


def compact(ps: PointStore) -> CompactReport:
    """Reclaim the rows of replaced and deleted points (see the module docstring): the live points get fids
    0..n-1 in their old order, and every listener remaps its index. A no-op without garbage. Under ps.lock."""
    if ps.read_only or ps._db is None:
        raise StoreLockedError(f"point store {ps.sqlite_path} is open read-only: it cannot be compacted")
    t0 = time.perf_counter()
    rows_before, bytes_before = ps.next_fid, ps.disk_bytes()
    live = ps.live_fids()
    n = len(live)
    if n == rows_before:
        return CompactReport(rows_before, n, bytes_before, bytes_before, time.perf_counter() - t0, ps.generation, False)
    ps.sync()  # every row checksummed: the new rows carry their recorded checksums over
    crcs = read_crcs(ps._db)[:rows_before]
    if len(crcs) < rows_before:  # a chunk went missing: recomputed from the file, as a flush does
        crcs = np.concatenate([crcs, ps.vectors.row_crcs(len(crcs), rows_before)])
    gen = ps.generation + 1
    new_path = ps.folder / vector_file_name(gen)
    new_path.unlink(missing_ok=True)
    write_gathered(new_path, ps.vectors.view(), live)
    fault_point("compact:vectors-written")
    data, width = crcs[live].astype("<u4").tobytes(), CRC_CHUNK * 4
    renumber = live.astype("<i8").tobytes()

    def tx(cur: sqlite3.Cursor) -> None:
        old = np.fromiter((r[0] for r in cur.execute("SELECT fid FROM points ORDER BY fid")), np.int64)
        if not np.array_equal(old, live):
            raise CorruptIndexError(
                f"point store {ps.sqlite_path}: its rows differ from the ones this process read "
                f"(written by another program?); {ps.repair}"
            )
        # renumbered in SQL (no row passes through Python): a temporary copy with fids 0..n-1
        cur.execute("DROP TABLE IF EXISTS temp.renumbered")
        cur.execute(
            "CREATE TEMP TABLE renumbered AS SELECT row_number() OVER (ORDER BY fid) - 1 AS fid, id, payload "
            "FROM points"
        )
        cur.execute("DELETE FROM points")
        cur.execute("INSERT INTO points(fid, id, payload) SELECT fid, id, payload FROM temp.renumbered")
        cur.execute("DROP TABLE temp.renumbered")
        cur.execute("DELETE FROM vector_crc")
        cur.executemany(
            "INSERT INTO vector_crc(chunk, crcs) VALUES(?, ?)",
            [(i // width, data[i : i + width]) for i in range(0, len(data), width)],
        )
        pr.record_all_live(cur, np.ones(n, dtype=bool), ps.seq + 1)
        cur.execute(pr.RENUMBER_SCHEMA)
        cur.execute("DELETE FROM renumber")
        cur.execute("INSERT INTO renumber(generation, old_fids) VALUES(?, ?)", (gen, renumber))
        cur.execute("UPDATE meta SET value=? WHERE key='next_fid'", (str(n),))
        cur.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('generation', ?)", (str(gen),))

    ps._db.execute("PRAGMA synchronous=FULL")  # the switch is durable when the commit returns
    try:
        ps._write(tx)
    except BaseException:
        new_path.unlink(missing_ok=True)
        raise
    finally:
        ps._db.execute("PRAGMA synchronous=NORMAL")
    fault_point("compact:committed")
    _switch(ps, live, new_path, gen)
    fault_point("compact:old-removed")
    for who in list(ps._listeners):
        who.on_renumber(live)
        fault_point("compact:kind-renumbered")
    return CompactReport(rows_before, n, bytes_before, ps.disk_bytes(), time.perf_counter() - t0, gen, True)


def _switch(ps: PointStore, live: np.ndarray, new_path: Path, gen: int) -> None:
    """After the compaction's commit: map the new vector file, delete the old, renumber the RAM state."""
    n = len(live)
    old_vf, old_path = ps.vectors, ps.vector_path
    ps.vectors = VectorFile(new_path, ps.dim, n, True, ps.repair)
    for _ in range(old_vf.resident_holders):
        ps.vectors.hold_resident()
    old_vf.discard()
    ps.vector_path, ps.generation, ps.next_fid = new_path, gen, n
    old_path.unlink(missing_ok=True)  # readers elsewhere that mapped it keep their pages
    dfd = os.open(ps.folder, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    ps.after_compaction(live)
