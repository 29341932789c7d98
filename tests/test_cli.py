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
    code, doc, err = run(capsys, "info", "--model", "--json")  # --model: load it for its dim and fingerprint
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


# ---- issue 11: bad input gets a clear error, never a traceback ----


@pytest.fixture
def syn_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from retrieval.settings import QdrantSettings, Settings
    from tests.test_ingest import synthetic_collection

    d = tmp_path / "data"
    synthetic_collection(Settings(data_dir=d, qdrant=QdrantSettings(mode="edge")), n=300)
    monkeypatch.setenv("SIMLOOKUP_DATA_DIR", str(d))
    return d


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("-k", "2147483648", "k=2147483648 is above the limit of 10000 hits (SIMLOOKUP_LIMITS__MAX_K)"),
        # one cap per parameter: the settings' (no hard cap of the store or the parser answers first)
        ("--ef", "1000000000", "ef=1000000000 is above the limit of 4096 (SIMLOOKUP_LIMITS__MAX_EF)"),
        ("--nprobe", "1000000000", "nprobe=1000000000 is above the limit of 65536 (SIMLOOKUP_LIMITS__MAX_NPROBE)"),
        ("--nprobe", str(2**70), f"nprobe={2**70} is above the limit of 65536 (SIMLOOKUP_LIMITS__MAX_NPROBE)"),
        ("--rerank-factor", "100000", "rerank factor=100000 is above the limit of 100 (SIMLOOKUP_LIMITS__MAX_RERANK)"),
        ("--ef", "5000", "ef=5000 is above the limit of 4096 (SIMLOOKUP_LIMITS__MAX_EF)"),
        ("--rerank-factor", "500", "rerank factor=500 is above the limit of 100"),
    ],
)
def test_search_caps_are_clear_errors(
    capsys: pytest.CaptureFixture[str], syn_dir: Path, flag: str, value: str, message: str
) -> None:
    code, _, err = run(capsys, "search", "anything", "--name", "syn", "--index", "hnsw", flag, value)
    assert code == 2 and message in err and "Traceback" not in err


def test_vector_file_must_hold_one_vector(capsys: pytest.CaptureFixture[str], syn_dir: Path, tmp_path: Path) -> None:
    import numpy as np

    from retrieval.settings import load_settings
    from retrieval.stores import open_store

    st = open_store(load_settings(), "syn", "flat", create=False, read_only=True)
    some = sorted(st.ids())[0]
    vec = st.fetch([some])[some][0]
    st.close()
    assert vec is not None
    np.save(tmp_path / "two.npy", np.stack([vec, vec]))  # was flattened into one vector of twice the dimension
    code, _, err = run(capsys, "search", "--name", "syn", "--vector", f"@{tmp_path / 'two.npy'}")
    assert code != 0 and "one vector expected" in err and "(2, " in err
    np.save(tmp_path / "one.npy", vec[None, :])  # a (1, d) array is one vector
    code, doc, _ = run(capsys, "search", "--name", "syn", "--vector", f"@{tmp_path / 'one.npy'}", "-k", "1", "--json")
    assert code == 0 and doc["hits"][0]["id"] == some


def test_corrupt_manifest_in_search_and_info(capsys: pytest.CaptureFixture[str], syn_dir: Path) -> None:
    import shutil

    shutil.copy(syn_dir / "collections" / "syn.json", syn_dir / "collections" / "good.json")
    doc = json.loads((syn_dir / "collections" / "good.json").read_text())
    (syn_dir / "collections" / "good.json").write_text(json.dumps({**doc, "name": "good"}))
    (syn_dir / "collections" / "syn.json").write_text("{broken")
    code, _, err = run(capsys, "search", "x", "--name", "syn")
    assert code == 2 and "syn.json is unreadable" in err and "simlookup ingest SOURCE --name syn" in err
    code, doc, _ = run(capsys, "info", "--json")
    assert code == 0
    by_name = {c["name"]: c for c in doc["collections"]}
    assert by_name["good"]["count"] == 300 and "unreadable" in by_name["syn"]["error"]
    code, rep, _ = run(capsys, "verify", "--name", "syn", "--json")
    assert code == 1 and "syn.json is unreadable" in rep["differences"][0]


def test_serve_port_out_of_range(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--name", "x", "--port", "70000"])
    assert exc.value.code == 2 and "70000 is out of range: use 0 to 65535" in capsys.readouterr().err


def test_empty_api_key_is_refused_at_start_up(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIMLOOKUP_API__KEY", "")
    code, _, err = run(capsys, "corpora")
    assert code == 2 and "SIMLOOKUP_API__KEY" in err and "empty" in err


def test_qdrant_url_password_is_redacted(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SIMLOOKUP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SIMLOOKUP_QDRANT__MODE", "server")
    monkeypatch.setenv("SIMLOOKUP_QDRANT__URL", "http://admin:hunter2@127.0.0.1:9")
    monkeypatch.setenv("SIMLOOKUP_QDRANT__RETRIES", "0")
    monkeypatch.setenv("SIMLOOKUP_QDRANT__TIMEOUT_S", "1")
    code, doc, err = run(capsys, "info", "--json")
    assert code == 0 and doc["settings"]["qdrant"]["url"] == "http://***@127.0.0.1:9"
    csv = tmp_path / "d.csv"
    csv.write_text("id,text\n" + "".join(f"r{i},Sentence {i}.\n" for i in range(5)))
    code, _, err = run(capsys, "ingest", str(csv), "--name", "d", "--index", "flat", "--no-progress")
    assert code == 2 and "127.0.0.1:9" in err and "hunter2" not in err


def test_counts_out_of_range_are_usage_errors(capsys: pytest.CaptureFixture[str], syn_dir: Path) -> None:
    from retrieval.errors import InvalidInputError
    from retrieval.settings import load_settings
    from retrieval.verify import verify

    for argv in (
        ["verify", "--name", "syn", "--sample", "-1"],
        ["ingest", "x.csv", "--name", "n", "--limit", "0"],
        ["search", "--name", "syn", "--vector", "[1]", "--ef", "0"],  # 0 silently meant the default before
        ["search", "--name", "syn", "--vector", "[1]", "--nprobe", "0"],
    ):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2 and "out of range" in capsys.readouterr().err
    with pytest.raises(InvalidInputError, match="sample must be a positive"):
        verify(load_settings(), "syn", sample=-1)
    code, rep, _ = run(capsys, "verify", "--name", "syn", "--sample", "5", "--json")
    assert code == 0 and rep["ok"] is True


def test_malformed_json_setting_exits_2_naming_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIMLOOKUP_QDRANT__PAYLOAD_INDEXES", "nope")
    code, _, err = run(capsys, "info")
    assert code == 2 and "SIMLOOKUP_QDRANT__PAYLOAD_INDEXES is not valid JSON" in err and "Traceback" not in err


def test_search_caps_follow_the_settings(
    capsys: pytest.CaptureFixture[str], syn_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A configured cap is the one that answers, above and below the defaults, and its message names it."""
    monkeypatch.setenv("SIMLOOKUP_LIMITS__MAX_EF", "200000")
    monkeypatch.setenv("SIMLOOKUP_LIMITS__MAX_NPROBE", "8")
    vec = json.dumps([1.0] + [0.0] * 15)  # the synthetic collection has no text model: search by vector
    argv = ["search", "--vector", vec, "--name", "syn", "--index", "hnsw"]
    code, doc, err = run(capsys, *argv, "--ef", "150000", "--json")
    assert code == 0 and len(doc["hits"]) == 10, err  # above the store's old hard cap (100000): allowed here
    code, _, err = run(capsys, *argv, "--nprobe", "9")
    assert code == 2 and "nprobe=9 is above the limit of 8 (SIMLOOKUP_LIMITS__MAX_NPROBE)" in err
