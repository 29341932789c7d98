"""Search modes of a collection: ``dense`` (its vectors), ``keyword`` (BM25 on its keyword leg) and ``hybrid``
(both legs, fused by ``retrieval.keyword.fusion``).

The keyword leg of a FAISS index is the inverted index of the collection's point store (``retrieval.keyword.index``,
one per vector space, whatever the kind: flat, ivf and hnsw search the same leg); of the ``qdrant`` index, the
collection's sparse named vector (``QdrantStore.search_sparse``). Both weigh documents with the collection's
``KeywordSpec`` (its manifest's ``keyword``), so the keyword leg alone answers alike on every engine, and a hybrid
search fuses the two legs the same way everywhere: each leg fetched ``max(k, candidates)`` deep under the same
filter (a pre-filter on both legs), fused in Python, cut to k. The dense leg returns k hits whenever k points
match, so a hybrid search does too; the keyword leg returns only documents holding a query term.

``KeywordLegs`` is the collection's part: it opens, follows, builds and saves the FAISS legs and hands the spec to
the Qdrant store (``Collection.keyword``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from retrieval.errors import InvalidInputError, SimlookupError, StoreError
from retrieval.filters import Filter
from retrieval.keyword import files
from retrieval.keyword.bm25 import average_length
from retrieval.keyword.fusion import Fusion, fuse, top_with_ties
from retrieval.keyword.index import READ_BATCH, KeywordIndex, payloads_of
from retrieval.keyword.spec import KeywordSpec
from retrieval.keyword.terms import doc_terms, query_terms, text_of
from retrieval.stores import FAISS_KINDS, QDRANT_INDEX, FaissStore, Hit, SearchParams, VectorStore
from retrieval.stores.base import used_params
from retrieval.stores.faiss_exact import bare_hits, hits
from retrieval.stores.faiss_files import read_following
from retrieval.stores.manifest import now_iso
from retrieval.stores.qdrant_store import QdrantStore

if TYPE_CHECKING:
    from retrieval.collection import Collection

Mode = Literal["dense", "keyword", "hybrid"]
MODES: tuple[Mode, ...] = ("dense", "keyword", "hybrid")
FilterSpec = Filter | Mapping[str, Any] | None
log = logging.getLogger(__name__)


def check_mode(mode: str) -> Mode:
    """A search mode, or a clear error."""
    if mode not in MODES:
        raise InvalidInputError(f"unknown search mode {mode!r}: use one of {list(MODES)}")
    return mode


def no_keyword_leg(name: str) -> InvalidInputError:
    """The error of a keyword or hybrid search on a collection without the keyword leg."""
    return InvalidInputError(
        f"collection {name!r} has no keyword leg (ingested before hybrid search, with SIMLOOKUP_KEYWORD__ENABLED="
        f"false, or not a text collection): build it with `simlookup build-keyword {name}` (or re-ingest it), "
        "or search with mode 'dense'"
    )


class KeywordLegs:
    """The keyword leg of one collection: a FAISS inverted index per vector space (opened on first use, following
    the point store), and the spec its Qdrant store writes and searches with. Thread-safe."""

    def __init__(self, coll: Collection) -> None:
        self.coll = coll
        self._faiss: dict[str, KeywordIndex] = {}
        self._ident: dict[str, tuple[str, str, str]] = {}
        self._lock = threading.Lock()

    def spec(self) -> KeywordSpec:
        """The collection's keyword leg, or the error that names ``simlookup build-keyword``."""
        spec = self.coll.manifest.keyword
        if spec is None or self.coll.manifest.modality != "text":
            raise no_keyword_leg(self.coll.name)
        return spec

    def attach(self, index: str, st: VectorStore) -> None:
        """Give an opened Qdrant store the spec: its upserts then write each text's sparse vector. A writer's
        collection that lacks the sparse vector (made before the leg) gets it, and its points their weights."""
        spec = self.coll.manifest.keyword
        if index != QDRANT_INDEX or not isinstance(st, QdrantStore) or self.coll.manifest.modality != "text":
            return
        st.keyword = spec
        if spec is not None and not self.coll.read_only and spec.vector not in st.sparse:
            st.ensure_sparse(spec.vector)
            if st.count():
                st.rewrite_sparse()

    def sparse_vectors(self) -> list[str]:
        """The sparse vectors a new Qdrant collection of this collection is created with."""
        m = self.coll.manifest
        return [m.keyword.vector] if m.keyword is not None and m.modality == "text" else []

    # ---- the FAISS leg ----
    def _faiss_store(self, target: str) -> FaissStore:
        kinds = [i for i in self.coll.manifest.indexes if i in FAISS_KINDS]
        if not kinds:
            raise StoreError(f"collection {self.coll.name!r} has no FAISS index")
        st = self.coll.store(kinds[0], target)
        if not isinstance(st, FaissStore):
            raise StoreError(f"index {kinds[0]} of {self.coll.name!r} is not a FAISS store")
        return st

    def faiss_index(self, st: FaissStore, target: str) -> KeywordIndex:
        """The FAISS leg of one space, in step with the point store (loaded from its files, else built)."""
        spec = self.spec()
        m = self.coll.manifest
        ident = (m.created, getattr(m, "uid", ""), spec.field)  # a collection dropped and made again: start over
        with self._lock:
            kw = self._faiss.get(target)
            if kw is None or self._ident.get(target) != ident:
                kw = KeywordIndex(st.coll_dir / "keyword", spec.field)
                files.load(kw)  # missing or damaged: the sync below builds it from the point store
                self._faiss[target], self._ident[target] = kw, ident
        kw.sync(st.point_store())
        return kw

    def build(self, report: Callable[[str, str, float | None], None] | None = None) -> list[str]:
        """Bring every space's FAISS leg in step and save it (writers; after an ingest's writes)."""
        if self.coll.manifest.keyword is None or self.coll.manifest.modality != "text" or self.coll.read_only:
            return []
        if not any(i in FAISS_KINDS for i in self.coll.manifest.indexes):
            return []
        done = []
        for target in self.coll.manifest.vectors:
            if report is not None:
                report("keyword", target, None)
            t0 = time.perf_counter()
            kw = self.faiss_index(self._faiss_store(target), target)
            if kw.dirty:
                files.save(kw)
                done.append(f"keyword/{target}")
            if report is not None:
                report("keyword", target, time.perf_counter() - t0)
        return done

    def flush(self) -> None:
        """Save every opened FAISS leg that changed (writers)."""
        if self.coll.read_only:
            return
        for target, kw in list(self._faiss.items()):
            if self.coll.manifest.keyword is not None:
                kw.sync(self._faiss_store(target).point_store())
            if kw.dirty:
                files.save(kw)

    def save_quietly(self) -> None:
        """``flush``, a failure logged (the files are a cache: the next open rebuilds them from the point store)."""
        try:
            self.flush()
        except (SimlookupError, OSError) as exc:
            log.warning(
                "collection %r: saving the keyword leg failed (%s); it is rebuilt on the next open", self.coll.name, exc
            )

    # ---- search ----
    def search(
        self, index: str, target: str, text: str, k: int, flt: Filter | None, with_payload: bool = True
    ) -> list[Hit]:
        """The keyword leg of one index: documents holding a query term, best first by BM25 (ties in id order), at
        most k. Every document tied with the k-th is fetched before the cut (``top_with_ties``), so that engines
        agree on which of a run of tied documents make it, however long the run."""
        self.spec()
        self.coll.settings.limits.check(k, None)
        return top_with_ties(lambda n: self._search(index, target, text, n, flt, with_payload), k)

    def _search(self, index: str, target: str, text: str, k: int, flt: Filter | None, with_payload: bool) -> list[Hit]:
        spec = self.spec()
        q_ids, q_tf = query_terms(text)
        st = self.coll.store(index, target)
        if isinstance(st, QdrantStore):
            if st.keyword is None or spec.vector not in st.sparse:
                raise no_keyword_leg(self.coll.name)
            return st.search_sparse(q_ids, q_tf, k, flt, with_payload, capped=False)
        if not isinstance(st, FaissStore):
            raise StoreError(f"index {index} of {self.coll.name!r} has no keyword leg")
        # a read-only snapshot whose writer changed points since follows it, as the store's own reads do
        return read_following(st, lambda: self._faiss_search(st, target, spec, q_ids, q_tf, k, flt, with_payload))

    def _faiss_search(
        self,
        st: FaissStore,
        target: str,
        spec: KeywordSpec,
        q_ids: Any,
        q_tf: Any,
        k: int,
        flt: Filter | None,
        with_payload: bool,
    ) -> list[Hit]:
        kw = self.faiss_index(st, target)
        ps = st.point_store()
        with ps.lock:
            allowed = ps.match(flt) if flt is not None else None
            fids, scores = kw.search(q_ids, q_tf, k, allowed, spec.avgdl, spec.params)
            if not len(fids):
                return []
            make = hits if with_payload else bare_hits
            return make(ps, fids[None, :], scores.astype(np.float32)[None, :])[0]

    # ---- building the leg of a collection that has none (or rebuilding it) ----
    def enable(self, k1: float, b: float) -> dict[str, Any]:
        """Build the keyword leg from the collection's stored texts (writers): the average length is measured, the
        FAISS legs are built and saved, the Qdrant collection gets its sparse vector and every point its weights.
        The caller saves the manifest. What was done."""
        coll = self.coll
        m = coll.manifest
        if coll.read_only:
            raise InvalidInputError(f"collection {coll.name!r} was opened read-only: its keyword leg is not built")
        if m.modality != "text":
            raise InvalidInputError(
                f"collection {coll.name!r} is an {m.modality} collection: the keyword leg indexes text"
            )
        t0 = time.perf_counter()
        lengths = self._lengths()
        avgdl = average_length(lengths)
        if avgdl <= 0:
            raise InvalidInputError(f"collection {coll.name!r} holds no text to index (payload field 'text')")
        field = m.keyword.field if m.keyword is not None else "text"
        m.keyword = KeywordSpec(field=field, k1=k1, b=b, avgdl=avgdl, built=now_iso())
        out: dict[str, Any] = {
            "collection": coll.name,
            "documents": int((np.asarray(lengths) > 0).sum()),
            "avgdl": round(avgdl, 4),
            "indexes": [],
        }
        for target in m.vectors:
            if any(i in FAISS_KINDS for i in m.indexes):
                with self._lock:
                    self._faiss.pop(target, None)
                kw = self.faiss_index(self._faiss_store(target), target)
                files.save(kw)
                out["indexes"].append("faiss")
            if QDRANT_INDEX in m.indexes:
                st = coll.store(QDRANT_INDEX, target)
                if isinstance(st, QdrantStore):
                    st.keyword = m.keyword
                    st.ensure_sparse(m.keyword.vector)
                    st.rewrite_sparse()
                    out["indexes"].append(QDRANT_INDEX)
        out["seconds"] = round(time.perf_counter() - t0, 3)
        return out

    def _lengths(self) -> list[int]:
        """The token count of every stored text (the FAISS point store when there is one, else Qdrant's points)."""
        m = self.coll.manifest
        field = m.keyword.field if m.keyword is not None else "text"
        target = next(iter(m.vectors))
        if any(i in FAISS_KINDS for i in m.indexes):
            ps = self._faiss_store(target).point_store()
            with ps.lock:
                live = ps.live_fids()
                return [
                    doc_terms(text_of(pl, field))[2]
                    for i in range(0, len(live), READ_BATCH)
                    for pl in payloads_of(ps, live[i : i + READ_BATCH])
                ]
        st = self.coll.store(QDRANT_INDEX, target)
        ids = sorted(st.ids())
        out: list[int] = []
        for i in range(0, len(ids), 1024):
            out += [doc_terms(text_of(pl, field))[2] for _, pl in st.fetch(ids[i : i + 1024]).values()]
        return out


def search(
    coll: Collection,
    index: str,
    target: str,
    k: int,
    filter: FilterSpec,
    params: SearchParams | None,
    vector: np.ndarray | None,
    text: str | None,
    mode: str,
    fusion: Fusion | None,
    with_payload: bool = True,
) -> list[Hit]:
    """One query on one index of a collection in one mode (see ``Collection.search``)."""
    mode = check_mode(mode)
    flt = None if filter is None else filter if isinstance(filter, Filter) else Filter.from_dict(filter)
    flt = flt if flt else None
    if mode != "keyword" and vector is None:
        raise InvalidInputError(f"a {mode} search needs the query vector")
    if mode == "dense":
        assert vector is not None
        return coll.store(index, target).search(vector, k, flt, params, with_payload)[0]
    if not isinstance(text, str) or not text.strip():
        raise InvalidInputError(f"a {mode} search needs the query text")
    legs = coll.keyword
    legs.spec()
    coll.settings.limits.check(k, params)
    if mode == "keyword":
        if params is not None and used_params(params):
            raise InvalidInputError(
                f"a keyword search takes no index parameters (got {', '.join(used_params(params))}): they tune "
                "the dense leg of a hybrid search"
            )
        return legs.search(index, target, text, k, flt, with_payload)
    ks = coll.settings.keyword
    fusion = fusion or Fusion(ks.fusion, ks.alpha, ks.rrf_k)
    depth = min(max(k, ks.candidates), coll.settings.limits.max_k)
    assert vector is not None
    st = coll.store(index, target)
    cap = max(depth, coll.settings.limits.max_k)  # the dense leg's run of ties at the cut, as deep as max_k allows
    dense = top_with_ties(lambda n: st.search(vector, n, flt, params, with_payload)[0], depth, cap)
    keyword = legs.search(index, target, text, depth, flt, with_payload)
    return fuse(dense, keyword, fusion, k)
