"""The entry points on the edges a follow-up adversarial pass of issue 21 found: vectors beyond float32 (CLI,
REST, the Retriever), the missing-field hint on every engine and filter form, ingests that write nothing, rows
whose payload holds an integer beyond 64 bits, and JSONL strings holding U+2028, U+2029 or U+0085 (line
separators to ``str.splitlines``, plain characters to JSON). No model is loaded: the collections hold vectors
brought as they are."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

from ingest.cache import Shard
from ingest.corpora.files import FileCorpus, ImageFolderCorpus, text_lines
from ingest.job import IngestOptions, rejects_of, run_ingest
from ingest.rows import encode_rows, reject_unstorable
from retrieval.collection import VectorSpace, load_collection
from retrieval.errors import InvalidInputError, SimlookupError, StoreNotFoundError
from retrieval.retriever import Retriever
from retrieval.settings import QdrantSettings, Settings
from simlookup.cli import main

N, D = 40, 8
RNG = np.random.default_rng(5)
VECS = RNG.normal(size=(N, D)).astype(np.float32)
PAYLOADS = [{"flag": i % 2 == 0, "meta": {"lang": "en"}, "tags": ["a"], "n": i} for i in range(N)]
SEPARATORS = "\u2028\u2029\u0085"


def parquet(path: Path, vecs: np.ndarray, payloads: list[dict[str, Any]], ids: list[str] | None = None) -> Path:
    cols = {
        "id": ids or [f"r{i}" for i in range(len(vecs))],
        "vector": [v.tolist() for v in vecs],
        "payload": [json.dumps(p) for p in payloads],
    }
    pq.write_table(pa.table(cols), path)
    return path


def ingest(s: Settings, src: Path, name: str, indexes: list[str], qdrant: str = "none", **kw: Any) -> Any:
    opts = IngestOptions(
        str(src),
        name,
        indexes=indexes,
        qdrant=qdrant,
        vector_column="vector",
        payload_column="payload",
        progress=False,
        **kw,
    )
    return run_ingest(s, opts)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Three collections of the same points: flat + Qdrant Edge, Qdrant Edge alone, qdrant-client local mode."""
    tmp = tmp_path_factory.mktemp("entry")
    src = parquet(tmp / "pts.parquet", VECS, PAYLOADS)
    s = Settings(data_dir=tmp / "data", qdrant=QdrantSettings(mode="edge"))
    ingest(s, src, "both", ["flat"], "edge")
    ingest(s, src, "qonly", [], "edge")
    ingest(s, src, "loc", [], "local")
    return s


def cli(s: Settings, *args: str) -> int:
    return main(["--data-dir", str(s.data_dir), *args])


# ------------------------------------------------------------------------------ vectors beyond float32
HUGE = [[1e39] + [0.0] * (D - 1), [0.5] * (D - 1) + [-3.5e38]]


@pytest.mark.parametrize("index", ["flat", "qdrant"])
@pytest.mark.parametrize("vec", HUGE)
def test_cli_refuses_a_vector_beyond_float32(
    root: Settings, index: str, vec: list[float], capsys: pytest.CaptureFixture[str]
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rc = cli(root, "search", "--vector", json.dumps(vec), "--name", "both", "--index", index)
    err = capsys.readouterr().err
    assert rc == 2 and "float32" in err and "Warning" not in err, err


def test_cli_refuses_an_integer_beyond_float64(root: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    vec = "[1" + "0" * 400 + ", " + ", ".join(["0"] * (D - 1)) + "]"  # json reads an int: float() overflows
    assert cli(root, "search", "--vector", vec, "--name", "both") == 2
    assert "float32" in capsys.readouterr().err


def test_retriever_refuses_a_vector_beyond_float32(root: Settings) -> None:
    with Retriever(root, "both") as r, warnings.catch_warnings():
        warnings.simplefilter("error")
        for index in ("flat", "qdrant"):
            with pytest.raises(InvalidInputError, match="float32"):
                r.search_vector(np.asarray(HUGE[0]), index=index)
            with pytest.raises(InvalidInputError, match="float32"):
                r.search_vector(HUGE[1], index=index)  # type: ignore[arg-type]


def test_rest_refuses_a_vector_beyond_float32(root: Settings) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from simlookup.server.app import create_app

    with TestClient(create_app(root, "both")) as c, warnings.catch_warnings():
        warnings.simplefilter("error")
        for index in ("flat", "qdrant"):
            r = c.post("/search", json={"vector": HUGE[0], "k": 2, "index": index})
            assert r.status_code == 422 and "float32" in r.text, r.text
        assert c.post("/search", json={"vector": VECS[0].tolist(), "k": 2}).status_code == 200


# ------------------------------------------------------------------------------ the missing-field hint
FORMS: list[tuple[list[str], set[str]]] = [
    (["flg=true"], {"flg"}),
    (['{"flg": true}'], {"flg"}),
    (['{"$or": [{"flag": true}, {"flg": 1}]}'], {"flg"}),  # hits come back: the hint was missing on Qdrant
    (['{"$and": [{"flag": true}, {"$not": {"meta.lng": "en"}}]}'], {"meta.lng"}),
    (['{"flg": {"$ne": 1}}'], {"flg"}),
    (["flag=true", "meta.lng=en"], {"meta.lng"}),
    (["meta.lang=en"], set()),
    (['{"tags": {"$exists": false}}'], set()),
    (["nope=null"], {"nope"}),
]


@pytest.mark.parametrize(
    ("name", "index"), [("both", "flat"), ("both", "qdrant"), ("qonly", "qdrant"), ("loc", "qdrant")]
)
def test_the_missing_field_hint_on_every_engine_and_form(
    root: Settings, name: str, index: str, capsys: pytest.CaptureFixture[str]
) -> None:
    vec = json.dumps(VECS[0].tolist())
    for filters, hinted in FORMS:
        args = [a for f in filters for a in ("--filter", f)]
        assert cli(root, "search", "--vector", vec, "--name", name, "--index", index, "-k", "5", *args, "--json") == 0
        out = capsys.readouterr()
        doc = json.loads(out.out)
        said = {w.split("has a field ")[1].split(" ")[0].strip("'") for w in doc.get("warnings", []) if "no point" in w}
        assert said == hinted, (filters, out.err)
        assert all(f"has a field '{f}'" in out.err for f in hinted)


# ------------------------------------------------------------------------------ ingests that write nothing
def test_an_ingest_into_no_index_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = parquet(tmp_path / "p.parquet", VECS[:3], PAYLOADS[:3])
    s = Settings(data_dir=tmp_path / "data")
    with pytest.raises(InvalidInputError, match="no index"):
        IngestOptions(str(src), "x", indexes=[], qdrant="none")
    rc = cli(s, "ingest", str(src), "--name", "x", "--index", "", "--qdrant", "none", "--vector-column", "vector")
    assert rc == 2 and "no index" in capsys.readouterr().err
    assert not (s.data_dir / "collections" / "x.json").exists()


def test_an_ingest_that_rejects_every_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every row rejected: an error naming the rejects file; a new collection is not created, an existing one
    keeps its points and manifest (before: exit 1 with a summary, the collection marked complete, and a re-ingest
    emptied the collection it updated)."""
    s = Settings(data_dir=tmp_path / "data", qdrant=QdrantSettings(mode="edge"))
    bad = parquet(tmp_path / "bad.parquet", np.zeros((4, D), np.float32), PAYLOADS[:4])  # zero: no cosine
    with pytest.raises(SimlookupError, match=r"all 4 rows .*rejects/new\.jsonl") as exc:
        ingest(s, bad, "new", ["flat"], "edge")
    assert "zero" in str(exc.value)  # the reasons, counted
    with pytest.raises(StoreNotFoundError):
        load_collection(s.data_dir, "new")
    assert len(rejects_of(s.data_dir, "new")) == 4
    assert not (s.data_dir / "faiss" / "new").exists() and not (s.data_dir / "qdrant-edge" / "new").exists()

    good = parquet(tmp_path / "good.parquet", VECS[:4], PAYLOADS[:4])
    ingest(s, good, "kept", ["flat"], "edge")
    before = load_collection(s.data_dir, "kept")
    for append in (False, True):
        with pytest.raises(SimlookupError, match=r"rejects/kept\.jsonl"):
            ingest(s, bad, "kept", ["flat"], "edge", append=append)
        assert load_collection(s.data_dir, "kept") == before
        with Retriever(s, "kept") as r:
            assert {i: r.store(i).count() for i in ("flat", "qdrant")} == {"flat": 4, "qdrant": 4}
            assert not r.warnings()  # complete, as before

    rc = cli(
        s,
        "ingest",
        str(bad),
        "--name",
        "viacli",
        "--index",
        "flat",
        "--qdrant",
        "none",
        "--vector-column",
        "vector",
        "--payload-column",
        "payload",
        "--no-progress",
    )
    err = capsys.readouterr().err
    assert rc == 2 and "rejects/viacli.jsonl" in err, err


# ----------------------------------------------------------------------- integers beyond 64 bits, ingested
def test_a_row_holding_an_integer_beyond_64_bits_is_rejected(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path / "data", qdrant=QdrantSettings(mode="edge"))
    pls = [dict(p) for p in PAYLOADS[:5]]
    pls[1]["v"] = 2**64
    pls[3]["meta"] = {"id": -(10**30)}
    summary = ingest(s, parquet(tmp_path / "big.parquet", VECS[:5], pls), "big", ["flat"], "edge")
    assert summary.ingested == 3 and summary.rejected == 2
    why = {r["id"]: r["reason"] for r in rejects_of(s.data_dir, "big")}
    assert set(why) == {"r1", "r3"} and "'v'" in why["r1"] and "'meta.id'" in why["r3"]
    assert all("64-bit" in w for w in why.values())


def test_a_cached_shard_holding_an_integer_beyond_64_bits_is_rejected_row_by_row() -> None:
    """Shards cached before the rule still hold such rows: the ingest rejects them instead of failing the write."""
    pls: list[dict[str, Any]] = [{"v": 1}, {"v": {"w": [2**70]}}, {"v": "2" * 30}]
    shard = Shard(0, 3, ["a", "b", "c"], VECS[:3], pls)
    out = reject_unstorable(shard, "text")
    assert out.ids == ["a", "c"] and np.array_equal(out.vectors, VECS[[0, 2]]) and out.payloads == [pls[0], pls[2]]
    assert [(r["id"], r["space"]) for r in out.rejects] == [("b", "text")] and "'v.w[0]'" in out.rejects[0]["reason"]
    assert reject_unstorable(out, "text") is out  # nothing to reject: the shard as it is


class _FakeText:
    dim = D

    def encode_text(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        return np.ones((len(texts), D), np.float32)


def test_text_rows_holding_an_integer_beyond_64_bits_are_rejected() -> None:
    rows: list[dict[str, Any]] = [{"id": "a", "text": "fine", "v": 2**63 - 1}, {"id": "b", "text": "big", "v": [2**64]}]
    space = VectorSpace(name="text", encoder="text", model="m", fingerprint="f", dim=D)
    ids, vecs, pls, rejects = encode_rows(space, _FakeText(), rows, 8, 10**6)
    assert ids == ["a"] and pls[0]["v"] == 2**63 - 1 and len(vecs) == 1
    assert [r["id"] for r in rejects] == ["b"] and "'v[0]'" in rejects[0]["reason"]


# ------------------------------------------------------------------------ U+2028, U+2029, U+0085 in JSONL
def test_text_lines_split_on_newline_only() -> None:
    assert text_lines(f"a{SEPARATORS}b\nc\n") == [f"a{SEPARATORS}b", "c"]
    assert text_lines("a\n\nb") == ["a", "", "b"] and text_lines("") == [] and text_lines("x") == ["x"]


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_jsonl_strings_may_hold_unicode_line_separators(tmp_path: Path, suffix: str) -> None:
    rows = [{"id": f"d{i}", "text": f"one{c}two", "note": f"x{c}y"} for i, c in enumerate(SEPARATORS)]
    f = tmp_path / f"c{suffix}"
    f.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    assert SEPARATORS[0] in f.read_text(encoding="utf-8")  # raw, not escaped
    ds = FileCorpus(f).load()
    assert ds["id"] == ["d0", "d1", "d2"] and ds["text"] == [r["text"] for r in rows]


def test_csv_cells_may_hold_unicode_line_separators(tmp_path: Path) -> None:
    f = tmp_path / "c.csv"
    f.write_text("id,text,note\n" + "".join(f"d{i},one{c}two,x{c}y\n" for i, c in enumerate(SEPARATORS)))
    ds = FileCorpus(f).load()
    assert ds["id"] == ["d0", "d1", "d2"] and ds["text"] == [f"one{c}two" for c in SEPARATORS]


def test_captions_jsonl_may_hold_unicode_line_separators(tmp_path: Path) -> None:
    lines = [
        json.dumps({"file": f"{i}.png", "caption": f"a{c}b"}, ensure_ascii=False) for i, c in enumerate(SEPARATORS)
    ]
    (tmp_path / "captions.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert ImageFolderCorpus(tmp_path).captions == {f"{i}.png": f"a{c}b" for i, c in enumerate(SEPARATORS)}


def test_beir_jsonl_may_hold_unicode_line_separators(tmp_path: Path) -> None:
    from ingest.beir import _jsonl

    f = tmp_path / "corpus.jsonl"
    f.write_text(
        "".join(
            json.dumps({"_id": str(i), "text": f"a{c}b"}, ensure_ascii=False) + "\n" for i, c in enumerate(SEPARATORS)
        ),
        encoding="utf-8",
    )
    assert [(n, o["text"]) for n, o in _jsonl(f)] == [(i + 1, f"a{c}b") for i, c in enumerate(SEPARATORS)]


def test_npy_side_files_may_hold_unicode_line_separators(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path / "data")
    np.save(tmp_path / "v.npy", VECS[:3])
    (tmp_path / "ids.txt").write_text("".join(f"id{c}{i}\n" for i, c in enumerate(SEPARATORS)), encoding="utf-8")
    (tmp_path / "p.jsonl").write_text(
        "".join(json.dumps({"note": f"x{c}y"}, ensure_ascii=False) + "\n" for c in SEPARATORS), encoding="utf-8"
    )
    opts = IngestOptions(
        str(tmp_path / "v.npy"),
        "side",
        indexes=["flat"],
        qdrant="none",
        progress=False,
        id_column=str(tmp_path / "ids.txt"),
        payload_column=str(tmp_path / "p.jsonl"),
    )
    assert run_ingest(s, opts).ingested == 3
    with Retriever(s, "side") as r:
        got = r.store("flat").fetch([f"id{c}{i}" for i, c in enumerate(SEPARATORS)])
    assert sorted(p["note"] for _, p in got.values()) == sorted(f"x{c}y" for c in SEPARATORS)
