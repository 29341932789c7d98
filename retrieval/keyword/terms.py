"""Term vectors of documents and queries: a payload's text → (term ids, counts, length), and the sparse vector
Qdrant stores for it (``retrieval.keyword.spec`` says which field, which BM25 parameters, which average length)."""

from __future__ import annotations

from typing import Any

import numpy as np

from retrieval.keyword.bm25 import doc_weights, term_counts
from retrieval.keyword.spec import KeywordSpec
from retrieval.keyword.tokenize import tokenize


def text_of(payload: dict[str, Any], field: str) -> str:
    """The text the keyword leg reads from a payload ("" when the field is missing or not a string)."""
    v = payload.get(field)
    return v if isinstance(v, str) else ""


def doc_terms(text: str) -> tuple[np.ndarray, np.ndarray, int]:
    """(term ids ascending, term counts, length in tokens) of one document."""
    tokens = tokenize(text)
    ids, tf = term_counts(tokens)
    return ids, tf, len(tokens)


def doc_sparse(payload: dict[str, Any], spec: KeywordSpec) -> tuple[list[int], list[float]] | None:
    """The sparse vector (indices, values) Qdrant stores for one document; None for a document without tokens
    (it gets no sparse vector, and so is no part of N, as on the FAISS side)."""
    ids, tf, n = doc_terms(text_of(payload, spec.field))
    if not n:
        return None
    return ids.tolist(), doc_weights(tf, n, spec.avgdl, spec.params).astype(np.float32).tolist()


def query_terms(text: str) -> tuple[np.ndarray, np.ndarray]:
    """(term ids ascending, how often each occurs in the query) of one query; empty arrays for no tokens."""
    return term_counts(tokenize(text))
