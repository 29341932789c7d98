"""Keyword and hybrid search on every surface (issue 27 item 3): the CLI (`search --mode/--fusion/--alpha`, JSON
carrying the mode), the REST service (`mode`, `fusion`, `alpha`, micro-batched with dense queries), LangChain
(`retrieval_mode=RetrievalMode.SPARSE|HYBRID`) and LlamaIndex (`VectorStoreQueryMode.SPARSE|HYBRID`, `alpha`,
`sparse_top_k`, `hybrid_top_k`). The corpus is the issue's lexical case: STS-B sentences with a unique part code,
queried by the code, which only the keyword leg can find; and a collection without the leg is refused with the
command that builds it on every surface."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from retrieval.collection import Collection
from retrieval.errors import InvalidInputError
from retrieval.keyword.fusion import Fusion
from retrieval.settings import QdrantSettings, Settings
from simlookup.cli import main

N = 200


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, minilm: Any) -> tuple[Settings, dict[str, str]]:
    """Collection 'parts' (flat, hnsw, Qdrant Edge; keyword leg built by the ingest) of N coded STS-B sentences,
    and 'old' without the keyword leg (as ingested before hybrid search)."""
    from ingest.corpora.stsb import read_pairs
    from ingest.job import IngestOptions, run_ingest
    from ingest.judged_sets import part_codes

    root = tmp_path_factory.mktemp("surfaces")
    sentences = list(dict.fromkeys(s for p in read_pairs("dev") for s in (p.s1, p.s2)))[:N]
    codes = part_codes(N, seed=5)
    path = root / "parts.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "text", "g"])
        for i, (s, c) in enumerate(zip(sentences, codes, strict=True)):
            w.writerow([f"p{i}", f"{s} Part number {c}.", i % 2])
    s = Settings(data_dir=root / "data", qdrant=QdrantSettings(mode="edge"))
    run_ingest(
        s, IngestOptions(str(path), "parts", indexes=["flat", "hnsw"], progress=False), encoders={"text": minilm}
    )
    off = s.model_copy(update={"keyword": s.keyword.model_copy(update={"enabled": False})})
    run_ingest(
        off, IngestOptions(str(path), "old", indexes=["flat"], limit=20, progress=False), encoders={"text": minilm}
    )
    return s, {f"p{i}": c for i, c in enumerate(codes)}


def ask(codes: dict[str, str], i: int) -> tuple[str, str]:
    """(document id, query) of the i-th coded document."""
    pid = f"p{i}"
    return pid, f"part {codes[pid]}"


# ---- CLI ----
def cli(capsys: pytest.CaptureFixture[str], s: Settings, *argv: str) -> tuple[int, Any, str]:
    code = main(["--data-dir", str(s.data_dir), *argv])
    out = capsys.readouterr()
    return code, (json.loads(out.out) if out.out.strip().startswith("{") else out.out), out.err


def test_cli_search_modes_carry_the_mode_in_json(
    corpus: tuple[Settings, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    s, codes = corpus
    pid, q = ask(codes, 7)
    code, doc, _ = cli(capsys, s, "search", q, "--name", "parts", "--mode", "keyword", "-k", "3", "--json")
    assert code == 0 and doc["mode"] == "keyword" and "fusion" not in doc and doc["hits"][0]["id"] == pid
    code, doc, _ = cli(
        capsys,
        s,
        "search",
        q,
        "--name",
        "parts",
        "--index",
        "qdrant",
        "--mode",
        "hybrid",
        "--fusion",
        "dbsf",
        "--alpha",
        "0.3",
        "--filter",
        f"g={7 % 2}",
        "--json",
    )
    assert code == 0 and (doc["mode"], doc["fusion"], doc["alpha"]) == ("hybrid", "dbsf", 0.3)
    assert doc["hits"][0]["id"] == pid and len(doc["hits"]) == 10 and all(h["payload"]["g"] == 1 for h in doc["hits"])
    code, doc, _ = cli(capsys, s, "search", q, "--name", "parts", "--mode", "hybrid", "--json")
    assert code == 0 and (doc["fusion"], doc["alpha"]) == ("rrf", 0.5)  # the settings' defaults
    code, doc, _ = cli(capsys, s, "search", q, "--name", "parts", "--json")
    assert code == 0 and doc["mode"] == "dense"  # every answer says its mode
    code, text, _ = cli(capsys, s, "search", q, "--name", "parts", "--mode", "hybrid", "--fusion", "dbsf", "-k", "2")
    assert code == 0 and text.splitlines()[0].startswith("flat · hybrid (dbsf, α 0.5) · 2 hits") and pid in text


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["x", "--mode", "keyword", "--fusion", "rrf"], "--fusion and --alpha tune a hybrid search"),
        (["x", "--alpha", "0.2"], "--fusion and --alpha tune a hybrid search (--mode hybrid), not a dense one"),
        (["--vector", "[0.1, 0.2]", "--mode", "hybrid"], "--mode hybrid searches by a QUERY text"),
        (["--", "?!", "--mode", "keyword"], None),  # no keyword token: answered, with a warning
    ],
)
def test_cli_refuses_mode_flags_that_do_not_apply(
    corpus: tuple[Settings, dict[str, str]], capsys: pytest.CaptureFixture[str], argv: list[str], words: str | None
) -> None:
    s, _ = corpus
    if argv[0] == "--":
        code, doc, err = cli(capsys, s, "search", "--name", "parts", "--mode", "keyword", "--json", "--", "?!")
        assert code == 0 and doc["hits"] == [] and "no keyword tokens" in err
        return
    code, _, err = cli(capsys, s, "search", *argv, "--name", "parts")
    assert code == 2 and words in err


def test_cli_alpha_out_of_range_is_a_usage_error(
    corpus: tuple[Settings, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    s, _ = corpus
    with pytest.raises(SystemExit) as exc:
        main(["--data-dir", str(s.data_dir), "search", "x", "--name", "parts", "--mode", "hybrid", "--alpha", "2"])
    assert exc.value.code == 2 and "out of range: use 0 to 1" in capsys.readouterr().err


def test_every_surface_names_build_keyword_for_a_collection_without_the_leg(
    corpus: tuple[Settings, dict[str, str]], capsys: pytest.CaptureFixture[str], minilm: Any
) -> None:
    s, _ = corpus
    for mode in ("keyword", "hybrid"):
        code, _, err = cli(capsys, s, "search", "a man", "--name", "old", "--mode", mode)
        assert code == 2 and "simlookup build-keyword old" in err
    from fastapi.testclient import TestClient

    from simlookup.server.app import create_app

    with TestClient(create_app(s, "old", encoders={"text": minilm})) as c:
        r = c.post("/search", json={"text": "a man", "mode": "hybrid"})
        assert r.status_code == 422 and "simlookup build-keyword old" in r.json()["detail"]
        assert c.post("/search", json={"text": "a man"}).status_code == 200  # dense still answers
    from simlookup.integrations.langchain import RetrievalMode
    from simlookup.integrations.langchain import SimlookupVectorStore as LangChainStore

    with pytest.raises(InvalidInputError, match="simlookup build-keyword old"):
        LangChainStore("old", index="flat", settings=s, read_only=True, retrieval_mode=RetrievalMode.SPARSE)
    from llama_index.core.vector_stores.types import VectorStoreQuery, VectorStoreQueryMode

    from simlookup.integrations.llama_index import SimlookupVectorStore as LlamaStore

    store = LlamaStore("old", index="flat", settings=s, read_only=True)
    q = VectorStoreQuery(query_embedding=[0.0] * 384, query_str="a man", mode=VectorStoreQueryMode.HYBRID)
    with pytest.raises(InvalidInputError, match="simlookup build-keyword old"):
        store.query(q)
    with pytest.raises(InvalidInputError, match="simlookup build-keyword old"):
        store.query(
            VectorStoreQuery(
                query_embedding=[0.0] * 384, query_str="a man", sparse_top_k=3, mode=VectorStoreQueryMode.HYBRID
            )
        )
    store.close()


# ---- REST ----
@pytest.fixture(scope="module")
def client(corpus: tuple[Settings, dict[str, str]], minilm: Any) -> Any:
    from fastapi.testclient import TestClient

    from simlookup.server.app import create_app

    with TestClient(create_app(corpus[0], "parts", encoders={"text": minilm})) as c:
        yield c


def test_rest_search_modes(corpus: tuple[Settings, dict[str, str]], client: Any) -> None:
    _, codes = corpus
    pid, q = ask(codes, 11)
    r = client.post("/search", json={"text": q, "mode": "keyword", "k": 3, "index": "hnsw"})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["mode"] == "keyword" and "fusion" not in doc and doc["hits"][0]["id"] == pid
    r = client.post(
        "/search",
        json={"text": q, "mode": "hybrid", "fusion": "dbsf", "alpha": 0.25, "index": "qdrant", "filter": {"g": 1}},
    )
    doc = r.json()
    assert r.status_code == 200 and (doc["mode"], doc["fusion"], doc["alpha"]) == ("hybrid", "dbsf", 0.25)
    assert doc["hits"][0]["id"] == pid and len(doc["hits"]) == 10 and all(h["payload"]["g"] == 1 for h in doc["hits"])
    doc = client.post("/search", json={"text": q}).json()
    assert doc["mode"] == "dense" and "fusion" not in doc


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"vector": [0.1] * 384, "mode": "keyword"}, "a keyword search takes 'text'"),
        ({"text": "x", "fusion": "rrf"}, "'fusion' and 'alpha' tune a hybrid search, not a dense one"),
        ({"text": "x", "mode": "keyword", "alpha": 0.3}, "not a keyword one"),
        ({"text": "x", "mode": "hybrid", "alpha": 1.5}, "less than or equal to 1"),
        ({"text": "x", "mode": "sparse"}, "'dense', 'keyword' or 'hybrid'"),
        ({"text": "x", "mode": "hybrid", "fusion": "weighted"}, "'rrf' or 'dbsf'"),
        (
            {"text": "x", "mode": "keyword", "hnsw_ef": 64, "index": "hnsw"},
            "a keyword search takes no index parameters",
        ),
    ],
)
def test_rest_refuses_what_a_mode_cannot_take(client: Any, body: dict[str, Any], words: str) -> None:
    r = client.post("/search", json=body)
    assert r.status_code == 422 and words in json.dumps(r.json()), r.text


def test_a_batch_of_mixed_modes_answers_each_query_as_alone(
    corpus: tuple[Settings, dict[str, str]], minilm: Any
) -> None:
    from retrieval.batch import Query, search_batch
    from retrieval.filters import Filter
    from retrieval.retriever import Retriever

    s, codes = corpus
    texts = [ask(codes, i)[1] for i in (1, 2, 3)]
    queries = [
        Query("text", texts[0], "flat", 5),
        Query("text", texts[1], "qdrant", 5, mode="keyword"),
        Query("text", texts[2], "hnsw", 5, Filter.from_dict({"g": 1}), mode="hybrid", fusion=Fusion("dbsf", 0.4)),
        Query("text", texts[0], "flat", 5, mode="hybrid"),
        Query("text", "   ", "flat", 5, mode="keyword"),
        Query("image", b"not an image", "flat", 5, mode="keyword"),
    ]
    with Retriever(s, "parts", encoders={"text": minilm}) as r:
        got = search_batch(r, queries)
        for q, res in zip(queries[:4], got[:4], strict=True):
            alone = r.search_text(q.item, index=q.index, k=q.k, filter=q.filter or None, mode=q.mode, fusion=q.fusion)
            assert not isinstance(res, Exception) and res.mode == q.mode
            assert [h.id for h in res.hits] == [h.id for h in alone.hits]
            np.testing.assert_allclose([h.score for h in res.hits], [h.score for h in alone.hits], rtol=1e-5)
        assert "encode_ms" not in got[1].timings and "encode_ms" in got[2].timings  # type: ignore[union-attr]
        assert isinstance(got[4], InvalidInputError) and "query text" in str(got[4])
        assert isinstance(got[5], InvalidInputError) and "takes a text query" in str(got[5])


# ---- LangChain ----
class MiniLMEmbeddings:
    """The session's MiniLM as LangChain Embeddings (no second model load)."""

    def __init__(self, enc: Any) -> None:
        self.enc = enc

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.enc.encode_text(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.enc.encode_query(text).tolist()


def test_langchain_retrieval_modes(corpus: tuple[Settings, dict[str, str]], minilm: Any) -> None:
    from langchain_core.embeddings import Embeddings

    from simlookup.integrations.langchain import RetrievalMode, SimlookupVectorStore

    s, codes = corpus
    pid, q = ask(codes, 23)
    emb = type("E", (MiniLMEmbeddings, Embeddings), {})(minilm)
    fp = minilm.fingerprint
    sparse = SimlookupVectorStore("parts", "qdrant", settings=s, read_only=True, retrieval_mode=RetrievalMode.SPARSE)
    assert sparse.retrieval_mode is RetrievalMode.SPARSE
    (doc, score), *_ = sparse.similarity_search_with_score(q, k=3)
    assert doc.id == pid and score > 1.0 and sparse.collection._embedder is None  # SPARSE never embeds
    rel = sparse.similarity_search_with_relevance_scores(q, k=3)
    assert rel[0][0].id == pid and all(0.0 <= r < 1.0 for _, r in rel) and rel[0][1] >= rel[-1][1]
    hybrid = SimlookupVectorStore(
        "parts",
        "flat",
        emb,
        s,
        read_only=True,
        embedding_fingerprint=fp,
        retrieval_mode="hybrid",
        fusion=Fusion("dbsf", 0.4),
    )
    docs = hybrid.as_retriever(search_kwargs={"k": 4, "filter": {"g": 1}}).invoke(q)
    assert docs[0].id == pid and len(docs) == 4 and all(d.metadata["g"] == 1 for d in docs)
    rel = hybrid.similarity_search_with_relevance_scores(q, k=5)
    assert all(0.0 <= r <= 1.0 for _, r in rel)
    assert [d.id for d in hybrid.max_marginal_relevance_search(q, k=3, fetch_k=10)][0] == pid
    dense = SimlookupVectorStore("parts", "flat", emb, s, read_only=True, embedding_fingerprint=fp)
    assert dense.retrieval_mode is RetrievalMode.DENSE
    assert [d.id for d in hybrid.similarity_search_by_vector(emb.embed_query(q), k=5)] == [
        d.id for d in dense.similarity_search(q, k=5)
    ]  # by vector: dense in every mode
    with pytest.raises(InvalidInputError, match="unknown retrieval_mode 'bm25'"):
        SimlookupVectorStore("parts", "flat", settings=s, read_only=True, retrieval_mode="bm25")
    for st in (sparse, hybrid, dense):
        st.close()


def test_a_new_langchain_collection_gets_the_keyword_leg_on_every_index(tmp_path: Path) -> None:
    from langchain_core.embeddings import DeterministicFakeEmbedding

    from simlookup.integrations.langchain import RetrievalMode, SimlookupVectorStore

    s = Settings(data_dir=tmp_path / "data", qdrant=QdrantSettings(mode="edge"))
    texts = [f"note {i} about {w}" for i, w in enumerate(["zebra", "okapi", "llama", "gnu"] * 10)]
    store = SimlookupVectorStore.from_texts(
        texts,
        DeterministicFakeEmbedding(size=8),
        [{"i": i} for i in range(40)],
        collection="new",
        index="flat",
        indexes=["flat", "qdrant"],
        settings=s,
        retrieval_mode=RetrievalMode.SPARSE,
    )
    got = [d.metadata["i"] for d in store.similarity_search("okapi", k=20)]
    assert sorted(got) == list(range(1, 40, 4))  # every okapi note, nothing else
    store.add_texts(["a lone quagga"], ids=["q"])
    assert [d.id for d in store.similarity_search("quagga", k=3)] == ["q"]  # a later write reaches the leg
    store.close()
    with Collection(s, "new") as coll:
        assert coll.manifest.keyword is not None and coll.manifest.keyword.avgdl == pytest.approx(4.0)
        flat = coll.search("flat", text="okapi zebra", k=10, mode="keyword")
        assert [h.id for h in flat] == [h.id for h in coll.search("qdrant", text="okapi zebra", k=10, mode="keyword")]
    off = s.model_copy(update={"keyword": s.keyword.model_copy(update={"enabled": False})})
    SimlookupVectorStore.from_texts(
        ["x"], DeterministicFakeEmbedding(size=8), collection="off", index="flat", settings=off
    ).close()
    with Collection(s, "off") as coll:
        assert coll.manifest.keyword is None  # the setting turns it off for the adapters too


# ---- LlamaIndex ----
def test_llama_index_sparse_and_hybrid_queries(corpus: tuple[Settings, dict[str, str]], minilm: Any) -> None:
    from llama_index.core.vector_stores.types import VectorStoreQuery, VectorStoreQueryMode

    from simlookup.integrations.llama_index import SimlookupVectorStore

    s, codes = corpus
    pid, q = ask(codes, 31)
    vec = minilm.encode_query(q).tolist()
    store = SimlookupVectorStore("parts", index="qdrant", settings=s, read_only=True)
    for mode in (VectorStoreQueryMode.SPARSE, VectorStoreQueryMode.TEXT_SEARCH):
        res = store.query(VectorStoreQuery(query_str=q, similarity_top_k=2, sparse_top_k=5, mode=mode))
        assert res.ids is not None and res.ids[0] == pid and len(res.ids) == 5  # sparse_top_k hits
        assert res.similarities is not None and res.similarities[0] > 1.0  # the BM25 score
    res = store.query(
        VectorStoreQuery(
            query_embedding=vec, query_str=q, similarity_top_k=4, alpha=0.3, mode=VectorStoreQueryMode.HYBRID
        )
    )
    with Collection(s, "parts") as coll:
        ref = coll.search(
            "qdrant", k=4, vector=np.asarray(vec, dtype=np.float32), text=q, mode="hybrid", fusion=Fusion("rrf", 0.3)
        )
    assert res.ids == [h.id for h in ref] and res.ids[0] == pid
    # sparse_top_k: the legs as LlamaIndex's Qdrant store fetches them (dense similarity_top_k, keyword
    # sparse_top_k deep), hybrid_top_k hits; alpha 0: the keyword order first, alpha 1: the dense order first
    base = {"query_embedding": vec, "query_str": q, "similarity_top_k": 4, "sparse_top_k": 2, "hybrid_top_k": 10}
    kw = store.query(VectorStoreQuery(query_str=q, sparse_top_k=2, mode=VectorStoreQueryMode.SPARSE)).ids
    dense = store.query(VectorStoreQuery(query_embedding=vec, similarity_top_k=4)).ids
    for alpha, first in ((0.0, kw), (1.0, dense)):
        got = store.query(VectorStoreQuery(**base, alpha=alpha, mode=VectorStoreQueryMode.HYBRID)).ids
        assert got is not None and first is not None and kw is not None and dense is not None
        assert got[: len(first)] == first and set(got) == set(kw) | set(dense) and len(got) <= 6
    with pytest.raises(InvalidInputError, match="needs query_str"):
        store.query(VectorStoreQuery(query_embedding=vec, mode=VectorStoreQueryMode.HYBRID))
    with pytest.raises(InvalidInputError, match="node_ids restrict default"):
        store.query(VectorStoreQuery(query_str=q, node_ids=[pid], mode=VectorStoreQueryMode.SPARSE))
    with pytest.raises(InvalidInputError, match="query mode 'mmr' is not supported"):
        store.query(VectorStoreQuery(query_embedding=vec, mode=VectorStoreQueryMode.MMR))
    store.close()


def test_a_new_llama_index_collection_gets_the_keyword_leg(tmp_path: Path) -> None:
    from llama_index.core.schema import TextNode
    from llama_index.core.vector_stores.types import VectorStoreQuery, VectorStoreQueryMode

    from simlookup.integrations.llama_index import SimlookupVectorStore

    s = Settings(data_dir=tmp_path / "data", qdrant=QdrantSettings(mode="edge"))
    rng = np.random.default_rng(3)
    words = ["zebra", "okapi", "llama", "gnu"]
    nodes = [
        TextNode(id_=f"n{i}", text=f"note {i} about {words[i % 4]}", embedding=rng.random(4).tolist())
        for i in range(20)
    ]
    store = SimlookupVectorStore("li", index="qdrant", settings=s)
    store.add(nodes)
    res = store.query(VectorStoreQuery(query_str="llama", similarity_top_k=10, mode=VectorStoreQueryMode.SPARSE))
    assert sorted(res.ids or []) == sorted(f"n{i}" for i in range(2, 20, 4))
    res = store.query(
        VectorStoreQuery(
            query_embedding=[1.0, 0, 0, 0],
            query_str="gnu",
            similarity_top_k=3,
            mode=VectorStoreQueryMode.HYBRID,
            alpha=0.0,
        )
    )
    assert res.ids is not None and len(res.ids) == 3 and all(int(i[1:]) % 4 == 3 for i in res.ids)
    store.close()
