"""Runs of tied scores at the cut (adversarial pass on issue 27, item 1): a corpus full of equal BM25 scores and
duplicate vectors gives the same top-k on flat, hnsw, Qdrant Edge and qdrant-client local mode, in keyword and in
hybrid search: every document tied with the k-th is fetched, ties are ordered by id, one tie rule on every engine."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.collection import Collection, CollectionManifest, VectorSpace, save_collection
from retrieval.keyword.bm25 import average_length
from retrieval.keyword.fusion import TIE_MARGIN, Fusion, canonical, fuse, top_with_ties
from retrieval.keyword.spec import KeywordSpec
from retrieval.keyword.tokenize import tokenize
from retrieval.settings import KeywordSettings, QdrantSettings, Settings
from retrieval.stores import Hit

DIM = 8
GROUPS, PER = 5, 12  # 60 documents: 5 topics of 12, every document "About topicG itemI" (three tokens)


def corpus() -> tuple[list[str], list[str], list[int]]:
    """(ids, texts, group) in a shuffled insertion order, ids whose order is neither insertion nor text order."""
    rng = np.random.default_rng(5)
    rows = [
        (f"{chr(97 + int(rng.integers(26)))}{g}{i:02d}", f"About topic{g} item{g}x{i}", g)
        for g in range(GROUPS)
        for i in range(PER)
    ]
    order = rng.permutation(len(rows))
    rows = [rows[i] for i in order]
    assert len({r[0] for r in rows}) == len(rows)
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


def build(settings: Settings, name: str, indexes: list[str], mode: str) -> None:
    ids, texts, groups = corpus()
    m = CollectionManifest(
        name=name,
        corpus="test",
        corpus_fingerprint="",
        modality="text",
        vectors={"text": VectorSpace(encoder="text", model="m", fingerprint=f"fake:{DIM}", dim=DIM)},
        indexes=indexes,
        qdrant_mode=mode if "qdrant" in indexes else None,
        keyword=KeywordSpec(avgdl=average_length([len(tokenize(t)) for t in texts])),
    )
    s = settings.with_qdrant_mode(mode) if "qdrant" in indexes else settings
    coll = Collection(s, name, read_only=False, manifest=m)
    for index in indexes:
        coll.store(index, "text", create=True)
    coll.save()
    centres = np.random.default_rng(1).standard_normal((GROUPS, DIM)).astype(np.float32)
    coll.upsert(ids, centres[groups], [{"text": t, "g": g} for t, g in zip(texts, groups, strict=True)])  # ties
    coll.build()
    coll.flush()
    coll.close()
    m.count, m.complete = len(ids), True
    save_collection(settings.data_dir, m)


@pytest.fixture(scope="module")
def tied(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    s = Settings(
        data_dir=tmp_path_factory.mktemp("ties") / "data",
        qdrant=QdrantSettings(mode="edge"),
        keyword=KeywordSettings(candidates=10),  # the hybrid legs cut inside runs of ties too
    )
    build(s, "e", ["flat", "hnsw", "qdrant"], "edge")
    build(s, "l", ["flat", "qdrant"], "local")
    return s


def ids(hits: list[Hit]) -> list[str]:
    return [h.id for h in hits]


QUERIES = ["About", "About topic3", "topic1 topic4", "about item2x5 topic2"]


@pytest.mark.parametrize("q", QUERIES)
def test_the_keyword_leg_cuts_a_run_of_ties_alike_on_every_engine(tied: Settings, q: str) -> None:
    e, loc = Collection(tied, "e"), Collection(tied, "l")
    flat = e.search("flat", text=q, k=10, mode="keyword")
    assert len(flat) == 10
    assert flat == e.search("hnsw", text=q, k=10, mode="keyword")
    for name, got in (
        ("edge", e.search("qdrant", text=q, k=10, mode="keyword")),
        ("local", loc.search("qdrant", text=q, k=10, mode="keyword")),
    ):
        assert ids(got) == ids(flat), name
        np.testing.assert_allclose([h.score for h in got], [h.score for h in flat], rtol=1e-4)
    assert ids(loc.search("flat", text=q, k=10, mode="keyword")) == ids(flat)
    e.close()
    loc.close()


def test_every_engine_returns_the_smallest_ids_of_a_run_longer_than_the_first_fetch(tied: Settings) -> None:
    want = sorted(corpus()[0])[:10]
    e, loc = Collection(tied, "e"), Collection(tied, "l")
    for coll, index in ((e, "flat"), (e, "hnsw"), (e, "qdrant"), (loc, "qdrant")):
        got = coll.search(index, text="About", k=10, mode="keyword")
        assert ids(got) == want, index
        assert max(h.score for h in got) - min(h.score for h in got) <= 1e-6 * got[0].score
    e.close()
    loc.close()


@pytest.mark.parametrize("fusion", [Fusion("rrf"), Fusion("dbsf", alpha=0.3)])
@pytest.mark.parametrize("q", QUERIES)
def test_hybrid_fuses_the_same_legs_on_every_engine(tied: Settings, q: str, fusion: Fusion) -> None:
    e, loc = Collection(tied, "e"), Collection(tied, "l")
    _, texts, groups = corpus()
    vec = np.random.default_rng(1).standard_normal((GROUPS, DIM)).astype(np.float32)[3]  # a topic's own vector
    flat = e.search("flat", vector=vec, text=q, k=10, mode="hybrid", fusion=fusion)
    assert len(flat) == 10
    for name, got in (
        ("hnsw", e.search("hnsw", vector=vec, text=q, k=10, mode="hybrid", fusion=fusion)),
        ("edge", e.search("qdrant", vector=vec, text=q, k=10, mode="hybrid", fusion=fusion)),
        ("local", loc.search("qdrant", vector=vec, text=q, k=10, mode="hybrid", fusion=fusion)),
    ):
        assert ids(got) == ids(flat), name
    e.close()
    loc.close()


def test_top_with_ties_fetches_the_whole_run_at_the_cut() -> None:
    """An engine that returns its ties in reverse id order, 40 of them at the cut: fetched deeper until the run
    ends, the cut takes the smallest ids; scores 1e-7 apart (float32 against float64) are one run."""
    scores = [3.0, 2.0] + [1.0 + (1e-7 if i % 2 else 0.0) for i in range(40)] + [0.5] * 5
    pool = [Hit(f"x{i:03d}", s, {}) for i, s in enumerate(scores)]
    engine = sorted(pool, key=lambda h: (-round(h.score, 5), [-ord(c) for c in h.id]))
    asked: list[int] = []

    def fetch(n: int) -> list[Hit]:
        asked.append(n)
        return engine[:n]

    got = top_with_ties(fetch, 10)
    assert ids(got) == ["x000", "x001"] + [f"x{i:03d}" for i in range(2, 10)]
    assert asked[0] == 10 + TIE_MARGIN and max(asked) >= 42  # the whole run of 40 was fetched
    asked.clear()
    assert ids(top_with_ties(fetch, 2)) == ["x000", "x001"] and asked == [2 + TIE_MARGIN]  # no tie at the cut
    asked.clear()
    capped = top_with_ties(fetch, 10, cap=30)
    assert len(capped) == 10 and max(asked) == 30  # a capped leg stops at its cap
    assert canonical(engine) == sorted(pool, key=lambda h: (-round(h.score, 5), h.id))


def test_fused_scores_within_the_tolerance_are_ties() -> None:
    """Two engines whose keyword scores differ in the 7th digit fuse to the same order (DBSF uses the scores)."""
    dense = [Hit("a", 1.0, {}), Hit("c", 0.5, {}), Hit("b", 0.0, {})]
    one = [Hit("b", 1.0, {}), Hit("c", 0.5, {}), Hit("a", 0.0, {})]  # a, b and c fuse to 1.0 exactly
    other = [Hit("b", 0.9999997, {}), Hit("c", 0.5, {}), Hit("a", 0.0, {})]  # c 3e-8 above a and b
    f = Fusion("dbsf")
    assert ids(fuse(dense, one, f, 3)) == ids(fuse(dense, other, f, 3)) == ["a", "b", "c"]  # best rank first
