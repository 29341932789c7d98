"""A quick benchmark run writes valid JSON, Markdown and PNGs with every configuration, and Flat recall is 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.runner import configs, run
from retrieval.settings import Settings
from simlookup.cli import main


@pytest.mark.slow
def test_quick_run_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench"
    s = Settings(data_dir=tmp_path / "data")
    results = run(s, dataset="synthetic", quick=True, scale=4000, nq=50, out=out, log=lambda m: None)
    doc = json.loads((out / "results.json").read_text())
    labels = [c["label"] for c in doc["configs"]]
    assert labels == [c.label for c in configs(doc["dataset"]["dim"], True, False)]
    assert {c["kind"] for c in doc["configs"]} == {"flat", "ivf", "ivfpq", "hnsw", "qdrant"}
    flat = doc["configs"][0]
    assert flat["kind"] == "flat" and flat["results"][0]["recall@10"] == 1.0 and flat["results"][0]["recall@1"] == 1.0
    for c in doc["configs"]:
        assert c["build"]["total_s"] > 0 and c["results"]
        for r in c["results"]:
            assert 0.0 <= r["recall@10"] <= 1.0
            assert r["single"]["p50_ms"] <= r["single"]["p95_ms"] <= r["single"]["p99_ms"]
            assert r["batch"]["qps"] > 0 and r["batch"]["raw_qps"] > 0
    assert {"cpu", "threads", "load_average", "versions"} <= set(doc["run"])
    assert doc["claims"] == json.loads(json.dumps(results["claims"]))
    md = (out / "report.md").read_text()
    assert "Seed claims" in md and all(label in md for label in labels)
    for png in ("recall_vs_qps.png", "latency_percentiles.png", "memory_vs_recall.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        (out / png).unlink()
    assert main(["bench", "--plot", str(out / "results.json"), "--json"]) == 0
    plotted = json.loads(capsys.readouterr().out)
    assert len(plotted["plots"]) == 3 and all(Path(p).exists() for p in plotted["plots"])
