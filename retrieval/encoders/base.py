"""The encoder contract: ``Encoder`` (texts and queries) and ``ImageEncoder`` (CLIP: images too)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from retrieval.encoders.images import ImageInput
from retrieval.errors import InvalidInputError


@runtime_checkable
class Encoder(Protocol):
    """What every encoder does: texts (documents and queries) to float32, L2-normalised vectors of a fixed
    dimension, under a fingerprint that collections record. ``load_encoder(settings, "text")`` returns one."""

    @property
    def dim(self) -> int: ...

    @property
    def fingerprint(self) -> str: ...

    def encode_text(self, texts: list[str], batch_size: int | None = None) -> np.ndarray:
        """Documents: an (n, dim) array; may batch freely (a vector may depend on its batch within ~1e-6)."""
        ...

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        """Queries: an (n, dim) array whose row i equals ``encode_query(texts[i])``, whatever else is in the call."""
        ...

    def encode_query(self, text: str) -> np.ndarray:
        """One query: a (dim,) vector."""
        ...


@runtime_checkable
class ImageEncoder(Encoder, Protocol):
    """An encoder that also embeds images into its text space (CLIP): ``load_encoder(settings, "clip")``."""

    def encode_images(self, images: list[ImageInput], batch_size: int | None = None) -> np.ndarray:
        """Images (PIL images, paths or bytes) to an (n, dim) array; a bad item raises InvalidInputError naming it."""
        ...


def normalize(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation to float32; zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (x / norms).astype(np.float32, copy=False)


def check_texts(texts: list[str]) -> list[str]:
    """Refuse empty or whitespace-only texts with a clear error naming their position."""
    if isinstance(texts, str):
        raise InvalidInputError("encode_text takes a list of strings, not one string")
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
    if bad:
        raise InvalidInputError(f"empty or non-string text at position(s) {bad[:10]}")
    return list(texts)


def hash_files(paths: Iterable[Path], chunk: int = 1 << 20) -> str:
    """A short sha256 over the contents of weight files (sorted by name), for model fingerprints."""
    h = hashlib.sha256()
    for p in sorted(paths, key=lambda q: q.name):
        h.update(p.name.encode())
        with open(p, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
    return h.hexdigest()[:16]
