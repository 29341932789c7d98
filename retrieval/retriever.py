"""The retriever: encoder + store. Search a collection by text, by image or by vector.

from retrieval import Retriever, load_settings
r = Retriever(load_settings(), "stsb")
result = r.search_text("a man plays a flute", index="hnsw", k=5, filter={"genre": "main-captions"})
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from retrieval.collection import CollectionManifest, load_collection
from retrieval.errors import InvalidInputError, ModelNotFoundError
from retrieval.filters import Filter
from retrieval.settings import Settings
from retrieval.stores import INDEX_NAMES, QDRANT_INDEX, Hit, SearchParams, VectorStore, open_store


@dataclass
class SearchResult:
    """Hits of one query, with the time taken (encode + search) in milliseconds."""

    query: Any
    index: str
    took_ms: float
    hits: list[Hit]
    target: str = "text"
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``simlookup search --json``."""
        return {
            "query": self.query,
            "index": self.index,
            "target": self.target,
            "took_ms": round(self.took_ms, 3),
            "hits": [h.to_dict() for h in self.hits],
        }


class Retriever:
    """Search one ingested collection through any of its indexes. Stores and encoders open lazily, once."""

    def __init__(self, settings: Settings, name: str, read_only: bool = True) -> None:
        self.settings = settings
        self.name = name
        self.manifest: CollectionManifest = load_collection(settings.data_dir, name)
        self.read_only = read_only
        self._stores: dict[tuple[str, str], VectorStore] = {}
        self._encoders: dict[str, Any] = {}
        self._lock = threading.Lock()

    # ---- resources ----
    def store(self, index: str, target: str = "text") -> VectorStore:
        """The opened store of one index ('flat', 'ivf', 'ivfpq', 'hnsw', 'qdrant') and vector space."""
        if index not in INDEX_NAMES:
            raise InvalidInputError(f"unknown index {index!r}: use one of {list(INDEX_NAMES)}")
        if index not in self.manifest.indexes:
            raise InvalidInputError(
                f"collection {self.name!r} has no {index!r} index (it has {self.manifest.indexes}); "
                f"re-ingest with --index {index}"
            )
        space = self._space(target)
        key = (index, target)
        with self._lock:
            if key not in self._stores:
                if index == QDRANT_INDEX:
                    vname = "" if self.manifest.modality == "text" else target
                    st = open_store(self.settings, self.name, index, create=False, vector_name=vname)
                else:
                    st = open_store(
                        self.settings, self.manifest.store_name(target), index, create=False, read_only=self.read_only
                    )
                if st.fingerprint and st.fingerprint != space.fingerprint:
                    st.close()
                    raise InvalidInputError(
                        f"index {index} of {self.name!r} was built by {st.fingerprint}, "
                        f"the collection says {space.fingerprint}"
                    )
                self._stores[key] = st
            return self._stores[key]

    def _space(self, target: str) -> Any:
        if target not in self.manifest.vectors:
            raise InvalidInputError(
                f"collection {self.name!r} has no {target!r} vectors (it has {sorted(self.manifest.vectors)})"
            )
        return self.manifest.vectors[target]

    def encoder(self, kind: str) -> Any:
        """The text or CLIP encoder the collection was built with (loaded once)."""
        with self._lock:
            if kind not in self._encoders:
                self._encoders[kind] = self._load_encoder(kind)
            return self._encoders[kind]

    def matching_encoder(self, space: Any) -> Any:
        """The encoder of a vector space, refused when it is not the one the collection was embedded with."""
        enc = self.encoder(space.encoder)
        if enc.fingerprint != space.fingerprint:
            raise InvalidInputError(
                f"collection {self.name!r} was embedded by {space.fingerprint}, but the query encoder is "
                f"{enc.fingerprint} (SIMLOOKUP_TEXT_MODEL / SIMLOOKUP_TEXT_QUANTIZE / CLIP settings differ): "
                "use the same settings, or re-ingest"
            )
        return enc

    def _load_encoder(self, kind: str) -> Any:
        s = self.settings
        if kind == "text":
            from retrieval.encoders.text import TextEncoder

            model = self.manifest.vectors["text"].model if "text" in self.manifest.vectors else s.text_model
            return TextEncoder(
                model,
                device=s.device,
                batch_size=s.batch_size,
                cache_dir=s.data_dir / "models",
                quantize=s.text_quantize,
            )
        if kind == "clip":
            from retrieval.encoders.clip import ClipEncoder

            return ClipEncoder(
                s.clip.arch,
                s.clip.pretrained,
                device=s.device,
                batch_size=s.batch_size,
                max_image_pixels=s.clip.max_image_pixels,
            )
        raise ModelNotFoundError(f"unknown encoder {kind!r}")

    # ---- search ----
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
        store = self.store(index, target)
        t0 = time.perf_counter()
        hits = store.search(np.asarray(vector, dtype=np.float32), k, filter, params)[0]
        ms = (time.perf_counter() - t0) * 1e3
        return SearchResult("<vector>", index, ms, hits, target, {"search_ms": ms})

    def search_text(
        self,
        text: str,
        index: str = "flat",
        k: int = 10,
        filter: Filter | dict[str, Any] | None = None,
        params: SearchParams | None = None,
        target: str | None = None,
    ) -> SearchResult:
        """Text query: encoded by the text model (text corpora) or the CLIP text tower (image corpora)."""
        if not isinstance(text, str) or not text.strip():
            raise InvalidInputError("the query text is empty")
        target = target or ("text" if self.manifest.modality == "text" else "image")
        space = self._space(target)
        enc = self.matching_encoder(space)
        encode = enc.encode_query if hasattr(enc, "encode_query") else (lambda t: enc.encode_text([t])[0])
        return self._encode_and_search(text, lambda: encode(text), index, k, filter, params, target)

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
        space = self._space(target)
        if space.encoder != "clip":
            raise InvalidInputError(f"collection {self.name!r} is a text collection: image queries need CLIP vectors")
        enc = self.matching_encoder(space)
        label = str(image) if not hasattr(image, "size") else "<image>"
        return self._encode_and_search(label, lambda: enc.encode_image([image])[0], index, k, filter, params, target)

    def _encode_and_search(
        self,
        label: Any,
        encode: Any,
        index: str,
        k: int,
        filter: Filter | dict[str, Any] | None,
        params: SearchParams | None,
        target: str,
    ) -> SearchResult:
        """Encode the query, search one store, and time both stages (the store opens before the clock starts)."""
        store = self.store(index, target)
        t0 = time.perf_counter()
        vec = encode()
        t1 = time.perf_counter()
        hits = store.search(vec, k, filter, params)[0]
        t2 = time.perf_counter()
        return SearchResult(
            label, index, (t2 - t0) * 1e3, hits, target, {"encode_ms": (t1 - t0) * 1e3, "search_ms": (t2 - t1) * 1e3}
        )

    def close(self) -> None:
        """Close every opened store."""
        with self._lock:
            for st in self._stores.values():
                st.close()
            self._stores.clear()

    def __enter__(self) -> Retriever:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
