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
from retrieval.stores.faiss_params import HNSW_KINDS, faiss_module, index_ids, remove_ids, scalar_quantizer

CODED_KINDS = ("ivfpq", "ivf_sq8", "hnsw_sq8")  # kinds that answer from lossy codes
UNCODED_KEEP = 1024  # build retrains once more than this many points (or 0.1% of them) are held out
MIN_LIMIT = 1e-4  # an index that codes its training points exactly still allows float rounding
CHUNK = 65536  # points decoded and compared at a time


def sq_limit(index: Any, kind: str) -> float:
    """The error limit of an 8-bit index: twice the most a vector inside the ranges can be off (half a step of
    vdiff/255 in each dimension); only a clipped vector passes it."""
    sq = scalar_quantizer(index, kind)
    vdiff = faiss_module().vector_to_array(sq.trained)[index.d :]
    return max(2.0 * float(np.sqrt(np.sum((vdiff / 255 / 2) ** 2))), MIN_LIMIT)


def decode(index: Any, kind: str, fids: np.ndarray, nodes: np.ndarray | None = None) -> np.ndarray:
    """What the index holds for ``fids``: IVF kinds by id (hashtable direct map), hnsw_sq8 by graph node
    (``nodes``: the nodes holding them; None: the last len(fids) nodes added)."""
    f = faiss_module()
    if kind not in HNSW_KINDS:
        return np.asarray(index.reconstruct_batch(np.ascontiguousarray(fids, dtype=np.int64)))
    inner = f.downcast_index(index.index)
    if nodes is None:
        return np.asarray(inner.reconstruct_n(index.ntotal - len(fids), len(fids)))
    return np.asarray(inner.reconstruct_batch(np.ascontiguousarray(nodes, dtype=np.int64)))


def code_errors(index: Any, kind: str, fids: np.ndarray, vectors: np.ndarray, nodes: np.ndarray | None = None) -> Any:
    """Per vector, how far the index's code of it is from the vector (L2)."""
    if not len(fids):
        return np.zeros(0, dtype=np.float32)
    return np.linalg.norm(decode(index, kind, fids, nodes) - vectors, axis=1)


def sample_errors(
    index: Any, kind: str, vectors_of: Callable[[np.ndarray], np.ndarray], held: np.ndarray, n: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """(fids, errors) of up to ``n`` points the index holds (a seeded sample; None: every one), ``held`` (sorted
    fids excluded from answers) left out."""
    f = faiss_module()
    if kind in HNSW_KINDS:
        ids = f.vector_to_array(index.id_map).astype(np.int64)
        nodes = np.flatnonzero((ids >= 0) & ~np.isin(ids, held))
    else:
        ids = index_ids(index, kind)
        nodes = np.arange(len(ids))
    if n is not None and len(nodes) > n:
        nodes = np.sort(np.random.default_rng(0).choice(nodes, n, replace=False))
    fids = ids[nodes]
    errs = [
        code_errors(index, kind, fids[i : i + CHUNK], vectors_of(fids[i : i + CHUNK]), nodes[i : i + CHUNK])
        for i in range(0, len(fids), CHUNK)
    ]
    return fids, np.concatenate(errs) if errs else np.zeros(0, dtype=np.float32)


def code_limit(index: Any, kind: str, worst: float | None, sampled: np.ndarray | None = None) -> float | None:
    """The error past which a code of ``index`` misses its vector: the 8-bit kinds' ``sq_limit``; ivfpq twice the
    worst error of the points coded at training (``worst``) or, for an index trained before limits were recorded,
    three times the median error of ``sampled`` points; None for kinds without codes."""
    if kind in ("ivf_sq8", "hnsw_sq8"):
        return sq_limit(index, kind)
    if kind != "ivfpq":
        return None
    if worst is not None:
        return max(2.0 * worst, MIN_LIMIT)
    return max(3.0 * float(np.median(sampled)), MIN_LIMIT) if sampled is not None and len(sampled) else None


def uncoded_due(held: int, n: int) -> bool:
    """Whether build retrains a kind holding ``held`` of its ``n`` points out: more than 0.1% of them (any, below
    1,000 points) or more than UNCODED_KEEP."""
    return held > min(n // 1000, UNCODED_KEEP)


class CodedKind(KindFiles):
    """The code checks of a FAISS kind: a mixin of ``FaissStore`` over the state ``KindFiles`` declares."""

    def _add(self, fids: np.ndarray, vectors: np.ndarray) -> float:
        """Add points to the index; a coded kind decodes them again and holds out (answers exactly) those its
        codes miss by more than its limit. The largest code error added (0: a kind without codes)."""
        self._index.add_with_ids(vectors, fids)
        if self.kind not in CODED_KINDS or not len(fids):
            return 0.0
        err = code_errors(self._index, self.kind, fids, vectors)
        if self._code_limit is not None:
            self._hold_out(fids[err > self._code_limit])
        return float(err.max())

    def _hold_out(self, fids: np.ndarray) -> None:
        if len(fids):  # out of an IVF index; an HNSW graph keeps the nodes and its selector skips them
            if self.kind not in HNSW_KINDS:
                remove_ids(self._index, fids)
            self._uncoded = np.union1d(self._uncoded, fids)
            self._tomb_sel = None
            self.stats["held_out"] += len(fids)

    def _sampled_errors(self, n: int | None) -> tuple[np.ndarray, np.ndarray]:
        held = np.union1d(self._tomb, self._uncoded)
        return sample_errors(self._index, self.kind, self._ps.vectors.read_rows, held, n)

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
