"""``benchmarks.store_targets`` on tiny sizes: the JSON's structure, and every verdict recomputable from its numbers."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.store_targets import FIXED_MATCHES, REGIONS, regions_for, run_targets, target_row
from retrieval.stores import DEFAULT_KINDS


def recompute(row: dict[str, Any]) -> float:
    """The measured value from the row's own inputs, computed apart from the module."""
    f, x = row["formula"], row["inputs"]
    if f == "median":
        return statistics.median(x["values"])
    if f == "median_diff":
        return statistics.median([a - b for a, b in zip(x["a"], x["b"], strict=True)])
    if f == "ratio_of_medians":
        return statistics.median(x["num"]) / statistics.median(x["den"])
    if f == "ratio_of_mins":
        return min(x["num"]) / min(x["den"])
    if f == "ratio":
        return x["num"] / x["den"]
    raise AssertionError(f"unknown formula {f}")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("targets")
    run_targets(out, sizes=(4000, 2000), dim=32, nq=12, repeats=2, warmup=2, baseline="faiss", log=lambda _: None)
    return json.loads((out / "results.json").read_text()), out


def test_structure(tiny: tuple[dict[str, Any], Path]) -> None:
    res, out = tiny
    assert res["mode"] == "targets" and res["complete"] is True
    assert res["method"]["sizes"] == [2000, 4000] and res["method"]["search_threads"] == 1
    assert len(res["run"]["load_average"]) == 3 and "faiss-cpu" in res["run"]["versions"]
    rows = res["targets"]
    by = {i: [r for r in rows if r["id"] == i] for i in "abcdef"}
    assert {r["kind"] for r in by["d"]} == set(DEFAULT_KINDS)  # the four default FAISS kinds
    # (d)'s raw call is the store's own index (flat: its own rows); a second copy is timed beside, apart
    for r in by["d"]:
        assert ("own faiss index object" in r["raw_call"]) == (r["kind"] != "flat"), r["raw_call"]
        copy = r["second_copy"]
        assert copy["p50_us"] > 0 and math.isfinite(copy["minus_own_index_us"])
        assert ("read_index" in copy["call"]) == (r["kind"] != "flat")
        # the payload-free search timed beside the full one, against the same raw numbers
        bare = r["no_payload"]
        assert bare["p50_us"] > 0 and bare["inputs"]["b"] == r["inputs"]["b"]
        assert bare["minus_raw_us"] == pytest.approx(recompute({"formula": "median_diff", "inputs": bare["inputs"]}))
        assert bare["same_ids_as_layer"] == 1.0 and "with_payload=False" in bare["call"]
    # recall from the harness's one function: ties credited, and the plain id overlap beside it
    for r in by["a"]:
        assert 0 < r["id_recall_at_10"] <= r["recall_at_10"] <= 1
    # (a) twice per kind: the even 1% (bucket) and the correlated one (region: whole clusters), each saying which
    # path answered its searches (flat: always exact; a top-up is a search the index answered short)
    assert sorted((r["kind"], r["filter"]) for r in by["a"]) == [
        (k, f) for k in ("flat", "ivf") for f in ("bucket", "region")
    ]
    for r in by["a"]:
        paths = r["paths"]
        assert paths["exact"] + paths["index"] >= 12 and paths["topup"] <= paths["index"] * 12
        assert r["kind"] != "flat" or paths["index"] == 0
        assert ("correlated" in r["label"]) is (r["filter"] == "region") and "exact" in r["label"]
        # a fast answer far from the exact filtered top-10 is not met
        assert r["conditions"]["id_recall@10 >= 0.95"] is (r["id_recall_at_10"] >= 0.95)
        assert not r["met"] or r["id_recall_at_10"] >= 0.95
    assert [r["kind"] for r in by["c"]] == ["ivfpq"] and len(by["e"]) == len(by["f"]) == 1
    assert {r["kind"] for r in by["a"]} == {"flat", "ivf"} and all(r["size"] == 4000 for r in by["a"])
    assert {(r["kind"], r["matches"]) for r in by["b"]} == {(k, m) for k in ("flat", "ivf") for m in FIXED_MATCHES}
    # (b) from both sizes open at once; the per-size numbers are kept apart in measurements
    assert all(r["how"] == "paired" and set(r["p50_us"]) == {"2000", "4000"} for r in by["b"])
    paired = res["measurements"]["filtered_paired"]
    assert paired["sizes"] == [2000, 4000] and set(paired["by_kind"]) == {"flat", "ivf"}
    assert "filtered@2000" in res["measurements"] and "filtered@4000" in res["measurements"]
    assert by["f"][0]["baseline"].startswith("a bare faiss IndexFlatIP add")
    assert len(by["f"][0]["ours_first_string_filter_s"]) == len(by["f"][0]["ours_s"]) == 2
    # (e) counts the shared point store once: the folders add up to the measured bytes
    e = by["e"][0]
    assert set(e["bytes_by_folder"]) == {"points", *DEFAULT_KINDS}
    assert sum(e["bytes_by_folder"].values()) == e["inputs"]["num"] and e["inputs"]["den"] == 2000 * 32 * 4
    report = (out / "report.md").read_text()
    assert report.count("| (") == len(rows)
    # (d) is reported, not judged, and the report says why; its own table shows the payload-free path
    assert all(r["judged"] is False and r["met"] is None and r["threshold"] is None for r in by["d"])
    assert "Why (d) is reported, not judged: " in report and "noise" in report
    overhead = report.split("## The layer's cost over the raw faiss call (d)")[1].split("## Details")[0]
    assert "| no payload p50 µs |" in overhead and sum(ln.startswith("| ") for ln in overhead.splitlines()) == 6


def test_every_verdict_is_recomputable(tiny: tuple[dict[str, Any], Path]) -> None:
    rows = tiny[0]["targets"]
    assert rows
    for r in rows:
        assert r["measured"] == pytest.approx(recompute(r), rel=1e-9, abs=1e-9), r["label"]
        if not r["judged"]:  # (d): reported only
            assert r["id"] == "d" and r["met"] is None and r["op"] is None
            continue
        assert r["op"] == "<="
        assert r["met"] == (recompute(r) <= r["threshold"] and all(r["conditions"].values())), r["label"]
    for r in (r for r in rows if r["id"] in "ab"):
        assert r["conditions"]["every query returned k hits"] is True  # every tiny filter matches ≥ k points


def test_a_failing_number_or_condition_is_not_met() -> None:
    slow = target_row("c", "x", "median_diff", {"a": [230.0, 190.0, 220.0], "b": [20.0, 30.0, 10.0]}, "µs")
    assert slow["measured"] == 210.0 and slow["met"] is False
    fast = target_row("c", "x", "median_diff", {"a": [60.0, 70.0], "b": [30.0, 30.0]}, "µs")
    assert fast["measured"] == 35.0 and fast["met"] is True
    short = target_row("a", "x", "median", {"values": [900.0]}, "µs", {"every query returned k hits": False})
    assert short["met"] is False


def test_layer_overhead_is_reported_not_judged() -> None:
    """(d) was "≤ 50 µs over raw faiss", noise-bound on a shared 2-core machine: its numbers carry no verdict."""
    row = target_row("d", "x", "median_diff", {"a": [130.0, 90.0, 120.0], "b": [20.0, 30.0, 10.0]}, "µs")
    assert row["measured"] == 110.0
    assert row["met"] is None and row["threshold"] is None and row["judged"] is False
    assert "noise" in row["not_judged"] and "with_payload=False" in row["not_judged"]


def test_plot_rerenders_an_old_targets_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`bench --plot` on a targets results.json written before the payload-free fields: its report, from the JSON."""
    from simlookup.cli import main

    src = Path(__file__).parents[1] / "benchmarks" / "results" / "targets" / "run-g" / "results.json"  # an old run
    old = json.loads(src.read_text())
    assert not any("no_payload" in r or "judged" in r for r in old["targets"])  # an old run indeed
    assert main(["bench", "--plot", str(src), "--out", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"plots": [], "report": str(tmp_path / "report.md")}
    report = (tmp_path / "report.md").read_text()
    assert report.count("| (") == len(old["targets"])  # every row, with the verdict that run gave it
    assert report.count("**not met**") == sum(r["met"] is False for r in old["targets"])
    d = [r for r in old["targets"] if r["id"] == "d"]
    overhead = report.split("## The layer's cost over the raw faiss call (d)")[1].split("## Details")[0]
    for r in d:  # the payload-free columns read — for a run that did not time them
        line = next(ln for ln in overhead.splitlines() if ln.startswith(f"| {r['kind']} |"))
        assert f"| {r['raw_p50_us']:,.0f} | {r['measured']:,.0f} | — |" in line


def test_the_correlated_filter_selects_whole_parts_of_the_space() -> None:
    """regions_for: every value held by some point, and a region's points nearer each other than points at large."""
    from benchmarks.datasets import clustered

    xb = clustered(n=5000, d=32, nq=1, seed=3).xb
    reg = regions_for(xb, seed=0)
    assert reg.shape == (5000,) and set(reg.tolist()) == set(range(REGIONS))
    assert np.array_equal(reg, regions_for(xb, seed=0))  # seeded
    same = np.mean([float(np.mean(xb[reg == r] @ xb[reg == r].mean(0))) for r in range(REGIONS)])
    assert same > float(np.mean(xb @ xb.mean(0))) + 0.3
