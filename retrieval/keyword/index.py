"""The keyword leg of a FAISS collection: an inverted index over the texts of its point store (one per vector space,
shared by every FAISS kind), scored by BM25 at query time.

The point store is the truth: the index follows it by ``sync`` (run before every search and save). Its fids only
grow and a replaced point gets a new fid, so catching up is exact and cheap: fids the store holds live and the
index has not seen are tokenized and added, fids the index holds that the store no longer does are dropped. A
compaction renumbers the store (its ``generation`` moves): the index remaps its fids with the store's record of
the renumbering, or rebuilds. Writes therefore need no hook: whatever wrote the points (the collection, an adapter,
a bare ``FaissStore``), the next sync sees it.

In memory: per fid its length in tokens and whether it is seen and live; postings (term → fids, term counts) in a
base sorted by term plus a small unsorted delta, merged (dropping dead fids) when the delta grows. The files
(``retrieval.keyword.files``) are a cache of that state, written crash-safely by writers; missing, damaged or of
another tokenizer, they are rebuilt from the point store.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from retrieval.keyword.bm25 import Bm25Params, doc_weights, idf
from retrieval.keyword.terms import doc_terms, text_of

log = logging.getLogger(__name__)
MERGE_MIN = 65_536  # delta postings merged into the base beyond this many, or a quarter of the base
_EMPTY_I = np.zeros(0, dtype=np.int64)
_EMPTY_F = np.zeros(0, dtype=np.float32)


class PointSource(Protocol):
    """What the index reads of a point store (``retrieval.stores.points.PointStore``)."""

    lock: Any
    seq: int
    generation: int
    next_fid: int

    @property
    def live(self) -> np.ndarray: ...

    def renumbering(self, generation: int) -> np.ndarray | None: ...


READ_BATCH = 8192  # payloads read from the point store at a time


def payloads_of(ps: Any, fids: np.ndarray) -> list[dict[str, Any]]:
    """The payloads of live fids of the point store, in their order: the one place the keyword leg reads them
    (a store that reads them from SQLite on demand, ``payloads``; one holding its rows in RAM, ``rows``)."""
    if hasattr(ps, "payloads"):
        return list(ps.payloads(fids))
    return [ps.rows[f][1] for f in fids.tolist()]


class KeywordIndex:
    """BM25 over the ``field`` texts of one point store; see the module docstring. Thread-safe."""

    def __init__(self, folder: Path, field: str = "text") -> None:
        self.folder = folder
        self.field = field
        self.lock = threading.RLock()
        self.stats: dict[str, int] = {"rebuilds": 0, "added": 0, "removed": 0, "remaps": 0}
        self.reset()

    def reset(self) -> None:
        """Empty: reflecting no point-store state."""
        self.generation = -1  # the point-store state this index reflects (-1: nothing yet)
        self.seq = -1
        self.next_fid = 0
        self.dl = np.zeros(0, dtype=np.int32)  # tokens per fid
        self.seen = np.zeros(0, dtype=bool)  # fid tokenized (its postings added)
        self.alive = np.zeros(0, dtype=bool)  # seen and still live in the point store
        self.n_docs = 0  # alive fids with at least one token
        self.total_len = 0
        self.terms = np.zeros(0, dtype=np.uint32)  # base postings: unique terms ascending,
        self.ptr = np.zeros(1, dtype=np.int64)  # their slices,
        self.p_fids = _EMPTY_I  # fids ascending within a term,
        self.p_tf = _EMPTY_F  # term counts
        self._delta: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (terms, fids, tf) since the merge
        self._d_terms = np.zeros(0, dtype=np.uint32)
        self._d_fids = _EMPTY_I
        self._d_tf = _EMPTY_F
        self._d_n = 0
        self.dirty = False  # changed since loaded or saved

    # ---- following the point store ----
    def sync(self, ps: PointSource) -> bool:
        """Bring the index in step with the point store; True if anything changed. Takes the store's lock."""
        with ps.lock, self.lock:
            if (ps.generation, ps.seq) == (self.generation, self.seq):
                return False
            if self.generation >= 0 and ps.generation != self.generation:
                old = ps.renumbering(self.generation) if ps.generation > self.generation else None
                if old is None or not self._remap(old):
                    self.rebuild(ps)
                    return True
            if not self._catch_up(ps):
                self.rebuild(ps)
                return True
            self.generation, self.seq = ps.generation, ps.seq
            self.dirty = True
            return True

    def rebuild(self, ps: PointSource) -> None:
        """Index every live point of the store from scratch (under its lock)."""
        with ps.lock, self.lock:
            self.reset()
            self.stats["rebuilds"] += 1
            ok = self._catch_up(ps)
            assert ok
            self.generation, self.seq = ps.generation, ps.seq
            self.dirty = True

    def _grow(self, n: int) -> None:
        if n <= len(self.dl):
            return
        cap = max(n, 2 * len(self.dl), 1024)
        for name in ("dl", "seen", "alive"):
            old = getattr(self, name)
            new = np.zeros(cap, dtype=old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)

    def _catch_up(self, ps: PointSource) -> bool:
        """Add the live fids not seen, drop the seen ones no longer live. False when the index is ahead of the
        store (a reader's older snapshot): the caller rebuilds."""
        n = ps.next_fid
        if self.next_fid > n:
            return False
        self._grow(n)
        want = ps.live[:n]
        if (self.seen[:n] & ~self.alive[:n] & want).any():
            return False  # a fid dead here is live there: the store is older than this index
        gone = np.flatnonzero(self.alive[:n] & ~want)
        if len(gone):
            self._drop(gone)
        new = np.flatnonzero(want & ~self.seen[:n])
        if len(new):
            self._add(ps, new)
        self.next_fid = n
        return True

    def _drop(self, fids: np.ndarray) -> None:
        lens = self.dl[fids]
        self.alive[fids] = False
        self.n_docs -= int((lens > 0).sum())
        self.total_len -= int(lens.sum())
        self.stats["removed"] += len(fids)

    def _add(self, ps: Any, fids: np.ndarray) -> None:
        terms, owners, tfs = [], [], []
        lens = np.zeros(len(fids), dtype=np.int32)
        for start in range(0, len(fids), READ_BATCH):
            part = fids[start : start + READ_BATCH]
            for j, (fid, payload) in enumerate(zip(part.tolist(), payloads_of(ps, part), strict=True)):
                ids, tf, n = doc_terms(text_of(payload, self.field))
                lens[start + j] = n
                if n:
                    terms.append(ids)
                    tfs.append(tf)
                    owners.append(np.full(len(ids), fid, dtype=np.int64))
        self.dl[fids] = lens
        self.seen[fids] = True
        self.alive[fids] = True
        self.n_docs += int((lens > 0).sum())
        self.total_len += int(lens.sum())
        self.stats["added"] += len(fids)
        if terms:
            t, f, w = np.concatenate(terms), np.concatenate(owners), np.concatenate(tfs)
            self._delta.append((t, f, w))
            self._d_n += len(t)
            self._d_terms = np.zeros(0, dtype=np.uint32)  # the concatenated delta is rebuilt on demand
            if self._d_n > max(MERGE_MIN, len(self.p_fids) // 4):
                self.merge()

    def _remap(self, old_fids: np.ndarray) -> bool:
        """A compaction gave the live points fids 0..n-1 (new fid i was ``old_fids[i]``): renumber the index.
        False when the record does not fit this index (the caller rebuilds). Points written after this index's last
        sync are not seen here: the catch-up that follows adds them."""
        self.merge()
        n = len(old_fids)
        cap = max(n, 1024)
        dl, seen, alive = np.zeros(cap, dtype=np.int32), np.zeros(cap, dtype=bool), np.zeros(cap, dtype=bool)
        idx = np.flatnonzero(old_fids < self.next_fid)
        src = old_fids[idx]
        dl[idx], seen[idx], alive[idx] = self.dl[src], self.seen[src], self.alive[src]
        if (seen[:n] & ~alive[:n]).any():
            return False  # a point the store kept live was dropped here: the index is not the store's past
        if len(self.terms):
            pos = np.searchsorted(old_fids, self.p_fids)
            keep = pos < n
            keep[keep] = old_fids[pos[keep]] == self.p_fids[keep]
            counts = np.add.reduceat(keep.astype(np.int64), self.ptr[:-1])
            self.p_fids, self.p_tf = pos[keep].astype(np.int64), self.p_tf[keep]
            nonempty = counts > 0
            self.terms = self.terms[nonempty]
            self.ptr = np.concatenate([[0], np.cumsum(counts[nonempty])]).astype(np.int64)
        self.dl, self.seen, self.alive, self.next_fid = dl, seen, alive, n
        self.stats["remaps"] += 1
        return True

    # ---- postings ----
    def merge(self) -> None:
        """Merge the delta into the base, dropping the postings of dead fids."""
        with self.lock:
            if not self._delta and not len(self.p_fids):
                return
            base_terms = np.repeat(self.terms, np.diff(self.ptr))
            t = np.concatenate([base_terms, *(d[0] for d in self._delta)])
            f = np.concatenate([self.p_fids, *(d[1] for d in self._delta)])
            w = np.concatenate([self.p_tf, *(d[2] for d in self._delta)])
            keep = self.alive[f] if len(f) else np.zeros(0, dtype=bool)
            t, f, w = t[keep], f[keep], w[keep]
            order = np.lexsort((f, t))
            t, f, w = t[order], f[order], w[order]
            self.terms, starts = np.unique(t, return_index=True)
            self.ptr = np.append(starts, len(t)).astype(np.int64)
            self.p_fids, self.p_tf = f.astype(np.int64), w.astype(np.float32)
            self._delta, self._d_n = [], 0
            self._d_terms, self._d_fids, self._d_tf = np.zeros(0, dtype=np.uint32), _EMPTY_I, _EMPTY_F

    def _postings(self, term: int) -> tuple[np.ndarray, np.ndarray]:
        """(fids, term counts) of one term, dead fids included."""
        i = int(np.searchsorted(self.terms, term))
        f, w = _EMPTY_I, _EMPTY_F
        if i < len(self.terms) and int(self.terms[i]) == term:
            a, b = int(self.ptr[i]), int(self.ptr[i + 1])
            f, w = self.p_fids[a:b], self.p_tf[a:b]
        if self._delta:
            if len(self._d_terms) != self._d_n:
                self._d_terms = np.concatenate([d[0] for d in self._delta])
                self._d_fids = np.concatenate([d[1] for d in self._delta])
                self._d_tf = np.concatenate([d[2] for d in self._delta])
            hit = np.flatnonzero(self._d_terms == term)
            if len(hit):
                f, w = np.concatenate([f, self._d_fids[hit]]), np.concatenate([w, self._d_tf[hit]])
        return f, w

    # ---- search ----
    def search(
        self,
        q_terms: np.ndarray,
        q_tf: np.ndarray,
        k: int,
        allowed: np.ndarray | None = None,
        avgdl: float | None = None,
        params: Bm25Params | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(fids, scores) of the best ``k`` documents holding at least one query term, best first (ties: lower fid
        first). ``allowed``: sorted fids a filter matched (a pre-filter: IDF stays collection-wide). ``avgdl``:
        the collection's fixed average length (default: this index's own)."""
        params = params or Bm25Params()
        with self.lock:
            n = self.n_docs
            if not n or not len(q_terms) or k <= 0:
                return _EMPTY_I, np.zeros(0, dtype=np.float64)
            avg = avgdl if avgdl else self.total_len / n
            fs: list[np.ndarray] = []
            ws: list[np.ndarray] = []
            for term, qtf in zip(q_terms.tolist(), q_tf.tolist(), strict=True):
                f, tf = self._postings(int(term))
                live = self.alive[f]
                f, tf = f[live], tf[live]
                if not len(f):
                    continue
                fs.append(f)
                ws.append(qtf * idf(n, len(f)) * doc_weights(tf, self.dl[f], avg, params))
        if not fs:
            return _EMPTY_I, np.zeros(0, dtype=np.float64)
        f, w = np.concatenate(fs), np.concatenate(ws)
        if allowed is not None:
            keep = np.isin(f, allowed, assume_unique=False)
            f, w = f[keep], w[keep]
        if len(fs) > 1 or allowed is not None:
            f, inv = np.unique(f, return_inverse=True)
            w = np.bincount(inv, weights=w, minlength=len(f))
        if len(f) > k:
            part = np.argpartition(-w, k - 1)[:k]
            cut = w[part].min()  # every fid tied with the k-th score is a candidate: ties break by fid
            part = np.flatnonzero(w >= cut)
            f, w = f[part], w[part]
        order = np.lexsort((f, -w))[:k]
        return f[order], w[order]

    # ---- what it holds ----
    def info(self) -> dict[str, Any]:
        """Documents, terms, postings and memory of the index."""
        with self.lock:
            postings = len(self.p_fids) + self._d_n
            arrays = (self.dl, self.seen, self.alive, self.terms, self.ptr, self.p_fids, self.p_tf)
            return {
                "documents": self.n_docs,
                "avgdl": round(self.total_len / self.n_docs, 3) if self.n_docs else 0.0,
                "terms": len(self.terms),
                "postings": postings,
                "memory_bytes": int(sum(a.nbytes for a in arrays)) + self._d_n * 16,
                "generation": self.generation,
                "seq": self.seq,
                "path": str(self.folder),
            }
