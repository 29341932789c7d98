"""The one BM25 weighting of the keyword leg (bm25s' default ``lucene`` variant, k1=1.5, b=0.75).

For a query q and a document d of length |d| tokens, in a corpus of N documents whose average length is avgdl::

    score(q, d) = Σ_{t ∈ q} qtf(t) · idf(t) · tf(t, d) / (tf(t, d) + k1 · (1 - b + b · |d| / avgdl))
    idf(t)      = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))

``qtf`` counts a term repeated in the query (as bm25s and Lucene do). ``idf`` is Qdrant's IDF modifier formula, so
a Qdrant sparse vector holding the document factor ``tf / (tf + k1 · (1 - b + b · |d| / avgdl))`` (``doc_weights``)
queried with ``qtf`` per term scores exactly as above. N and df count the documents with at least one token.

Terms are numbered by ``term_id`` (crc32 of the UTF-8 token, a Qdrant sparse index is a uint32): no vocabulary
to keep in step between engines. Two distinct tokens may share a number (for a vocabulary of 100,000 tokens, about
one pair is expected): they then count as one term, on every engine alike.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from retrieval.keyword.spec import Bm25Params

__all__ = ["Bm25Params", "average_length", "doc_weights", "idf", "term_counts", "term_id"]


def term_id(token: str) -> int:
    """The number of a token: crc32 of its UTF-8 bytes (0 .. 2**32 - 1)."""
    return zlib.crc32(token.encode("utf-8"))


def term_counts(tokens: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
    """(term ids ascending as uint32, how often each occurs as float32) of a token list; tokens whose ids collide
    are counted together."""
    counts: Counter[int] = Counter(term_id(t) for t in tokens)
    ids = np.fromiter(counts.keys(), dtype=np.uint32, count=len(counts))
    tf = np.fromiter(counts.values(), dtype=np.float32, count=len(counts))
    order = np.argsort(ids)
    return ids[order], tf[order]


def idf(n_docs: int, df: np.ndarray | int) -> np.ndarray:
    """ln(1 + (N - df + 0.5) / (df + 0.5)), as float64 (Lucene's, bm25s' ``lucene`` and Qdrant's IDF)."""
    d = np.asarray(df, dtype=np.float64)
    return np.log1p((n_docs - d + 0.5) / (d + 0.5))


def doc_weights(tf: np.ndarray, doc_len: np.ndarray | float, avgdl: float, params: Bm25Params) -> np.ndarray:
    """The document factor of each term: tf / (tf + k1 · (1 - b + b · |d| / avgdl)) (float64)."""
    t = np.asarray(tf, dtype=np.float64)
    norm = params.k1 * (1.0 - params.b + params.b * np.asarray(doc_len, dtype=np.float64) / avgdl)
    return t / (t + norm)


def average_length(lengths: Sequence[int] | np.ndarray) -> float:
    """The mean length of the documents that have tokens (0.0 when none has)."""
    arr = np.asarray(lengths, dtype=np.float64)
    arr = arr[arr > 0]
    return float(arr.mean()) if len(arr) else 0.0
