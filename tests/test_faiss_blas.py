"""faiss' switch to BLAS for exhaustive distances: set from 20 queries at 384-d (faiss 1.15's default waits for
333), and the BLAS path answers a batch like one query at a time."""

from __future__ import annotations

import numpy as np

from retrieval.stores.faiss_params import BLAS_WORK, faiss_module


def test_batches_of_twenty_queries_take_the_blas_path_with_the_same_answers() -> None:
    f = faiss_module()
    assert f.cvar.distance_compute_blas_threshold == BLAS_WORK == 20 * 384
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 384)).astype(np.float32)
    q = rng.normal(size=(40, 384)).astype(np.float32)  # 40 · 384 ≥ BLAS_WORK: BLAS
    d_batch, i_batch = f.knn(q, x, 10, metric=f.METRIC_INNER_PRODUCT)
    one = [f.knn(q[j : j + 1], x, 10, metric=f.METRIC_INNER_PRODUCT) for j in range(len(q))]  # faiss' own loop
    assert np.array_equal(i_batch, np.vstack([i for _, i in one]))
    np.testing.assert_allclose(d_batch, np.vstack([d for d, _ in one]), rtol=1e-4, atol=1e-4)
    truth = np.argsort(-(q @ x.T), axis=1)[:, :10]
    assert np.array_equal(i_batch, truth)
