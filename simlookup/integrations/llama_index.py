"""simlookup as a LlamaIndex vector store (``pip install 'simlookup[llama-index]'``).

    from llama_index.core import StorageContext, VectorStoreIndex
    from simlookup.integrations.llama_index import SimlookupVectorStore
    store = SimlookupVectorStore("notes", index="hnsw")
    index = VectorStoreIndex.from_documents(docs, storage_context=StorageContext.from_defaults(vector_store=store))

LlamaIndex embeds nodes and queries itself; the store keeps the node text (``stores_text=True``) under the
payload key ``text`` and the node's metadata (with LlamaIndex's ``_node_content``, ``ref_doc_id``...) beside
it. Every write goes to every index of the collection; queries go through ``index``.

Query modes: ``DEFAULT`` (dense), ``SPARSE`` / ``TEXT_SEARCH`` (BM25 on the collection's keyword leg, by
``query_str``) and ``HYBRID`` (both legs fused, ``alpha`` the dense leg's share, ``sparse_top_k`` the keyword
leg's depth, ``hybrid_top_k`` the answer's size), as LlamaIndex's Qdrant store reads them:

    retriever = index.as_retriever(vector_store_query_mode="hybrid", similarity_top_k=10, alpha=0.5)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.schema import BaseNode, MetadataMode, TextNode
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
    VectorStoreQueryResult,
)
from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict

from retrieval.errors import InvalidInputError
from retrieval.filters import Filter
from retrieval.keyword.fusion import Fusion, fuse
from retrieval.metric import Metric, exact_scores, top_k
from retrieval.settings import Settings, load_settings
from retrieval.stores import Hit, SearchParams
from simlookup.integrations.embedder import FunctionEmbedder, external_fingerprint
from simlookup.integrations.llama_filters import translate_filters
from simlookup.integrations.text_collection import TextCollection

DEFAULT_FINGERPRINT = "external:llama-index"
_MODES = {
    VectorStoreQueryMode.DEFAULT: "dense",
    VectorStoreQueryMode.SPARSE: "keyword",
    VectorStoreQueryMode.TEXT_SEARCH: "keyword",
    VectorStoreQueryMode.HYBRID: "hybrid",
}


def _no_embedding(_: Any) -> Any:
    raise InvalidInputError("the LlamaIndex store does not embed: LlamaIndex passes node and query embeddings")


def similarity(metric: Metric, score: float) -> float:
    """Index score → LlamaIndex similarity (higher is closer): cosine/dot as is, l2 distance d → 1/(1+d)."""
    return 1.0 / (1.0 + score) if metric is Metric.L2 else score


class SimlookupVectorStore(BasePydanticVectorStore):
    """A simlookup text collection as a LlamaIndex vector store.

    collection: the collection name (created on the first ``add``). index: the index queries go through.
    indexes: for a new collection, every index to create and keep in step (default: just ``index``).
    metric: for a new collection ('cosine' by default, 'dot', 'l2'); an existing collection keeps its own.
    read_only: search an existing collection without taking its write locks (FAISS shares the index with readers).
    embed_model / embedding_fingerprint: name the embedding model; a new collection records it and an existing
    one refuses another (without either, a new collection records ``external:llama-index`` and nothing is checked).
    fusion: how HYBRID queries fuse the legs (``Fusion``: rrf or dbsf; a query's ``alpha`` overrides its alpha);
    default from the settings (SIMLOOKUP_KEYWORD__FUSION, rrf).
    """

    stores_text: bool = True
    is_embedding_query: bool = True
    flat_metadata: bool = False
    collection_name: str
    index: str = "hnsw"

    _collection: TextCollection = PrivateAttr()

    def __init__(
        self,
        collection: str,
        index: str = "hnsw",
        settings: Settings | None = None,
        *,
        indexes: Sequence[str] | None = None,
        metric: Metric | str | None = None,
        read_only: bool = False,
        embed_model: Any = None,
        embedding_fingerprint: str | None = None,
        search_params: SearchParams | None = None,
        fusion: Fusion | None = None,
    ) -> None:
        # pydantic sets this subclass's own fields; mypy checks against the base's synthesized __init__ only
        super().__init__(collection_name=collection, index=index)  # type: ignore[call-arg]
        fp = embedding_fingerprint or (external_fingerprint(embed_model) if embed_model is not None else None)
        settings = settings or load_settings()
        ks = settings.keyword
        self._fusion = fusion or Fusion(ks.fusion, ks.alpha, ks.rrf_k)
        self._collection = TextCollection(
            settings,
            collection,
            index=index,
            embedder=FunctionEmbedder(fp or DEFAULT_FINGERPRINT, _no_embedding, _no_embedding),
            indexes=indexes,
            metric=metric,
            read_only=read_only,
            origin="llama-index",
            check_fingerprint=fp is not None,
        )
        self._search_params = search_params

    @classmethod
    def class_name(cls) -> str:
        return "SimlookupVectorStore"

    @property
    def client(self) -> TextCollection:
        """The underlying collection (every index of it, searched through ``index``)."""
        return self._collection

    # ---- writes ----
    def add(self, nodes: Sequence[BaseNode], **add_kwargs: Any) -> list[str]:
        """Upsert nodes (with their embeddings) into every index of the collection. Returns the node ids."""
        if not nodes:
            return []
        ids, vecs, payloads = [], [], []
        for node in nodes:
            emb = node.get_embedding()  # raises when LlamaIndex did not embed the node
            md = node_to_metadata_dict(node, remove_text=True, flat_metadata=self.flat_metadata)
            payloads.append(self._collection.payload(node.get_content(metadata_mode=MetadataMode.NONE), md))
            ids.append(node.node_id)
            vecs.append(emb)
        return self._collection.upsert(ids, np.asarray(vecs, dtype=np.float32), payloads)

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete every node of one source document."""
        self._collection.delete(self._collection.matching_ids({"ref_doc_id": {"$eq": ref_doc_id}}))

    def delete_nodes(
        self,
        node_ids: list[str] | None = None,
        filters: MetadataFilters | None = None,
        **delete_kwargs: Any,
    ) -> None:
        """Delete nodes by id and/or metadata filter (both given: the nodes that satisfy both)."""
        self._collection.delete([n.node_id for n in self.get_nodes(node_ids, filters)])

    def clear(self) -> None:
        """Delete every node."""
        self._collection.delete(self._collection.matching_ids(None))

    # ---- reads ----
    def _node(self, pid: str, payload: dict[str, Any]) -> BaseNode:
        text, md = self._collection.split(payload)
        if "_node_content" in md:
            return metadata_dict_to_node(md, text=text)
        return TextNode(id_=pid, text=text, metadata=md)  # a point simlookup ingest wrote

    def get_nodes(self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None) -> list[BaseNode]:
        """Nodes by id (in that order) and/or matching a metadata filter."""
        spec = translate_filters(filters)
        if node_ids is None:
            if spec is None:
                raise InvalidInputError("get_nodes needs node_ids or filters")
            ids = self._collection.matching_ids(spec)
        else:
            ids = list(node_ids)
        rows = self._collection.fetch(ids)
        flt = Filter.from_dict(spec) if spec is not None and node_ids is not None else None
        return [self._node(i, pl) for i, _, pl in rows if flt is None or flt.matches(pl)]

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """The best nodes for a query, with filters, doc_ids and node_ids applied exactly: DEFAULT by
        ``query_embedding`` (similarity: the index's, l2 as 1/(1+d)); SPARSE / TEXT_SEARCH by BM25 on
        ``query_str`` (``sparse_top_k`` or ``similarity_top_k`` hits; similarity: the BM25 score); HYBRID by both,
        fused (similarity: the fused score). HYBRID's legs: with ``sparse_top_k`` given, the dense leg
        ``similarity_top_k`` deep and the keyword leg ``sparse_top_k`` deep, as LlamaIndex's Qdrant store fetches
        them; without it, both legs ``max(k, SIMLOOKUP_KEYWORD__CANDIDATES)`` deep as every other simlookup
        surface. The answer holds ``hybrid_top_k`` (default ``similarity_top_k``) nodes."""
        mode = _MODES.get(query.mode)
        if mode is None:
            raise InvalidInputError(
                f"query mode {query.mode.value!r} is not supported: use default (dense), sparse, text_search or hybrid"
            )
        if mode != "keyword" and query.query_embedding is None:
            raise InvalidInputError("the query has no embedding (LlamaIndex embeds the query before calling query)")
        if mode != "dense" and not (query.query_str or "").strip():
            raise InvalidInputError(f"a {query.mode.value} query needs query_str: the keyword leg reads its words")
        spec = translate_filters(query.filters)
        if query.doc_ids:
            docs = {"ref_doc_id": {"$in": list(query.doc_ids)}}
            spec = docs if spec is None else {"$and": [spec, docs]}
        k = query.similarity_top_k
        params = kwargs.get("params") or self._search_params
        if query.node_ids:  # LlamaIndex's retriever passes [] for "no restriction"
            if mode != "dense":
                raise InvalidInputError(f"node_ids restrict default (dense) queries only, not {query.mode.value} ones")
            hits = self._among(query.node_ids, query.query_embedding, k, spec)
        elif mode == "dense":
            hits = self._collection.search(query.query_embedding, k, spec, params)
        elif mode == "keyword":
            hits = self._collection.search(None, query.sparse_top_k or k, spec, None, query.query_str, "keyword")
        else:
            hits = self._hybrid(query, spec, params)
        metric = self._collection.metric
        return VectorStoreQueryResult(
            nodes=[self._node(h.id, h.payload) for h in hits],
            similarities=[similarity(metric, float(h.score)) if mode == "dense" else float(h.score) for h in hits],
            ids=[h.id for h in hits],
        )

    def _hybrid(self, query: VectorStoreQuery, spec: dict[str, Any] | None, params: SearchParams | None) -> list[Hit]:
        f = self._fusion
        fusion = Fusion(f.method, f.alpha if query.alpha is None else query.alpha, f.rrf_k)
        size = query.hybrid_top_k or query.similarity_top_k
        text, vec = query.query_str, query.query_embedding
        if query.sparse_top_k is None:
            return self._collection.search(vec, size, spec, params, text, "hybrid", fusion)
        self._collection.require_keyword()
        dense = self._collection.search(vec, query.similarity_top_k, spec, params)
        keyword = self._collection.keyword_hits(text or "", query.sparse_top_k, spec)
        return fuse(dense, keyword, fusion, size)

    def _among(self, node_ids: list[str], vector: Any, k: int, spec: dict[str, Any] | None) -> list[Hit]:
        """Exact top k among the given nodes (their stored vectors), after the filter."""
        st = self._collection.search_store()
        if st is None:
            return []
        flt = Filter.from_dict(spec) if spec is not None else None
        rows = [
            (i, v, pl)
            for i, v, pl in self._collection.fetch(node_ids)
            if v is not None and (flt is None or flt.matches(pl))
        ]
        if not rows:
            return []
        q = st.check_vectors(vector, what="query")
        scores = exact_scores(q, np.stack([r[1] for r in rows]).astype(np.float32), st.metric)
        idx, sc = top_k(scores, k, st.metric)
        return [Hit(rows[i][0], float(s), rows[i][2]) for i, s in zip(idx[0], sc[0], strict=True)]

    # ---- lifecycle ----
    def persist(self, persist_path: str, fs: Any = None) -> None:
        """Flush every index (the data already lives in the collection's folders, not at persist_path)."""
        self._collection.flush()

    def close(self) -> None:
        """Flush and release every index. Idempotent."""
        self._collection.close()
