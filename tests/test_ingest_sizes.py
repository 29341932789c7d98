"""The ingest summary's sizes: the point store shared by every FAISS kind is counted once."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ingest.job import store_sizes
from retrieval.settings import Settings
from retrieval.stores import open_store


def test_shared_point_store_is_reported_once(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path)
    kinds = ["flat", "ivf", "hnsw"]
    stores = [(k, open_store(s, "sz", k, dim=16)) for k in kinds]
    try:
        x = np.random.default_rng(0).normal(size=(2000, 16)).astype(np.float32)
        stores[0][1].upsert([f"p{i}" for i in range(2000)], x, [{"g": i % 3} for i in range(2000)])
        for _, st in stores:
            st.build()
            st.flush()
        sizes = store_sizes(stores)
        points = stores[0][1].info()["points_bytes"]
        on_disk = sum(p.stat().st_size for p in (tmp_path / "faiss" / "sz").rglob("*") if p.is_file())
    finally:
        for _, st in stores:
            st.close()
    assert list(sizes) == ["points", *kinds]
    assert sizes["points"] == points >= 2000 * 16 * 4
    # each kind is its own folder only: flat keeps no index (its manifest), ivf and hnsw their index files
    assert 0 < sizes["flat"] < 10_000
    assert sizes["ivf"] >= 2000 * 16 * 4 and sizes["hnsw"] >= 2000 * 16 * 4
    # the sizes add up to the collection on disk, not to a multiple of the point store
    assert sum(sizes.values()) <= on_disk
