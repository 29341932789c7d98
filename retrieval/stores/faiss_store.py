"""FAISS store: kinds flat, ivf, ivfpq, hnsw, ivf_sq8 and hnsw_sq8 over one shared point store per collection.

Layout under ``<data_dir>/faiss/<name>/``: ``points/`` (the collection's ids, payloads and one
memory-mapped float32 vector file, see ``points.py``) and one folder per kind, ``<kind>/``, holding
``manifest.json`` (format version, fingerprint, dim, metric, parameters, the point-store ``seq`` the
index is synced to, checksum) and ``index.faiss`` (hnsw graph, ivf lists; flat keeps none: it
answers from the vector file). No pickle. A kind found behind its point store on open catches up
from the vector file. After a compaction of the point store (``compact``; ``build`` compacts when more
than a quarter of the vector rows are garbage) every open kind remaps its index to the new fids (ivf:
the same trained quantizer, vectors added again; hnsw: the same graph, its id map rewritten) and
flushes; the manifest's ``generation`` says which numbering the index uses, so a kind opened later
remaps or rebuilds itself. Filters are a true pre-filter through faiss IDSelector; small match sets are
answered exactly, and a filtered search returns k hits whenever k points match. A quantized kind (ivfpq,
ivf_sq8, hnsw_sq8) decodes what it adds: a point its codes miss (outside what it was trained on) is held out
of the index and answered exactly until the next build retrains the kind (``faiss_codes``); the index mixins
live in ``faiss_files`` (files), ``faiss_codes`` (code checks) and ``faiss_sync`` (the change feed).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from retrieval.errors import (
    CorruptIndexError,
    InvalidInputError,
    ManifestMismatchError,
    NotTrainedError,
    StoreLockedError,
    StoreNotFoundError,
)
from retrieval.filters import Filter
from retrieval.metric import Metric
from retrieval.stores import point_registry as registry
from retrieval.stores import points as pts
from retrieval.stores.base import Hit, Payload, SearchParams, VectorStore
from retrieval.stores.faiss_codes import CODED_KINDS, code_limit, retrain_due
from retrieval.stores.faiss_exact import bare_hits, exact, hits
from retrieval.stores.faiss_exact import rerank as rerank_exact
from retrieval.stores.faiss_files import following
from retrieval.stores.faiss_params import (
    FAISS_KINDS,
    HNSW_KINDS,
    IVF_KINDS,
    QUERY_PARAMS,
    TRAINED_KINDS,
    FaissBuildParams,
    FaissQueryDefaults,
    default_nlist,
    default_pq_m,
    exact_break_even,
    faiss_module,
    faiss_search_params,
    filter_selector,
    new_hnsw,
    repair_hint,
    train_index,
)
from retrieval.stores.faiss_probe import list_map, probes_needed, thin_by_neighbours
from retrieval.stores.faiss_sync import SyncedKind
from retrieval.stores.locks import lock_exclusive, unlock
from retrieval.stores.manifest import (
    FileSig,
    Pin,
    check_expected,
    now_iso,
    read_manifest_sig,
)
from retrieval.stores.thin import NEIGHBOURS, judged

log = logging.getLogger(__name__)

__all__ = [  # the parameters live in faiss_params; these names stay importable from here
    "FAISS_KINDS",
    "FaissBuildParams",
    "FaissQueryDefaults",
    "FaissStore",
    "default_nlist",
    "default_pq_m",
    "repair_hint",
]

class FaissStore(SyncedKind, VectorStore):
    """One FAISS index kind of a collection, over the collection's shared point store."""

    backend: ClassVar[str] = "faiss"
    upsert_whole: ClassVar[bool] = True  # one point-store transaction per upsert call

    def __init__(
        self,
        root: Path,
        name: str,
        build: FaissBuildParams,
        dim: int | None = None,
        metric: Metric | str = Metric.COSINE,
        fingerprint: str | None = None,
        query_defaults: FaissQueryDefaults | None = None,
        create: bool = True,
        read_only: bool = False,
    ) -> None:
        self.coll_dir = root / "faiss" / name
        self.dir = self.coll_dir / build.kind
        self.index_path = self.dir / "index.faiss"
        self.manifest_path = self.dir / "manifest.json"
        self.kind = build.kind
        self.read_only = read_only
        self.defaults = query_defaults or FaissQueryDefaults()
        self.stats: Counter[str] = Counter()
        self._sp_cache: dict[tuple[str, int], Any] = {}
        self._lists: tuple[tuple[int, int, int], np.ndarray] | None = None  # fid → IVF list, for filtered probing
        self._index_sum: str | None = None  # checksum of index.faiss on disk
        self._disk_gen: int | None = None  # the point-store generation whose fids index.faiss on disk holds
        self._index: Any = None
        self._nlist: int | None = None
        self._trained_on = 0
        self._tomb = np.zeros(0, dtype=np.int64)
        self._tomb_sel: Any = None
        self._uncoded = np.zeros(0, dtype=np.int64)  # live points held out of a coded index: answered exactly
        self._code_limit: float | None = None  # the error a code may have (faiss_codes); None: not checked
        self._scan_due = False  # an index built before codes were checked: build checks every code once
        self._lockfile: Any = None
        self._points: pts.PointStore | None = None
        self._resident = False  # whether this store holds the point store's resident vector copy
        repair = repair_hint(name)
        if (self.dir / "points.sqlite").exists():
            raise ManifestMismatchError(
                f"{self.dir} is in the old per-kind format (points.sqlite in each kind folder), which this "
                f"simlookup no longer reads: delete {self.coll_dir} and ingest again "
                f"(`simlookup ingest CORPUS --name {name}`)"
            )
        manifest: dict[str, Any] | None = None
        self._sig: FileSig | None = None  # the manifest file this store was loaded from (read-only: followed)
        self._pin = Pin()  # holds that file, so no replacement can carry its signature
        if self.manifest_path.exists():
            manifest, self._sig = read_manifest_sig(self.manifest_path, self._pin)
            check_expected(
                manifest,
                self.manifest_path,
                kind=build.kind,
                dim=dim,
                metric=Metric.parse(metric).value if dim is not None else None,
                fingerprint=fingerprint,
            )
            try:
                dim = int(manifest["dim"])
                metric = Metric.parse(manifest["metric"])
                build = FaissBuildParams(**manifest["params"])
            except (KeyError, TypeError, ValueError) as exc:
                raise CorruptIndexError(f"manifest {self.manifest_path} is invalid ({exc}); {repair}") from None
            fingerprint = manifest.get("fingerprint")
        elif not create or read_only:
            raise StoreNotFoundError(f"no FAISS {build.kind} index named {name!r} under {root}")
        elif dim is None:
            raise InvalidInputError("creating a FAISS store needs its dimension")
        super().__init__(name, int(dim), Metric.parse(metric), fingerprint)
        if build.kind == "ivfpq" and build.pq_m is None:
            build = replace(build, pq_m=default_pq_m(self.dim))
        self.params = build
        if build.kind == "ivfpq" and build.pq_m and self.dim % build.pq_m:
            raise InvalidInputError(f"ivfpq: pq_m={build.pq_m} must divide the dimension {self.dim}")
        try:
            if not read_only:
                self.dir.mkdir(parents=True, exist_ok=True)
                self._lockfile = lock_exclusive(
                    self.dir / ".lock",
                    f"FAISS store {self.dir} is already open for writing (in this or another process); "
                    "open it read-only to search alongside",
                )
                if manifest is None:
                    pts.PointStore.create(self.coll_dir / "points", self.dim, self.metric)
            try:
                self._points = registry.acquire(self.coll_dir / "points", repair, read_only)
            except StoreNotFoundError as exc:
                raise CorruptIndexError(str(exc)) from None
            self._points.check(self.dim, self.metric, self.manifest_path if manifest else None)
            with self._points.lock:
                if self.kind == "flat" and self.defaults.flat_resident:  # flat scans every row: from anonymous
                    self._resident = True  # huge pages, not the file map (set first: _release drops the hold)
                    self._points.vectors.hold_resident()
                if manifest is not None:
                    self._load(manifest)
                else:
                    self._created = now_iso()
                    self._new_index()
                    self._catch_up()  # a new kind of a collection that already holds points
                self._points.listen(self)
            if manifest is None:
                self._flush()
        except BaseException:
            self._release()
            raise

    # ---- index construction ----
    def _faiss_metric(self) -> int:
        f = faiss_module()
        return f.METRIC_L2 if self.metric is Metric.L2 else f.METRIC_INNER_PRODUCT

    def _new_index(self) -> None:
        """Fresh index: flat keeps none, the TRAINED_KINDS stay None until trained."""
        self._index = None
        self._tomb = np.zeros(0, dtype=np.int64)
        self._tomb_sel = None
        self._uncoded = np.zeros(0, dtype=np.int64)
        if self.kind == "hnsw":
            self._index = new_hnsw(self.params, self.dim, self._faiss_metric())
        elif self.kind in TRAINED_KINDS:
            self._nlist = None
            self._trained_on = 0

    def _add_live(self, fids: np.ndarray, chunk: int = 65536) -> None:
        for i in range(0, len(fids), chunk):  # pread, not the file map: building maps no vector page in
            part = fids[i : i + chunk]
            self._add(part, self._ps.vectors.read_rows(part))

    def _train_ivf(self) -> None:
        """Train the index (a TRAINED_KINDS kind) on the live points and add them."""
        n = len(self._ps)
        need = self.params.min_train_points(n)
        if n < max(need, 1):
            b = self.params
            raise NotTrainedError(
                f"{b.kind} index {self.name!r} needs at least {need} points to train "
                + (f"(2^{b.pq_nbits} PQ centroids" if b.kind == "ivfpq" else f"(nlist={b.nlist_for(n)}")
                + f"), has {n}"
            )
        live = self._ps.live_fids()
        self._tomb = np.zeros(0, dtype=np.int64)
        self._tomb_sel = None
        self._index, self._nlist, self._trained_on = train_index(
            self.params, self.dim, self._faiss_metric(), live, self._ps.vectors.read_rows
        )
        self._uncoded, self._code_limit, self._scan_due = np.zeros(0, dtype=np.int64), None, False
        self._add_live(live)  # unchecked: what it was trained on (the 8-bit ranges span every point)
        some = live if len(live) <= 4096 else np.sort(np.random.default_rng(1).choice(live, 4096, replace=False))
        trained = self._ps.vectors.read_rows(some) if self.kind == "ivfpq" else None  # its limit: their errors
        self._code_limit = code_limit(self._index, self.kind, trained)

    def _load(self, manifest: dict[str, Any]) -> None:
        manifest, behind = self._open_index(manifest)
        self._created = manifest.get("created", now_iso())
        self._nlist = manifest.get("nlist")
        self._trained_on = int(manifest.get("trained_on") or 0)
        codes = manifest.get("codes") if not behind else None
        self._uncoded = np.asarray((codes or {}).get("uncoded") or [], dtype=np.int64)
        self._code_limit = (codes or {}).get("limit")
        self._scan_due = codes is None and self._index is not None and self.kind in CODED_KINDS
        if self._index is not None and self._index.d != self.dim:
            raise CorruptIndexError(
                f"{self.manifest_path} says dim {self.dim} but {self.index_path} is {self._index.d}-d; "
                + repair_hint(self.name)
            )
        seq = manifest.get("seq")
        gen = manifest.get("generation") or 0
        if behind:
            seq = None
            self._trained_on = 0  # unknown for the previous index: build() retrains
            self._nlist = getattr(self._index, "nlist", None)
            gen = manifest.get("previous_generation", gen)
        self._disk_gen = int(gen or 0)
        if self._disk_gen != self._ps.generation:  # the points were compacted since: the index numbers old fids
            log.info("FAISS store %s: index numbers generation %s, points are at %s; remapping", self.dir, gen,
                     self._ps.generation)
            self._renumber(self._ps.renumbering(self._disk_gen))
            self._catch_up()
        elif seq != self._ps.seq or self.kind in HNSW_KINDS:  # catch up; HNSW: find the tombstones
            if seq != self._ps.seq:
                log.info("FAISS store %s: index at seq %s, points at %s; catching up", self.dir, seq, self._ps.seq)
            self._catch_up()
        if self._scan_due:
            self._limit_from_codes()

    def query_params(self) -> frozenset[str]:
        """The query parameters this kind uses (``QUERY_PARAMS``)."""
        return QUERY_PARAMS[self.kind]

    @property
    def reranks(self) -> bool:
        """Whether a default search re-ranks (ivfpq; the sq8 kinds with sq8_rerank): tuning tries factors too."""
        return self.defaults.rerank_for(self.kind) > 1

    # ---- adapter hooks ----
    def _upsert(self, ids: list[str], vectors: np.ndarray, payloads: list[Payload]) -> int:
        if self.read_only:
            raise StoreLockedError(f"FAISS store {self.dir} is open read-only")
        self._ps.upsert(ids, vectors, payloads)
        return len(ids)

    def _delete(self, ids: list[str]) -> int:
        if self.read_only:
            raise StoreLockedError(f"FAISS store {self.dir} is open read-only")
        return self._ps.delete(ids)

    def compact(self) -> pts.CompactReport:
        """Reclaim the vector-file rows of replaced and deleted points now: the points are renumbered, every
        kind open in this process remaps its index and flushes, a kind opened later remaps on open. Crash-safe:
        a kill at any point leaves the old store or the new one. Writers only."""
        self._check_open()
        if self.read_only:
            raise StoreLockedError(f"FAISS store {self.dir} is open read-only: it cannot be compacted")
        return self._ps.compact()

    def point_store(self) -> pts.PointStore:
        """The collection's point store as of now (a read-only store follows its writer first): what the keyword
        leg (``retrieval.keyword.index``) indexes. Read it under its ``lock``; write through this store."""
        self._check_open()
        self.refresh()
        return self._ps

    def has_field(self, path: str) -> bool:
        """Whether any live point's payload holds ``path``: one lookup in the shared payload index."""
        self._check_open()
        self.refresh()
        with self._ps.lock:
            return self._ps.index.has_path(path)

    def build(self) -> bool:
        """Train a TRAINED_KINDS kind if untrained, or retrain when the data outgrew the training (``retrain_due``).
        True if trained (or
        compacted: a writer first compacts the point store when more than ``compact_garbage_fraction`` of its
        vector rows are garbage, see ``compact``).

        Retrains (with nlist=None) when the current count implies another nlist, and whenever the index was
        trained on fewer points than a full training run would sample now: so an index trained on part of
        the data (a search mid-ingest, a killed job) ends equal to one trained once on everything.
        """
        self._check_open()
        if self.read_only:
            raise StoreLockedError(f"FAISS store {self.dir} is open read-only: it cannot build")
        with self._ps.lock:
            compacted = False
            if self._ps.garbage_fraction() > self.defaults.compact_garbage_fraction:
                compacted = self._ps.compact().compacted
            if self.kind not in TRAINED_KINDS:
                return compacted
            n = len(self._ps)
            if n == 0:
                return compacted
            if self._index is not None and self.kind in CODED_KINDS:
                self._recheck()
            stale = self._index is not None and (
                self.params.retrain_due(self._nlist, self._trained_on, n)
                or (self.kind in CODED_KINDS and retrain_due(self._index, self.kind, len(self._uncoded), n))
            )
            if self._index is None or stale:
                self._train_ivf()
                return True
            return compacted

    @following
    def _search(
        self, queries: np.ndarray, k: int, flt: Filter | None, params: SearchParams, with_payload: bool = True
    ) -> list[list[Hit]]:
        while True:
            self.refresh()
            ps = self._ps
            with ps.lock:
                if ps is self._points:  # not swapped by a reload while this thread waited for the lock
                    fids, scores = self._search_locked(ps, queries, k, flt, params)
                    return self._hits(fids, scores) if with_payload else bare_hits(self._ps, fids, scores)

    def _search_locked(
        self, ps: pts.PointStore, queries: np.ndarray, k: int, flt: Filter | None, params: SearchParams
    ) -> tuple[np.ndarray, np.ndarray]:
        """(fids, scores) per query, -1 where fewer than k points match."""
        n = len(ps)
        allowed: np.ndarray | None = None
        if flt is not None and n:
            allowed = ps.match(flt)
            n = len(allowed)
        k = min(k, n)
        if k == 0:
            empty = np.zeros((len(queries), 0))
            return empty.astype(np.int64), empty.astype(np.float32)
        rerank = params.rerank
        if rerank is None:
            rerank = self.defaults.rerank_for(self.kind)
        small = allowed is not None and (
            len(allowed) <= self.defaults.exact_filter_limit
            or (self.kind in IVF_KINDS and self._index is not None
                and len(allowed) <= self._exact_break_even(k, params, rerank))
        )
        if self.kind == "flat" or params.exact or small:
            self.stats["exact"] += 1
            fids, scores = exact(self._ps, self.metric, queries, k, allowed)
            return fids, scores
        if self._index is None:
            self._train_ivf()
        self.stats["index"] += 1
        fetch = min(k * rerank, n) if rerank > 1 else k
        fids, scores = self._index_search(queries, fetch, allowed, params)
        if len(self._uncoded):  # points the codes miss, held out of the index: scored exactly and merged in
            fids, scores = self._with_held_out(queries, fetch, allowed, (fids, scores))
        if rerank > 1:
            fids, scores = rerank_exact(self._ps, self.metric, queries, fids, k)
        # a search returns k hits whenever k points match: where the index found fewer (a selective
        # filter, low nprobe, k near the collection size), that query is answered exactly
        if fids.shape[1] >= k and (fids[0, k - 1] >= 0 if len(fids) == 1 else fids[:, k - 1].min() >= 0):
            return fids, scores
        short = np.flatnonzero((fids[:, k - 1] < 0) if fids.shape[1] >= k else np.ones(len(fids), bool))
        if len(short):
            self.stats["topup"] += len(short)
            fids[short], scores[short] = exact(self._ps, self.metric, queries[short], k, allowed)
        return fids, scores

    def _exact_break_even(self, k: int, params: SearchParams, rerank: int) -> int:
        """Filters matching at most this many points are cheaper, or nearly, answered exactly (``exact_break_even``)."""
        nprobe = params.nprobe or self.defaults.nprobe
        return exact_break_even(self._index, self.dim, nprobe, k, rerank, self.defaults.exact_filter_cost)

    def _selector(self, allowed: np.ndarray | None) -> tuple[Any, Any]:
        """(selector, buffer to keep alive) for a filter's matches, or the HNSW tombstones."""
        hnsw = self.kind in HNSW_KINDS
        if allowed is not None:  # a graph keeps its held-out nodes: left out of the matches
            held = hnsw and len(self._uncoded)
            return filter_selector(np.setdiff1d(allowed, self._uncoded) if held else allowed, self._ps.next_fid)
        if hnsw and (len(self._tomb) or len(self._uncoded)):
            if self._tomb_sel is None:
                f = faiss_module()
                self._tomb_sel = f.IDSelectorNot(f.IDSelectorBatch(np.union1d(self._tomb, self._uncoded)))
            return self._tomb_sel, None
        return None, None

    def _sp_key(self, k: int, params: SearchParams) -> tuple[str, int]:
        if self.kind in IVF_KINDS:
            return ("ivf", min(params.nprobe or self.defaults.nprobe, self._index.nlist))
        if self.kind in HNSW_KINDS:
            return ("hnsw", max(min(params.hnsw_ef or self.defaults.ef_search, max(self._index.ntotal, 1)), k))
        return ("flat", 0)

    def _search_params(self, k: int, params: SearchParams) -> Any:
        """faiss search parameters (cached per value: building them costs more than a small search)."""
        key = self._sp_key(k, params)
        sp = self._sp_cache.get(key)
        if sp is None:
            if len(self._sp_cache) > 64:
                self._sp_cache.clear()
            sp = self._sp_cache[key] = faiss_search_params(*key)
        return sp

    def _index_search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None, params: SearchParams
    ) -> tuple[np.ndarray, np.ndarray]:
        sel, keep = self._selector(allowed)  # with a selector, a fresh parameter object: cached ones stay free of it
        thin = None
        if sel is not None and allowed is not None and self.kind in IVF_KINDS:
            dist, fids, thin = self._filtered_ivf_search(queries, k, allowed, params, sel)
        else:
            sp = self._search_params(k, params) if sel is None else faiss_search_params(*self._sp_key(k, params), sel)
            dist, fids = self._index.search(queries, k, params=sp)
        del keep
        if self.metric is Metric.L2:
            dist = np.sqrt(np.maximum(dist, 0))
        if allowed is not None:
            emptied = self._emptied(queries, allowed, params)
            thin = emptied if thin is None else thin | emptied
        if thin is not None and thin.any():  # the filter emptied these queries' neighbourhoods: exact answers
            rows = np.flatnonzero(thin)
            self.stats["exact_thin"] += len(rows)
            got, scores = exact(self._ps, self.metric, queries[rows], k, allowed)
            fids[rows, : got.shape[1]], dist[rows, : got.shape[1]] = got, scores
            fids[rows, got.shape[1] :] = -1
        return fids, dist

    def _emptied(self, queries: np.ndarray, allowed: np.ndarray, params: SearchParams) -> np.ndarray:
        """Which queries' unfiltered neighbourhoods the filter emptied (``faiss_probe.thin_by_neighbours``); no
        neighbour search where the filter is too small for the count to tell (``thin.judged``)."""
        n = min(NEIGHBOURS, max(int(self._index.ntotal), 1))
        if not judged(len(allowed), len(self._ps), n):
            return np.zeros(len(queries), dtype=bool)
        sel, keep = self._selector(None)  # an HNSW graph's tombstones and held-out nodes stay out
        key = self._sp_key(n, params)
        sp = self._search_params(n, params) if sel is None else faiss_search_params(*key, sel)
        _, near = self._index.search(queries, n, params=sp)
        del keep
        return thin_by_neighbours(near, allowed, len(self._ps))

    def _filtered_ivf_search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray, params: SearchParams, sel: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """An IVF search under a filter, each query visiting as many lists as its matches need (``faiss_probe``);
        the thin queries' rows are left to the caller's exact search."""
        key = (id(self._index), int(self._index.ntotal), int(self._ps.next_fid))
        if self._lists is None or self._lists[0] != key:
            self._lists = (key, list_map(self._index, self._ps.next_fid))
        nprobe = self._sp_key(k, params)[1]
        probes, thin = probes_needed(self._index, queries, allowed, self._lists[1], nprobe)
        dist = np.full((len(queries), k), np.nan, dtype=np.float32)
        fids = np.full((len(queries), k), -1, dtype=np.int64)
        for p in np.unique(probes[~thin]):
            rows = np.flatnonzero((probes == p) & ~thin)
            dist[rows], fids[rows] = self._index.search(
                queries[rows], k, params=faiss_search_params("ivf", int(p), sel)
            )
        widened = int((probes[~thin] > nprobe).sum())
        if widened:
            self.stats["probes_widened"] += widened
        return dist, fids, thin

    @property
    def faiss_index(self) -> Any:
        """The faiss index this kind searches (None for flat, which scans the stored vectors, and before the
        first build): for baselines and tooling. Search it; changing it bypasses the store."""
        self._check_open()
        return self._index

    def stored_vectors(self) -> np.ndarray:
        """The stored float32 rows, row fid per point (rows of replaced or deleted points included): what flat
        scans. Read-only; it stays valid until the next write."""
        self._check_open()
        view = self._ps.vectors.scan_view()
        view.flags.writeable = False
        return view

    def raw_search(self, queries: np.ndarray, k: int, params: SearchParams) -> tuple[np.ndarray, np.ndarray]:
        """The bare faiss call (no validation, filters, re-rank or payloads): the benchmarks' baseline."""
        if self.kind == "flat":
            view = self._ps.vectors.scan_view()
            return faiss_module().knn(queries, view, min(k, len(view)), self._faiss_metric())[::-1]
        if self._index is None:
            self._train_ivf()
        return self._index.search(queries, k, params=self._search_params(k, params))[::-1]

    def _hits(self, fids: np.ndarray, scores: np.ndarray) -> list[list[Hit]]:
        """Hits with the caller's own payload copies (``faiss_exact.hits``)."""
        return hits(self._ps, fids, scores)

    def _count(self) -> int:
        self.refresh()
        return len(self._ps)

    @following
    def _ids(self) -> set[str]:
        self.refresh()
        with self._ps.lock:
            return self._ps.all_ids()

    @following
    def _fetch(self, ids: list[str]) -> dict[str, tuple[np.ndarray | None, Payload]]:
        self.refresh()
        ps = self._ps
        with ps.lock:
            have = ps.lookup(ids)  # id → (fid, payload text): the fids found by hash, the rows read once
            found = [(pid, have[pid]) for pid in dict.fromkeys(ids) if pid in have]
            vecs = ps.vectors.read_rows(np.array([fid for _, (fid, _) in found], dtype=np.int64))
            return {pid: (v, ps.payload(fid, (pid, text))) for (pid, (fid, text)), v in zip(found, vecs, strict=True)}

    def _release(self) -> None:
        """Let go of the point store and the lock without flushing (what a killed process leaves)."""
        ps, self._points = self._points, None
        if ps is not None:
            with ps.lock:
                ps.unlisten(self)
                if self._resident:
                    self._resident = False
                    ps.vectors.release_resident()
            registry.release(ps)
        lockfile, self._lockfile = self._lockfile, None
        unlock(lockfile)
        self._pin.close()

    def _close(self) -> None:
        try:
            self._flush()
        finally:
            self._release()

    def _info(self) -> dict[str, Any]:
        size = self.index_path.stat().st_size if self.index_path.exists() else 0
        points = self._ps.disk_bytes()
        return {
            "kind": self.kind,
            "params": asdict(self.params),
            "nlist": self._nlist,
            "trained": self._index is not None or self.kind == "flat",
            "held_out": len(self._uncoded),  # points outside the codes, answered exactly until the next build
            "code_limit": self._code_limit,
            "index_bytes": size,
            "points_bytes": points,  # shared by every kind of the collection
            "sidecar_bytes": points,
            "seq": self._ps.seq,
            "generation": self._ps.generation,  # compactions of the point store so far
            "garbage_rows": self._ps.garbage(),  # vector rows of replaced or deleted points (shared by every kind)
            "garbage_fraction": round(self._ps.garbage_fraction(), 4),
            "searches": dict(self.stats),
            "path": str(self.dir),
        }

    def memory_bytes(self) -> int:
        """Bytes this kind keeps to answer queries (flat: the resident vectors; others: the serialized index)."""
        if self.kind == "flat":
            return len(self._ps.vectors.scan_view()) * self.dim * 4
        if self._index is None:
            return 0
        return int(faiss_module().serialize_index(self._index).nbytes)
