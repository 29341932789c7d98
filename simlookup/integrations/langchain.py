"""simlookup as a LangChain vector store (``pip install 'simlookup[langchain]'``).

    from simlookup.integrations.langchain import SimlookupVectorStore
    store = SimlookupVectorStore("stsb", index="hnsw")          # the collection's own encoder
    docs = store.as_retriever(search_kwargs={"k": 4, "filter": {"genre": "main-news"}}).invoke("stocks fell")

Every write goes to every index of the collection (FAISS kinds and Qdrant alike); searches go through ``index``.
Scores: ``similarity_search_with_score`` gives the index's own score (cosine or dot similarity, higher is
closer; l2 distance, lower is closer); ``similarity_search_with_relevance_scores`` maps it into [0, 1].

Retrieval modes, as langchain-qdrant's ``RetrievalMode``: ``DENSE`` (the default: the embeddings), ``SPARSE``
(BM25 on the collection's keyword leg: the query is not embedded) and ``HYBRID`` (both, fused by ``fusion``):

    store = SimlookupVectorStore("stsb", index="qdrant", retrieval_mode=RetrievalMode.HYBRID)
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from enum import Enum, StrEnum
from typing import Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore
from langchain_core.vectorstores.utils import maximal_marginal_relevance

from retrieval.errors import InvalidInputError
from retrieval.keyword.fusion import Fusion
from retrieval.metric import Metric
from retrieval.settings import Settings, load_settings
from retrieval.stores import Hit, SearchParams
from retrieval.stores.base import VectorStore as BaseStore
from simlookup.integrations.embedder import Embedder, FunctionEmbedder, external_fingerprint
from simlookup.integrations.text_collection import FilterSpec, TextCollection


class RetrievalMode(StrEnum):
    """How the store finds documents for a text query (the names and values of langchain-qdrant's, whose enum
    is accepted too): the embeddings, the keyword leg (BM25), or both fused."""

    DENSE = "dense"
    SPARSE = "sparse"
    HYBRID = "hybrid"


_MODES = {"dense": "dense", "sparse": "keyword", "keyword": "keyword", "hybrid": "hybrid"}


def search_mode(mode: RetrievalMode | str) -> str:
    """simlookup's search mode (dense, keyword, hybrid) of a retrieval mode, or a clear error."""
    value = mode.value if isinstance(mode, Enum) else mode
    if not isinstance(value, str) or value.lower() not in _MODES:
        raise InvalidInputError(f"unknown retrieval_mode {mode!r}: use RetrievalMode.DENSE, SPARSE or HYBRID")
    return _MODES[value.lower()]


def keyword_relevance(score: float) -> float:
    """A BM25 score (0 and up) → relevance in [0, 1): s / (1 + s), monotone."""
    return max(0.0, score) / (1.0 + max(0.0, score))


def fused_relevance(fusion: Fusion) -> Callable[[float], float]:
    """A fused score → relevance in [0, 1]: RRF by its largest value (rank 1 in both legs), DBSF by the weights'
    sum (each leg's normalised score is about [0, 1]), clipped."""
    top = sum(fusion.weights) / (fusion.rrf_k + 1) if fusion.method == "rrf" else sum(fusion.weights)
    return lambda s: min(1.0, max(0.0, s / top))


class _EncoderEmbeddings(Embeddings):
    """The collection's own encoder, seen as LangChain ``Embeddings``."""

    def __init__(self, embedder: Embedder) -> None:
        self._embedder = embedder

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._embedder.embed_documents(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self._embedder.embed_query(text).tolist()


def _embedder_of(embedding: Embeddings, fingerprint: str | None) -> Embedder:
    fp = fingerprint or external_fingerprint(embedding)
    return FunctionEmbedder(fp, embedding.embed_documents, embedding.embed_query)


def relevance_fn(metric: Metric) -> Callable[[float], float]:
    """Index score → relevance in [0, 1]: cosine (1+s)/2, l2 1−d/√2 (LangChain's, clipped), dot a logistic."""
    if metric is Metric.COSINE:
        return lambda s: min(1.0, max(0.0, (1.0 + s) / 2.0))
    if metric is Metric.L2:
        return lambda d: min(1.0, max(0.0, 1.0 - d / math.sqrt(2.0)))
    return lambda s: 1.0 / (1.0 + math.exp(-s)) if s >= 0 else math.exp(s) / (1.0 + math.exp(s))


def _fill_ids(ids: Sequence[str | None] | None, n: int) -> list[str]:
    """The given ids with a fresh UUID for each ``None``; n fresh UUIDs when none are given.

    Any other id is checked as the store checks it, before anything is embedded: an empty string is refused
    (with the store's own message), never silently replaced by a UUID.
    """
    filled = [str(uuid.uuid4()) if i is None else i for i in (ids if ids is not None else [None] * n)]
    return BaseStore._check_ids(filled, unique=False)


def _or_nones(metadatas: Sequence[Mapping[str, Any]] | None, n: int) -> Sequence[Mapping[str, Any] | None]:
    """The given metadatas, or n ``None`` when none are given."""
    if metadatas:
        return metadatas
    return [None] * n


class SimlookupVectorStore(VectorStore):
    """A simlookup text collection as a LangChain ``VectorStore``.

    collection: the collection name (an ingested one, or a new one created on the first write).
    index: the index searches go through ('flat', 'ivf', 'ivfpq', 'hnsw' or 'qdrant').
    embedding: a LangChain ``Embeddings``; None uses the collection's own encoder (and its fingerprint check).
    indexes: for a new collection, every index to create and keep in step (default: just ``index``).
    metric: for a new collection ('cosine' by default, 'dot', 'l2'); an existing collection keeps its own.
    read_only: search an existing collection without taking its write locks (FAISS shares the index with readers).
    embedding_fingerprint: the name recorded for (and checked against) an external ``embedding``
    (default ``external:<module>.<class>[:<model>]``).
    retrieval_mode: ``RetrievalMode.DENSE`` (default), ``SPARSE`` (BM25 on the keyword leg) or ``HYBRID`` (both
    legs fused); a collection without the keyword leg refuses SPARSE and HYBRID, naming ``simlookup build-keyword``.
    Searches by vector (``*_by_vector``) are dense in every mode: a vector has no words.
    fusion: HYBRID's ``Fusion`` (method rrf or dbsf, the dense leg's share ``alpha``); default from the settings.
    """

    def __init__(
        self,
        collection: str,
        index: str = "hnsw",
        embedding: Embeddings | None = None,
        settings: Settings | None = None,
        *,
        indexes: Sequence[str] | None = None,
        metric: Metric | str | None = None,
        read_only: bool = False,
        embedding_fingerprint: str | None = None,
        search_params: SearchParams | None = None,
        retrieval_mode: RetrievalMode | str = RetrievalMode.DENSE,
        fusion: Fusion | None = None,
    ) -> None:
        self._embedding = embedding
        self.search_params = search_params
        self.mode = search_mode(retrieval_mode)
        s = settings or load_settings()
        ks = s.keyword
        self.fusion = fusion or Fusion(ks.fusion, ks.alpha, ks.rrf_k)
        self.collection = TextCollection(
            s,
            collection,
            index=index,
            embedder=_embedder_of(embedding, embedding_fingerprint) if embedding is not None else None,
            indexes=indexes,
            metric=metric,
            read_only=read_only,
            origin="langchain",
        )
        if self.mode != "dense":
            self.collection.require_keyword()  # an existing collection without the leg: say how to build it

    # ---- what it is ----
    @property
    def embeddings(self) -> Embeddings:
        """The embedding model in use (the collection's own encoder, wrapped, when none was given)."""
        if self._embedding is None:
            self._embedding = _EncoderEmbeddings(self.collection.embedder)
        return self._embedding

    @property
    def index(self) -> str:
        return self.collection.index

    @property
    def indexes(self) -> list[str]:
        """Every index a write goes to."""
        return list(self.collection.indexes)

    def _get_retriever_tags(self) -> list[str]:
        return [*super()._get_retriever_tags(), f"simlookup:{self.collection.name}:{self.index}"]

    # ---- writes ----
    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Embed and upsert texts (an existing id is replaced); ids default to fresh UUIDs. Returns the ids."""
        texts = list(texts)
        if metadatas is not None and len(metadatas) != len(texts):
            raise InvalidInputError(f"{len(texts)} texts but {len(metadatas)} metadatas")
        if ids is not None and len(ids) != len(texts):
            raise InvalidInputError(f"{len(texts)} texts but {len(ids)} ids")
        id_list = _fill_ids(ids, len(texts))
        return self.collection.add_texts(id_list, texts, _or_nones(metadatas, len(texts)))

    def add_documents(self, documents: list[Document], **kwargs: Any) -> list[str]:
        """Upsert documents by their ``id`` (a fresh UUID where it is None; an empty id is refused). Returns the ids.

        LangChain's default would drop every document's id, empty strings included, when none is set.
        """
        if "ids" not in kwargs:
            ids = [doc.id for doc in documents]
            if any(i is not None for i in ids):
                kwargs["ids"] = ids
        return self.add_texts([d.page_content for d in documents], [d.metadata for d in documents], **kwargs)

    def add_embeddings(
        self,
        text_embeddings: Iterable[tuple[str, list[float]]],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
    ) -> list[str]:
        """Upsert texts with embeddings computed elsewhere (by this store's model)."""
        pairs = list(text_embeddings)
        id_list = _fill_ids(ids, len(pairs))
        mds = _or_nones(metadatas, len(pairs))
        payloads = [self.collection.payload(t, m) for (t, _), m in zip(pairs, mds, strict=True)]
        vecs = np.asarray([e for _, e in pairs], dtype=np.float32)
        return self.collection.upsert(id_list, vecs, payloads)

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Delete documents by id from every index (unknown ids are ignored). ``ids=None`` is refused."""
        if ids is None:
            raise InvalidInputError("delete needs the ids to delete (deleting everything is not done implicitly)")
        self.collection.delete(list(ids))
        return True

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """Documents of the ids that exist, in the order given."""
        return [self._doc(i, pl) for i, _, pl in self.collection.fetch(list(ids))]

    # ---- search ----
    def _doc(self, pid: str, payload: Mapping[str, Any]) -> Document:
        text, md = self.collection.split(payload)
        return Document(page_content=text, metadata=md, id=pid)

    @property
    def retrieval_mode(self) -> RetrievalMode:
        """The store's retrieval mode."""
        return RetrievalMode.SPARSE if self.mode == "keyword" else RetrievalMode(self.mode)

    def _hits(
        self, vector: Any, k: int, filter: FilterSpec, kwargs: dict[str, Any], text: str | None = None
    ) -> list[Hit]:
        """Dense hits of a vector, or (``text`` given) the hits of the store's retrieval mode."""
        params = kwargs.pop("params", None) or self.search_params
        mode = "dense" if text is None else self.mode
        return self.collection.search(vector, k, filter, params, text=text, mode=mode, fusion=self.fusion)

    def _query_vector(self, query: str) -> Any:
        """The query's embedding, unless the mode reads words only (SPARSE)."""
        return None if self.mode == "keyword" else self.collection.embedder.embed_query(query)

    def similarity_search(
        self, query: str, k: int = 4, filter: FilterSpec = None, **kwargs: Any
    ) -> list[Document]:
        """The k documents nearest the query; ``filter`` is simlookup's filter language."""
        return [d for d, _ in self.similarity_search_with_score(query, k, filter, **kwargs)]

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: FilterSpec = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """(document, score) pairs, best first: DENSE the index's score (similarity for cosine/dot, distance for
        l2), SPARSE the BM25 score, HYBRID the fused score."""
        if self.mode == "dense":
            vec = self.collection.embedder.embed_query(query)
            return self.similarity_search_with_score_by_vector(vec, k, filter, **kwargs)
        hits = self._hits(self._query_vector(query), k, filter, kwargs, text=query)
        return [(self._doc(h.id, h.payload), float(h.score)) for h in hits]

    def similarity_search_by_vector(
        self, embedding: list[float], k: int = 4, filter: FilterSpec = None, **kwargs: Any
    ) -> list[Document]:
        """The k documents nearest a query embedding."""
        return [d for d, _ in self.similarity_search_with_score_by_vector(embedding, k, filter, **kwargs)]

    def similarity_search_with_score_by_vector(
        self, embedding: Any, k: int = 4, filter: FilterSpec = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """(document, index score) pairs for a query embedding."""
        return [(self._doc(h.id, h.payload), float(h.score)) for h in self._hits(embedding, k, filter, kwargs)]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        if self.mode == "keyword":
            return keyword_relevance
        if self.mode == "hybrid":
            return fused_relevance(self.fusion)
        return relevance_fn(self.collection.metric)

    def max_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: FilterSpec = None,
        **kwargs: Any,
    ) -> list[Document]:
        """k documents chosen for relevance and diversity among the fetch_k best of the store's retrieval mode
        (relevance and diversity by the embeddings)."""
        vec = self.collection.embedder.embed_query(query)
        text = None if self.mode == "dense" else query
        return self._mmr(vec, k, fetch_k, lambda_mult, filter, kwargs, text)

    def max_marginal_relevance_search_by_vector(
        self,
        embedding: Any,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: FilterSpec = None,
        **kwargs: Any,
    ) -> list[Document]:
        """MMR over the fetch_k nearest, using the stored vectors (re-embedded where an index keeps none)."""
        return self._mmr(embedding, k, fetch_k, lambda_mult, filter, kwargs)

    def _mmr(
        self,
        embedding: Any,
        k: int,
        fetch_k: int,
        lambda_mult: float,
        filter: FilterSpec,
        kwargs: dict[str, Any],
        text: str | None = None,
    ) -> list[Document]:
        hits = self._hits(embedding, max(k, fetch_k), filter, kwargs, text)
        if not hits:
            return []
        stored = {i: v for i, v, _ in self.collection.fetch([h.id for h in hits])}
        missing = [h for h in hits if stored.get(h.id) is None]
        if missing:
            texts = [self.collection.split(h.payload)[0] for h in missing]
            for h, v in zip(missing, self.collection.embedder.embed_documents(texts), strict=True):
                stored[h.id] = v
        q = np.asarray(embedding, dtype=np.float32)
        embs = [np.asarray(stored[h.id]) for h in hits]
        # langchain annotates list[list[float]]; it takes any array-likes (it calls np.array on the list)
        picked = maximal_marginal_relevance(q, embs, lambda_mult, k)  # type: ignore[arg-type]
        return [self._doc(hits[i].id, hits[i].payload) for i in picked]

    # ---- construction and lifecycle ----
    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings | None = None,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        collection: str | None = None,
        index: str = "hnsw",
        settings: Settings | None = None,
        **kwargs: Any,
    ) -> SimlookupVectorStore:
        """Open (or create) ``collection`` and add the texts to it."""
        if not collection:
            raise InvalidInputError("from_texts needs collection=NAME (the simlookup collection to write)")
        store = cls(collection, index, embedding, settings, **kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store

    def build(self) -> None:
        """Finish indexing after a bulk load (train IVF/PQ, build Qdrant Edge HNSW) in every index."""
        self.collection.build()

    def flush(self) -> None:
        """Make every write durable and record the count in the collection manifest."""
        self.collection.flush()

    def close(self) -> None:
        """Flush and release every index (file locks, Qdrant Edge shard). Idempotent."""
        self.collection.close()

    def __enter__(self) -> SimlookupVectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["RetrievalMode", "SimlookupVectorStore", "relevance_fn"]
