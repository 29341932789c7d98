"""`info` and `collections` show a collection's Qdrant memory tier (quantization, on_disk) as the engine recorded it,
read from its files without opening a store (adversarial pass on issue 25 item 2, item 3)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from retrieval.collection import Collection, CollectionManifest, VectorSpace, save_collection
from retrieval.settings import QdrantSettings, Settings
from simlookup.cli import main

DIM = 16
CASES = {  # name: (mode, quantization, on_disk)
    "plain": ("edge", None, None),
    "edgesq": ("edge", "scalar", True),
    "localbq": ("local", "binary", False),
}


def build(root: Path, name: str, mode: str, quantization: str | None, on_disk: bool | None) -> None:
    qs = QdrantSettings(mode=mode, quantization=quantization, on_disk=on_disk)  # type: ignore[arg-type]
    s = Settings(data_dir=root, qdrant=qs)
    sp = VectorSpace(name="text", encoder="text", model="m", fingerprint="fp", dim=DIM)
    m = CollectionManifest(
        name=name,
        corpus="c",
        corpus_fingerprint="x",
        modality="text",
        vectors={"text": sp},
        indexes=["flat", "qdrant"],
        qdrant_mode=mode,
    )
    coll = Collection(s, name, read_only=False, manifest=m)
    for _, st in coll.stores(create=True):
        st.upsert([f"p{i}" for i in range(50)], np.random.default_rng(0).standard_normal((50, DIM)), [{}] * 50)
    coll.save()
    coll.build()
    coll.flush()
    coll.close()
    m.count, m.complete = 50, True
    save_collection(root, m)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("tier") / "data"
    for name, case in CASES.items():
        build(d, name, *case)
    return d


def want(name: str) -> dict[str, object]:
    _, q, disk = CASES[name]
    return {"quantization": q or "none", "on_disk": bool(disk)}


def test_collections_json_and_table_show_the_tier(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data-dir", str(root), "collections", "--json"]) == 0
    rows = {c["name"]: c for c in json.loads(capsys.readouterr().out)["collections"]}
    for name in CASES:
        assert rows[name]["qdrant_tier"] == want(name), name
        assert rows[name]["index_details"]["qdrant"]["tier"] == want(name)
        assert rows[name]["indexes"] == ["flat", "qdrant"]  # the list of names stays a list of names
    assert main(["--data-dir", str(root), "collections"]) == 0
    table = capsys.readouterr().out
    assert "flat,qdrant(scalar,on_disk)" in table and "flat,qdrant(binary)" in table


def test_info_shows_the_tier(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data-dir", str(root), "info", "--json"]) == 0
    rows = {c["name"]: c for c in json.loads(capsys.readouterr().out)["collections"]}
    for name in CASES:
        assert rows[name]["qdrant_tier"] == want(name), name
    assert main(["--data-dir", str(root), "info"]) == 0
    out = capsys.readouterr().out
    assert "qdrant tier: scalar quantization, vectors and graph on disk" in out
    assert "qdrant tier: binary quantization, vectors and graph in RAM" in out
    assert "qdrant tier: no quantization, vectors and graph in RAM" in out
