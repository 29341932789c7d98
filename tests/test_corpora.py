"""Corpora: STS-B parsing, files, HF datasets saved to disk, image folders, Fashion-MNIST."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ingest.corpora import CorpusError, get_corpus, list_corpora
from ingest.corpora.stsb import read_pairs


def test_stsb_counts_and_ids() -> None:
    c = get_corpus("stsb")
    ds = c.load()
    assert len(ds) == 15_487
    assert len(set(ds["id"])) == len(ds)
    assert set(ds.column_names) >= {"id", "text", "split", "genre", "year", "source"}
    assert set(ds["split"]) == {"train", "dev", "test"}
    assert all(isinstance(y, int) and 2012 <= y <= 2017 for y in ds["year"][:500])
    assert c.load()["id"][:50] == ds["id"][:50]  # stable
    assert len(get_corpus("stsb").load(limit=10)) == 10


def test_stsb_extra_field_lines_parsed() -> None:
    pairs = {s: read_pairs(s) for s in ("train", "dev", "test")}
    assert [len(p) for p in pairs.values()] == [5749, 1500, 1379]
    headline = [p for p in pairs["train"] if p.s1.startswith("Driver backs into stroller")]
    assert headline and headline[0].s2 == "Driver backs into mom, stroller with child then drives off"
    assert headline[0].year == 2016 and headline[0].score == 4.0


def test_csv_and_jsonl(tmp_path: Path) -> None:
    csv = tmp_path / "docs.csv"
    csv.write_text("id,body,lang\na1,hello world,en\na2,bonjour,fr\na3,,en\n")
    ds = get_corpus(str(csv), text_column="body").load()
    assert ds["id"] == ["a1", "a2", "a3"] and ds["text"][:2] == ["hello world", "bonjour"]
    assert ds["lang"] == ["en", "fr", "en"]
    jl = tmp_path / "docs.jsonl"
    jl.write_text("\n".join(json.dumps({"text": f"t{i}", "n": i}) for i in range(4)))
    ds = get_corpus(str(jl)).load()
    assert ds["id"] == ["row-0", "row-1", "row-2", "row-3"] and ds["n"] == [0, 1, 2, 3]
    with pytest.raises(CorpusError, match="no text column 'body'"):
        get_corpus(str(jl), text_column="body").load()


def test_duplicate_ids_refused(tmp_path: Path) -> None:
    csv = tmp_path / "d.csv"
    csv.write_text("id,text\nx,a\nx,b\n")
    with pytest.raises(CorpusError, match="duplicate"):
        get_corpus(str(csv)).load()


def test_hf_dataset_saved_to_disk(tmp_path: Path) -> None:
    from datasets import Dataset, DatasetDict

    d = tmp_path / "saved"
    DatasetDict({"validation": Dataset.from_dict({"sentence": ["a b", "c d"], "label": [0, 1]})}).save_to_disk(d)
    ds = get_corpus(f"hf:{d}::validation", text_column="sentence").load()
    assert ds["text"] == ["a b", "c d"] and ds["label"] == [0, 1] and ds["id"] == ["row-0", "row-1"]
    with pytest.raises(CorpusError, match="no split"):
        get_corpus(f"hf:{d}::train").load()


def test_image_folder_with_captions(tmp_path: Path) -> None:
    from PIL import Image

    (tmp_path / "cats").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "cats" / "a.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "b.jpg")
    (tmp_path / "captions.csv").write_text("file,caption\ncats/a.png,a cat\n")
    c = get_corpus(str(tmp_path))
    ds = c.load()
    assert c.spec.modality == "image"
    assert ds["id"] == ["b.jpg", "cats/a.png"]
    assert ds["caption"] == [None, "a cat"] and ds["label"] == ["", "cats"]


def test_unknown_corpus() -> None:
    with pytest.raises(CorpusError, match="unknown corpus"):
        get_corpus("no-such-corpus")
    names = [r["name"] for r in list_corpora()]
    assert "stsb" in names and "fashion-mnist" in names


def fashion_mnist_skip_reason(exc: Exception) -> str:
    """Why the Fashion-MNIST tests skip; names a failed `make data` when .ci/run saw one."""
    failed = os.environ.get("CI_MAKE_DATA_FAILED")
    return f"{failed}: {exc}" if failed else f"Debian dataset-fashion-mnist not installed: {exc}"


def test_skip_reason_names_a_failed_make_data(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI_MAKE_DATA_FAILED", "make data failed in .ci/run")
    assert fashion_mnist_skip_reason(CorpusError("x")).startswith("make data failed in .ci/run")
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert "|| true" not in ci and "CI_MAKE_DATA_FAILED" in ci


def test_fashion_mnist() -> None:
    from ingest.corpora.fashion_mnist import fmnist_dir

    try:
        fmnist_dir()
    except CorpusError as exc:
        pytest.skip(fashion_mnist_skip_reason(exc))
    ds = get_corpus("fashion-mnist").load(limit=25)
    assert len(ds) == 25 and ds[0]["image"].size == (28, 28)
    assert ds[0]["caption"].startswith("a photo of a") and ds[0]["split"] == "train"


def test_csv_ids_and_texts_arrive_as_written(tmp_path: Path) -> None:
    """pandas' type guessing would make 007 → 7 and refuse 001, 1, 1.0 as duplicates of one number."""
    csv = tmp_path / "ids.csv"
    csv.write_text('id,text,n\n007,00123,1\n1,"two, quoted",2\n1.0,three,3\n001,,4\n')
    ds = get_corpus(str(csv)).load()
    rows = {r["id"]: r for r in ds}
    assert set(rows) == {"007", "1", "1.0", "001"}
    assert rows["007"]["text"] == "00123" and rows["1"]["text"] == "two, quoted" and rows["001"]["text"] is None
    assert rows["1.0"]["n"] == 3  # other columns keep their types: numbers stay numbers for range filters
    assert get_corpus(str(csv)).fingerprint() != get_corpus(str(csv), id_column="n").fingerprint()
