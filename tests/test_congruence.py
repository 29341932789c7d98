"""Congruence: exact queries return the same top-k ids and scores from FAISS Flat, Qdrant Edge and local mode
(and the server, in tests/server)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.datasets import Dataset
from retrieval.settings import QdrantSettings, Settings
from retrieval.stores import SearchParams, VectorStore, open_store

K = 10


def load_all(tmp: Path, data: Dataset, extra: dict[str, tuple[Settings, str]] | None = None) -> dict[str, VectorStore]:
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
        st = open_store(s, name, index, dim=data.dim)
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
            np.testing.assert_allclose([h.score for h in g], [h.score for h in r], atol=1e-4, err_msg=key)
            # ids agree except where two points tie within float tolerance
            for hr, hg in zip(r, g, strict=True):
                assert hr.id == hg.id or abs(hr.score - hg.score) < 1e-4, key


def test_congruence_flat_edge_local(tmp_path: Path, data: Dataset) -> None:
    stores = load_all(tmp_path, data)
    try:
        assert_congruent(stores, data)
    finally:
        for st in stores.values():
            st.close()
