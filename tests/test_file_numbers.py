"""File corpora with numbers no table type holds (issue 21 item 7): a 30-digit integer in a CSV column aborted
the whole ingest ("An error occurred while generating the dataset"), a JSONL integer above 64 bits was refused
("Value is too big!"), and JSONL ids were retyped (2 became "2.0"). Ids and texts arrive as written; a CSV column
is numbers only when every cell is a plainly written number within 64 bits; a JSONL value keeps its type."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ingest.corpora import CorpusError, get_corpus
from ingest.corpora.files import SOURCE_PAYLOAD
from ingest.job import IngestOptions, rejects_of, run_ingest
from retrieval.retriever import Retriever
from retrieval.settings import QdrantSettings, Settings

BIG = 123456789012345678901234567890  # 30 digits
INDEXES = ["flat", "hnsw", "qdrant"]  # FAISS and Qdrant Edge


def rows_of(path: Path, **kw: str) -> dict[str, dict]:
    """id → (text, payload as the ingest will store it) of a file corpus."""
    ds = get_corpus(str(path), **kw).load()
    return {r["id"]: {"text": r["text"], **json.loads(r[SOURCE_PAYLOAD])} for r in ds}


def test_csv_column_with_a_30_digit_integer_is_text_as_written(tmp_path: Path) -> None:
    csv = tmp_path / "big.csv"
    csv.write_text(
        "id,text,big,i64,over,n,f,huge_f\n"
        f"{BIG},one,{BIG},{2**63 - 1},{2**63},1,2.5,1{'0' * 400}.5\n"
        f"2,{BIG},7,{-(2**63)},1,2,3.0,1.5\n"
    )
    got = rows_of(csv)
    assert set(got) == {str(BIG), "2"}  # ids as written
    assert got["2"]["text"] == str(BIG)  # a numeric text as written
    assert got[str(BIG)]["big"] == str(BIG) and got["2"]["big"] == "7"  # one cell too big: the column is text
    assert got[str(BIG)]["i64"] == 2**63 - 1 and got["2"]["i64"] == -(2**63)  # within 64 bits: numbers
    assert got[str(BIG)]["over"] == str(2**63) and got["2"]["over"] == "1"
    assert got["2"]["n"] == 2 and got["2"]["f"] == 3.0
    assert got[str(BIG)]["huge_f"] == f"1{'0' * 400}.5"  # its float would be inf: text


def test_jsonl_integers_above_64_bits_are_kept_and_ids_and_texts_arrive_as_written(tmp_path: Path) -> None:
    jl = tmp_path / "big.jsonl"
    jl.write_text(
        '{"id": 100000000000000000000, "text": "hello", "v": 100000000000000000000}\n'
        '{"id": 2, "text": 100000000000000000000, "v": 3, "w": 1e20}\n'
        '{"id": 2.50, "text": 2.50, "v": "3"}\n'
    )
    got = rows_of(jl)
    assert set(got) == {"100000000000000000000", "2", "2.50"}  # was "1e+20", "2.0", "2.5"
    assert got["100000000000000000000"]["v"] == 10**20 and isinstance(got["100000000000000000000"]["v"], int)
    assert got["2"]["text"] == "100000000000000000000" and got["2.50"]["text"] == "2.50"
    assert got["2"]["v"] == 3 and got["2.50"]["v"] == "3" and got["2"]["w"] == 1e20  # own types kept


def test_bad_rows_name_their_line(tmp_path: Path) -> None:
    jl = tmp_path / "bad.jsonl"
    jl.write_text('{"id": "a", "text": "x"}\n\n{"id": "b", "text": }\n')
    with pytest.raises(CorpusError, match=r"bad.jsonl: line 3 is not valid JSON"):
        get_corpus(str(jl)).load()
    jl.write_text('{"id": "a", "text": "x"}\n[1, 2]\n')
    with pytest.raises(CorpusError, match=r"line 2 holds a JSON list, not an object"):
        get_corpus(str(jl)).load()
    jl.write_text('{"id": "a", "text": "x"}\n{"id": "b", "text": ["y"]}\n')
    with pytest.raises(CorpusError, match=r"line 2: the text column 'text' holds a JSON list"):
        get_corpus(str(jl)).load()
    csv = tmp_path / "bad.csv"
    csv.write_text("id,text\na,one\nb,two,surplus\n")
    with pytest.raises(CorpusError, match=r"bad.csv: line 3 has 3 cells but the header names 2 columns"):
        get_corpus(str(csv)).load()


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory, minilm):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("numbers")
    s = Settings(data_dir=tmp / "data", qdrant=QdrantSettings(mode="edge"))
    csv = tmp / "c.csv"
    csv.write_text(f"id,text,big,n\n{BIG},red apple,{BIG},1\n007,green pear,5,2\nc,{BIG},6,3\n")
    jl = tmp / "j.jsonl"
    jl.write_text(
        f'{{"id": {BIG}, "text": "red apple", "v": {10**30}}}\n'
        '{"id": 2.50, "text": "green pear", "v": 3}\n'
        f'{{"id": "c", "text": {BIG}, "v": "x"}}\n'
    )
    opts = {"indexes": ["flat", "hnsw"], "progress": False}
    for name, path in (("c", csv), ("j", jl)):
        summary = run_ingest(s, IngestOptions(str(path), name, **opts), encoders={"text": minilm})  # type: ignore[arg-type]
        # an integer beyond 64 bits: a rejected row naming its field (Qdrant made it a double, FAISS kept it)
        assert (summary.ingested, summary.rejected) == ((3, 0) if name == "c" else (2, 1))
    (why,) = rejects_of(s.data_dir, "j")
    assert why["id"] == str(BIG) and "payload field 'v'" in why["reason"] and "64-bit" in why["reason"]
    return s


@pytest.mark.parametrize("index", INDEXES)
def test_search_results_hold_the_values_as_written(ingested: Settings, index: str, minilm) -> None:  # type: ignore[no-untyped-def]
    with Retriever(ingested, "c") as r:
        hits = {h.id: h.payload for h in r.search_text("red apple", index=index, k=3).hits}
        assert set(hits) == {str(BIG), "007", "c"}
        assert hits[str(BIG)] == {"text": "red apple", "big": str(BIG), "n": 1}
        assert hits["007"]["big"] == "5" and hits["c"]["text"] == str(BIG)
        assert [h.id for h in r.search_text("red apple", index=index, k=1, filter={"big": str(BIG)}).hits] == [
            str(BIG)
        ]
    with Retriever(ingested, "j") as r:
        hits = {h.id: h.payload for h in r.search_text("red apple", index=index, k=3).hits}
        assert set(hits) == {"2.50", "c"}  # the row holding 10**30 was rejected
        assert hits["c"]["text"] == str(BIG) and hits["2.50"] == {"text": "green pear", "v": 3}
        vec = r.store(index).fetch(["c"])["c"][0]
        if vec is not None:  # the numeric text was embedded as written
            np.testing.assert_allclose(vec, minilm.encode_text([str(BIG)])[0], atol=1e-5)
