"""Markdown report and PNG plots, drawn from a run's results (or from a results.json alone)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.claims import topup_counts
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


def _f(x: Any, fmt: str = ".3f") -> str:
    return "—" if x is None else format(x, fmt)


def _per_vec(b: Any) -> str:
    return "—" if b is None or b < 0 else f"{b:,.0f}"


def _params(r: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in r["params"].items())


def topup_note(results: dict[str, Any]) -> str | None:
    """The footnote for rows whose index returned fewer than k hits and were answered exactly (marked ‡)."""
    nq = results["dataset"]["nq"]
    parts = []
    for c in results["configs"]:
        for r in c["results"]:
            at10, at100 = topup_counts(r)
            if at10 or at100:
                parts.append(f"{c['label']} {_params(r)}: {at10} of {nq} queries at k=10, {at100} at k=100")
    if not parts:
        return None
    return (
        "‡ the index returned fewer than k hits for some queries (IVF scans only nprobe lists), and the layer "
        "answered those queries by exact search, so their recall and time are the exact search's: "
        + "; ".join(parts)
        + ". The raw call does no such top-up."
    )


def markdown(results: dict[str, Any]) -> str:
    run, ds = results["run"], results["dataset"]
    threads = run.get("search_threads", {})
    lines = [
        f"# simlookup benchmark — {ds['name']}",
        "",
        f"{ds.get('n_base', ds['n'])} base vectors × {ds['dim']} dims, {ds['nq']} held-out queries, metric "
        f"{ds['metric']}; ground truth: exact FAISS Flat ({ds['ground_truth_s']:.1f} s). "
        f"{'Quick run. ' if ds.get('quick') else ''}"
        f"Run {run['date']} on {run['cpu']} ({run['cores']} cores), {run['threads']} thread(s) for every engine "
        f"(FAISS {threads.get('faiss', run['threads'])}, Qdrant Edge search pool "
        f"{threads.get('qdrant-edge', 'default')}), load average {run['load_average'][0]:.2f}; "
        f"whole run {run.get('wall_s', 0):.0f} s. Qdrant numbers are **Qdrant Edge (in-process)** unless labelled "
        "server.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in run["versions"].items()),
        "",
        *([f"**Note:** {results['note']}", ""] if results.get("note") else []),
        "How it is measured: k=10; warm-up queries first; batch = all queries in one call, best of "
        f"{results.get('method', {}).get('batch_repeats', 5)}; the layer call and the raw engine call alternate "
        "(which goes first alternates); **recall@1 and recall@10 come from the result lists of the timed k=10 "
        "batch call** (single R@10 from the timed one-query calls), recall@100 from its own timed k=100 series; "
        "ties within 1e-3 of the 10th true distance count as found (ann-benchmarks). Disk = every file the "
        "configuration needs to answer queries (its own folder; a point store shared by kinds is counted in full "
        "for each configuration). RAM = resident memory of a fresh process that opens the store and answers "
        "every query setting with payloads, minus that process's resident memory after imports.",
        "",
        "## Seed claims and targets",
        "",
        "| claim / target | accuracy condition | measured | holds |",
        "| --- | --- | --- | --- |",
    ]
    for c in results.get("claims", []):
        lines.append(
            f"| {c['claim']} | {c.get('accuracy_condition', '—')} | {c['measured']} | "
            f"{'yes' if c['holds'] else '**no**'} |"
        )
    n = max(ds.get("n_base", ds["n"]), 1)
    lines += [
        "",
        "## Build, disk and memory",
        "",
        "| configuration | configure s | upload s | index s | total s | disk MB | disk B/vector | RAM MB "
        "| RAM B/vector |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in results["configs"]:
        b = c["build"]
        mark = "†" if b.get("graph_built_during_upload") else ""
        ram = c.get("ram_bytes", -1)
        disk = c.get("disk_bytes", -1)
        lines.append(
            f"| {c['label']} | {b['configure_s']:.2f} | {b['upload_s']:.2f}{mark} | {b['index_s']:.2f} | "
            f"{b['total_s']:.2f} | {_mb(disk)} | {_per_vec(disk / n if disk >= 0 else None)} | {_mb(ram)} | "
            f"{_per_vec(ram / n if ram >= 0 else None)} |"
        )
    lines += [
        "",
        "Upload goes through simlookup's public upsert; index is `build()` (IVF/PQ training + add for FAISS IVF "
        "kinds, `optimize()` — the HNSW build — for Qdrant Edge). † the FAISS store inserts each point into the "
        "HNSW graph as it is upserted, so that graph build is inside upload: compare HNSW builds on the total.",
        "",
        "## Search",
        "",
        "Single query: one query per call, k=10, p50/p95/p99 in ms; batch: all queries in one call. 'raw' is the "
        "same search through the bare engine call on the same index (faiss `index.search` on the store's "
        "index.faiss, Edge `query` on a copy of the store's shard); +µs is the median layer − median raw per query "
        "(the JSON also has the mean).",
        "",
        "| configuration | params | R@1 | R@10 | single R@10 | R@100 | p50 | p95 | p99 | raw p50 | +µs/query "
        "| batch QPS | raw QPS | batch ratio |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in results["configs"]:
        for r in c["results"]:
            s, b = r["single"], r["batch"]
            params = _params(r) or "—"
            raw = s.get("raw") or {}
            over = s.get("overhead_us_p50", s.get("overhead_us_mean"))
            at10, at100 = topup_counts(r)
            topped, topped100 = ("‡" if at10 else ""), ("‡" if at100 else "")
            lines.append(
                f"| {c['label']} | {params} | {_f(r.get('recall@1'))} | {_f(r.get('recall@10'))}{topped} | "
                f"{_f(s.get('recall@10'))} | {_f(r.get('recall@100'))}{topped100} | {s['p50_ms']:.3f} | "
                f"{s['p95_ms']:.3f} | {s['p99_ms']:.3f} | {_f(raw.get('p50_ms'))} | {_f(over, '.0f')} | "
                f"{b['qps']:.0f} | {_f(b.get('raw_qps'), '.0f')} | "
                f"{_f(b.get('overhead_ratio'), '.2f')}{'*' if b.get('overhead_note') else ''} |"
            )
    lines.append("")
    lines.append("\\* raw call is the PQ search without the exact re-rank, so the ratio includes the re-rank itself.")
    note = topup_note(results)
    if note:
        lines.append(note)
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
        if c.get("ram_bytes") is None or c["ram_bytes"] < 0:
            continue
        best = max(r.get("recall@10", 0) for r in c["results"])
        ax.scatter(c["ram_bytes"] / 1e6, best, s=40)
        ax.annotate(c["label"], (c["ram_bytes"] / 1e6, best), fontsize=6)
    ax.set_xscale("log")
    ax.set_xlabel("RAM of a fresh process answering queries (MB, log)")
    ax.set_ylabel("best recall@10")
    ax.set_title(f"Memory vs recall — {ds}")
    ax.grid(True, alpha=0.3)
    paths.append(out / PLOTS[2])
    fig.tight_layout()
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths
