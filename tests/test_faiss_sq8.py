"""FAISS memory tiers (issue 25 item 1): the SQ8 kinds (8-bit codes, optional exact re-rank) and a re-rank that
reads only its candidates' rows from the vector file, never mapping the file into the process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.datasets import Dataset, clustered
from retrieval.collection import Collection
from retrieval.retriever import Retriever
from retrieval.settings import FaissSettings, SearchLimits, Settings
from retrieval.stores import SearchParams, open_store
from retrieval.stores.faiss_params import faiss_module
from retrieval.stores.faiss_store import FaissStore
from retrieval.stores.vector_file import VectorFile
from retrieval.tuning import tune
from retrieval.verify import verify
from tests.test_tuning import exact_ids, id_recall, make

SQ8 = ["ivf_sq8", "hnsw_sq8"]


@pytest.fixture(scope="module")
def big() -> Dataset:
    # 20,000 × 64-d: a 5 MB vector file (1,250 pages), so a few thousand scattered rows cannot cover it
    return clustered(n=20_000, d=64, nq=60, seed=3)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, big: Dataset) -> Settings:
    s = Settings(data_dir=tmp_path_factory.mktemp("sq8") / "data", faiss=FaissSettings(sq8_rerank=True))
    ids = big.point_ids()
    for kind in ("ivfpq", *SQ8):
        extra: dict[str, Any] = {"pq_m": 8} if kind == "ivfpq" else {}
        st = open_store(s, "c", kind, dim=big.dim, **extra)
        if kind == "ivfpq":
            st.upsert(ids, big.xb, [{"i": i} for i in range(len(ids))])
        st.build()
        st.close()  # the writer's mapping goes with it
    return s


class RowCount:
    """Counts the rows ``VectorFile.read_rows`` reads (its calls, and how many rows each asked for)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.rows = 0
        self.calls = 0
        real = VectorFile.read_rows

        def counted(vf: VectorFile, rows: np.ndarray) -> np.ndarray:
            self.calls += 1
            self.rows += int(np.size(rows))
            return real(vf, rows)

        monkeypatch.setattr(VectorFile, "read_rows", counted)


def mapped_rss(folder: Path) -> int:
    """Resident bytes of this process's mappings of files under ``folder`` (/proc/self/smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
            inside = len(head) >= 6 and head[5].startswith(str(folder))
        elif inside and line.startswith("Rss:"):
            total += int(head[1]) * 1024
    return total


@pytest.fixture
def no_file_map(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail any read of the vector file through its memory map (gathers and scans go through ``view``)."""

    def refuse(vf: VectorFile) -> np.ndarray:
        raise AssertionError("a search read the vector file through its memory map")

    monkeypatch.setattr(VectorFile, "view", refuse)
    yield


def test_read_rows_equals_the_file_rows_in_any_order_and_shape(built: Settings, big: Dataset) -> None:
    st = open_store(built, "c", "ivfpq", create=False, read_only=True)
    try:
        assert isinstance(st, FaissStore)
        vf = st.stored_vectors()
        rows = np.array([[5, 4, 5, 19_999], [0, 1, 2, 3]])  # repeats, a run, the last row, out of order
        got = st._ps.vectors.read_rows(rows)
        assert got.shape == (2, 4, big.dim) and np.array_equal(got, vf[rows])
        assert st._ps.vectors.read_rows(np.zeros(0, dtype=np.int64)).shape == (0, big.dim)
        with pytest.raises(IndexError):
            st._ps.vectors.read_rows(np.array([20_000]))
    finally:
        st.close()


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux /proc/self/smaps")
def test_ivfpq_rerank_reads_only_the_candidate_rows(
    built: Settings, big: Dataset, monkeypatch: pytest.MonkeyPatch, no_file_map: None
) -> None:
    """Each ivfpq search with re-rank ×10 reads exactly its k×10 candidates' rows (pread), and a few hundred
    searches leave none of the vector file resident through the map (before: gathers through the map faulted
    in the pages, and fault-around their neighbours, until the whole file was resident)."""
    st = open_store(built, "c", "ivfpq", create=False, read_only=True)
    assert isinstance(st, FaissStore)
    count = RowCount(monkeypatch)
    try:
        nlist = st.info()["nlist"]
        params = SearchParams(nprobe=nlist, rerank=10)  # every list: k×10 candidates, never a top-up
        rng = np.random.default_rng(0)
        queries = big.xb[rng.choice(len(big.xb), 300, replace=False)] + 0.01 * rng.normal(size=(300, big.dim))
        for q in queries.astype(np.float32):
            assert len(st.search(q, 10, params=params)[0]) == 10
        assert count.calls == 300 and count.rows == 300 * 10 * 10
        batch = st.search(queries[:7].astype(np.float32), 10, params=params)
        assert [len(r) for r in batch] == [10] * 7 and count.rows == 3000 * 10 + 7 * 100
        assert mapped_rss(built.data_dir) == 0
        assert st.stats["topup"] == 0 and st.stats["exact"] == 0
    finally:
        st.close()


@pytest.mark.parametrize("kind", SQ8)
def test_sq8_searches_codes_and_reranks_from_the_file_on_demand(
    built: Settings, big: Dataset, kind: str, monkeypatch: pytest.MonkeyPatch, no_file_map: None
) -> None:
    """Re-rank off: a search reads no float row; on (sq8_rerank, or --rerank-factor): k×factor rows, by pread.
    Either way recall@10 is high and the index holds 8-bit codes (dim bytes a vector, not 4·dim)."""
    off = Settings(data_dir=built.data_dir)  # sq8_rerank false: the codes alone
    count = RowCount(monkeypatch)
    truth = exact_ids(big, 10)
    for settings, rows_per_query in ((off, 0), (built, 100)):
        st = open_store(settings, "c", kind, create=False, read_only=True)
        try:
            assert isinstance(st, FaissStore) and st.reranks == bool(rows_per_query)
            before = count.rows
            got = st.search(
                big.xq, 10, params=SearchParams(nprobe=64) if kind == "ivf_sq8" else SearchParams(hnsw_ef=128)
            )
            assert count.rows - before == rows_per_query * len(big.xq)
            assert id_recall(got, truth) >= 0.95, (kind, rows_per_query)
            explicit = st.search(
                big.xq[:3],
                10,
                params=SearchParams(rerank=5) if kind == "hnsw_sq8" else SearchParams(nprobe=64, rerank=5),
            )
            assert [len(r) for r in explicit] == [10] * 3 and count.rows - before == rows_per_query * 60 + 150
            codes = st.memory_bytes() / st.count()
            assert big.dim <= codes < 2 * big.dim + (8 * 32 + 64 if kind == "hnsw_sq8" else 32), codes
        finally:
            st.close()
    assert mapped_rss(built.data_dir) == 0


def test_hnsw_sq8_trains_at_first_search_and_retrains_as_it_grows(tmp_path: Path) -> None:
    """hnsw_sq8 learns its 8-bit ranges from the points: a search before build trains on what is there; build
    retrains (a fresh graph) once a full training run would sample more than twice as many points, not for a
    small append; deletes are tombstones like hnsw's."""
    ds = clustered(n=4400, d=16, nq=20, seed=1)
    st = open_store(Settings(data_dir=tmp_path / "d"), "g", "hnsw_sq8", dim=ds.dim)
    ids = ds.point_ids()
    st.upsert(ids[:1000], ds.xb[:1000])
    assert st.info()["trained"] is False
    assert st.search(ds.xb[0], 1)[0][0].id == ids[0]  # trained on the 1,000 points there
    st.upsert(ids[1000:4000], ds.xb[1000:4000])
    assert st.search(ds.xb[3000], 1)[0][0].id == ids[3000]  # added to the trained index
    assert st.build() is True  # 2 × 1,000 < 4,000: ranges learnt again, graph rebuilt
    st.upsert(ids[4000:], ds.xb[4000:])
    assert st.build() is False  # 2 × 4,000 ≥ 4,400: kept
    st.delete(ids[:10])
    assert st.count() == 4390 and all(h.id not in ids[:10] for h in st.search(ds.xb[:10], 5)[0])
    st.close()
    st = open_store(Settings(data_dir=tmp_path / "d"), "g", "hnsw_sq8", create=False)
    assert st.count() == 4390 and st.search(ds.xb[4100], 1)[0][0].id == ids[4100]
    assert st.build() is False
    st.close()


@pytest.fixture(scope="module")
def hard() -> Dataset:
    return clustered(n=6000, d=32, nq=200, clusters=300, spread=0.7, seed=5)  # test_tuning's set


@pytest.mark.parametrize("rerank", [False, True], ids=["codes", "rerank"])
def test_sq8_kinds_tune_to_the_target(tmp_path: Path, hard: Dataset, rerank: bool) -> None:
    """build() tunes each SQ8 kind to recall@10 0.95 by id overlap (nprobe / ef; with re-rank on, the factor
    too), and a default search reaches it on fresh queries."""
    s = Settings(data_dir=tmp_path / "d", faiss=FaissSettings(sq8_rerank=rerank))
    coll = make(s, "t", hard.dim, SQ8)
    for kind in SQ8:
        coll.store(kind, create=True)
    coll.upsert(hard.point_ids(), hard.xb, [{} for _ in hard.xb])
    coll.build()
    points = coll.manifest.tuning["text"]
    extra = {"rerank"} if rerank else set()
    assert set(points["ivf_sq8"]["params"]) == {"nprobe", *extra}
    assert set(points["hnsw_sq8"]["params"]) == {"hnsw_ef", *extra}
    for kind, op in points.items():
        assert op["reached"] and op["recall"] >= 0.95 + op["margin"] - 1e-9, (kind, op)
    coll.flush()
    coll.save()
    coll.close()
    truth = exact_ids(hard, 10)
    with Retriever(s, "t") as r:
        for kind in SQ8:
            assert id_recall(r.store(kind).search(hard.xq, 10), truth) >= 0.95 - 0.005, kind


def test_an_unreachable_sq8_target_names_the_build_change(tmp_path: Path, hard: Dataset) -> None:
    """hnsw_sq8 with a thin graph and ef capped at 16 cannot reach 0.95: the advice names re-rank on and a larger M."""
    s = Settings(data_dir=tmp_path / "d", faiss=FaissSettings(hnsw_m=4), limits=SearchLimits(max_ef=16))
    coll = make(s, "u", hard.dim, ["hnsw_sq8"])
    coll.store("hnsw_sq8", create=True)
    coll.upsert(hard.point_ids(), hard.xb, [{} for _ in hard.xb])
    coll.build()
    op = coll.manifest.tuning["text"]["hnsw_sq8"]
    assert not op["reached"] and "SIMLOOKUP_FAISS__SQ8_RERANK=true" in op["advice"] and "HNSW_M" in op["advice"]
    coll.close()


def blobs(n: int, seed: int, d: int = 32) -> np.ndarray:
    """Unit vectors in 20 tight clusters; another seed draws other clusters (a corpus of another kind)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(20, d))[rng.integers(0, 20, n)] + 0.3 * rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def score_error(st: Any, x: np.ndarray, q: np.ndarray, params: SearchParams | None = None) -> tuple[float, float]:
    """(largest |score - true cosine| over the hits, recall@10 against exact search) of 10-NN searches of q."""
    err, rec = 0.0, []
    for hits, v in zip(st.search(q, 10, params=params), q, strict=True):
        true = x @ v
        err = max([err] + [abs(h.score - float(true[int(h.id[1:])])) for h in hits])
        rec.append(len(set(np.argsort(-true)[:10].tolist()) & {int(h.id[1:]) for h in hits}) / 10)
    return err, float(np.mean(rec))


@pytest.mark.parametrize("kind", [*SQ8, "ivfpq"])
def test_vectors_replaced_from_another_distribution_are_never_answered_from_clipped_codes(
    tmp_path: Path, kind: str
) -> None:
    """300 of 2,000 points re-written in place with vectors of other clusters (a re-ingest of another corpus
    under the same ids): before, the 8-bit codes clipped them to the old ranges (ivf_sq8 put a point first at
    0.49 whose cosine is 0.37; max score error 0.25, recall 0.72) and PQ coded them with the old codebooks, and
    build kept the index. Now a write holds them out of the index (answered exactly) and build retrains."""
    a, b, q = blobs(2000, 0), blobs(300, 2), np.concatenate([blobs(25, 5), blobs(25, 6)])
    ids = [f"p{i}" for i in range(2000)]
    st = open_store(Settings(data_dir=tmp_path / "d"), "c", kind, dim=32, **({"pq_m": 8} if kind == "ivfpq" else {}))
    st.upsert(ids, a)
    st.build()
    x = a.copy()
    x[:300] = b
    st.upsert(ids[:300], b)
    codes = SearchParams(rerank=0)  # ivfpq re-ranks by default: its codes alone show the scores they give
    err, recall = score_error(st, x, q, codes)
    assert err < (0.08 if kind == "ivfpq" else 0.01) and recall >= (0.8 if kind == "ivfpq" else 0.95), (err, recall)
    assert st.info()["held_out"] > 0 and st.stats["held_out_searches"] > 0
    assert st.build() is True  # retrained on the data as it is now: as good as a fresh build of it
    assert st.info()["held_out"] == 0 and st.check_codes(None)["off"] == 0  # type: ignore[attr-defined]
    err, recall = score_error(st, x, q, codes)
    assert st.build() is False  # nothing held out: kept
    st.close()
    fresh = open_store(Settings(data_dir=tmp_path / "f"), "c", kind, dim=32, **({"pq_m": 8} if kind == "ivfpq" else {}))
    fresh.upsert(ids, x)
    fresh.build()
    fresh_err, fresh_recall = score_error(fresh, x, q, codes)
    fresh.close()
    assert err <= 1.5 * fresh_err + 0.005 and recall >= fresh_recall - 0.03, (err, recall, fresh_err, fresh_recall)


@pytest.mark.parametrize("kind", SQ8)
def test_held_out_points_survive_reopen_filters_compaction_and_deletes(tmp_path: Path, kind: str) -> None:
    """Held-out points are recorded with the index (a reader opens them), answered exactly under a filter, keep
    their ids through a compaction, leave with a delete; past the exact-filter limit the index is dropped
    (untrained: the next search or build trains it)."""
    s = Settings(data_dir=tmp_path / "d", faiss=FaissSettings(exact_filter_limit=250))  # a filter of 1,000: index
    a, b, q = blobs(2000, 0), blobs(300, 2), blobs(20, 6)
    ids = [f"p{i}" for i in range(2000)]
    st = open_store(s, "c", kind, dim=32)
    st.upsert(ids, a, [{"half": i % 2} for i in range(2000)])
    st.build()
    x = a.copy()
    x[:300] = b
    st.upsert(ids[:300], b, [{"half": i % 2} for i in range(300)])
    held = st.info()["held_out"]
    assert 0 < held <= 250 and st.info()["garbage_rows"] == 300
    st.flush()
    ro = open_store(s, "c", kind, create=False, read_only=True)
    assert ro.info()["held_out"] == held and score_error(ro, x, q)[0] < 0.01
    ro.close()
    searches = st.stats["held_out_searches"]
    odd = st.search(q, 10, filter={"half": 1})  # 1,000 matches: the index answers, the held-out merged in
    assert st.stats["held_out_searches"] == searches + 1
    assert all(h.payload["half"] == 1 for row in odd for h in row) and [len(r) for r in odd] == [10] * len(q)
    assert max(abs(h.score - float(x[int(h.id[1:])] @ v)) for row, v in zip(odd, q, strict=True) for h in row) < 0.01
    assert st.compact().compacted  # type: ignore[attr-defined]
    assert st.info()["held_out"] == held and score_error(st, x, q)[0] < 0.01
    st.delete(ids[:300])
    assert st.info()["held_out"] == 0 and st.count() == 1700
    st.close()
    tight = Settings(data_dir=tmp_path / "e", faiss=FaissSettings(exact_filter_limit=50))
    st = open_store(tight, "c", kind, dim=32)
    st.upsert(ids, a)
    st.build()
    st.upsert(ids[:300], b)  # more held out than a search scores exactly: dropped, trained again when searched
    assert st.info()["trained"] is False and st.stats["dropped"] == 1
    assert score_error(st, x, q)[0] < 0.01 and st.info()["trained"] is True
    st.close()


@pytest.mark.parametrize("legacy", [False, True], ids=["recorded", "unrecorded"])
def test_verify_flags_codes_far_from_their_vectors_and_build_retrains(tmp_path: Path, legacy: bool) -> None:
    """An ivf_sq8 index whose codes clip its points (ranges narrower than its data: what an index built before
    codes were checked holds after a re-ingest of other data): verify reports it with the repair; build finds it
    (every code checked when the manifest records no limit, else a sample of them) and retrains."""
    s = Settings(data_dir=tmp_path / "d")
    a = blobs(2000, 0)
    coll = make(s, "v", 32, ["flat", "ivf_sq8"])
    for kind in ("flat", "ivf_sq8"):
        coll.store(kind, create=True)
    coll.upsert([f"p{i}" for i in range(2000)], a, [{} for _ in a])
    coll.build()
    st = coll.store("ivf_sq8")
    assert isinstance(st, FaissStore)
    live = st._ps.live_fids()
    idx = st.faiss_index
    lo, hi = a.min(axis=0), a.max(axis=0)
    narrow = np.concatenate([(3 * lo + hi) / 4, (hi - lo) / 2]).astype(np.float32)  # the middle half of each range
    faiss_module().copy_array_to_vector(narrow, idx.sq.trained)  # faiss RS_minmax: vmin, then vdiff
    idx.reset()
    idx.add_with_ids(a[live], live)
    coll.manifest.count = 2000
    coll.flush()
    coll.save()
    coll.close()
    if legacy:
        path = s.data_dir / "faiss" / "v" / "ivf_sq8" / "manifest.json"
        doc = json.loads(path.read_text())
        del doc["codes"]
        path.write_text(json.dumps(doc))
    rep = verify(s, "v")
    assert not rep.ok
    bad = [d for d in rep.differences if d.startswith("text/ivf_sq8:") and "coded far from their stored vectors" in d]
    assert bad and "repair: `simlookup ingest" in bad[0] and "build re-trains" in bad[0], rep.differences
    coll = Collection(s, "v", read_only=False)
    st = coll.store("ivf_sq8")
    assert st.build() is True
    assert st.check_codes(None)["off"] == 0  # type: ignore[attr-defined]
    coll.flush()
    coll.close()
    assert verify(s, "v").ok


def test_the_advice_names_the_limit_the_tuning_met(tmp_path: Path, hard: Dataset) -> None:
    """ivf_sq8 without re-rank cannot reach 0.999: its 8-bit codes stop it, not nprobe (the cap, 65,536, is far
    above its lists; it used to advise raising it). ivf with nprobe capped below its lists names the cap."""
    s = Settings(data_dir=tmp_path / "d", limits=SearchLimits(max_nprobe=4))
    for kind in ("ivf_sq8", "ivf"):
        st = open_store(Settings(data_dir=s.data_dir) if kind == "ivf_sq8" else s, "a", kind, dim=hard.dim)
        if kind == "ivf_sq8":
            st.upsert(hard.point_ids(), hard.xb)
        st.build()
        op = tune(st, target=0.999 if kind == "ivf_sq8" else 0.99)
        assert op is not None and not op.reached
        if kind == "ivf_sq8":
            assert "SIMLOOKUP_FAISS__SQ8_RERANK=true" in op.advice and "MAX_NPROBE" not in op.advice, op.advice
        else:
            nlist = st.info()["nlist"]
            assert f"SIMLOOKUP_LIMITS__MAX_NPROBE (now 4, the index has {nlist} lists)" in op.advice, op.advice
        st.close()


@pytest.mark.parametrize("kind", SQ8)
def test_a_thin_query_answered_exactly_does_not_count_held_out_points_twice(tmp_path: Path, kind: str) -> None:
    """The held-out points are merged into the index's answer; a thin query's row was already an exact answer over
    the matches, held-out ones included, so they came back twice (k=1000 on a collection with held-out points)."""
    from retrieval.stores.faiss_exact import merged

    s = Settings(data_dir=tmp_path / "d", faiss=FaissSettings(exact_filter_limit=400, exact_filter_cost=0))
    a, b, q = blobs(2400, 0), blobs(300, 2), blobs(5, 2)
    ids = [f"p{i}" for i in range(2400)]
    st = open_store(s, "c", kind, dim=32)
    st.upsert(ids, a, [{"region": int(i >= 2000)} for i in range(2400)])  # 400 matches in the index
    st.build()
    st.upsert(ids[:300], b, [{"region": 1} for _ in range(300)])  # 300 more, held out (codes too far)
    assert 0 < st.info()["held_out"] <= 400
    res = st.search(q, 50, filter={"region": 1})  # 700 match: past the exact path, through the index
    assert st.stats["held_out_searches"] > 0
    assert all(len({h.id for h in r}) == len(r) == 50 and all(h.payload["region"] == 1 for h in r) for r in res)
    st.close()
    one = (np.array([[3, 1, -1]]), np.array([[0.9, 0.5, 0.0]], dtype=np.float32))
    two = (np.array([[1, 7]]), np.array([[0.5, 0.8]], dtype=np.float32))
    assert merged(one, two, 4, False)[0].tolist() == [[3, 7, 1, -1]]  # 1 once, not twice
