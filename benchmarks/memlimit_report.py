"""report.md and the RAM-at-recall plot of a memory-limit folder: every ``*.json`` result in it, one row each."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.tables import md_table

PLOT = "memlimit_ram_at_recall.png"
FLOAT32_BPV = 384 * 4  # the float32 vectors alone, per vector


def load_results(out: Path) -> list[dict[str, Any]]:
    """The memlimit result documents in ``out``, by size then configuration label."""
    docs = []
    for f in sorted(out.glob("*.json")):
        d = json.loads(f.read_text())
        if d.get("mode") == "memlimit":
            d["_file"] = f.name
            docs.append(d)
    return sorted(docs, key=lambda d: (d["dataset"]["n"], d["config"]["label"]))


def _f(x: Any, fmt: str = ".3f") -> str:
    return "—" if x is None else format(x, fmt)


def _setting(d: dict[str, Any]) -> str:
    c = d.get("chosen")
    if not c:
        return "—"
    return ", ".join(f"{k}={v}" for k, v in c["params"].items()) or "exact"


def _load(d: dict[str, Any]) -> str:
    loads = [p["load_average"][0] for p in d.get("probes", []) if p.get("load_average")]
    loads += [d["run"]["load_average"][0], *(d.get("load_average_end") or [])[:1]]
    return f"{min(loads):.1f}–{max(loads):.1f}"


def _at(a: dict[str, Any]) -> str:
    """One fixed-budget probe: 'at 600: 0.970, 1.234 ms' or its error."""
    head = f"at {a['budget_bytes_per_vector']:,}: "
    if a.get("error"):
        return head + str(a["error"])
    p50 = f"{a['p50_ms']:.3f} ms" + (" (aborted: slower)" if a.get("aborted") else "")
    return head + f"{a['id_recall@10']:.3f}, {p50}"


def _row(d: dict[str, Any]) -> tuple[Any, ...]:
    n = d["dataset"]["n"]
    best, fails = d.get("limit_bytes_per_vector"), d.get("fails_at_bytes_per_vector")
    why = next((p["why"] for p in d.get("probes", []) if not p["ok"] and p["budget_bytes_per_vector"] == fails), None)
    if d.get("error") and best is None:
        limit = f"**{d['error']}**"
    elif best is None:
        limit = f"none up to {fails:,}"
    else:
        limit = f"**{best:,}**"
    return (
        d["config"]["label"],
        f"{n:,}",
        f"{d['build']['total_s']:.1f}",
        f"{d['disk_bytes'] / n:,.0f}",
        _setting(d),
        _f((d.get("chosen") or {}).get("id_recall@10")),
        _f(d.get("unlimited_p50_ms")),
        _f(d.get("unlimited_peak_bytes_per_vector"), ",.0f"),
        limit,
        "—" if best is None else f"{best * n / 1e6:,.1f}",
        _f(d.get("p50_at_limit_ms")),
        "—" if fails is None else f"{fails:,}: {why}",
        "<br>".join(_at(a) for a in d.get("at_budgets", [])) or "—",
        f"{len(d.get('probes', []))}",
        _load(d),
    )


def report_markdown(docs: list[dict[str, Any]]) -> str:
    """The method, then one row per configuration and size."""
    if not docs:
        return "# simlookup memory limits\n\nNo results yet.\n"
    run = docs[0]["run"]
    m = docs[0]["method"]
    evict = {d["reference"]["evict"]["method"] for d in docs if d.get("reference")}
    header = (
        "configuration",
        "N",
        "build s",
        "disk B/vector",
        "query setting",
        "id_recall@10",
        "p50 ms unlimited",
        "peak B/vector unlimited",
        "smallest limit B/vector",
        "limit MB",
        "p50 ms at limit",
        "fails at B/vector: why",
        "fixed budgets: id_recall@10, p50 ms",
        "probes",
        "load avg",
    )
    lines = [
        "# simlookup memory limits — seeded clustered vectors, 384 dims",
        "",
        f"Runs from {min(d['run']['date'] for d in docs)} to {max(d['run']['date'] for d in docs)} on {run['cpu']} "
        f"({run['cores']} cores, shared with other work: the load average column is the range read at each "
        f"probe), {run['threads']} thread(s). Versions: " + ", ".join(f"{k} {v}" for k, v in run["versions"].items()),
        "",
        "Code under test: "
        + ", ".join(
            sorted({f"commit {d['code']}" if d.get("code") else "a working tree (no commit recorded)" for d in docs})
        )
        + " (a commit: run from a `git archive` of it, so other work in the checkout could not change the code).",
        "",
        "**Memory as a limit.** Each configuration's searches run in a child process inside its own cgroup v1 memory "
        "group (`memory.limit_in_bytes` and `memory.memsw.limit_in_bytes`, so swap cannot hide a shortfall; the "
        "kernel charges the process's anonymous memory and the page cache it faults in together). The limit is the "
        "child's own baseline (its cgroup usage after importing numpy, faiss, qdrant_edge and retrieval and loading "
        "the queries) plus a budget of **bytes per vector**; the store's files are evicted from the page cache "
        f"before it opens them ({'; '.join(sorted(evict)) or '—'}). A budget passes when the child keeps "
        f"**id_recall@10 ≥ {m['target_id_recall@10']}** (plain id overlap on {docs[0]['dataset']['nq']} held-out "
        f"queries, exact truth) and **p50 ≤ {m['slowdown']}× its unlimited p50**; an OOM kill, a timeout or a "
        "slower p50 fails (a p50 miss under 2.5× is retried once, and a slower p50 in a child "
        "whose usage never came within 2% of its limit counts as a pass, noted in its probe: no page was reclaimed, "
        "so the limit did not slow it; the machine is shared). The query setting is the "
        "cheapest in the configuration's sweep that reaches the recall unlimited; p50 is one query per call at "
        f"k={m['k']} after warm-up, the lowest median of {m.get('repeats', 3)} runs of {m['n_single']} queries. The "
        "budget is "
        "bisected (doubling up from 1.2× the unlimited peak until one passes) to within 4% or 8 bytes: 'smallest "
        "limit' passed, 'fails at' is the largest budget that failed. Peak = the unlimited child's highest cgroup "
        "usage over its baseline (page cache of the store included). 'Fixed budgets' are single probes at the issue's "
        "budgets (600 B/vector at 1M, 800 = 8 GB at 10M): the recall and the absolute p50 there, whatever the "
        "unlimited p50 (a probe stops early once over half its queries take twice max(10 × the unlimited p50, 25 ms): "
        "'aborted'). Disk = every file of the store. The float32 "
        f"vectors alone take {FLOAT32_BPV:,} B/vector.",
        "",
        *md_table(header, (_row(d) for d in docs), "lrrrlrrrrrrllrl"),
    ]
    skipped = sorted({s for d in docs for s in d.get("skipped", [])})
    if skipped:
        lines += ["", "Skipped (not in the checkout at the time): " + "; ".join(skipped)]
    lines += ["", f"![RAM at recall]({PLOT})", ""]
    return "\n".join(lines)


def plot_limits(docs: list[dict[str, Any]], out: Path) -> Path:
    """Left: each configuration's smallest passing limit (B/vector) against its p50 there. Right: every probe's
    p50 against its budget (filled: passed, x: failed), one line per configuration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 6))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, d in enumerate(docs):
        c = colours[i % len(colours)]
        n = d["dataset"]["n"]
        label = f"{d['config']['label']} (N={n:,})"
        best, p50 = d.get("limit_bytes_per_vector"), d.get("p50_at_limit_ms")
        if best is not None and p50:
            ax1.scatter([best], [p50], color=c, s=50)
            ax1.annotate(label, (best, p50), fontsize=7, xytext=(4, 4), textcoords="offset points")
        probes = sorted((p for p in d.get("probes", []) if p.get("p50_ms")), key=lambda p: p["budget_bytes_per_vector"])
        if probes:
            xs = [max(p["budget_bytes_per_vector"], 1) for p in probes]
            ax2.plot(xs, [p["p50_ms"] for p in probes], color=c, alpha=0.6, label=label)
            for x, p in zip(xs, probes, strict=True):
                ax2.scatter([x], [p["p50_ms"]], color=c, marker="o" if p["ok"] else "x", s=30)
    for ax in (ax1, ax2):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.axvline(FLOAT32_BPV, color="grey", ls="--", lw=0.8)
        ax.axvline(600, color="red", ls=":", lw=0.8)
        ax.grid(True, which="both", alpha=0.3)
        ax.set_xlabel("memory limit beyond imports, bytes per vector (grey: float32 vectors; red: 600)")
    ax1.set_ylabel("p50 ms at the smallest passing limit")
    ax1.set_title("RAM at recall@10 ≥ 0.95 (id overlap), p50 within 1.5× of unlimited")
    ax2.set_ylabel("p50 ms (o passed, x failed; a failed probe with no p50 is not drawn)")
    ax2.set_title("every probe")
    ax2.legend(fontsize=6)
    fig.tight_layout()
    path = out / PLOT
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(out: Path) -> None:
    """report.md and the plot over every result in ``out``."""
    docs = load_results(out)
    (out / "report.md").write_text(report_markdown(docs))
    if docs:
        plot_limits(docs, out)
