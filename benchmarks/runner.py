"""One benchmark run: build every configuration on the same vectors, sweep its query parameters, measure.

Per configuration: build time (configure / upload / index), index bytes on disk, RAM the index keeps, resident
memory growth; per query setting: recall@1/10/100 against exact ground truth, batch QPS and single-query latency
percentiles, each also through the raw engine call so the layer's own overhead is a printed ratio.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.data import ground_truth, load
from benchmarks.datasets import Dataset
from benchmarks.engines import BuildConfig, Engine, FaissEngine, QdrantEdgeEngine, QdrantServerEngine
from benchmarks.metrics import percentiles, recall_at
from retrieval.settings import Settings

K_RECALL = 100
K_LATENCY = 10


def pick_pq_m(dim: int) -> int:
    """The largest common PQ m (≤ dim/8 sub-vectors of ≥ 8 dims) that divides the dimension."""
    for m in (48, 32, 28, 24, 16, 8, 4):
        if dim % m == 0 and dim // m >= 8:
            return m
    return 1


def configs(dim: int, quick: bool, server: bool) -> list[BuildConfig]:
    """The configurations of a run: FAISS Flat/IVF/IVF-PQ/HNSW, Qdrant HNSW, and the seed's settings."""
    nprobes = (1, 8, 32) if quick else (1, 2, 4, 8, 16, 32, 64, 128)
    efs = (16, 64, 128) if quick else (16, 32, 64, 128, 256)
    m = pick_pq_m(dim)
    out = [
        BuildConfig("faiss-flat", "faiss", "flat"),
        BuildConfig("faiss-ivf", "faiss", "ivf", {}, tuple({"nprobe": p} for p in nprobes)),
        BuildConfig(
            "faiss-ivf-seed(nlist=50)",
            "faiss",
            "ivf",
            {"nlist": 50},
            tuple({"nprobe": p} for p in ((1, 8, 50) if quick else (1, 4, 8, 16, 50))),
        ),
        BuildConfig(
            "faiss-ivfpq-seed(nlist=50,m=8,nbits=8)",
            "faiss",
            "ivfpq",
            {"nlist": 50, "pq_m": 8, "pq_nbits": 8},
            tuple({"nprobe": p, "rerank": r} for p in ((8, 50) if quick else (1, 8, 16, 50)) for r in (0, 10)),
        ),
        BuildConfig(
            f"faiss-ivfpq(m={m})",
            "faiss",
            "ivfpq",
            {"pq_m": m, "pq_nbits": 8},
            tuple({"nprobe": p, "rerank": r} for p in nprobes for r in (0, 10)),
        ),
        BuildConfig(
            "faiss-hnsw(M=32,efC=100)",
            "faiss",
            "hnsw",
            {"hnsw_m": 32, "ef_construction": 100},
            tuple({"hnsw_ef": e} for e in efs),
        ),
        BuildConfig(
            "qdrant-edge-hnsw(m=16,efc=100)",
            "qdrant-edge",
            "qdrant",
            {"m": 16, "ef_construct": 100},
            tuple({"hnsw_ef": e} for e in efs),
        ),
    ]
    if server:
        out.append(
            BuildConfig(
                "qdrant-server-hnsw(m=16,efc=100)",
                "qdrant-server",
                "qdrant",
                {"m": 16, "ef_construct": 100},
                tuple({"hnsw_ef": e} for e in efs),
            )
        )
    return out


def make_engine(cfg: BuildConfig, root: Path, ds: Dataset, settings: Settings) -> Engine:
    if cfg.engine == "faiss":
        return FaissEngine(cfg, root, ds.dim, ds.metric)
    if cfg.engine == "qdrant-edge":
        return QdrantEdgeEngine(cfg, root, ds.dim, ds.metric)
    return QdrantServerEngine(cfg, root, ds.dim, ds.metric, settings.qdrant)


def _time_batch(fn: Callable[[], Any], repeat: int) -> float:
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return float(best)


def measure(engine: Engine, ds: Dataset, gt: np.ndarray, qp: dict[str, Any], n_single: int) -> dict[str, Any]:
    """Recall, batch QPS and single-query latency for one query setting, layer and raw."""
    nq = len(ds.xq)
    k = min(K_RECALL, len(ds.xb))
    found = engine.search(ds.xq, k, qp)
    res: dict[str, Any] = {"params": qp, **recall_at(found, gt, (1, 10, 100))}
    repeat = 2
    t_layer = _time_batch(lambda: engine.search(ds.xq, K_LATENCY, qp), repeat)
    t_raw = _time_batch(lambda: engine.raw_search(ds.xq, K_LATENCY, qp), repeat)
    res["batch"] = {"qps": nq / t_layer, "raw_qps": nq / t_raw, "overhead_ratio": t_layer / t_raw}
    lat, raw = [], []
    for i in range(min(n_single, nq)):
        q = ds.xq[i : i + 1]
        t0 = time.perf_counter()
        engine.search(q, K_LATENCY, qp)
        t1 = time.perf_counter()
        engine.raw_search(q, K_LATENCY, qp)
        t2 = time.perf_counter()
        lat.append(t1 - t0)
        raw.append(t2 - t1)
    res["single"] = {
        **percentiles(lat),
        "raw": percentiles(raw),
        "overhead_us_mean": float((np.mean(lat) - np.mean(raw)) * 1e6),
    }
    res["single"]["qps"] = 1.0 / float(np.mean(lat))
    if qp.get("rerank"):
        res["batch"]["overhead_note"] = "raw call is PQ without the exact re-rank"
    return res


def environment(threads: int) -> dict[str, Any]:
    import faiss

    from benchmarks.versions import library_versions

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads": threads,
        "load_average": list(os.getloadavg()),
        "python": platform.python_version(),
        "faiss_compile_options": faiss.get_compile_options(),
        "versions": library_versions(),
    }


def run(
    settings: Settings,
    dataset: str = "stsb",
    quick: bool = False,
    scale: int | None = None,
    nq: int | None = None,
    threads: int = 1,
    out: Path | None = None,
    e2e: bool = True,
    ingest_rows: int | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the benchmark and write results.json, report.md and plots under out; returns the results."""
    import faiss

    t_run = time.perf_counter()
    faiss.omp_set_num_threads(threads)
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass
    ds = load(dataset, settings, quick, scale, nq)
    log(f"dataset {ds.name}: {len(ds.xb)} base × {ds.dim}, {len(ds.xq)} queries, metric {ds.metric}")
    t0 = time.perf_counter()
    gt = ground_truth(ds, K_RECALL)
    results: dict[str, Any] = {
        "run": environment(threads),
        "dataset": {
            "name": ds.name,
            "n": len(ds.xb),
            "dim": ds.dim,
            "nq": len(ds.xq),
            "metric": ds.metric,
            "ground_truth_s": time.perf_counter() - t0,
            "quick": quick,
        },
        "configs": [],
    }
    n_single = 100 if quick else 1000
    ids = ds.point_ids()
    with tempfile.TemporaryDirectory(
        prefix="simlookup-bench-", dir=settings.data_dir.parent if settings.data_dir.parent.exists() else None
    ) as tmp:
        for i, cfg in enumerate(configs(ds.dim, quick, settings.qdrant.mode == "server")):
            root = Path(tmp) / f"c{i}"
            eng = make_engine(cfg, root, ds, settings)
            try:
                eng.build(ids, ds.xb)
                entry: dict[str, Any] = {
                    "label": cfg.label,
                    "engine": cfg.engine,
                    "kind": cfg.kind,
                    "build_params": cfg.params,
                    "build": eng.timings,
                    "disk_bytes": eng.disk_bytes(),
                    "ram_bytes": eng.ram_bytes(),
                    "rss_growth_bytes": eng.rss_growth,
                    "results": [],
                }
                for qp in cfg.sweep:
                    r = measure(eng, ds, gt, qp, n_single)
                    entry["results"].append(r)
                    log(
                        f"  {cfg.label:<42} {json.dumps(qp):<32} recall@10 {r.get('recall@10', 0):.3f} "
                        f"p50 {r['single']['p50_ms']:.3f} ms  qps {r['batch']['qps']:.0f}"
                    )
                results["configs"].append(entry)
            finally:
                eng.close()
    if e2e and dataset == "stsb":
        from benchmarks.e2e import end_to_end

        results["e2e"] = end_to_end(settings, ds, quick, log)
    if ingest_rows and dataset == "stsb":
        from benchmarks.e2e import ingest_overhead

        results["ingest"] = ingest_overhead(settings, ingest_rows, log)
    from benchmarks.claims import evaluate_claims

    results["claims"] = evaluate_claims(results)
    results["run"]["wall_s"] = time.perf_counter() - t_run
    if out is not None:
        from benchmarks.report import write_all

        write_all(results, out)
        log(f"wrote {out}/results.json, report.md and plots")
    return results
