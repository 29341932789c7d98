"""The command printed to resume an incomplete collection repeats the last ingest as it was asked (adversarial pass on
issues 21 / 23, items 2 and 6): its --index, --qdrant, --limit, --shard-size and vector flags, so that running it as
printed completes the collection and adds, drops or prunes nothing; `verify` of such a collection exits 3 with the
state line, not 1 with "DIFFERENCES"."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ingest.options import IngestOptions
from retrieval.catalog import list_described
from retrieval.collection import Collection, CollectionManifest, VectorSpace, load_collection
from retrieval.collection_manifest import ingest_command
from retrieval.settings import QdrantSettings, Settings
from simlookup.cli import main

ROOT = Path(__file__).resolve().parent.parent
FLAGS = ["--index", "hnsw", "--qdrant", "none", "--limit", "150", "--shard-size", "50", "--metric", "dot"]


def test_the_command_repeats_the_recorded_options() -> None:
    sp = VectorSpace(name="text", encoder="external", model="external", fingerprint="fp", dim=4)
    m = CollectionManifest(
        name="c",
        corpus="my file.npy",
        corpus_fingerprint="x",
        modality="text",
        vectors={"text": sp},
        indexes=["hnsw", "qdrant"],
        qdrant_mode="local",
    )
    m.ingest = IngestOptions(corpus="my file.npy", name="c", append=True, vector_column="emb", dim=4).recorded()
    assert m.ingest == {"append": True, "vector_column": "emb", "dim": 4}  # only what was given away from defaults
    assert ingest_command(m) == (
        "simlookup ingest 'my file.npy' --name c --index hnsw --qdrant local --append --vector-column emb --dim 4"
    )
    m.indexes, m.qdrant_mode, m.ingest = ["qdrant"], "edge", {}
    assert ingest_command(m) == "simlookup ingest 'my file.npy' --name c --index '' --qdrant edge"


@pytest.fixture
def killed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """`simlookup ingest v.npy --name big2` + FLAGS, SIGKILLed at its first FAISS flush (complete=False)."""
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "v.npy", np.random.default_rng(0).standard_normal((400, 8)).astype(np.float32))
    data = tmp_path / "data"
    cmd = [sys.executable, "-m", "simlookup", "--data-dir", str(data), "ingest", "v.npy", "--name", "big2", *FLAGS]
    first = [a if a != "150" else "100" for a in cmd]  # a complete collection of 100 points, then 150 asked
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([*first, "--no-progress"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    env["SIMLOOKUP_FAULT"] = "flush:manifest-written"
    proc = subprocess.run([*cmd, "--no-progress"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    s = Settings(data_dir=data, qdrant=QdrantSettings(mode="edge"))
    assert not load_collection(data, "big2").complete
    return s


def test_the_printed_command_resumes_the_ingest_as_it_was_asked(
    killed: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    s = killed
    want = "simlookup ingest v.npy --name big2 " + " ".join(FLAGS)
    [row] = list_described(s)
    assert row["state"] == "interrupted" and want in row["state_message"]
    with Collection(s, "big2") as coll:
        assert any(want in w for w in coll.warnings("hnsw"))
    code = main(["--data-dir", str(s.data_dir), "verify", "--name", "big2"])
    out = capsys.readouterr().out
    assert code == 3 and out.startswith("INCOMPLETE: ") and "DIFFERENCES" not in out and want in out
    # run as printed (the data folder aside): it completes the collection, as it was, and adds no index
    printed = next(line for line in out.splitlines() if want in line)
    command = printed[printed.index("`simlookup ingest") + 1 :].split("`")[0]
    argv = shlex.split(command)
    assert main(["--data-dir", str(s.data_dir), *argv[1:], "--no-progress"]) == 0
    capsys.readouterr()
    m = load_collection(s.data_dir, "big2")
    assert m.complete and m.indexes == ["hnsw"] and m.count == 150 and m.vectors["text"].metric == "dot"
    assert not (s.data_dir / "qdrant").exists() or not any((s.data_dir / "qdrant").rglob("simlookup.json"))
    assert main(["--data-dir", str(s.data_dir), "verify", "--name", "big2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "complete"
