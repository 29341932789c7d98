"""The seed project's claims and this project's targets, judged on one run's numbers.

Every claim carries an explicit accuracy condition: "minimal accuracy loss" means recall@10 within
MAX_LOSS of Flat's in the same run, and no speed-up counts at recall@10 below MIN_RECALL. Recall is the
timed k=10 figure (see runner.measure).

The FAISS collection store's targets (``benchmarks.store_targets``) are judged here too, each row from the
numbers it carries (``formula`` over ``inputs``), so that a verdict can be recomputed from the JSON alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MAX_LOSS = 0.05  # "minimal accuracy loss": recall@10 within this of Flat's
MIN_RECALL = 0.9  # no speed-up is credited below this recall@10
TARGET_RECALL = 0.95

# ---- the store targets: threshold per judged target, title per target ----
FLAT_RATIO = 1.5  # (b): "flat" = the largest size's p50 at most this many times the smallest size's
TARGET_THRESHOLDS = {"a": 5000.0, "b": FLAT_RATIO, "c": 100.0, "e": 5.0, "f": 1.0}
TARGET_TITLES = {
    "a": "1%-selective filtered search returns k hits at p50 ≤ 5 ms",
    "b": f"filtered search at a fixed number of matches is flat in N (p50 ratio ≤ {FLAT_RATIO})",
    "c": "IVF-PQ exact re-rank ×10 adds ≤ 100 µs per query",
    "d": "the layer's cost per single query over the raw faiss call, with and without payloads (reported)",
    "e": "the four FAISS kinds of a collection take ≤ 5× the raw float32 vectors on disk",
    "f": "bulk upsert + build into FAISS flat no slower than the baseline",
}
NOT_JUDGED = {
    "d": "the former target (the layer adds ≤ 50 µs p50 per single query over the raw faiss call) is no longer "
    "judged: on this 2-core shared machine two runs showed the difference bound by noise (the same index kinds "
    "read 15 to 91 µs from run to run, flat 39 to 160 µs, following the load, not the code). The numbers are "
    "reported, with the payload-free search (with_payload=False: ids and scores, no payload copies) beside "
    "the full one, so the share of the layer's cost that is payload copying is visible (issue 22)",
}


def compute(formula: str, inputs: dict[str, Any]) -> float:
    """The measured value of a target row from its inputs."""
    if formula == "median":  # of per-repeat p50s
        return float(np.median(inputs["values"]))
    if formula == "median_diff":  # median over repeats of (a p50 − b p50), the two timed alike
        return float(np.median(np.subtract(inputs["a"], inputs["b"])))
    if formula == "ratio_of_medians":
        return float(np.median(inputs["num"]) / np.median(inputs["den"]))
    if formula == "ratio_of_mins":  # best of several runs each
        return float(min(inputs["num"]) / min(inputs["den"]))
    if formula == "ratio":
        return float(inputs["num"] / inputs["den"])
    raise ValueError(f"unknown formula {formula!r}")


def verdict(measured: float, threshold: float, conditions: dict[str, bool] | None = None) -> bool:
    """Met: the measured value at most the threshold and every side condition true."""
    return bool(measured <= threshold and all((conditions or {}).values()))


def target_row(
    tid: str,
    label: str,
    formula: str,
    inputs: dict[str, Any],
    unit: str,
    conditions: dict[str, bool] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One target row: measured from inputs; judged against its threshold (met / not met), or, for a target in
    NOT_JUDGED, reported only (threshold, op and met null, ``judged`` false, ``not_judged`` the reason)."""
    conds = conditions or {}
    measured = compute(formula, inputs)
    judged = tid not in NOT_JUDGED
    threshold = TARGET_THRESHOLDS[tid] if judged else None
    return {
        "id": tid,
        "title": TARGET_TITLES[tid],
        "label": label,
        "formula": formula,
        "inputs": inputs,
        "measured": measured,
        "unit": unit,
        "threshold": threshold,
        "op": "<=" if judged else None,
        "conditions": conds,
        "met": verdict(measured, threshold, conds) if threshold is not None else None,
        "judged": judged,
        **({} if judged else {"not_judged": NOT_JUDGED[tid]}),
        **extra,
    }


def _find(results: dict[str, Any], label_prefix: str) -> dict[str, Any] | None:
    return next((c for c in results["configs"] if c["label"].startswith(label_prefix)), None)


def _fastest(rows: list[dict[str, Any]], min_recall: float) -> dict[str, Any] | None:
    ok = [r for r in rows if r.get("recall@10", 0.0) >= min_recall]
    return min(ok, key=lambda r: r["single"]["p50_ms"]) if ok else None


def _row(label: str, r: dict[str, Any]) -> str:
    return f"{label} {r['params']} p50 {r['single']['p50_ms']:.3f} ms, recall@10 {r['recall@10']:.3f}"


def _claim(claim: str, condition: str, measured: str, holds: bool) -> dict[str, Any]:
    return {"claim": claim, "accuracy_condition": condition, "measured": measured, "holds": bool(holds)}


def _seed_pq_claims(results: dict[str, Any], flat: dict[str, Any], seed_pq: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    f = flat["results"][0]
    ds = results["dataset"]
    need_loss = max(f["recall@10"] - MAX_LOSS, MIN_RECALL)
    for rerank in (0, 10):
        rows = [r for r in seed_pq["results"] if (r["params"].get("rerank") or 0) == rerank]
        if not rows:
            continue
        tag = "with exact re-rank ×10" if rerank else "PQ alone"
        best_recall = max(rows, key=lambda r: r["recall@10"])
        r = _fastest(rows, need_loss)
        cond = f"recall@10 ≥ {need_loss:.3f} (Flat {f['recall@10']:.3f} − {MAX_LOSS}, and ≥ {MIN_RECALL})"
        if r is None:
            measured = (
                f"no setting meets the accuracy condition; best recall@10 {best_recall['recall@10']:.3f} at "
                + str(best_recall["params"])
            )
            out.append(
                _claim(
                    f"IVF-PQ ~1.5× faster than Flat with minimal accuracy loss ({tag}, {ds['n']} vectors)",
                    cond,
                    measured,
                    False,
                )
            )
        else:
            speed = f["single"]["p50_ms"] / r["single"]["p50_ms"]
            out.append(
                _claim(
                    f"IVF-PQ ~1.5× faster than Flat with minimal accuracy loss ({tag}, {ds['n']} vectors)",
                    cond,
                    f"{_row('IVF-PQ', r)} vs Flat p50 {f['single']['p50_ms']:.3f} ms = {speed:.2f}× faster",
                    speed >= 1.4,
                )
            )
        r2 = _fastest(rows, MIN_RECALL)
        cond2 = f"recall@10 ≥ {MIN_RECALL}"
        if r2 is None:
            out.append(
                _claim(
                    f"IVF-PQ halves query time ({tag})",
                    cond2,
                    f"no setting reaches recall@10 {MIN_RECALL}; best {best_recall['recall@10']:.3f}",
                    False,
                )
            )
        else:
            speed = f["single"]["p50_ms"] / r2["single"]["p50_ms"]
            out.append(
                _claim(f"IVF-PQ halves query time ({tag})", cond2, f"{speed:.2f}× ({_row('IVF-PQ', r2)})", speed >= 2.0)
            )
    return out


def topup_counts(r: dict[str, Any]) -> tuple[int, int]:
    """(k=10, k=100) queries of one result row that the layer answered by exact top-up (its index returned
    fewer than k hits), where the raw call did other work."""
    at10 = max(r["batch"].get("exact_topup_queries") or 0, r["single"].get("exact_topup_queries") or 0)
    return at10, (r.get("batch_k100") or {}).get("exact_topup_queries") or 0


def _p50_over(r: dict[str, Any]) -> float:
    return float(r["single"].get("overhead_us_p50", r["single"]["overhead_us_mean"]))


def _overhead_claims(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = [
        (c["label"], r)
        for c in results["configs"]
        for r in c["results"]
        if "overhead_ratio" in r["batch"]
        and not r["batch"].get("overhead_note")
        and not topup_counts(r)[0]
    ]
    if not rows:
        return []
    worst_b = max(rows, key=lambda x: x[1]["batch"]["overhead_ratio"])
    worst_s = max(rows, key=lambda x: _p50_over(x[1]))
    cond = (
        "same index, same k and query parameters; rows where the raw call does the same work (no re-rank, no "
        "exact top-up ‡)"
    )
    bare_s = worst_s[1]["single"].get("no_payload_overhead_us_p50")
    bare_b = worst_b[1]["batch"].get("no_payload_overhead_ratio")
    return [
        _claim(
            "target: layer adds ≤ 5% over the raw engine call in batch",
            cond,
            f"worst ratio {worst_b[1]['batch']['overhead_ratio']:.3f} ({worst_b[0]} {worst_b[1]['params']}"
            + (f"; without payloads {bare_b:.3f}" if bare_b is not None else "")
            + ")",
            verdict(worst_b[1]["batch"]["overhead_ratio"], 1.05),
        ),
        _claim(
            "target: layer adds ≤ 50 µs per single query (median layer − median raw)",
            cond,
            f"worst {_p50_over(worst_s[1]):.1f} µs ({worst_s[0]} {worst_s[1]['params']}; mean difference "
            f"{worst_s[1]['single']['overhead_us_mean']:.1f} µs"
            + (f"; without payloads {bare_s:.1f} µs" if bare_s is not None else "")
            + ")",
            verdict(_p50_over(worst_s[1]), 50),
        ),
    ]


def evaluate_claims(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each claim or target: its accuracy condition, what was measured, and whether it holds on this data."""
    out: list[dict[str, Any]] = []
    flat = _find(results, "faiss-flat")
    seed_pq = _find(results, "faiss-ivfpq-seed")
    ds = results["dataset"]
    if flat and seed_pq:
        out += _seed_pq_claims(results, flat, seed_pq)
    per_cfg = [(c["label"], _fastest(c["results"], MIN_RECALL)) for c in results["configs"]]
    reached = [(label, r) for label, r in per_cfg if r is not None]
    if reached:
        slow = max(reached, key=lambda x: x[1]["single"]["p50_ms"])
        missing = [label for label, r in per_cfg if r is None]
        out.append(
            _claim(
                "sub-10 ms similarity search (search alone, p50, each configuration at its fastest setting "
                f"with recall@10 ≥ {MIN_RECALL})",
                f"recall@10 ≥ {MIN_RECALL}",
                f"slowest {_row(slow[0], slow[1])}"
                + (f"; never reach {MIN_RECALL}: {', '.join(missing)}" if missing else ""),
                slow[1]["single"]["p50_ms"] < 10,
            )
        )
    e2e = results.get("e2e")
    if e2e:
        best = min(e2e["stores"].items(), key=lambda kv: kv[1]["p50_ms"])
        out.append(
            _claim(
                "target: end-to-end text query p50 ≤ 10 ms (encode + search + payload)",
                "each store at its default query parameters; documents and queries encoded by the same tier",
                f"best {best[0]} p50 {best[1]['p50_ms']:.2f} ms (encoder alone p50 {best[1]['encode_p50_ms']:.2f} ms)",
                best[1]["p50_ms"] <= 10,
            )
        )
    out += _overhead_claims(results)
    fast = [
        (c["label"], r)
        for c in results["configs"]
        for r in c["results"]
        if r.get("recall@10", 0) >= TARGET_RECALL and r["single"]["p50_ms"] < 1.0
    ]
    fast.sort(key=lambda x: x[1]["single"]["p50_ms"])
    out.append(
        _claim(
            f"target: some configuration answers one query in p50 < 1 ms ({ds['name']})",
            f"recall@10 ≥ {TARGET_RECALL}",
            f"{len(fast)} settings qualify, fastest {_row(fast[0][0], fast[0][1])}" if fast else "none",
            bool(fast),
        )
    )
    if flat and flat.get("ram_bytes", -1) > 0:
        best = None
        for c in results["configs"]:
            if c["kind"] != "ivfpq" or c.get("ram_bytes", -1) <= 0:
                continue
            for r in c["results"]:
                if (r["params"].get("rerank") or 0) > 1 and r.get("recall@10", 0) >= TARGET_RECALL:
                    ratio = flat["ram_bytes"] / c["ram_bytes"]
                    if best is None or ratio > best[0]:
                        best = (ratio, c, r)
        out.append(
            _claim(
                "target: IVF-PQ with re-rank uses ≥ 20× less RAM than Flat",
                f"recall@10 ≥ {TARGET_RECALL}; RAM = fresh-process RSS over its baseline, measured alike for both",
                (
                    f"{best[0]:.1f}× ({best[1]['label']} {best[2]['params']}, recall@10 {best[2]['recall@10']:.3f}; "
                    f"{best[1]['ram_bytes'] / 1e6:.1f} MB vs Flat {flat['ram_bytes'] / 1e6:.1f} MB; disk "
                    f"{best[1]['disk_bytes'] / 1e6:.1f} MB vs {flat['disk_bytes'] / 1e6:.1f} MB)"
                )
                if best
                else f"no IVF-PQ setting with re-rank reached recall@10 ≥ {TARGET_RECALL}",
                bool(best and best[0] >= 20),
            )
        )
    ing = results.get("ingest")
    if ing:
        out.append(
            _claim(
                "target: ingestion wall time ≤ 1.1× the encoder alone",
                "every index built to its default query recall",
                f"{ing['ingest_wall_s']:.1f} s vs {ing['encoder_only_s']:.1f} s = {ing['ratio']:.2f}× "
                f"({ing['rows']} rows, 4 FAISS kinds + Qdrant Edge, incl. training and HNSW build)",
                ing["ratio"] <= 1.1,
            )
        )
    return out
