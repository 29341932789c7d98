"""The LangChain store beyond the standard suite: filters, scores, MMR, indexes kept in step, reopening, refusals."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("langchain_core", reason="pip install 'simlookup[langchain]' to run these")

from langchain_core.documents import Document  # noqa: E402
from langchain_core.embeddings import DeterministicFakeEmbedding, Embeddings  # noqa: E402

from retrieval.errors import InvalidInputError, StoreNotFoundError  # noqa: E402
from retrieval.filters import Filter  # noqa: E402
from retrieval.settings import QdrantSettings, Settings  # noqa: E402
from retrieval.stores import open_store  # noqa: E402
from simlookup.integrations.langchain import SimlookupVectorStore  # noqa: E402
from tests.langchain_backends import BACKENDS, backend_settings, index_of  # noqa: E402


class TableEmbeddings(Embeddings):
    """A test double for the embedding model: each text's vector is looked up in a table."""

    def __init__(self, table: dict[str, list[float]]) -> None:
        self.table = table

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.table[t] for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.table[text]


def corpus(n: int = 30) -> tuple[list[str], list[dict]]:
    texts = [f"doc {i}" for i in range(n)]
    metas = [{"g": "abc"[i % 3], "n": i, "even": i % 2 == 0} for i in range(n)]
    for m in metas[::5]:
        m["tag"] = "five"  # a field only some documents have
    return texts, metas


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def filled(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> SimlookupVectorStore:
    s, name = backend_settings(tmp_path, backend, request)
    texts, metas = corpus()
    store = SimlookupVectorStore.from_texts(
        texts, DeterministicFakeEmbedding(size=16), metas, ids=[str(i) for i in range(len(texts))],
        collection=name, index=index_of(backend), settings=s,
    )
    request.addfinalizer(store.close)
    return store


FILTERS = [
    {"g": "a"},
    {"g": ["a", "b"]},
    {"n": {"$gte": 25}},
    {"$or": [{"g": "a"}, {"n": {"$lt": 3}}]},
    {"$and": [{"even": True}, {"n": {"$gt": 10, "$lte": 20}}]},
    {"$not": {"g": "c"}},
    {"g": {"$ne": "b"}, "n": {"$in": [1, 2, 3, 4, 5, 6]}},
    {"tag": {"$exists": True}},
    {"tag": {"$ne": "five"}},
]


@pytest.mark.parametrize("spec", FILTERS, ids=[json.dumps(f) for f in FILTERS])
def test_filter_through_langchain(filled: SimlookupVectorStore, spec: dict) -> None:
    texts, metas = corpus()
    expect = {str(i) for i, m in enumerate(metas) if Filter.from_dict(spec).matches({**m, "text": texts[i]})}
    docs = filled.similarity_search("doc 7", k=len(texts), filter=spec)
    assert {d.id for d in docs} == expect
    assert all(Filter.from_dict(spec).matches(d.metadata) for d in docs)


def test_retriever_and_async_take_the_filter(filled: SimlookupVectorStore) -> None:
    import asyncio

    r = filled.as_retriever(search_kwargs={"k": 5, "filter": {"g": "b"}})
    docs = r.invoke("doc 4")
    assert len(docs) == 5 and {d.metadata["g"] for d in docs} == {"b"}
    got = asyncio.run(filled.asimilarity_search("doc 4", k=3, filter={"n": {"$lt": 3}}))
    assert {d.id for d in got} == {"0", "1", "2"}


def test_self_hit_and_relevance_scores(filled: SimlookupVectorStore) -> None:
    pairs = filled.similarity_search_with_relevance_scores("doc 12", k=10)
    assert pairs[0][0].id == "12"
    assert pairs[0][1] == pytest.approx(1.0, abs=1e-5)  # cosine 1 → relevance 1
    rel = [s for _, s in pairs]
    assert all(0.0 <= s <= 1.0 for s in rel) and rel == sorted(rel, reverse=True)
    raw = filled.similarity_search_with_score("doc 12", k=10)
    assert [(1 + s) / 2 for _, s in raw] == pytest.approx(rel, abs=1e-6)
    high = filled.similarity_search_with_relevance_scores("doc 12", k=10, score_threshold=0.99)
    assert [d.id for d, _ in high] == ["12"]


def test_l2_relevance(tmp_path: Path) -> None:
    table = {"q": [0.0, 0.0], "near": [0.1, 0.0], "far": [1.0, 0.0]}
    s = Settings(data_dir=tmp_path / "data")
    store = SimlookupVectorStore("l2", "flat", TableEmbeddings(table), s, metric="l2")
    store.add_texts(["near", "far"], ids=["n", "f"])
    (d1, s1), (d2, s2) = store.similarity_search_with_score("q", k=2)
    assert (d1.id, d2.id) == ("n", "f") and (s1, s2) == pytest.approx((0.1, 1.0), abs=1e-6)  # l2 distances
    rel = dict((d.id, r) for d, r in store.similarity_search_with_relevance_scores("q", k=2))
    assert rel["n"] == pytest.approx(1 - 0.1 / math.sqrt(2), abs=1e-6)
    assert rel["f"] == pytest.approx(1 - 1 / math.sqrt(2), abs=1e-6)
    store.close()


def test_dot_relevance_is_a_monotone_map_into_0_1() -> None:
    from retrieval.metric import Metric
    from simlookup.integrations.langchain import relevance_fn

    fn = relevance_fn(Metric.DOT)
    vals = [fn(s) for s in (-1e4, -1.0, 0.0, 1.0, 1e4)]  # no overflow at either end
    assert vals == sorted(vals) and all(0.0 <= v <= 1.0 for v in vals) and vals[2] == 0.5


def test_mmr_prefers_diversity(tmp_path: Path) -> None:
    table = {
        "q": [1.0, 0.0, 0.0],
        "a1": [1.0, 0.05, 0.0],
        "a2": [1.0, 0.06, 0.0],  # a near-duplicate of a1
        "b": [0.7, 0.0, 0.7],  # less similar but different
    }
    s = Settings(data_dir=tmp_path / "data")
    store = SimlookupVectorStore("mmr", "hnsw", TableEmbeddings(table), s)
    store.add_texts(["a1", "a2", "b"], ids=["a1", "a2", "b"])
    assert [d.id for d in store.similarity_search("q", k=2)] == ["a1", "a2"]
    mmr = store.max_marginal_relevance_search("q", k=2, fetch_k=3, lambda_mult=0.3)
    assert [d.id for d in mmr] == ["a1", "b"]
    assert [d.id for d in store.max_marginal_relevance_search("q", k=2, fetch_k=3, filter={"text": "b"})] == ["b"]
    store.close()


def test_every_index_kept_in_step(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path / "data", qdrant=QdrantSettings(mode="edge"))
    emb = DeterministicFakeEmbedding(size=8)
    texts, metas = corpus(12)
    store = SimlookupVectorStore("multi", "hnsw", emb, s, indexes=["flat", "hnsw", "qdrant"])
    store.add_texts(texts, metas, ids=[str(i) for i in range(12)])
    store.delete(["3", "4"])
    store.add_texts(["changed"], [{"g": "z"}], ids=["5"])
    assert store.indexes == ["flat", "hnsw", "qdrant"]
    assert store.similarity_search("changed", k=1)[0].id == "5"  # hnsw, written after flat, in this process
    assert "3" not in {d.id for d in store.similarity_search("doc 3", k=12)}
    store.close()
    want = {str(i) for i in range(12)} - {"3", "4"}
    for index in ("flat", "hnsw", "qdrant"):
        st = open_store(s, "multi", index, create=False)
        assert st.ids() == want, index
        assert st.fetch(["5"])["5"][1] == {"g": "z", "text": "changed"}, index
        st.close()
        other = SimlookupVectorStore("multi", index, emb, s)
        assert other.similarity_search("changed", k=1)[0].id == "5"
        other.close()
    with pytest.raises(InvalidInputError, match="indexes"):
        SimlookupVectorStore("multi", "flat", emb, s, indexes=["flat"])
    with pytest.raises(InvalidInputError, match="no 'ivf' index"):
        SimlookupVectorStore("multi", "ivf", emb, s)


@pytest.mark.parametrize("index", ["flat", "hnsw", "qdrant"])
def test_persists_across_reopen(tmp_path: Path, index: str) -> None:
    s = Settings(data_dir=tmp_path / "data", qdrant=QdrantSettings(mode="edge"))
    emb = DeterministicFakeEmbedding(size=8)
    store = SimlookupVectorStore("keep", index, emb, s)
    store.add_documents([Document(page_content="kept", metadata={"g": "a"}, id="k1")])
    store.add_documents([Document(page_content="gone", id="k2")])
    store.delete(["k2"])
    store.close()
    again = SimlookupVectorStore("keep", index, emb, s)
    assert again.get_by_ids(["k1", "k2"]) == [Document(page_content="kept", metadata={"g": "a"}, id="k1")]
    assert again.similarity_search("kept", k=5) == [Document(page_content="kept", metadata={"g": "a"}, id="k1")]
    again.close()


def test_metadata_cannot_clobber_the_text(tmp_path: Path) -> None:
    store = SimlookupVectorStore("tk", "flat", DeterministicFakeEmbedding(size=4), Settings(data_dir=tmp_path / "d"))
    with pytest.raises(InvalidInputError, match="'text'"):
        store.add_texts(["real text"], [{"text": "impostor"}], ids=["x"])
    store.add_texts(["ok"], [{"g": 1}], ids=["y"])
    assert store.get_by_ids(["x", "y"]) == [Document(page_content="ok", metadata={"g": 1}, id="y")]
    store.close()


def test_other_embedding_model_is_refused(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path / "d")
    store = SimlookupVectorStore("fp", "flat", DeterministicFakeEmbedding(size=4), s)
    store.add_texts(["a"], ids=["a"])
    store.close()
    other = TableEmbeddings({"a": [1.0, 0.0, 0.0, 0.0]})
    with pytest.raises(InvalidInputError, match="was embedded by"):
        SimlookupVectorStore("fp", "flat", other, s)
    fp = "external:langchain_core.embeddings.fake.DeterministicFakeEmbedding"
    same = SimlookupVectorStore("fp", "flat", other, s, embedding_fingerprint=fp)  # the caller vouches for it
    assert same.get_by_ids(["a"])[0].page_content == "a"
    same.close()


def test_delete_without_ids_is_refused(tmp_path: Path) -> None:
    store = SimlookupVectorStore("d", "flat", DeterministicFakeEmbedding(size=4), Settings(data_dir=tmp_path / "d"))
    store.add_texts(["a"], ids=["a"])
    with pytest.raises(InvalidInputError):
        store.delete()
    assert [d.id for d in store.get_by_ids(["a"])] == ["a"]
    store.close()


def test_from_texts_needs_a_collection(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="collection"):
        SimlookupVectorStore.from_texts(["a"], DeterministicFakeEmbedding(size=4), settings=Settings(data_dir=tmp_path))


def test_imports_stay_lazy() -> None:
    code = (
        "import sys, retrieval, simlookup, simlookup.integrations; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('langchain_core', 'llama_index')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.slow
def test_own_encoder_when_no_embedding(tmp_path: Path, minilm: object) -> None:
    """embedding=None: the collection's own encoder (MiniLM here), and its fingerprint recorded and checked."""
    s = Settings(data_dir=tmp_path / "data")
    texts = ["A man is playing a flute.", "Stocks fell sharply on Wall Street.", "A cat sleeps on the sofa."]
    store = SimlookupVectorStore.from_texts(
        texts, None, ids=["flute", "stocks", "cat"], collection="own", index="flat", settings=s
    )
    assert store.collection.fingerprint == minilm.fingerprint  # type: ignore[attr-defined]
    assert store.similarity_search("someone plays music on a wind instrument", k=1)[0].id == "flute"
    vec = np.asarray(store.embeddings.embed_query("share prices dropped"))
    assert store.similarity_search_by_vector(vec.tolist(), k=1)[0].id == "stocks"
    store.close()
    again = SimlookupVectorStore("own", "flat", None, s)
    assert again.similarity_search("a kitten napping", k=1)[0].id == "cat"
    again.close()


def test_a_write_refused_by_qdrant_reaches_no_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from retrieval.stores.qdrant_edge_store import QdrantEdgeStore

    s = Settings(data_dir=tmp_path / "d", qdrant=QdrantSettings(mode="edge"))
    store = SimlookupVectorStore("order", "flat", DeterministicFakeEmbedding(size=4), s, indexes=["flat", "qdrant"])
    store.add_texts(["a"], ids=["a"])

    def refuse(*a: object, **k: object) -> int:  # Qdrant, written first, refuses the write
        raise InvalidInputError("refused by Qdrant")

    monkeypatch.setattr(QdrantEdgeStore, "upsert", refuse)
    with pytest.raises(InvalidInputError, match="refused by Qdrant"):  # raised as it is: no index was reached
        store.add_texts(["b"], ids=["b"])
    assert [d.id for d in store.get_by_ids(["a", "b"])] == ["a"]  # the FAISS kind was never written
    store.close()


def test_a_write_that_fails_half_way_names_the_indexes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from retrieval.errors import StoreError
    from retrieval.stores import FaissStore

    s = Settings(data_dir=tmp_path / "d", qdrant=QdrantSettings(mode="edge"))
    store = SimlookupVectorStore("half", "qdrant", DeterministicFakeEmbedding(size=4), s, indexes=["flat", "qdrant"])
    store.add_texts(["a"], ids=["a"])

    def disk_full(*a: object, **k: object) -> int:  # a failing disk, for the FAISS kind only
        raise StoreError("disk full")

    monkeypatch.setattr(FaissStore, "upsert", disk_full)
    with pytest.raises(StoreError, match=r"reached \['qdrant'\] but failed on 'flat'.*repeated"):
        store.add_texts(["b"], ids=["b"])
    monkeypatch.undo()
    store.add_texts(["b"], ids=["b"])  # repeating the write re-aligns the indexes
    store.close()
    for index in ("flat", "qdrant"):
        st = open_store(s, "half", index, create=False)
        assert st.ids() == {"a", "b"}, index
        st.close()


def test_collection_settings_that_cannot_be_honoured_are_refused(tmp_path: Path) -> None:
    from retrieval.collection import CollectionManifest, VectorSpace, save_collection

    s = Settings(data_dir=tmp_path / "d")
    emb = DeterministicFakeEmbedding(size=4)
    SimlookupVectorStore.from_texts(["a"], emb, ids=["a"], collection="cos", index="flat", settings=s).close()
    with pytest.raises(InvalidInputError, match="cosine metric, not l2"):
        SimlookupVectorStore("cos", "flat", emb, s, metric="l2")
    with pytest.raises(InvalidInputError, match="pass that embedding model"):
        SimlookupVectorStore("cos", "flat", None, s).similarity_search("a")
    space = VectorSpace(encoder="clip", model="ViT-B-32", fingerprint="clip:x", dim=4)
    save_collection(s.data_dir, CollectionManifest(
        name="pics", corpus="x", corpus_fingerprint="", modality="image", vectors={"image": space}, indexes=["flat"]
    ))
    with pytest.raises(InvalidInputError, match="image collection"):
        SimlookupVectorStore("pics", "flat", emb, s)


def test_read_only_readers_share_a_faiss_collection(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path / "d")
    emb = DeterministicFakeEmbedding(size=4)
    SimlookupVectorStore.from_texts(["a", "b"], emb, ids=["a", "b"], collection="ro", index="hnsw", settings=s).close()
    r1 = SimlookupVectorStore("ro", "hnsw", emb, s, read_only=True)
    r2 = SimlookupVectorStore("ro", "hnsw", emb, s, read_only=True)
    assert r1.similarity_search("a", k=1)[0].id == r2.similarity_search("a", k=1)[0].id == "a"
    with pytest.raises(InvalidInputError, match="read-only"):
        r1.add_texts(["c"], ids=["c"])
    with pytest.raises(InvalidInputError, match="read-only"):
        r1.delete(["a"])
    r1.close()
    r2.close()
    with pytest.raises(StoreNotFoundError):
        SimlookupVectorStore("absent", "hnsw", emb, s, read_only=True)


@pytest.mark.slow
def test_rag_over_an_ingested_collection(tmp_path: Path, minilm: object) -> None:
    """`simlookup ingest` output read through LangChain with its own encoder; a write lands in every index."""
    from ingest.job import IngestOptions, run_ingest
    from retrieval.retriever import Retriever

    s = Settings(data_dir=tmp_path / "data", qdrant=QdrantSettings(mode="edge"))
    csv = tmp_path / "docs.csv"
    csv.write_text(
        "id,text,genre\n"
        "f,A man is playing a flute.,music\n"
        "s,Stocks fell sharply on Wall Street.,news\n"
        "c,A cat sleeps on the sofa.,pets\n"
        "b,The band played a loud concert.,music\n"
    )
    run_ingest(s, IngestOptions(str(csv), "ing", indexes=["flat", "hnsw"], progress=False), encoders={"text": minilm})
    store = SimlookupVectorStore("ing", "hnsw", settings=s)
    assert store.indexes == ["flat", "hnsw", "qdrant"]
    docs = store.as_retriever(search_kwargs={"k": 1, "filter": {"genre": "music"}}).invoke("a flute melody")
    assert docs == [Document(page_content="A man is playing a flute.", metadata={"genre": "music"}, id="f")]
    store.add_texts(["A dog chases a ball in the park."], [{"genre": "pets"}], ids=["d"])
    store.close()
    with Retriever(s, "ing") as r:
        for index in ("flat", "hnsw", "qdrant"):
            assert r.search_text("a puppy playing fetch", index=index, k=1).hits[0].id == "d", index


@pytest.mark.parametrize(
    ("indexes", "reached", "failing"),
    [(["flat", "qdrant"], ["qdrant"], "flat"), (["flat", "hnsw", "qdrant"], ["qdrant", "flat"], "hnsw")],
    ids=["qdrant-then-flat", "qdrant-flat-then-hnsw"],
)
@pytest.mark.parametrize("mode", ["edge", "local"])
def test_a_disk_error_half_way_is_a_store_error_naming_the_indexes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, indexes: list[str], reached: list[str], failing: str
) -> None:
    """An OSError (a full disk) after some indexes were written is the documented StoreError, chained."""
    import errno

    from retrieval.errors import StoreError

    s = Settings(data_dir=tmp_path / "d", qdrant=QdrantSettings(mode=mode))
    store = SimlookupVectorStore("full", "qdrant", DeterministicFakeEmbedding(size=4), s, indexes=indexes)
    store.add_texts(["a"], ids=["a"])
    disk = OSError(errno.ENOSPC, "No space left on device")

    def disk_full(*a: object, **k: object) -> int:  # one store's disk fills up
        raise disk

    monkeypatch.setattr(store.collection._open(failing), "upsert", disk_full)
    with pytest.raises(StoreError) as info:
        store.add_texts(["b"], ids=["b"])
    msg = str(info.value)
    assert f"reached {reached} but failed on {failing!r}" in msg and "No space left on device" in msg, msg
    assert "OSError" in msg and "repeated" in msg, msg
    assert info.value.__cause__ is disk
    monkeypatch.undo()
    store.add_texts(["b"], ids=["b"])  # repeating the write re-aligns the indexes
    store.close()
    for index in indexes:
        st = open_store(s, "full", index, create=False)
        assert st.ids() == {"a", "b"}, index
        st.close()


def test_a_disk_error_on_delete_is_a_store_error_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from retrieval.errors import StoreError

    s = Settings(data_dir=tmp_path / "d", qdrant=QdrantSettings(mode="edge"))
    store = SimlookupVectorStore("fulldel", "flat", DeterministicFakeEmbedding(size=4), s, indexes=["flat", "qdrant"])
    store.add_texts(["a", "b"], ids=["a", "b"])

    def disk_full(*a: object, **k: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store.collection._open("flat"), "delete", disk_full)
    with pytest.raises(StoreError, match=r"delete on collection 'fulldel' reached \['qdrant'\] but failed on 'flat'"):
        store.delete(["a"])
    store.close()


def test_an_interrupt_half_way_is_not_wrapped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings(data_dir=tmp_path / "d", qdrant=QdrantSettings(mode="edge"))
    store = SimlookupVectorStore("intr", "flat", DeterministicFakeEmbedding(size=4), s, indexes=["flat", "qdrant"])
    store.add_texts(["a"], ids=["a"])

    def interrupted(*a: object, **k: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(store.collection._open("flat"), "upsert", interrupted)
    with pytest.raises(KeyboardInterrupt):
        store.add_texts(["b"], ids=["b"])
    store.close()


def _store_message_for_an_empty_id(s: Settings) -> str:
    """What the store itself says about an empty point id."""
    st = open_store(s, "raw", "flat", dim=4)
    with pytest.raises(InvalidInputError) as info:
        st.upsert([""], np.ones((1, 4), dtype=np.float32), [{}])
    st.close()
    return str(info.value)


@pytest.mark.parametrize("index", ["flat", "qdrant"])
def test_an_empty_id_is_refused_not_replaced(tmp_path: Path, index: str) -> None:
    s = Settings(data_dir=tmp_path / "d", qdrant=QdrantSettings(mode="edge"))
    want = _store_message_for_an_empty_id(s)
    store = SimlookupVectorStore("empty", index, DeterministicFakeEmbedding(size=4), s)
    store.add_texts(["a"], ids=["a"])
    for write in (
        lambda: store.add_texts(["b"], ids=[""]),
        lambda: store.add_texts(["b", "c"], ids=["b", ""]),
        lambda: store.add_embeddings([("b", [1.0, 0.0, 0.0, 0.0])], ids=[""]),
        lambda: store.add_documents([Document(page_content="b", id="")]),
        lambda: store.add_documents([Document(page_content="b", id="b"), Document(page_content="c", id="")]),
        lambda: asyncio.run(store.aadd_documents([Document(page_content="b", id="")])),
        lambda: asyncio.run(store.aadd_texts(["b"], ids=[""])),
    ):
        with pytest.raises(InvalidInputError) as info:
            write()
        assert str(info.value) == want
    assert store.collection.count() == 1  # nothing was written
    # documents without an id still get fresh UUIDs (LangChain's convention), beside ones that have an id
    got = store.add_documents([Document(page_content="d"), Document(page_content="e", id="e")])
    assert got[1] == "e" and uuid.UUID(got[0])
    assert uuid.UUID(store.add_texts(["f"])[0]) and uuid.UUID(store.add_texts(["g"], ids=[None])[0])  # type: ignore[list-item]
    assert store.collection.count() == 5
    store.close()
