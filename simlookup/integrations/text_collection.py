"""A text collection as the framework adapters use it: documents in, hits out, every index kept in step.

One ``TextCollection`` writes through *every* index the collection has (its manifest's ``indexes``: the FAISS
kinds and Qdrant), so the same ids are in each, and searches through the one index it was opened with.
A new collection gets the indexes passed in ``indexes`` (default: just the searched one); it is created on
the first write, when the embedding dimension is known. Document text lives in the payload under
``text_key`` (``"text"``, as ``simlookup ingest`` writes it); metadata is the rest of the payload.

Search modes (``search(..., mode=...)``): ``dense`` (the vectors), ``keyword`` (BM25 on the collection's keyword
leg) and ``hybrid`` (both legs, fused), as ``Collection.search`` runs them. A new collection gets the keyword leg
(unless ``SIMLOOKUP_KEYWORD__ENABLED=false``), its average document length measured on the first write's texts;
``simlookup build-keyword NAME`` measures it again on everything written since.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from retrieval.collection import Collection, CollectionManifest, VectorSpace
from retrieval.encoders import load_encoder
from retrieval.errors import InvalidInputError, StoreNotFoundError
from retrieval.filters import Filter
from retrieval.keyword.bm25 import average_length
from retrieval.keyword.fusion import Fusion
from retrieval.keyword.spec import KeywordSpec
from retrieval.keyword.tokenize import tokenize
from retrieval.metric import Metric
from retrieval.settings import Settings
from retrieval.stores import INDEX_NAMES, QDRANT_INDEX, Hit, SearchParams, VectorStore
from retrieval.stores.manifest import now_iso
from simlookup.integrations.embedder import Embedder, EncoderEmbedder

TEXT_KEY = "text"
EXACT_LOOKUP_MAX = 10_000  # up to this many points, "ids matching a filter" is one exact filtered search
FilterSpec = Filter | Mapping[str, Any] | None


class TextCollection:
    """Read and write one text collection through the public store API; safe to share between threads."""

    def __init__(
        self,
        settings: Settings,
        name: str,
        index: str = "hnsw",
        embedder: Embedder | None = None,
        indexes: Sequence[str] | None = None,
        metric: Metric | str | None = None,
        origin: str = "integration",
        text_key: str = TEXT_KEY,
        check_fingerprint: bool = True,
        read_only: bool = False,
    ) -> None:
        if index not in INDEX_NAMES:
            raise InvalidInputError(f"unknown index {index!r}: use one of {list(INDEX_NAMES)}")
        self.settings = settings
        self.name = name
        self.index = index
        self.text_key = text_key
        self.origin = origin
        self.read_only = read_only
        self._lock = threading.RLock()
        self._closed = False
        self.coll: Collection | None = None  # the facade, once the collection exists
        with contextlib.suppress(StoreNotFoundError):  # a new collection: created on the first write
            self.coll = Collection(settings, name, read_only=read_only, check_counts=False)
        self.manifest: CollectionManifest | None = self.coll.manifest if self.coll is not None else None
        if self.manifest is None:
            wanted = list(dict.fromkeys(indexes or [index]))
            bad = [i for i in wanted if i not in INDEX_NAMES]
            if bad:
                raise InvalidInputError(f"unknown index(es) {bad}: use {list(INDEX_NAMES)}")
            if index not in wanted:
                raise InvalidInputError(f"index {index!r} is not among the indexes to create {wanted}")
            if read_only:
                raise StoreNotFoundError(f"no collection named {name!r} in {settings.data_dir} to open read-only")
            self.indexes = wanted
            self.metric = Metric.parse(metric or Metric.COSINE)
        else:
            m = self.manifest
            if m.modality != "text" or "text" not in m.vectors:
                raise InvalidInputError(
                    f"collection {name!r} is an {m.modality} collection: these adapters read and write text collections"
                )
            if index not in m.indexes:
                raise InvalidInputError(
                    f"collection {name!r} has no {index!r} index (it has {m.indexes}); open it with one of those"
                )
            if indexes is not None and set(indexes) != set(m.indexes):
                raise InvalidInputError(
                    f"collection {name!r} already exists with indexes {m.indexes}; every write goes to all of them, "
                    "so `indexes` cannot differ (leave it out)"
                )
            self.indexes = list(m.indexes)
            self.metric = Metric.parse(m.vectors["text"].metric)
            if metric is not None and Metric.parse(metric) is not self.metric:
                raise InvalidInputError(
                    f"collection {name!r} uses the {self.metric.value} metric, not {Metric.parse(metric).value}"
                )
        self._embedder = embedder
        if embedder is not None and self.manifest is not None and check_fingerprint:
            self._check_fingerprint(embedder.fingerprint)

    # ---- the embedding model ----
    @property
    def embedder(self) -> Embedder:
        """The model that embeds documents and queries: the one given, else the collection's own encoder."""
        with self._lock:
            if self._embedder is None:
                self._embedder = self._own_encoder()
            return self._embedder

    def _own_encoder(self) -> Embedder:
        if self.manifest is not None:
            from retrieval.retriever import Retriever

            fp = self.manifest.vectors["text"].fingerprint
            if fp.startswith("external:"):
                raise InvalidInputError(
                    f"collection {self.name!r} was embedded by {fp}, a model simlookup does not load itself: "
                    "pass that embedding model"
                )
            r = Retriever(self.settings, self.name)  # loads the manifest's model and checks its fingerprint
            return EncoderEmbedder(r.matching_encoder(self.manifest.vectors["text"]))
        return EncoderEmbedder(load_encoder(self.settings, "text"))

    def _check_fingerprint(self, fingerprint: str) -> None:
        assert self.manifest is not None
        want = self.manifest.vectors["text"].fingerprint
        if fingerprint != want:
            raise InvalidInputError(
                f"collection {self.name!r} was embedded by {want!r}, but this embedding model is {fingerprint!r}: "
                "use the same model (pass embedding_fingerprint=... if it is the same model under another name)"
            )

    @property
    def fingerprint(self) -> str | None:
        """The collection's model fingerprint (None before the first write of a new collection)."""
        return self.manifest.vectors["text"].fingerprint if self.manifest is not None else None

    # ---- stores ----
    @property
    def exists(self) -> bool:
        return self.manifest is not None

    def _open(self, index: str) -> VectorStore:
        """The open store of one index (created with the collection's model and dimension by a writer)."""
        assert self.coll is not None
        return self.coll.store(index, "text", create=not self.read_only)

    def _keyword_spec(self, payloads: Sequence[Mapping[str, Any]]) -> KeywordSpec | None:
        """The keyword leg of a new collection, weighed by the first write's average text length (None: the
        setting turns it off, or the texts hold no token)."""
        ks = self.settings.keyword
        if not ks.enabled:
            return None
        texts = [pl.get(self.text_key) for pl in payloads]
        avgdl = average_length([len(tokenize(t)) if isinstance(t, str) else 0 for t in texts])
        if avgdl <= 0:
            return None
        return KeywordSpec(field=self.text_key, k1=ks.k1, b=ks.b, avgdl=avgdl, built=now_iso())

    def _create(self, dim: int, fingerprint: str, payloads: Sequence[Mapping[str, Any]] = ()) -> None:
        model = self.settings.text_model if isinstance(self._embedder, EncoderEmbedder) else fingerprint
        now = now_iso()
        self.manifest = CollectionManifest(
            name=self.name,
            corpus=self.origin,
            corpus_fingerprint="",
            modality="text",
            vectors={
                "text": VectorSpace(encoder="text", model=model, fingerprint=fingerprint, dim=dim, metric=self.metric)
            },
            indexes=self.indexes,
            qdrant_mode=self.settings.qdrant.mode if QDRANT_INDEX in self.indexes else None,
            complete=True,
            created=now,
            updated=now,
            keyword=self._keyword_spec(payloads),
        )
        self.coll = Collection(self.settings, self.name, read_only=False, manifest=self.manifest, check_counts=False)
        self.coll.save()

    def search_store(self) -> VectorStore | None:
        """The store searches go through (None while a new collection has no points yet)."""
        with self._lock:
            self._check_open()
            return self._open(self.index) if self.manifest is not None else None

    # ---- documents ----
    def payload(self, text: str, metadata: Mapping[str, Any] | None) -> dict[str, Any]:
        """The stored payload of one document: its metadata plus its text under ``text_key``."""
        md = dict(metadata or {})
        if self.text_key in md:
            raise InvalidInputError(
                f"metadata key {self.text_key!r} would overwrite the document text stored under that key: rename it"
            )
        if not isinstance(text, str):
            raise InvalidInputError(f"document text must be a string, got {type(text).__name__}")
        md[self.text_key] = text
        return md

    def split(self, payload: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """Stored payload → (text, metadata)."""
        md = dict(payload)
        text = md.pop(self.text_key, "")
        return (text if isinstance(text, str) else str(text)), md

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]) -> list[str]:
        """Write points to every index of the collection (created on the first write). Returns the ids."""
        ids = list(ids)
        if not ids:
            return []
        vecs = np.asarray(vectors, dtype=np.float32)
        if vecs.ndim != 2 or len(vecs) != len(ids):
            raise InvalidInputError(f"{len(ids)} ids but embeddings of shape {vecs.shape}")
        with self._lock:
            self._check_open()
            pls = list(payloads)
            if self.manifest is None:  # (read_only needs an existing one)
                self._create(int(vecs.shape[1]), self.embedder.fingerprint, pls)
            self._each_index("upsert", lambda st: st.upsert(ids, vecs, pls))
        return ids

    def _each_index(self, op: str, fn: Callable[[VectorStore], Any]) -> dict[str, Any]:
        """Apply one write to every index, Qdrant first, then the FAISS kinds (``Collection.each_index``: a
        failure after some indexes were written is a StoreError naming them)."""
        if self.read_only:
            raise InvalidInputError(f"collection {self.name!r} was opened read-only: it cannot {op}")
        assert self.coll is not None
        return self.coll.each_index(op, fn, "text")

    def add_texts(
        self, ids: Sequence[str], texts: Sequence[str], metadatas: Sequence[Mapping[str, Any] | None]
    ) -> list[str]:
        """Embed texts with the collection's model and upsert them with their metadata."""
        payloads = [self.payload(t, m) for t, m in zip(texts, metadatas, strict=True)]
        if not ids:
            return []
        vecs = self.embedder.embed_documents(list(texts))
        return self.upsert(ids, vecs, payloads)

    def delete(self, ids: Sequence[str]) -> int:
        """Delete ids from every index; unknown ids are ignored. Returns how many the searched index held."""
        ids = list(ids)
        with self._lock:
            self._check_open()
            if self.manifest is None or not ids:
                return 0
            return int(self._each_index("delete", lambda st: st.delete(ids))[self.index])

    def fetch(self, ids: Sequence[str]) -> list[tuple[str, np.ndarray | None, dict[str, Any]]]:
        """(id, vector, payload) of each existing id, in the order given."""
        st = self.search_store()
        if st is None:
            return []
        with self._lock:
            got = st.fetch(list(ids))
        return [(i, got[i][0], got[i][1]) for i in dict.fromkeys(ids) if i in got]

    def search(
        self,
        vector: Any,
        k: int,
        filter: FilterSpec = None,
        params: SearchParams | None = None,
        text: str | None = None,
        mode: str = "dense",
        fusion: Fusion | None = None,
    ) -> list[Hit]:
        """The best points for one query, best first: nearest to ``vector`` (``dense``), by BM25 on ``text``
        (``keyword``: no vector needed) or both fused (``hybrid``; ``fusion``: the settings' by default)."""
        st = self.search_store()
        if st is None:
            return []
        with self._lock:
            if mode == "dense":
                return st.search(np.asarray(vector, dtype=np.float32), k, filter, params)[0]
            assert self.coll is not None
            vec = None if vector is None else np.asarray(vector, dtype=np.float32)
            return self.coll.search(self.index, "text", k, filter, params, vec, text, mode, fusion)

    def keyword_hits(self, text: str, k: int, filter: FilterSpec = None) -> list[Hit]:
        """The keyword leg alone, at most k deep (documents holding a query term, best first by BM25)."""
        if self.search_store() is None:
            return []
        assert self.coll is not None
        flt = None if filter is None else filter if isinstance(filter, Filter) else Filter.from_dict(filter)
        with self._lock:
            return self.coll.keyword.search(self.index, "text", text, k, flt or None)

    def require_keyword(self) -> None:
        """The error naming ``simlookup build-keyword NAME`` when the collection has no keyword leg."""
        if self.coll is not None:
            self.coll.keyword.spec()

    def matching_ids(self, filter: FilterSpec) -> list[str]:
        """Every id whose payload matches the filter (all ids for no filter), by an exact filtered search."""
        st = self.search_store()
        if st is None:
            return []
        with self._lock:
            if filter is None or (isinstance(filter, Filter | Mapping) and not filter):
                return sorted(st.ids())
            n = st.count()
            if n == 0:
                return []
            if n <= min(EXACT_LOOKUP_MAX, st.limits.max_k):  # one search, within the settings' cap on k
                probe = np.zeros(st.dim, dtype=np.float32)
                probe[0] = 1.0
                return [h.id for h in st.search(probe, n, filter, SearchParams(exact=True))[0]]
            flt = filter if isinstance(filter, Filter) else Filter.from_dict(filter)
            ids = sorted(st.ids())
            out: list[str] = []
            for i in range(0, len(ids), 1000):  # beyond a search's k: scan payloads with the reference evaluation
                got = st.fetch(ids[i : i + 1000])
                out += [pid for pid, (_, pl) in got.items() if flt.matches(pl)]
            return out

    def count(self) -> int:
        st = self.search_store()
        return st.count() if st is not None else 0

    def build(self) -> None:
        """Finish indexing in every index (train IVF/PQ, build Qdrant Edge HNSW) after a bulk load."""
        with self._lock:
            self._check_open()
            if self.read_only:
                raise InvalidInputError(f"collection {self.name!r} was opened read-only: it cannot build")
            if self.manifest is None:
                return
            for index in self.indexes:
                st = self._open(index)
                if st.count():
                    st.build()
            assert self.coll is not None
            self.coll.tune(only_stale=True)  # the tuned default query settings (recorded at the next flush)

    def flush(self) -> None:
        """Make every write durable in every index, and record the count in the collection manifest."""
        with self._lock:
            self._check_open()
            self._flush()

    def _flush(self) -> None:
        if self.coll is None or self.manifest is None or self.read_only:
            return
        self.coll.flush()
        opened = {i: st for i, _, st in self.coll.opened()}
        if self.index in opened:
            self.manifest.count = opened[self.index].count()
            self.manifest.updated = now_iso()
            self.coll.save()

    def close(self) -> None:
        """Flush and close every opened index. Idempotent."""
        with self._lock:
            if self._closed:
                return
            try:
                self._flush()
            finally:
                self._closed = True
                if self.coll is not None:
                    self.coll.close()

    def _check_open(self) -> None:
        if self._closed:
            from retrieval.errors import StoreClosedError

            raise StoreClosedError(f"collection {self.name!r} was closed")
