"""Brute force, exact re-rank and hit assembly over a FAISS collection's point store: plain functions over
the point store's rows and vectors (``faiss_store`` calls them; flat, small filters and top-ups use them)."""

from __future__ import annotations

import numpy as np

from retrieval.metric import Metric
from retrieval.stores import points as pts
from retrieval.stores.base import Hit
from retrieval.stores.faiss_params import faiss_module

GATHER_ROWS = 2048  # filtered brute force: rows gathered and scored per block (3 MB at 384-d)


def exact(
    ps: pts.PointStore, metric: Metric, queries: np.ndarray, k: int, allowed: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Brute force over the vector file: the filter's matches, or every live row."""
    f = faiss_module()
    nq = len(queries)
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if allowed is not None and len(allowed) > GATHER_ROWS:
        return exact_chunked(ps, metric, q, k, allowed)
    dist = np.empty((nq, k), dtype=np.float32)
    labels = np.empty((nq, k), dtype=np.int64)
    if allowed is not None:
        base = np.ascontiguousarray(ps.vectors_of(allowed))
        sel = None
    else:
        base = ps.vectors.scan_view()
        sel = None
        if len(ps) != len(base):  # garbage rows of replaced / deleted points: skip them
            packed = np.packbits(ps.live, bitorder="little")
            sel = f.IDSelectorBitmap(len(base), f.swig_ptr(packed))
    ptrs = (f.swig_ptr(q), f.swig_ptr(base), ps.dim, nq, len(base), k, f.swig_ptr(dist), f.swig_ptr(labels))
    if metric is Metric.L2:
        f.knn_L2sqr(*ptrs, None, sel)
        dist = np.sqrt(np.maximum(dist, 0))
    else:
        f.knn_inner_product(*ptrs, sel)
    if allowed is not None:
        labels = np.where(labels >= 0, allowed[np.maximum(labels, 0)], -1)
    return labels, dist


def exact_chunked(
    ps: pts.PointStore, metric: Metric, q: np.ndarray, k: int, allowed: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Brute force over many matches: gather them a cache-sized block at a time into faiss's result heap
    (one 15 MB gather of 10k rows is memory-bound; blocks stay in cache while they are scored)."""
    f = faiss_module()
    l2 = metric is Metric.L2
    heap = f.ResultHeap(len(q), k, keep_max=not l2)
    view = ps.vectors.view()
    for s in range(0, len(allowed), GATHER_ROWS):
        part = allowed[s : s + GATHER_ROWS]
        kk = min(k, len(part))
        dist, labels = f.knn(q, view[part], kk, f.METRIC_L2 if l2 else f.METRIC_INNER_PRODUCT)
        heap.add_result(dist, part[labels])
    heap.finalize()
    dist = np.sqrt(np.maximum(heap.D, 0)) if l2 else heap.D
    return heap.I, dist


def rerank(
    ps: pts.PointStore, metric: Metric, queries: np.ndarray, cand: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rescore candidates exactly with their float vectors, read on demand: only the candidates' rows, with
    pread from the vector file (``VectorFile.read_rows``; nothing of the file is mapped into the process, so the
    float vectors need not be resident), or from the resident copy while flat holds one."""
    if len(cand) == 1:  # one query: a row gather and a mat-vec, no (nq, fetch, d) broadcasting
        c = cand[0]
        if c.min() < 0:
            c = c[c >= 0]
        vecs = ps.vectors.read_rows(c)
        q = queries[0]
        if metric is Metric.L2:
            diff = vecs - q
            sc = np.sqrt(np.einsum("cd,cd->c", diff, diff))
            order = np.argsort(sc, kind="stable")[:k]
        else:
            sc = vecs @ q
            order = np.argsort(-sc, kind="stable")[:k]
        f1 = np.full((1, k), -1, dtype=np.int64)
        s1 = np.zeros((1, k), dtype=np.float32)
        f1[0, : len(order)] = c[order]
        s1[0, : len(order)] = sc[order]
        return f1, s1
    valid = cand >= 0
    vecs = ps.vectors.read_rows(np.where(valid, cand, cand.max(initial=0)))  # (nq, fetch, d)
    if metric is Metric.L2:
        diff = vecs - queries[:, None, :]
        scores = np.sqrt(np.einsum("qcd,qcd->qc", diff, diff))
        key = np.where(valid, scores, np.inf)
    else:
        scores = np.einsum("qcd,qd->qc", vecs, queries)
        key = np.where(valid, -scores, np.inf)
    order = np.argsort(key, axis=1, kind="stable")[:, :k]
    fids = np.take_along_axis(cand, order, 1)
    out = np.take_along_axis(scores, order, 1).astype(np.float32)
    fids = np.where(np.take_along_axis(valid, order, 1), fids, -1)
    return fids, out


def merged(
    a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], k: int, l2: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The k best of two (fids, scores) results of the same queries (fids < 0, no result, last); a fid in both
    (a row of ``a`` answered exactly already holds the held-out points ``b`` adds) counts once."""
    bf = b[0].copy()
    for i in range(len(bf)):
        bf[i, np.isin(bf[i], a[0][i][a[0][i] >= 0])] = -1
    fids = np.concatenate([a[0], bf], axis=1)
    scores = np.concatenate([a[1], b[1]], axis=1).astype(np.float32)
    key = np.where(fids >= 0, scores if l2 else -scores, np.inf)
    order = np.argsort(key, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(fids, order, 1), np.take_along_axis(scores, order, 1)


def bare_hits(ps: pts.PointStore, fids: np.ndarray, scores: np.ndarray) -> list[list[Hit]]:
    """Hits with ids and scores only (``with_payload=False``): the ids read for them, no payload parsed."""
    rows = ps.rows_of(fids.ravel())  # one read for every query's hits
    return [
        [Hit(rows[f][0], s, {}) for f, s in zip(fr, sr, strict=True) if f in rows]
        for fr, sr in zip(fids.tolist(), scores.tolist(), strict=True)
    ]


def hits(ps: pts.PointStore, fids: np.ndarray, scores: np.ndarray) -> list[list[Hit]]:
    """Hits with their ids and payloads read for them (one read for every query's hits), each payload the
    caller's own object; fids < 0 (no result) and dead fids are skipped."""
    rows = ps.rows_of(fids.ravel())
    out: list[list[Hit]] = []
    for fr, sr in zip(fids.tolist(), scores.tolist(), strict=True):
        hits = []
        for fid, sc in zip(fr, sr, strict=True):
            row = rows.get(fid)
            if row is not None:
                pl = ps.payload(fid, row)  # parsed per hit: a fresh object, even for a point two queries share
                hits.append(Hit(row[0], sc, pl))
        out.append(hits)
    return out
