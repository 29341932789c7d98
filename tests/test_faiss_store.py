"""FAISS-specific behaviour: kinds, training, manifests, checksums, locks, re-rank."""

from __future__ import annotations

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
from retrieval.settings import Settings
from retrieval.stores import SearchParams, open_store
from retrieval.stores.faiss_store import FaissBuildParams, default_nlist
from tests.conftest import recall_at_k
from tests.test_store_contract import exact_ids


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


def test_nlist_rule_and_training_error(settings: Settings) -> None:
    assert default_nlist(10_000) == 400
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


def test_second_writer_is_refused(settings: Settings, data: Dataset) -> None:
    st = open_store(settings, "lock", "flat", dim=data.dim)
    with pytest.raises(StoreLockedError):
        open_store(settings, "lock", "flat", dim=data.dim)
    st.close()
    open_store(settings, "lock", "flat", dim=data.dim).close()


def test_crash_before_flush_is_recovered(settings: Settings, data: Dataset) -> None:
    """Rows committed to the sidecar but not in the saved index are rebuilt on open."""
    st = open_store(settings, "crash", "ivf", dim=data.dim)
    ids = data.point_ids()
    st.upsert(ids[:1000], data.xb[:1000])
    st.build()
    st.flush()
    st.upsert(ids[1000:1500], data.xb[1000:1500])  # no flush: simulate a crash by dropping the handle
    st._release()  # noqa: SLF001 - release locks without flushing, as a killed process would
    again = open_store(settings, "crash", "ivf", dim=data.dim)
    assert again.count() == 1500
    assert again.search(data.xb[1200], k=1)[0][0].id == ids[1200]
    again.close()


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
    st = open_store(settings, "p", "flat", dim=data.dim)
    st.upsert(["a", "b"], data.xb[:2], [{"k": 1}, {"k": 2}])
    st.close()
    d = settings.data_dir / "faiss" / "p" / "flat"
    assert (
        sorted(p.name for p in d.iterdir() if not p.name.startswith("."))
        == [
            "index.faiss",
            "manifest.json",
            "points.sqlite",
        ]
        or (d / "points.sqlite").exists()
    )
    for p in d.iterdir():
        assert not p.read_bytes().startswith(b"\x80\x04"), f"{p} looks like a pickle"
