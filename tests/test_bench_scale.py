"""Scale-curve mode: partial results after each configuration, n_base and wall time recorded; CLI wiring."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.cli import parse_sizes, scale_filter
from benchmarks.scale import at_target, run_scale_curve, scale_configs
from retrieval.errors import InvalidInputError
from retrieval.settings import Settings


def test_at_target_is_the_cheapest_setting_that_reaches_it() -> None:
    rows = [
        {"params": {"hnsw_ef": e}, "recall@10": r, "single": {"p50_ms": p}}
        for e, r, p in ((10, 0.9, 0.1), (16, 0.96, 0.2), (32, 0.99, 0.3))
    ]
    assert at_target({"results": rows}) == {
        "params": {"hnsw_ef": 16},
        "recall@10": 0.96,
        "id_recall@10": None,  # a row without it (an older run)
        "p50_ms": 0.2,
    }
    rows[1]["id_recall@10"] = 0.94  # reached by tie credit, with the id overlap beside it
    assert at_target({"results": rows})["id_recall@10"] == 0.94
    assert at_target({"results": rows[:1]}) is None


def test_scale_configs_match_hnsw_engines() -> None:
    labels = [c.label for c in scale_configs()]
    assert {"faiss-hnsw(M=16,efC=100)", "qdrant-edge-hnsw(m=16,efc=100)"} <= set(labels)
    assert {"faiss-hnsw(M=32,efC=100)", "qdrant-edge-hnsw(m=32,efc=100)"} <= set(labels)
    for c in scale_configs():  # sweeps go from cheap to expensive
        key = next(iter(c.sweep[0]), None)
        if key:
            vals = [qp[key] for qp in c.sweep]
            assert vals == sorted(vals)


def test_parse_sizes() -> None:
    assert parse_sizes("10000,100000,1e6") == [10_000, 100_000, 1_000_000]
    with pytest.raises(InvalidInputError):
        parse_sizes("ten")
    with pytest.raises(InvalidInputError):
        parse_sizes("10")


def test_scale_configs_flag_picks_by_label_or_name() -> None:
    pick = scale_filter("faiss-ivfpq,qdrant-edge-hnsw(m=16,efc=100)")
    assert [c.label for c in scale_configs() if pick(c)] == [
        "qdrant-edge-hnsw(m=16,efc=100)",
        "faiss-ivfpq(m=48)+rerank10",
    ]
    assert [c.label for c in scale_configs() if scale_filter("faiss-ivf")(c)] == ["faiss-ivf"]
    with pytest.raises(InvalidInputError, match="faiss-nope.*known: faiss-flat"):
        scale_filter("faiss-ivf,faiss-nope")


def test_scale_curve_writes_after_each_configuration(tmp_path: Path) -> None:
    out = tmp_path / "scale"
    snapshots: list[int] = []

    def log(msg: str) -> None:
        if (out / "results.json").exists():
            doc = json.loads((out / "results.json").read_text())
            snapshots.append(sum(len(b["configs"]) for b in doc["sizes"]))

    keep = {"faiss-flat", "faiss-hnsw(M=16,efC=100)"}
    res = run_scale_curve(
        Settings(data_dir=tmp_path / "data"),
        [2000],
        out,
        nq=30,
        n_single=10,
        log=log,
        work_dir=tmp_path,
        config_filter=lambda c: c.label in keep,
    )
    doc = json.loads((out / "results.json").read_text())
    assert doc == json.loads(json.dumps(res, default=float))
    size = doc["sizes"][0]
    assert size["dataset"]["n_base"] == 2000 and size["dataset"]["dim"] == 384
    assert size["complete"] is True and size["wall_s"] > 0
    assert [c["label"] for c in size["configs"]] == ["faiss-flat", "faiss-hnsw(M=16,efC=100)"]
    assert 1 in snapshots  # the file held the first configuration before the second was built
    flat = size["configs"][0]
    assert flat["at_target"]["params"] == {} and flat["ram_bytes"] > 0 and flat["disk_bytes"] > 0
    hnsw = size["configs"][1]
    # the sweep stops at the first setting that reaches the target
    assert hnsw["at_target"] is not None and hnsw["results"][-1]["params"] == hnsw["at_target"]["params"]
    assert all(r["recall@10"] < 0.95 for r in hnsw["results"][:-1])
    md = (out / "report.md").read_text()
    assert "| faiss-flat | 2,000 |" in md
    for png in ("scale_build.png", "scale_disk.png", "scale_ram.png", "scale_p50.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "data").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scale"]


def test_benchmarks_cli_does_not_import_simlookup() -> None:
    code = "import sys, benchmarks.cli, benchmarks.engines, benchmarks.runner; print('simlookup' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.slow
def test_stsb_vectors_leave_the_data_dir_alone(tmp_path: Path) -> None:
    """The STS-B embeddings are cached under the given folder, never as a collection in the user's data dir."""
    from benchmarks.data import load

    data_dir = tmp_path / "data"
    cache = tmp_path / "cache"
    ds = load("stsb", Settings(data_dir=data_dir), quick=True, scale=120, nq=20, cache_dir=cache)
    assert len(ds.xb) == 100 and len(ds.xq) == 20 and len(ds.base_texts) == 100
    assert not data_dir.exists()
    assert any(cache.rglob("*.npy"))  # the cache went where it was told
