"""Benchmark datasets as plain numpy arrays (after faiss contrib/datasets.py).

``clustered`` is the seeded synthetic set used by tests and ``--dataset synthetic``: Gaussian clusters
on the unit sphere, never isotropic random vectors (on which every ANN index collapses).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Dataset:
    """Base vectors, held-out queries, the metric, and (lazily) exact ground truth."""

    name: str
    xb: np.ndarray
    xq: np.ndarray
    metric: str = "cosine"
    ids: list[str] | None = None
    base_texts: list[str] = field(default_factory=list)
    query_texts: list[str] = field(default_factory=list)

    @property
    def dim(self) -> int:
        return int(self.xb.shape[1])

    def point_ids(self) -> list[str]:
        return self.ids if self.ids is not None else [f"p{i}" for i in range(len(self.xb))]


def clustered(
    n: int = 10_000,
    d: int = 64,
    nq: int = 100,
    clusters: int | None = None,
    spread: float = 0.35,
    seed: int = 0,
    normalize: bool = True,
) -> Dataset:
    """Seeded clustered vectors: cluster centres on the sphere plus Gaussian noise; queries drawn alike."""
    rng = np.random.default_rng(seed)
    k = clusters or max(8, int(np.sqrt(n) / 2))
    centres = rng.normal(size=(k, d)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)

    def draw(m: int) -> np.ndarray:
        lab = rng.integers(0, k, m)
        x = centres[lab] + spread * rng.normal(size=(m, d)).astype(np.float32) / np.sqrt(d) * 3
        if normalize:
            x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x.astype(np.float32)

    return Dataset(f"clustered-{n}x{d}", draw(n), draw(nq), "cosine" if normalize else "l2")
