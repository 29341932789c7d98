"""Keyword and hybrid search through the collection facade and the Retriever (issue 27 items 1-3): the keyword leg
answers alike on flat, Qdrant Edge and qdrant-client local mode, filters pre-filter both legs, writes reach the leg
on every engine, a collection without the leg says how to build it, and the lexical case the issue measured
(STS-B sentences with unique part codes) is found first by hybrid search far more often than by dense search."""

from __future__ import annotations

import csv
import json
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from retrieval.collection import Collection, CollectionManifest, VectorSpace, save_collection
from retrieval.errors import InvalidInputError
from retrieval.keyword.bm25 import average_length
from retrieval.keyword.fusion import Fusion
from retrieval.keyword.spec import KeywordSpec
from retrieval.keyword.tokenize import tokenize
from retrieval.retriever import Retriever
from retrieval.settings import QdrantSettings, Settings
from retrieval.stores import Hit, SearchParams

DIM = 16


@pytest.fixture(scope="module")
def sentences() -> list[str]:
    from ingest.corpora.stsb import read_pairs

    return list(dict.fromkeys(s for p in read_pairs("dev") for s in (p.s1, p.s2)))[:1000]


def vectors(texts: list[str]) -> np.ndarray:
    """A synthetic dense leg: a seeded vector per text (the same text, the same vector)."""
    out = np.stack([np.random.default_rng(zlib.crc32(t.encode())).standard_normal(DIM) for t in texts])
    return out.astype(np.float32)


def build(
    settings: Settings, name: str, indexes: list[str], texts: list[str], keyword: bool = True, mode: str = "edge"
) -> None:
    """A complete text collection of these texts (payload: text, g = i % 3, n = i) under ``name``."""
    lengths = [len(tokenize(t)) for t in texts]
    m = CollectionManifest(
        name=name,
        corpus="test",
        corpus_fingerprint="",
        modality="text",
        vectors={"text": VectorSpace(encoder="text", model="m", fingerprint="fake:16", dim=DIM)},
        indexes=indexes,
        qdrant_mode=mode if "qdrant" in indexes else None,
        keyword=KeywordSpec(avgdl=average_length(lengths)) if keyword else None,
    )
    s = settings.with_qdrant_mode(mode) if "qdrant" in indexes else settings
    coll = Collection(s, name, read_only=False, manifest=m)
    for index in indexes:
        coll.store(index, "text", create=True)
    coll.save()
    ids = [f"d{i}" for i in range(len(texts))]
    coll.upsert(ids, vectors(texts), [{"text": t, "g": i % 3, "n": i} for i, t in enumerate(texts)])
    coll.build()
    coll.flush()
    coll.close()
    m.count, m.complete = len(texts), True
    save_collection(settings.data_dir, m)


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory, sentences: list[str]) -> Settings:
    s = Settings(data_dir=tmp_path_factory.mktemp("hybrid") / "data", qdrant=QdrantSettings(mode="edge"))
    build(s, "e", ["flat", "hnsw", "qdrant"], sentences, mode="edge")
    build(s, "l", ["flat", "qdrant"], sentences, mode="local")
    return s


def queries(sentences: list[str], n: int = 40) -> list[str]:
    rng = np.random.default_rng(11)
    picks = rng.choice(len(sentences), n, replace=False)
    return [" ".join(tokenize(sentences[i])[:5]) for i in picks]


def tie_groups(hits: list[Hit]) -> list[tuple[float, set[str]]]:
    out: list[tuple[float, set[str]]] = []
    for h in hits:
        if out and abs(out[-1][0] - h.score) <= 1e-5 * max(1.0, abs(h.score)):
            out[-1][1].add(h.id)
        else:
            out.append((h.score, {h.id}))
    return out


def assert_same_ranking(a: list[Hit], b: list[Hit]) -> None:
    """The same scores rank by rank, and the same ids but for the order within ties (and which of the tied ones
    made the cut at k)."""
    assert len(a) == len(b)
    np.testing.assert_allclose([h.score for h in a], [h.score for h in b], rtol=1e-5, atol=1e-6)
    ga, gb = tie_groups(a), tie_groups(b)
    assert len(ga) == len(gb)
    for i, ((_, ia), (_, ib)) in enumerate(zip(ga, gb, strict=True)):
        if i < len(ga) - 1:
            assert ia == ib


def overlap(a: list[Hit], b: list[Hit]) -> float:
    return len({h.id for h in a} & {h.id for h in b}) / max(len(a), 1)


def test_the_keyword_leg_answers_alike_on_flat_edge_and_local_mode(engines: Settings, sentences: list[str]) -> None:
    e, loc = Collection(engines, "e"), Collection(engines, "l")
    shares = []
    for q in queries(sentences):
        flat = e.search("flat", text=q, k=10, mode="keyword")
        assert len(flat) == 10
        assert_same_ranking(flat, e.search("qdrant", text=q, k=10, mode="keyword"))
        assert_same_ranking(flat, loc.search("qdrant", text=q, k=10, mode="keyword"))
        assert e.search("hnsw", text=q, k=10, mode="keyword") == flat  # every FAISS kind: the same leg
        shares.append(overlap(flat, e.search("qdrant", text=q, k=10, mode="keyword")))
    assert np.mean(shares) >= 0.95
    e.close()
    loc.close()


def test_hybrid_answers_alike_on_flat_and_qdrant(engines: Settings, sentences: list[str]) -> None:
    e, loc = Collection(engines, "e"), Collection(engines, "l")
    shares: dict[str, list[float]] = {"edge": [], "local": []}
    same: dict[str, list[bool]] = {"edge": [], "local": []}
    for q in queries(sentences, 30):
        vec = vectors([q])[0]
        for fusion in (Fusion("rrf"), Fusion("dbsf", alpha=0.3)):
            flat = e.search("flat", vector=vec, text=q, k=10, mode="hybrid", fusion=fusion)
            assert len(flat) == 10
            local = loc.search("qdrant", vector=vec, text=q, k=10, mode="hybrid", fusion=fusion)
            shares["local"].append(overlap(flat, local))
            same["local"].append([h.id for h in local] == [h.id for h in flat])
            edge = e.search("qdrant", vector=vec, text=q, k=10, mode="hybrid", fusion=fusion)
            shares["edge"].append(overlap(flat, edge))
            same["edge"].append([h.id for h in edge] == [h.id for h in flat])
    seen = {k: (float(np.mean(shares[k])), float(np.mean(same[k]))) for k in shares}
    # local mode searches exactly, like flat: the same lists; Edge's HNSW: the same top-10 but rarely
    assert seen["local"][0] >= 0.99 and seen["local"][1] >= 0.9 and seen["edge"][0] >= 0.95, seen
    e.close()
    loc.close()


def test_filters_prefilter_both_legs_and_k_hits_come_whenever_k_points_match(
    engines: Settings, sentences: list[str]
) -> None:
    coll = Collection(engines, "e")
    q = queries(sentences, 1)[0]
    vec = vectors([q])[0]
    for index in ("flat", "hnsw", "qdrant"):
        everyone = {h.id: h.score for h in coll.search(index, text=q, k=1000, mode="keyword")}
        some = coll.search(index, text=q, k=1000, mode="keyword", filter={"g": 1})
        assert some and all(h.payload["g"] == 1 for h in some)
        assert {h.id for h in some} == {i for i in everyone if int(i[1:]) % 3 == 1}  # a pre-filter
        assert all(abs(everyone[h.id] - h.score) <= 1e-4 * h.score for h in some)  # IDF stays collection-wide
        hybrid = coll.search(index, vector=vec, text=q, k=10, mode="hybrid", filter={"g": 2})
        assert len(hybrid) == 10 and all(h.payload["g"] == 2 for h in hybrid)
        # 7 points match and no document holds the term: the dense leg still gives k (and no more than match)
        few = {"n": {"$lt": 7}}
        got = coll.search(index, vector=vec, text="zzzunknownterm", k=5, mode="hybrid", filter=few)
        assert len(got) == 5 and all(h.payload["n"] < 7 for h in got)
        assert len(coll.search(index, vector=vec, text=q, k=10, mode="hybrid", filter=few)) == 7
        assert coll.search(index, text="zzzunknownterm", k=5, mode="keyword") == []
    coll.close()


@pytest.mark.parametrize("mode", ["edge", "local"])
def test_upserts_and_deletes_reach_the_keyword_leg_of_every_engine(
    settings: Settings, sentences: list[str], mode: str
) -> None:
    build(settings, "w", ["flat", "qdrant"], sentences[:100], mode=mode)
    coll = Collection(settings, "w", read_only=False)
    coll.upsert(
        ["z1", "d5"],
        vectors(["zebra", "x"]),
        [{"text": "a zebra crossing", "g": 0, "n": -1}, {"text": "the okapi replaced it", "g": 0, "n": 5}],
    )
    coll.delete(["d6"])
    for index in ("flat", "qdrant"):
        assert [h.id for h in coll.search(index, text="zebra", k=3, mode="keyword")] == ["z1"]
        assert [h.id for h in coll.search(index, text="okapi", k=3, mode="keyword")] == ["d5"]
        old5 = " ".join(set(tokenize(sentences[5])) - set(tokenize("the okapi replaced it")))  # its old words
        assert "d5" not in [h.id for h in coll.search(index, text=old5, k=100, mode="keyword")]
        assert "d6" not in [h.id for h in coll.search(index, text=sentences[6], k=100, mode="keyword")]
    for q in queries(sentences[:100], 10):
        assert_same_ranking(
            coll.search("flat", text=q, k=10, mode="keyword"), coll.search("qdrant", text=q, k=10, mode="keyword")
        )
    coll.close()


def test_a_collection_without_the_leg_names_the_command_that_builds_it(
    settings: Settings, sentences: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from simlookup.cli import main

    build(settings, "old", ["flat", "qdrant"], sentences[:200], keyword=False)
    with Collection(settings, "old") as coll:
        for mode in ("keyword", "hybrid"):
            with pytest.raises(InvalidInputError, match="simlookup build-keyword old"):
                coll.search("flat", vector=vectors(["q"])[0], text="a man", k=5, mode=mode)
    assert main(["--data-dir", str(settings.data_dir), "build-keyword", "old", "--json"]) == 0
    done = json.loads(capsys.readouterr().out)  # Collection(..., read_only=False).build_keyword() in Python
    assert done["documents"] == 200 and set(done["indexes"]) == {"faiss", "qdrant"}
    assert main(["--data-dir", str(settings.data_dir), "build-keyword", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
    assert done["avgdl"] == pytest.approx(average_length([len(tokenize(t)) for t in sentences[:200]]), rel=1e-3)
    with Collection(settings, "old") as coll:
        assert coll.manifest.keyword is not None
        for q in queries(sentences[:200], 10):
            assert_same_ranking(
                coll.search("flat", text=q, k=10, mode="keyword"), coll.search("qdrant", text=q, k=10, mode="keyword")
            )


class FakeEncoder:
    """The synthetic dense leg as a text encoder (fingerprint ``fake:16``)."""

    dim = DIM
    fingerprint = "fake:16"

    def encode_text(self, texts: list[str], batch_size: int | None = None) -> np.ndarray:
        return vectors(texts)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return vectors(texts)

    def encode_query(self, text: str) -> np.ndarray:
        return vectors([text])[0]


def test_retriever_search_text_in_every_mode(engines: Settings, sentences: list[str]) -> None:
    q = queries(sentences, 1)[0]
    with Retriever(engines, "e", encoders={"text": FakeEncoder()}) as r:  # type: ignore[dict-item]
        dense = r.search_text(q, index="flat", k=5)
        assert "mode" not in dense.to_dict()  # the dense answer's JSON is as before
        kw = r.search_text(q, index="qdrant", k=5, mode="keyword")
        assert kw.to_dict()["mode"] == "keyword" and "encode_ms" not in kw.timings and len(kw.hits) == 5
        hy = r.search_text(q, index="hnsw", k=5, mode="hybrid", fusion=Fusion("dbsf"), filter={"g": 0})
        assert hy.mode == "hybrid" and set(hy.timings) == {"encode_ms", "search_ms"} and len(hy.hits) == 5
        assert all(h.payload["g"] == 0 for h in hy.hits)
        assert r.search_text("?!", index="flat", k=5, mode="keyword").warnings
        with pytest.raises(InvalidInputError, match="unknown search mode"):
            r.search_text(q, mode="sparse")
        with pytest.raises(InvalidInputError, match="no index parameters"):
            r.search_text(q, index="hnsw", mode="keyword", params=SearchParams(hnsw_ef=64))
        with pytest.raises(InvalidInputError, match="text query"):
            r.search(b"not text", kind="image", mode="keyword")
        with pytest.raises(InvalidInputError, match="empty"):
            r.search_text("  ", mode="hybrid")


# ---- the lexical case of the issue: unique part codes, found by the keyword leg ----
@pytest.fixture(scope="module")
def parts(
    tmp_path_factory: pytest.TempPathFactory, sentences: list[str], minilm: Any
) -> tuple[Settings, dict[str, str]]:
    from ingest.job import IngestOptions, run_ingest

    d = tmp_path_factory.mktemp("parts")
    rng = np.random.default_rng(27)
    codes = [f"QX-{n}" for n in rng.choice(np.arange(1000, 10000), 600, replace=False)]
    path = d / "parts.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "text"])
        for i, (s, c) in enumerate(zip(sentences[:600], codes, strict=True)):
            w.writerow([f"p{i}", f"{s} Part number {c}."])
    s = Settings(data_dir=d / "data", qdrant=QdrantSettings(mode="edge"))
    run_ingest(s, IngestOptions(str(path), "parts", indexes=["flat"], progress=False), encoders={"text": minilm})
    return s, {f"p{i}": c for i, c in enumerate(codes)}


def test_hybrid_finds_the_part_code_first_far_more_often_than_dense(
    parts: tuple[Settings, dict[str, str]], minilm: Any
) -> None:
    s, codes = parts
    asked = list(codes.items())[::6]  # 100 queries
    first: dict[tuple[str, str], float] = {}
    mrr: dict[tuple[str, str], float] = {}
    with Retriever(s, "parts", encoders={"text": minilm}) as r:
        assert r.manifest.keyword is not None  # the ingest built the keyword leg by default
        assert r.search_text(f"part {asked[0][1]}", k=1, mode="hybrid", fusion=Fusion("dbsf")).hits[0].id == asked[0][0]
        vecs = minilm.encode_queries([f"part {code}" for _, code in asked])  # each query encoded once
        for index in ("flat", "qdrant"):
            for mode, fusion in (("dense", None), ("keyword", None), ("rrf", Fusion("rrf")), ("dbsf", Fusion("dbsf"))):
                how = mode if mode in ("dense", "keyword") else "hybrid"
                ranks = []
                for (pid, code), vec in zip(asked, vecs, strict=True):
                    got = r.collection.search(index, vector=vec, text=f"part {code}", k=10, mode=how, fusion=fusion)
                    ids = [h.id for h in got]
                    ranks.append(ids.index(pid) + 1 if pid in ids else np.inf)
                first[index, mode] = float(np.mean(np.array(ranks) == 1))
                mrr[index, mode] = float(np.mean(1 / np.array(ranks)))
    for index in ("flat", "qdrant"):
        assert first[index, "keyword"] == 1.0, first
        assert first[index, "dense"] <= 0.3, first  # the sentence's meaning says nothing of its code
        # RRF (the default) lifts the code's document; DBSF, whose keyword leg stands out by its score, finds it
        assert first[index, "rrf"] >= first[index, "dense"] + 0.05 and mrr[index, "rrf"] >= mrr[index, "dense"] + 0.1
        assert first[index, "dbsf"] >= 0.9, first


def test_the_setting_turns_the_ingest_s_keyword_leg_off(
    parts: tuple[Settings, dict[str, str]], minilm: Any, tmp_path: Path
) -> None:
    from ingest.job import IngestOptions, run_ingest

    s = parts[0].model_copy(update={"keyword": parts[0].keyword.model_copy(update={"enabled": False})})
    csv_path = tmp_path / "few.csv"
    csv_path.write_text("id,text\na,A man plays a flute.\nb,Part number QX-1.\n")
    run_ingest(s, IngestOptions(str(csv_path), "off", indexes=["flat"], progress=False), encoders={"text": minilm})
    with Collection(s, "off") as coll:
        assert coll.manifest.keyword is None
        with pytest.raises(InvalidInputError, match="simlookup build-keyword off"):
            coll.search("qdrant", text="flute", k=2, mode="keyword")


def test_a_read_only_keyword_search_follows_a_writer_that_changed_points(tmp_path: Path, sentences: list[str]) -> None:
    """A writer in another process deletes and replaces points and dies before it flushes: a read-only
    collection's keyword search reloads and answers from the new points (before: SnapshotMovedError raised)."""
    import os
    import subprocess
    import sys
    import textwrap

    s = Settings(data_dir=tmp_path / "data")
    build(s, "r", ["flat"], sentences[:100])
    ro = Collection(s, "r")
    assert [h.id for h in ro.search("flat", text=sentences[3], k=1, mode="keyword")] == ["d3"]
    tests = str(Path(__file__).resolve().parent)
    code = textwrap.dedent(
        f"""
        import os, sys
        sys.path[:0] = [{str(Path(tests).parent)!r}, {tests!r}]
        from test_hybrid import vectors
        from retrieval.collection import Collection
        from retrieval.settings import Settings
        c = Collection(Settings(data_dir={str(s.data_dir)!r}), "r", read_only=False)
        c.delete(["d3"])
        c.upsert(["d4"], vectors(["x"]), [{{"text": "the okapi replaced it", "g": 0, "n": 4}}])
        os._exit(0)
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": ""})
    assert "d3" not in [h.id for h in ro.search("flat", text=sentences[3], k=10, mode="keyword")]
    assert [h.id for h in ro.search("flat", text="okapi", k=3, mode="keyword")] == ["d4"]
    ro.close()
