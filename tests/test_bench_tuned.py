"""Tuned-default rows (issue 24): each configuration's store tuned after its build and searched with no query
parameters; every report shows id_recall@10 beside the tie-credited recall, and old results.json still render."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.report import markdown
from benchmarks.scale import run_scale_curve, scale_markdown
from benchmarks.tuned import MAX_COST_RATIO, setting_text
from retrieval.settings import Settings
from retrieval.tuning import SAMPLE, TUNE_MIN_POINTS
from simlookup.cli import main

RESULTS = Path(__file__).parents[1] / "benchmarks" / "results"
KEEP = ("faiss-flat", "faiss-ivf", "qdrant-edge-hnsw(m=16,efc=100)")  # exact, a FAISS kind, Qdrant


@pytest.fixture(scope="module")
def curve(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    """A scale curve at the smallest size that tunes: flat, ivf and Qdrant Edge HNSW."""
    tmp = tmp_path_factory.mktemp("tuned")
    out = tmp / "scale"
    run_scale_curve(
        Settings(data_dir=tmp / "data"),
        [TUNE_MIN_POINTS],
        out,
        nq=60,
        n_single=20,
        log=lambda _: None,
        work_dir=tmp,
        config_filter=lambda c: c.label in KEEP,
    )
    return json.loads((out / "results.json").read_text()), out


def test_every_configuration_has_a_tuned_row(curve: tuple[dict[str, Any], Path]) -> None:
    doc, _ = curve
    by = {c["label"]: c for c in doc["sizes"][0]["configs"]}
    assert sorted(by) == sorted(KEEP)
    for c in by.values():
        t = c["tuned"]
        assert t["count"] == TUNE_MIN_POINTS and t["build_s"] == c["build"]["total_s"] > 0
        # both recalls of the default search on the held-out queries; tie credit can only add
        assert 0 <= t["id_recall@10"] <= t["recall@10"] <= 1
        assert t["p50_ms"] > 0 and t["single"]["queries"] == 20
        # the tuning's cost beside the build's, flagged above the bound
        assert t["cost_ratio"] == pytest.approx(t["seconds"] / t["build_s"])
        assert t["over_cost"] is (t["cost_ratio"] > MAX_COST_RATIO)
    flat = by["faiss-flat"]["tuned"]
    assert flat["tuned"] is False and setting_text(flat) == "exact" and flat["id_recall@10"] == 1.0
    ivf, qd = by["faiss-ivf"]["tuned"], by["qdrant-edge-hnsw(m=16,efc=100)"]["tuned"]
    assert ivf["tuned"] is True and set(ivf["params"]) == {"nprobe"} and ivf["params"]["nprobe"] >= 1
    assert qd["tuned"] is True and set(qd["params"]) == {"hnsw_ef"}
    for t in (ivf, qd):
        assert t["sample"] == SAMPLE and t["settings_tried"] >= 1 and 0 < t["sample_recall"] <= 1
        assert t["reached"] is (t["advice"] == "")
    # the sweep ran on the untuned store: its rows are the explicit settings only
    assert all(r["params"] for r in by["faiss-ivf"]["results"])


def test_the_scale_report_shows_both_recalls(curve: tuple[dict[str, Any], Path]) -> None:
    doc, out = curve
    md = (out / "report.md").read_text()
    assert md == scale_markdown(doc)
    head = next(ln for ln in md.splitlines() if ln.startswith("| configuration | N | build s"))
    assert "| recall@10 | id_recall@10 | p50 ms |" in head
    tuned = md.split("## Tuned defaults")[1].split("## Plots")[0]
    assert "| tuned setting | tuning sample id recall | id_recall@10 | recall@10 (ties) |" in tuned
    for c in doc["sizes"][0]["configs"]:
        t = c["tuned"]
        line = next(ln for ln in tuned.splitlines() if ln.startswith(f"| {c['label']} | {TUNE_MIN_POINTS:,} |"))
        assert f"| {setting_text(t)} |" in line
        assert f"| {t['id_recall@10']:.3f}" in line and f"| {t['recall@10']:.3f} |" in line
        assert f"{t['cost_ratio']:.1%}" in line and (("**" in line) is t["over_cost"])
        if c["at_target"] is not None:
            row = next(ln for ln in md.splitlines() if ln.startswith(f"| {c['label']} | {TUNE_MIN_POINTS:,} | "))
            assert f"| {c['at_target']['id_recall@10']:.3f} |" in row


def test_below_the_threshold_the_built_in_defaults_are_measured(tmp_path: Path) -> None:
    run_scale_curve(
        Settings(data_dir=tmp_path / "data"),
        [2000],
        tmp_path / "scale",
        nq=20,
        n_single=5,
        log=lambda _: None,
        work_dir=tmp_path,
        config_filter=lambda c: c.label == "faiss-ivf",
    )
    doc = json.loads((tmp_path / "scale" / "results.json").read_text())
    t = doc["sizes"][0]["configs"][0]["tuned"]
    assert t["tuned"] is False and "built-in defaults" in t["why"] and "seconds" not in t
    assert setting_text(t) == "built-in defaults" and 0 <= t["id_recall@10"] <= t["recall@10"]
    md = (tmp_path / "scale" / "report.md").read_text()
    assert "| faiss-ivf | 2,000 | built-in defaults | — |" in md


def test_old_scale_results_rerender_with_id_recall(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The committed scale curve predates the tuned rows and at_target's id_recall@10: it re-renders, taking the
    id recall from the swept row at the target setting."""
    src = RESULTS / "scale" / "results.json"
    old = json.loads(src.read_text())
    assert not any("tuned" in c or "id_recall@10" in (c["at_target"] or {}) for b in old["sizes"] for c in b["configs"])
    assert main(["bench", "--plot", str(src), "--out", str(tmp_path), "--json"]) == 0
    capsys.readouterr()
    md = (tmp_path / "report.md").read_text()
    assert "## Tuned defaults" not in md
    hnsw = next(c for c in old["sizes"][0]["configs"] if c["label"] == "faiss-hnsw(M=16,efC=100)")
    row = next(r for r in hnsw["results"] if r["params"] == hnsw["at_target"]["params"])
    line = next(ln for ln in md.splitlines() if ln.startswith("| faiss-hnsw(M=16,efC=100) | 10,000 |"))
    assert f"| {hnsw['at_target']['recall@10']:.3f} | {row['id_recall@10']:.3f} |" in line


def test_runner_report_shows_id_recall_and_tuned_rows() -> None:
    """The STS-B report: an id R@10 column beside R@10 (— where an old run lacks it), and a tuned-default table."""
    doc = json.loads((RESULTS / "stsb" / "results.json").read_text())
    ivf = next(c for c in doc["configs"] if c["label"] == "faiss-ivf")
    r0 = ivf["results"][0]
    md = markdown(doc)
    assert "| R@10 | id R@10 | single R@10 |" in md and "## Tuned defaults" not in md
    line = next(ln for ln in md.splitlines() if ln.startswith(f"| faiss-ivf | nprobe={r0['params']['nprobe']} |"))
    assert f"| {r0['id_recall@10']:.3f} |" in line
    del r0["id_recall@10"]  # a run before the field
    line = next(
        ln for ln in markdown(doc).splitlines() if ln.startswith(f"| faiss-ivf | nprobe={r0['params']['nprobe']} |")
    )
    assert "‡ | — |" in line or f"{r0['recall@10']:.3f} | — |" in line
    ivf["tuned"] = {
        "tuned": True,
        "params": {"nprobe": 12},
        "reached": True,
        "sample_recall": 0.97,
        "advice": "",
        "id_recall@10": 0.951,
        "recall@10": 0.962,
        "p50_ms": 0.25,
        "seconds": 3.0,
        "build_s": 20.0,
        "cost_ratio": 0.15,
    }
    tuned = markdown(doc).split("## Tuned defaults")[1]
    line = next(ln for ln in tuned.splitlines() if ln.startswith("| faiss-ivf |"))
    n = doc["dataset"]["n_base"]
    assert line == f"| faiss-ivf | {n:,} | nprobe=12 | 0.970 | 0.951 | 0.962 | 0.250 | 3.0 | 20.0 | **15.0%** (> 10%) |"


def test_targets_report_shows_both_recalls(tmp_path: Path) -> None:
    from benchmarks.report import targets_markdown

    doc = json.loads((RESULTS / "targets" / "run-g" / "results.json").read_text())  # a run before id_recall_at_10
    rows = [t for t in doc["targets"] if "recall_at_10" in t]
    md = targets_markdown(doc)
    table = md.split("## Recall of the searches measured")[1].split("## ")[0]
    assert "| measured on | target | recall@10 (ties) | id_recall@10 |" in table
    for t in rows:  # the committed run predates id_recall_at_10: it reads —
        line = next(ln for ln in table.splitlines() if ln.startswith(f"| {t['label']} |"))
        assert line.endswith(" | — |")
    rows[0]["id_recall_at_10"] = 0.5
    table = targets_markdown(doc).split("## Recall of the searches measured")[1]
    assert next(ln for ln in table.splitlines() if ln.startswith(f"| {rows[0]['label']} |")).endswith(" | 0.500 |")
