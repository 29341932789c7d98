"""A quick benchmark run end to end: every figure checked against something that could disagree with it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.claims import evaluate_claims
from benchmarks.report import label_of
from benchmarks.runner import configs, run
from retrieval.settings import Settings
from simlookup.cli import main


@pytest.mark.slow
def test_quick_run_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench"
    data_dir = tmp_path / "data"
    s = Settings(data_dir=data_dir)
    nq = 40
    run(s, dataset="synthetic", quick=True, scale=4000, nq=nq, out=out, log=lambda m: None, work_dir=tmp_path)
    doc = json.loads((out / "results.json").read_text())
    assert not data_dir.exists()  # nothing in the user's data folder
    assert [p.name for p in tmp_path.iterdir()] == ["bench"]  # temporary indexes removed
    labels = [c["label"] for c in doc["configs"]]
    assert labels == [c.label for c in configs(doc["dataset"]["dim"], True, False)]
    assert doc["dataset"]["n_base"] == 4000 and doc["dataset"]["nq"] == nq
    by = {c["label"]: c for c in doc["configs"]}
    # matched engines: FAISS and Qdrant HNSW at the same M and ef_construct, both M
    for m in (16, 32):
        f, q = by[f"faiss-hnsw(M={m},efC=100)"], by[f"qdrant-edge-hnsw(m={m},efc=100)"]
        assert f["build_params"]["hnsw_m"] == q["build_params"]["m"] == m
        assert f["build_params"]["ef_construction"] == q["build_params"]["ef_construct"] == 100
        assert [r["params"] for r in f["results"]] == [r["params"] for r in q["results"]]
    assert doc["run"]["search_threads"]["faiss"] == doc["run"]["search_threads"]["qdrant-edge"] == 1
    for m in (16, 32):  # read back from the engines themselves
        assert by[f"faiss-hnsw(M={m},efC=100)"]["threads"] == {"omp_max_threads": 1}
        assert by[f"qdrant-edge-hnsw(m={m},efc=100)"]["threads"] == {"max_search_threads": 1, "max_indexing_threads": 1}
    # recall moves with the query parameter (it is not taken from one wide search)
    ivf = [r["recall@10"] for r in by["faiss-ivf"]["results"]]
    assert ivf[0] < ivf[-1]
    hnsw = by["faiss-hnsw(M=16,efC=100)"]["results"]
    assert hnsw[0]["params"] == {"hnsw_ef": 10}
    for c in doc["configs"]:
        assert c["raw_baseline"] is True
        for r in c["results"]:
            assert r["batch"]["recall@10_all_runs"] == [pytest.approx(r["recall@10"], abs=1e-6)]
            assert r["single"]["queries"] == min(100, nq)
            assert r["batch"]["runs"] == 5
            # the payload-free search timed beside the full one and the raw call
            assert r["single"]["no_payload"]["p50_ms"] > 0 and "no_payload_overhead_us_p50" in r["single"]
            assert r["batch"]["no_payload_qps"] > 0 and "no_payload_overhead_ratio" in r["batch"]
        # disk: every file of the configuration; RAM: a fresh process answered every query with k hits
        assert c["disk_bytes"] == sum(c["disk_files"].values()) + c["disk_other_files_bytes"] > 0
        ram = c["ram"]
        assert nq * len(c["results"]) <= ram["hits_returned"] <= nq * 10 * len(c["results"]) and c["ram_bytes"] > 0
        if c["kind"] in ("flat", "hnsw", "qdrant"):
            assert ram["hits_returned"] == nq * 10 * len(c["results"])
    assert by["faiss-flat"]["results"][0]["recall@10"] == 1.0
    # every build parameter as the store resolved it: the nlist IVF chose for 4,000 points, Edge's HNSW config
    assert by["faiss-ivf"]["resolved_build"]["nlist"] >= 1 and by["faiss-ivf"]["resolved_build"]["kind"] == "ivf"
    assert by["qdrant-edge-hnsw(m=16,efc=100)"]["resolved_build"]["hnsw"]["m"] == 16
    for c in doc["configs"]:  # the load average sampled through each configuration's build and sweep
        la = c["load_average"]
        assert la["samples"] >= 2 and la["max"] >= max(la["start"], la["end"]) >= 0
        assert ("§" in label_of(c)) is (la["max"] > 1.0)
    assert any(f.endswith("index.faiss") for f in by["faiss-ivf"]["disk_files"])
    assert len(by["faiss-ivf"]["disk_files"]) >= 2  # the index and the point store it needs
    assert (
        by["faiss-hnsw(M=16,efC=100)"]["build"]["graph_built_during_upload"]
        or (by["faiss-hnsw(M=16,efC=100)"]["build"]["build_did_work"])
    )
    assert evaluate_claims(doc) == doc["claims"]  # the verdicts follow from the numbers in the JSON alone
    for c in doc["configs"]:  # a default search measured per configuration (4,000 points: below tuning's threshold)
        t = c["tuned"]
        assert t["tuned"] is False and 0 <= t["id_recall@10"] <= t["recall@10"] <= 1 and t["p50_ms"] > 0
    md = (out / "report.md").read_text()
    assert "| R@10 | id R@10 |" in md and "## Tuned defaults" in md
    label = label_of(by["faiss-hnsw(M=16,efC=100)"])  # marked § when measured above load 1.0
    line = next(ln for ln in md.splitlines() if ln.startswith(f"| {label} | hnsw_ef=10 |"))
    assert f"| {hnsw[0]['recall@10']:.3f} |" in line
    for png in ("recall_vs_qps.png", "latency_percentiles.png", "memory_vs_recall.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        (out / png).unlink()
    assert main(["bench", "--plot", str(out / "results.json"), "--json"]) == 0
    plotted = json.loads(capsys.readouterr().out)
    assert len(plotted["plots"]) == 3 and all(Path(p).exists() for p in plotted["plots"])
