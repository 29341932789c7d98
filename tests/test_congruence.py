"""Congruence: exact queries return the same top-k ids and scores from FAISS Flat, Qdrant Edge and local mode
(and the server, in tests/server), for every metric: cosine, dot and l2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.datasets import Dataset, clustered
from retrieval.metric import Metric, exact_scores, top_k
from retrieval.settings import QdrantSettings, Settings
from retrieval.stores import SearchParams, VectorStore, open_store

K = 10


def load_all(
    tmp: Path,
    data: Dataset,
    extra: dict[str, tuple[Settings, str]] | None = None,
    metric: Metric | str = Metric.COSINE,
) -> dict[str, VectorStore]:
    ids = data.point_ids()[:1500]
    pls = [{"g": i % 4} for i in range(len(ids))]
    plan = {
        "flat": (Settings(data_dir=tmp / "f"), "cong", "flat"),
        "edge": (Settings(data_dir=tmp / "e", qdrant=QdrantSettings(mode="edge")), "cong", "qdrant"),
        "local": (Settings(data_dir=tmp / "l", qdrant=QdrantSettings(mode="local")), "cong", "qdrant"),
    }
    for key, (s, name) in (extra or {}).items():
        plan[key] = (s, name, "qdrant")
    stores = {}
    for key, (s, name, index) in plan.items():
        st = open_store(s, name, index, dim=data.dim, metric=metric)
        st.upsert(ids, data.xb[: len(ids)], pls)
        st.build()
        stores[key] = st
    return stores


def assert_congruent(stores: dict[str, VectorStore], data: Dataset) -> None:
    exact = SearchParams(exact=True)
    ref = stores["flat"].search(data.xq, K, params=exact)
    ref_f = stores["flat"].search(data.xq[:10], K, filter={"g": 2}, params=exact)
    for key, st in stores.items():
        got = st.search(data.xq, K, params=exact)
        got_f = st.search(data.xq[:10], K, filter={"g": 2}, params=exact)
        for r, g in zip(ref + ref_f, got + got_f, strict=True):
            # scores within float tolerance (relative for the unnormalised dot and l2 data)
            np.testing.assert_allclose([h.score for h in g], [h.score for h in r], rtol=1e-4, atol=1e-4, err_msg=key)
            # ids agree except where two points tie within float tolerance
            for hr, hg in zip(r, g, strict=True):
                assert hr.id == hg.id or abs(hr.score - hg.score) < 1e-4 * max(1.0, abs(hr.score)), key


def unnormalised(data: Dataset) -> Dataset:
    """The same clustered points with norms between 0.5 and 3: dot and l2 rank them differently from cosine."""
    rng = np.random.default_rng(11)
    d = clustered(n=1500, d=data.dim, nq=20, seed=11)
    scale = rng.uniform(0.5, 3.0, size=(len(d.xb), 1)).astype(np.float32)
    return Dataset(d.name + "-scaled", (d.xb * scale).astype(np.float32), d.xq * 2.0, "l2")


def test_congruence_flat_edge_local(tmp_path: Path, data: Dataset) -> None:
    stores = load_all(tmp_path, data)
    try:
        assert_congruent(stores, data)
    finally:
        for st in stores.values():
            st.close()


@pytest.mark.parametrize("metric", ["dot", "l2"])
def test_congruence_dot_and_l2(tmp_path: Path, data: Dataset, metric: str) -> None:
    d = unnormalised(data)
    stores = load_all(tmp_path, d, metric=metric)
    try:
        assert_congruent(stores, d)
        # and the reference itself is the exact answer for this metric (scores, not just agreement)
        m = Metric.parse(metric)
        idx, scores = top_k(exact_scores(d.xq, d.xb[:1500], m), K, m)
        got = stores["flat"].search(d.xq, K, params=SearchParams(exact=True))
        ids = d.point_ids()
        for row, srow, hits in zip(idx, scores, got, strict=True):
            np.testing.assert_allclose([h.score for h in hits], srow, rtol=1e-4, atol=1e-4)
            assert [h.id for h in hits][:3] == [ids[j] for j in row][:3]
    finally:
        for st in stores.values():
            st.close()
