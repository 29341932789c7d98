"""Issue 23 item 7, the friction a new user meets: messages that name the file, column or field, CSV bools,
help text, the --quick target lines, build progress, the field hint and the packaging banner."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from ingest.corpora import CorpusError, get_corpus
from ingest.corpora.files import SOURCE_PAYLOAD


def test_missing_file_is_named_not_an_unknown_corpus(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "docs.csv"
    with pytest.raises(CorpusError) as info:
        get_corpus(str(missing))
    msg = str(info.value)
    assert "unknown corpus" not in msg
    assert str(missing) in msg and "does not exist" in msg
    with pytest.raises(CorpusError, match="unknown corpus"):  # a bare word is still a corpus name
        get_corpus("no-such-corpus")


def test_no_text_column_lists_the_users_columns_only(tmp_path: Path) -> None:
    f = tmp_path / "docs.csv"
    f.write_text("id,body,lang\na1,hello,en\n")
    with pytest.raises(CorpusError) as info:
        get_corpus(str(f)).load()
    msg = str(info.value)
    assert SOURCE_PAYLOAD not in msg
    assert "'body'" in msg and "'lang'" in msg and "--text-column" in msg and str(f) in msg


def test_csv_true_false_columns_are_bools(tmp_path: Path) -> None:
    f = tmp_path / "docs.csv"
    f.write_text("id,text,flag,mixed,word\na,one,true,true,yes\nb,two,FALSE,maybe,no\nc,three,,false,\n")
    ds = get_corpus(str(f)).load()
    payloads = [json.loads(s) for s in ds[SOURCE_PAYLOAD]]
    assert [p["flag"] for p in payloads] == [True, False, None]
    assert [p["mixed"] for p in payloads] == ["true", "maybe", "false"]  # not only true/false: text as written
    assert [p["word"] for p in payloads] == ["yes", "no", None]
    assert ds["flag"] == [True, False, None]


def test_pyproject_license_is_an_spdx_string_and_docs_assets_are_a_serve_dependency() -> None:
    import tomllib

    root = Path(__file__).resolve().parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"  # the table form prints setuptools' deprecation banner at every install
    assert all((root / f).is_file() for f in project["license-files"])
    assert any(d.startswith("fastapi-offline") for d in project["optional-dependencies"]["serve"])


def test_help_lists_every_command_without_markup() -> None:
    import argparse

    from simlookup.cli import build_parser

    p = build_parser()
    text = p.format_help()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    assert {"serve", "loadtest", "search", "ingest"} <= set(sub.choices)
    for name, sp in sub.choices.items():
        assert name in text
        assert "`" not in sp.format_help(), name
    assert "`" not in text


def test_bench_claim_lines_are_explained() -> None:
    from benchmarks.cli import claims_text

    claims = [
        {"claim": "IVF-PQ halves query time (synthetic)", "measured": "1.1×", "holds": False},
        {"claim": "target: layer adds ≤ 5% over the raw engine call in batch", "measured": "3%", "holds": True},
    ]
    quick = claims_text(claims, quick=True).splitlines()
    assert quick[1:] == [
        "[NO] IVF-PQ halves query time (synthetic): 1.1×",
        "[ok] target: layer adds ≤ 5% over the raw engine call in batch: 3%",
    ]
    legend = quick[0]
    assert "[NO]" in legend and "not a failure" in legend and "--quick" in legend and "small" in legend
    assert "--quick" not in claims_text(claims, quick=False).splitlines()[0]


def test_build_progress_and_per_index_seconds(
    tmp_path: Path,
    minilm: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import dataclasses

    from ingest.job import IngestOptions, run_ingest
    from retrieval.settings import Settings

    s = Settings(data_dir=tmp_path / "data")
    opts = IngestOptions("stsb", "fr", indexes=["flat", "ivf"], qdrant="edge", limit=300, progress=True)
    summary = run_ingest(s, opts, encoders={"text": minilm})
    err = capsys.readouterr().err
    for index in ("ivf", "qdrant"):  # a start line and a done line with its seconds, on stderr
        assert re.search(rf"^build: {index}: .*\.\.\.$", err, re.M), err
        assert re.search(rf"^build: {index}: .* done in \d+\.\d s$", err, re.M), err
    assert "build: flat" not in err  # nothing slow to announce
    assert set(summary.build_seconds) == {"flat", "ivf", "qdrant", "keyword"}  # a text ingest builds the keyword leg
    assert all(v >= 0 for v in summary.build_seconds.values())
    assert summary.seconds["build"] >= summary.build_seconds["ivf"]  # existing fields kept
    assert summary.to_dict()["build_seconds"] == summary.build_seconds
    quiet = run_ingest(s, dataclasses.replace(opts, progress=False), encoders={"text": minilm})
    assert "build:" not in capsys.readouterr().err
    assert "ivf" in quiet.build_seconds


@pytest.mark.slow
def test_a_successful_ray_ingest_prints_no_ray_log_lines(tmp_path: Path) -> None:
    """Ray's own loggers, its C++ core (an error-level core_worker.cc line about actor restarts) and its workers'
    output stay out of a successful run; the worker-error test in test_ingest_ray shows failures still surface."""
    import os
    import subprocess
    import sys

    pytest.importorskip("ray.data", reason="the ray extra is not installed: pip install 'simlookup[ray]'")
    src = tmp_path / "docs.csv"
    src.write_text("id,text\n" + "".join(f"r{i},Sentence {i} about topic {i % 7}.\n" for i in range(40)))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "SIMLOOKUP_"))}
    env |= {"SIMLOOKUP_DATA_DIR": str(tmp_path / "data"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "simlookup", "ingest", str(src), "--name", "r", "--engine", "ray", "--workers", "1"]
    cmd += ["--index", "flat", "--qdrant", "none"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "the collection holds 40 points" in out.stdout
    lines = [ln for ln in out.stderr.replace("\r", "\n").splitlines() if ln.strip()]
    noise = [ln for ln in lines if re.search(r"core_worker|\.cc:\d+| (INFO|WARNING|ERROR) |\(MapWorker|raylet", ln)]
    assert not noise, "\n".join(noise)


@pytest.fixture(scope="module")
def flagged(tmp_path_factory: pytest.TempPathFactory, minilm: Any) -> Path:
    """A CSV collection with a true/false column, in flat and Qdrant Edge: its data folder."""
    from ingest.job import IngestOptions, run_ingest
    from retrieval.settings import Settings

    root = tmp_path_factory.mktemp("flagged")
    src = root / "docs.csv"
    rows = "".join(f"r{i},Sentence number {i}.,{'true' if i % 3 == 0 else 'false'},{i % 5}\n" for i in range(60))
    src.write_text("id,text,flag,meta\n" + rows)
    s = Settings(data_dir=root / "data")
    run_ingest(s, IngestOptions(str(src), "fl", indexes=["flat"], qdrant="edge", progress=False), {"text": minilm})
    return s.data_dir


@pytest.mark.parametrize("index", ["flat", "qdrant"])
def test_a_filter_on_a_field_no_point_has_says_so(
    flagged: Path, index: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from simlookup.cli import main

    vec = json.dumps([1.0] + [0.0] * 383)
    base = ["--data-dir", str(flagged), "search", "--vector", vec, "--name", "fl", "--index", index, "-k", "5"]
    assert main([*base, "--filter", "flag=true", "--json"]) == 0  # the CSV bools: the short form finds them
    out = capsys.readouterr()
    hits = json.loads(out.out)["hits"]
    assert len(hits) == 5 and all(h["payload"]["flag"] is True for h in hits)
    assert "warning" not in out.err
    assert main([*base, "--filter", "flg=true", "--filter", "meta>=1"]) == 0
    err = capsys.readouterr().err
    assert "'flg'" in err and "no point of collection 'fl'" in err and "'meta'" not in err
