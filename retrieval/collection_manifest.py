"""The collection manifest: what an ingest wrote under a name, so searches pick the right encoder and stores.

``<data_dir>/collections/<name>.json`` records the corpus, the modality, each vector space (its encoder,
fingerprint, dim, metric) and the indexes built for it. A vector space is named after the dataset column
it embeds: ``text`` (text model), ``image`` and ``caption`` (the CLIP towers). Vectors a user brought
(``simlookup ingest FILE --vector-column COL``) form a ``text`` space whose encoder is ``external``: its model is
the ``--model`` that made them (text queries then work) or ``external`` (vector queries only).
"""

from __future__ import annotations

import json
import shlex
import uuid
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, model_validator

from retrieval.errors import CorruptManifestError, StoreNotFoundError
from retrieval.keyword.spec import KeywordSpec
from retrieval.names import check_name
from retrieval.stores.faiss_params import FAISS_KINDS
from retrieval.stores.manifest import FileSig, Pin, read_pinned, write_json

VectorKind = Literal["text", "image", "caption"]
EncoderKind = Literal["text", "clip", "external"]
# the encoder kind of vectors a user brought, and their model when no --model named the one that made them
EXTERNAL: Literal["external"] = "external"
ENCODER_OF: dict[str, EncoderKind] = {"text": "text", "image": "clip", "caption": "clip"}


# the ``simlookup ingest`` options, besides the corpus, the name, --index and --qdrant (the manifest's indexes and
# qdrant_mode), that change what an ingest writes: the last ingest records those it was given
# (``CollectionManifest.ingest``, option → value), so that the command to resume or repeat it is printed whole
INGEST_FLAGS: dict[str, str] = {
    "limit": "--limit",
    "append": "--append",
    "text_column": "--text-column",
    "id_column": "--id-column",
    "image_column": "--image-column",
    "shard_size": "--shard-size",
    "vector_column": "--vector-column",
    "payload_column": "--payload-column",
    "model": "--model",
    "metric": "--metric",
    "dim": "--dim",
}


def new_uid() -> str:
    """A fresh collection identity (``CollectionManifest.uid``)."""
    return uuid.uuid4().hex


class VectorSpace(BaseModel):
    """One embedded space of a collection: the column it embeds (its name) and which encoder made it."""

    name: VectorKind = "text"
    encoder: EncoderKind
    model: str
    fingerprint: str
    dim: int
    metric: str = "cosine"

    @property
    def column(self) -> str:
        """The dataset column this space embeds (corpora normalise it to the space's name)."""
        return self.name

    @property
    def external_model(self) -> str | None:
        """The model that encodes text queries into an external space (None: it answers vector queries only)."""
        return None if self.encoder != EXTERNAL or self.model == EXTERNAL else self.model


def space_names(modality: str, has_captions: bool) -> list[VectorKind]:
    """The vector spaces of a corpus: 'text' for text corpora; 'image' (+ 'caption') for image corpora."""
    if modality == "text":
        return ["text"]
    return ["image", "caption"] if has_captions else ["image"]


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
    # space -> index -> the tuned operating point (retrieval.tuning.OperatingPoint as a dict)
    tuning: dict[str, dict[str, dict[str, Any]]] = Field(default_factory=dict)
    # the keyword leg (BM25 on the payload's text: retrieval.keyword); None: none built (`simlookup build-keyword`)
    keyword: KeywordSpec | None = None
    created: str = ""
    updated: str = ""
    # the last ingest's options of ``INGEST_FLAGS`` that it was given away from their defaults (see ingest_command)
    ingest: dict[str, Any] = Field(default_factory=dict)
    # this collection's identity, given by its first save (``save_collection``) and kept by every re-ingest; a
    # drop and a new ingest under the same name give another: a reader that finds another one behind the name
    # re-opens its stores instead of answering from the dropped ones. Read from an older manifest without one:
    # derived from its creation stamp.
    uid: str = ""

    @model_validator(mode="before")
    @classmethod
    def _space_names(cls, data: Any) -> Any:
        # manifests written before spaces carried their name: the key is the name
        if isinstance(data, dict) and isinstance(data.get("vectors"), dict):
            data = {
                **data,
                "vectors": {k: ({"name": k, **v} if isinstance(v, dict) else v) for k, v in data["vectors"].items()},
            }
        return data

    def store_name(self, vector: str) -> str:
        """FAISS store name of one vector space (the plain name for text corpora)."""
        return store_name(self.name, self.modality, vector)


def ingest_command(m: CollectionManifest) -> str:
    """The ``simlookup ingest`` command that repeats the last ingest of a collection as it was asked: its corpus,
    its indexes (``--index``, ``--qdrant``) and the options it recorded (``INGEST_FLAGS``), so that running it
    resumes an interrupted ingest (or repairs one) without adding, dropping or pruning anything else."""
    faiss = [i for i in m.indexes if i in FAISS_KINDS]
    parts = ["simlookup", "ingest", m.corpus, "--name", m.name, "--index", ",".join(faiss)]
    parts += ["--qdrant", m.qdrant_mode if "qdrant" in m.indexes and m.qdrant_mode else "none"]
    for key, flag in INGEST_FLAGS.items():
        v = m.ingest.get(key)
        if v is None or v is False:
            continue
        parts += [flag] if v is True else [flag, str(v)]
    return shlex.join(parts)


def store_name(name: str, modality: str, vector: str) -> str:
    """FAISS store name of one vector space of a collection."""
    return name if modality == "text" else f"{name}.{vector}"


def manifest_path(data_dir: Path, name: str) -> Path:
    """Where the manifest of a collection lives."""
    return data_dir / "collections" / f"{check_name(name, 'collection name')}.json"


def _read(p: Path, name: str, pin: Pin | None = None) -> CollectionManifest:
    return _read_sig(p, name, pin)[0]


def _read_sig(p: Path, name: str, pin: Pin | None = None) -> tuple[CollectionManifest, FileSig]:
    try:
        raw, sig, got = read_pinned(p)
        if pin is not None:
            pin.swap(got)
        else:
            got.close()
        m = CollectionManifest.model_validate(json.loads(raw.decode("utf-8")))
        if not m.uid:
            m.uid = f"created:{m.created}"
        return m, sig
    except (OSError, UnicodeDecodeError, ValueError, ValidationError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CorruptManifestError(
            f"collection manifest {p} is unreadable ({type(exc).__name__}: {first}); repair it by re-running the "
            f"ingest that created it (`simlookup ingest SOURCE --name {name}`), or drop the collection and its files "
            f"(`simlookup drop {name} --yes`)"
        ) from None


def load_collection(data_dir: Path, name: str) -> CollectionManifest:
    """Read a collection manifest, or say how to create it (or repair it, when it is corrupt)."""
    p = manifest_path(data_dir, name)
    if not p.exists():
        raise StoreNotFoundError(
            f"no collection named {name!r} in {data_dir}: run `simlookup ingest CORPUS --name {name}` first"
        )
    return _read(p, name)


def load_collection_pinned(data_dir: Path, name: str, pin: Pin) -> tuple[CollectionManifest, FileSig]:
    """``load_collection``, with the signature of the file read, held by ``pin`` (readers that follow writers:
    see ``retrieval.stores.manifest.Pin``)."""
    p = manifest_path(data_dir, name)
    if not p.exists():
        raise StoreNotFoundError(
            f"no collection named {name!r} in {data_dir}: run `simlookup ingest CORPUS --name {name}` first"
        )
    return _read_sig(p, name, pin)


def save_collection(data_dir: Path, manifest: CollectionManifest) -> None:
    """Write a collection manifest atomically (a new collection's first save gives it its ``uid``)."""
    if not manifest.uid:
        manifest.uid = new_uid()
    p = manifest_path(data_dir, manifest.name)
    p.parent.mkdir(parents=True, exist_ok=True)
    write_json(p, manifest.model_dump(mode="json"))


def scan_collections(data_dir: Path) -> tuple[list[CollectionManifest], dict[str, str]]:
    """Every readable collection manifest, and the unreadable ones (name → the error that names the fix)."""
    d = data_dir / "collections"
    good: list[CollectionManifest] = []
    broken: dict[str, str] = {}
    if not d.exists():
        return good, broken
    for p in sorted(d.glob("*.json")):
        try:
            good.append(_read(p, p.stem))
        except CorruptManifestError as exc:
            broken[p.stem] = str(exc)
    return good, broken


def list_collections(data_dir: Path) -> list[CollectionManifest]:
    """Every readable collection manifest (see ``scan_collections`` for the unreadable ones)."""
    return scan_collections(data_dir)[0]
