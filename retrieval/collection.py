"""The collection manifest: what an ingest wrote under a name, so searches pick the right encoder and stores.

``<data_dir>/collections/<name>.json`` records the corpus, the modality, each vector space (its encoder,
fingerprint, dim, metric) and the indexes built for it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from retrieval.errors import StoreNotFoundError
from retrieval.names import check_name
from retrieval.stores.manifest import write_json

VectorKind = Literal["text", "image", "caption"]


class VectorSpace(BaseModel):
    """One embedded space of a collection: which encoder made it."""

    encoder: Literal["text", "clip"]
    model: str
    fingerprint: str
    dim: int
    metric: str = "cosine"


class CollectionManifest(BaseModel):
    """What ``simlookup ingest`` wrote under one name."""

    format_version: int = 1
    name: str
    corpus: str
    corpus_fingerprint: str
    modality: Literal["text", "image"]
    vectors: dict[str, VectorSpace]
    indexes: list[str] = Field(default_factory=list)
    qdrant_mode: str | None = None
    payload_indexes: dict[str, str] = Field(default_factory=dict)
    count: int = 0
    rejected: int = 0
    complete: bool = False
    created: str = ""
    updated: str = ""

    def store_name(self, vector: str) -> str:
        """FAISS store name of one vector space (the plain name for text corpora)."""
        return store_name(self.name, self.modality, vector)


def store_name(name: str, modality: str, vector: str) -> str:
    return name if modality == "text" else f"{name}.{vector}"


def manifest_path(data_dir: Path, name: str) -> Path:
    return data_dir / "collections" / f"{check_name(name, 'collection name')}.json"


def load_collection(data_dir: Path, name: str) -> CollectionManifest:
    """Read a collection manifest, or say how to create it."""
    p = manifest_path(data_dir, name)
    if not p.exists():
        raise StoreNotFoundError(
            f"no collection named {name!r} in {data_dir}: run `simlookup ingest CORPUS --name {name}` first"
        )
    return CollectionManifest.model_validate(json.loads(p.read_text()))


def save_collection(data_dir: Path, manifest: CollectionManifest) -> None:
    p = manifest_path(data_dir, manifest.name)
    p.parent.mkdir(parents=True, exist_ok=True)
    write_json(p, manifest.model_dump(mode="json"))


def list_collections(data_dir: Path) -> list[CollectionManifest]:
    d = data_dir / "collections"
    if not d.exists():
        return []
    return [CollectionManifest.model_validate(json.loads(p.read_text())) for p in sorted(d.glob("*.json"))]
