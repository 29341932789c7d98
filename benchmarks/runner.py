"""One benchmark run: build every configuration on the same vectors, sweep its query parameters, measure.

Rules (after ann-benchmarks): build parameters apart from query parameters; warm-up queries before any
timing; batch runs best of five; the layer call, the layer's payload-free call (``with_payload=False``) and
the raw engine call alternate (which goes first rotates); recall comes from the very result lists that were
timed, at k=10, with ann-benchmarks' distance tolerance for ties; the harness's own bookkeeping (id → position
mapping, distances) runs outside the timed region. recall@100, where shown, comes from its own timed k=100
series. Per configuration: build time where the work happens, every file it needs on disk, and the resident
memory of a fresh process that opens it and answers the query set.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.data import ground_truth, load
from benchmarks.datasets import Dataset
from benchmarks.engines import BuildConfig, Engine, FaissEngine, QdrantEdgeEngine, QdrantServerEngine
from benchmarks.loadavg import LoadSampler
from benchmarks.metrics import distances, knn_recalls, percentiles
from benchmarks.timing import rotated, timed
from benchmarks.tuned import setting_text, tune_store
from retrieval.disk import tree_bytes
from retrieval.settings import Settings

K = 10  # the k every latency and recall@1/@10 figure is measured at
K_WIDE = 100  # the k of the separate recall@100 series
REPEATS = 5  # batch runs: best of five
WARMUP_SINGLE = 10


def pick_pq_m(dim: int) -> int:
    """The largest common PQ m (≤ dim/8 sub-vectors of ≥ 8 dims) that divides the dimension."""
    for m in (48, 32, 28, 24, 16, 8, 4):
        if dim % m == 0 and dim // m >= 8:
            return m
    return 1


def hnsw_configs(efs: Sequence[int], ms: Sequence[int] = (16, 32), ef_construct: int = 100) -> list[BuildConfig]:
    """FAISS HNSW and Qdrant HNSW at the same M and ef_construct, for each M."""
    sweep = tuple({"hnsw_ef": e} for e in efs)
    out = []
    for m in ms:
        out.append(
            BuildConfig(
                f"faiss-hnsw(M={m},efC={ef_construct})",
                "faiss",
                "hnsw",
                {"hnsw_m": m, "ef_construction": ef_construct},
                sweep,
            )
        )
        out.append(
            BuildConfig(
                f"qdrant-edge-hnsw(m={m},efc={ef_construct})",
                "qdrant-edge",
                "qdrant",
                {"m": m, "ef_construct": ef_construct},
                sweep,
            )
        )
    return out


def configs(dim: int, quick: bool, server: bool) -> list[BuildConfig]:
    """The configurations of a run: FAISS Flat/IVF/IVF-PQ/HNSW, the SQ8 tiers (IVF-SQ8, HNSW-SQ8 at M=32, re-rank
    off and ×10), Qdrant HNSW, and the seed's settings."""
    nprobes = (1, 8, 32) if quick else (1, 2, 4, 8, 16, 32, 64, 128)
    efs = (10, 32, 128) if quick else (10, 16, 32, 64, 128, 256)
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
            tuple({"nprobe": p, "rerank": r} for r in (0, 10) for p in ((8, 50) if quick else (1, 8, 16, 50))),
        ),
        BuildConfig(
            f"faiss-ivfpq(m={m})",
            "faiss",
            "ivfpq",
            {"pq_m": m, "pq_nbits": 8},
            tuple({"nprobe": p, "rerank": r} for r in (0, 10) for p in nprobes),
        ),
        *hnsw_configs(efs),
        BuildConfig(
            "faiss-ivf_sq8", "faiss", "ivf_sq8", {}, tuple({"nprobe": p, "rerank": r} for r in (0, 10) for p in nprobes)
        ),
        BuildConfig(
            "faiss-hnsw_sq8(M=32,efC=100)",
            "faiss",
            "hnsw_sq8",
            {"hnsw_m": 32, "ef_construction": 100},
            tuple({"hnsw_ef": e, "rerank": r} for r in (0, 10) for e in efs),
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


def make_engine(cfg: BuildConfig, root: Path, ds: Dataset, settings: Settings, threads: int = 1) -> Engine:
    if cfg.engine == "faiss":
        return FaissEngine(cfg, root, ds.dim, ds.metric, threads)
    if cfg.engine == "qdrant-edge":
        return QdrantEdgeEngine(cfg, root, ds.dim, ds.metric, threads)
    return QdrantServerEngine(cfg, root, ds.dim, ds.metric, settings.qdrant, threads)


@dataclass
class Truth:
    """Exact neighbours of the queries (positions) and their distances on the harness's scale."""

    idx: np.ndarray
    dist: np.ndarray

    @classmethod
    def of(cls, ds: Dataset, k: int) -> Truth:
        idx = ground_truth(ds, k)
        return cls(idx, distances(ds.xq, ds.xb, idx, ds.metric))


def positions(res: Sequence[Sequence[Any]], pos_of: dict[str, int], k: int) -> np.ndarray:
    """Hit lists → (n, k) base positions, -1 where fewer hits (a repeated id counts once)."""
    out = np.full((len(res), k), -1, dtype=np.int64)
    for i, hits in enumerate(res):
        seen: set[int] = set()
        for j, h in enumerate(hits[:k]):
            p = pos_of[h.id]
            if p not in seen:
                out[i, j] = p
                seen.add(p)
    return out


def recalls(found: np.ndarray, ds: Dataset, truth: Truth, rows: np.ndarray | None, ks: Sequence[int]) -> dict[str, Any]:
    """recall@k (ties within ann-benchmarks' 1e-3 count as found) and the plain id-overlap recall, per k."""
    xq = ds.xq if rows is None else ds.xq[rows]
    tdist = truth.dist if rows is None else truth.dist[rows]
    tidx = truth.idx if rows is None else truth.idx[rows]
    return dict(knn_recalls(found, tidx, xq, ds.xb, ds.metric, ks, tdist))


def measure(
    engine: Engine,
    ds: Dataset,
    truth: Truth,
    qp: dict[str, Any],
    n_single: int,
    raw: bool = True,
    wide: bool = False,
    repeats: int = REPEATS,
    pos_of: dict[str, int] | None = None,
    no_payload: bool = True,
) -> dict[str, Any]:
    """Recall, batch QPS and single-query latency at one query setting; the paths timed alternate.

    The paths: the layer (the full search, payloads included), the layer without payloads (``with_payload=False``,
    where the engine has it: ``no_payload``) and the raw engine call; which goes first rotates. Every recall figure
    comes from result lists returned by timed layer calls: recall@1/@10 from the fastest timed batch run at k=10
    (all queries), single.recall@10 from the timed one-query calls, recall@100 from its own timed k=100 batch
    series (when wide).
    """
    xq = ds.xq
    nq = len(xq)
    k = min(K, len(ds.xb))
    pos_of = pos_of or {pid: i for i, pid in enumerate(ds.point_ids())}
    paths: dict[str, Callable[..., Any]] = {"layer": lambda q, kk=k: engine.search(q, kk, qp)}
    if no_payload and engine.open_no_payload():
        paths["no_payload"] = lambda q, kk=k: engine.no_payload_search(q, kk, qp)
    if raw:
        paths["raw"] = lambda q, kk=k: engine.raw_search(q, kk, qp)
    layer = paths["layer"]

    # warm-up: one batch and a few single queries through each path, untimed
    for f in paths.values():
        f(xq)
    for i in range(min(WARMUP_SINGLE, nq)):
        for f in paths.values():
            f(xq[i : i + 1])
    # batch: best of `repeats`, the paths alternating, which goes first rotating too
    times: dict[str, list[float]] = {p: [] for p in paths}
    runs: list[tuple[float, Any]] = []
    topups = 0  # queries the layer answered by exact top-up (the payload-free path's are not counted)
    for rep in range(repeats):
        for who in rotated(list(paths), rep):
            before = engine.exact_topups()
            t, res = timed(partial(paths[who], xq))
            times[who].append(t)
            if who == "layer":
                runs.append((t, res))
                topups += engine.exact_topups() - before
    best_res = min(runs, key=lambda r: r[0])[1]
    found = positions(best_res, pos_of, k)
    out: dict[str, Any] = {"params": qp, "k": k, **recalls(found, ds, truth, None, (1, 10))}
    run_recalls = {round(recalls(positions(r, pos_of, k), ds, truth, None, (10,))["recall@10"], 6) for _, r in runs}
    out["batch"] = {
        "qps": nq / min(times["layer"]),
        "runs": repeats,
        "recall@10_all_runs": sorted(run_recalls),
        # queries of one run that the index answered short and the layer answered exactly (counted, not timed)
        "exact_topup_queries": topups // repeats,
    }
    if "no_payload" in paths:
        out["batch"]["no_payload_qps"] = nq / min(times["no_payload"])
    if raw:
        out["batch"]["raw_qps"] = nq / min(times["raw"])
        out["batch"]["overhead_ratio"] = min(times["layer"]) / min(times["raw"])
        if "no_payload" in paths:
            out["batch"]["no_payload_overhead_ratio"] = min(times["no_payload"]) / min(times["raw"])
    # single queries: one per call, the paths alternating, which goes first rotating too
    n = min(n_single, nq)
    lat: dict[str, list[float]] = {p: [] for p in paths}
    single_res = []
    topups = 0
    for i in range(n):
        q = xq[i : i + 1]
        for who in rotated(list(paths), i):
            before = engine.exact_topups()
            t, res = timed(partial(paths[who], q))
            lat[who].append(t)
            if who == "layer":
                single_res.append(res[0])
                topups += engine.exact_topups() - before
    sfound = positions(single_res, pos_of, k)
    out["single"] = {
        **percentiles(lat["layer"]),
        "qps": 1.0 / float(np.mean(lat["layer"])),
        "queries": n,
        "recall@10": recalls(sfound, ds, truth, np.arange(n), (10,)).get("recall@10"),
        "exact_topup_queries": topups,
    }
    if "no_payload" in paths:
        out["single"]["no_payload"] = percentiles(lat["no_payload"])
    if raw:
        out["single"]["raw"] = percentiles(lat["raw"])
        for name, key in (("layer", "overhead"), ("no_payload", "no_payload_overhead")):
            if name in lat:
                out["single"][f"{key}_us_mean"] = float((np.mean(lat[name]) - np.mean(lat["raw"])) * 1e6)
                out["single"][f"{key}_us_p50"] = float((np.median(lat[name]) - np.median(lat["raw"])) * 1e6)
    note = engine.raw_note(qp)
    if raw and note:
        out["batch"]["overhead_note"] = note
    if wide and len(ds.xb) >= K_WIDE and truth.idx.shape[1] >= K_WIDE:
        layer(xq, K_WIDE)
        before = engine.exact_topups()
        wide_runs = [timed(partial(layer, xq, K_WIDE)) for _ in range(repeats)]
        t, res = min(wide_runs, key=lambda r: r[0])
        out["recall@100"] = recalls(positions(res, pos_of, K_WIDE), ds, truth, None, (K_WIDE,))["recall@100"]
        out["batch_k100"] = {
            "qps": nq / t,
            "runs": repeats,
            "exact_topup_queries": (engine.exact_topups() - before) // repeats,
        }
    return out


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
        "search_threads": {
            "faiss": threads,
            "qdrant-edge": threads,
            "how": "faiss.omp_set_num_threads; Qdrant Edge EdgeConfig.max_search_threads (search pool) and "
            "HnswIndexConfig.max_indexing_threads (build) through SIMLOOKUP_QDRANT__SEARCH_THREADS / "
            "INDEXING_THREADS; FAISS builds on the same OpenMP threads",
            "qdrant-server": "set by the server, not by this run",
        },
        "load_average": list(os.getloadavg()),
        "python": platform.python_version(),
        "faiss_compile_options": faiss.get_compile_options(),
        "versions": library_versions(),
    }


def set_threads(threads: int) -> None:
    """The same number of threads for FAISS (OpenMP) and torch."""
    import faiss

    faiss.omp_set_num_threads(threads)
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass


def summarize_disk(files: dict[str, int], n: int) -> dict[str, Any]:
    """Total bytes, bytes per vector and the largest files of a configuration's folder."""
    total = sum(files.values())
    top = dict(sorted(files.items(), key=lambda kv: -kv[1])[:12])
    return {
        "disk_bytes": total,
        "disk_bytes_per_vector": total / max(n, 1),
        "disk_file_count": len(files),
        "disk_files": top,  # the largest twelve
        "disk_other_files_bytes": total - sum(top.values()),
    }


def run_config(
    cfg: BuildConfig,
    root: Path,
    ds: Dataset,
    truth: Truth,
    settings: Settings,
    threads: int,
    n_single: int,
    log: Callable[[str], None],
    raw: bool = True,
    wide: bool = False,
    stop_at_recall: float | None = None,
    payloads: list[dict[str, Any]] | None = None,
    tuned: bool = False,
) -> dict[str, Any]:
    """Build one configuration, sweep its query settings, then measure its disk and a fresh process's RAM.

    ``tuned``: after the sweep, tune the store and measure its tuned default (``entry["tuned"]``, see
    ``benchmarks.tuned``); the sweep itself runs on the untuned store."""
    from benchmarks.memprobe import measure_ram

    eng = make_engine(cfg, root, ds, settings, threads)
    ids = ds.point_ids()
    pos_of = {pid: i for i, pid in enumerate(ids)}
    entry: dict[str, Any] = {
        "label": cfg.label,
        "engine": cfg.engine,
        "kind": cfg.kind,
        "build_params": cfg.params,
        "results": [],
    }
    with LoadSampler() as sampler:  # the load average through the build and the sweep
        try:
            eng.build(ids, ds.xb, payloads)
            entry["build"] = eng.timings
            entry["resolved_build"] = eng.resolved_build()  # every build parameter as the store resolved it (nlist)
            entry["threads"] = eng.thread_record()
            has_raw = raw and eng.open_raw()
            entry["raw_baseline"] = has_raw
            for qp in cfg.sweep:
                r = measure(eng, ds, truth, qp, n_single, raw=has_raw, wide=wide, pos_of=pos_of)
                entry["results"].append(r)
                log(
                    f"  {cfg.label:<42} {json.dumps(qp):<32} recall@10 {r['recall@10']:.3f} "
                    f"p50 {r['single']['p50_ms']:.3f} ms  qps {r['batch']['qps']:.0f}"
                )
                if stop_at_recall is not None and r["recall@10"] >= stop_at_recall:
                    break
            if tuned:
                entry["tuned"] = tuned_default(eng, ds, truth, n_single, pos_of, log)
        finally:
            eng.close()
    entry["load_average"] = sampler.record()  # start, highest and end
    if cfg.engine == "qdrant-server":
        entry.update({"disk_bytes": -1, "ram_bytes": -1, "note": "disk and RAM are on the server"})
        return entry
    entry.update(summarize_disk(tree_bytes(root), len(ds.xb)))
    spec = {
        "settings": eng.settings().model_dump(mode="json"),
        "name": "bench",
        "index": eng.index_name(),
        "k": K,
        "sweep": [r["params"] for r in entry["results"]],  # the settings measured above
        "threads": threads,
        "xq": ds.xq,
    }
    mem = measure_ram(spec, root.parent / f"{root.name}-probe")
    entry["ram"] = mem
    entry["ram_bytes"] = int(mem.get("rss_bytes", -1))
    entry["ram_bytes_per_vector"] = entry["ram_bytes"] / max(len(ds.xb), 1) if entry["ram_bytes"] >= 0 else None
    log(
        f"  {cfg.label:<42} build {eng.timings['total_s']:.1f} s, disk {entry['disk_bytes'] / 1e6:.1f} MB, "
        f"RAM {entry['ram_bytes'] / 1e6:.1f} MB"
    )
    return entry


def tuned_default(
    eng: Engine, ds: Dataset, truth: Truth, n_single: int, pos_of: dict[str, int], log: Callable[[str], None]
) -> dict[str, Any]:
    """Tune the built store (``benchmarks.tuned.tune_store``), then measure a search that names no query parameter
    on the held-out queries: the setting chosen, recall@10 with tie credit and by id overlap, p50, tuning cost."""
    assert eng.store is not None
    t = tune_store(eng.store, float(eng.timings["total_s"]))
    r = measure(eng, ds, truth, {}, n_single, raw=False, pos_of=pos_of, no_payload=False)
    t.update(
        {
            "recall@1": r.get("recall@1"),
            "recall@10": r["recall@10"],
            "id_recall@10": r.get("id_recall@10"),
            "p50_ms": r["single"]["p50_ms"],
            "single": r["single"],
            "batch": r["batch"],
        }
    )
    cost = (
        "" if t.get("seconds") is None else f", tuning {t['seconds']:.1f} s ({t.get('cost_ratio') or 0:.1%} of build)"
    )
    log(
        f"  {eng.cfg.label:<42} {'tuned default ' + setting_text(t):<32} recall@10 {t['recall@10']:.3f} "
        f"id {t['id_recall@10']:.3f} p50 {t['p50_ms']:.3f} ms{cost}"
    )
    return t


def dataset_info(ds: Dataset, quick: bool, gt_s: float) -> dict[str, Any]:
    return {
        "name": ds.name,
        "n": len(ds.xb),
        "n_base": len(ds.xb),
        "dim": ds.dim,
        "nq": len(ds.xq),
        "metric": ds.metric,
        "ground_truth_s": gt_s,
        "quick": quick,
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
    cache_dir: Path | None = None,
    work_dir: Path | None = None,
) -> dict[str, Any]:
    """Run the benchmark and write results.json, report.md and plots under out; returns the results.

    Nothing is written to ``settings.data_dir``: stores live in a temporary folder (under work_dir when
    given), embeddings are cached in cache_dir (a temporary folder when None).
    """
    t_run = time.perf_counter()
    set_threads(threads)
    with tempfile.TemporaryDirectory(prefix="simlookup-bench-", dir=work_dir) as tmp:
        ds = load(dataset, settings, quick, scale, nq, cache_dir=cache_dir or Path(tmp) / "cache")
        log(f"dataset {ds.name}: {len(ds.xb)} base × {ds.dim}, {len(ds.xq)} queries, metric {ds.metric}")
        t0 = time.perf_counter()
        truth = Truth.of(ds, K if quick else K_WIDE)
        results: dict[str, Any] = {
            "run": environment(threads),
            "method": {
                "k": K,
                "batch_repeats": REPEATS,
                "warmup": f"one batch and {WARMUP_SINGLE} single queries per path before timing",
                "order": "layer and raw alternate; which goes first alternates",
                "recall": "from the timed result lists; ties within 1e-3 of the k-th true distance count "
                "(ann-benchmarks); id_recall is the plain id overlap",
                "disk": "every file in the configuration's own folder (shared point store and vectors included "
                "in full for each configuration)",
                "ram": "RSS of a fresh process after opening the store and answering every query setting with "
                "payloads, minus its RSS after imports",
            },
            "dataset": dataset_info(ds, quick, time.perf_counter() - t0),
            "configs": [],
        }
        n_single = 100 if quick else 1000
        payloads = [{"text": t} for t in ds.base_texts] if ds.base_texts else None
        for i, cfg in enumerate(configs(ds.dim, quick, settings.qdrant.mode == "server")):
            entry = run_config(
                cfg,
                Path(tmp) / f"c{i}",
                ds,
                truth,
                settings,
                threads,
                n_single,
                log,
                wide=not quick,
                payloads=payloads,
                tuned=True,
            )
            results["configs"].append(entry)
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
