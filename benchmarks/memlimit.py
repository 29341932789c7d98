"""Memory as a limit: the smallest memory cgroup limit at which a configuration still answers well.

For each configuration (plain data, ``MemConfig``: engine, kind, build parameters, settings overrides, a query
sweep cheapest first): build the store once on seeded clustered vectors, then run its searches in child processes,
each inside its own cgroup v1 memory group (``benchmarks.memcg``), the store's files evicted from the page cache
first. The unlimited child picks the query setting: the cheapest in the sweep whose recall@10 by plain id
overlap reaches TARGET on held-out queries (exact truth computed once), and measures its p50. Limited children
then bisect the budget, in bytes per vector beyond the child's own baseline after its imports: a budget passes when
the child keeps recall@10 ≥ TARGET and p50 ≤ SLOWDOWN × the unlimited p50; an OOM kill, a timeout, or a p50 beyond
it fails. p50: one query per call at k=10 after warm-up (a batch pass and ten single queries), best (lowest
median) of ``repeats`` runs of ``n_single`` queries.

Run: ``python -m benchmarks.memlimit --n 100000 --out benchmarks/results/memlimit`` (one JSON file per
configuration and size there, then report.md and the RAM-at-recall plot over every JSON file in the folder).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.engines import BuildConfig, Engine, FaissEngine, QdrantEdgeEngine
from retrieval.settings import Settings

TARGET = 0.95
SLOWDOWN = 1.5
K = 10
DIM = 384
REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class MemConfig:
    """One configuration as data: what ``BuildConfig`` holds plus settings overrides by section
    (e.g. ``{"qdrant": {"quantization": "scalar"}}``), so tiers that add settings plug in without code."""

    label: str
    engine: str  # "faiss" | "qdrant-edge"
    kind: str  # a FAISS kind, or "qdrant"
    params: dict[str, Any] = field(default_factory=dict)
    sweep: tuple[dict[str, Any], ...] = ({},)
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def of(cls, d: dict[str, Any]) -> MemConfig:
        return cls(
            d["label"],
            d["engine"],
            d["kind"],
            dict(d.get("params") or {}),
            tuple(d.get("sweep") or ({},)),
            dict(d.get("settings") or {}),
        )

    def build_config(self) -> BuildConfig:
        return BuildConfig(self.label, self.engine, self.kind, self.params, self.sweep)


def default_configs() -> list[MemConfig]:
    """Flat, IVF, IVF-PQ + re-rank, HNSW (FAISS and Qdrant Edge), and the memory tiers of issue 25 (ivf_sq8,
    hnsw_sq8, Edge scalar / binary quantization and on-disk vectors): those not in this checkout are skipped."""
    nprobes = [{"nprobe": p} for p in (1, 2, 4, 8, 16, 32, 64, 128, 256)]
    efs = [{"hnsw_ef": e} for e in (16, 32, 64, 128, 256, 512)]
    pq = [{"nprobe": p, "rerank": r} for r in (10, 20, 50) for p in (8, 16, 32, 64)]
    edge = {"m": 16, "ef_construct": 100}
    # quantized Edge: the default oversampling first (scalar 2, binary 8), then binary at 16 and 32
    binary = tuple(efs) + tuple({**e, "oversampling": o} for o in (16, 32) for e in efs)
    scalar_disk = {"qdrant": {"quantization": "scalar", "on_disk": True}}
    binary_disk = {"qdrant": {"quantization": "binary", "on_disk": True}}
    return [
        MemConfig("faiss-flat", "faiss", "flat"),
        MemConfig("faiss-ivf", "faiss", "ivf", {}, tuple(nprobes)),
        MemConfig("faiss-ivfpq(m=48)+rerank", "faiss", "ivfpq", {"pq_m": 48, "pq_nbits": 8}, tuple(pq)),
        MemConfig("faiss-hnsw(M=32,efC=100)", "faiss", "hnsw", {"hnsw_m": 32, "ef_construction": 100}, tuple(efs)),
        MemConfig("qdrant-edge-hnsw(m=16)", "qdrant-edge", "qdrant", edge, tuple(efs)),
        MemConfig("faiss-ivf_sq8", "faiss", "ivf_sq8", {}, tuple(nprobes)),
        MemConfig("faiss-hnsw_sq8(M=32)", "faiss", "hnsw_sq8", {"hnsw_m": 32, "ef_construction": 100}, tuple(efs)),
        MemConfig(
            "qdrant-edge-scalar", "qdrant-edge", "qdrant", edge, tuple(efs), {"qdrant": {"quantization": "scalar"}}
        ),
        MemConfig("qdrant-edge-binary", "qdrant-edge", "qdrant", edge, binary, {"qdrant": {"quantization": "binary"}}),
        MemConfig("qdrant-edge-scalar+on_disk", "qdrant-edge", "qdrant", edge, tuple(efs), scalar_disk),
        MemConfig("qdrant-edge-binary+on_disk", "qdrant-edge", "qdrant", edge, binary, binary_disk),
    ]


def with_overrides(s: Settings, overrides: dict[str, dict[str, Any]]) -> Settings:
    """``s`` with each section's fields replaced (validated: an unknown field or value is an error)."""
    update: dict[str, Any] = {}
    for section, values in overrides.items():
        cur = getattr(s, section)
        unknown = set(values) - set(type(cur).model_fields)
        if unknown:
            raise ValueError(f"settings.{section} has no field {sorted(unknown)}")
        update[section] = type(cur).model_validate({**cur.model_dump(), **values})
    return s.model_copy(update=update)


class _FaissTier(FaissEngine):
    overrides: dict[str, dict[str, Any]] = {}

    def settings(self) -> Settings:
        return with_overrides(super().settings(), self.overrides)


class _EdgeTier(QdrantEdgeEngine):
    overrides: dict[str, dict[str, Any]] = {}

    def settings(self) -> Settings:
        return with_overrides(super().settings(), self.overrides)


def make_engine(cfg: MemConfig, root: Path, dim: int, metric: str, threads: int) -> Engine:
    """The benchmark engine of ``cfg`` (FAISS or Qdrant Edge) with its settings overrides."""
    eng: _FaissTier | _EdgeTier
    if cfg.engine == "faiss":
        eng = _FaissTier(cfg.build_config(), root, dim, metric, threads)
    elif cfg.engine == "qdrant-edge":
        eng = _EdgeTier(cfg.build_config(), root, dim, metric, threads)
    else:
        raise ValueError(f"memlimit runs in-process engines only (faiss, qdrant-edge), not {cfg.engine!r}")
    eng.overrides = cfg.settings
    return eng


def unavailable(cfg: MemConfig) -> str | None:
    """Why this checkout cannot run ``cfg`` (a kind, setting or query parameter it does not have), or None."""
    from retrieval.stores import SearchParams
    from retrieval.stores.faiss_params import FAISS_KINDS

    if cfg.engine == "faiss" and cfg.kind not in FAISS_KINDS:
        return f"FAISS kind {cfg.kind!r} not in this checkout ({', '.join(FAISS_KINDS)})"
    try:
        with_overrides(Settings(), cfg.settings)
        for qp in cfg.sweep:
            SearchParams(**qp)
    except (ValueError, TypeError) as e:
        return f"not in this checkout: {str(e).splitlines()[0]}"
    return None


# ---- the parent: probes and the bisection ----


def run_child(spec: dict[str, Any], work: Path, limit_bytes: int | None, timeout_s: float) -> dict[str, Any]:
    """One child in a fresh memory group (``limit_bytes`` beyond its baseline; None: no limit): its result,
    or why it failed (OOM kill, timeout, error) with the group's counters."""
    from benchmarks.memcg import MemCgroup

    group = MemCgroup.create()
    spath = work / f"child-{group.path.name}.json"
    spath.write_text(json.dumps({**spec, "cgroup": str(group.path), "limit_bytes": limit_bytes}, default=str))
    # the shell joins the group before exec, so every page the Python process faults in is charged to it
    cmd = f'echo $$ > "{group.path}/cgroup.procs" && exec "{sys.executable}" -m benchmarks.memchild "{spath}"'
    t0 = time.perf_counter()
    res: dict[str, Any]
    try:
        proc = subprocess.run(["sh", "-c", cmd], cwd=REPO, capture_output=True, text=True, timeout=timeout_s)
        counters = group.counters()
        if proc.returncode == 0:
            res = json.loads(proc.stdout.strip().splitlines()[-1])
        elif counters.get("oom_kill", 0) > 0 or proc.returncode in (-9, 137):
            res = {"error": "oom-killed"}
        else:
            res = {"error": ((proc.stderr or proc.stdout).strip().splitlines() or ["child failed"])[-1]}
    except subprocess.TimeoutExpired:
        counters = group.counters()
        res = {"error": f"timeout after {timeout_s:.0f} s"}
    finally:
        group.remove()
        spath.unlink(missing_ok=True)
    res["group"] = counters
    res["child_wall_s"] = time.perf_counter() - t0
    res["load_average"] = list(os.getloadavg())
    return res


def judge(res: dict[str, Any], p50_ms: float, target: float = TARGET, slowdown: float = SLOWDOWN) -> str | None:
    """Why a limited child failed, or None when it kept recall and p50."""
    if "error" in res:
        return str(res["error"])
    r = res["settings"][-1]
    if r["id_recall@10"] < target:
        return f"id_recall@10 {r['id_recall@10']:.3f} < {target}"
    if r.get("aborted") or r["p50_ms"] > slowdown * p50_ms:
        return f"p50 {r['p50_ms']:.3f} ms > {slowdown} × {p50_ms:.3f} ms"
    return None


def bound(res: dict[str, Any], margin: float = 0.02) -> bool:
    """Whether a limited child's cgroup usage came within ``margin`` (at least 4 MiB) of its limit: only then can
    the kernel have reclaimed its pages (or killed it); True where that cannot be told."""
    peak, limit = (res.get("group") or {}).get("max_usage_bytes"), res.get("limit_bytes")
    if peak is None or limit is None:
        return True
    return bool(peak >= limit - max(margin * limit, 4 << 20))


def bisect_budget(
    passes: Callable[[int], bool], hi: int, max_hi: int, rel: float = 0.04, step: int = 8
) -> tuple[int | None, int | None]:
    """The smallest budget (bytes per vector) that passes, to within ``rel`` of it or ``step`` bytes; and the
    largest that failed (None: none probed). ``hi`` doubles until it passes (None beyond ``max_hi``)."""
    lo: int | None = None
    while not passes(hi):
        lo = hi
        if hi >= max_hi:
            return None, lo
        hi = min(hi * 2, max_hi)
    floor = 0 if lo is None else lo
    while hi - floor > max(step, rel * hi):
        mid = (floor + hi) // 2
        if passes(mid):
            hi = mid
        else:
            floor = lo = mid
    return hi, lo


def limit_search(
    spec: dict[str, Any],
    n: int,
    work: Path,
    log: Callable[[str], None] = print,
    retry_marginal: bool = True,
    slowdown: float = SLOWDOWN,
    at_budgets: Sequence[int] = (),
) -> dict[str, Any]:
    """The unlimited child (choose the setting, measure p50 and peak), probes at ``at_budgets`` (bytes per vector),
    then the bisection over budgets."""
    unl = run_child({**spec, "stop_at_recall": TARGET}, work, None, spec.get("timeout_s", 3600))
    out: dict[str, Any] = {"unlimited": unl, "probes": []}
    if "error" in unl:
        out["error"] = f"unlimited run failed: {unl['error']}"
        return out
    chosen = unl["settings"][-1]
    out["sweep_tried"] = [{k: r[k] for k in ("params", "id_recall@10", "p50_ms")} for r in unl["settings"]]
    out["chosen"] = {k: chosen[k] for k in ("params", "id_recall@10", "p50_ms")}
    log(f"    unlimited: {chosen['params']} id_recall@10 {chosen['id_recall@10']:.3f} p50 {chosen['p50_ms']:.3f} ms")
    if chosen["id_recall@10"] < TARGET:
        out["error"] = f"no query setting in the sweep reaches id_recall@10 {TARGET}"
        return out
    # the reference: the chosen setting alone, unlimited, measured as every probe is
    ref = run_child({**spec, "sweep": [chosen["params"]]}, work, None, spec.get("timeout_s", 3600))
    out["reference"] = ref
    if "error" in ref:
        out["error"] = f"unlimited reference run failed: {ref['error']}"
        return out
    p50 = ref["settings"][-1]["p50_ms"]
    out["unlimited_p50_ms"] = p50
    log(f"    unlimited reference p50 {p50:.3f} ms, peak {ref['peak_bytes'] / n:,.0f} B/vector over the baseline")
    probe_spec = {**spec, "sweep": [chosen["params"]], "cap_ms": slowdown * p50}
    timeout = min(spec.get("timeout_s", 3600), max(60.0, 10 * ref["wall_s"] + 30))

    def probe(budget: int, pspec: dict[str, Any], retry: bool) -> dict[str, Any]:
        res = run_child(pspec, work, budget * n, timeout)
        why = judge(res, p50, slowdown=slowdown)
        if why is not None and retry and why.startswith("p50") and res["settings"][-1]["p50_ms"] < 2.5 * p50:
            res = run_child(pspec, work, budget * n, timeout)  # a marginal miss on a shared machine: once more
            why = judge(res, p50, slowdown=slowdown)
            res["retried"] = True
        note = None
        if why is not None and why.startswith("p50") and not bound(res):
            # slower, but usage never came near the limit: no page was reclaimed, so the limit did not slow it
            note, why = f"{why}, but usage peaked below the limit (not memory-bound: machine noise)", None
        s = res.get("settings", [{}])[-1]
        return {
            "budget_bytes_per_vector": budget,
            "note": note,
            "limit_bytes": res.get("limit_bytes"),
            "ok": why is None,
            "why": why,
            "error": res.get("error"),
            "p50_ms": s.get("p50_ms"),
            "aborted": s.get("aborted"),
            "id_recall@10": s.get("id_recall@10"),
            "peak_bytes": res.get("peak_bytes"),
            "open_s": res.get("open_s"),
            "group": res.get("group"),
            "child_wall_s": res.get("child_wall_s"),
            "load_average": res.get("load_average"),
            "retried": res.get("retried", False),
        }

    def passes(budget: int) -> bool:
        rec = probe(budget, probe_spec, retry_marginal)
        out["probes"].append(rec)
        verdict = ("ok" + (f" ({rec['note']})" if rec["note"] else "")) if rec["ok"] else f"FAIL {rec['why']}"
        log(f"    {budget:>6} B/vector: {verdict}")
        return bool(rec["ok"])

    # fixed budgets (the 600 B/vector at 1M, 8 GB at 10M): the absolute p50 and recall there, with a
    # generous abort (over half the queries slower than twice max(10 × p50, 25 ms))
    out["at_budgets"] = []
    for budget in at_budgets:
        rec = probe(budget, {**probe_spec, "cap_ms": max(10 * p50, 25.0)}, False)
        out["at_budgets"].append(rec)
        got = "error " + str(rec["error"]) if rec["error"] else f"p50 {rec['p50_ms']:.3f} ms"
        log(f"    at {budget} B/vector: {got}, id_recall@10 {rec['id_recall@10']}")

    peak = max(ref.get("peak_bytes", 0), 0)
    start = max(64, int(peak / n * 1.2) + 16)
    best, fails = bisect_budget(passes, start, max_hi=max(start, 64 * 1024))
    out["limit_bytes_per_vector"] = best
    out["fails_at_bytes_per_vector"] = fails
    out["baseline_bytes"] = ref["baseline_bytes"]
    out["unlimited_peak_bytes_per_vector"] = peak / n
    hit = next((p for p in out["probes"] if p["ok"] and p["budget_bytes_per_vector"] == best), None)
    out["p50_at_limit_ms"] = hit["p50_ms"] if hit else None
    return out


# ---- the data, the build, the run ----


def slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+=-]+", "_", label).strip("_")


def run_config(
    cfg: MemConfig,
    xb: np.ndarray,
    xq: np.ndarray,
    truth: np.ndarray,
    work: Path,
    dataset: dict[str, Any],
    threads: int = 1,
    n_single: int = 300,
    repeats: int = 3,
    log: Callable[[str], None] = print,
    timeout_s: float = 3600,
    slowdown: float = SLOWDOWN,
    at_budgets: Sequence[int] = (600,),
    build_threads: int | None = None,
) -> dict[str, Any]:
    """Build ``cfg`` on ``xb`` under ``work``, then find its memory limit; the result document.

    ``build_threads``: FAISS OpenMP threads for the build only (default: ``threads``, which the searches use)."""
    from benchmarks.runner import environment
    from benchmarks.versions import library_versions  # noqa: F401 - environment() records the versions
    from retrieval.disk import tree_bytes

    n = len(xb)
    root = work / slug(cfg.label)
    eng = make_engine(cfg, root, xb.shape[1], "cosine", threads)
    doc: dict[str, Any] = {
        "mode": "memlimit",
        "run": environment(threads),
        "config": asdict(cfg),
        "dataset": dataset,
        "method": {
            "target_id_recall@10": TARGET,
            "slowdown": slowdown,
            "k": K,
            "n_single": n_single,
            "repeats": repeats,
        },
    }
    bthreads = build_threads or threads
    doc["method"]["build_threads"] = bthreads
    log(f"  {cfg.label}: build {n:,} × {xb.shape[1]} on {bthreads} thread(s)")
    t0 = time.perf_counter()
    try:
        _omp_threads(bthreads)
        eng.build([f"p{i}" for i in range(n)], xb, None)
        doc["build"] = eng.timings
    finally:
        _omp_threads(threads)
        eng.close()
    doc["build_wall_s"] = time.perf_counter() - t0
    doc["disk_bytes"] = sum(tree_bytes(root).values())
    log(f"    built in {doc['build']['total_s']:.1f} s, disk {doc['disk_bytes'] / n:,.0f} B/vector")
    qpath, tpath = work / "queries.npy", work / "truth.npy"
    np.save(qpath, np.ascontiguousarray(xq, dtype=np.float32), allow_pickle=False)
    np.save(tpath, truth[:, :K].astype(np.int64), allow_pickle=False)
    spec = {
        "settings": eng.settings().model_dump(mode="json"),
        "name": "bench",
        "index": eng.index_name(),
        "root": str(root),
        "queries": str(qpath),
        "truth": str(tpath),
        "k": K,
        "sweep": list(cfg.sweep),
        "threads": threads,
        "n_single": n_single,
        "repeats": repeats,
        "timeout_s": timeout_s,
    }
    doc["store"] = {"index": spec["index"], "settings": spec["settings"]}
    doc.update(limit_search(spec, n, work, log, slowdown=slowdown, at_budgets=at_budgets))
    doc["load_average_end"] = list(os.getloadavg())
    return doc


def _omp_threads(n: int) -> None:
    import faiss

    faiss.omp_set_num_threads(n)


def run(
    n: int,
    out: Path,
    configs: Sequence[MemConfig],
    nq: int = 1000,
    seed: int = 0,
    threads: int = 1,
    n_single: int = 300,
    repeats: int = 3,
    work_dir: Path | None = None,
    vectors: Path | None = None,
    keep_vectors: bool = False,
    log: Callable[[str], None] = print,
    code: str | None = None,
    at_budgets: Sequence[int] = (600,),
    nlist: int | None = None,
    build_threads: int | None = None,
) -> list[dict[str, Any]]:
    """Every configuration at ``n`` vectors, one after another; a JSON file for each in ``out``, then the report.

    ``vectors``: a .npy path; sizes from 2M up are generated there in chunks (memory-mapped) instead of in RAM.
    ``code``: what code ran (a commit), recorded in each result."""
    from benchmarks.memcg import unavailable as no_cgroup
    from benchmarks.memlimit_report import write_report
    from benchmarks.scale import load_vectors

    why = no_cgroup()
    if why:
        raise SystemExit(f"memlimit needs a writable cgroup v1 memory controller: {why}")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    xb, xq, truth = load_vectors(n, DIM, nq, seed, vectors, log)
    dataset = {"name": f"clustered-{n}x{DIM}", "n": n, "dim": DIM, "nq": nq, "seed": seed, "metric": "cosine"}
    dataset["prepare_s"] = time.perf_counter() - t0
    docs = []
    try:
        for cfg in configs:
            why = unavailable(cfg)
            if why:
                log(f"  {cfg.label}: skipped ({why})")
                continue
            try:
                with tempfile.TemporaryDirectory(prefix="simlookup-memlimit-", dir=work_dir) as tmp:
                    doc = run_config(
                        with_nlist(cfg, nlist),
                        xb,
                        xq,
                        truth,
                        Path(tmp),
                        dataset,
                        threads,
                        n_single,
                        repeats,
                        log,
                        at_budgets=at_budgets,
                        build_threads=build_threads,
                    )
            except Exception as e:  # one configuration's failure (a build error) does not end the run
                log(f"  {cfg.label}: FAILED {type(e).__name__}: {e}")
                continue
            doc["code"] = code
            path = out / f"{slug(cfg.label)}-n{n}.json"
            path.write_text(json.dumps(doc, indent=2, default=float) + "\n")
            write_report(out)
            docs.append(doc)
            log(f"  {cfg.label}: limit {doc.get('limit_bytes_per_vector')} B/vector → {path}")
    finally:
        if vectors is not None and not keep_vectors and isinstance(xb, np.memmap):
            del xb
            for f in (vectors, vectors.with_suffix(".queries.npy"), vectors.with_suffix(".truth.npy")):
                f.unlink(missing_ok=True)
    return docs


def with_nlist(cfg: MemConfig, nlist: int | None) -> MemConfig:
    """``cfg`` with a fixed nlist when it is an IVF kind and ``nlist`` is given (its label says so)."""
    if nlist is None or not cfg.kind.startswith("ivf"):
        return cfg
    return replace(cfg, label=f"{cfg.label}[nlist={nlist}]", params={**cfg.params, "nlist": nlist})


def pick(configs: Sequence[MemConfig], names: str | None) -> list[MemConfig]:
    """The configurations named (label, or the label's part before '('); all when ``names`` is None."""
    if not names:
        return list(configs)
    wanted = [w.strip() for w in re.split(r",(?![^()]*\))", names) if w.strip()]
    known = {c.label for c in configs} | {c.label.split("(")[0] for c in configs}
    bad = [w for w in wanted if w not in known]
    if bad:
        raise SystemExit(f"unknown configuration {bad}; known: {', '.join(c.label for c in configs)}")
    return [c for c in configs if c.label in wanted or c.label.split("(")[0] in wanted]


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.memlimit", description=__doc__.splitlines()[0])
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--n", type=float, default=100_000, help="base vectors (seeded clustered, 384-d)")
    p.add_argument("--out", default="benchmarks/results/memlimit")
    p.add_argument("--only", help="configurations by label or name before '(' (comma-separated)")
    p.add_argument(
        "--configs",
        help="a JSON file: a list of configurations (label, engine, kind, params, sweep, "
        "settings); default: the built-in list",
    )
    p.add_argument("--nq", type=int, default=1000)
    p.add_argument("--n-single", type=int, default=300)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="threads of each search (and of the build by default)")
    p.add_argument("--build-threads", type=int, help="FAISS threads for the build only (default: --threads)")
    p.add_argument("--work-dir")
    p.add_argument("--vectors", help="a .npy path for memory-mapped base vectors (generated there from 2M)")
    p.add_argument("--keep-vectors", action="store_true", help="keep the --vectors file afterwards")
    p.add_argument(
        "--commit",
        help="the commit this code is (recorded; run from a `git archive` of it so that "
        "other work in the checkout cannot change the code under test)",
    )
    p.add_argument(
        "--at",
        default="600",
        help="budgets (bytes per vector, comma-separated) probed for the absolute p50 and recall there, beside the "
        "bisection (default 600: the issue's 1M target; empty: none)",
    )
    p.add_argument("--nlist", type=int, help="a fixed nlist for the IVF kinds (default: the store's 4·√N rule)")
    p.add_argument("--report", action="store_true", help="only re-render report.md and the plot in --out")
    a = p.parse_args(argv)
    if a.child:  # runs started before benchmarks.memchild existed launch their children this way
        from benchmarks.memchild import child

        print(json.dumps(child(json.loads(Path(a.child).read_text())), default=float))
        return
    out = Path(a.out)
    if a.report:
        from benchmarks.memlimit_report import write_report

        write_report(out)
        return
    cfgs = [MemConfig.of(d) for d in json.loads(Path(a.configs).read_text())] if a.configs else default_configs()

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    run(
        int(a.n),
        out,
        pick(cfgs, a.only),
        a.nq,
        threads=a.threads,
        n_single=a.n_single,
        repeats=a.repeats,
        work_dir=Path(a.work_dir) if a.work_dir else None,
        vectors=Path(a.vectors) if a.vectors else None,
        keep_vectors=a.keep_vectors,
        log=log,
        code=a.commit,
        at_budgets=[int(x) for x in a.at.split(",") if x.strip()],
        nlist=a.nlist,
        build_threads=a.build_threads,
    )


if __name__ == "__main__":
    main()
