"""The encoder contract shared by the text and CLIP encoders."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from retrieval.errors import InvalidInputError


@runtime_checkable
class Encoder(Protocol):
    """Turns texts into float32, L2-normalised vectors of a fixed dimension."""

    @property
    def dim(self) -> int: ...

    @property
    def fingerprint(self) -> str: ...

    def encode_text(self, texts: list[str], batch_size: int | None = None) -> np.ndarray: ...


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
