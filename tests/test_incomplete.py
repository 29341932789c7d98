"""While an ingest is running, or after one was killed, `verify` and `collections` say so plainly instead of
reporting the indexes' expected differences as corruption (adversarial pass after issues 21 and 23, item 5)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from retrieval.catalog import list_described
from retrieval.settings import QdrantSettings, Settings
from retrieval.verify import verify
from simlookup.cli import main

ROOT = Path(__file__).resolve().parent.parent

# a complete collection of 60 points (flat, hnsw, Qdrant Edge), then a re-ingest that wrote 20 new points to
# Qdrant (written first) and none yet to FAISS: mode "running" waits on stdin, "killed" SIGKILLs itself there
SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, numpy as np
    from pathlib import Path
    sys.path.insert(0, {root!r})
    from retrieval.settings import QdrantSettings, Settings
    from retrieval.collection import Collection, CollectionManifest, VectorSpace
    s = Settings(data_dir=Path({data!r}), qdrant=QdrantSettings(mode="edge"))
    x = np.random.default_rng(0).standard_normal((100, 16)).astype(np.float32)
    sp = VectorSpace(name="text", encoder="text", model="m", fingerprint="fp", dim=16)
    def manifest():
        return CollectionManifest(name="c", corpus="c.csv", corpus_fingerprint="x", modality="text",
                                  vectors={{"text": sp}}, indexes=["flat", "hnsw", "qdrant"], qdrant_mode="edge")
    c = Collection(s, "c", read_only=False, manifest=manifest())
    c.save()
    for _, st in c.stores(create=True):
        st.upsert(["p%d" % i for i in range(60)], x[:60], [{{}}] * 60)
    c.build(); c.flush(); c.close()
    c.manifest.count, c.manifest.complete = 60, True
    c.save()
    m = manifest(); m.uid, m.created = c.manifest.uid, c.manifest.created
    c = Collection(s, "c", read_only=False, manifest=m)
    stores = list(c.stores(create=True))
    c.save()  # complete=False, as an ingest's first save
    stores[0][1].upsert(["n%d" % i for i in range(20)], x[60:80], [{{}}] * 20)  # Qdrant first
    stores[0][1].flush()
    print("ready", os.getpid(), flush=True)
    if {mode!r} == "killed":
        os.kill(os.getpid(), signal.SIGKILL)
    sys.stdin.read()
    """
)


def _start(data: Path, mode: str) -> tuple[subprocess.Popen[str], int]:
    code = SCRIPT.format(root=str(ROOT), data=str(data), mode=mode)
    proc = subprocess.Popen([sys.executable, "-c", code], text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    assert line and line[0] == "ready", proc.stderr.read() if proc.stderr else ""
    return proc, int(line[1])


@pytest.fixture
def s(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", qdrant=QdrantSettings(mode="edge"))


@pytest.fixture
def running(s: Settings) -> Iterator[int]:
    proc, pid = _start(s.data_dir, "running")
    yield pid
    proc.communicate("", timeout=60)


def test_verify_and_collections_say_an_ingest_is_running(
    s: Settings, running: int, capsys: pytest.CaptureFixture[str]
) -> None:
    rep = verify(s, "c")
    assert not rep.ok and rep.differences == [], rep.differences  # nothing is wrong: an ingest is writing it
    assert rep.state == "ingest running" and rep.ingest_pid == running
    assert rep.state_message and f"an ingest is running (process {running})" in rep.state_message
    text = "\n".join([rep.state_message, *rep.notes])
    assert "expected 0" not in text and "did not finish" not in text
    assert "repair" not in text  # nothing to repair: the ingest is writing it
    assert main(["--data-dir", str(s.data_dir), "verify", "--name", "c"]) == 3  # incomplete: not 1 (damage)
    out = capsys.readouterr().out
    assert out.startswith("INCOMPLETE: ") and "DIFFERENCES" not in out
    [c] = list_described(s)
    assert c["state"] == "ingest running" and c["ingest_pid"] == running and c["complete"] is False
    assert main(["--data-dir", str(s.data_dir), "collections"]) == 0
    out = capsys.readouterr().out
    assert "running" in out and f"an ingest is running (process {running})" in out


def test_verify_and_collections_say_an_ingest_was_interrupted(
    s: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    proc, _ = _start(s.data_dir, "killed")
    proc.communicate(timeout=60)
    assert proc.returncode == -9
    rep = verify(s, "c")
    assert not rep.ok and rep.state == "interrupted"
    first = rep.state_message or ""
    assert "stopped before it finished" in first
    assert "simlookup ingest c.csv --name c --index flat,hnsw --qdrant edge" in first
    assert rep.differences == [], rep.differences  # the mid-write differences are notes, not corruption
    assert any("missing 20 id(s)" in n for n in rep.notes)
    assert all("expected 0" not in line for line in rep.notes)
    assert main(["--data-dir", str(s.data_dir), "verify", "--name", "c", "--json"]) == 3
    doc = json.loads(capsys.readouterr().out)
    assert doc["state"] == "interrupted" and doc["ok"] is False and doc["differences"] == []
    [c] = list_described(s)
    assert c["state"] == "interrupted" and c["ingest_pid"] is None
    assert main(["--data-dir", str(s.data_dir), "collections", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["collections"][0]["state"] == "interrupted"
