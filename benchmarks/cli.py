"""``simlookup bench``: run the benchmark, or re-draw plots from a results.json."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.data import DATASETS


def cmd_bench(args: argparse.Namespace) -> int:
    from simlookup.cli import _emit, _settings

    if args.plot:
        from benchmarks.report import markdown, plot

        src = Path(args.plot)
        results = json.loads(src.read_text())
        out = Path(args.out) if args.out else src.parent
        paths = plot(results, out)
        (out / "report.md").write_text(markdown(results))
        _emit(
            args, {"plots": [str(p) for p in paths], "report": str(out / "report.md")}, "\n".join(str(p) for p in paths)
        )
        return 0
    from benchmarks.runner import run

    s = _settings(args)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = Path(args.out) if args.out else s.data_dir / "bench" / f"{stamp}-{args.dataset}"
    results = run(
        s,
        dataset=args.dataset,
        quick=args.quick,
        scale=args.scale,
        nq=args.queries,
        threads=args.threads,
        out=out,
        e2e=not args.no_e2e,
        ingest_rows=None if args.quick else args.ingest_rows,
        log=lambda m: print(m, file=sys.stderr),
    )
    claims = "\n".join(f"[{'ok' if c['holds'] else 'NO'}] {c['claim']}: {c['measured']}" for c in results["claims"])
    _emit(
        args,
        {"out": str(out), "results": str(out / "results.json"), "claims": results["claims"]},
        f"report: {out / 'report.md'}\n{claims}",
    )
    return 0


def add_bench_parser(sub: Any, add: Any) -> None:
    sp = add("bench", cmd_bench, "FAISS Flat/IVF/IVF-PQ/HNSW against Qdrant HNSW on the same vectors")
    sp.add_argument("--dataset", choices=DATASETS, default="stsb")
    sp.add_argument("--scale", type=int, help="base vectors (synthetic: size of the set; others: a prefix)")
    sp.add_argument("--queries", type=int, help="held-out queries")
    sp.add_argument("--quick", action="store_true", help="a small run (< 2 minutes)")
    sp.add_argument("--threads", type=int, default=1, help="FAISS and torch threads (recorded)")
    sp.add_argument("--out", help="output folder (default: DATA_DIR/bench/<time>-<dataset>)")
    sp.add_argument("--plot", metavar="RESULTS_JSON", help="only re-draw plots and report from a results.json")
    sp.add_argument("--no-e2e", action="store_true", help="skip the end-to-end text query benchmark")
    sp.add_argument("--ingest-rows", type=int, default=3000, help="rows for the ingest-vs-encoder timing (full run)")
