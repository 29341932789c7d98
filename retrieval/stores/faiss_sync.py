"""Keeping a FAISS kind's index in step with the collection's point store: the change feed of every committed
write (adds checked against the codes, removals, HNSW tombstones and graph rebuilds), catching up from the vector
file, and remapping the index to the new fids after a compaction.

A mixin of ``FaissStore`` (over the state ``KindFiles`` declares; building and training stay in the store)."""

from __future__ import annotations

import logging

import numpy as np

from retrieval.stores.faiss_codes import CodedKind
from retrieval.stores.faiss_params import HNSW_KINDS, FaissQueryDefaults, faiss_module, index_ids, remove_ids

log = logging.getLogger(__name__)


class SyncedKind(CodedKind):
    """A FAISS kind that follows its point store's writes (a mixin of ``FaissStore``)."""

    defaults: FaissQueryDefaults

    def _add_live(self, fids: np.ndarray, chunk: int = 65536) -> None:
        raise NotImplementedError

    def _train_ivf(self) -> None:
        raise NotImplementedError

    # ---- the point store's change feed ----
    def on_change(self, added: np.ndarray, vectors: np.ndarray, removed: np.ndarray) -> None:
        """Apply one committed write of the point store to this index (called under the store's lock)."""
        if self._index is None:
            return  # flat, or not trained yet: the point store holds everything
        if len(removed):
            if self.kind in HNSW_KINDS:
                self._tomb = np.union1d(self._tomb, removed)  # faiss HNSW cannot remove: tombstones
                self._tomb_sel = None
            else:
                remove_ids(self._index, removed)
            if len(self._uncoded):
                self._uncoded = np.setdiff1d(self._uncoded, removed)
                self._tomb_sel = None
        if len(added):
            self._add(added, np.ascontiguousarray(vectors))
            if len(self._uncoded) > self.defaults.exact_filter_limit:  # too many to answer exactly: untrained now,
                log.info(
                    "FAISS store %s: %d points outside its codes; retrained at the next build or search",
                    self.dir,
                    len(self._uncoded),
                )
                self._new_index()  # the next build (or search) trains it on the data as it is
                self.stats["dropped"] += 1
                return
        if self.kind in HNSW_KINDS and len(removed):
            self._maybe_compact()

    def on_renumber(self, old_fids: np.ndarray) -> None:
        """The point store was compacted (under its lock): remap the index, and a writer records it at once."""
        self._renumber(old_fids)
        self._flush()

    def _catch_up(self) -> None:
        """Make the index hold exactly the live points (after a crash before flush, or another kind's writes)."""
        if self._index is None:
            return
        ids = index_ids(self._index, self.kind)
        live = self._ps.live
        inside = (ids >= 0) & (ids < len(live))  # hnsw: nodes of points dropped by a compaction hold ids < 0
        gone = ids[~inside | ~live[np.where(inside, ids, 0)]]
        have = np.zeros(len(live), dtype=bool)
        have[ids[inside]] = True
        missing = np.flatnonzero(live & ~have).astype(np.int64)
        if self.kind in HNSW_KINDS:
            self._tomb = np.unique(gone)
            self._tomb_sel = None
            held = self._uncoded[self._uncoded < len(live)]
            self._uncoded = held[have[held] & live[held]]  # the graph's held-out nodes of live points
            if len(missing):
                self._add_live(missing)
            self._maybe_compact()
        else:
            self._uncoded = np.zeros(0, dtype=np.int64)  # held-out points are missing: added and checked again
            if len(gone):
                remove_ids(self._index, gone)
            if len(missing):
                self._add_live(missing)

    def _renumber(self, old_fids: np.ndarray | None) -> None:
        """Make the index use the point store's fids after a compaction: ``old_fids[i]`` is the old fid of new
        fid i (None: unknown, the index is rebuilt). IVF kinds keep their trained quantizer and add every
        vector again; HNSW kinds keep their graph and rewrite the id map (nodes of dead points become tombstones
        with ids -1-node, unique and outside every fid range), so searches answer exactly as before."""
        if self._index is None:
            return  # flat, or not trained yet: nothing holds fids
        if self.kind not in HNSW_KINDS:
            self._index.reset()
            self._uncoded = np.zeros(0, dtype=np.int64)
            self._add_live(self._ps.live_fids())
            return
        if old_fids is None:
            self._rebuild_hnsw()
            self.stats["rebuilds"] += 1
            return
        f = faiss_module()
        ids = f.vector_to_array(self._index.id_map).astype(np.int64)
        kept = np.zeros(len(ids), dtype=bool)
        pos = np.zeros(len(ids), dtype=np.int64)
        if len(old_fids):
            pos = np.minimum(np.searchsorted(old_fids, ids), len(old_fids) - 1)
            kept = (ids >= 0) & (old_fids[pos] == ids)
        new = np.where(kept, pos, np.where(ids < 0, ids, -1 - np.arange(len(ids), dtype=np.int64)))
        f.copy_array_to_vector(np.ascontiguousarray(new, dtype=np.int64), self._index.id_map)
        self._tomb = np.unique(new[new < 0])
        self._tomb_sel = None
        if len(self._uncoded) and len(old_fids):  # live points: every one keeps a new fid
            at = np.minimum(np.searchsorted(old_fids, self._uncoded), len(old_fids) - 1)
            self._uncoded = at[old_fids[at] == self._uncoded].astype(np.int64)

    def _rebuild_hnsw(self) -> None:
        if self.kind == "hnsw_sq8" and len(self._ps):  # a fresh graph needs trained codes: learn the ranges again
            self._train_ivf()
            return
        self._new_index()
        self._add_live(self._ps.live_fids())

    def _maybe_compact(self) -> None:
        ntotal = self._index.ntotal if self._index is not None else 0
        if len(self._tomb) and len(self._tomb) > self.defaults.hnsw_compact_fraction * max(ntotal, 1):
            self._rebuild_hnsw()  # a graph full of deleted nodes loses recall: rebuild it from the live points
            self.stats["compactions"] += 1
