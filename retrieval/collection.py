"""A collection: its manifest (``collection_manifest``) and, here, the facade that opens, checks, writes and
searches its stores in one place."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import numpy as np

from retrieval.collection_manifest import (
    ENCODER_OF,
    CollectionManifest,
    EncoderKind,
    VectorKind,
    VectorSpace,
    ingest_command,
    list_collections,
    load_collection,
    load_collection_pinned,
    manifest_path,
    save_collection,
    scan_collections,
    space_names,
    store_name,
)
from retrieval.errors import (
    CorruptIndexError,
    InvalidInputError,
    SimlookupError,
    StoreError,
    StoreNotFoundError,
)
from retrieval.hybrid import KeywordLegs
from retrieval.keyword.fusion import Fusion
from retrieval.settings import Settings
from retrieval.stores import FAISS_KINDS, INDEX_NAMES, QDRANT_INDEX, FaissStore, SearchParams, VectorStore, open_store
from retrieval.stores.base import Hit
from retrieval.stores.manifest import FileSig, Pin, file_sig, now_iso
from retrieval.stores.points import CompactReport
from retrieval.tuning import DEFAULT_K, DEFAULT_TARGET, TUNE_MIN_POINTS, shortfall

__all__ = [
    "ENCODER_OF",
    "CollectionManifest",
    "EncoderKind",
    "VectorKind",
    "VectorSpace",
    "list_collections",
    "load_collection",
    "manifest_path",
    "save_collection",
    "scan_collections",
    "space_names",
    "store_name",
    "Collection",
    "QueryKind",
]

QueryKind = Literal["text", "image"]


class Collection:
    """One collection: its manifest and the store of every (index, vector space), opened once each.

    The one place that opens a collection's stores (the Qdrant engine and vector name from the manifest),
    checks them against the manifest, writes to every index in a fixed order (Qdrant first, the engine most
    likely to refuse, then the FAISS kinds) with a report of partial failures, builds, flushes and closes them,
    and follows another process's writes (``refresh``). Readers (``read_only=True``) take no write locks.
    Thread-safe: stores open once under a lock.
    """

    def __init__(
        self,
        settings: Settings,
        name: str,
        read_only: bool = True,
        manifest: CollectionManifest | None = None,
        check_counts: bool = True,
    ) -> None:
        """``manifest``: a writer's own, not yet saved (``save`` writes it). ``check_counts``: refuse a store
        holding fewer points than a complete collection's manifest records (off for adapters that write and
        record the count as they go)."""
        self.settings = settings
        self.name = name
        self.read_only = read_only
        self.check_counts = check_counts
        self.path = manifest_path(settings.data_dir, name)
        self._pin = Pin()  # a reader holds the manifest file it read (see Pin)
        self._sig: FileSig | None
        self.manifest: CollectionManifest
        if manifest is None:
            self.manifest, self._sig = load_collection_pinned(settings.data_dir, name, self._pin)
        else:
            self.manifest, self._sig = manifest, file_sig(self.path)
        self._stores: dict[tuple[str, str], VectorStore] = {}
        self._lock = threading.RLock()
        self._closed = False
        # a writer on a collection read from disk (not an ingest's own manifest) records the point count its writes
        # leave in the manifest when it flushes, so that readers and `verify` check against the new count
        self._records_count = manifest is None and not read_only
        self._written = False
        self.keyword = KeywordLegs(self)  # the keyword leg: BM25 on the texts (retrieval.hybrid)

    # ---- the manifest ----
    def refresh(self) -> bool:
        """Re-read the manifest when another process rewrote it (one stat when nothing changed). Readers only:
        a writer's manifest is its own. True if it was re-read. Open FAISS stores follow their own writer."""
        if not self.read_only:
            return False
        sig = file_sig(self.path)
        if sig == self._sig:
            return False
        with self._lock:
            if sig == self._sig:
                return False
            if sig is None:
                raise StoreNotFoundError(
                    f"collection {self.name!r} was removed from {self.settings.data_dir} (dropped by another "
                    f"process?): nothing to search until `simlookup ingest SOURCE --name {self.name}` creates it again"
                )
            old = self.manifest
            self.manifest, self._sig = load_collection_pinned(self.settings.data_dir, self.name, self._pin)
            if self.manifest.uid != old.uid:
                # dropped and created again under this name: its stores (another dim, model or set of indexes,
                # maybe) open afresh on the next use; never answer from the dropped ones
                self._close_stores()
            for (index, target), st in self._stores.items():  # a `simlookup tune` elsewhere: its defaults apply
                st.tuned = self._tuned_params(index, target)
            return True

    def save(self) -> None:
        """Write the manifest (writers)."""
        if self.read_only:
            raise InvalidInputError(f"collection {self.name!r} was opened read-only: its manifest is not written")
        save_collection(self.settings.data_dir, self.manifest)
        self._sig = file_sig(self.path)

    def warnings(self, index: str | None = None, target: str = "text", params: SearchParams | None = None) -> list[str]:
        """What an answer from this collection should say beside its hits: an ingest running or killed midway;
        for ``index`` searched at its tuned default, a recall target the tuning could not reach."""
        m = self.manifest
        out = []
        if not m.complete:
            out.append(
                f"collection {self.name!r} is incomplete: an ingest is writing it or was interrupted, so searches "
                f"see only the points written so far; finish it with `{ingest_command(m)}`"
            )
        op = m.tuning.get(target, {}).get(index) if index else None
        default = params is None or (
            params.nprobe is None and params.hnsw_ef is None and params.rerank is None and params.oversampling is None
        )
        if op and not op.get("reached") and default and not (params is not None and params.exact):
            out.append(
                f"index {index} answers at {shortfall(op)}: "
                f"{op.get('advice') or 'rebuild it with larger build parameters'}"
            )
        return out

    # ---- vector spaces ----
    def space(self, target: str) -> VectorSpace:
        """The vector space ``target`` ('text', 'image' or 'caption'), or a clear error."""
        if target not in self.manifest.vectors:
            raise InvalidInputError(
                f"collection {self.name!r} has no {target!r} vectors (it has {sorted(self.manifest.vectors)})"
            )
        return self.manifest.vectors[target]

    def default_target(self, kind: QueryKind = "text") -> str:
        """The space a query searches when none is named: 'text' for text corpora, 'image' for image corpora."""
        return "text" if self.manifest.modality == "text" and kind == "text" else "image"

    def query_space(self, kind: QueryKind, target: str | None) -> VectorSpace:
        """The space a query of this kind searches, refused when its encoder cannot make such a query."""
        if kind not in ("text", "image"):
            raise InvalidInputError(f"unknown query kind {kind!r}: use 'text' or 'image'")
        space = self.space(target or self.default_target(kind))
        if kind == "image" and space.encoder != "clip":
            raise InvalidInputError(f"collection {self.name!r} is a text collection: image queries need CLIP vectors")
        return space

    # ---- stores ----
    def open_index(self, index: str, target: str = "text", create: bool = False) -> VectorStore:
        """Open the store of one (index, space) as the manifest describes it, unchecked and not kept: the one
        place a collection's store is opened (``store`` keeps and checks it; ``verify`` reports what fails)."""
        m = self.manifest
        space = self.space(target)
        if index == QDRANT_INDEX:
            # the engine the collection was written to (edge, local or server), not only the settings' mode
            qs = self.settings.with_qdrant_mode(m.qdrant_mode) if m.qdrant_mode else self.settings
            named: dict[str, int] | None = (
                {sp.name: sp.dim for sp in m.vectors.values()} if m.modality != "text" else None
            )
            vname = "" if m.modality == "text" else target
            if not create:
                return open_store(qs, self.name, index, create=False, read_only=self.read_only, vector_name=vname)
            return open_store(
                qs,
                self.name,
                index,
                dim=space.dim,
                metric=space.metric,
                fingerprint=space.fingerprint,
                payload_indexes=dict(m.payload_indexes),
                vector_name=vname,
                vectors=named,
                sparse_vectors=self.keyword.sparse_vectors(),
            )
        if index not in INDEX_NAMES:
            raise InvalidInputError(f"unknown index {index!r}: use one of {list(INDEX_NAMES)}")
        if not create:
            return open_store(self.settings, m.store_name(target), index, create=False, read_only=self.read_only)
        return open_store(
            self.settings,
            m.store_name(target),
            index,
            dim=space.dim,
            metric=space.metric,
            fingerprint=space.fingerprint,
            create=not self.read_only,
            read_only=self.read_only,
        )

    def store(self, index: str, target: str = "text", create: bool = False) -> VectorStore:
        """The open store of one index ('flat', 'ivf', 'ivfpq', 'hnsw', 'qdrant') and space, opened once and
        checked against the manifest (model, dimension, and for a complete collection its count)."""
        self._check_open()
        self.refresh()
        if index not in INDEX_NAMES:
            raise InvalidInputError(f"unknown index {index!r}: use one of {list(INDEX_NAMES)}")
        if index not in self.manifest.indexes:
            raise InvalidInputError(
                f"collection {self.name!r} has no {index!r} index (it has {self.manifest.indexes}); "
                f"re-ingest with --index {index}"
            )
        space = self.space(target)
        key = (index, target)
        st = self._stores.get(key)
        if st is not None:
            return st
        with self._lock:
            if key not in self._stores:
                st = self._open_checked(index, target, space, create)
                st.tuned = self._tuned_params(index, target)
                self.keyword.attach(index, st)
                self._stores[key] = st
            return self._stores[key]

    def _tuned_params(self, index: str, target: str) -> SearchParams | None:
        from retrieval.tuning import as_params

        op = self.manifest.tuning.get(target, {}).get(index)
        return as_params(op["params"]) if op and op.get("params") else None

    def _open_checked(self, index: str, target: str, space: VectorSpace, create: bool) -> VectorStore:
        """Open one store; a damaged one is an error that names this collection's own repair command."""
        try:
            st = self.open_index(index, target, create)
        except CorruptIndexError as exc:
            raise CorruptIndexError(f"{exc} [collection {self.name!r}: {self.repair_hint()}]") from None
        try:
            self.check_store(index, target, st, space)
        except SimlookupError:
            st.close()
            raise
        return st

    def repair_hint(self) -> str:
        """What a user runs to check and repair this collection."""
        return f"run `simlookup verify --name {self.name}`; repair with `{ingest_command(self.manifest)}`"

    def check_store(self, index: str, target: str, st: VectorStore, space: VectorSpace) -> None:
        """Refuse a store of another model or dimension, or one that lost points: never answer from a fraction."""
        if st.fingerprint and st.fingerprint != space.fingerprint:
            raise InvalidInputError(
                f"index {index} of {self.name!r} was built by {st.fingerprint}, the collection says {space.fingerprint}"
            )
        where = self.path
        if st.dim != space.dim:
            raise CorruptIndexError(
                f"index {index} of {self.name!r} is {st.dim}-d but {where} says {space.dim}-d: {self.repair_hint()}"
            )
        # m.count counts the points; caption vectors exist for captioned images only
        m = self.manifest
        if self.check_counts and m.complete and target != "caption" and (n := st.count()) < m.count:
            raise CorruptIndexError(
                f"index {index} of {self.name!r} holds {n} points but {where} records {m.count}: its files are "
                f"missing or damaged; {self.repair_hint()}"
            )

    def stores(self, target: str = "text", create: bool = False) -> Iterator[tuple[str, VectorStore]]:
        """(index, store) of every index of one space, in write order: Qdrant first, then the FAISS kinds."""
        for index in sorted(self.manifest.indexes, key=lambda i: i != QDRANT_INDEX):
            yield index, self.store(index, target, create)

    # ---- writes ----
    def each_index(self, op: str, fn: Callable[[VectorStore], Any], target: str = "text") -> dict[str, Any]:
        """Apply one write to every index of a space, in write order.

        A failure before any index was written is raised as it is; a failure after some were (any
        ``Exception``, an ``OSError`` from a full disk included) is a StoreError chained to it that names which
        indexes hold the write and which failed, so the caller can repeat it (writes are idempotent).
        """
        if self.read_only:
            raise InvalidInputError(f"collection {self.name!r} was opened read-only: it cannot {op}")
        done: list[str] = []
        out: dict[str, Any] = {}
        order = sorted(self.manifest.indexes, key=lambda i: i != QDRANT_INDEX)
        for index in order:  # every index opened (and checked against the manifest) before the first one changes
            self.store(index, target, create=True)
        self._written = True
        for index in order:
            try:
                out[index] = fn(self.store(index, target, create=True))
            except Exception as exc:  # not BaseException: an interrupt stays an interrupt
                if not done:
                    raise
                why = str(exc) if isinstance(exc, SimlookupError) else f"{type(exc).__name__}: {exc}"
                raise StoreError(
                    f"{op} on collection {self.name!r} reached {done} but failed on {index!r} ({why}): the indexes "
                    f"are out of step until the same {op} is repeated (it is idempotent)"
                ) from exc
            done.append(index)
        return out

    def upsert(
        self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict[str, Any]], target: str = "text"
    ) -> None:
        """Write points to every index of a space (see ``each_index``)."""
        self.each_index("upsert", lambda st: st.upsert(ids, vectors, payloads), target)

    def delete(self, ids: Sequence[str], target: str = "text") -> dict[str, int]:
        """Delete ids from every index of a space; how many each held."""
        return self.each_index("delete", lambda st: st.delete(ids), target)

    def build(self, report: Callable[[str, str, float | None], None] | None = None) -> list[str]:
        """Finish indexing every open store that holds points (train IVF/PQ, build Qdrant Edge HNSW); the
        ``index/space`` names of those that did work. ``report(index, space, seconds)``: called with None
        before each store's build and with the seconds it took after (progress lines, the ingest summary)."""
        self._check_open()
        if self.read_only:
            raise InvalidInputError(f"collection {self.name!r} was opened read-only: it cannot build")
        done = []
        for (index, target), st in list(self._stores.items()):
            if not st.count():
                continue
            if report is not None:
                report(index, target, None)
            t0 = time.perf_counter()
            if st.build():
                done.append(f"{index}/{target}")
            if report is not None:
                report(index, target, time.perf_counter() - t0)
        done += self.keyword.build(report)
        self.tune(only_stale=True)
        return done

    # ---- search in every mode: dense, keyword, hybrid (retrieval.hybrid) ----
    def search(
        self,
        index: str,
        target: str = "text",
        k: int = 10,
        filter: Any = None,
        params: SearchParams | None = None,
        vector: np.ndarray | None = None,
        text: str | None = None,
        mode: str = "dense",
        fusion: Fusion | None = None,
        with_payload: bool = True,
    ) -> list[Hit]:
        """One query on one index: ``dense`` by ``vector``; ``keyword`` by ``text`` (BM25 on the keyword leg);
        ``hybrid`` by both, the two legs fused (``fusion``, default from the settings: RRF). A filter pre-filters
        every leg. A collection without the keyword leg refuses keyword and hybrid searches, naming the command
        that builds it."""
        from retrieval.hybrid import search

        return search(self, index, target, k, filter, params, vector, text, mode, fusion, with_payload)

    def build_keyword(self) -> dict[str, Any]:
        """Build (or rebuild) the keyword leg from the stored texts and record it in the manifest (writers;
        ``simlookup build-keyword``): what was done."""
        self._check_open()
        out = self.keyword.enable(self.settings.keyword.k1, self.settings.keyword.b)
        self.save()
        return out

    # ---- tuned defaults (retrieval.tuning) ----
    def tune(
        self,
        indexes: Sequence[str] | None = None,
        target: float = DEFAULT_TARGET,
        k: int = DEFAULT_K,
        queries: np.ndarray | None = None,
        only_stale: bool = False,
        min_points: int = TUNE_MIN_POINTS,
    ) -> dict[str, dict[str, Any]]:
        """Tune the default query setting of each index (every open one, or ``indexes``) to reach recall@k
        ``target`` and record it in the manifest (saved by the caller's ``save``, or here when not building).
        ``only_stale``: skip indexes tuned at this target and k whose point count stayed within a factor of 1.5
        (what ``build`` does). Indexes below ``min_points`` keep the built-in defaults. {"index/space": point}."""
        from retrieval.tuning import stale, tune

        self._check_open()
        if self.read_only:
            raise InvalidInputError(f"collection {self.name!r} was opened read-only: it cannot record a tuning")
        out: dict[str, dict[str, Any]] = {}
        keys = (
            [(i, t) for i in indexes for t in self.manifest.vectors] if indexes is not None else list(self._stores)
        )
        for index, space in keys:
            st = self.store(index, space, create=False)
            n = st.count()
            old = self.manifest.tuning.get(space, {}).get(index)
            if n < min_points:
                if old and stale(old, n):  # shrunk below the threshold: the built-in defaults apply again
                    self.manifest.tuning.get(space, {}).pop(index, None)
                    st.tuned = None
                continue
            if only_stale and old and old.get("target") == target and old.get("k") == k and not stale(old, n):
                continue
            op = tune(st, target, k, queries=queries)
            if op is None:
                continue
            self.manifest.tuning.setdefault(space, {})[index] = op.to_dict()
            st.tuned = op.search_params()
            out[f"{index}/{space}"] = op.to_dict()
        return out

    def tuned(self, index: str, space: str) -> dict[str, Any] | None:
        """The recorded operating point of one index (None: not tuned, the built-in defaults apply)."""
        return self.manifest.tuning.get(space, {}).get(index)

    def compact(self) -> dict[str, CompactReport]:
        """Reclaim the vector-file rows of replaced and deleted points in the FAISS point store of each vector
        space (``simlookup compact``): every FAISS kind of the space is opened first, so each remaps its index
        and records it. {space: what was reclaimed}; empty when the collection has no FAISS index. Writers only.
        """
        self._check_open()
        if self.read_only:
            raise InvalidInputError(f"collection {self.name!r} was opened read-only: it cannot compact")
        kinds = [i for i in self.manifest.indexes if i in FAISS_KINDS]
        out: dict[str, CompactReport] = {}
        for target in self.manifest.vectors if kinds else ():
            opened = [self.store(kind, target) for kind in kinds]
            first = opened[0]
            if not isinstance(first, FaissStore):
                raise StoreError(f"index {kinds[0]} of {self.name!r} is not a FAISS store")
            out[target] = first.compact()
        return out

    def flush(self) -> None:
        """Make every write durable in every open store."""
        self._check_open()
        if self.read_only:
            return
        for st in list(self._stores.values()):
            st.flush()
        self.keyword.flush()
        self._record_count()

    def _record_count(self) -> None:
        """After writes through this facade on a collection read from disk: the manifest records the count the
        stores now hold (written after the stores are durable, so it never claims points they could lose)."""
        if not (self._records_count and self._written):
            return
        counted = [st for (_, target), st in self._stores.items() if target != "caption"]
        if counted:
            self.manifest.count = counted[0].count()
            self.manifest.updated = now_iso()
            self.save()
        self._written = False

    def opened(self) -> list[tuple[str, str, VectorStore]]:
        """(index, space, store) of every store opened so far."""
        return [(i, t, st) for (i, t), st in self._stores.items()]

    def close(self) -> None:
        """Flush (writers) and close every open store. Idempotent."""
        if not self._closed and not self.read_only:
            self.keyword.save_quietly()  # the FAISS keyword legs' files, while their stores are open
            if self._records_count and self._written:
                for st in list(self._stores.values()):
                    st.flush()
                self._record_count()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            errors = self._close_stores()
            self._pin.close()
            if errors:
                raise StoreError(f"closing collection {self.name!r}: " + "; ".join(errors))

    def _close_stores(self) -> list[str]:
        """Close every open store (under the lock); the errors, one line each."""
        errors = []
        stores, self._stores = list(self._stores.values()), {}
        for st in stores:
            try:
                st.close()
            except SimlookupError as exc:
                errors.append(f"{st.name}: {exc}")
        return errors

    def _check_open(self) -> None:
        if self._closed:
            from retrieval.errors import StoreClosedError

            raise StoreClosedError(f"collection {self.name!r} was closed")

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
