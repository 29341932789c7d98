"""What ``simlookup ingest`` is asked to do: its options, checked once (the job and the Ray engine read them)."""

from __future__ import annotations

from dataclasses import dataclass, field

from retrieval.errors import InvalidInputError
from retrieval.names import check_name
from retrieval.stores import FAISS_KINDS

QDRANT_CHOICES = ("edge", "server", "local", "none")


@dataclass
class IngestOptions:
    """What to ingest and where (the flags of ``simlookup ingest``)."""

    corpus: str
    name: str
    indexes: list[str] = field(default_factory=lambda: list(FAISS_KINDS))
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

    def __post_init__(self) -> None:
        check_name(self.name, "collection name")
        unknown = [i for i in self.indexes if i not in FAISS_KINDS]
        if unknown:
            raise InvalidInputError(f"unknown FAISS index kind(s) {unknown}: use {list(FAISS_KINDS)}")
        if self.qdrant is not None and self.qdrant not in QDRANT_CHOICES:
            raise InvalidInputError(f"--qdrant {self.qdrant!r}: use one of {list(QDRANT_CHOICES)}")
        if self.limit is not None and self.limit < 1:
            raise InvalidInputError("--limit must be ≥ 1")
        if self.shard_size < 1:
            raise InvalidInputError("shard size must be ≥ 1")
