"""Bytes on disk have one home (retrieval.disk): stores, the ingest summary and the benchmarks count alike."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from retrieval.disk import file_bytes, folder_bytes, tree_bytes


def test_used_bytes_count_blocks_not_length(tmp_path: Path) -> None:
    sparse = tmp_path / "a" / "sparse.bin"
    sparse.parent.mkdir()
    with open(sparse, "wb") as f:
        f.truncate(8 << 20)  # 8 MiB long, nothing written
        f.write(b"x" * 10)
    (tmp_path / "b.txt").write_bytes(b"y" * 5000)
    st = sparse.stat()
    assert file_bytes(sparse) == st.st_blocks * 512 < st.st_size == file_bytes(sparse, apparent=True)
    assert tree_bytes(tmp_path, apparent=True) == {os.path.join("a", "sparse.bin"): 8 << 20, "b.txt": 5000}
    assert folder_bytes(tmp_path) == sum(tree_bytes(tmp_path).values()) == file_bytes(sparse) + file_bytes(
        tmp_path / "b.txt"
    )
    assert file_bytes(tmp_path / "missing") == 0 and tree_bytes(tmp_path / "missing") == {} == tree_bytes(sparse)


def test_stores_ingest_and_benchmarks_agree(tmp_path: Path) -> None:
    """The ingest summary's per-kind bytes and the targets' (e) folders are the helper's numbers."""
    from ingest.job import store_sizes
    from retrieval.settings import Settings
    from retrieval.stores import open_store

    s = Settings(data_dir=tmp_path)
    stores = [(k, open_store(s, "sz", k, dim=8)) for k in ("flat", "ivf")]
    try:
        x = np.random.default_rng(0).normal(size=(600, 8)).astype(np.float32)
        stores[0][1].upsert([f"p{i}" for i in range(600)], x)
        for _, st in stores:
            st.build()
            st.flush()
        sizes = store_sizes(stores)
        coll = tmp_path / "faiss" / "sz"
        folders = {kind: folder_bytes(coll / kind, apparent=True) for kind in ("flat", "ivf")}
        points = stores[0][1].info()["points_bytes"]
        files = tree_bytes(coll / "points", apparent=True)
        vectors = {f: file_bytes(coll / "points" / f) for f in files if f.endswith(".f32")}
    finally:
        for _, st in stores:
            st.close()
    assert all(sizes[kind] == folders[kind] > 0 for kind in folders)
    # the point store: its SQLite file and WAL and its saved payload index by length, its vector file by the
    # blocks it holds
    assert len(vectors) == 1 and sizes["points"] == points
    by_length = [f for f in files if f.endswith((".sqlite", ".sqlite-wal", "payloads.idx"))]
    assert by_length and points == sum(files[f] for f in by_length) + sum(vectors.values())
