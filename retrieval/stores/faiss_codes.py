"""How well a quantized FAISS index codes its vectors: the error limit of an index, the reconstruction error of
the vectors it holds, and the 8-bit ranges learnt from every point (``faiss_store`` uses them).

A code is only as good as its training: faiss' 8-bit scalar quantizer clips every value outside the ranges it
learnt (one min/max per dimension) and PQ codebooks learnt on other data code new vectors far off. Such a vector
is answered with a wrong score, silently. So every vector added to a coded kind is decoded again and compared with
the vector itself: one whose error passes the index's limit is held out of the index (``uncoded``) and answered
exactly until the next build retrains the kind on the data as it is now."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from retrieval.metric import Metric
from retrieval.stores.faiss_exact import exact, merged
from retrieval.stores.faiss_files import KindFiles, following
from retrieval.stores.faiss_params import HNSW_KINDS, faiss_module, index_ids, ivf_lists, remove_ids, scalar_quantizer

CODED_KINDS = ("ivfpq", "ivf_sq8", "hnsw_sq8")  # kinds that answer from lossy codes
UNCODED_KEEP = 1024  # build retrains once more than this many points (or 0.1% of them) are held out
MIN_LIMIT = 1e-4  # an index that codes its training points exactly still allows float rounding
CHUNK = 65536  # points decoded and compared at a time


def codes_vectors(index: Any, kind: str) -> bool:
    """Whether an 8-bit index codes the vectors themselves (not their residuals from a list centre, as an ivf_sq8
    trained before these checks does)."""
    return kind == "hnsw_sq8" or (kind == "ivf_sq8" and not index.by_residual)


def _ranges(index: Any, kind: str) -> tuple[np.ndarray, np.ndarray]:
    trained = faiss_module().vector_to_array(scalar_quantizer(index, kind).trained)
    return trained[: index.d], trained[index.d :]  # faiss RS_minmax: vmin, vdiff


def sq_limit(index: Any, kind: str) -> float:
    """The error limit of an 8-bit index: twice the most a vector inside the ranges can be off (half a step of
    vdiff/255 in each dimension); only a clipped vector passes it."""
    vdiff = _ranges(index, kind)[1]
    return max(2.0 * float(np.sqrt(np.sum((vdiff / 255 / 2) ** 2))), MIN_LIMIT)


def _by_id(index: Any, fids: np.ndarray, vectors: np.ndarray) -> Any:
    """How far an IVF index's codes of ``fids`` are from ``vectors``, decoded by id (its hashtable direct map)."""
    return np.linalg.norm(index.reconstruct_batch(np.ascontiguousarray(fids, dtype=np.int64)) - vectors, axis=1)


def added_errors(index: Any, kind: str, fids: np.ndarray, vectors: np.ndarray) -> Any:
    """Per vector just added, how far its code is from it: an 8-bit code of the vector itself at most by what the
    ranges clip plus half a step in each dimension (numpy, no decoding); other codes decoded by id."""
    if codes_vectors(index, kind):
        lo, vdiff = _ranges(index, kind)
        off = np.clip(vectors, lo, lo + vdiff)  # in place from here: one (n, d) temporary, a few passes over it
        np.subtract(vectors, off, out=off)
        np.abs(off, out=off)
        off += (vdiff / 255 / 2).astype(off.dtype)
        return np.sqrt(np.einsum("nd,nd->n", off, off))
    return _by_id(index, fids, vectors)


def _stored(index: Any, kind: str) -> Any:
    """(fids, decode) per block of the codes the index stores (the graph's, or each IVF list's): decode(rows)
    decodes the block's codes at positions ``rows``."""
    f = faiss_module()
    if kind in HNSW_KINDS:
        storage = f.downcast_index(f.downcast_index(index.index).storage)
        codes = f.rev_swig_ptr(storage.codes.data(), storage.ntotal * storage.code_size)
        codes = codes.reshape(storage.ntotal, storage.code_size)
        yield f.vector_to_array(index.id_map).astype(np.int64), lambda nodes: storage.sq.decode(codes[nodes])
        return
    size = index.code_size
    quant = index.sq if kind == "ivf_sq8" else index.pq
    for lst, in_list in ivf_lists(index):
        n = len(in_list)
        ids = in_list.astype(np.int64)
        codes = f.rev_swig_ptr(index.invlists.get_codes(lst), n * size).reshape(n, size).copy()
        centre = index.quantizer.reconstruct(lst) if index.by_residual else 0.0
        yield ids, lambda rows, c=codes, z=centre: quant.decode(c[rows]) + z


def stored_errors(
    index: Any, kind: str, vectors_of: Callable[[np.ndarray], np.ndarray], held: np.ndarray, n: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """(fids, errors): how far the codes the index stores are from the stored vectors, for up to ``n`` of the
    points it answers from (a seeded sample; None: every one), ``held`` (sorted fids it skips) left out."""
    if n is not None and kind not in HNSW_KINDS:  # a sample of an IVF index: decoded by id
        ids = index_ids(index, kind)
        if len(ids) > n:
            ids = np.sort(np.random.default_rng(0).choice(ids, n, replace=False))
        got = [_by_id(index, ids[i : i + CHUNK], vectors_of(ids[i : i + CHUNK])) for i in range(0, len(ids), CHUNK)]
        return ids, np.concatenate(got) if got else np.zeros(0, dtype=np.float32)
    fids, errs = [], []
    for ids, decoded in _stored(index, kind):
        rows = np.flatnonzero((ids >= 0) & ~np.isin(ids, held))
        if n is not None and len(rows) > n:
            rows = np.sort(np.random.default_rng(0).choice(rows, n, replace=False))
        for i in range(0, len(rows), CHUNK):
            part = rows[i : i + CHUNK]
            errs.append(np.linalg.norm(decoded(part) - vectors_of(ids[part]), axis=1))
            fids.append(ids[part])
    if not fids:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    return np.concatenate(fids), np.concatenate(errs)


def code_limit(index: Any, kind: str, trained: np.ndarray | None, sampled: np.ndarray | None = None) -> float | None:
    """The error past which a code of ``index`` misses its vector: the 8-bit kinds' ``sq_limit``; ivfpq twice the
    worst error of ``trained`` (a sample of the points it was trained on, encoded and decoded) or, for an index
    trained before limits were recorded, three times the median error of ``sampled`` codes; None for other kinds."""
    if kind in ("ivf_sq8", "hnsw_sq8"):
        return sq_limit(index, kind)
    if kind != "ivfpq":
        return None
    if trained is not None and len(trained):
        worst = float(np.linalg.norm(index.sa_decode(index.sa_encode(trained)) - trained, axis=1).max())
        return max(2.0 * worst, MIN_LIMIT)
    return max(3.0 * float(np.median(sampled)), MIN_LIMIT) if sampled is not None and len(sampled) else None


def retrain_due(index: Any, kind: str, held: int, n: int) -> bool:
    """Whether build retrains a coded kind holding ``held`` of its ``n`` points out: more than 0.1% of them (any,
    below 1,000 points) or more than UNCODED_KEEP; and an ivf_sq8 of residuals (trained before these checks, its
    ranges from a sample)."""
    return held > min(n // 1000, UNCODED_KEEP) or (kind == "ivf_sq8" and not codes_vectors(index, kind))


class CodedKind(KindFiles):
    """The code checks of a FAISS kind: a mixin of ``FaissStore`` over the state ``KindFiles`` declares."""

    def _add(self, fids: np.ndarray, vectors: np.ndarray) -> None:
        """Add points to the index; a coded kind with a limit (not while it trains) checks their codes and holds
        out (answers exactly) those further off than its limit."""
        self._index.add_with_ids(vectors, fids)
        if self._code_limit is not None and self.kind in CODED_KINDS and len(fids):
            self._hold_out(fids[added_errors(self._index, self.kind, fids, vectors) > self._code_limit])

    def _hold_out(self, fids: np.ndarray) -> None:
        if len(fids):  # out of an IVF index; an HNSW graph keeps the nodes and its selector skips them
            if self.kind not in HNSW_KINDS:
                remove_ids(self._index, fids)
            self._uncoded = np.union1d(self._uncoded, fids)
            self._tomb_sel = None
            self.stats["held_out"] += len(fids)

    def _sampled_errors(self, n: int | None) -> tuple[np.ndarray, np.ndarray]:
        held = np.union1d(self._tomb, self._uncoded)
        return stored_errors(self._index, self.kind, self._ps.vectors.read_rows, held, n)

    def _limit_from_codes(self) -> None:
        """An index built before codes were checked (no recorded limit): one from a sample of its own codes."""
        sampled = self._sampled_errors(2048)[1] if self.kind == "ivfpq" else None
        self._code_limit = code_limit(self._index, self.kind, None, sampled)

    def _recheck(self) -> None:
        """At build: every code checked (those past the limit held out, so the build retrains) when the index was
        built before codes were checked, or when a sample of 2,048 of its codes finds one past the limit."""
        if self._code_limit is None:
            return
        if not self._scan_due and not (self._sampled_errors(2048)[1] > self._code_limit).any():
            return
        fids, err = self._sampled_errors(None)
        self._hold_out(np.unique(fids[(err > self._code_limit) & self._ps.live[fids]]))
        self._scan_due = False

    def _with_held_out(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None, found: tuple[np.ndarray, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """The index's (fids, scores) with the held-out points (the filter's among them) scored exactly, merged."""
        held = self._uncoded if allowed is None else np.intersect1d(self._uncoded, allowed, assume_unique=True)
        if not len(held):
            return found
        self.stats["held_out_searches"] += 1
        out = exact(self._ps, self.metric, queries, min(k, len(held)), held)
        return merged(found, out, k, self.metric is Metric.L2)

    @following
    def check_codes(self, sample: int | None = 2048) -> dict[str, Any] | None:
        """How far the codes of a coded kind are from the stored vectors, for ``sample`` of the points its index
        answers from (None: every one): {"checked", "off" (past the limit), "worst", "limit", "held_out"}. None
        for a kind without codes or an index not trained yet."""
        self.refresh()
        with self._ps.lock:
            if self.kind not in CODED_KINDS or self._index is None:
                return None
            fids, err = self._sampled_errors(sample)
            limit = self._code_limit or code_limit(self._index, self.kind, None, err) or MIN_LIMIT
            return {
                "checked": len(fids),
                "off": int((err > limit).sum()),
                "worst": float(err.max(initial=0)),
                "limit": limit,
                "held_out": len(self._uncoded),
            }
