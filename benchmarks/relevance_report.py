"""``simlookup eval --out DIR``: results.json, report.md and eval.png (nDCG@k and p50 per index)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

LOSS_TARGET = 0.005  # nDCG@10 an index may lose against flat at its tuned defaults (issue 26)
TIME_TARGET_S = 120.0  # an eval of a 15k-document set after ingest


def summary_lines(result: dict[str, Any]) -> list[str]:
    """The text table of ``simlookup eval`` (also the heart of report.md)."""
    k = result["k"]
    head = (f"| index | mode | nDCG@{k} | loss vs flat | MRR@{k} | recall@100 | MAP@100 | p50 ms |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |")
    lines = list(head)
    for x in result["results"]:
        loss = x.get(f"ndcg@{k}_loss")
        lines.append(
            f"| {x['index']} | {x['mode']} | {x[f'ndcg@{k}']:.4f} | {'' if loss is None else f'{loss:+.4f}'} | "
            f"{x[f'mrr@{k}']:.4f} | {x['recall@100']:.4f} | {x['map@100']:.4f} | {x['p50_ms']:.2f} |"
        )
    return lines


def verdicts(result: dict[str, Any]) -> list[str]:
    """Whether the issue's targets are met on this run, with the numbers."""
    k = result["k"]
    out = []
    losses = [(x["index"], x.get(f"ndcg@{k}_loss")) for x in result["results"] if x["index"] != "flat"]
    if k == 10 and losses:
        worst = max(losses, key=lambda t: t[1] or 0.0)
        ok = all((v or 0.0) <= LOSS_TARGET for _, v in losses)
        out.append(f"[{'ok' if ok else 'NO'}] every index loses at most {LOSS_TARGET} nDCG@10 against flat "
                   f"(worst: {worst[0]} {worst[1]:+.4f})")
    secs = result["eval_seconds"]
    out.append(f"[{'ok' if secs <= TIME_TARGET_S else 'NO'}] eval after ingest took {secs:.1f} s "
               f"({result['documents']:,} documents, {result['queries']:,} queries, {len(result['results'])} runs; "
               f"target {TIME_TARGET_S:.0f} s for a 15k-document set)")
    return out


def write_report(result: dict[str, Any], out: Path) -> list[Path]:
    """Write results.json, report.md and eval.png into ``out`` (each through a temporary file renamed into place)."""
    out.mkdir(parents=True, exist_ok=True)
    env = result["environment"]
    prov = result.get("provenance") or {}
    md = [
        f"# Retrieval quality: {result['dataset']}",
        "",
        f"{result['documents']:,} documents, {result['queries']:,} judged queries, {result['judgments']:,} "
        f"relevance judgments; collection `{result['collection']['name']}` ({result['collection']['fingerprint']}).",
        "",
        *summary_lines(result),
        "",
        *verdicts(result),
        "",
        f"Queries encoded in batches: {result['encode_ms_per_query']:.2f} ms per query (not in p50). p50 is the "
        "search alone, through the Retriever, one query at a time, at k + 1 (nDCG@k, MRR@k and p50; recall@100 "
        "and MAP@100 from a second search at 101; flat's one exact scan serves both); a hit on the query's own id "
        "is dropped, as BEIR does.",
        "",
        "Indexes at their defaults: " + _tuning(result["collection"]["tuning"]),
        "",
        "Metrics: ir_measures (trec_eval definitions via pytrec_eval, as BEIR): graded nDCG, RR, R, AP; averaged "
        "over every judged query.",
        "",
        f"Machine: {env['cpu']}, {env['cores']} cores, load average "
        f"{', '.join(f'{v:.2f}' for v in env['load_average'])} at the end of the run; {env['date']}. Versions: "
        + ", ".join(f"{p} {v}" for p, v in env["versions"].items()),
        "",
    ]
    if prov:
        md += ["## Provenance", "", *[f"- {key}: {v}" for key, v in prov.items() if key != "format"], ""]
    written = [
        _atomic(out / "results.json", json.dumps(result, indent=2, default=str) + "\n"),
        _atomic(out / "report.md", "\n".join(md)),
    ]
    written.append(_plot(result, out / "eval.png"))
    return written


def _tuning(tuning: dict[str, Any]) -> str:
    """The tuned operating point of each index in one line (none below the tuning size: built-in defaults)."""
    ops = tuning.get("text", {})
    if not ops:
        return "built-in (no index was tuned: tuning runs at build for 5,000 points or more)."
    return "; ".join(
        f"{index} {op['params']} (recall@{op['k']} {op['recall']:.3f} when tuned, target {op['target']})"
        for index, op in sorted(ops.items())
    ) + "."


def _atomic(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def _plot(result: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = result["k"]
    rows = result["results"]
    labels = [f"{x['index']}" + ("" if x["mode"] == "dense" else f" ({x['mode']})") for x in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.bar(labels, [x[f"ndcg@{k}"] for x in rows], color="#4C72B0")
    lo = min(x[f"ndcg@{k}"] for x in rows)
    a.set_ylim(max(0.0, lo - 0.05), min(1.0, max(x[f"ndcg@{k}"] for x in rows) + 0.02))
    a.set_title(f"nDCG@{k} ({result['dataset']}, {result['queries']} queries)")
    b.bar(labels, [x["p50_ms"] for x in rows], color="#DD8452")
    b.set_title("p50 search ms, one query at a time (log scale)")
    b.set_yscale("log")
    for ax in (a, b):
        ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path
