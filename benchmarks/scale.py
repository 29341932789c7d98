"""Scale curve: the same configurations at growing N on seeded clustered 384-d vectors.

Per size and configuration: build time, disk, RAM (fresh process) and single-query p50 at the cheapest
query setting whose timed recall@10 reaches TARGET (or "not reached"); then the tuned default: the store tuned as
a collection build tunes it and searched with no query parameters (``benchmarks.tuned``). results.json and
report.md are rewritten after every configuration, so a run cut short still leaves what it measured.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.datasets import clustered
from benchmarks.engines import BuildConfig
from benchmarks.runner import K, Truth, dataset_info, environment, hnsw_configs, pick_pq_m, run_config, set_threads
from benchmarks.tables import md_table
from benchmarks.tuned import tuned_legend, tuned_table
from retrieval.settings import Settings

TARGET = 0.95
DIM = 384
PLOTS = ("scale_build.png", "scale_disk.png", "scale_ram.png", "scale_p50.png")


def scale_configs(dim: int = DIM) -> list[BuildConfig]:
    """Flat, IVF, IVF-PQ + exact re-rank, FAISS and Qdrant HNSW at M=16 and 32; query settings cheapest first."""
    nprobes = tuple({"nprobe": p} for p in (1, 2, 4, 8, 16, 32, 64, 128, 256))
    hnsw = hnsw_configs((10, 16, 32, 64, 128, 256, 512))
    # cheapest builds first, so a large size cut short still compares FAISS and Qdrant HNSW at M=16
    return [
        BuildConfig("faiss-flat", "faiss", "flat"),
        *hnsw[:2],
        BuildConfig("faiss-ivf", "faiss", "ivf", {}, nprobes),
        BuildConfig(
            f"faiss-ivfpq(m={pick_pq_m(dim)})+rerank10",
            "faiss",
            "ivfpq",
            {"pq_m": pick_pq_m(dim), "pq_nbits": 8},
            tuple({**p, "rerank": 10} for p in nprobes),
        ),
        *hnsw[2:],
    ]


MEMMAP_FROM = 2_000_000  # base sets from this size are generated in chunks into a memory-mapped .npy


def clustered_memmap(
    path: Path, n: int, d: int = DIM, nq: int = 1000, seed: int = 0, chunk: int = 250_000, spread: float = 0.35
) -> tuple[np.ndarray, np.ndarray]:
    """``benchmarks.datasets.clustered``'s distribution (same centre count, noise, unit norm), drawn chunk by
    chunk into a .npy at ``path`` so that one copy of the base set exists, on disk; (read-only map, queries).
    Not the same vectors as ``clustered(n)``: the draws are ordered differently."""
    rng = np.random.default_rng(seed)
    k = max(8, int(np.sqrt(n) / 2))
    centres = rng.normal(size=(k, d)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)

    def draw(m: int) -> np.ndarray:
        x = centres[rng.integers(0, k, m)] + spread * rng.normal(size=(m, d)).astype(np.float32) / np.sqrt(d) * 3
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    path.parent.mkdir(parents=True, exist_ok=True)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    for s in range(0, n, chunk):
        out[s : s + chunk] = draw(min(chunk, n - s))
    out.flush()
    del out
    xq = draw(nq)
    return np.load(path, mmap_mode="r"), xq


def chunked_truth(xb: np.ndarray, xq: np.ndarray, k: int, chunk: int = 250_000) -> np.ndarray:
    """Exact top-k positions by inner product (unit vectors: cosine), one chunk of the base set at a time."""
    import faiss

    best_d = np.full((len(xq), k), -np.inf, dtype=np.float32)
    best_i = np.full((len(xq), k), -1, dtype=np.int64)
    q = np.ascontiguousarray(xq, dtype=np.float32)
    for s in range(0, len(xb), chunk):
        part = np.ascontiguousarray(xb[s : s + chunk], dtype=np.float32)
        dist, idx = faiss.knn(q, part, min(k, len(part)), metric=faiss.METRIC_INNER_PRODUCT)
        both_d = np.concatenate([best_d, dist], axis=1)
        both_i = np.concatenate([best_i, idx + s], axis=1)
        order = np.argsort(-both_d, axis=1, kind="stable")[:, :k]
        best_d = np.take_along_axis(both_d, order, axis=1)
        best_i = np.take_along_axis(both_i, order, axis=1)
    return best_i


def load_vectors(
    n: int, d: int, nq: int, seed: int, path: Path | None, log: Callable[[str], None] = print
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(base, queries, exact top-K positions): in RAM below MEMMAP_FROM (``clustered``, the curve's vectors),
    memory-mapped at ``path`` from there (an existing file of the right shape is reused)."""
    from benchmarks.data import ground_truth

    if n < MEMMAP_FROM or path is None:
        ds = clustered(n=n, d=d, nq=nq, seed=seed)
        return ds.xb, ds.xq, ground_truth(ds, K)
    qpath = path.with_suffix(".queries.npy")
    if path.exists() and qpath.exists() and np.load(path, mmap_mode="r").shape == (n, d):
        xb, xq = np.load(path, mmap_mode="r"), np.load(qpath)
        log(f"reusing {path}")
    else:
        t0 = time.perf_counter()
        xb, xq = clustered_memmap(path, n, d, nq, seed)
        np.save(qpath, xq)
        log(f"generated {n:,} × {d} into {path} in {time.perf_counter() - t0:.0f} s")
    tpath = path.with_suffix(".truth.npy")
    if tpath.exists() and np.load(tpath).shape == (nq, K):
        return xb, xq, np.load(tpath)
    t0 = time.perf_counter()
    truth = chunked_truth(xb, xq, K)
    np.save(tpath, truth)
    log(f"exact truth for {nq} queries in {time.perf_counter() - t0:.0f} s")
    return xb, xq, truth


def at_target(entry: dict[str, Any], target: float = TARGET) -> dict[str, Any] | None:
    """The cheapest measured query setting (sweep order) whose recall@10 (ties credited) reaches target, or None;
    its id_recall@10 beside it."""
    for r in entry["results"]:
        if r["recall@10"] >= target:
            return {
                "params": r["params"],
                "recall@10": r["recall@10"],
                "id_recall@10": r.get("id_recall@10"),
                "p50_ms": r["single"]["p50_ms"],
            }
    return None


def run_scale_curve(
    settings: Settings,
    sizes: Sequence[int],
    out: Path,
    nq: int = 1000,
    n_single: int = 300,
    threads: int = 1,
    log: Callable[[str], None] = print,
    work_dir: Path | None = None,
    seed: int = 0,
    config_filter: Callable[[BuildConfig], bool] | None = None,
    tuned: bool = True,
) -> dict[str, Any]:
    """Run every size in order, writing results.json + report.md + plots under out after each configuration.

    ``tuned``: measure each configuration's tuned default too (a row per configuration and size)."""
    set_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "run": environment(threads),
        "mode": "scale-curve",
        "target_recall@10": TARGET,
        "k": K,
        "sizes": [],
    }
    t_all = time.perf_counter()
    for n in sizes:
        t_size = time.perf_counter()
        ds = clustered(n=n, d=DIM, nq=nq, seed=seed)
        t0 = time.perf_counter()
        truth = Truth.of(ds, K)
        block: dict[str, Any] = {
            "dataset": dataset_info(ds, False, time.perf_counter() - t0),
            "configs": [],
            "complete": False,
        }
        results["sizes"].append(block)
        log(f"scale {n}: {len(ds.xb)} × {ds.dim}, {len(ds.xq)} queries")
        cfgs = [c for c in scale_configs(ds.dim) if config_filter is None or config_filter(c)]
        with tempfile.TemporaryDirectory(prefix=f"simlookup-scale-{n}-", dir=work_dir) as tmp:
            for i, cfg in enumerate(cfgs):
                t_cfg = time.perf_counter()
                entry = run_config(
                    cfg,
                    Path(tmp) / f"c{i}",
                    ds,
                    truth,
                    settings,
                    threads,
                    n_single,
                    log,
                    raw=False,
                    stop_at_recall=TARGET,
                    tuned=tuned,
                )
                entry["at_target"] = at_target(entry)
                entry["wall_s"] = time.perf_counter() - t_cfg
                block["configs"].append(entry)
                block["wall_s"] = time.perf_counter() - t_size
                results["wall_s"] = time.perf_counter() - t_all
                write_scale(results, out)
        block["complete"] = True
        block["wall_s"] = time.perf_counter() - t_size
        results["wall_s"] = time.perf_counter() - t_all
        write_scale(results, out)
        log(f"scale {n}: done in {block['wall_s']:.0f} s")
    return results


def write_scale(results: dict[str, Any], out: Path) -> None:
    """results.json (written whole, then renamed), report.md and plots."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(results, indent=2, default=float) + "\n")
    tmp.replace(out / "results.json")
    plot_scale(results, out)
    (out / "report.md").write_text(scale_markdown(results))


def _labels(results: dict[str, Any]) -> list[str]:
    seen: list[str] = []
    for b in results["sizes"]:
        for c in b["configs"]:
            if c["label"] not in seen:
                seen.append(c["label"])
    return seen


def _mb(b: Any) -> str:
    return "—" if b is None or b < 0 else f"{b / 1e6:,.1f}"


def scale_markdown(results: dict[str, Any]) -> str:
    run = results["run"]
    lines = [
        "# simlookup scale curve — seeded clustered vectors, 384 dims",
        "",
        f"Run {run['date']} on {run['cpu']} ({run['cores']} cores), {run['threads']} thread(s) for every engine "
        f"(FAISS OpenMP and the Qdrant Edge search pool and HNSW build), load average {run['load_average'][0]:.2f}. "
        f"Whole run {results.get('wall_s', 0):.0f} s"
        + ("" if all(b["complete"] for b in results["sizes"]) else " so far (partial: a size is unfinished)")
        + ". Versions: "
        + ", ".join(f"{k} {v}" for k, v in run["versions"].items()),
        "",
        *([f"**Note:** {results['note']}", ""] if results.get("note") else []),
        f"p50 is one query per call at k={results['k']}, at the **cheapest query setting whose recall@10 reaches "
        f"{results['target_recall@10']}** (recall from the timed result lists, ties within 1e-3 counted as found; "
        "id_recall@10, the plain id overlap of the same lists, beside it: — in runs before it was recorded); "
        "query settings are tried cheapest first and the sweep stops there. Build = configure + upload + "
        "index (the FAISS HNSW graph is built during upload). Disk = every file of the configuration's own "
        "folder. RAM = resident memory of a fresh process that opens the store and answers the query set with "
        "payloads, minus its resident memory after imports.",
        "",
        "## Time per size",
        "",
        *md_table(
            ("N (dataset.n_base)", "queries", "configurations done", "complete", "wall s"),
            (
                (
                    f"{b['dataset']['n_base']:,}",
                    b["dataset"]["nq"],
                    len(b["configs"]),
                    "yes" if b["complete"] else "**no (partial)**",
                    f"{b.get('wall_s', 0):.0f}",
                )
                for b in results["sizes"]
            ),
            "rrrlr",
        ),
        "",
        "## Per configuration",
        "",
        *md_table(
            (
                "configuration",
                "N",
                "build s",
                "disk MB",
                "disk B/vector",
                "RAM MB",
                "RAM B/vector",
                "setting at target",
                "recall@10",
                "id_recall@10",
                "p50 ms",
            ),
            _config_rows(results),
            "lrrrrrrlrrr",
        ),
    ]
    tuned = _tuned_rows(results)
    if tuned:
        lines += ["", "## Tuned defaults", "", tuned_legend(results["target_recall@10"]), ""]
        lines += tuned_table(tuned, results["target_recall@10"])
    lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in PLOTS] + [""]
    return "\n".join(lines)


def _config_rows(results: dict[str, Any]) -> list[tuple[Any, ...]]:
    """One row per configuration and size: build, disk, RAM, and the cheapest setting at the target recall."""
    rows: list[tuple[Any, ...]] = []
    for label in _labels(results):
        for b in results["sizes"]:
            n = b["dataset"]["n_base"]
            c = next((c for c in b["configs"] if c["label"] == label), None)
            if c is None:
                continue
            t = c.get("at_target")
            ram = c.get("ram_bytes", -1)
            best = max((r["recall@10"] for r in c["results"]), default=0.0)
            if t is None:
                top: dict[str, Any] = max(c["results"], key=lambda r: r["recall@10"], default={})
                setting, rec, p50 = "not reached", f"{best:.3f} (best)", "—"
                idr = _f3(top.get("id_recall@10"))
            else:
                setting = ", ".join(f"{k}={v}" for k, v in t["params"].items()) or "exact"
                rec, p50 = f"{t['recall@10']:.3f}", f"{t['p50_ms']:.3f}"
                # a run before at_target carried id_recall@10: the swept row it names has it
                row: dict[str, Any] = next((r for r in c["results"] if r["params"] == t["params"]), {})
                idr = _f3(t.get("id_recall@10", row.get("id_recall@10")))
            ram_pv = "—" if ram < 0 else f"{ram / n:,.0f}"
            rows.append(
                (
                    label,
                    f"{n:,}",
                    f"{c['build']['total_s']:.1f}",
                    _mb(c["disk_bytes"]),
                    f"{c['disk_bytes'] / n:,.0f}",
                    _mb(ram),
                    ram_pv,
                    setting,
                    rec,
                    idr,
                    p50,
                )
            )
    return rows


def _f3(x: Any) -> str:
    return "—" if x is None else f"{x:.3f}"


def _tuned_rows(results: dict[str, Any]) -> list[tuple[str, int, dict[str, Any]]]:
    """(configuration, N, tuned entry) for every configuration and size that measured its tuned default."""
    return [
        (label, b["dataset"]["n_base"], c["tuned"])
        for label in _labels(results)
        for b in results["sizes"]
        for c in b["configs"]
        if c["label"] == label and c.get("tuned")
    ]


def plot_scale(results: dict[str, Any], out: Path) -> list[Path]:
    """Build time, disk, RAM and p50-at-target against N, one line per configuration (log-log)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = (
        ("build s", lambda c: c["build"]["total_s"]),
        ("disk MB", lambda c: c["disk_bytes"] / 1e6),
        ("RAM MB (fresh process)", lambda c: c["ram_bytes"] / 1e6 if c.get("ram_bytes", -1) >= 0 else None),
        (
            f"p50 ms at recall@10 ≥ {results['target_recall@10']}",
            lambda c: c["at_target"]["p50_ms"] if c.get("at_target") else None,
        ),
    )
    paths = []
    for (name, get), fname in zip(metrics, PLOTS, strict=True):
        fig, ax = plt.subplots(figsize=(8, 5))
        for label in _labels(results):
            xs, ys = [], []
            for b in results["sizes"]:
                c = next((c for c in b["configs"] if c["label"] == label), None)
                v = get(c) if c is not None else None
                if v is not None and v > 0:
                    xs.append(b["dataset"]["n_base"])
                    ys.append(v)
            if xs:
                ax.plot(xs, ys, marker="o", label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("vectors (N)")
        ax.set_ylabel(name)
        ax.set_title(f"{name} vs N — clustered 384-d")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        paths.append(out / fname)
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths
