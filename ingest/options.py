"""What ``simlookup ingest`` is asked to do: its options, checked once (the job and the Ray engine read them)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from retrieval.collection_manifest import INGEST_FLAGS
from retrieval.errors import InvalidInputError
from retrieval.names import check_name
from retrieval.stores import DEFAULT_KINDS, FAISS_KINDS

QDRANT_CHOICES = ("edge", "server", "local", "none")


@dataclass
class IngestOptions:
    """What to ingest and where (the flags of ``simlookup ingest``)."""

    corpus: str
    name: str
    indexes: list[str] = field(default_factory=lambda: list(DEFAULT_KINDS))  # the SQ8 tiers when asked
    qdrant: str | None = None  # None: the mode from settings; "none": no Qdrant
    limit: int | None = None
    text_column: str = "text"
    id_column: str = "id"
    image_column: str | None = None
    shard_size: int = 1024
    progress: bool = True
    append: bool = False  # False: the collection becomes equal to the source (rows gone from it are deleted)
    guard: bool = False  # True (the CLI without --yes): refuse an ingest that would remove points or drop indexes
    dry_run: bool = False  # True: read the source, work out the plan, write nothing
    embed_only: bool = False  # True: no index at all, only the embedding cache is filled (the benchmarks' use)

    # vectors a user brought (a .npy corpus, or --vector-column): no encoder runs
    vector_column: str | None = None
    payload_column: str | None = None  # one JSON object (text or struct) per row: the payload
    model: str | None = None  # the sentence-transformers model that made the vectors: text queries then work
    metric: str | None = None  # cosine, dot or l2 (None: the source's recorded metric, else cosine)
    dim: int | None = None  # keep vectors of this length, reject the others (None: the column's one length)

    def recorded(self) -> dict[str, Any]:
        """The options a resume must repeat (``retrieval.collection_manifest.INGEST_FLAGS``) that were given away
        from their defaults: the collection manifest's ``ingest``."""
        defaults = {f.name: f.default for f in fields(self)}
        return {k: getattr(self, k) for k in INGEST_FLAGS if getattr(self, k) != defaults.get(k)}

    @property
    def vectors(self) -> bool:
        """Whether the rows carry their own vectors (``--vector-column``, or a ``.npy`` file)."""
        return self.vector_column is not None or self.corpus.lower().endswith(".npy")

    def __post_init__(self) -> None:
        check_name(self.name, "collection name")
        unknown = [i for i in self.indexes if i not in FAISS_KINDS]
        if unknown:
            raise InvalidInputError(f"unknown FAISS index kind(s) {unknown}: use {list(FAISS_KINDS)}")
        if self.qdrant is not None and self.qdrant not in QDRANT_CHOICES:
            raise InvalidInputError(f"--qdrant {self.qdrant!r}: use one of {list(QDRANT_CHOICES)}")
        if not self.indexes and self.qdrant == "none" and not self.embed_only:
            raise InvalidInputError(
                "no index to write: --index '' and --qdrant none leave the ingest nowhere to put the points; name a "
                "FAISS kind (--index flat) or a Qdrant engine (--qdrant edge)"
            )
        if self.limit is not None and self.limit < 1:
            raise InvalidInputError("--limit must be ≥ 1")
        if self.shard_size < 1:
            raise InvalidInputError("shard size must be ≥ 1")
        byo = {"--payload-column": self.payload_column, "--model": self.model, "--metric": self.metric,
               "--dim": self.dim}
        given = [flag for flag, v in byo.items() if v is not None]
        if given and not self.vectors:
            raise InvalidInputError(
                f"{', '.join(given)} apply to vectors you bring: add --vector-column COL (or ingest a .npy file)"
            )
        if self.metric is not None:
            from retrieval.metric import Metric

            self.metric = Metric.parse(self.metric).value
        if self.dim is not None and self.dim < 1:
            raise InvalidInputError("--dim must be ≥ 1")
        if self.model == "external":
            raise InvalidInputError("--model external is reserved: name the sentence-transformers model, or omit it")
