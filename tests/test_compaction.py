"""Compaction of the FAISS point store (issue 23, item 6): the vector rows of replaced and deleted points are
reclaimed at build beyond a quarter of garbage and by `simlookup compact`, searches answer as before on every
kind, a kill at any point leaves the old store or the new one, readers elsewhere never mix the two, and verify
stays clean."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.datasets import Dataset, clustered
from retrieval.collection import Collection, CollectionManifest, VectorSpace
from retrieval.settings import QdrantSettings, Settings
from retrieval.stores import FAISS_KINDS, VectorStore, open_store
from retrieval.verify import verify
from simlookup.cli import main

ROOT = Path(__file__).resolve().parent.parent
N = 600


@pytest.fixture(scope="module")
def data() -> Dataset:
    return clustered(n=N, d=16, nq=8, seed=5)


def _settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", qdrant=QdrantSettings(mode="edge"))


def _payload(i: int, round_: int = 0) -> dict[str, Any]:
    return {"i": i, "g": i % 3, "r": round_}


def _make(s: Settings, data: Dataset, replaced: int, deleted: int, name: str = "c") -> None:
    """A collection of N points in every FAISS kind, built, then ``replaced`` points rewritten (a new payload:
    a new row) and ``deleted`` points deleted: replaced + deleted garbage rows of N + replaced."""
    space = VectorSpace(name="text", encoder="text", model="m", fingerprint="fp", dim=data.dim)
    m = CollectionManifest(
        name=name, corpus="c.csv", corpus_fingerprint="x", modality="text", vectors={"text": space},
        indexes=list(FAISS_KINDS), count=N - deleted, complete=False,
    )
    ids = data.point_ids()
    coll = Collection(s, name, read_only=False, manifest=m)
    coll.upsert(ids[:N], data.xb[:N], [_payload(i) for i in range(N)])
    coll.build()
    if replaced:
        coll.upsert(ids[:replaced], data.xb[:replaced], [_payload(i, 1) for i in range(replaced)])
    if deleted:
        coll.delete(ids[N - deleted : N])
    coll.close()
    m.complete = True
    coll.save()


def _open(s: Settings, read_only: bool = True, name: str = "c") -> dict[str, VectorStore]:
    return {k: open_store(s, name, k, create=False, read_only=read_only) for k in FAISS_KINDS}


def _answers(stores: dict[str, VectorStore], data: Dataset) -> dict[str, Any]:
    """Every kind's hits for the queries, unfiltered and filtered: ids, scores, payloads."""
    out: dict[str, Any] = {}
    for k, st in stores.items():
        for name, flt in (("all", None), ("g=1", {"g": 1}), ("r=1", {"r": 1})):
            out[f"{k}/{name}"] = [
                [(h.id, round(h.score, 5), h.payload) for h in hits] for hits in st.search(data.xq, k=10, filter=flt)
            ]
    return out


def _state(stores: dict[str, VectorStore]) -> dict[str, Any]:
    """The points of every kind: ids, vectors and payloads."""
    out = {}
    for k, st in stores.items():
        got = st.fetch(sorted(st.ids()))
        out[k] = {pid: (v.tolist() if v is not None else None, pl) for pid, (v, pl) in got.items()}
    return out


def _close(stores: dict[str, VectorStore]) -> None:
    for st in stores.values():
        st.close()


def _vector_files(s: Settings, name: str = "c") -> list[str]:
    return sorted(p.name for p in (s.data_dir / "faiss" / name / "points").glob("vectors*.f32"))


@pytest.mark.parametrize(
    ("replaced", "deleted", "compacts"),
    [(100, 50, False), (200, 0, False), (200, 50, True)],  # 150/700 = 21%, 200/800 = 25% exactly, 250/800 = 31%
)
def test_build_compacts_beyond_a_quarter_of_garbage(
    tmp_path: Path, data: Dataset, replaced: int, deleted: int, compacts: bool
) -> None:
    s = _settings(tmp_path)
    _make(s, data, replaced, deleted)
    rows = N + replaced
    with Collection(s, "c", read_only=False) as coll:
        for k in FAISS_KINDS:
            coll.store(k)
        info = coll.store("flat").info()
        assert info["garbage_rows"] == replaced + deleted
        assert info["garbage_fraction"] == round((replaced + deleted) / rows, 4)
        coll.build()
        info = coll.store("hnsw").info()
    assert info["generation"] == (1 if compacts else 0)
    assert info["garbage_rows"] == (0 if compacts else replaced + deleted)
    size = (s.data_dir / "faiss" / "c" / "points" / _vector_files(s)[0]).stat().st_size
    assert size == (N - deleted if compacts else rows) * data.dim * 4
    assert _vector_files(s) == (["vectors.1.f32"] if compacts else ["vectors.f32"])


@pytest.mark.parametrize("kind", FAISS_KINDS)
def test_search_answers_unchanged_by_compaction(tmp_path: Path, data: Dataset, kind: str) -> None:
    """Same hits (ids, scores, payloads), filtered or not, in the compacting process, in a reader opened after,
    and in a kind opened only after the compaction (remapped with the recorded renumbering)."""
    s = _settings(tmp_path)
    _make(s, data, 250, 100)
    before_ro = _open(s)
    before, points = _answers(before_ro, data), _state(before_ro)
    _close(before_ro)
    st = open_store(s, "c", kind, create=False)
    others = [open_store(s, "c", k, create=False) for k in FAISS_KINDS if k != kind]
    rep = st.compact()
    assert rep.compacted and (rep.rows_before, rep.rows_after) == (N + 250, N - 100)
    here = {kind: st, **{o.params.kind: o for o in others}}  # type: ignore[attr-defined]
    assert _answers(here, data) == before
    for o in others:
        o.close()
    st.close()
    after = _open(s)
    assert _answers(after, data) == before and _state(after) == points
    assert all(x.info()["searches"].get("rebuilds", 0) == 0 for x in after.values())
    _close(after)


def test_a_kind_not_open_during_compaction_catches_up(tmp_path: Path, data: Dataset) -> None:
    """Compacting through flat alone: the other kinds remap on their next open (one generation behind: exactly,
    from the recorded renumbering; two behind: hnsw rebuilds its graph)."""
    s = _settings(tmp_path)
    _make(s, data, 250, 100)
    ro = _open(s)
    before = _answers(ro, data)
    _close(ro)
    with open_store(s, "c", "flat", create=False) as flat:
        flat.compact()  # type: ignore[attr-defined]
    ro = _open(s)
    assert _answers(ro, data) == before
    _close(ro)
    with open_store(s, "c", "flat", create=False) as flat:
        flat.upsert(data.point_ids()[:300], data.xb[:300], [_payload(i, 1) for i in range(300)])
        flat.compact()  # type: ignore[attr-defined]
    ro = _open(s)
    assert ro["hnsw"].info()["searches"]["rebuilds"] == 1
    now = _answers(ro, data)
    exact = {tuple(h[0] for h in q) for q in now["flat/all"]}
    assert {tuple(h[0] for h in q) for q in now["ivf/all"]} == exact  # same quantizer, same lists
    pairs = zip(now["hnsw/all"], now["flat/all"], strict=True)
    overlap = np.mean([len({h[0] for h in a} & {h[0] for h in b}) / 10 for a, b in pairs])
    assert overlap >= 0.9
    assert verify(s, "c").ok
    _close(ro)


def test_compact_cli_json_and_verify(tmp_path: Path, data: Dataset, capsys: pytest.CaptureFixture[str]) -> None:
    s = _settings(tmp_path)
    _make(s, data, 250, 100)
    base = ["--data-dir", str(s.data_dir)]
    assert main([*base, "verify", "--name", "c", "--json"]) == 0
    notes = json.loads(capsys.readouterr().out)["notes"]
    assert any("350 of 850 vector rows (41.2%) are garbage" in n and "simlookup compact c" in n for n in notes)
    assert main([*base, "compact", "c", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["rows_before"], doc["rows_after"]) == (850, 500)
    assert doc["bytes_after"] < doc["bytes_before"] and doc["seconds"] >= 0
    assert doc["spaces"]["text"]["generation"] == 1
    assert main([*base, "verify", "--name", "c", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["ok"] and not any("garbage" in n for n in rep["notes"]), rep
    assert main([*base, "compact", "c"]) == 0
    assert "nothing to reclaim (500 vector rows, all live)" in capsys.readouterr().out
    assert main([*base, "compact", "nope"]) == 2
    assert "nope" in capsys.readouterr().err


def _run(s: Settings, body: str, env: dict[str, str] | None = None, wait: bool = True) -> subprocess.Popen[str]:
    """Run ``body`` in another process with ``s`` (its settings), ``np``, ``Collection`` and ``open_store``."""
    code = textwrap.dedent(
        f"""
        import sys, numpy as np
        sys.path.insert(0, {str(ROOT)!r})
        from retrieval.collection import Collection
        from retrieval.settings import QdrantSettings, Settings
        from retrieval.stores import open_store
        s = Settings(data_dir={str(s.data_dir)!r}, qdrant=QdrantSettings(mode="edge"))
        """
    ) + textwrap.dedent(body)
    proc = subprocess.Popen(
        [sys.executable, "-c", code], text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    if wait:
        proc.communicate(timeout=300)
    return proc


FAULTS = [
    ("compact:vectors-written", 0),  # the new vector file written, not yet committed
    ("compact:committed", 1),  # the renumbering committed, the old file still there, no kind remapped
    ("compact:old-removed", 1),  # the old file deleted, no kind remapped
    ("compact:kind-renumbered", 1),  # flat remapped and flushed, the others not
    ("flush:manifest-written", 1),  # ivf's manifest names its new index, the old index.faiss still in place
]


@pytest.mark.parametrize(("fault", "generation"), FAULTS)
def test_a_kill_during_compaction_leaves_the_old_or_the_new_store(
    tmp_path: Path, data: Dataset, fault: str, generation: int
) -> None:
    s = _settings(tmp_path)
    _make(s, data, 250, 100)
    ro = _open(s)
    before, points = _answers(ro, data), _state(ro)
    _close(ro)
    proc = _run(s, "with Collection(s, 'c', read_only=False) as c:\n    c.compact()\n", {"SIMLOOKUP_FAULT": fault})
    assert proc.returncode == -9, proc.stderr.read() if proc.stderr else ""  # killed at the fault point
    ro = _open(s)  # readers first: they change no file
    assert ro["flat"].info()["generation"] == generation
    assert _answers(ro, data) == before and _state(ro) == points
    _close(ro)
    rep = verify(s, "c")
    assert rep.ok, rep.differences
    assert any("garbage" in n for n in rep.notes) == (generation == 0)
    with Collection(s, "c", read_only=False) as coll:  # a writer's open deletes the other generation's file
        for k in FAISS_KINDS:
            coll.store(k)
        assert _vector_files(s) == ["vectors.f32" if generation == 0 else "vectors.1.f32"]
        coll.compact()
    ro = _open(s)
    assert ro["flat"].info()["generation"] == generation + (generation == 0)
    assert _answers(ro, data) == before and _state(ro) == points
    _close(ro)
    assert verify(s, "c").ok


def test_a_reader_beside_compactions_never_mixes_old_and_new(tmp_path: Path, data: Dataset) -> None:
    """A writer process rewrites half the points and compacts, five times; meanwhile this process searches
    through read-only stores (following the writer) and opens fresh ones: every hit's payload belongs to its
    id and its score is that of the id's vector."""
    s = _settings(tmp_path)
    _make(s, data, 0, 0)
    unit = data.xb[:N] / np.linalg.norm(data.xb[:N], axis=1, keepdims=True)
    q = data.xq / np.linalg.norm(data.xq, axis=1, keepdims=True)
    expected = q @ unit.T  # (nq, N): the cosine of each query with each point
    np.save(tmp_path / "x.npy", data.xb[:N])
    writer = _run(
        s,
        f"""
        x = np.load({str(tmp_path / "x.npy")!r})
        stores = [open_store(s, "c", k, create=False) for k in {list(FAISS_KINDS)!r}]
        print("ready", flush=True)
        for r in range(1, 6):
            half = np.arange(r % 2, {N}, 2)
            pls = [{{"i": int(i), "g": int(i) % 3, "r": r}} for i in half]
            stores[0].upsert(["p%d" % i for i in half], x[half], pls)
            stores[0].flush()
            stores[0].compact()
        for st in stores:
            st.close()
        """,
        wait=False,
    )
    assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
    followers = _open(s)
    errors: list[str] = []
    searches = 0

    def check(st: VectorStore, where: str) -> None:
        nonlocal searches
        # the sq8 kinds score with their 8-bit codes (no re-rank by default): near the vector's score, not equal
        tol = 2e-2 if getattr(st, "kind", "").endswith("_sq8") else 1e-4
        for qi, hits in enumerate(st.search(data.xq, k=5)):
            for h in hits:
                i = int(h.id[1:])
                if h.payload.get("i") != i or abs(h.score - expected[qi, i]) > tol:
                    errors.append(f"{where}: {h.id} payload {h.payload} score {h.score} vs {expected[qi, i]}")
        searches += 1

    rounds = 0
    while writer.poll() is None or rounds == 0:
        rounds += 1
        for k, st in followers.items():
            check(st, f"follower {k}")
        kind = FAISS_KINDS[rounds % len(FAISS_KINDS)]
        fresh = open_store(s, "c", kind, create=False, read_only=True)
        try:
            check(fresh, f"fresh {kind}")
        finally:
            fresh.close()
    _, err = writer.communicate()
    assert writer.returncode == 0, err
    assert not errors, f"{len(errors)} inconsistent hits in {searches} searches; first: {errors[0]}"
    for k, st in followers.items():
        check(st, f"follower {k} after")
        assert st.info()["generation"] == 5
    assert sum(st.info()["searches"].get("reloads", 0) for st in followers.values()) >= 1
    assert not errors, errors[0]
    _close(followers)
    assert verify(s, "c").ok


def test_compaction_carries_checksums_over(tmp_path: Path, data: Dataset) -> None:
    """A damaged live row stays damaged for verify after a compaction (its recorded checksum moves with it, it
    is not recomputed from the damaged bytes); a damaged garbage row is a note before and gone after."""
    s = _settings(tmp_path)
    _make(s, data, 100, 0)  # rows 0..99 are garbage, 600..699 their new rows
    vf = s.data_dir / "faiss" / "c" / "points" / "vectors.f32"
    row = data.dim * 4
    with open(vf, "r+b") as f:
        for r in (5, 650):  # a garbage row, the live row of point p50
            f.seek(r * row)
            f.write(bytes(row))
    rep = verify(s, "c")
    assert any("1 row(s) of replaced or deleted points differ" in n for n in rep.notes)
    assert any("1 vector(s)" in d and "'p50'" in d for d in rep.differences)
    with open_store(s, "c", "flat", create=False) as st:
        st.compact()  # type: ignore[attr-defined]
    rep = verify(s, "c")
    assert not any("differ" in n for n in rep.notes)
    assert any("1 vector(s)" in d and "fid 550 (id 'p50')" in d for d in rep.differences), rep.differences
