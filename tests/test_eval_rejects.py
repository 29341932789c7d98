"""`eval` on a BEIR folder whose judged document the ingest rejects (an empty title and text): the output warns,
naming the rejects file and the queries that can never find it, and counts the documents searched (adversarial
pass, item 5)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.relevance import EvalRequest, run_eval
from ingest.beir import read_beir
from retrieval.settings import QdrantSettings, Settings
from simlookup.cli import main
from tests.test_eval import TOPICS, write_beir


def folder_with_an_empty_judged_doc(folder: Path) -> Path:
    docs, queries, qrels = [], [], []
    for t, sents in TOPICS.items():
        docs += [{"_id": f"{t}-{i}", "title": "", "text": s} for i, s in enumerate(sents)]
        queries.append({"_id": f"{t}-0", "text": sents[0]})
        qrels += [f"{t}-0\t{t}-1\t2", f"{t}-0\t{t}-2\t1"]
    docs.append({"_id": "music-empty", "title": "", "text": "  "})  # judged, and nothing to embed
    qrels.append("music-0\tmusic-empty\t1")
    return write_beir(folder, docs, queries, qrels)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory, minilm: Any) -> tuple[Settings, Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("evalrej")
    settings = Settings(data_dir=root / "data", qdrant=QdrantSettings(mode="edge"))
    folder = folder_with_an_empty_judged_doc(root / "topics")
    req = EvalRequest(str(folder), "topics", ("flat",), progress=False)
    return settings, folder, run_eval(settings, req, encoders={"text": minilm})


def test_the_result_counts_and_names_the_rejected_judged_document(
    evaluated: tuple[Settings, Path, dict[str, Any]],
) -> None:
    settings, folder, res = evaluated
    assert len(read_beir(folder).docs) == 41
    assert res["corpus_documents"] == 41 and res["documents"] == 40 and res["rejected_documents"] == 1
    assert res["rejected_judged"] == ["music-empty"] and res["affected_queries"] == 1
    rejects = str(settings.data_dir / "rejects" / "topics.jsonl")
    assert res["rejects_file"] == rejects
    [warning] = res["warnings"]
    assert "1 judged document(s)" in warning and "'music-empty'" in warning and rejects in warning
    assert "1 judged query can never find them" in warning


def test_the_cli_warns_on_stderr_and_counts_the_documents_searched(
    evaluated: tuple[Settings, Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    settings, folder, _ = evaluated  # the collection exists: its rejects file still tells
    assert (
        main(
            [
                "--data-dir",
                str(settings.data_dir),
                "eval",
                str(folder),
                "--name",
                "topics",
                "--index",
                "flat",
                "--no-progress",
            ]
        )
        == 0
    )
    out = capsys.readouterr()
    assert "topics: 40 documents (1 rejected at ingest), 8 queries" in out.out
    assert "warning: 1 judged document(s) of topics were rejected at ingest" in out.err
    assert (
        main(
            ["--data-dir", str(settings.data_dir), "eval", str(folder), "--name", "topics", "--index", "flat", "--json"]
        )
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["documents"] == 40 and doc["rejected_judged"] == ["music-empty"] and len(doc["warnings"]) == 1
