"""The load average sampled through a benchmark configuration, and the report's § mark and footnote."""

from __future__ import annotations

import time
from typing import Any

from benchmarks.loadavg import BUSY, LoadSampler, busy
from benchmarks.report import label_of, load_note, markdown


def test_the_sampler_keeps_start_highest_and_end() -> None:
    with LoadSampler(every=0.05) as s:
        time.sleep(0.3)
    rec = s.record()
    assert rec["samples"] >= 4  # one at the start, one at the end, some between
    assert rec["start"] == round(s.samples[0], 2) and rec["end"] == round(s.samples[-1], 2)
    assert rec["max"] == round(max(s.samples), 2) >= max(rec["start"], rec["end"])


def _doc(loads: dict[str, float | None]) -> dict[str, Any]:
    timings = {"configure_s": 0.1, "upload_s": 0.2, "index_s": 0.3, "total_s": 0.6}
    result = {
        "params": {},
        "recall@1": 1.0,
        "recall@10": 1.0,
        "recall@100": 1.0,
        "single": {"p50_ms": 1.0, "p95_ms": 1.0, "p99_ms": 1.0, "recall@10": 1.0},
        "batch": {"qps": 10.0},
    }
    configs = []
    for label, peak in loads.items():
        c: dict[str, Any] = {"label": label, "build": timings, "results": [result], "disk_bytes": 1, "ram_bytes": 1}
        if peak is not None:
            c["load_average"] = {"start": 0.5, "max": peak, "end": 0.4, "samples": 3}
        configs.append(c)
    return {
        "run": {"date": "d", "cpu": "c", "cores": 2, "threads": 1, "load_average": [0.0], "versions": {}},
        "dataset": {"name": "t", "n": 10, "dim": 4, "nq": 1, "metric": "l2", "ground_truth_s": 0.0},
        "configs": configs,
    }


def test_rows_measured_above_load_one_are_marked_and_footnoted() -> None:
    doc = _doc({"calm": 0.9, "busy": 3.25, "old": None})  # "old": a run before the field
    by = {c["label"]: c for c in doc["configs"]}
    assert [label_of(by[x]) for x in ("calm", "busy", "old")] == ["calm", "busy§", "old"]
    assert busy({"max": BUSY + 0.01}) and not busy({"max": BUSY}) and not busy(None)
    note = load_note(doc)
    assert note is not None and "busy 0.50 / 3.25 / 0.40" in note and "calm " not in note
    md = markdown(doc)
    assert "| busy§ |" in md and "| calm |" in md and note in md
    assert load_note(_doc({"quiet": 0.2})) is None
