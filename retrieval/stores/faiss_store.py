"""FAISS store: kinds flat, ivf, ivfpq and hnsw over one shared point store per collection.

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
answered exactly, and a filtered search returns k hits whenever k points match.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections import Counter
from dataclasses import asdict, dataclass, replace
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
    UnknownKindError,
)
from retrieval.filters import Filter
from retrieval.metric import Metric
from retrieval.settings import FaissSettings
from retrieval.stores import points as pts
from retrieval.stores.base import Hit, Payload, SearchParams, VectorStore
from retrieval.stores.locks import lock_exclusive, unlock
from retrieval.stores.manifest import (
    FORMAT_VERSION,
    FileSig,
    Pin,
    check_expected,
    file_sig,
    now_iso,
    read_manifest_sig,
    sha256_file,
    sha256_fileobj,
    write_json,
)

log = logging.getLogger(__name__)

FAISS_KINDS = ("flat", "ivf", "ivfpq", "hnsw")
MIN_POINTS_PER_LIST = 39  # faiss k-means asks for at least 39 training points per centroid
MAX_POINTS_PER_LIST = 256  # and samples down to 256 per centroid


@dataclass(frozen=True)
class FaissBuildParams:
    """Build parameters, fixed when the store is created (recorded in the manifest)."""

    kind: str
    nlist: int | None = None  # ivf/ivfpq; None → default_nlist(N) at training time
    pq_m: int | None = None  # ivfpq; None → default_pq_m(dim) when the store is created
    pq_nbits: int = 8
    hnsw_m: int = 32
    ef_construction: int = 100

    def __post_init__(self) -> None:
        if self.kind not in FAISS_KINDS:
            raise UnknownKindError(f"unknown FAISS index kind {self.kind!r}: use one of {list(FAISS_KINDS)}")
        if self.nlist is not None and self.nlist < 1:
            raise InvalidInputError("nlist must be ≥ 1")

    @classmethod
    def from_settings(cls, kind: str, s: FaissSettings, **overrides: Any) -> FaissBuildParams:
        base = cls(
            kind=kind,
            nlist=s.ivf_nlist,
            pq_m=s.pq_m,
            pq_nbits=s.pq_nbits,
            hnsw_m=s.hnsw_m,
            ef_construction=s.hnsw_ef_construction,
        )
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})

    def nlist_for(self, n: int) -> int:
        """The number of IVF lists for n points (the fixed nlist, or the default rule), at most n."""
        return max(1, min(self.nlist or default_nlist(n), n))

    def max_train(self, nlist: int) -> int:
        """How many points a full training run samples."""
        return max(MAX_POINTS_PER_LIST * nlist, MAX_POINTS_PER_LIST * 2**self.pq_nbits if self.kind == "ivfpq" else 0)

    def min_train_points(self, n: int | None = None) -> int:
        """How many points training needs (IVF: nlist; PQ: also 2^nbits)."""
        if self.kind not in ("ivf", "ivfpq"):
            return 0
        need = self.nlist or 1
        if self.kind == "ivfpq":
            need = max(need, 2**self.pq_nbits)
        return need


@dataclass(frozen=True)
class FaissQueryDefaults:
    """Query parameters used when a search does not pass its own."""

    nprobe: int = 48
    ef_search: int = 64
    rerank: int = 10  # ivfpq only
    exact_filter_limit: int = 4096  # a filter matching at most this many points is answered exactly
    hnsw_compact_fraction: float = 0.2  # rebuild the graph when this fraction of its nodes is deleted/replaced
    flat_resident: bool = True  # flat scans a private anonymous copy of the vectors, not the file map
    compact_garbage_fraction: float = 0.25  # build() compacts the point store above this share of garbage rows

    @classmethod
    def from_settings(cls, s: FaissSettings) -> FaissQueryDefaults:
        keys = ("exact_filter_limit", "hnsw_compact_fraction", "flat_resident", "compact_garbage_fraction")
        extra = {k: getattr(s, k) for k in keys if getattr(s, k, None) is not None}
        return cls(nprobe=s.ivf_nprobe, ef_search=s.hnsw_ef_search, rerank=s.rerank_factor, **extra)


def default_nlist(n: int) -> int:
    """4·√N lists, but no more than N/39 so that every list gets 39 training points; at least 1."""
    return max(1, min(int(round(4 * math.sqrt(max(n, 1)))), n // MIN_POINTS_PER_LIST))


QUERY_PARAMS: dict[str, frozenset[str]] = {  # what each kind's search uses (re-rank: exact rescoring of k×factor)
    "flat": frozenset({"exact"}),
    "ivf": frozenset({"nprobe", "rerank", "exact"}),
    "ivfpq": frozenset({"nprobe", "rerank", "exact"}),
    "hnsw": frozenset({"hnsw_ef", "rerank", "exact"}),
}
_OPEN_TRIES = 50  # re-reads of a manifest that a writer keeps replacing while a reader opens the index
_GATHER_ROWS = 2048  # filtered brute force: rows gathered and scored per block (3 MB at 384-d)


@functools.cache
def _faiss() -> Any:
    """faiss, imported on first use (a cached lookup afterwards: this sits on every query's path)."""
    import faiss

    return faiss


def default_pq_m(dim: int) -> int:
    """Sub-quantizers of 8 dimensions each (384-d → 48 bytes a vector), or the nearest divisor of dim below."""
    return next(m for m in range(max(dim // 8, 1), 0, -1) if dim % m == 0)


def _remove(index: Any, fids: np.ndarray) -> None:
    """Remove fids from an IVF index (its hashtable direct map takes only an IDSelectorArray)."""
    f = _faiss()
    arr = np.ascontiguousarray(fids, dtype=np.int64)
    index.remove_ids(f.IDSelectorArray(len(arr), f.swig_ptr(arr)))


def repair_hint(name: str) -> str:
    return f"re-create it: `simlookup ingest CORPUS --name {name}` (or delete the folder and ingest again)"


class FaissStore(VectorStore):
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
        self._index_sum: str | None = None  # checksum of index.faiss on disk
        self._disk_gen: int | None = None  # the point-store generation whose fids index.faiss on disk holds
        self._index: Any = None
        self._nlist: int | None = None
        self._trained_on = 0
        self._tomb = np.zeros(0, dtype=np.int64)
        self._tomb_sel: Any = None
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
                self._points = pts.acquire(self.coll_dir / "points", repair, read_only)
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
    @property
    def _ps(self) -> pts.PointStore:
        assert self._points is not None
        return self._points

    def _faiss_metric(self) -> int:
        f = _faiss()
        return f.METRIC_L2 if self.metric is Metric.L2 else f.METRIC_INNER_PRODUCT

    def _new_index(self) -> None:
        """Fresh index: flat keeps none, ivf/ivfpq stay None until trained."""
        self._index = None
        self._tomb = np.zeros(0, dtype=np.int64)
        self._tomb_sel = None
        if self.kind == "hnsw":
            f = _faiss()
            inner = f.IndexHNSWFlat(self.dim, self.params.hnsw_m, self._faiss_metric())
            inner.hnsw.efConstruction = self.params.ef_construction
            self._index = f.IndexIDMap(inner)
        elif self.kind in ("ivf", "ivfpq"):
            self._nlist = None
            self._trained_on = 0

    def _add_live(self, fids: np.ndarray, chunk: int = 65536) -> None:
        for i in range(0, len(fids), chunk):
            part = fids[i : i + chunk]
            self._index.add_with_ids(np.ascontiguousarray(self._ps.vectors_of(part)), part)

    def _train_ivf(self) -> None:
        f = _faiss()
        b = self.params
        n = len(self._ps)
        need = b.min_train_points(n)
        if n < max(need, 1):
            raise NotTrainedError(
                f"{b.kind} index {self.name!r} needs at least {need} points to train "
                + (f"(2^{b.pq_nbits} PQ centroids" if b.kind == "ivfpq" else f"(nlist={b.nlist_for(n)}")
                + f"), has {n}"
            )
        nlist = b.nlist_for(n)
        quantizer = f.IndexFlat(self.dim, self._faiss_metric())
        if b.kind == "ivf":
            index = f.IndexIVFFlat(quantizer, self.dim, nlist, self._faiss_metric())
        else:
            index = f.IndexIVFPQ(quantizer, self.dim, nlist, b.pq_m, b.pq_nbits, self._faiss_metric())
        live = self._ps.live_fids()
        max_train = b.max_train(nlist)
        sample = live if len(live) <= max_train else np.sort(np.random.default_rng(0).choice(live, max_train, False))
        # fewer than 39 points per list only happens with a fixed nlist or tiny data: train without the warning
        index.cp.min_points_per_centroid = max(1, min(MIN_POINTS_PER_LIST, len(sample) // nlist))
        if b.kind == "ivfpq":
            index.pq.cp.min_points_per_centroid = max(1, min(MIN_POINTS_PER_LIST, len(sample) // 2**b.pq_nbits))
        index.train(np.ascontiguousarray(self._ps.vectors_of(sample)))
        index.set_direct_map_type(f.DirectMap.Hashtable)  # remove_ids in O(removed), not O(N)
        self._index = index
        self._add_live(live)
        self._nlist = nlist
        self._trained_on = len(sample)

    def _index_ids(self) -> np.ndarray:
        """Every fid the index holds."""
        f = _faiss()
        if self.kind == "hnsw":
            return f.vector_to_array(self._index.id_map).astype(np.int64)
        invlists = self._index.invlists
        parts = [
            f.rev_swig_ptr(invlists.get_ids(lst), invlists.list_size(lst)).copy()
            for lst in range(invlists.nlist)
            if invlists.list_size(lst)
        ]
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)

    def _catch_up(self) -> None:
        """Make the index hold exactly the live points (after a crash before flush, or another kind's writes)."""
        if self._index is None:
            return
        ids = self._index_ids()
        live = self._ps.live
        inside = (ids >= 0) & (ids < len(live))  # hnsw: nodes of points dropped by a compaction hold ids < 0
        gone = ids[~inside | ~live[np.where(inside, ids, 0)]]
        have = np.zeros(len(live), dtype=bool)
        have[ids[inside]] = True
        missing = np.flatnonzero(live & ~have).astype(np.int64)
        if self.kind == "hnsw":
            self._tomb = np.unique(gone)
            self._tomb_sel = None
            if len(missing):
                self._add_live(missing)
            self._maybe_compact()
        else:
            if len(gone):
                _remove(self._index, gone)
            if len(missing):
                self._add_live(missing)

    def _renumber(self, old_fids: np.ndarray | None) -> None:
        """Make the index use the point store's fids after a compaction: ``old_fids[i]`` is the old fid of new
        fid i (None: unknown, the index is rebuilt). ivf/ivfpq keep their trained quantizer and add every
        vector again; hnsw keeps its graph and rewrites its id map (nodes of dead points become tombstones with
        ids -1-node, unique and outside every fid range), so searches answer exactly as before."""
        if self._index is None:
            return  # flat, or ivf not trained yet: nothing holds fids
        if self.kind != "hnsw":
            self._index.reset()
            self._add_live(self._ps.live_fids())
            return
        if old_fids is None:
            self._rebuild_hnsw()
            self.stats["rebuilds"] += 1
            return
        f = _faiss()
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

    def _rebuild_hnsw(self) -> None:
        self._new_index()
        self._add_live(self._ps.live_fids())

    def _maybe_compact(self) -> None:
        ntotal = self._index.ntotal if self._index is not None else 0
        if len(self._tomb) and len(self._tomb) > self.defaults.hnsw_compact_fraction * max(ntotal, 1):
            self._rebuild_hnsw()  # a graph full of deleted nodes loses recall: rebuild it from the live points
            self.stats["compactions"] += 1

    def _open_index(self, manifest: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Read index.faiss as the manifest describes it: (the manifest it matched, whether the file is the
        previous index, which a crash between the manifest and the rename leaves, or a writer mid-flush).

        The file is checksummed and read through one handle, so a writer renaming a new index over it in
        between cannot mix two files. A checksum that matches neither the manifest's current nor its previous
        one is read again with the manifest as it is now: a writer that flushed (twice) since the manifest was
        read wrote a newer pair. Only a file that disagrees with a manifest that stays the same is corrupt.
        """
        for _ in range(_OPEN_TRIES):
            previous = manifest.get("previous_checksum")
            if not manifest.get("has_index"):
                self._new_index()
                return manifest, False
            try:
                fh = open(self.index_path, "rb")  # noqa: SIM115 - closed below, after faiss read it
            except FileNotFoundError:
                if previous is None:  # a crash before the first index was renamed into place: none yet
                    self._new_index()
                    return {**manifest, "has_index": False}, True
                actual = None
            else:
                with fh:
                    actual = sha256_fileobj(fh)
                    if actual in (manifest.get("checksum"), previous):
                        self._index = self._read_index_from(fh)
                        self._index_sum = actual
                        return manifest, actual != manifest.get("checksum")
            fresh, sig = read_manifest_sig(self.manifest_path, self._pin)
            if fresh == manifest:  # the manifest stayed: the file itself is wrong
                if actual is None:
                    raise CorruptIndexError(
                        f"{self.index_path} is missing but its manifest says it exists; {repair_hint(self.name)}"
                    )
                raise CorruptIndexError(
                    f"{self.index_path} does not match its manifest checksum (truncated or modified); "
                    + repair_hint(self.name)
                )
            manifest, self._sig = fresh, sig
        raise StoreLockedError(
            f"{self.index_path} was rewritten {_OPEN_TRIES} times while it was being opened (a writer flushing "
            "in a loop): try again"
        )

    def _read_index_from(self, fh: Any) -> Any:
        """faiss.read_index of the file this handle holds (not whatever the path names by now)."""
        proc = Path(f"/proc/self/fd/{fh.fileno()}")
        try:
            if proc.exists():
                return _faiss().read_index(str(proc))
            fh.seek(0)
            return _faiss().deserialize_index(np.frombuffer(fh.read(), dtype=np.uint8))
        except RuntimeError as exc:
            raise CorruptIndexError(f"cannot read {self.index_path}: {exc}") from None

    def _load(self, manifest: dict[str, Any]) -> None:
        manifest, behind = self._open_index(manifest)
        self._created = manifest.get("created", now_iso())
        self._nlist = manifest.get("nlist")
        self._trained_on = int(manifest.get("trained_on") or 0)
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
            return
        if seq != self._ps.seq:
            log.info("FAISS store %s: index at seq %s, points at %s; catching up", self.dir, seq, self._ps.seq)
        if seq != self._ps.seq or self.kind == "hnsw":  # hnsw: find the tombstones (nodes of dead points)
            self._catch_up()

    def query_params(self) -> frozenset[str]:
        """The query parameters this kind uses (``QUERY_PARAMS``)."""
        return QUERY_PARAMS[self.kind]

    # ---- following a writer (read-only snapshots) ----
    @property
    def follows_writer(self) -> bool:
        """Whether this store is a read-only snapshot that reloads when a writer elsewhere flushes (a
        read-only open that shares this process's writer sees every write already)."""
        ps = self._points
        return self.read_only and ps is not None and ps.read_only

    def refresh(self) -> bool:
        """Reload when the writer has flushed a newer state since this snapshot was read (one stat when
        nothing changed). True if it reloaded. Every read of a read-only store calls it first."""
        if not self.follows_writer or file_sig(self.manifest_path) == self._sig:
            return False
        old = self._ps
        with old.lock:
            if self._points is not old:
                return False  # another thread reloaded meanwhile
            if not self.manifest_path.exists():
                raise StoreNotFoundError(
                    f"FAISS {self.kind} index {self.dir} was removed by another process (the collection was "
                    "re-ingested without it, or dropped)"
                )
            pin = Pin()
            manifest, sig = read_manifest_sig(self.manifest_path, pin)
            self._pin.swap(pin)
            kept = (self._index, self._index_sum, self._tomb, self._tomb_sel, self._nlist, self._trained_on,
                    self._created, self._sig, self._disk_gen)
            new = pts.acquire_latest(self.coll_dir / "points", repair_hint(self.name))
            try:
                new.check(self.dim, self.metric, self.manifest_path)
                with new.lock:
                    if self._resident:
                        new.vectors.hold_resident()
                    self._points, self._sig = new, sig
                    self._sp_cache = {}
                    self._load(manifest)
            except BaseException:
                if self._points is new and self._resident:
                    new.vectors.release_resident()
                self._points = old
                (self._index, self._index_sum, self._tomb, self._tomb_sel, self._nlist, self._trained_on,
                 self._created, self._sig, self._disk_gen) = kept
                pts.release(new)
                raise
            if self._resident:
                old.vectors.release_resident()
            old.unlisten(self)
            new.listen(self)
        pts.release(old)
        self.stats["reloads"] += 1
        log.info("FAISS store %s: reloaded at point-store seq %s (a writer flushed)", self.dir, new.seq)
        return True

    # ---- the point store's change feed ----
    def on_change(self, added: np.ndarray, vectors: np.ndarray, removed: np.ndarray) -> None:
        """Apply one committed write of the point store to this index (called under the store's lock)."""
        if self._index is None:
            return  # flat, or ivf not trained yet: the point store holds everything
        if len(removed):
            if self.kind == "hnsw":
                self._tomb = np.union1d(self._tomb, removed)  # faiss HNSW cannot remove: tombstones
                self._tomb_sel = None
            else:
                _remove(self._index, removed)
        if len(added):
            self._index.add_with_ids(np.ascontiguousarray(vectors), added)
        if self.kind == "hnsw" and len(removed):
            self._maybe_compact()

    def on_renumber(self, old_fids: np.ndarray) -> None:
        """The point store was compacted (under its lock): remap the index, and a writer records it at once."""
        self._renumber(old_fids)
        self._flush()

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

    def has_field(self, path: str) -> bool:
        """Whether any live point's payload holds ``path``: one lookup in the shared payload index."""
        self._check_open()
        self.refresh()
        with self._ps.lock:
            return self._ps.index.has_path(path)

    def build(self) -> bool:
        """Train ivf/ivfpq if untrained, or retrain when the data outgrew the training. True if trained (or
        compacted: a writer first compacts the point store when more than ``compact_garbage_fraction`` of its
        vector rows are garbage, see ``compact``).

        Retrains (with nlist=None) when the current count implies another nlist, and whenever the index was
        trained on fewer points than a full training run would sample now: so an index trained on part of
        the data (a search mid-ingest, a killed job) ends equal to one trained once on everything.
        """
        self._check_open()
        with self._ps.lock:
            compacted = False
            if not self.read_only and self._ps.garbage_fraction() > self.defaults.compact_garbage_fraction:
                compacted = self._ps.compact().compacted
            if self.kind not in ("ivf", "ivfpq"):
                return compacted
            n = len(self._ps)
            if n == 0:
                return compacted
            stale = self._index is not None and (
                (self.params.nlist is None and self._nlist != self.params.nlist_for(n))
                or self._trained_on < min(n, self.params.max_train(self.params.nlist_for(n)))
            )
            if self._index is None or stale:
                self._train_ivf()
                return True
            return compacted

    def _search(
        self, queries: np.ndarray, k: int, flt: Filter | None, params: SearchParams, with_payload: bool = True
    ) -> list[list[Hit]]:
        while True:
            self.refresh()
            ps = self._ps
            with ps.lock:
                if ps is self._points:  # not swapped by a reload while this thread waited for the lock
                    fids, scores = self._search_locked(ps, queries, k, flt, params)
                    return self._hits(fids, scores) if with_payload else self._bare_hits(fids, scores)

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
        small = allowed is not None and len(allowed) <= self.defaults.exact_filter_limit
        if self.kind == "flat" or params.exact or small:
            self.stats["exact"] += 1
            fids, scores = self._exact(queries, k, allowed)
            return fids, scores
        if self._index is None:
            self._train_ivf()
        self.stats["index"] += 1
        rerank = params.rerank
        if rerank is None:
            rerank = self.defaults.rerank if self.kind == "ivfpq" else 0
        fetch = min(k * rerank, n) if rerank > 1 else k
        fids, scores = self._index_search(queries, fetch, allowed, params)
        if rerank > 1:
            fids, scores = self._rerank(queries, fids, k)
        # a search returns k hits whenever k points match: where the index found fewer (a selective
        # filter, low nprobe, k near the collection size), that query is answered exactly
        if fids.shape[1] >= k and (fids[0, k - 1] >= 0 if len(fids) == 1 else fids[:, k - 1].min() >= 0):
            return fids, scores
        short = np.flatnonzero((fids[:, k - 1] < 0) if fids.shape[1] >= k else np.ones(len(fids), bool))
        if len(short):
            self.stats["topup"] += len(short)
            fids[short], scores[short] = self._exact(queries[short], k, allowed)
        return fids, scores

    def _selector(self, allowed: np.ndarray | None) -> tuple[Any, Any]:
        """(selector, buffer to keep alive) for a filter's matches, or the hnsw tombstones."""
        f = _faiss()
        if allowed is not None:
            size = self._ps.next_fid
            if len(allowed) * 32 > size:  # many matches: a bitmap (N/8 bytes) beats a hash set of the matches
                bits = np.zeros(size, dtype=bool)
                bits[allowed] = True
                packed = np.packbits(bits, bitorder="little")
                return f.IDSelectorBitmap(size, f.swig_ptr(packed)), packed
            return f.IDSelectorBatch(allowed), None
        if self.kind == "hnsw" and len(self._tomb):
            if self._tomb_sel is None:
                self._tomb_sel = f.IDSelectorNot(f.IDSelectorBatch(self._tomb))
            return self._tomb_sel, None
        return None, None

    def _search_params(self, k: int, params: SearchParams) -> Any:
        """faiss search parameters (cached per value: building them costs more than a small search)."""
        f = _faiss()
        if self.kind in ("ivf", "ivfpq"):
            key = ("ivf", min(params.nprobe or self.defaults.nprobe, self._index.nlist))
        elif self.kind == "hnsw":
            key = ("hnsw", max(min(params.hnsw_ef or self.defaults.ef_search, max(self._index.ntotal, 1)), k))
        else:
            key = ("flat", 0)
        sp = self._sp_cache.get(key)
        if sp is None:
            if len(self._sp_cache) > 64:
                self._sp_cache.clear()
            if key[0] == "ivf":
                sp = f.SearchParametersIVF(nprobe=key[1])
            elif key[0] == "hnsw":
                sp = f.SearchParametersHNSW(efSearch=key[1])
            else:
                sp = f.SearchParameters()
            self._sp_cache[key] = sp
        return sp

    def _index_search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None, params: SearchParams
    ) -> tuple[np.ndarray, np.ndarray]:
        sp = self._search_params(k, params)
        sel, keep = self._selector(allowed)
        if sel is not None:  # a fresh parameter object: the cached ones stay selector-free
            sp = (
                _faiss().SearchParametersIVF(nprobe=sp.nprobe)
                if self.kind in ("ivf", "ivfpq")
                else (_faiss().SearchParametersHNSW(efSearch=sp.efSearch))
            )
            sp.sel = sel
        dist, fids = self._index.search(queries, k, params=sp)
        del keep
        if self.metric is Metric.L2:
            dist = np.sqrt(np.maximum(dist, 0))
        return fids, dist

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
            return _faiss().knn(queries, view, min(k, len(view)), self._faiss_metric())[::-1]
        if self._index is None:
            self._train_ivf()
        return self._index.search(queries, k, params=self._search_params(k, params))[::-1]

    def _exact(self, queries: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Brute force over the vector file: the filter's matches, or every live row."""
        f = _faiss()
        ps = self._ps
        nq = len(queries)
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if allowed is not None and len(allowed) > _GATHER_ROWS:
            return self._exact_chunked(q, k, allowed)
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
        ptrs = (f.swig_ptr(q), f.swig_ptr(base), self.dim, nq, len(base), k, f.swig_ptr(dist), f.swig_ptr(labels))
        if self.metric is Metric.L2:
            f.knn_L2sqr(*ptrs, None, sel)
            dist = np.sqrt(np.maximum(dist, 0))
        else:
            f.knn_inner_product(*ptrs, sel)
        if allowed is not None:
            labels = np.where(labels >= 0, allowed[np.maximum(labels, 0)], -1)
        return labels, dist

    def _exact_chunked(self, q: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Brute force over many matches: gather them a cache-sized block at a time into faiss's result heap
        (one 15 MB gather of 10k rows is memory-bound; blocks stay in cache while they are scored)."""
        f = _faiss()
        l2 = self.metric is Metric.L2
        heap = f.ResultHeap(len(q), k, keep_max=not l2)
        view = self._ps.vectors.view()
        for s in range(0, len(allowed), _GATHER_ROWS):
            part = allowed[s : s + _GATHER_ROWS]
            kk = min(k, len(part))
            dist, labels = f.knn(q, view[part], kk, f.METRIC_L2 if l2 else f.METRIC_INNER_PRODUCT)
            heap.add_result(dist, part[labels])
        heap.finalize()
        dist = np.sqrt(np.maximum(heap.D, 0)) if l2 else heap.D
        return heap.I, dist

    def _rerank(self, queries: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Rescore candidates exactly with their float vectors from the memory-mapped vector file."""
        if len(cand) == 1:  # one query: a row gather and a mat-vec, no (nq, fetch, d) broadcasting
            c = cand[0]
            if c.min() < 0:
                c = c[c >= 0]
            vecs = self._ps.vectors.view()[c]
            q = queries[0]
            if self.metric is Metric.L2:
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
        vecs = self._ps.vectors.view()[np.where(valid, cand, 0)]  # (nq, fetch, d)
        if self.metric is Metric.L2:
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

    def _bare_hits(self, fids: np.ndarray, scores: np.ndarray) -> list[list[Hit]]:
        """Hits with ids and scores only (``with_payload=False``): no payload copies."""
        rows = self._ps.rows
        out: list[list[Hit]] = []
        for fr, sr in zip(fids.tolist(), scores.tolist(), strict=True):
            hits = []
            for fid, sc in zip(fr, sr, strict=True):
                row = rows[fid] if 0 <= fid < len(rows) else None
                if row is not None:
                    hits.append(Hit(row[0], sc, {}))
            out.append(hits)
        return out

    def _hits(self, fids: np.ndarray, scores: np.ndarray) -> list[list[Hit]]:
        """Hits with the caller's own payload copies; fids < 0 (no result) and dead fids are skipped.

        The common row (live fids, flat payloads) is built in one comprehension: after a scan evicted the CPU
        caches every extra Python step costs microseconds."""
        ps = self._ps
        rows = ps.rows
        nested = ps.nested
        out: list[list[Hit]] = []
        for fr, sr in zip(fids.tolist(), scores.tolist(), strict=True):
            if fr and min(fr) >= 0 and (not nested or nested.isdisjoint(fr)):
                try:
                    got = map(rows.__getitem__, fr)
                    out.append([Hit(r[0], s, r[1].copy()) for r, s in zip(got, sr, strict=True)])  # type: ignore[index]
                    continue
                except (TypeError, IndexError):  # a dead fid (None) or one past the store: the careful path
                    pass
            hits = []
            for fid, sc in zip(fr, sr, strict=True):
                row = rows[fid] if 0 <= fid < len(rows) else None
                if row is not None:
                    hits.append(Hit(row[0], sc, pts.payload_copy(row[1])))  # callers may mutate theirs
            out.append(hits)
        return out

    def _count(self) -> int:
        self.refresh()
        return len(self._ps)

    def _ids(self) -> set[str]:
        self.refresh()
        with self._ps.lock:
            return set(self._ps.id_to_fid)

    def _fetch(self, ids: list[str]) -> dict[str, tuple[np.ndarray | None, Payload]]:
        self.refresh()
        ps = self._ps
        with ps.lock:
            view = ps.vectors.view()
            out: dict[str, tuple[np.ndarray | None, Payload]] = {}
            for pid in ids:
                fid = ps.id_to_fid.get(pid)
                if fid is not None:
                    row = ps.rows[fid]
                    assert row is not None  # id_to_fid lists live fids only
                    out[pid] = (np.array(view[fid]), pts.payload_copy(row[1]))
            return out

    def _flush(self) -> None:
        if self.read_only:
            return
        ps = self._ps
        with ps.lock:
            ps.sync()  # the points first: a manifest never claims a seq the point store could lose
            has_index = self._index is not None
            # index to a pending file, then the manifest (naming the new and the previous checksum), then the
            # rename: a crash at any point leaves an index the manifest accepts (the previous one is caught up)
            pending = self.dir / ".index.faiss.pending"
            new_sum = None
            if has_index:
                _faiss().write_index(self._index, str(pending))
                with open(pending, "rb+") as fh:
                    os.fsync(fh.fileno())
                new_sum = sha256_file(pending)
            manifest = {
                "format_version": FORMAT_VERSION,
                "name": self.name,
                "kind": self.kind,
                "dim": self.dim,
                "metric": self.metric.value,
                "fingerprint": self.fingerprint,
                "params": asdict(self.params),
                "nlist": self._nlist,
                "trained_on": self._trained_on,
                "count": len(ps),
                "seq": ps.seq,
                "generation": ps.generation,  # the point-store numbering the index holds
                "previous_generation": self._disk_gen,  # that of the previous index (a crash before the rename)
                "has_index": has_index,
                "index_file": self.index_path.name if has_index else None,
                "points": "../points",
                "checksum": new_sum,
                "previous_checksum": self._index_sum,
                "created": self._created,
                "updated": now_iso(),
                "faiss_version": _faiss().__version__,
            }
            write_json(self.manifest_path, manifest)
            if has_index:
                pts.fault_point("flush:manifest-written")
                os.replace(pending, self.index_path)
                dfd = os.open(self.dir, os.O_RDONLY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
            elif self.index_path.exists():
                self.index_path.unlink()
            self._index_sum = new_sum
            self._disk_gen = ps.generation if has_index else None
            self._sig = file_sig(self.manifest_path)

    def _release(self) -> None:
        """Let go of the point store and the lock without flushing (what a killed process leaves)."""
        ps, self._points = self._points, None
        if ps is not None:
            with ps.lock:
                ps.unlisten(self)
                if self._resident:
                    self._resident = False
                    ps.vectors.release_resident()
            pts.release(ps)
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
        return int(_faiss().serialize_index(self._index).nbytes)
