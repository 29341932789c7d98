"""Vectors a user brings (``.npy``, parquet, ``hf:`` with ``--vector-column``) and ``simlookup export``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

from benchmarks.datasets import clustered
from ingest.corpora import CorpusError
from ingest.job import IngestOptions, rejects_of, run_ingest
from retrieval.collection import load_collection
from retrieval.errors import InvalidInputError, StoreNotFoundError
from retrieval.export import EXPORT_INFO_KEY, EXPORT_MANIFEST_KEY, export_collection
from retrieval.retriever import Retriever
from retrieval.settings import QdrantSettings, Settings
from simlookup.cli import main

N, D = 300, 16


def mk(tmp: Path) -> Settings:
    return Settings(data_dir=tmp / "data", qdrant=QdrantSettings(mode="edge"))


@pytest.fixture(scope="module")
def vecs() -> np.ndarray:
    return clustered(n=N, d=D, nq=1, seed=3).xb


def ingest(s: Settings, corpus: Path | str, name: str = "byo", encoders: Any = None, **kw: Any) -> Any:
    kw.setdefault("indexes", ["flat", "hnsw"])
    return run_ingest(s, IngestOptions(corpus=str(corpus), name=name, progress=False, **kw), encoders)


def write_parquet(path: Path, cols: dict[str, Any]) -> Path:
    pq.write_table(pa.table(cols), path)
    return path


def points(s: Settings, name: str, index: str = "flat") -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
    with Retriever(s, name) as r:
        st = r.store(index)
        got = st.fetch(sorted(st.ids()))
    return {k: (np.asarray(v), p) for k, (v, p) in got.items()}


@pytest.fixture(scope="module")
def npy_collection(tmp_path_factory: pytest.TempPathFactory, vecs: np.ndarray) -> tuple[Settings, Path, Any]:
    tmp = tmp_path_factory.mktemp("npy")
    f = tmp / "emb.npy"
    np.save(f, vecs)
    s = mk(tmp)
    summary = ingest(s, f)
    return s, f, summary


@pytest.mark.parametrize("index", ["flat", "hnsw", "qdrant"])
def test_npy_is_searchable_by_vector_at_once(
    npy_collection: tuple[Settings, Path, Any], vecs: np.ndarray, index: str
) -> None:
    s, _, summary = npy_collection
    assert summary.ingested == N and summary.rejected == 0 and summary.indexes == ["flat", "hnsw", "qdrant"]
    m = load_collection(s.data_dir, "byo")
    sp = m.vectors["text"]
    assert (sp.encoder, sp.model, sp.fingerprint, sp.dim, sp.metric) == (
        "external",
        "external",
        f"external:vectors:{D}",
        D,
        "cosine",
    )
    with Retriever(s, "byo") as r:
        for row in (0, 17, N - 1):  # ids are the row numbers
            hits = r.search_vector(vecs[row], index=index, k=3).hits
            assert hits[0].id == str(row) and hits[0].score == pytest.approx(1.0, abs=1e-4)


def test_npy_rerun_is_idempotent(npy_collection: tuple[Settings, Path, Any]) -> None:
    s, f, first = npy_collection
    before = points(s, "byo")
    again = ingest(s, f)
    assert (again.ingested, again.removed, again.encoded_rows, again.cached_rows) == (N, 0, 0, N)
    after = points(s, "byo")
    assert after.keys() == before.keys()
    assert all(np.array_equal(after[k][0], before[k][0]) and after[k][1] == before[k][1] for k in before)


def test_text_query_is_refused_with_the_way_out(npy_collection: tuple[Settings, Path, Any], capsys: Any) -> None:
    s, _, _ = npy_collection
    with Retriever(s, "byo") as r, pytest.raises(InvalidInputError, match="search it by vector.*--model NAME"):
        r.search_text("a flute")
    assert main(["--data-dir", str(s.data_dir), "search", "a flute", "--name", "byo"]) == 2
    assert "holds vectors ingested as they were" in capsys.readouterr().err
    vec = json.dumps([1.0] + [0.0] * (D - 1))
    assert main(["--data-dir", str(s.data_dir), "search", "--vector", vec, "--name", "byo", "-k", "2", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["hits"]) == 2


def test_parquet_payload_columns_and_payload_objects(tmp_path: Path, vecs: np.ndarray) -> None:
    s = mk(tmp_path)
    n = 40
    lists = [list(map(float, v)) for v in vecs[:n]]
    other = write_parquet(
        tmp_path / "cols.parquet",
        {"doc": [f"d{i}" for i in range(n)], "emb": lists, "genre": ["a", "b"] * (n // 2), "year": list(range(n))},
    )
    assert ingest(s, other, "cols", vector_column="emb", id_column="doc").ingested == n
    got = points(s, "cols")
    assert got["d3"][1] == {"genre": "b", "year": 3}  # the other columns, vector and id left out
    with Retriever(s, "cols") as r:
        assert [h.id for h in r.search_vector(vecs[5], k=3, filter={"genre": "b"}).hits][0] == "d5"
    as_text = write_parquet(
        tmp_path / "text.parquet",
        {"emb": lists, "meta": [json.dumps({"n": i, "tags": ["x", "ü"], "deep": {"k": None}}) for i in range(n)]},
    )
    assert ingest(s, as_text, "text", vector_column="emb", payload_column="meta", indexes=["flat"]).ingested == n
    assert points(s, "text")["row-7"][1] == {"n": 7, "tags": ["x", "ü"], "deep": {"k": None}}
    as_struct = write_parquet(tmp_path / "struct.parquet", {"emb": lists, "meta": [{"n": i} for i in range(n)]})
    assert ingest(s, as_struct, "struct", vector_column="emb", payload_column="meta", indexes=["flat"]).ingested == n
    assert points(s, "struct")["row-9"][1] == {"n": 9}


def test_a_hugging_face_dataset_with_an_embedding_column(tmp_path: Path, vecs: np.ndarray) -> None:
    from datasets import Dataset

    s = mk(tmp_path)
    Dataset.from_dict({"emb": vecs[:50].tolist(), "title": [f"t{i}" for i in range(50)]}).save_to_disk(tmp_path / "ds")
    summary = ingest(s, f"hf:{tmp_path / 'ds'}", vector_column="emb", limit=40)
    assert (summary.ingested, summary.rows_read) == (40, 40)
    with Retriever(s, "byo") as r:
        hit = r.search_vector(vecs[8], index="qdrant", k=1).hits[0]
    assert (hit.id, hit.payload) == ("row-8", {"title": "t8"})


def test_bad_rows_are_rejected_one_by_one_with_a_reason(tmp_path: Path, vecs: np.ndarray) -> None:
    s = mk(tmp_path)
    good = [list(map(float, v)) for v in vecs[:20]]
    rows = [*good, None, good[0][:-1], [float("nan")] + good[0][1:], [None] + good[0][1:], [0.0] * D]
    f = write_parquet(
        tmp_path / "bad.parquet",
        {
            "id": [f"p{i}" for i in range(len(rows))] + ["badpayload"],
            "v": pa.array([*rows, good[1]], pa.list_(pa.float64())),
            "meta": ["{}"] * len(rows) + ["[1, 2]"],
        },
    )
    # mixed lengths: refused before anything is written, the lengths named, --dim the way out
    with pytest.raises(CorpusError, match=rf"several lengths \({D}: 24 rows, {D - 1}: 1 rows\).*--dim N"):
        ingest(s, f, vector_column="v", payload_column="meta")
    assert not (s.data_dir / "collections").exists() and not (s.data_dir / "faiss").exists()
    summary = ingest(s, f, vector_column="v", payload_column="meta", dim=D)
    assert summary.ingested == 20 and summary.rejected == 6
    reasons = {r["id"]: r["reason"] for r in rejects_of(s.data_dir, "byo")}
    assert reasons == {
        "p20": "no vector (null)",
        "p21": f"vector of {D - 1} numbers; the collection's vectors have {D}",
        "p22": "vector holds NaN or inf (or a number beyond float32)",
        "p23": "element 0 is not a number (None)",
        "p24": "zero vector (no cosine similarity)",
        "badpayload": "payload is a JSON list, not an object",
    }
    assert sorted(points(s, "byo")) == sorted(f"p{i}" for i in range(20))


def test_a_zero_vector_is_a_point_under_l2(tmp_path: Path, vecs: np.ndarray) -> None:
    s = mk(tmp_path)
    arr = np.vstack([vecs[:10] * 3.0, np.zeros((1, D), np.float32)])
    np.save(tmp_path / "l2.npy", arr)
    summary = ingest(s, tmp_path / "l2.npy", metric="l2")
    assert summary.ingested == 11 and summary.rejected == 0
    assert load_collection(s.data_dir, "byo").vectors["text"].metric == "l2"
    with Retriever(s, "byo") as r:
        for index in ("flat", "qdrant"):
            hit = r.search_vector(arr[4], index=index, k=1).hits[0]
            assert hit.id == "4" and hit.score == pytest.approx(0.0, abs=1e-3)
    with pytest.raises(InvalidInputError, match="holds 16-d l2 vectors .* brings 16-d cosine vectors"):
        ingest(s, tmp_path / "l2.npy", metric="cosine")


def test_npy_side_files_and_a_shrunk_source(tmp_path: Path, vecs: np.ndarray) -> None:
    s = mk(tmp_path)
    np.save(tmp_path / "a.npy", vecs[:30])
    (tmp_path / "ids.txt").write_text("".join(f"doc-{i}\n" for i in range(30)))
    (tmp_path / "pl.jsonl").write_text("".join(json.dumps({"i": i}) + "\n" for i in range(30)))
    kw = {"id_column": str(tmp_path / "ids.txt"), "payload_column": str(tmp_path / "pl.jsonl")}
    assert ingest(s, tmp_path / "a.npy", **kw).ingested == 30
    assert points(s, "byo")["doc-29"][1] == {"i": 29}
    np.save(tmp_path / "a.npy", vecs[:25])
    (tmp_path / "ids.txt").write_text("".join(f"doc-{i}\n" for i in range(25)))
    (tmp_path / "pl.jsonl").write_text("".join(json.dumps({"i": i}) + "\n" for i in range(25)))
    again = ingest(s, tmp_path / "a.npy", **kw)
    assert (again.ingested, again.removed) == (25, 5)
    (tmp_path / "ids.txt").write_text("x\n")
    with pytest.raises(CorpusError, match="has 1 lines but .* has 25 rows"):
        ingest(s, tmp_path / "a.npy", **kw)


def test_bad_sources_are_clear_errors(tmp_path: Path, vecs: np.ndarray) -> None:
    s = mk(tmp_path)
    with pytest.raises(CorpusError, match="vector file .*missing.parquet does not exist"):
        ingest(s, tmp_path / "missing.parquet", vector_column="v")
    f = write_parquet(tmp_path / "t.parquet", {"v": ["a", "b"], "w": [[1.0], [2.0]]})
    with pytest.raises(CorpusError, match="no vector column 'nope'"):
        ingest(s, f, vector_column="nope")
    with pytest.raises(CorpusError, match="holds string, not lists of numbers"):
        ingest(s, f, vector_column="v")
    np.save(tmp_path / "one.npy", vecs[0])
    with pytest.raises(CorpusError, match="2-d numeric array"):
        ingest(s, tmp_path / "one.npy")
    with pytest.raises(InvalidInputError, match="--payload-column, --metric apply to vectors you bring"):
        IngestOptions(corpus="x.csv", name="n", payload_column="p", metric="l2")
    assert not (s.data_dir / "collections").exists()


def test_export_then_import_gives_the_same_points(tmp_path: Path, vecs: np.ndarray, capsys: Any) -> None:
    s = mk(tmp_path)
    n = 60
    payloads = [
        {"i": i, "big": 2**62 + i, "x": i / 7, "s": f"é{i}", "tags": ["a", str(i)], "deep": {"k": [None, True]}}
        for i in range(n)
    ]
    src = write_parquet(
        tmp_path / "src.parquet",
        {"id": [f"id:{i}" for i in range(n)], "v": [list(map(float, v)) for v in vecs[:n]],
         "p": [json.dumps(p) for p in payloads]},
    )
    ingest(s, src, "orig", vector_column="v", payload_column="p", indexes=["hnsw"])  # no flat: any index
    out = tmp_path / "out.parquet"
    dd = ["--data-dir", str(s.data_dir)]
    assert main([*dd, "export", "orig", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["count"], doc["index"], doc["dim"]) == (n, "hnsw", D)
    meta = pq.read_schema(out).metadata
    assert json.loads(meta[EXPORT_MANIFEST_KEY])["name"] == "orig"
    assert json.loads(meta[EXPORT_INFO_KEY])["metric"] == "cosine"
    assert pq.read_schema(out).field("vector").type == pa.list_(pa.float32())
    args = ["ingest", str(out), "--name", "copy", "--index", "flat", "--no-progress"]
    assert main([*dd, *args, "--vector-column", "vector", "--payload-column", "payload", "--id-column", "id"]) == 0
    a, b = points(s, "orig", "hnsw"), points(s, "copy")
    assert sorted(a) == sorted(b) == sorted(f"id:{i}" for i in range(n))
    for k in a:
        assert np.abs(a[k][0] - b[k][0]).max() <= 1e-6 and a[k][1] == b[k][1]
    assert b["id:3"][1] == payloads[3]


def test_export_of_an_l2_collection_keeps_its_metric(tmp_path: Path, vecs: np.ndarray) -> None:
    s = mk(tmp_path)
    np.save(tmp_path / "l2.npy", vecs[:20] * 5.0)
    ingest(s, tmp_path / "l2.npy", "l2", metric="l2", qdrant="none")
    export_collection(s, "l2", tmp_path / "l2.parquet", batch_size=7)  # several batches
    ingest(s, tmp_path / "l2.parquet", "back", vector_column="vector", payload_column="payload", qdrant="none")
    assert load_collection(s.data_dir, "back").vectors["text"].metric == "l2"
    a, b = points(s, "l2"), points(s, "back")
    assert sorted(a) == sorted(b) and all(np.abs(a[k][0] - b[k][0]).max() <= 1e-6 for k in a)
    assert np.abs(b["3"][0] - vecs[3] * 5.0).max() <= 1e-5  # not normalised on the way


def test_export_bad_inputs_change_nothing(npy_collection: tuple[Settings, Path, Any], tmp_path: Path) -> None:
    s, _, _ = npy_collection
    with pytest.raises(StoreNotFoundError, match="no collection named 'nope'"):
        export_collection(s, "nope", tmp_path / "x.parquet")
    assert not (tmp_path / "x.parquet").exists()
    there = tmp_path / "there.parquet"
    there.write_bytes(b"keep me")
    with pytest.raises(InvalidInputError, match="exists: .*--force"):
        export_collection(s, "byo", there)
    assert there.read_bytes() == b"keep me"
    with pytest.raises(InvalidInputError, match="does not exist"):
        export_collection(s, "byo", tmp_path / "no" / "x.parquet")
    with pytest.raises(InvalidInputError, match="no 'ivf' index"):
        export_collection(s, "byo", tmp_path / "y.parquet", index="ivf")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["there.parquet"]
    assert main(["--data-dir", str(s.data_dir), "export", "byo", str(there), "--force"]) == 0
    assert pq.read_table(there).num_rows == N


def test_model_names_the_encoder_of_the_vectors(tmp_path: Path, minilm) -> None:  # type: ignore[no-untyped-def]
    s = mk(tmp_path)
    texts = ["a man plays a flute", "a cat sleeps on a sofa", "the stock market fell sharply", "rain in Paris"]
    f = write_parquet(
        tmp_path / "emb.parquet",
        {"text": texts, "emb": [list(map(float, v)) for v in minilm.encode_text(texts)]},
    )
    ingest(s, f, vector_column="emb", model="all-MiniLM-L6-v2", encoders={"text": minilm}, qdrant="none")
    sp = load_collection(s.data_dir, "byo").vectors["text"]
    assert (sp.encoder, sp.model, sp.fingerprint) == ("external", "all-MiniLM-L6-v2", minilm.fingerprint)
    with Retriever(s, "byo", encoders={"text": minilm}) as r:
        hit = r.search_text("someone playing the flute", k=1).hits[0]
    assert hit.payload["text"] == "a man plays a flute"
    np.save(tmp_path / "small.npy", np.eye(4, 8, dtype=np.float32))
    with pytest.raises(InvalidInputError, match="makes 384-d vectors but .* holds 8-d vectors"):
        ingest(s, tmp_path / "small.npy", "small", model="all-MiniLM-L6-v2", encoders={"text": minilm})


def test_deletes_through_the_collection_facade_keep_the_collection_whole(tmp_path: Path, vecs: np.ndarray) -> None:
    """Deleting through ``Collection`` on an ingested collection: the second index (sharing the point store with
    the first) opened after the first delete failed its count check, and after the delete the manifest still
    recorded the old count, so every new reader and `verify` called the collection damaged."""
    from retrieval.collection import Collection
    from retrieval.verify import verify

    f = tmp_path / "emb.npy"
    np.save(f, vecs)
    s = mk(tmp_path)
    ingest(s, f, name="del", indexes=["flat", "ivf"], qdrant="edge")
    with Retriever(s, "del") as r:
        gone = sorted(r.store("flat").ids())[:7]
    with Collection(s, "del", read_only=False) as c:
        assert c.delete(gone) == {"qdrant": 7, "flat": 7, "ivf": 0}  # the kinds share one point store
    assert load_collection(s.data_dir, "del").count == N - 7
    rep = verify(s, "del")
    assert rep.ok, rep.differences
    with Retriever(s, "del") as r:
        for index in ("qdrant", "flat", "ivf"):
            st = r.store(index)
            assert st.count() == N - 7 and not set(gone) & set(st.ids()), index
    with Collection(s, "del", read_only=False) as c:  # and back: an upsert recorded the same way
        c.upsert(gone, vecs[:7], [{} for _ in gone])
    assert load_collection(s.data_dir, "del").count == N and verify(s, "del").ok


def test_verify_does_not_call_edges_float_round_trip_damage(tmp_path: Path, vecs: np.ndarray) -> None:
    """Payload doubles of 17 significant digits: Qdrant Edge returns some with their last digit changed (README,
    payload numbers), and verify reported each as 'payload differs' and exited 1 on a clean ingest."""
    from retrieval.verify import same_value, verify

    rng = np.random.default_rng(0)
    xs = (rng.random(N) * 10_000).tolist()
    f = write_parquet(tmp_path / "f.parquet", {"emb": [v.tolist() for v in vecs], "x": xs})
    s = mk(tmp_path)
    ingest(s, f, "floats", vector_column="emb", indexes=["flat"], qdrant="edge")
    rep = verify(s, "floats")
    assert rep.ok, rep.differences[:3]
    assert same_value(9373.711634780513, 9373.711634780511) and not same_value(9373.7116, 9373.7117)
    assert same_value([1.0, {"a": 2}], [1, {"a": 2}]) and not same_value({"a": 1}, {"a": 1, "b": 2})
