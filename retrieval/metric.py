"""The distance metric, one enum mapped per backend."""

from __future__ import annotations

from enum import StrEnum

import numpy as np

from retrieval.errors import UnknownKindError


class Metric(StrEnum):
    """cosine (vectors normalised, higher is closer), dot (higher is closer), l2 (distance, lower is closer)."""

    COSINE = "cosine"
    DOT = "dot"
    L2 = "l2"

    @classmethod
    def parse(cls, value: str | Metric) -> Metric:
        """Parse a metric name, refusing unknown ones with the list of known ones."""
        if isinstance(value, Metric):
            return value
        aliases = {"ip": "dot", "inner_product": "dot", "euclid": "l2", "euclidean": "l2", "cos": "cosine"}
        v = aliases.get(str(value).lower(), str(value).lower())
        try:
            return cls(v)
        except ValueError:
            raise UnknownKindError(f"unknown metric {value!r}: use one of {[m.value for m in cls]}") from None

    @property
    def higher_is_better(self) -> bool:
        return self is not Metric.L2


def exact_scores(queries: np.ndarray, vectors: np.ndarray, metric: Metric) -> np.ndarray:
    """(nq, n) scores in the metric's own convention (similarity, or euclidean distance for l2)."""
    if metric is Metric.L2:
        q2 = (queries**2).sum(1)[:, None]
        x2 = (vectors**2).sum(1)[None, :]
        d2 = np.maximum(q2 + x2 - 2.0 * queries @ vectors.T, 0.0)
        return np.sqrt(d2, dtype=np.float32)
    return (queries @ vectors.T).astype(np.float32)


def top_k(scores: np.ndarray, k: int, metric: Metric) -> tuple[np.ndarray, np.ndarray]:
    """Indices and scores of the k best per row, best first."""
    n = scores.shape[1]
    k = min(k, n)
    if k == 0:
        return np.zeros((scores.shape[0], 0), dtype=np.int64), np.zeros((scores.shape[0], 0), dtype=np.float32)
    key = -scores if metric.higher_is_better else scores
    part = np.argpartition(key, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(key, part, 1).argsort(axis=1, kind="stable")
    idx = np.take_along_axis(part, order, 1)
    return idx, np.take_along_axis(scores, idx, 1)
