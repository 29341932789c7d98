"""``simlookup bench``'s arguments and its work: run the benchmark, the scale curve, or re-draw a report.

``simlookup.cli`` owns the command (settings, output); this module only adds arguments and returns
(JSON document, text) so that imports go one way: simlookup → benchmarks → retrieval.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.names import DATASETS
from retrieval.errors import InvalidInputError
from retrieval.settings import Settings

if TYPE_CHECKING:
    from benchmarks.engines import BuildConfig


def _log(msg: str) -> None:
    print(msg, file=sys.stderr)


def parse_sizes(text: str, flag: str = "--scale-curve") -> list[int]:
    """'10000,100000,1e6' → [10000, 100000, 1000000]; every size a positive integer."""
    try:
        sizes = [int(float(s)) for s in text.split(",") if s.strip()]
    except ValueError:
        raise InvalidInputError(f"{flag} takes comma-separated vector counts, got {text!r}") from None
    if not sizes or any(s < 1000 for s in sizes):
        raise InvalidInputError(f"{flag} sizes must each be at least 1000, got {text!r}")
    return sizes


def run_bench(settings: Settings, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """Do what the bench arguments ask; returns (JSON document, text for the terminal)."""
    if args.plot:
        from benchmarks.report import markdown, plot, targets_markdown

        src = Path(args.plot)
        results = json.loads(src.read_text())
        out = Path(args.out) if args.out else src.parent
        out.mkdir(parents=True, exist_ok=True)
        if results.get("mode") == "targets":  # a targets run has a report and no plots
            paths = []
            (out / "report.md").write_text(targets_markdown(results))
        elif results.get("mode") == "scale-curve":
            from benchmarks.scale import plot_scale, scale_markdown

            paths = plot_scale(results, out)
            (out / "report.md").write_text(scale_markdown(results))
        else:
            paths = plot(results, out)
            (out / "report.md").write_text(markdown(results))
        return {"plots": [str(p) for p in paths], "report": str(out / "report.md")}, "\n".join(str(p) for p in paths)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    work = Path(args.work_dir) if args.work_dir else None
    if work is not None:
        work.mkdir(parents=True, exist_ok=True)  # a --work-dir that does not exist yet is created, not a traceback
    if args.targets:
        from benchmarks.store_targets import run_targets

        out = Path(args.out) if args.out else Path("simlookup-bench") / f"{stamp}-targets"
        res = run_targets(
            out,
            parse_sizes(args.targets, "--targets"),
            nq=args.queries or 300,
            threads=args.threads,
            log=_log,
            work_dir=work,
        )
        verdicts = "\n".join(
            f"[{'--' if t['met'] is None else 'ok' if t['met'] else 'NO'}] ({t['id']}) {t['label']}: "
            f"{t['measured']:.2f} {t['unit']}"
            for t in res["targets"]
        )
        return {"out": str(out), "results": str(out / "results.json"), "targets": res["targets"]}, (
            f"report: {out / 'report.md'}\n{verdicts}"
        )
    if args.scale_curve:
        from benchmarks.scale import run_scale_curve

        out = Path(args.out) if args.out else Path("simlookup-bench") / f"{stamp}-scale"
        picked = scale_filter(args.scale_configs) if args.scale_configs else None
        res = run_scale_curve(
            settings,
            parse_sizes(args.scale_curve),
            out,
            nq=args.queries or 1000,
            threads=args.threads,
            log=_log,
            work_dir=work,
            config_filter=picked,
        )
        return {"out": str(out), "results": str(out / "results.json"), "wall_s": res.get("wall_s")}, (
            f"report: {out / 'report.md'}"
        )
    from benchmarks.runner import run

    out = Path(args.out) if args.out else Path("simlookup-bench") / f"{stamp}-{args.dataset}"
    results = run(
        settings,
        dataset=args.dataset,
        quick=args.quick,
        scale=args.scale,
        nq=args.queries,
        threads=args.threads,
        out=out,
        e2e=not args.no_e2e,
        ingest_rows=None if args.quick else args.ingest_rows,
        log=_log,
        cache_dir=Path(args.cache_dir) if args.cache_dir else None,
        work_dir=work,
    )
    return (
        {"out": str(out), "results": str(out / "results.json"), "claims": results["claims"]},
        f"report: {out / 'report.md'}\n{claims_text(results['claims'], args.quick)}",
    )


def claims_text(claims: list[dict[str, Any]], quick: bool) -> str:
    """The [ok]/[NO] claim lines under a line that says what they are and that a NO does not fail the run."""
    lines = [f"[{'ok' if c['holds'] else 'NO'}] {c['claim']}: {c['measured']}" for c in claims]
    why = (
        "this --quick run's small sizes make some unreachable (an index beats Flat only on enough points); "
        "run without --quick for the real verdicts"
        if quick
        else "see report.md for the numbers behind each"
    )
    legend = (
        "claims and targets (IVF-PQ's speed against Flat at a recall@10 condition, the layer's cost over the raw "
        "engine call), judged on this run's numbers: "
        f"[ok] holds here, [NO] does not; a NO is a finding, not a failure (the exit status stays 0); {why}"
    )
    return "\n".join([legend, *lines])


def scale_filter(spec: str) -> Callable[[BuildConfig], bool]:
    """--scale-configs: a predicate over the scale curve's configurations; unknown names are an error."""
    from benchmarks.scale import scale_configs

    wanted = [w.strip() for w in re.split(r",(?![^()]*\))", spec) if w.strip()]  # labels hold commas in (...)
    labels = [c.label for c in scale_configs()]
    names = {*labels, *(lb.split("(")[0] for lb in labels)}
    unknown = [w for w in wanted if w not in names]
    if unknown or not wanted:
        raise InvalidInputError(f"--scale-configs: unknown {unknown or spec!r}; known: {', '.join(labels)}")
    return lambda c: c.label in wanted or c.label.split("(")[0] in wanted


def add_bench_arguments(sp: argparse.ArgumentParser) -> None:
    """The flags of ``simlookup bench``."""
    sp.add_argument("--dataset", choices=DATASETS, default="stsb")
    sp.add_argument("--scale", type=int, help="base vectors (synthetic: size of the set; others: a prefix)")
    sp.add_argument("--queries", type=int, help="held-out queries")
    sp.add_argument("--quick", action="store_true", help="a small run (< 2 minutes)")
    sp.add_argument("--threads", type=int, default=1, help="search and build threads for every engine (recorded)")
    sp.add_argument("--out", help="output folder (default: ./simlookup-bench/<time>-<dataset>)")
    sp.add_argument("--plot", metavar="RESULTS_JSON", help="only re-draw plots and report from a results.json")
    sp.add_argument("--no-e2e", action="store_true", help="skip the end-to-end text query benchmark")
    sp.add_argument("--ingest-rows", type=int, default=3000, help="rows for the ingest-vs-encoder timing (full run)")
    sp.add_argument(
        "--scale-curve",
        metavar="N1,N2,...",
        help="scale curve on seeded clustered 384-d vectors at these sizes (e.g. 10000,100000,1000000); "
        "results.json, report.md and plots are rewritten after each configuration",
    )
    sp.add_argument(
        "--scale-configs",
        metavar="NAME1,NAME2",
        help="with --scale-curve: only these configurations, by label or by the name before '(' "
        "(e.g. faiss-ivf,faiss-ivfpq or 'qdrant-edge-hnsw(m=16,efc=100)'); default: all",
    )
    sp.add_argument(
        "--targets",
        nargs="?",
        const="100000,1000000",
        metavar="N1,N2",
        help="the FAISS collection store's targets (issue 13) on seeded clustered 384-d vectors at these sizes "
        "(default 100000,1000000): results.json and report.md, rewritten after each target",
    )
    sp.add_argument(
        "--cache-dir",
        help="keep the STS-B embedding cache here between runs (default: a temporary folder; never the data dir)",
    )
    sp.add_argument("--work-dir", help="folder for the temporary indexes (default: the system temp folder)")
