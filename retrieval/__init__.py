"""simlookup's library core: settings, encoders, stores and the retriever.

Heavy modules (torch, faiss, qdrant) load only when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from retrieval.errors import SimlookupError
from retrieval.filters import Filter
from retrieval.settings import Settings, load_settings

if TYPE_CHECKING:
    from retrieval.metric import Metric
    from retrieval.retriever import Retriever, SearchResult
    from retrieval.stores import Hit, SearchParams, VectorStore, open_store

__all__ = [
    "Filter",
    "Hit",
    "Metric",
    "Retriever",
    "SearchParams",
    "SearchResult",
    "Settings",
    "SimlookupError",
    "VectorStore",
    "load_settings",
    "open_store",
]

_LAZY = {  # numpy and the engines load on first use: `simlookup verify` through a service imports neither
    "Metric": "retrieval.metric",
    "Retriever": "retrieval.retriever",
    "SearchResult": "retrieval.retriever",
    "Hit": "retrieval.stores",
    "SearchParams": "retrieval.stores",
    "VectorStore": "retrieval.stores",
    "open_store": "retrieval.stores",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)
