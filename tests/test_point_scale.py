"""A point store that scales (issue 25 item 3): no Python object per point in RAM, payloads read from SQLite for
the hits only, the payload index saved by the writer and read back at open (only the rows written since are
parsed), strings of many distinct values kept as hashes checked against the rows, ids found by hash, a read-only
snapshot that reloads when its writer replaced its rows, and stores of the previous format upgraded."""

from __future__ import annotations

import random
import sqlite3
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import retrieval.payload_index as pix
from retrieval.filters import Filter
from retrieval.metric import Metric
from retrieval.payload_index import PayloadIndex
from retrieval.settings import Settings
from retrieval.stores import open_store
from retrieval.stores import point_rows as pr
from retrieval.stores import points as pts

DIM = 8
SPECS: list[dict[str, Any]] = [
    {"genre": "g1"},
    {"genre": {"$in": ["g2", "g4"]}, "year": {"$gte": 2000}},
    {"title": "t7"},
    {"title": {"$in": ["t3", "t11", "nope"]}},
    {"title": {"$ne": "t5"}},
    {"tags": "x2"},
    {"$not": {"title": "t1"}},
    {"$or": [{"title": "t2"}, {"year": 1995}]},
]


def _payload(rng: random.Random, i: int) -> dict[str, Any]:
    pl: dict[str, Any] = {"genre": f"g{rng.randrange(6)}", "year": 1990 + rng.randrange(30), "title": f"t{i % 23}"}
    if i % 4 == 0:
        pl["tags"] = ["a", f"x{i % 5}"]
    if i % 9 == 0:
        pl["title"] = None
    return pl


def _check(match: Any, live: dict[int, dict[str, Any]]) -> None:
    for spec in SPECS:
        f = Filter.from_dict(spec)
        assert match(f).tolist() == sorted(fid for fid, pl in live.items() if f.matches(pl)), spec


@pytest.mark.parametrize("collide", [False, True])
def test_hashed_strings_answer_like_the_reference(monkeypatch: pytest.MonkeyPatch, collide: bool) -> None:
    """A path beyond STR_DICT_MAX distinct strings keeps its rare values as hashes: answers stay exact, also when
    every hash collides (each candidate's own payload decides), after removals, re-adds and a renumbering."""
    monkeypatch.setattr(pix, "STR_DICT_MAX", 8)
    monkeypatch.setattr(pix, "STR_HEAVY", 3)
    if collide:
        monkeypatch.setattr(pix, "str_hash", lambda s: len(s) % 2)
    rng = random.Random(3)
    rows: dict[int, dict[str, Any]] = {}
    pi = PayloadIndex(lambda fids: [rows[int(f)] for f in fids])
    for start in range(0, 600, 150):
        batch = {i: _payload(rng, i) for i in range(start, start + 150)}
        rows.update(batch)
        pi.add(list(batch), list(batch.values()))
    assert "title" in pi._hashed and "genre" not in pi._hashed  # noqa: SLF001
    gone = list(range(0, 600, 7))
    pi.remove(gone)
    live = {f: p for f, p in rows.items() if f % 7}
    _check(pi.match, live)
    assert pi.has_path("tags") and not pi.has_path("nothing")
    again = {f: _payload(rng, f + 1) for f in list(live)[:20]}  # fids indexed before: their old postings go
    rows.update(again)
    live.update(again)
    pi.add(list(again), list(again.values()))
    _check(pi.match, live)
    old = np.array(sorted(live), dtype=np.int64)  # a compaction: fid i was old[i]
    rows = {i: live[int(f)] for i, f in enumerate(old)}
    pi.renumber(old)
    _check(pi.match, rows)


def _store(tmp_path: Path, n: int = 600) -> tuple[Path, np.ndarray, dict[str, dict[str, Any]]]:
    folder = tmp_path / "points"
    pts.PointStore.create(folder, DIM, Metric.COSINE)
    x = np.random.default_rng(1).standard_normal((n, DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    rng = random.Random(1)
    payloads = {f"p{i}": _payload(rng, i) for i in range(n)}
    ps = pts.PointStore(folder, "repair", read_only=False)
    for s in range(0, n, 200):
        ids = [f"p{i}" for i in range(s, min(s + 200, n))]
        ps.upsert(ids, x[s : s + len(ids)], [payloads[i] for i in ids])
    ps._close_files()  # noqa: SLF001 - outside the registry
    return folder, x, payloads


def _by_fid(ps: pts.PointStore) -> dict[int, dict[str, Any]]:
    fids = ps.live_fids()
    return dict(zip(fids.tolist(), ps.payloads(fids), strict=True))


def test_open_reads_the_saved_index_and_only_rows_written_since(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, x, payloads = _store(tmp_path)
    parsed: list[int] = []
    real = pr.parse_payload

    def counting(path: Path, fid: int, pid: str, text: str) -> Any:
        parsed.append(fid)
        return real(path, fid, pid, text)

    monkeypatch.setattr(pr, "parse_payload", counting)
    ro = pts.PointStore(folder, "repair", read_only=True)
    assert parsed == [] and len(ro) == 600  # the writer's close saved the index: no row parsed
    _check(ro.match, _by_fid(ro))
    ro._close_files()  # noqa: SLF001
    w = pts.PointStore(folder, "repair", read_only=False)
    w.upsert(["p1", "new"], x[:2], [{"genre": "g1", "title": "fresh"}, {"title": "t7"}])  # p1 replaced
    w.delete(["p2"])
    w.sync()  # 2 rows beyond the saved index: not saved again yet
    parsed.clear()
    ro = pts.PointStore(folder, "repair", read_only=True)
    assert sorted(parsed) == [600, 601]  # only the rows written since the save
    live = _by_fid(ro)
    assert len(ro) == len(live) == 600 and {"genre": "g1", "title": "fresh"} in live.values()
    _check(ro.match, live)
    assert ro.lookup(["p1", "p2", "new", "none"]).keys() == {"p1", "new"}
    ro._close_files()  # noqa: SLF001
    w._close_files()  # noqa: SLF001


def test_an_index_saved_before_a_compaction_is_renumbered_at_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader opening after a compaction the writer has not saved its index since: the saved one is remapped
    with the compaction's record, and only the rows written after it was saved are parsed."""
    folder, x, payloads = _store(tmp_path)
    w = pts.PointStore(folder, "repair", read_only=False)
    w.upsert([f"p{i}" for i in range(40)], x[:40], [{"genre": "again", "i": i} for i in range(40)])
    w.delete([f"p{i}" for i in range(100, 300)])
    assert w.compact().compacted and w.generation == 1 and w.next_fid == 400
    parsed: list[int] = []
    real = pr.parse_payload
    monkeypatch.setattr(pr, "parse_payload", lambda p, f, i, t: parsed.append(f) or real(p, f, i, t))
    ro = pts.PointStore(folder, "repair", read_only=True)
    assert sorted(parsed) == list(range(360, 400))  # the 40 rewritten points, now last
    live = _by_fid(ro)
    assert len(live) == 400 and sum(pl.get("genre") == "again" for pl in live.values()) == 40
    _check(ro.match, live)
    assert [ro.id_of(int(f)) for f in ro.match(Filter.from_dict({"i": 7}))] == ["p7"]
    ro._close_files()  # noqa: SLF001
    w._close_files()  # noqa: SLF001


def test_a_hand_edited_row_makes_the_next_open_rebuild_the_index(tmp_path: Path) -> None:
    folder, _, _ = _store(tmp_path)
    db = sqlite3.connect(folder / "points.sqlite")
    db.execute("""UPDATE points SET payload='{"genre":"edited"}' WHERE id='p5'""")
    db.commit()
    db.close()
    ro = pts.PointStore(folder, "repair", read_only=True)
    assert [ro.id_of(int(f)) for f in ro.match(Filter.from_dict({"genre": "edited"}))] == ["p5"]
    ro._close_files()  # noqa: SLF001


def test_open_holds_no_python_object_per_point(tmp_path: Path) -> None:
    """What a read-only open allocates (numpy arrays and Python objects, as tracemalloc sees them) is a few
    bytes per point: ids and payloads stay in SQLite (before: a tuple, an id and a payload dict per point)."""
    folder, _, _ = _store(tmp_path, n=20_000)
    tracemalloc.start()
    try:
        ro = pts.PointStore(folder, "repair", read_only=True)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(ro) == 20_000
    ro._close_files()  # noqa: SLF001
    assert held < 40 * 20_000, held


def test_colliding_id_hashes_keep_every_write_exact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pts, "str_hash", lambda s: 7)  # every id the same hash: the rows tell them apart
    folder, x, payloads = _store(tmp_path, n=300)
    ps = pts.PointStore(folder, "repair", read_only=False)
    ps.upsert(["p3", "p4"], x[3:5], [payloads["p3"], {"genre": "changed"}])  # p3 unchanged, p4 replaced
    assert ps.next_fid == 301 and ps.delete(["p5", "p6", "p5", "missing"]) == 2
    got = ps.lookup(["p3", "p4", "p5"])
    assert got.keys() == {"p3", "p4"} and got["p4"][0] == 300
    assert len(ps.all_ids()) == 298 == len(ps)
    ps._close_files()  # noqa: SLF001


def test_a_store_of_the_previous_format_opens_and_is_upgraded(tmp_path: Path) -> None:
    """No live_bits, no edit counter, no saved index: a reader works from the rows, a writer upgrades it."""
    folder, _, payloads = _store(tmp_path, n=300)
    (folder / pts.INDEX_FILE).unlink()
    db = sqlite3.connect(folder / "points.sqlite")
    db.executescript(
        "DROP TABLE live_bits; DROP TRIGGER points_edited; DELETE FROM meta WHERE key IN ('live_bits', 'edits');"
    )
    db.execute("DELETE FROM points WHERE id='p9'")  # a deleted point: no row
    db.commit()
    db.close()
    ro = pts.PointStore(folder, "repair", read_only=True)
    assert len(ro) == 299 and not ro.live[9]
    ro._close_files()  # noqa: SLF001
    w = pts.PointStore(folder, "repair", read_only=False)
    w._close_files()  # noqa: SLF001
    db = sqlite3.connect(folder / "points.sqlite")
    meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    assert meta["live_bits"] == meta["seq"] and meta["edits"] == "0"
    assert db.execute("SELECT count(*) FROM sqlite_master WHERE name='points_edited'").fetchone() == (1,)
    live = pr.read_live(db, 300, int(meta["seq"]))
    db.close()
    assert live is not None and live.sum() == 299 and not live[9]
    ro = pts.PointStore(folder, "repair", read_only=True)
    assert len(ro) == 299 and ro.payloads([10]) == [payloads["p10"]]
    ro._close_files()  # noqa: SLF001
    db = sqlite3.connect(folder / "points.sqlite")  # a delete by a simlookup that keeps no live bits: seq moves
    db.executescript("DELETE FROM points WHERE id='p11'; UPDATE meta SET value = value + 1 WHERE key = 'seq';")
    db.close()
    ro = pts.PointStore(folder, "repair", read_only=True)
    assert len(ro) == 298 and not ro.live[11] and ro.lookup(["p11", "p12"]).keys() == {"p12"}
    ro._close_files()  # noqa: SLF001


def test_a_reader_whose_rows_were_replaced_reloads_and_answers_the_new_point(tmp_path: Path) -> None:
    """The writer replaced a point and has not flushed (the reader's manifest is unchanged): the reader's
    snapshot still lists the old row, which is gone; its search reloads and answers with the new point."""
    s = Settings(data_dir=tmp_path / "data")
    x = np.random.default_rng(2).standard_normal((50, DIM)).astype(np.float32)
    st = open_store(s, "c", "flat", dim=DIM)
    st.upsert([f"p{i}" for i in range(50)], x, [{"v": 1}] * 50)
    st.close()
    reader = open_store(s, "c", "flat", read_only=True)
    assert reader.search(x[3], k=1)[0][0].payload == {"v": 1}
    writer = open_store(s, "c", "flat", create=False)
    writer.upsert(["p3"], x[3:4], [{"v": 2}])
    hit = reader.search(x[3], k=1)[0][0]
    assert (hit.id, hit.payload) == ("p3", {"v": 2})
    assert reader.info()["searches"].get("reloads", 0) >= 1
    assert reader.fetch(["p3"])["p3"][1] == {"v": 2}
    writer.close()
    reader.close()


def test_loading_a_npy_hashes_none_of_its_vectors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The write path of `simlookup ingest FILE.npy`: the table over the memory-mapped array gets a fingerprint
    of its own; datasets would otherwise hash the whole table (6.3 GB of copies at the peak for 1M 384-d rows)."""
    import datasets.arrow_dataset as ad

    from ingest.corpora.vectors import VectorCorpus

    np.save(tmp_path / "v.npy", np.random.default_rng(0).standard_normal((50, DIM)).astype(np.float32))

    def refuse(*args: Any, **kwargs: Any) -> str:
        raise AssertionError("the whole table was hashed")

    monkeypatch.setattr(ad, "generate_fingerprint", refuse)
    ds = VectorCorpus(str(tmp_path / "v.npy"), None).load()
    assert len(ds) == 50 and ds[7]["id"] == "7"
