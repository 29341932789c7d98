"""What a text collection needs from an embedding model: vectors for documents and queries, and a fingerprint."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from retrieval.encoders import Encoder


class Embedder(Protocol):
    """An embedding model as the adapters see it (the collection's own encoder, or a framework's model)."""

    @property
    def fingerprint(self) -> str: ...

    def embed_documents(self, texts: list[str]) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...


class EncoderEmbedder:
    """simlookup's own text encoder (the one a collection was ingested with)."""

    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder

    @property
    def fingerprint(self) -> str:
        return self.encoder.fingerprint

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.encoder.encode_text(list(texts)), dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return np.asarray(self.encoder.encode_query(text), dtype=np.float32)


class FunctionEmbedder:
    """A framework's embedding model, given as two functions and a fingerprint naming the model."""

    def __init__(
        self,
        fingerprint: str,
        documents: Callable[[list[str]], Any],
        query: Callable[[str], Any],
    ) -> None:
        self._fingerprint = fingerprint
        self._documents = documents
        self._query = query

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.asarray(self._documents(list(texts)), dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return np.asarray(self._query(text), dtype=np.float32)


def external_fingerprint(model: object) -> str:
    """``external:<module>.<class>[:<model name>]``: what a collection records for a framework's embedding model."""
    cls = type(model)
    name = f"external:{cls.__module__}.{cls.__qualname__}"
    for attr in ("model_name", "model"):
        v = getattr(model, attr, None)
        if isinstance(v, str) and v:
            return f"{name}:{v}"
    return name
