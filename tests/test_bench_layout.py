"""One benchmark harness: the store targets run on the harness's timing, metrics, claims and report code."""

from __future__ import annotations

from pathlib import Path

import benchmarks


def test_no_benchmark_module_over_600_lines() -> None:
    folder = Path(benchmarks.__file__).parent
    long = {p.name: n for p in folder.glob("*.py") if (n := len(p.read_text().splitlines())) > 600}
    assert long == {}


def test_store_targets_use_the_harness_parts() -> None:
    from benchmarks import claims, metrics, report, store_targets, target_calls, timing

    assert store_targets.target_row is claims.target_row is target_calls.target_row
    assert store_targets.block_p50s is timing.block_p50s and store_targets.single_p50s is timing.single_p50s
    assert store_targets.targets_markdown is report.targets_markdown
    assert target_calls.knn_recalls is metrics.knn_recalls
    # the second harness's own copies are gone
    for name in ("markdown", "paired_p50", "single_p50", "_recall", "disk_usage", "compute", "verdict", "_p50_us"):
        assert not hasattr(store_targets, name), name
