"""The retriever: encoder + store. Search a collection by text, by image or by vector.

from retrieval import Retriever, load_settings
r = Retriever(load_settings(), "stsb")
result = r.search_text("a man plays a flute", index="hnsw", k=5, filter={"genre": "main-captions"})

``Retriever.search`` is the one encode-and-search path: the CLI, the Python API and the REST service use it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from retrieval.collection import Collection, CollectionManifest, QueryKind, VectorSpace
from retrieval.collection_manifest import EXTERNAL
from retrieval.encoders import Encoder, ImageEncoder, load_encoder
from retrieval.errors import InvalidInputError
from retrieval.filters import Filter
from retrieval.hybrid import check_mode
from retrieval.keyword.fusion import Fusion
from retrieval.keyword.terms import query_terms
from retrieval.settings import SearchLimits, Settings
from retrieval.stores import Hit, SearchParams, VectorStore
from retrieval.stores.vector_checks import as_float32

__all__ = ["QueryKind", "Retriever", "SearchResult", "check_query"]


@dataclass
class SearchResult:
    """Hits of one query, with the time taken (encode + search) in milliseconds."""

    query: Any
    index: str
    took_ms: float
    hits: list[Hit]
    target: str = "text"
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # e.g. the collection is incomplete
    mode: str = "dense"  # dense | keyword | hybrid (retrieval.hybrid)

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``simlookup search --json`` (``warnings`` only when there are some)."""
        doc: dict[str, Any] = {
            "query": self.query,
            "index": self.index,
            "target": self.target,
            "took_ms": round(self.took_ms, 3),
            "hits": [h.to_dict() for h in self.hits],
        }
        if self.warnings:
            doc["warnings"] = list(self.warnings)
        if self.mode != "dense":
            doc["mode"] = self.mode
        return doc


def check_query(k: int, params: SearchParams | None, limits: SearchLimits) -> None:
    """Refuse k, ef, nprobe and re-rank factors above the configured caps (allocations scale with them)."""
    limits.check(k, params)


class Retriever:
    """Search one ingested collection through any of its indexes: the collection facade (stores, checks,
    limits, following writers) plus the encoders that turn queries into vectors. Both open lazily, once."""

    def __init__(
        self,
        settings: Settings,
        name: str,
        read_only: bool = True,
        encoders: Mapping[str, Encoder] | None = None,
    ) -> None:
        """``encoders``: already loaded encoders by kind ('text', 'clip'), used instead of loading the
        collection's own (tests, or a process that holds the model already); fingerprints are still checked."""
        self.settings = settings
        self.name = name
        self.read_only = read_only
        self.collection = Collection(settings, name, read_only=read_only)
        self._encoders: dict[str, Encoder] = dict(encoders or {})
        self._injected = frozenset(self._encoders)
        self._loaded_for: dict[str, str | None] = {}  # kind -> the model name it was loaded for
        self._lock = threading.Lock()

    @property
    def manifest(self) -> CollectionManifest:
        """The collection manifest, as of the last search (``refresh`` re-reads it after an ingest)."""
        return self.collection.manifest

    def refresh(self) -> bool:
        """Re-read the collection manifest when an ingest rewrote it since (see ``Collection.refresh``)."""
        return self.collection.refresh()

    def warnings(
        self, index: str | None = None, target: str = "text", params: SearchParams | None = None
    ) -> list[str]:
        """What a search should say beside its hits (an ingest running or killed midway; an index whose tuned
        default stays below its recall target)."""
        return self.collection.warnings(index, target, params)

    def store(self, index: str, target: str = "text") -> VectorStore:
        """The opened store of one index ('flat', 'ivf', 'ivfpq', 'hnsw', 'qdrant') and vector space."""
        return self.collection.store(index, target)

    def space(self, target: str) -> VectorSpace:
        """The collection's vector space ``target`` ('text', 'image' or 'caption'), or a clear error."""
        return self.collection.space(target)

    def encoder(self, kind: str) -> Encoder:
        """The text or CLIP encoder the collection was built with (loaded once, unless one was injected)."""
        with self._lock:
            models: dict[str, str] = {}
            for sp in self.manifest.vectors.values():  # an external space's --model encodes text queries
                models["text" if sp.encoder == EXTERNAL else sp.encoder] = sp.external_model or sp.model
            stale = kind in self._loaded_for and self._loaded_for[kind] != models.get(kind)
            if kind not in self._encoders or (stale and kind not in self._injected):
                # (stale: the collection was dropped and re-created with another model since the load)
                self._encoders[kind] = load_encoder(self.settings, kind, models.get(kind))
                self._loaded_for[kind] = models.get(kind)
            return self._encoders[kind]

    def matching_encoder(self, space: VectorSpace) -> Encoder:
        """The encoder of a vector space, refused when it is not the one the collection was embedded with (or,
        for vectors brought as they are, when no ``--model`` named the one that made them)."""
        if space.encoder == EXTERNAL and space.external_model is None:
            raise InvalidInputError(
                f"collection {self.name!r} holds vectors ingested as they were ({space.dim}-d, no model recorded): "
                "search it by vector (`simlookup search --vector ...`, Retriever.search_vector); to search it by "
                "text, re-ingest it with --model NAME, the sentence-transformers model that made the vectors"
            )
        enc = self.encoder("text" if space.encoder == EXTERNAL else space.encoder)
        if enc.fingerprint != space.fingerprint:
            raise InvalidInputError(
                f"collection {self.name!r} was embedded by {space.fingerprint}, but the query encoder is "
                f"{enc.fingerprint} (SIMLOOKUP_TEXT_MODEL / SIMLOOKUP_TEXT_QUANTIZE / CLIP settings differ): "
                "use the same settings, or re-ingest"
            )
        return enc

    def image_encoder(self, space: VectorSpace) -> ImageEncoder:
        """The CLIP encoder of a vector space, for image queries: refused for a text space, or for an injected
        encoder that does not encode images."""
        if space.encoder != "clip":
            raise InvalidInputError(f"collection {self.name!r} is a text collection: image queries need CLIP vectors")
        enc = self.matching_encoder(space)
        if not isinstance(enc, ImageEncoder):
            raise InvalidInputError(
                f"the {space.encoder!r} encoder given to the Retriever ({type(enc).__name__}) does not encode images: "
                "pass an ImageEncoder (encode_images), such as load_encoder(settings, 'clip')"
            )
        return enc

    def default_target(self, kind: QueryKind = "text") -> str:
        """The space a query searches when none is named: 'text' for text corpora, 'image' for image corpora."""
        return self.collection.default_target(kind)

    # ---- search ----
    def encode_query(self, query: Any, kind: QueryKind = "text", target: str | None = None) -> np.ndarray:
        """One query (text, or an image as PIL image, path or bytes) → a (dim,) vector of ``target``'s space."""
        space = self.space(target or self.default_target(kind))
        if kind == "text":
            if not isinstance(query, str) or not query.strip():
                raise InvalidInputError("the query text is empty")
            return self.matching_encoder(space).encode_query(query)
        if kind != "image":
            raise InvalidInputError(f"unknown query kind {kind!r}: use 'text' or 'image'")
        return self.image_encoder(space).encode_images([query])[0]

    def search(
        self,
        query: Any,
        kind: QueryKind = "text",
        index: str = "flat",
        k: int = 10,
        filter: Filter | dict[str, Any] | None = None,
        params: SearchParams | None = None,
        target: str | None = None,
        mode: str = "dense",
        fusion: Fusion | None = None,
    ) -> SearchResult:
        """Encode one query and search one index; ``timings`` holds encode_ms and search_ms.

        ``mode``: ``dense`` (the vectors), ``keyword`` (BM25 on the collection's keyword leg, text queries only: no
        encoding) or ``hybrid`` (both legs, fused by ``fusion``: RRF by default). The store opens, the encoder
        loads and the limits are checked before the clock starts.
        """
        target = target or self.default_target(kind)
        check_query(k, params, self.settings.limits)
        if check_mode(mode) != "dense":
            return self._search_text_modes(query, kind, index, k, filter, params, target, mode, fusion)
        store = self.store(index, target)
        space = self.space(target)
        if kind == "text" or space.encoder == "clip":  # a cold CLI's model load is not query time
            self.matching_encoder(space)
        t0 = time.perf_counter()
        vec = self.encode_query(query, kind, target)
        t1 = time.perf_counter()
        hits = store.search(vec, k, filter, params)[0]
        t2 = time.perf_counter()
        label = query if kind == "text" else (str(query) if not hasattr(query, "size") else "<image>")
        return SearchResult(
            label,
            index,
            (t2 - t0) * 1e3,
            hits,
            target,
            {"encode_ms": (t1 - t0) * 1e3, "search_ms": (t2 - t1) * 1e3},
            self.warnings(index, target, params),
        )

    def _search_text_modes(
        self,
        query: Any,
        kind: QueryKind,
        index: str,
        k: int,
        filter: Filter | dict[str, Any] | None,
        params: SearchParams | None,
        target: str,
        mode: str,
        fusion: Fusion | None,
    ) -> SearchResult:
        """A keyword or hybrid search (``search``)."""
        if kind != "text":
            raise InvalidInputError(f"a {mode} search takes a text query (image queries search by vector only)")
        if not isinstance(query, str) or not query.strip():
            raise InvalidInputError("the query text is empty")
        self.collection.keyword.spec()  # a collection without the leg: the error naming build-keyword
        self.store(index, target)
        space = self.space(target)
        if mode == "hybrid":
            self.matching_encoder(space)  # a cold CLI's model load is not query time
        t0 = time.perf_counter()
        vec = self.encode_query(query, kind, target) if mode == "hybrid" else None
        t1 = time.perf_counter()
        hits = self.collection.search(index, target, k, filter, params, vec, query, mode, fusion)
        t2 = time.perf_counter()
        timings = {"search_ms": (t2 - t1) * 1e3}
        if mode == "hybrid":
            timings["encode_ms"] = (t1 - t0) * 1e3
        notes = self.warnings(index, target, params)
        if not len(query_terms(query)[0]):
            notes.append("the query has no keyword tokens (letters or digits): the keyword leg found nothing")
        return SearchResult(query, index, (t2 - t0) * 1e3, hits, target, timings, notes, mode)

    def search_vector(
        self,
        vector: np.ndarray,
        index: str = "flat",
        k: int = 10,
        filter: Filter | dict[str, Any] | None = None,
        params: SearchParams | None = None,
        target: str = "text",
    ) -> SearchResult:
        """Nearest neighbours of a raw vector in one index."""
        check_query(k, params, self.settings.limits)
        store = self.store(index, target)
        t0 = time.perf_counter()
        hits = store.search(as_float32(vector), k, filter, params)[0]
        ms = (time.perf_counter() - t0) * 1e3
        notes = self.warnings(index, target, params)
        return SearchResult("<vector>", index, ms, hits, target, {"search_ms": ms}, notes)

    def search_text(
        self,
        text: str,
        index: str = "flat",
        k: int = 10,
        filter: Filter | dict[str, Any] | None = None,
        params: SearchParams | None = None,
        target: str | None = None,
        mode: str = "dense",
        fusion: Fusion | None = None,
    ) -> SearchResult:
        """Text query: encoded by the text model (text corpora) or the CLIP text tower (image corpora) for
        ``mode="dense"``; ``"keyword"``: BM25 on the collection's keyword leg; ``"hybrid"``: both, fused."""
        return self.search(text, "text", index, k, filter, params, target, mode, fusion)

    def search_image(
        self,
        image: Any,
        index: str = "flat",
        k: int = 10,
        filter: Filter | dict[str, Any] | None = None,
        params: SearchParams | None = None,
        target: str = "image",
    ) -> SearchResult:
        """Image query (PIL image, path or bytes) through the CLIP image tower; target image or caption."""
        return self.search(image, "image", index, k, filter, params, target)

    def close(self) -> None:
        """Close every opened store."""
        self.collection.close()

    def __enter__(self) -> Retriever:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
