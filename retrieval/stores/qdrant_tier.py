"""A Qdrant collection's memory tier: its quantization and whether its original vectors and HNSW graph are on disk.

The tier is fixed per collection and recorded where the collection records itself (Edge: ``simlookup.json``;
qdrant-client: the collection's metadata), so that every reader opens it with the config it was built with,
whatever its own settings say. ``SIMLOOKUP_QDRANT__QUANTIZATION`` / ``__ON_DISK`` left unset mean "as recorded"
(none and in RAM for a new collection); a writer that sets them to something else changes the tier at its next
``build()`` (``QdrantStore.build``), where the engine can (Edge cannot drop a quantization: refused when opened).

A quantized collection is searched on its quantized vectors: k × oversampling candidates, rescored by the
original vectors (``QuantSearch``); an exact search ignores the quantization.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from retrieval.errors import ConfigError
from retrieval.settings import QdrantSettings

QUANTIZATIONS = ("none", "scalar", "binary", "product")
# the oversampling of a search that sets none on a collection not tuned (auto-tune measures its own): what reached
# recall@10 0.95 on 4,000 clustered 384-d vectors (binary: 1-bit codes, 8-bit queries)
DEFAULT_OVERSAMPLING = {"scalar": 2.0, "product": 4.0, "binary": 8.0}


@dataclass(frozen=True)
class Tier:
    """quantization: none | scalar (int8) | binary (1 bit per dimension) | product (PQ, 16× compression);
    on_disk: the original vectors and the HNSW graph memory-mapped and read on demand (the quantized vectors
    stay in RAM)."""

    quantization: str = "none"
    on_disk: bool = False

    @property
    def quantized(self) -> bool:
        return self.quantization != "none"

    def to_meta(self) -> dict[str, Any]:
        return {"quantization": self.quantization, "on_disk": self.on_disk}

    @classmethod
    def from_meta(cls, meta: Any) -> Tier:
        """The tier a manifest records (none recorded: a collection made before tiers, in RAM, unquantized)."""
        if not isinstance(meta, dict):
            return cls()
        q = str(meta.get("quantization") or "none")
        return cls(q if q in QUANTIZATIONS else "none", bool(meta.get("on_disk", False)))

    def wanted(self, settings: QdrantSettings) -> Tier:
        """This tier with what the settings set explicitly (unset: as it is)."""
        return Tier(
            settings.quantization if settings.quantization is not None else self.quantization,
            settings.on_disk if settings.on_disk is not None else self.on_disk,
        )

    def oversampling(self, settings: QdrantSettings) -> float:
        """The oversampling of a search that sets none: the settings', else this quantization's default."""
        return settings.oversampling or DEFAULT_OVERSAMPLING.get(self.quantization, 1.0)

    def describe(self) -> str:
        q = "no quantization" if not self.quantized else f"{self.quantization} quantization"
        return f"{q}, vectors and graph {'on disk' if self.on_disk else 'in RAM'}"


@dataclass(frozen=True)
class QuantSearch:
    """How one search uses the quantized vectors: k × oversampling candidates, rescored by the originals."""

    oversampling: float
    rescore: bool = True


def check_change(old: Tier, new: Tier, collection: str, can_drop_quantization: bool, label: str) -> None:
    """Refuse (ConfigError) a tier change the engine cannot make on an existing collection."""
    if old.quantized and not new.quantized and not can_drop_quantization:
        raise ConfigError(
            f"{label} collection {collection!r} was built with {old.quantization} quantization and {label} cannot "
            f"remove it from an existing collection (SIMLOOKUP_QDRANT__QUANTIZATION=none): unset the variable to "
            "keep it, or drop the collection and ingest it again"
        )
