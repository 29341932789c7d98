"""FAISS-specific behaviour: the shared point store, kinds, training, manifests, checksums, locks, re-rank."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.datasets import Dataset, clustered
from retrieval.errors import (
    CorruptIndexError,
    InvalidInputError,
    ManifestMismatchError,
    NotTrainedError,
    StoreLockedError,
    StoreNotFoundError,
    UnknownKindError,
)
from retrieval.settings import FaissSettings, Settings
from retrieval.stores import FAISS_KINDS, SearchParams, open_store
from retrieval.stores.faiss_store import FaissBuildParams, default_nlist
from tests.conftest import recall_at_k
from tests.test_store_contract import exact_ids


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def ids_of(res: list) -> list[list[str]]:
    return [[h.id for h in r] for r in res]


def test_unknown_kind_and_metric(settings: Settings) -> None:
    with pytest.raises(UnknownKindError, match="unknown index 'annoy'"):
        open_store(settings, "x", "annoy", dim=8)
    with pytest.raises(UnknownKindError, match="unknown FAISS index kind"):
        FaissBuildParams(kind="lsh")
    with pytest.raises(UnknownKindError, match="unknown metric"):
        open_store(settings, "x", "flat", dim=8, metric="manhattan")


def test_names_cannot_escape_data_dir(settings: Settings) -> None:
    for bad in ("../x", "/abs", "a/b", "", "..", "x/../../y"):
        with pytest.raises(InvalidInputError):
            open_store(settings, bad, "flat", dim=8)
    assert not (settings.data_dir.parent / "x").exists()


def test_nlist_rule_gives_every_list_39_training_points(settings: Settings) -> None:
    assert default_nlist(15_487) == 397  # the STS-B demo: 4·√N would be 498 lists, too many for 15,487 points
    assert default_nlist(10_000) == 256
    assert default_nlist(1_000_000) == 4000  # large collections keep 4·√N
    assert all(n // default_nlist(n) >= 39 for n in (39, 100, 3000, 15_487, 24_336, 100_000))
    st = open_store(settings, "small", "ivfpq", dim=16, pq_m=4)
    rng = np.random.default_rng(0)
    st.upsert([f"p{i}" for i in range(100)], rng.normal(size=(100, 16)))
    with pytest.raises(NotTrainedError, match=r"at least 256 points.*has 100"):
        st.search(rng.normal(size=16), k=3)
    st.close()


def test_pq_m_must_divide_dim(settings: Settings) -> None:
    with pytest.raises(InvalidInputError, match="divide"):
        open_store(settings, "pq", "ivfpq", dim=30, pq_m=8)


def test_manifest_mismatch_refused(settings: Settings, data: Dataset) -> None:
    st = open_store(settings, "m", "flat", dim=data.dim, fingerprint="model-a@123")
    st.upsert(["a"], data.xb[:1])
    st.close()
    with pytest.raises(ManifestMismatchError, match="fingerprint"):
        open_store(settings, "m", "flat", dim=data.dim, fingerprint="model-b@456")
    with pytest.raises(ManifestMismatchError, match="dim"):
        open_store(settings, "m", "flat", dim=data.dim * 2)
    with pytest.raises(ManifestMismatchError, match="holds 32-d"):  # a new kind must fit the collection's vectors
        open_store(settings, "m", "hnsw", dim=data.dim * 2)
    with pytest.raises(StoreNotFoundError):
        open_store(settings, "nothing", "flat", create=False)


def test_truncated_index_refused_and_left_alone(settings: Settings, data: Dataset) -> None:
    st = open_store(settings, "t", "hnsw", dim=data.dim)
    st.upsert(data.point_ids()[:500], data.xb[:500])
    st.close()
    path = settings.data_dir / "faiss" / "t" / "hnsw" / "index.faiss"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CorruptIndexError, match="checksum"):
        open_store(settings, "t", "hnsw", dim=data.dim)
    assert path.read_bytes() == raw[: len(raw) // 2]


def test_one_point_store_per_collection_written_once(settings: Settings, data: Dataset) -> None:
    """The ingest job writes the same points through every kind: the collection stores them once."""
    stores = {k: open_store(settings, "c", k, dim=data.dim) for k in FAISS_KINDS}
    ids = data.point_ids()
    pls = [{"i": i} for i in range(len(ids))]
    for st in stores.values():
        assert st.upsert(ids, data.xb, pls) == len(ids)  # the same points again: unchanged, still len(ids)
    for st in stores.values():
        st.build()
    assert {st.info()["seq"] for st in stores.values()} == {1}  # one committed write for four kinds
    for st in stores.values():
        st.close()
    root = settings.data_dir / "faiss" / "c"
    assert files_under(root) >= {"points/points.sqlite", "points/vectors.f32", "flat/manifest.json"}
    assert not (root / "flat" / "index.faiss").exists()  # flat answers from the shared vector file
    assert (root / "points" / "vectors.f32").stat().st_size == data.xb.nbytes


def test_disk_of_four_kinds_within_5x_raw_vectors(settings: Settings) -> None:
    ds = clustered(n=3000, d=384, nq=1, seed=1)
    stores = [open_store(settings, "disk", k, dim=ds.dim) for k in FAISS_KINDS]
    ids = ds.point_ids()
    stores[0].upsert(ids, ds.xb, [{"group": i % 7, "text": f"sentence number {i}"} for i in range(len(ids))])
    for st in stores:
        st.build()
        st.close()
    used = sum(p.stat().st_blocks * 512 for p in (settings.data_dir / "faiss" / "disk").rglob("*") if p.is_file())
    assert used <= 5 * ds.xb.nbytes, used / ds.xb.nbytes


def test_new_kind_catches_up_from_the_vector_file(settings: Settings, data: Dataset) -> None:
    flat = open_store(settings, "late", "flat", dim=data.dim)
    flat.upsert(data.point_ids(), data.xb)
    flat.close()
    hnsw = open_store(settings, "late", "hnsw", dim=data.dim)
    assert hnsw.count() == len(data.xb)
    assert [h.id for h in hnsw.search(data.xb[7], k=1)[0]] == [data.point_ids()[7]]
    assert hnsw.memory_bytes() > data.xb.nbytes  # the graph was built, not answered by brute force
    hnsw.close()


def test_second_writer_is_refused_read_only_opens_alongside(settings: Settings, data: Dataset) -> None:
    st = open_store(settings, "lock", "flat", dim=data.dim)
    with pytest.raises(StoreLockedError):
        open_store(settings, "lock", "flat", dim=data.dim)
    st.upsert(["a"], data.xb[:1], [{"x": 1}])
    ro = open_store(settings, "lock", "flat", create=False, read_only=True)
    ro2 = open_store(settings, "lock", "flat", create=False, read_only=True)
    st.upsert(["b"], data.xb[1:2])
    assert ro.count() == ro2.count() == 2  # in this process the readers share the writer's points
    assert ro.search(data.xb[1], k=1)[0][0].id == "b"
    with pytest.raises(StoreLockedError, match="read-only"):
        ro.upsert(["c"], data.xb[2:3])
    ro.close()
    ro2.close()
    st.close()
    open_store(settings, "lock", "flat", dim=data.dim).close()


def test_read_only_open_creates_nothing(settings: Settings, data: Dataset) -> None:
    st = open_store(settings, "ro", "ivf", dim=data.dim)
    st.upsert(data.point_ids(), data.xb)
    st.build()
    st.close()
    before = files_under(settings.data_dir)
    ro = open_store(settings, "ro", "ivf", create=False, read_only=True)
    assert len(ro.search(data.xq[0], k=5)[0]) == 5
    ro.close()
    assert files_under(settings.data_dir) == before
    with pytest.raises(StoreNotFoundError):
        open_store(settings, "ro", "hnsw", create=False, read_only=True)
    assert files_under(settings.data_dir) == before


@pytest.mark.parametrize("damage", ["delete", "garbage", "truncate-vectors", "delete-vectors"])
def test_damaged_point_store_is_a_clear_error(settings: Settings, data: Dataset, damage: str) -> None:
    st = open_store(settings, "dmg", "hnsw", dim=data.dim)
    st.upsert(data.point_ids(), data.xb)
    st.close()
    pdir = settings.data_dir / "faiss" / "dmg" / "points"
    if damage == "delete":
        (pdir / "points.sqlite").unlink()
    elif damage == "garbage":
        (pdir / "points.sqlite").write_bytes(b"not a database at all " * 100)
    elif damage == "truncate-vectors":
        raw = (pdir / "vectors.f32").read_bytes()
        (pdir / "vectors.f32").write_bytes(raw[: len(raw) // 2])
    else:
        (pdir / "vectors.f32").unlink()
    before = files_under(settings.data_dir)
    for read_only in (True, False):
        with pytest.raises(CorruptIndexError, match=r"(points\.sqlite|vectors\.f32).*simlookup ingest"):
            open_store(settings, "dmg", "hnsw", create=False, read_only=read_only)
        assert files_under(settings.data_dir) == before | ({"faiss/dmg/points/.lock"} if not read_only else set())


def test_edited_manifest_dimension_is_a_clear_error(settings: Settings, data: Dataset) -> None:
    import json

    for kind in ("flat", "hnsw"):
        st = open_store(settings, "dim", kind, dim=data.dim)
        st.upsert(data.point_ids()[:300], data.xb[:300])
        st.close()
        path = settings.data_dir / "faiss" / "dim" / kind / "manifest.json"
        m = json.loads(path.read_text())
        m["dim"] = data.dim * 2
        path.write_text(json.dumps(m))
        with pytest.raises(CorruptIndexError, match=rf"{kind}/manifest.json says dim 64.*simlookup ingest"):
            open_store(settings, "dim", kind, create=False, read_only=True)


def test_old_per_kind_format_is_detected(settings: Settings) -> None:
    old = settings.data_dir / "faiss" / "legacy" / "flat"
    old.mkdir(parents=True)
    sqlite3.connect(old / "points.sqlite").close()
    (old / "manifest.json").write_text('{"format_version": 1}')
    with pytest.raises(ManifestMismatchError, match=r"old per-kind format.*simlookup ingest CORPUS --name legacy"):
        open_store(settings, "legacy", "flat", create=False, read_only=True)


def test_crash_before_flush_is_recovered(settings: Settings, data: Dataset) -> None:
    """Points committed to the point store but not in the saved index are added on open."""
    st = open_store(settings, "crash", "ivf", dim=data.dim)
    ids = data.point_ids()
    st.upsert(ids[:1000], data.xb[:1000])
    st.build()
    st.flush()
    st.upsert(ids[1000:1500], data.xb[1000:1500])  # no flush: simulate a crash by dropping the handle
    st.delete(ids[:5])
    st._release()  # noqa: SLF001 - release locks without flushing, as a killed process would
    again = open_store(settings, "crash", "ivf", dim=data.dim)
    assert again.count() == 1495
    assert again.search(data.xb[1200], k=1)[0][0].id == ids[1200]
    assert again.search(data.xb[1200], k=1, params=SearchParams(nprobe=1000))[0][0].id == ids[1200]
    assert ids[0] not in {h.id for h in again.search(data.xb[0], k=3, params=SearchParams(nprobe=1000))[0]}
    again.close()


def test_ivf_retrains_when_trained_on_part_of_the_data(tmp_path: Path) -> None:
    """A job killed after a partial training ends, on resume, with the index of an uninterrupted run."""
    ds = clustered(n=6000, d=32, nq=50, seed=11)
    ids = ds.point_ids()
    for kind in ("ivf", "ivfpq"):
        part = open_store(Settings(data_dir=tmp_path / f"part-{kind}"), "x", kind, dim=ds.dim, pq_m=4)
        part.upsert(ids[:2000], ds.xb[:2000])
        part.build()  # trained on a third of the data (nlist for 2,000 points)
        part.upsert(ids[2000:], ds.xb[2000:])
        assert part.build()  # retrains: nlist and sample no longer fit 6,000 points
        assert not part.build()  # and only once
        full = open_store(Settings(data_dir=tmp_path / f"full-{kind}"), "x", kind, dim=ds.dim, pq_m=4)
        full.upsert(ids, ds.xb)
        full.build()
        assert part.info()["nlist"] == full.info()["nlist"] == default_nlist(6000)
        p = SearchParams(nprobe=8, rerank=0)
        assert ids_of(part.search(ds.xq, 10, params=p)) == ids_of(full.search(ds.xq, 10, params=p))
        part.close()
        full.close()


def test_hnsw_keeps_recall_after_re_upserts(tmp_path: Path) -> None:
    """Three rounds of 80% re-upserts (new vectors) without flush(): recall within 0.02 of a fresh build."""
    ds = clustered(n=5000, d=64, nq=200, seed=4)
    ids = ds.point_ids()
    rng = np.random.default_rng(1)
    xb = ds.xb.copy()
    st = open_store(Settings(data_dir=tmp_path / "a"), "h", "hnsw", dim=ds.dim)
    st.upsert(ids, xb)
    for _ in range(3):
        pick = rng.choice(len(ids), int(0.8 * len(ids)), replace=False)
        xb[pick] = xb[rng.permutation(pick)]  # the same ids now hold other points' vectors
        st.upsert([ids[i] for i in pick], xb[pick])
    assert st.count() == len(ids)
    fresh = open_store(Settings(data_dir=tmp_path / "b"), "h", "hnsw", dim=ds.dim)
    fresh.upsert(ids, xb)
    truth = exact_ids(Dataset(name="x", xb=xb, xq=ds.xq, metric="cosine"), ds.xq, 10)
    p = SearchParams(hnsw_ef=32)
    r_st = recall_at_k(ids_of(st.search(ds.xq, 10, params=p)), truth, 10)
    r_fresh = recall_at_k(ids_of(fresh.search(ds.xq, 10, params=p)), truth, 10)
    assert r_st >= r_fresh - 0.02, (r_st, r_fresh)
    assert st.info()["searches"].get("compactions", 0) >= 1
    st.close()
    fresh.close()


@pytest.mark.parametrize("kind", ["ivf", "ivfpq", "hnsw"])
def test_filtered_search_through_the_index_selector(tmp_path: Path, kind: str) -> None:
    """With the exact-filter threshold and cost at 0, filtered searches go through faiss's IDSelector (and top-up)."""
    ds = clustered(n=4000, d=32, nq=40, seed=9)
    s = Settings(data_dir=tmp_path / "d", faiss=FaissSettings(exact_filter_limit=0, exact_filter_cost=0))
    st = open_store(s, "f", kind, dim=ds.dim, pq_m=4)
    ids = ds.point_ids()
    st.upsert(ids, ds.xb, [{"g": i % 4, "rare": i % 200 == 0} for i in range(len(ids))])
    st.build()
    mid = SearchParams(hnsw_ef=64) if kind == "hnsw" else SearchParams(nprobe=16)
    res = st.search(ds.xq, k=10, filter={"g": 1}, params=mid)  # 25%: a bitmap selector
    assert all(len(r) == 10 and all(h.payload["g"] == 1 for h in r) for r in res)
    mask = np.arange(len(ids)) % 4 == 1
    assert recall_at_k(ids_of(res), exact_ids(ds, ds.xq, 10, mask), 10) >= 0.8
    low = SearchParams(hnsw_ef=10) if kind == "hnsw" else SearchParams(nprobe=1)
    rare = st.search(ds.xq, k=10, filter={"rare": True}, params=low)  # 20 match
    assert all(len(r) == 10 and all(h.payload["rare"] for h in r) for r in rare)
    stats = st.info()["searches"]
    assert stats["index"] == 2 and "exact" not in stats
    if kind != "hnsw":
        assert stats["topup"] > 0  # nprobe=1 finds fewer than 10 of 20 matches: topped up exactly
    st.close()


@pytest.mark.parametrize("kind", ["ivf", "ivfpq", "ivf_sq8"])
def test_a_filter_of_whole_clusters_is_answered_exactly_when_cheaper(tmp_path: Path, kind: str) -> None:
    """IVF under a filter correlated with the data (whole clusters, away from the query) answered k hits from the
    edge of its probed lists, not the nearest matches, and said nothing. A filter matching no more than twice the
    rows the index would read for the query is now answered exactly; a broad filter still goes through the index."""
    from benchmarks.store_targets import regions_for

    ds = clustered(n=20_000, d=384, nq=60, seed=4)
    region = regions_for(ds.xb, 0)  # each point's nearest of 100 anchors: ~1% of the points, whole clusters
    ids = ds.point_ids()
    payloads = [{"region": int(r), "half": i % 2} for i, r in enumerate(region)]
    # two regions per query (~2%, drawn at random): more matches than a probed list's top-up catches
    fq = [sorted({int(r) for r in np.random.default_rng(j).choice(100, 2, replace=False)}) for j in range(len(ds.xq))]

    def run(cost: float) -> tuple[list[list[str]], list[list[str]], dict[str, int]]:
        s = Settings(data_dir=tmp_path / f"c{cost}", faiss=FaissSettings(exact_filter_limit=0, exact_filter_cost=cost))
        st = open_store(s, "f", kind, dim=ds.dim, pq_m=48)
        st.upsert(ids, ds.xb, payloads)
        st.build()
        p = SearchParams(nprobe=8, rerank=10 if kind == "ivfpq" else None)
        got = [[h.id for h in st.search(q, k=10, filter={"region": r}, params=p)[0]]
               for q, r in zip(ds.xq, fq, strict=True)]
        truth = [[h.id for h in st.search(q, k=10, filter={"region": r}, params=SearchParams(exact=True))[0]]
                 for q, r in zip(ds.xq, fq, strict=True)]
        st.search(ds.xq[:5], k=10, filter={"half": 1}, params=p)  # half the points: more than the index reads
        stats = dict(st.info()["searches"])
        st.close()
        return got, truth, stats

    got, truth, stats = run(2.0)  # the default
    assert got == truth
    assert stats["exact"] == 2 * len(ds.xq) and stats["index"] == 1, stats
    _, _, stats0 = run(0.0)  # 0: the index for every filter (at 100k it answered such filters at recall 0.81)
    assert stats0.get("exact", 0) == len(ds.xq) and stats0["index"] == len(ds.xq) + 1


@pytest.mark.parametrize("kind", ["ivf", "ivfpq", "ivf_sq8", "hnsw", "hnsw_sq8", "qdrant"])
def test_a_filter_that_empties_the_querys_neighbourhood_is_answered_exactly(tmp_path: Path, kind: str) -> None:
    """A broad filter leaving out the query's own cluster (97.5% of the points match, far above any exact-path
    count): the nprobe lists nearest the query hold no matches but a few at their edge, and the index answered k
    hits from them (id_recall@10 0.78, some queries 0 of 10), silently; an HNSW graph walked out of the cluster and
    returned k matches from wherever it landed (0.09; Qdrant Edge likewise, 0.54 to 0.65). Such a thin query is
    answered exactly, on every engine; an even filter still goes through the index."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(40, 64)).astype(np.float32)
    lab = np.repeat(np.arange(40), 500)
    xb = centres[lab] + 0.35 * rng.normal(size=(len(lab), 64)).astype(np.float32)
    ql = rng.integers(0, 40, 100)
    xq = centres[ql] + 0.35 * rng.normal(size=(len(ql), 64)).astype(np.float32)
    from retrieval.settings import QdrantSettings

    s = Settings(data_dir=tmp_path / "d", faiss=FaissSettings(exact_filter_limit=0, exact_filter_cost=0),
                 qdrant=QdrantSettings(mode="edge"))
    st = open_store(s, "f", kind, dim=64, **({} if kind == "qdrant" else {"pq_m": 16}))
    st.upsert([f"p{i}" for i in range(len(lab))], xb, [{"region": int(r), "half": i % 2} for i, r in enumerate(lab)])
    st.build()
    p = SearchParams(nprobe=12) if kind.startswith("ivf") else SearchParams(hnsw_ef=64)

    def thin() -> int:
        info = st.info()
        return int(info["exact_thin"] if kind == "qdrant" else info["searches"].get("exact_thin", 0))

    got, truth = [], []
    for q, r in zip(xq, ql, strict=True):
        f = {"region": {"$ne": int(r)}}
        got.append([h.id for h in st.search(q, k=10, filter=f, params=p)[0]])
        truth.append([h.id for h in st.search(q, k=10, filter=f, params=SearchParams(exact=True))[0]])
    assert recall_at_k(got, truth, 10) >= 0.99
    before = thin()
    assert before >= 90, before
    st.search(xq, k=10, filter={"half": 1}, params=p)  # an even filter: the index, not the exact path
    assert thin() - before < 5
    st.close()


def test_exact_filter_threshold_answers_small_matches_exactly(tmp_path: Path, data: Dataset) -> None:
    s = Settings(data_dir=tmp_path / "d", faiss=FaissSettings(exact_filter_limit=100))
    st = open_store(s, "f", "hnsw", dim=data.dim)
    st.upsert(data.point_ids(), data.xb, [{"r": i} for i in range(len(data.xb))])
    st.search(data.xq[0], k=5, filter={"r": {"lt": 50}})
    st.search(data.xq[0], k=5, filter={"r": {"lt": 500}})
    assert st.info()["searches"] == {"exact": 1, "index": 1}
    st.close()


def test_ivfpq_rerank_lifts_recall(tmp_path: Path) -> None:
    ds = clustered(n=8000, d=64, nq=100, seed=3)
    s = Settings(data_dir=tmp_path / "d")
    st = open_store(s, "pq", "ivfpq", dim=ds.dim, pq_m=8)
    st.upsert(ds.point_ids(), ds.xb)
    st.build()
    truth = exact_ids(ds, ds.xq, 10)
    raw = [[h.id for h in r] for r in st.search(ds.xq, k=10, params=SearchParams(rerank=0, nprobe=32))]
    rr = [[h.id for h in r] for r in st.search(ds.xq, k=10, params=SearchParams(rerank=10, nprobe=32))]
    r_raw, r_rr = recall_at_k(raw, truth, 10), recall_at_k(rr, truth, 10)
    assert r_rr >= 0.9
    assert r_rr > r_raw
    st.close()


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_ivfpq_rerank_one_query_equals_batch(tmp_path: Path, metric: str) -> None:
    """The single-query re-rank path and the batched one give the same ids and scores (also with short lists)."""
    ds = clustered(n=3000, d=32, nq=40, seed=9, normalize=metric == "cosine")
    st = open_store(Settings(data_dir=tmp_path / "d"), "pq", "ivfpq", dim=ds.dim, metric=metric, pq_m=4)
    st.upsert(ds.point_ids(), ds.xb)
    st.build()
    for p in (SearchParams(nprobe=1, rerank=100), SearchParams(nprobe=16, rerank=10)):
        batch = st.search(ds.xq, k=10, params=p)
        for q, want in zip(ds.xq, batch, strict=True):
            got = st.search(q[None, :], k=10, params=p)[0]
            assert [h.id for h in got] == [h.id for h in want]
            assert np.allclose([h.score for h in got], [h.score for h in want], rtol=1e-5, atol=1e-5)
        # exact rescoring: every returned score is the true similarity / distance of that point
        hit = batch[0][0]
        v = ds.xb[ds.point_ids().index(hit.id)]
        want_score = float(v @ ds.xq[0]) if metric == "cosine" else float(np.linalg.norm(v - ds.xq[0]))
        assert hit.score == pytest.approx(want_score, rel=1e-4, abs=1e-4)
    st.close()


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_filtered_exact_in_blocks_equals_one_gather(
    tmp_path: Path, metric: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many matches are scored a block at a time: the same ids and scores as one gather (block edges included)."""
    import retrieval.stores.faiss_exact as mod

    ds = clustered(n=2000, d=16, nq=12, seed=4, normalize=metric == "cosine")
    st = open_store(Settings(data_dir=tmp_path / "d"), "f", "flat", dim=ds.dim, metric=metric)
    st.upsert(ds.point_ids(), ds.xb, [{"m": i % 3} for i in range(len(ds.xb))])
    flt = {"m": {"$in": [0, 2]}}
    for k in (1, 10, 50):
        one = st.search(ds.xq, k=k, filter=flt)
        monkeypatch.setattr(mod, "GATHER_ROWS", 7)
        blocks = st.search(ds.xq, k=k, filter=flt)
        monkeypatch.setattr(mod, "GATHER_ROWS", 10**9)
        assert [[h.id for h in r] for r in blocks] == [[h.id for h in r] for r in one]
        assert np.allclose([[h.score for h in r] for r in blocks], [[h.score for h in r] for r in one], atol=1e-5)
        assert all(h.payload["m"] in (0, 2) for r in blocks for h in r)
    st.close()


@pytest.mark.parametrize("metric", ["dot", "l2"])
def test_vectors_whose_scores_would_overflow_are_refused(tmp_path: Path, metric: str) -> None:
    st = open_store(Settings(data_dir=tmp_path / "d"), "o", "flat", dim=4, metric=metric)
    st.upsert(["a", "b"], np.eye(4, dtype=np.float32)[:2])
    for q in (np.array([[1e20, 0, 0, 0]], np.float32), np.array([1e16, 0, 0, 0], np.float64)):
        with pytest.raises(InvalidInputError, match="overflow"):
            st.search(q, k=2)
    with pytest.raises(InvalidInputError, match="overflow"):
        st.upsert(["c"], np.array([[0, 0, 1e18, 0]], np.float32))
    assert st.count() == 2
    assert [h.id for h in st.search(np.array([[1e14, 1.0, 0, 0]], np.float32), k=1)[0]] == ["a"]
    st.close()


def test_nprobe_changes_results(tmp_path: Path) -> None:
    ds = clustered(n=6000, d=32, nq=100, seed=5, spread=0.8)
    s = Settings(data_dir=tmp_path / "d")
    st = open_store(s, "ivf", "ivf", dim=ds.dim)
    st.upsert(ds.point_ids(), ds.xb)
    st.build()
    truth = exact_ids(ds, ds.xq, 10)
    low = recall_at_k([[h.id for h in r] for r in st.search(ds.xq, 10, params=SearchParams(nprobe=1))], truth, 10)
    high = recall_at_k([[h.id for h in r] for r in st.search(ds.xq, 10, params=SearchParams(nprobe=400))], truth, 10)
    assert high > low
    assert high >= 0.99  # nprobe ≥ nlist visits every list: exact
    st.close()


def test_no_pickle_in_store_files(settings: Settings, data: Dataset) -> None:
    stores = [open_store(settings, "p", k, dim=data.dim) for k in ("flat", "hnsw")]
    stores[0].upsert(["a", "b"], data.xb[:2], [{"k": 1}, {"k": 2}])
    for st in stores:
        st.close()
    root = settings.data_dir / "faiss" / "p"
    assert {p for p in files_under(root) if not Path(p).name.startswith(".")} == {
        "flat",
        "flat/manifest.json",
        "hnsw",
        "hnsw/index.faiss",
        "hnsw/manifest.json",
        "points",
        "points/payloads.idx",  # the payload index and id hashes (payload_index_file: no pickle either)
        "points/points.sqlite",
        "points/vectors.f32",
    }
    for p in root.rglob("*"):
        if p.is_file():
            head = p.read_bytes()[:2]
            assert head[:1] != b"\x80", f"{p} looks like a pickle"
    assert (root / "points" / "points.sqlite").read_bytes().startswith(b"SQLite format 3\x00")


def test_crash_between_manifest_and_index_rename(settings: Settings, data: Dataset) -> None:
    """The manifest names the previous index too: a kill before the rename leaves an index that is caught up."""
    ids = data.point_ids()
    st = open_store(settings, "ren", "hnsw", dim=data.dim)
    st.upsert(ids[:1000], data.xb[:1000])
    st.flush()
    path = settings.data_dir / "faiss" / "ren" / "hnsw" / "index.faiss"
    old = path.read_bytes()
    st.upsert(ids[1000:2000], data.xb[1000:2000])
    st.close()
    path.write_bytes(old)  # as if the new index had never been renamed into place
    again = open_store(settings, "ren", "hnsw", create=False)
    assert again.count() == 2000
    assert [h.id for h in again.search(data.xb[1500], k=1)[0]] == [ids[1500]]
    again.close()
    path.write_bytes(old[:100])  # anything else is still refused
    with pytest.raises(CorruptIndexError, match="checksum"):
        open_store(settings, "ren", "hnsw", create=False)


def test_flat_scans_a_resident_copy_kept_in_step_with_writes(settings: Settings) -> None:
    """flat holds the rows in anonymous memory (huge pages, not the file map); every write reaches that copy,
    the copy goes with the last flat store that held it, and kinds that never scan hold none."""
    ds = clustered(n=3000, d=32, nq=5, seed=4)
    ids = ds.point_ids()
    hnsw = open_store(settings, "res", "hnsw", dim=ds.dim)
    vf = hnsw._ps.vectors  # type: ignore[attr-defined]  # the shared point store's vector file
    hnsw.upsert(ids[:500], ds.xb[:500])
    assert not vf.resident
    flat = open_store(settings, "res", "flat", dim=ds.dim)
    assert vf.resident
    flat.upsert(ids[500:], ds.xb[500:])  # past the file's first capacity (1,024 rows): the copy grows too
    fresh = clustered(n=3, d=32, nq=1, seed=9).xb
    flat.upsert(ids[:3], fresh)  # replaced points: new rows, the old ones garbage
    assert np.array_equal(vf.scan_view(), vf.view())  # the copy equals the file map, row by row
    assert vf.scan_view().base is not vf.view().base
    for i, q in zip((0, 1, 2, 1500), [*fresh, ds.xb[1500]], strict=True):
        best = flat.search(q, k=2)[0]
        assert best[0].id == ids[i] and best[0].score == pytest.approx(1.0, abs=1e-5)
    assert flat.memory_bytes() == flat.count() * ds.dim * 4 + 3 * ds.dim * 4  # live rows and the 3 garbage rows
    flat.close()
    assert not vf.resident  # hnsw, still open, keeps no second copy
    assert ids_of(hnsw.search(fresh[2], k=1, params=SearchParams(exact=True))) == [[ids[2]]]
    hnsw.close()
    ro = open_store(settings, "res", "flat", read_only=True)
    assert ro._ps.vectors.resident  # type: ignore[attr-defined]
    assert ids_of(ro.search(np.stack([ds.xb[10], fresh[1]]), k=1)) == [[ids[10]], [ids[1]]]
    ro.close()
    # switched off (many reader processes, one-shot searches): flat scans the shared file map, same answers
    off = settings.model_copy(update={"faiss": FaissSettings(flat_resident=False)})
    ro = open_store(off, "res", "flat", read_only=True)
    assert not ro._ps.vectors.resident  # type: ignore[attr-defined]
    assert ids_of(ro.search(np.stack([ds.xb[10], fresh[1]]), k=1)) == [[ids[10]], [ids[1]]]
    ro.close()


def test_a_failed_resident_copy_holds_nothing(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Opening flat when the copy cannot be allocated fails cleanly and leaves no hold behind."""
    ds = clustered(n=200, d=16, nq=1, seed=5)
    hnsw = open_store(settings, "oom", "hnsw", dim=ds.dim)
    hnsw.upsert(ds.point_ids(), ds.xb)
    vf = hnsw._ps.vectors  # type: ignore[attr-defined]

    def no_memory(*_: object, **__: object) -> np.ndarray:
        raise MemoryError("test")

    with monkeypatch.context() as m:
        m.setattr("retrieval.stores.vector_file.np.empty", no_memory)
        with pytest.raises(MemoryError):
            open_store(settings, "oom", "flat", dim=ds.dim)
    assert not vf.resident and vf._res_holders == 0
    flat = open_store(settings, "oom", "flat", dim=ds.dim)
    assert vf.resident
    flat.close()
    assert not vf.resident
    hnsw.close()


def test_hits_copy_payloads_and_skip_missing_fids(settings: Settings, data: Dataset) -> None:
    """Hit assembly: flat payloads are copied shallowly, nested ones deeply, fids the store lacks are skipped."""
    st = open_store(settings, "hits", "flat", dim=data.dim)
    ids = data.point_ids()[:4]
    st.upsert(ids, data.xb[:4], [{"a": 1}, {"b": [1, 2]}, {"c": {"d": 1}}, {}])
    fids = np.array([[0, 1, 2, 3], [3, 99, 0, -1]], dtype=np.int64)
    scores = np.array([[0.9, 0.8, 0.7, 0.6], [0.5, 0.4, 0.3, -1.0]], dtype=np.float32)
    hits = st._hits(fids, scores)  # type: ignore[attr-defined]
    assert [[h.id for h in r] for r in hits] == [ids, [ids[3], ids[0]]]
    assert [h.score for h in hits[1]] == pytest.approx([0.5, 0.3])
    hits[0][0].payload["a"] = 2
    hits[0][1].payload["b"].append(3)
    hits[0][2].payload["c"]["d"] = 2
    assert [p for _, p in (st.fetch(ids[:3])[i] for i in ids[:3])] == [{"a": 1}, {"b": [1, 2]}, {"c": {"d": 1}}]
    st.delete([ids[1]])
    assert [h.id for h in st._hits(fids[:1], scores[:1])[0]] == [ids[0], ids[2], ids[3]]  # type: ignore[attr-defined]
    st.close()


def test_resident_copy_leaves_the_file_map_untouched(settings: Settings) -> None:
    """A fresh process that opens flat and searches holds the vectors once: the copy is read with read(2), so
    no page of vectors.f32 is mapped into it (mapped pages would count in its RSS next to the copy)."""
    ds = clustered(n=4000, d=64, nq=3, seed=6)
    st = open_store(settings, "rss", "flat", dim=ds.dim)
    st.upsert(ds.point_ids(), ds.xb)
    st.close()
    script = f"""
import re, sys
from pathlib import Path
import numpy as np
from retrieval.settings import Settings
from retrieval.stores import open_store
st = open_store(Settings(data_dir=Path({str(settings.data_dir)!r})), "rss", "flat", read_only=True)
q = np.asarray({ds.xb[17].tolist()!r}, dtype=np.float32)
assert st.search(q, k=1)[0][0].id == {ds.point_ids()[17]!r}
smaps = open("/proc/self/smaps").read()
rss = [int(m) for m in re.findall(r"vectors\\.f32\\n(?:.*\\n)*?Rss:\\s+(\\d+) kB", smaps)]
print(sum(rss))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert int(out.stdout.strip()) == 0, out.stdout
