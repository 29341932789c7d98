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
from retrieval.errors import BackendUnavailableError, InvalidInputError
from retrieval.settings import QdrantSettings, Settings
from retrieval.stores import VectorStore, open_store
from retrieval.verify import verify

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
        shards = len(list(s.data_dir.glob("cache/*/*/*/text/shard-*.json")))
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
    # every row rejected: an error naming the rejects file, and no collection (it exited 1 and wrote one before)
    assert r.returncode == 2 and "all 2 rows" in r.stderr and "rejects/allbad.jsonl" in r.stderr, r.stderr
    assert not (s.data_dir / "collections" / "allbad.json").exists() and len(rejects_of(s.data_dir, "allbad")) == 2


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
    # a changed vector and a changed payload in the FAISS point store: Qdrant now disagrees on exactly those
    st = open_store(s, "v", "flat", create=False)
    a, b = sorted(st.ids())[1:3]
    got = st.fetch([a, b])
    st.upsert([a], (got[a][0] + 0.01)[None, :], [got[a][1]])
    st.upsert([b], got[b][0][None, :], [got[b][1] | {"genre": "changed"}])
    st.close()
    diffs = verify(s, "v").differences
    assert [d for d in diffs if "vector of" in d] == [f"text/qdrant: vector of {a!r} differs from flat"]
    assert [d for d in diffs if "payload of" in d] == [f"text/qdrant: payload of {b!r} differs from flat"]


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


# ---- issue 11: ingestion defects, each with the test that failed before its fix ----


def write_csv(path: Path, header: str, rows: list[tuple[object, ...]]) -> Path:
    path.write_text(header + "\n" + "".join(",".join(str(x) for x in r) + "\n" for r in rows))
    return path


def nothing_written(s: Settings) -> bool:
    """No collection manifest and no store: the data dir holds at most the embedding cache."""
    return not any(p.name not in ("cache", "models") for p in s.data_dir.glob("*")) if s.data_dir.exists() else True


def test_cache_key_covers_text_and_id_columns(tmp_path: Path, minilm) -> None:  # type: ignore[no-untyped-def]
    s = mk(tmp_path, "d")
    rows = [(f"d{i}", f"k{i}", f"The cat number {i} sleeps.", f"Stocks moved {i} points today.") for i in range(20)]
    csv = write_csv(tmp_path / "two.csv", "id,alt_id,a,b", rows)
    kw = {"indexes": ["flat"], "qdrant": "none", "progress": False}
    run_ingest(s, IngestOptions(str(csv), "by-a", text_column="a", **kw), encoders={"text": minilm})
    summ = run_ingest(
        s, IngestOptions(str(csv), "by-b", text_column="b", id_column="alt_id", **kw), encoders={"text": minilm}
    )
    assert summ.cached_rows == 0 and summ.encoded_rows == 20  # nothing reused from the 'a' ingest
    st = open_store(s, "by-b", "flat", create=False)
    try:
        got = st.fetch(["k3"])
        assert st.ids() == {f"k{i}" for i in range(20)}
        assert got["k3"][1]["text"] == "Stocks moved 3 points today."
        np.testing.assert_allclose(got["k3"][0], minilm.encode_text(["Stocks moved 3 points today."])[0], atol=1e-5)
    finally:
        st.close()


class OtherModel:
    """An encoder the existing collection was not built with (only its fingerprint and dim are read)."""

    fingerprint = "all-MiniLM-L6-v2@0000000000000000+int8"
    dim = 384


def test_refused_ingest_changes_nothing(tmp_path: Path, minilm) -> None:  # type: ignore[no-untyped-def]
    from retrieval.retriever import Retriever

    s = mk(tmp_path, "d")
    csv = write_csv(tmp_path / "docs.csv", "id,text", [(f"r{i}", f"Sentence {i} about rivers.") for i in range(40)])
    opts = IngestOptions(str(csv), "keep", indexes=["flat", "hnsw"], progress=False)
    run_ingest(s, opts, encoders={"text": minilm})
    manifest = (s.data_dir / "collections" / "keep.json").read_bytes()
    with pytest.raises(InvalidInputError, match=r"was embedded by all-MiniLM-L6-v2@\w+ .* nothing was changed"):
        run_ingest(s, opts, encoders={"text": OtherModel()})
    assert (s.data_dir / "collections" / "keep.json").read_bytes() == manifest
    with Retriever(s, "keep", encoders={"text": minilm}) as r:
        for index in ("flat", "hnsw", "qdrant"):
            assert r.search_text("rivers", index=index, k=3).hits, index
    other = Retriever(s, "keep", encoders={"text": OtherModel()})  # type: ignore[dict-item]
    with other, pytest.raises(InvalidInputError, match=r"but the query encoder is all-MiniLM-L6-v2@0+\+int8"):
        other.search_text("rivers", k=3)


def test_reingest_makes_the_collection_equal_to_the_source(tmp_path: Path, minilm) -> None:  # type: ignore[no-untyped-def]
    s = mk(tmp_path, "d")
    rows = [(f"r{i}", f"Line {i} of the corpus about topic {i % 4}.") for i in range(30)]
    csv = write_csv(tmp_path / "docs.csv", "id,text", rows)
    opts = IngestOptions(str(csv), "sync", indexes=["flat", "hnsw"], progress=False)
    assert run_ingest(s, opts, encoders={"text": minilm}).counts == {"flat": 30, "hnsw": 30, "qdrant": 30}
    write_csv(csv, "id,text", rows[:20] + [("r25", "")])  # 9 rows gone, r25 now rejected (empty text)
    summ = run_ingest(s, opts, encoders={"text": minilm})
    assert summ.removed == 10 and summ.ingested == 20 and summ.counts == {"flat": 20, "hnsw": 20, "qdrant": 20}
    for index in ("flat", "hnsw", "qdrant"):
        st = open_store(s, "sync", index, create=False)
        try:
            assert st.ids() == {f"r{i}" for i in range(20)}, index
        finally:
            st.close()
    assert verify(s, "sync").ok

    write_csv(csv, "id,text", [("new", "A brand new line.")])
    kept = run_ingest(s, IngestOptions(str(csv), "sync", indexes=["flat", "hnsw"], progress=False, append=True),
                      encoders={"text": minilm})
    assert kept.removed == 0 and kept.counts == {"flat": 21, "hnsw": 21, "qdrant": 21}
    assert verify(s, "sync").ok


def test_retriever_uses_the_collections_qdrant_mode(tmp_path: Path, minilm) -> None:  # type: ignore[no-untyped-def]
    from retrieval.retriever import Retriever

    s = mk(tmp_path, "d")  # settings say edge
    csv = write_csv(tmp_path / "docs.csv", "id,text", [(f"r{i}", f"A note about birds number {i}.") for i in range(30)])
    run_ingest(s, IngestOptions(str(csv), "loc", indexes=["flat"], qdrant="local", progress=False),
               encoders={"text": minilm})
    with Retriever(s, "loc", encoders={"text": minilm}) as r:
        res = r.search_text("birds", index="qdrant", k=5)
        assert len(res.hits) == 5 and res.hits[0].id.startswith("r")
        assert r.store("qdrant").backend != "qdrant-edge"
    assert verify(s, "loc").ok


def test_ivf_trainability_is_checked_before_writing(tmp_path: Path, minilm) -> None:  # type: ignore[no-untyped-def]
    s = mk(tmp_path, "d")
    csv = write_csv(tmp_path / "ten.csv", "id,text", [(f"r{i}", f"Short sentence {i}.") for i in range(10)])
    # nlist is at most N/39, so ivf trains on 10 points; ivfpq needs 2^8 points for its PQ codebooks
    with pytest.raises(InvalidInputError, match=r"ivfpq index needs at least 256 points .* --index flat,ivf,hnsw"):
        run_ingest(s, IngestOptions(str(csv), "ten", progress=False), encoders={"text": minilm})
    assert nothing_written(s)
    summ = run_ingest(s, IngestOptions(str(csv), "ten", indexes=["flat", "hnsw"], progress=False),
                      encoders={"text": minilm})
    assert summ.counts == {"flat": 10, "hnsw": 10, "qdrant": 10}


def test_a_column_named_id_is_kept_on_every_store(tmp_path: Path, minilm) -> None:  # type: ignore[no-untyped-def]
    # issue 21 item 14: refused before (Qdrant keeps each point's id under "_id"); now stored and given back
    s = mk(tmp_path, "d")
    csv = write_csv(tmp_path / "res.csv", "id,text,_id", [(f"r{i}", f"Text {i}.", i) for i in range(20)])
    summ = run_ingest(s, IngestOptions(str(csv), "res", indexes=["flat"], qdrant="edge", progress=False),
                      encoders={"text": minilm})
    assert summ.counts == {"flat": 20, "qdrant": 20}
    for index in ("flat", "qdrant"):
        st = open_store(s, "res", index, create=False)
        try:
            assert st.fetch(["r3"])["r3"][1] == {"text": "Text 3.", "_id": 3}, index
            hits = st.search(minilm.encode_text(["Text 3."])[0], k=20, filter={"_id": {"$gte": 18}})[0]
            assert sorted(h.id for h in hits) == ["r18", "r19"], index
        finally:
            st.close()


def test_numeric_text_is_embedded_as_its_string(tmp_path: Path, minilm) -> None:  # type: ignore[no-untyped-def]
    s = mk(tmp_path, "d")
    csv = write_csv(tmp_path / "num.csv", "id,code", [(f"r{i}", 1000 + i) for i in range(12)])
    summ = run_ingest(s, IngestOptions(str(csv), "num", text_column="code", indexes=["flat"], qdrant="none",
                                       progress=False), encoders={"text": minilm})
    assert summ.ingested == 12 and summ.rejected == 0
    st = open_store(s, "num", "flat", create=False)
    try:
        vec, payload = st.fetch(["r3"])["r3"]
        assert payload["text"] == "1003"
        np.testing.assert_allclose(vec, minilm.encode_text(["1003"])[0], atol=1e-5)
    finally:
        st.close()


def test_file_payloads_arrive_as_written(tmp_path: Path, minilm) -> None:  # type: ignore[no-untyped-def]
    """JSONL rows keep their own types and keys, CSV cells their text unless the whole column is plain numbers:
    a typed table had made "1" a number beside 2, given every row every key (as null), and "007" 7; filters then
    answered on data the file does not hold."""
    s = mk(tmp_path, "d")
    jl = tmp_path / "m.jsonl"
    jl.write_text(
        "\n".join(
            json.dumps(r)
            for r in (
                {"id": "1", "text": "red apple", "code": "007", "x": "1"},
                {"id": "2", "text": "green pear", "code": "12", "x": 2, "meta": {"k": "v"}},
                {"id": "3", "text": "blue sky", "code": "abc", "x": "abc", "a": {"b": "nest"}},
            )
        )
        + "\n"
    )
    cs = write_csv(tmp_path / "m.csv", "id,text,zip,score,n", [(1, "red apple", "01234", "1.0", 5),
                                                              (2, "green pear", "00001", "2.5", 6),
                                                              (3, "blue sky", "12345", "abc", "")])
    want = {
        "mj": {
            "1": {"text": "red apple", "code": "007", "x": "1"},
            "2": {"text": "green pear", "code": "12", "x": 2, "meta": {"k": "v"}},
            "3": {"text": "blue sky", "code": "abc", "x": "abc", "a": {"b": "nest"}},
        },
        "mc": {
            "1": {"text": "red apple", "zip": "01234", "score": "1.0", "n": 5},
            "2": {"text": "green pear", "zip": "00001", "score": "2.5", "n": 6},
            "3": {"text": "blue sky", "zip": "12345", "score": "abc", "n": None},
        },
    }
    for name, path in (("mj", jl), ("mc", cs)):
        run_ingest(s, IngestOptions(str(path), name, indexes=["flat"], progress=False), encoders={"text": minilm})
        for index in ("flat", "qdrant"):
            st = open_store(s, name, index, create=False)
            try:
                got = {pid: pl for pid, (_, pl) in st.fetch(["1", "2", "3"]).items()}
                assert got == want[name], (name, index)
                q = minilm.encode_text(["fruit"])
                def hits(f: dict, st: VectorStore = st, q: np.ndarray = q) -> set[str]:
                    return {h.id for h in st.search(q, k=3, filter=f)[0]}

                if name == "mj":
                    assert hits({"x": "1"}) == {"1"} and hits({"x": 1}) == set() and hits({"x": 2}) == {"2"}
                    assert hits({"a.b": "nest"}) == {"3"} and hits({"meta": None}) == {"1", "3"}
                else:
                    assert hits({"zip": "01234"}) == {"1"} and hits({"n": {"$gte": 6}}) == {"2"}
            finally:
                st.close()


def test_empty_ids_are_reported_as_empty(tmp_path: Path) -> None:
    from ingest.corpora import CorpusError, get_corpus

    csv = tmp_path / "ids.csv"
    csv.write_text("id,text\n,one\n,two\n,three\nx,four\n")
    with pytest.raises(CorpusError, match=r"3 row\(s\) have an empty id in column 'id' \(rows \[0, 1, 2\]"):
        get_corpus(str(csv)).load()
    csv.write_text("id,text\na,one\na,two\nb,three\n")
    with pytest.raises(CorpusError, match=r"1 duplicate id\(s\), e.g. \['a'\]"):
        get_corpus(str(csv)).load()


def test_id_column_beside_an_id_column(tmp_path: Path) -> None:
    from ingest.corpora import CorpusError, get_corpus

    csv = write_csv(tmp_path / "alt.csv", "id,alt_id,text", [(i, f"a{i}", f"Text {i}.") for i in range(5)])
    ds = get_corpus(str(csv), id_column="alt_id").load()
    assert ds["id"] == [f"a{i}" for i in range(5)] and ds["orig_id"] == list(range(5))
    with pytest.raises(CorpusError, match="no id column 'nope'"):
        get_corpus(str(csv), id_column="nope").load()


def synthetic_collection(s: Settings, name: str = "syn", n: int = 6000, dim: int = 16) -> np.ndarray:
    """A collection without a text model: random unit vectors in flat + hnsw + Qdrant Edge, and its manifest."""
    from retrieval.collection import CollectionManifest, VectorSpace, save_collection

    rng = np.random.default_rng(3)
    vecs = rng.normal(size=(n, dim)).astype(np.float32)
    ids = [f"p{i}" for i in range(n)]
    for index in ("flat", "hnsw", "qdrant"):
        st = open_store(s, name, index, dim=dim, fingerprint="fake@1")
        try:
            for i in range(0, n, 1000):  # several writes: Qdrant Edge makes several segments
                st.upsert(ids[i : i + 1000], vecs[i : i + 1000], [{"g": i % 3} for _ in range(min(1000, n - i))])
            st.build()
            st.flush()
        finally:
            st.close()
    space = VectorSpace(name="text", encoder="text", model="fake", fingerprint="fake@1", dim=dim)
    save_collection(s.data_dir, CollectionManifest(
        name=name, corpus="synthetic", corpus_fingerprint="x", modality="text", vectors={"text": space},
        indexes=["flat", "hnsw", "qdrant"], qdrant_mode="edge", count=n, complete=True,
    ))
    return vecs


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pristine")
    synthetic_collection(mk(d, "d"))
    return d / "d"


def _edit_json(path: Path, **changes: object) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def _set_dim(p: Path) -> None:
    m = json.loads(p.read_text())
    m["vectors"]["text"]["dim"] = 512
    p.write_text(json.dumps(m))


CORRUPTIONS = {
    "deleted points store": (lambda d: (d / "faiss/syn/points/points.sqlite").unlink(), "flat"),
    "garbage points store": (lambda d: (d / "faiss/syn/points/points.sqlite").write_bytes(b"garbage" * 99), "hnsw"),
    "deleted vectors file": (lambda d: (d / "faiss/syn/points/vectors.f32").unlink(), "vectors.f32"),
    "deleted segments": (lambda d: __import__("shutil").rmtree(d / "qdrant-edge/syn/shard/segments"), "qdrant"),
    "store manifest dim": (lambda d: _edit_json(d / "faiss/syn/hnsw/manifest.json", dim=512), "dim 512"),
    "collection manifest dim": (lambda d: _set_dim(d / "collections/syn.json"), "manifest says 512"),
    "corrupt collection manifest": (lambda d: (d / "collections/syn.json").write_text("{nope"), "syn.json"),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_verify_catches_every_corruption(pristine: Path, tmp_path: Path, case: str) -> None:
    import shutil

    d = tmp_path / "d"
    shutil.copytree(pristine, d)
    s = Settings(data_dir=d, qdrant=QdrantSettings(mode="edge"))
    assert verify(s, "syn").ok
    damage, needle = CORRUPTIONS[case]
    damage(d)
    rep = verify(s, "syn")
    assert not rep.ok and any(needle in x for x in rep.differences), rep.differences


@pytest.mark.parametrize(
    ("case", "index"),
    [
        ("deleted points store", "flat"),
        ("deleted vectors file", "flat"),
        ("deleted segments", "qdrant"),
        ("store manifest dim", "hnsw"),
    ],
)
def test_search_refuses_a_damaged_index(pristine: Path, tmp_path: Path, case: str, index: str) -> None:
    import shutil

    from retrieval.errors import CorruptIndexError
    from retrieval.retriever import Retriever

    d = tmp_path / "d"
    shutil.copytree(pristine, d)
    CORRUPTIONS[case][0](d)
    s = Settings(data_dir=d, qdrant=QdrantSettings(mode="edge"))
    # the store names the damaged file; the Retriever adds this collection's own verify and repair commands
    fix = r"syn.*simlookup ingest synthetic --name syn"
    with Retriever(s, "syn") as r, pytest.raises(CorruptIndexError, match=fix):
        r.search_vector(np.ones(16, np.float32), index, k=5)


def test_corrupt_collection_manifest_is_a_clear_error(tmp_path: Path, minilm) -> None:  # type: ignore[no-untyped-def]
    from retrieval.errors import CorruptManifestError
    from retrieval.retriever import Retriever

    s = mk(tmp_path, "d")
    csv = write_csv(tmp_path / "docs.csv", "id,text", [(f"r{i}", f"About trains line {i}.") for i in range(20)])
    opts = IngestOptions(str(csv), "cm", indexes=["flat"], qdrant="none", progress=False)
    run_ingest(s, opts, encoders={"text": minilm})
    path = s.data_dir / "collections" / "cm.json"
    path.write_text("{not json")
    with pytest.raises(CorruptManifestError, match=r"cm.json is unreadable .*`simlookup ingest SOURCE --name cm`"):
        Retriever(s, "cm")
    run_ingest(s, opts, encoders={"text": minilm})  # a re-ingest repairs it
    with Retriever(s, "cm", encoders={"text": minilm}) as r:
        assert r.search_text("trains", k=2).hits


def test_query_parameters_are_capped(pristine: Path) -> None:
    from retrieval.retriever import Retriever
    from retrieval.stores import SearchParams

    s = Settings(data_dir=pristine, qdrant=QdrantSettings(mode="edge"))
    q = np.ones(16, np.float32)
    with Retriever(s, "syn") as r:
        with pytest.raises(InvalidInputError, match=r"k=2147483648 is above the limit of 10000"):
            r.search_vector(q, "flat", k=2**31)
        for params, what in (  # one cap per parameter, the settings', named in the message
            (SearchParams(hnsw_ef=5000), r"ef=5000 is above the limit of 4096 \(SIMLOOKUP_LIMITS__MAX_EF\)"),
            (SearchParams(hnsw_ef=10**9), r"ef=1000000000 is above the limit of 4096 \(SIMLOOKUP_LIMITS__MAX_EF\)"),
            (SearchParams(nprobe=100_000), r"nprobe=100000 is above the limit of 65536 \(SIMLOOKUP_LIMITS__MAX_NPROBE"),
            (SearchParams(nprobe=2**40), r"nprobe=1099511627776 is above the limit of 65536"),
            (SearchParams(rerank=500), r"rerank factor=500 is above the limit of 100 \(SIMLOOKUP_LIMITS__MAX_RERANK"),
        ):
            with pytest.raises(InvalidInputError, match=what):
                r.search_vector(q, "hnsw", k=10, params=params)
        assert len(r.search_vector(q, "flat", k=10_000).hits) == 6000  # k up to the cap; at most the collection
