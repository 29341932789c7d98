"""Markdown report and PNG plots, drawn from a run's results (or from a results.json alone)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.metrics import pareto_front

PLOTS = ("recall_vs_qps.png", "latency_percentiles.png", "memory_vs_recall.png")


def write_all(results: dict[str, Any], out: Path) -> None:
    """results.json, report.md and the plots under out."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=float) + "\n")
    plot(results, out)
    (out / "report.md").write_text(markdown(results))


def _mb(b: float) -> str:
    return "—" if b is None or b < 0 else f"{b / 1e6:.2f}"


def markdown(results: dict[str, Any]) -> str:
    run, ds = results["run"], results["dataset"]
    lines = [
        f"# simlookup benchmark — {ds['name']}",
        "",
        f"{ds['n']} base vectors × {ds['dim']} dims, {ds['nq']} held-out queries, metric {ds['metric']}; "
        f"ground truth: exact FAISS Flat ({ds['ground_truth_s']:.1f} s). {'Quick run. ' if ds.get('quick') else ''}"
        f"Run {run['date']} on {run['cpu']} ({run['cores']} cores), {run['threads']} search thread(s) for FAISS "
        f"and torch (Qdrant Edge uses its own search pool), load average {run['load_average'][0]:.2f}; "
        f"whole run {run.get('wall_s', 0):.0f} s. Qdrant numbers are **Qdrant Edge (in-process)** unless labelled "
        "server.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in run["versions"].items()),
        "",
        "## Seed claims and targets",
        "",
        "| claim / target | measured | holds |",
        "| --- | --- | --- |",
    ]
    for c in results.get("claims", []):
        lines.append(f"| {c['claim']} | {c['measured']} | {'yes' if c['holds'] else '**no**'} |")
    lines += [
        "",
        "## Build",
        "",
        "| configuration | configure s | upload s | train / index s | index on disk MB | index in RAM MB "
        "| RSS growth MB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in results["configs"]:
        b = c["build"]
        lines.append(
            f"| {c['label']} | {b['configure_s']:.2f} | {b['upload_s']:.2f} | {b['index_s']:.2f} | "
            f"{_mb(c['disk_bytes'])} | {_mb(c['ram_bytes'])} | {_mb(c['rss_growth_bytes'])} |"
        )
    lines += [
        "",
        "Upload goes through simlookup (SQLite sidecar for FAISS: ids, payloads, float vectors); 'train / index' is "
        "IVF/PQ training + add for FAISS IVF kinds and `optimize()` (the HNSW build) for Qdrant Edge.",
        "",
        "## Search",
        "",
        "Single query: one query per call, k=10, p50/p95/p99 in ms; batch: all queries in one call. 'raw' is the "
        "same search through the bare engine call (faiss `index.search`, Edge `query`); overhead is layer/raw.",
        "",
        "| configuration | params | R@1 | R@10 | R@100 | p50 | p95 | p99 | raw p50 | +µs/query | batch QPS | raw QPS | "
        "batch ratio |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in results["configs"]:
        for r in c["results"]:
            s, b = r["single"], r["batch"]
            params = ", ".join(f"{k}={v}" for k, v in r["params"].items()) or "—"
            lines.append(
                f"| {c['label']} | {params} | {r.get('recall@1', 0):.3f} | {r.get('recall@10', 0):.3f} | "
                f"{r.get('recall@100', float('nan')):.3f} | {s['p50_ms']:.3f} | {s['p95_ms']:.3f} | "
                f"{s['p99_ms']:.3f} | "
                f"{s['raw']['p50_ms']:.3f} | {s['overhead_us_mean']:.0f} | {b['qps']:.0f} | {b['raw_qps']:.0f} | "
                f"{b['overhead_ratio']:.2f}{'*' if r['params'].get('rerank') else ''} |"
            )
    lines.append("")
    lines.append("\\* raw call is the PQ search without the exact re-rank, so the ratio includes the re-rank itself.")
    e2e = results.get("e2e")
    if e2e:
        lines += [
            "",
            "## End to end: text → encode → search → payload",
            "",
            f"Model {e2e['model']}, {e2e['queries']} queries, one at a time, no query cache.",
            "",
            "| store | p50 ms | p95 ms | of which encode p50 ms |",
            "| --- | ---: | ---: | ---: |",
        ]
        for k, v in e2e["stores"].items():
            lines.append(f"| {k} | {v['p50_ms']:.2f} | {v['p95_ms']:.2f} | {v['encode_p50_ms']:.2f} |")
        lines += [
            "",
            "Encoder alone, one query:",
            "",
            "| setting | p50 ms | p95 ms | p99 ms |",
            "| --- | ---: | ---: | ---: |",
        ]
        for k, v in e2e["encoder"].items():
            lines.append(f"| {k} | {v['p50_ms']:.2f} | {v['p95_ms']:.2f} | {v['p99_ms']:.2f} |")
        sp = e2e.get("stsb_spearman")
        if sp:
            lines += [
                "",
                f"Quality of the int8 tier: STS-B test Spearman {sp['int8']:.4f} against {sp['fp32']:.4f} "
                "for fp32 (published 0.8203). Documents and queries must use the same tier: the int8 "
                "fingerprint differs, so an fp32 index refuses int8 queries until re-ingested.",
            ]
    ing = results.get("ingest")
    if ing:
        lines += [
            "",
            "## Ingestion",
            "",
            f"{ing['rows']} STS-B rows into {', '.join(ing['indexes'])}, cold embedding cache: "
            f"{ing['ingest_wall_s']:.1f} s wall against {ing['encoder_only_s']:.1f} s for the encoder alone "
            f"({ing['ratio']:.2f}×). Stages (s): "
            + ", ".join(f"{k} {v:.2f}" for k, v in ing["stages_s"].items())
            + ".",
        ]
    lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in PLOTS] + [""]
    return "\n".join(lines)


def _series(results: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    """One curve per configuration, IVF-PQ split into PQ alone and PQ + exact re-rank."""
    out: list[tuple[str, list[dict[str, Any]]]] = []
    for c in results["configs"]:
        plain = [r for r in c["results"] if not (r["params"].get("rerank") or 0) > 1]
        rerank = [r for r in c["results"] if (r["params"].get("rerank") or 0) > 1]
        if plain:
            out.append((c["label"], plain))
        if rerank:
            out.append((c["label"] + " + re-rank", rerank))
    return out


def plot(results: dict[str, Any], out: Path) -> list[Path]:
    """recall vs QPS (Pareto front marked), latency percentiles, memory vs recall."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    ds = results["dataset"]["name"]
    paths = []
    fig, ax = plt.subplots(figsize=(9, 6))
    allpts: list[tuple[float, float]] = []
    for label, rows in _series(results):
        pts = sorted((r.get("recall@10", 0.0), r["single"]["qps"]) for r in rows)
        allpts += pts
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    front = pareto_front(allpts)
    ax.plot([allpts[i][0] for i in front], [allpts[i][1] for i in front], "k--", lw=1, label="Pareto front")
    ax.set_xlabel("recall@10")
    ax.set_ylabel("queries per second (single query)")
    ax.set_yscale("log")
    ax.set_title(f"Recall vs QPS — {ds}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    paths.append(out / PLOTS[0])
    fig.tight_layout()
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(10, 5))
    labels, p50, p95, p99 = [], [], [], []
    for c in results["configs"]:
        r = max(c["results"], key=lambda x: (x.get("recall@10", 0), -x["single"]["p50_ms"]))
        labels.append(f"{c['label']}\n{r['params'] or ''}")
        p50.append(r["single"]["p50_ms"])
        p95.append(r["single"]["p95_ms"])
        p99.append(r["single"]["p99_ms"])
    xs = range(len(labels))
    w = 0.27
    ax.bar([x - w for x in xs], p50, w, label="p50")
    ax.bar(list(xs), p95, w, label="p95")
    ax.bar([x + w for x in xs], p99, w, label="p99")
    ax.set_xticks(list(xs), labels, rotation=30, ha="right", fontsize=6)
    ax.set_ylabel("ms per query")
    ax.set_title(f"Single-query latency at each configuration's best recall — {ds}")
    ax.legend()
    paths.append(out / PLOTS[1])
    fig.tight_layout()
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 5))
    for c in results["configs"]:
        if c["ram_bytes"] is None or c["ram_bytes"] < 0:
            continue
        best = max(r.get("recall@10", 0) for r in c["results"])
        ax.scatter(c["ram_bytes"] / 1e6, best, s=40)
        ax.annotate(c["label"], (c["ram_bytes"] / 1e6, best), fontsize=6)
    ax.set_xscale("log")
    ax.set_xlabel("index RAM (MB, log)")
    ax.set_ylabel("best recall@10")
    ax.set_title(f"Memory vs recall — {ds}")
    ax.grid(True, alpha=0.3)
    paths.append(out / PLOTS[2])
    fig.tight_layout()
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths
