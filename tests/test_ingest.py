"""The ingestion job: kill and resume, idempotent re-runs, updates, rejects, verify, errors."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ingest.job import IngestOptions, rejects_of, run_ingest
from ingest.verify import verify
from retrieval.errors import BackendUnavailableError, InvalidInputError
from retrieval.settings import QdrantSettings, Settings
from retrieval.stores import open_store

KINDS = ["flat", "ivf", "ivfpq", "hnsw"]
ALL = [*KINDS, "qdrant"]
ROOT = Path(__file__).resolve().parents[1]


def mk(tmp: Path, sub: str) -> Settings:
    return Settings(data_dir=tmp / sub, qdrant=QdrantSettings(mode="edge"))


def snapshot(s: Settings, name: str) -> dict[str, dict[str, tuple[np.ndarray | None, dict]]]:
    out = {}
    for index in ALL:
        st = open_store(s, name, index, create=False)
        try:
            out[index] = st.fetch(sorted(st.ids()))
        finally:
            st.close()
    return out


def assert_same(a: dict, b: dict) -> None:
    for index in ALL:
        assert a[index].keys() == b[index].keys(), index
        for pid, (va, pa) in a[index].items():
            vb, pb = b[index][pid]
            assert pa == pb, (index, pid)
            if va is not None:
                np.testing.assert_allclose(va, vb, atol=1e-5)


def kill_during_ingest(s: Settings, name: str, limit: int, shard: int, env_extra: dict[str, str] | None = None) -> int:
    """Start `simlookup ingest` in a subprocess and SIGKILL it after a random number of finished shards."""
    env = {**os.environ, "SIMLOOKUP_DATA_DIR": str(s.data_dir), "PYTHONPATH": str(ROOT), **(env_extra or {})}
    cmd = [
        sys.executable,
        "-m",
        "simlookup",
        "ingest",
        "stsb",
        "--name",
        name,
        "--limit",
        str(limit),
        "--shard-size",
        str(shard),
        "--no-progress",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stop_after = random.Random(os.getpid()).randint(1, 4)
    deadline = time.time() + 120
    shards = 0
    while time.time() < deadline and proc.poll() is None:
        shards = len(list(s.data_dir.glob("cache/*/*/text/shard-*.json")))
        if shards >= stop_after:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the job finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 1 <= shards < limit // shard
    return shards


@pytest.mark.slow
def test_kill_and_resume_equals_uninterrupted(tmp_path: Path, minilm) -> None:  # type: ignore[no-untyped-def]
    limit, shard = 700, 100
    killed = mk(tmp_path, "killed")
    shards = kill_during_ingest(killed, "k", limit, shard)
    resumed = run_ingest(
        killed, IngestOptions("stsb", "k", limit=limit, shard_size=shard, progress=False), encoders={"text": minilm}
    )
    assert resumed.cached_rows >= shards * shard  # finished shards were not encoded again
    assert resumed.ingested == limit

    clean = mk(tmp_path, "clean")
    run_ingest(
        clean, IngestOptions("stsb", "k", limit=limit, shard_size=shard, progress=False), encoders={"text": minilm}
    )
    assert_same(snapshot(killed, "k"), snapshot(clean, "k"))
    assert verify(killed, "k").ok


@pytest.mark.slow
def test_rerun_adds_nothing_and_changed_rows_update(tmp_path: Path, minilm) -> None:  # type: ignore[no-untyped-def]
    s = mk(tmp_path, "d")
    csv = tmp_path / "docs.csv"
    rows = [
        ("d1", "The cat sat on the mat.", "pets"),
        ("d2", "Stocks fell on Wall Street.", "news"),
        ("d3", "A man plays the flute.", "music"),
        ("d4", "Heavy rain floods the city.", "news"),
    ] + [(f"x{i}", f"Filler sentence number {i} about topic {i % 7}.", "misc") for i in range(300)]
    csv.write_text("id,text,topic\n" + "".join(f"{a},{b},{c}\n" for a, b, c in rows))
    opts = IngestOptions(str(csv), "docs", progress=False)
    first = run_ingest(s, opts, encoders={"text": minilm})
    assert first.ingested == 304 and first.counts == dict.fromkeys(ALL, 304)
    again = run_ingest(s, opts, encoders={"text": minilm})
    assert again.counts == dict.fromkeys(ALL, 304) and again.encoded_rows == 0

    rows[0] = ("d1", "A violinist performs on stage.", "pets")
    rows[1] = ("d2", "Stocks fell on Wall Street.", "finance")
    csv.write_text("id,text,topic\n" + "".join(f"{a},{b},{c}\n" for a, b, c in rows))
    changed = run_ingest(s, opts, encoders={"text": minilm})
    assert changed.counts == dict.fromkeys(ALL, 304)
    q = minilm.encode_text(["A violinist performs on stage."])
    for index in ALL:
        st = open_store(s, "docs", index, create=False)
        try:
            top = st.search(q, k=1)[0][0]
            assert top.id == "d1" and top.payload["text"] == "A violinist performs on stage.", index
            assert st.fetch(["d2"])["d2"][1]["topic"] == "finance", index
        finally:
            st.close()
    assert verify(s, "docs").ok


def test_rejects_file_and_exit_codes(tmp_path: Path, minilm) -> None:  # type: ignore[no-untyped-def]
    s = mk(tmp_path, "d")
    csv = tmp_path / "bad.csv"
    csv.write_text('id,text\nok1,A fine sentence.\nempty,\nspace,"   "\nok2,Another fine one.\n')
    summ = run_ingest(s, IngestOptions(str(csv), "bad", indexes=["flat"], progress=False), encoders={"text": minilm})
    assert summ.ingested == 2 and summ.rejected == 2
    rej = {r["id"]: r["reason"] for r in rejects_of(s.data_dir, "bad")}
    assert set(rej) == {"empty", "space"} and all("empty" in v for v in rej.values())
    assert json.loads(Path(summ.rejects_file).read_text().splitlines()[0])["id"] in rej

    allbad = tmp_path / "allbad.csv"
    allbad.write_text('id,text\na,\nb,"  "\n')
    env = {**os.environ, "SIMLOOKUP_DATA_DIR": str(s.data_dir), "PYTHONPATH": str(ROOT)}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "simlookup",
            "ingest",
            str(allbad),
            "--name",
            "allbad",
            "--index",
            "flat",
            "--qdrant",
            "none",
            "--no-progress",
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1, r.stderr
    out = json.loads(r.stdout)
    assert out["ingested"] == 0 and out["rejected"] == 2


def test_verify_catches_drift(tmp_path: Path, minilm) -> None:  # type: ignore[no-untyped-def]
    s = mk(tmp_path, "d")
    run_ingest(s, IngestOptions("stsb", "v", limit=300, progress=False), encoders={"text": minilm})
    assert verify(s, "v").ok
    st = open_store(s, "v", "hnsw", create=False)
    victim = sorted(st.ids())[0]
    st.delete([victim])
    st.close()
    rep = verify(s, "v")
    assert not rep.ok
    assert any("hnsw" in d and "missing 1 id" in d and victim in d for d in rep.differences)
    assert any("hnsw: holds 299 points, expected 300" in d for d in rep.differences)


def test_names_cannot_escape(tmp_path: Path) -> None:
    for bad in ("../x", "/etc/passwd", "", "a/b"):
        with pytest.raises(InvalidInputError):
            IngestOptions("stsb", bad)
    with pytest.raises(InvalidInputError):
        IngestOptions("stsb", "ok", indexes=["annoy"])


def test_unreachable_qdrant_server_is_a_clear_error(tmp_path: Path, minilm) -> None:  # type: ignore[no-untyped-def]
    s = Settings(
        data_dir=tmp_path / "d",
        qdrant=QdrantSettings(mode="server", url="http://127.0.0.1:9", retries=1, backoff_s=0.01, timeout_s=1),
    )
    with pytest.raises(BackendUnavailableError, match="unreachable after 2 attempts"):
        run_ingest(
            s, IngestOptions("stsb", "down", indexes=["flat"], limit=50, progress=False), encoders={"text": minilm}
        )


def test_query_encoder_must_match_collection(tmp_path: Path, minilm) -> None:  # type: ignore[no-untyped-def]
    from retrieval.retriever import Retriever

    s = mk(tmp_path, "d")
    run_ingest(s, IngestOptions("stsb", "fp", indexes=["flat"], qdrant="none", limit=50, progress=False),
               encoders={"text": minilm})
    s8 = s.model_copy(update={"text_quantize": "int8"})
    with Retriever(s8, "fp") as r, pytest.raises(InvalidInputError, match=r"\+int8"):
        r.search_text("a flute", index="flat")
