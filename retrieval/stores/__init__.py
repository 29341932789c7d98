"""Stores: one contract (``VectorStore``) over FAISS and Qdrant, and ``open_store`` to pick one by name."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from retrieval.errors import UnknownKindError
from retrieval.metric import Metric
from retrieval.names import check_name
from retrieval.settings import Settings
from retrieval.stores.base import Hit, SearchParams, VectorStore
from retrieval.stores.faiss_params import DEFAULT_KINDS, FAISS_KINDS, FaissBuildParams, FaissQueryDefaults
from retrieval.stores.faiss_store import FaissStore

QDRANT_INDEX = "qdrant"
INDEX_NAMES = (*FAISS_KINDS, QDRANT_INDEX)

__all__ = [
    "DEFAULT_KINDS",
    "FAISS_KINDS",
    "INDEX_NAMES",
    "QDRANT_INDEX",
    "FaissStore",
    "Hit",
    "SearchParams",
    "VectorStore",
    "open_store",
]


def open_store(
    settings: Settings,
    name: str,
    index: str,
    dim: int | None = None,
    metric: Metric | str = Metric.COSINE,
    fingerprint: str | None = None,
    create: bool = True,
    read_only: bool = False,
    vector_name: str = "",
    payload_indexes: Mapping[str, Any] | None = None,
    vectors: Mapping[str, int] | None = None,
    sparse_vectors: Sequence[str] = (),
    **build_overrides: Any,
) -> VectorStore:
    """Open (or create) the store ``name`` for one index: a FAISS kind or ``qdrant`` (mode from settings).

    ``read_only=True`` opens an existing store that refuses writes (StoreLockedError) and changes no file.

    Its searches are capped by ``settings.limits`` (SIMLOOKUP_LIMITS__*), as the Retriever's are."""
    check_name(name, "store name")
    root = settings.data_dir
    if index in FAISS_KINDS:
        return _capped(settings, FaissStore(
            root,
            name,
            FaissBuildParams.from_settings(index, settings.faiss, **build_overrides),
            dim=dim,
            metric=metric,
            fingerprint=fingerprint,
            query_defaults=FaissQueryDefaults.from_settings(settings.faiss),
            create=create,
            read_only=read_only,
        ))
    if index == QDRANT_INDEX:
        q = settings.qdrant
        common: dict[str, Any] = {
            "dim": dim,
            "metric": metric,
            "fingerprint": fingerprint,
            "vector_name": vector_name,
            "payload_indexes": payload_indexes,
            "create": create,
            "vectors": vectors,
            "read_only": read_only,
            "sparse": tuple(sparse_vectors),  # a new Qdrant collection's sparse vectors (the keyword leg)
        }
        if q.mode == "edge":
            from retrieval.stores.qdrant_edge_store import QdrantEdgeStore

            return _capped(settings, QdrantEdgeStore(root, name, q, **common))
        from retrieval.stores.qdrant_client_store import QdrantClientStore, make_client

        client = make_client(q, root, read_only=read_only)
        return _capped(settings, QdrantClientStore(client, name, q, **common))
    raise UnknownKindError(f"unknown index {index!r}: use one of {list(INDEX_NAMES)}")


def _capped(settings: Settings, store: VectorStore) -> VectorStore:
    """The store with the settings' query caps."""
    store.limits = settings.limits
    return store
