"""The end-to-end int8 row searches documents encoded by the int8 tier, never fp32 documents."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pytest

from benchmarks import e2e
from benchmarks.datasets import Dataset


class FakeEncoder:
    """Deterministic text vectors; each tier its own space; logs what it encoded."""

    def __init__(self, tier: str, dim: int = 16) -> None:
        self.tier = tier
        self.dim = dim
        self.calls: list[list[str]] = []

    def encode_text(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        self.calls.append(list(texts))
        out = np.stack(
            [
                np.frombuffer(hashlib.sha256((self.tier + t).encode()).digest()[: self.dim], dtype=np.uint8)
                for t in texts
            ]
        ).astype(np.float32)
        return out + 1.0

    def encode_query(self, text: str) -> np.ndarray:
        return self.encode_text([text])[0]


def test_int8_row_encodes_documents_with_int8(monkeypatch: pytest.MonkeyPatch) -> None:
    fp32, int8 = FakeEncoder("fp32"), FakeEncoder("int8")
    monkeypatch.setattr(e2e, "_encoder", lambda settings, quantize=None: int8 if quantize == "int8" else fp32)
    monkeypatch.setattr(e2e, "encoder_variants", lambda enc, texts: {})
    base = [f"document {i}" for i in range(300)]
    xb = fp32.encode_text(base)
    ds = Dataset("t", xb, xb[:5], "cosine", [f"d{i}" for i in range(300)], base_texts=base, query_texts=base[:5])
    fp32.calls.clear()
    from retrieval.settings import Settings

    out: dict[str, Any] = e2e.end_to_end(Settings(), ds, quick=True, log=lambda m: None)
    assert out["stores"]["hnsw + int8 encoder"]["documents"] == "int8 tier"
    assert base in int8.calls  # the documents went through the int8 encoder
    assert base not in fp32.calls  # the fp32 rows use the fp32 document vectors given
