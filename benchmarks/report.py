"""Markdown report and PNG plots, drawn from a run's results (or from a results.json alone)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.claims import FLAT_RATIO, topup_counts
from benchmarks.loadavg import BUSY, busy
from benchmarks.metrics import pareto_front
from benchmarks.tables import md_table
from benchmarks.tuned import tuned_legend, tuned_table

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


def label_of(c: dict[str, Any]) -> str:
    """A configuration's label, marked § when it was measured above ``loadavg.BUSY``."""
    return c["label"] + ("§" if busy(c.get("load_average")) else "")


def load_note(results: dict[str, Any]) -> str | None:
    """The footnote for configurations measured while the 1-minute load average exceeded 1.0 (marked §)."""
    parts = [
        f"{c['label']} {la['start']:.2f} / {la['max']:.2f} / {la['end']:.2f}"
        for c in results["configs"]
        if busy(la := c.get("load_average"))
    ]
    if not parts:
        return None
    return (
        f"§ measured while the machine's 1-minute load average exceeded {BUSY:g} (other work beside it: its "
        "times read slower than on a quiet machine; compare ratios). Load average start / highest / end through "
        "the build and the sweep: " + "; ".join(parts) + "."
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
        "ties within 1e-3 of the 10th true distance count as found (ann-benchmarks); **id R@10** is the plain id "
        "overlap of the same lists (— in runs before it was recorded). Disk = every file the "
        "configuration needs to answer queries (its own folder; a point store shared by kinds is counted in full "
        "for each configuration). RAM = resident memory of a fresh process that opens the store and answers "
        "every query setting with payloads, minus that process's resident memory after imports.",
        "",
        "## Seed claims and targets",
        "",
        *md_table(
            ("claim / target", "accuracy condition", "measured", "holds"),
            (
                (c["claim"], c.get("accuracy_condition", "—"), c["measured"], "yes" if c["holds"] else "**no**")
                for c in results.get("claims", [])
            ),
            "llll",
        ),
    ]
    lines += ["", "## Build, disk and memory", "", *_build_table(results)]
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
        "(the JSON also has the mean). 'no payload' is the layer's payload-free search (`with_payload=False`: ids "
        "and scores, no payload copies), timed in turn with the other two; — where the run did not time it.",
        "",
        *_search_table(results),
    ]
    lines.append("")
    lines.append("\\* raw call is the PQ search without the exact re-rank, so the ratio includes the re-rank itself.")
    note = topup_note(results)
    if note:
        lines.append(note)
    note = load_note(results)
    if note:
        lines.append(note)
    n_base = ds.get("n_base", ds["n"])
    tuned = [(c["label"], n_base, c["tuned"]) for c in results["configs"] if c.get("tuned")]
    if tuned:
        lines += ["", "## Tuned defaults", "", tuned_legend(), "", *tuned_table(tuned)]
    e2e = results.get("e2e")
    if e2e:
        lines += [
            "",
            "## End to end: text → encode → search → payload",
            "",
            f"Model {e2e['model']}, {e2e['queries']} queries, one at a time, no query cache.",
            "",
            *md_table(
                ("store", "p50 ms", "p95 ms", "of which encode p50 ms"),
                (
                    (k, f"{v['p50_ms']:.2f}", f"{v['p95_ms']:.2f}", f"{v['encode_p50_ms']:.2f}")
                    for k, v in e2e["stores"].items()
                ),
                "lrrr",
            ),
            "",
            "Encoder alone, one query:",
            "",
            *md_table(
                ("setting", "p50 ms", "p95 ms", "p99 ms"),
                (
                    (k, f"{v['p50_ms']:.2f}", f"{v['p95_ms']:.2f}", f"{v['p99_ms']:.2f}")
                    for k, v in e2e["encoder"].items()
                ),
                "lrrr",
            ),
        ]
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


def _build_table(results: dict[str, Any]) -> list[str]:
    n = max(results["dataset"].get("n_base", results["dataset"]["n"]), 1)
    rows = []
    for c in results["configs"]:
        b = c["build"]
        mark = "†" if b.get("graph_built_during_upload") else ""
        ram = c.get("ram_bytes", -1)
        disk = c.get("disk_bytes", -1)
        rows.append(
            (
                label_of(c),
                f"{b['configure_s']:.2f}",
                f"{b['upload_s']:.2f}{mark}",
                f"{b['index_s']:.2f}",
                f"{b['total_s']:.2f}",
                _mb(disk),
                _per_vec(disk / n if disk >= 0 else None),
                _mb(ram),
                _per_vec(ram / n if ram >= 0 else None),
            )
        )
    header = (
        "configuration",
        "configure s",
        "upload s",
        "index s",
        "total s",
        "disk MB",
        "disk B/vector",
        "RAM MB",
        "RAM B/vector",
    )
    return md_table(header, rows, "l" + "r" * 8)


def _search_table(results: dict[str, Any]) -> list[str]:
    """One row per configuration and query setting; the payload-free columns read — in runs without them."""
    rows = []
    for c in results["configs"]:
        for r in c["results"]:
            s, b = r["single"], r["batch"]
            raw = s.get("raw") or {}
            bare = s.get("no_payload") or {}
            over = s.get("overhead_us_p50", s.get("overhead_us_mean"))
            at10, at100 = topup_counts(r)
            rows.append(
                (
                    label_of(c),
                    _params(r) or "—",
                    _f(r.get("recall@1")),
                    _f(r.get("recall@10")) + ("‡" if at10 else ""),
                    _f(r.get("id_recall@10")),
                    _f(s.get("recall@10")),
                    _f(r.get("recall@100")) + ("‡" if at100 else ""),
                    f"{s['p50_ms']:.3f}",
                    f"{s['p95_ms']:.3f}",
                    f"{s['p99_ms']:.3f}",
                    _f(raw.get("p50_ms")),
                    _f(over, ".0f"),
                    _f(bare.get("p50_ms")),
                    _f(s.get("no_payload_overhead_us_p50"), ".0f"),
                    f"{b['qps']:.0f}",
                    _f(b.get("raw_qps"), ".0f"),
                    _f(b.get("overhead_ratio"), ".2f") + ("*" if b.get("overhead_note") else ""),
                )
            )
    header = (
        "configuration",
        "params",
        "R@1",
        "R@10",
        "id R@10",
        "single R@10",
        "R@100",
        "p50",
        "p95",
        "p99",
        "raw p50",
        "+µs/query",
        "no payload p50",
        "+µs no payload",
        "batch QPS",
        "raw QPS",
        "batch ratio",
    )
    return md_table(header, rows, "ll" + "r" * 15)


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


# ---- the FAISS collection store's targets (benchmarks.store_targets) ----
_ROW_KEYS = {"id", "title", "label", "formula", "inputs", "measured", "unit", "threshold", "op", "conditions", "met"}
_ROW_KEYS |= {"judged", "not_judged"}


def _fmt(v: float, unit: str) -> str:
    return f"{v:,.2f} {unit}" if unit == "×" else f"{v:,.0f} {unit}"


def _target_cells(t: dict[str, Any]) -> tuple[str, ...]:
    """One row of the targets table; a row reported but not judged reads so instead of a threshold and verdict."""
    scale = t.get("scale_to_ms")
    meas = f"{t['measured'] * scale:,.2f} ms" if scale else _fmt(t["measured"], t["unit"])
    cond = "; ".join(f"{k}: {'yes' if v else '**no**'}" for k, v in t["conditions"].items())
    if t.get("threshold") is None:
        thr, met = "reported, not judged", "—"
    else:
        thr = f"≤ {t['threshold'] * scale:,.0f} ms" if scale else f"≤ {_fmt(t['threshold'], t['unit'])}"
        met = "met" if t["met"] else "**not met**"
    return (f"({t['id']}) {t['title']}", f"{t['label']}{' (' + cond + ')' if cond else ''}", meas, thr, met)


def _recall(x: Any) -> str:
    """A recall, or several by name ({"rerank": 0.87, "off": 0.32} → 'rerank 0.870, off 0.320'); — when absent."""
    if isinstance(x, dict):
        return ", ".join(f"{k} {_f(v)}" for k, v in x.items())
    return _f(x)


def _us(x: Any) -> str:
    return "—" if x is None else f"{x:,.0f}"


def _overhead_table(rows: list[dict[str, Any]]) -> list[str]:
    """(d) per FAISS kind: the layer with payloads, without (with_payload=False) and the raw call, p50 µs."""
    cells = []
    for t in rows:
        bare = t.get("no_payload") or {}
        same = t.get("same_ids_fraction")
        cells.append(
            (
                t.get("kind", "—"),
                f"{t['size']:,}" if "size" in t else "—",
                _us(t.get("layer_p50_us")),
                _us(bare.get("p50_us")),
                _us(t.get("raw_p50_us")),
                _us(t["measured"]),
                _us(bare.get("minus_raw_us")),
                "—" if same is None else f"{same:.2f}",
            )
        )
    header = (
        "kind",
        "N",
        "layer p50 µs",
        "no payload p50 µs",
        "raw p50 µs",
        "layer − raw µs",
        "no payload − raw µs",
        "same ids",
    )
    return md_table(header, cells, "l" + "r" * 7)


def targets_markdown(results: dict[str, Any]) -> str:
    """report.md of a targets run: every row with its measured value, the target and the verdict, then how.

    Rows are shown as the run judged them (an older results.json keeps its verdicts); fields a run did not
    record read —."""
    run, m = results["run"], results["method"]
    rows = results["targets"]
    overhead = [t for t in rows if t["id"] == "d"]
    why = next((t["not_judged"] for t in overhead if t.get("not_judged")), None)
    lines = [
        "# FAISS collection store: targets (issue 13)",
        "",
        f"Run {run['date']} on {run['cpu']} ({run['cores']} cores); search threads {m['search_threads']}, build "
        f"threads {m['build_threads']}; load average at start {run['load_average'][0]:.2f}, at the last write "
        f"{run.get('load_average_now', run['load_average'])[0]:.2f} (other benchmarks shared the machine: timings "
        f"are noisy, compare ratios). Whole run {results.get('wall_s', 0):.0f} s"
        + ("" if results.get("complete") else " — **incomplete: the run was cut short or is still going**")
        + ".",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in run["versions"].items()),
        "",
        f"Data: {m['data']}, {m['dim']}-d, sizes {', '.join(f'{s:,}' for s in m['sizes'])}; {m['queries']} queries. "
        f"Payloads: {m['payloads']}. k={m['k']}; query parameters {m['query_params']}.",
        "",
        f"How: {m['timing']}. Each row's verdict is computed from its own `inputs` in results.json "
        "(`formula`: median of per-repeat p50s, median over repeats of the paired p50 difference, ratio).",
        "",
        *md_table(("target", "measured on", "measured", "target", "met"), map(_target_cells, rows), "llrrl"),
    ]
    recall_rows = [t for t in rows if "recall_at_10" in t]
    if recall_rows:
        lines += [
            "",
            "## Recall of the searches measured",
            "",
            "recall@10 credits a neighbour within 1e-3 of the 10th true distance (ann-benchmarks); id_recall@10 is "
            "the plain id overlap of the same result lists (— in runs before it was recorded).",
            "",
            *md_table(
                ("measured on", "target", "recall@10 (ties)", "id_recall@10"),
                (
                    (
                        t["label"],
                        t["id"],
                        _recall(t["recall_at_10"]),
                        _recall(t.get("id_recall_at_10")),
                    )
                    for t in recall_rows
                ),
                "llrr",
            ),
        ]
    if overhead:
        lines += [
            "",
            "## The layer's cost over the raw faiss call (d)",
            "",
            "Single queries, p50 over the queries, median over repeats; the three calls timed in turn, in blocks. "
            "'no payload' is `search(..., with_payload=False)` (ids and scores, no payload copies); "
            "'same ids' is the share of queries where the layer and the raw call return the same ids.",
            "",
            *_overhead_table(overhead),
        ]
        if why:
            lines += ["", f"Why (d) is reported, not judged: {why}."]
    lines += ["", "## Details", ""]
    for t in rows:
        extra = {k: v for k, v in t.items() if k not in _ROW_KEYS}
        lines.append(f"- ({t['id']}) {t['label']}: " + json.dumps(extra, default=float))
    lines += [
        "",
        "Notes: (a) and (b) are measured at every size on the kinds built there (the largest size builds flat "
        f"and ivf only — ivf with nlist={m.get('big_nlist', 1024)} where 4·√N is larger; HNSW and IVF-PQ builds "
        'at 1M take too long on this 2-core machine); (c)–(f) at the first size. (b) reads "flat" as the '
        f"largest size's p50 at most {FLAT_RATIO}× the smallest's. (c) is the whole cost of turning re-rank ×10 "
        "on (faiss fetching k×10 candidates + the exact rescoring); the details split off the faiss part. (d)'s "
        "raw call searches the store's own faiss index object (flat: faiss.knn over the store's own rows), so "
        "both read the same memory; `second_copy` in the details times the same raw call on a second copy of the "
        "index (read_index of its file; flat: the benchmark's own array), which differs from the store's copy by "
        "where it was allocated, not by anything the layer does. (d) ivfpq is compared with re-rank off (the raw "
        "call has none). (e) counts every file of the collection folder (bytes in use on disk): the shared point "
        "store (points.sqlite + vectors.f32) once and each kind's folder.",
        "",
        "Measurements by size: "
        + json.dumps(
            {k: v for k, v in results["measurements"].items() if k.startswith("build@") or k == "wall_s_by_size"},
            default=float,
        ),
        "",
    ]
    return "\n".join(lines)
