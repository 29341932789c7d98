"""The memory-limit benchmark (issue 25 item 4): a child process in a cgroup v1 memory group finds a limit, and a
budget below it is reported as failing; the bisection, the config availability check and page-cache eviction."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks import memcg
from benchmarks.datasets import clustered
from benchmarks.memchild import id_recall
from benchmarks.memlimit import MemConfig, bisect_budget, bound, run_config, unavailable
from benchmarks.memlimit_report import load_results, report_markdown

NO_CGROUP = memcg.unavailable()


def test_bisect_finds_the_threshold_within_its_resolution() -> None:
    probed: list[int] = []

    def passes(b: int) -> bool:
        probed.append(b)
        return b >= 1000

    best, fails = bisect_budget(passes, hi=300, max_hi=64 * 1024)
    assert best is not None and fails is not None
    assert 1000 <= best <= 1000 * 1.05 + 8  # to within 4% (or 8 bytes) of the real threshold
    assert fails < 1000 and not passes(fails)
    assert probed[:3] == [300, 600, 1200]  # the start failed, so the budget doubled until one passed


def test_bisect_reports_none_when_no_budget_passes() -> None:
    best, fails = bisect_budget(lambda b: False, hi=100, max_hi=800)
    assert best is None and fails == 800


def test_a_slow_probe_that_never_neared_its_limit_is_not_memory_bound() -> None:
    assert not bound({"limit_bytes": 500 << 20, "group": {"max_usage_bytes": 300 << 20}})
    assert bound({"limit_bytes": 500 << 20, "group": {"max_usage_bytes": (500 << 20) - (1 << 20)}})
    assert bound({"error": "timeout"})  # nothing to tell by: counted as bound


def test_id_recall_is_plain_overlap() -> None:
    truth = np.array([[1, 2, 3], [4, 5, 6]])
    found = np.array([[3, 2, 9], [-1, -1, -1]])
    assert id_recall(found, truth) == pytest.approx(2 / 6)


def test_configs_missing_from_the_checkout_are_named_not_run() -> None:
    assert unavailable(MemConfig("flat", "faiss", "flat")) is None
    assert "no-such-kind" in (unavailable(MemConfig("x", "faiss", "no-such-kind")) or "")
    why = unavailable(MemConfig("x", "qdrant-edge", "qdrant", settings={"qdrant": {"no_such_field": True}}))
    assert why is not None and "no_such_field" in why
    assert unavailable(MemConfig("x", "faiss", "ivf", sweep=({"no_such_param": 1},))) is not None


def _fs_type(path: Path) -> str:
    """The file system type of the mount holding ``path`` (longest mount point prefix in /proc/mounts)."""
    best, kind = "", ""
    for line in Path("/proc/mounts").read_text().splitlines():
        _, mnt, fs, *_ = line.split()
        if str(path.resolve()).startswith(mnt) and len(mnt) > len(best):
            best, kind = mnt, fs
    return kind


def test_eviction_empties_the_page_cache_of_the_files(tmp_path: Path) -> None:
    if _fs_type(tmp_path) in ("tmpfs", "ramfs"):
        pytest.skip("the temporary folder is in memory (tmpfs): its pages cannot leave the page cache")
    f = tmp_path / "blob.bin"
    f.write_bytes(os.urandom(4 << 20))
    f.read_bytes()
    assert memcg.resident_bytes(f) > 0
    out = memcg.evict([f], allow_drop_caches=False)
    assert out["resident_before_bytes"] > 0
    assert out["resident_after_bytes"] == 0
    assert memcg.resident_bytes(f) == 0


@pytest.fixture(scope="module")
def flat_limit(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A flat store of 3,000 × 64-d vectors, its limit found by bisection (p50 allowed 4× for a shared CI box)."""
    from benchmarks.data import ground_truth

    ds = clustered(n=3000, d=64, nq=100, seed=3)
    work = tmp_path_factory.mktemp("memlimit")
    dataset = {"name": ds.name, "n": 3000, "dim": 64, "nq": 100, "seed": 3, "metric": "cosine"}
    return run_config(
        MemConfig("faiss-flat", "faiss", "flat"),
        ds.xb,
        ds.xq,
        ground_truth(ds, 10),
        work,
        dataset,
        n_single=50,
        repeats=1,
        log=lambda _m: None,
        timeout_s=120,
        slowdown=4.0,
    )


@pytest.mark.skipif(NO_CGROUP is not None, reason=f"cgroup v1 memory is not writable here: {NO_CGROUP}")
def test_a_limit_is_found_and_a_smaller_one_fails(flat_limit: dict[str, Any]) -> None:
    doc = flat_limit
    assert doc["chosen"]["id_recall@10"] == pytest.approx(1.0)  # flat is exact
    best, fails = doc["limit_bytes_per_vector"], doc["fails_at_bytes_per_vector"]
    assert best is not None and best > 0
    assert fails is not None and fails < best
    by_budget = {p["budget_bytes_per_vector"]: p for p in doc["probes"]}
    assert by_budget[best]["ok"] and by_budget[best]["limit_bytes"] > doc["baseline_bytes"]
    too_small = by_budget[fails]
    assert not too_small["ok"] and too_small["why"]  # reported as failing, with the reason (OOM kill, p50)
    assert doc["p50_at_limit_ms"] is not None
    # the fixed budget (600 B/vector) is probed on its own, with its recall and p50 or why it failed
    (at,) = doc["at_budgets"]
    assert at["budget_bytes_per_vector"] == 600 and (at["error"] or at["p50_ms"] is not None)
    # the store's files were out of the page cache before the child opened them
    assert doc["reference"]["evict"]["resident_after_bytes"] == 0


@pytest.mark.skipif(NO_CGROUP is not None, reason=f"cgroup v1 memory is not writable here: {NO_CGROUP}")
def test_the_report_has_a_row_per_result(flat_limit: dict[str, Any], tmp_path: Path) -> None:
    import json

    (tmp_path / "faiss-flat-n3000.json").write_text(json.dumps(flat_limit, default=float))
    docs = load_results(tmp_path)
    assert len(docs) == 1
    md = report_markdown(docs)
    assert f"**{flat_limit['limit_bytes_per_vector']:,}**" in md
