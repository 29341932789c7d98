"""The keyword-leg benchmark (issue 27 item 4) on a small corpus: the same documents through simlookup's keyword leg
(FAISS and Qdrant Edge), bm25s on the same tokens and, when installed, LangChain's BM25Retriever; nDCG@10 of the
keyword leg equals bm25s', and the report states the targets. No timing is asserted."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("bm25s")

from benchmarks.keyword_bench import SPEED_SET, Corpus, report, run_corpus, speed_corpus, verdicts  # noqa: E402
from retrieval.keyword.tokenize import tokenize  # noqa: E402
from retrieval.settings import QdrantSettings, Settings  # noqa: E402


def small_corpus() -> Corpus:
    from ingest.corpora.stsb import read_pairs

    sents = list(dict.fromkeys(s for p in read_pairs("dev") for s in (p.s1, p.s2)))[:300]
    ids = [f"d{i}" for i in range(len(sents))]
    picked = range(0, 300, 10)
    queries = {f"q{i}": " ".join(tokenize(sents[i])[:4]) for i in picked}
    return Corpus("small", ids, sents, queries, {f"q{i}": {f"d{i}": 1} for i in picked})


def test_the_keyword_leg_scores_as_bm25s_on_the_same_tokens(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path / "data", qdrant=QdrantSettings(mode="edge"))
    run = run_corpus(s, small_corpus(), lambda _: None)
    rows = {x["engine"]: x for x in run["rows"]}
    assert {"simlookup flat", "simlookup qdrant", "bm25s"} <= set(rows)
    assert run["documents"] == 300 and run["queries"] == 30
    for e in ("simlookup flat", "simlookup qdrant"):
        # the same scores: with ties in id order as simlookup puts them, the same top 10 and the same nDCG (bm25s'
        # own order of ties differs: many of these four-word queries tie whole runs of sentences)
        assert rows[e]["ndcg@10"] == pytest.approx(rows["bm25s ties by id"]["ndcg@10"], abs=1e-9)
        assert rows[e]["top10_overlap_bm25s"] == pytest.approx(1.0)
        assert rows[e]["p50_ms"] > 0
    assert 0.3 < rows["bm25s"]["ndcg@10"] <= 1.0  # four words of a sentence find it most of the time
    if "langchain" in rows:
        assert "BM25Retriever" in rows["langchain"]["label"] and 0.0 < rows["langchain"]["ndcg@10"] <= 1.0
    else:
        assert "pip install --no-deps 'rank-bm25==0.2.2'" in run["notes"][0]
    lines = verdicts([run])
    assert len(lines) == 4 and all(line.startswith("[ok] small: simlookup") for line in lines[2:])
    md = report({"runs": [run], "verdicts": lines, "environment": {
        "cpu": "x", "cores": 1, "load_average": [0.0, 0.0, 0.0], "date": "d", "versions": {}}})
    assert "| bm25s" in md and "## Targets" in md


def test_the_speed_corpus_is_15k_unique_sentences_and_1k_of_them_as_queries() -> None:
    c = speed_corpus()
    assert c.name == SPEED_SET and len(c.ids) == 15_000 == len(set(c.texts)) and len(c.queries) == 1_000
    assert all(c.texts[int(q[1:])] == text for q, text in c.queries.items())
    assert speed_corpus().queries == c.queries  # seeded
