"""The command line: --json documents, exit codes, error messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simlookup.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, (json.loads(out.out) if out.out.strip().startswith("{") else {}), out.err


def test_info_json_has_model_and_no_secret(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SIMLOOKUP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SIMLOOKUP_QDRANT__API_KEY", "top-secret-123")
    monkeypatch.setenv("SIMLOOKUP_QDRANT__MODE", "server")
    monkeypatch.setenv("SIMLOOKUP_QDRANT__URL", "http://127.0.0.1:6333")
    code, doc, err = run(capsys, "info", "--json")
    assert code == 0
    assert doc["text_model"]["dim"] == 384
    assert doc["text_model"]["fingerprint"].startswith("all-MiniLM-L6-v2@")
    assert doc["settings"]["qdrant"]["mode"] == "server"
    assert "top-secret-123" not in json.dumps(doc) and "top-secret-123" not in err


def test_config_error_exit_code(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMLOOKUP_QDRANT__MODE", "cloud")
    code, _, err = run(capsys, "corpora")
    assert code == 2 and "SIMLOOKUP_QDRANT__MODE" in err


def test_corpora_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, doc, _ = run(capsys, "corpora", "--json")
    assert code == 0
    stsb = next(c for c in doc["corpora"] if c["name"] == "stsb")
    assert stsb["available"] is True


@pytest.mark.slow
def test_ingest_search_verify_json(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SIMLOOKUP_DATA_DIR", str(tmp_path))
    code, summ, _ = run(capsys, "ingest", "stsb", "--name", "cli", "--limit", "400", "--no-progress", "--json")
    assert code == 0 and summ["ingested"] == 400 and summ["indexes"] == ["flat", "ivf", "ivfpq", "hnsw", "qdrant"]
    assert set(summ["seconds"]) >= {"read", "encode", "write", "build", "total"}
    assert all(v > 0 for v in summ["sizes_bytes"].values())
    for index in ("flat", "ivfpq", "qdrant"):
        code, res, _ = run(
            capsys,
            "search",
            "A man is playing a flute.",
            "--name",
            "cli",
            "--index",
            index,
            "-k",
            "3",
            "--filter",
            "genre=main-captions",
            "--json",
        )
        assert code == 0
        assert set(res) >= {"query", "index", "took_ms", "hits"} and res["index"] == index
        assert len(res["hits"]) == 3 and all(h["payload"]["genre"] == "main-captions" for h in res["hits"])
        assert set(res["hits"][0]) == {"id", "score", "payload"}
    code, rep, _ = run(capsys, "verify", "--name", "cli", "--json")
    assert code == 0 and rep["ok"] is True
    code, _, err = run(capsys, "search", "x", "--name", "cli", "--index", "annoy")
    assert code == 2 and "unknown index" in err
    code, _, err = run(capsys, "search", "   ", "--name", "cli")
    assert code == 2 and "empty" in err
    code, _, err = run(capsys, "search", "x", "--name", "missing")
    assert code == 2 and "simlookup ingest" in err
