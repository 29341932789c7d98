"""One search process of the memory-limit benchmark, run inside a memory cgroup: ``python -m benchmarks.memchild
SPEC.json`` prints one JSON line.

After its imports (the same for every configuration, so baselines match) it reads its cgroup usage (the baseline),
evicts the store's files from the page cache, sets the group's limit to baseline + the spec's budget, opens the store
read-only and measures each query setting: recall@10 by plain id overlap over every query (batches of 100), then,
after warm-up, one query per call, the lowest median of ``repeats`` runs (a run where over half the queries are
slower than twice ``cap_ms`` stops early: a clear failure).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.settings import Settings

WARMUP_SINGLE = 10


def _usage(cgroup: str | None) -> int:
    from benchmarks.memcg import MemCgroup

    return MemCgroup(Path(cgroup)).usage() if cgroup else -1


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return -1


def id_recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of the true top-k ids among the found top-k (plain id overlap; -1 marks a missing hit)."""
    k = truth.shape[1]
    hit = (found[:, :k, None] == truth[:, None, :k]).any(axis=2)
    return float(hit.sum() / truth.size)


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """Open the store after imports, evict its files, set the limit, then measure each query setting in order."""
    import faiss
    import qdrant_edge  # noqa: F401 - every child imports the same modules, so baselines match

    from benchmarks.memcg import MemCgroup, evict, store_files
    from retrieval.stores import SearchParams, open_store

    t_start = time.perf_counter()
    faiss.omp_set_num_threads(int(spec["threads"]))
    xq = np.load(spec["queries"], allow_pickle=False)
    truth = np.load(spec["truth"], allow_pickle=False)
    settings = Settings.model_validate(spec["settings"])
    k, n_single, repeats = int(spec["k"]), int(spec["n_single"]), int(spec["repeats"])
    group = MemCgroup(Path(spec["cgroup"])) if spec.get("cgroup") else None
    out: dict[str, Any] = {"baseline_bytes": _usage(spec.get("cgroup")), "baseline_rss_bytes": _status("VmRSS")}
    out["evict"] = evict(store_files(Path(spec["root"])))
    if group is not None:
        if spec.get("limit_bytes") is not None:
            out["limit_bytes"] = int(out["baseline_bytes"] + spec["limit_bytes"])
            group.set_limit(out["limit_bytes"])
        group.reset_max_usage()
    t0 = time.perf_counter()
    store = open_store(settings, spec["name"], spec["index"], create=False, read_only=True)
    out["open_s"] = time.perf_counter() - t0
    out["open_bytes"] = _usage(spec.get("cgroup")) - out["baseline_bytes"]
    cap = spec.get("cap_ms")
    out["settings"] = []
    for qp in spec["sweep"]:
        sp = SearchParams(**qp)
        t0 = time.perf_counter()
        found = np.full((len(xq), k), -1, dtype=np.int64)
        for s in range(0, len(xq), 100):
            for i, hits in enumerate(store.search(xq[s : s + 100], k, params=sp)):
                found[s + i, : len(hits)] = [int(h.id[1:]) for h in hits[:k]]
        r: dict[str, Any] = {"params": qp, "id_recall@10": id_recall(found, truth), "batch_s": time.perf_counter() - t0}
        for i in range(min(WARMUP_SINGLE, len(xq))):
            store.search(xq[i : i + 1], k, params=sp)
        medians: list[float] = []
        for _ in range(repeats):
            lat: list[float] = []
            slow = 0
            n1 = min(n_single, len(xq))
            for i in range(n1):
                t = time.perf_counter()
                store.search(xq[i : i + 1], k, params=sp)
                lat.append(time.perf_counter() - t)
                if cap is not None and lat[-1] * 1e3 > 2 * cap:
                    slow += 1
                    if slow > n1 // 2:  # this run's median is beyond twice the cap: a clear failure
                        r["aborted"] = f"over half of the single queries slower than {2 * cap:.3f} ms"
                        break
            medians.append(statistics.median(lat) * 1e3)
            if "aborted" in r:
                break
        r["p50_ms"] = min(medians)
        r["p50_runs_ms"] = medians
        out["settings"].append(r)
        if spec.get("stop_at_recall") is not None and r["id_recall@10"] >= spec["stop_at_recall"]:
            break
    store.close()
    out["peak_bytes"] = group.max_usage() - out["baseline_bytes"] if group is not None else -1
    out["rss_bytes"] = _status("VmRSS") - out["baseline_rss_bytes"]
    out["hwm_bytes"] = _status("VmHWM")
    out["wall_s"] = time.perf_counter() - t_start
    return out


def main() -> None:
    print(json.dumps(child(json.loads(Path(sys.argv[1]).read_text())), default=float))


if __name__ == "__main__":
    main()
