"""benchmarks.correlated_filter on a small set: every engine measured unfiltered and under the correlated filter,
against flat's exact filtered answers, the FAISS kinds' filtered searches through their index."""

from __future__ import annotations

from benchmarks.correlated_filter import ENGINES, REPEATS, run


def test_every_engine_is_measured_against_exact_filtered_answers() -> None:
    doc = run(n=3000, limit=0, nq=12, cost=0)
    assert set(doc["engines"]) == set(ENGINES) and doc["exact_filter_limit"] == 0 and doc["exact_filter_cost"] == 0
    for kind, r in doc["engines"].items():
        for case in ("unfiltered", "correlated"):
            assert 0 < r[case]["id_recall@10"] <= r[case]["recall@10"] <= 1 and r[case]["p50_ms"] > 0, (kind, case)
        if kind != "qdrant":  # limit 0, cost 0: every filtered FAISS search went through the index (topped up or not)
            searches = (1 + REPEATS) * 12  # a warm-up pass and the timed repeats, unfiltered and filtered
            assert r["paths"].get("index", 0) == 2 * searches and r["paths"].get("exact", 0) == 0
