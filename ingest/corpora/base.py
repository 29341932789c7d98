"""The corpus contract: a ``datasets.Dataset`` with a stable string ``id``, a text or image column, payload columns."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from retrieval.errors import SimlookupError

Modality = Literal["text", "image"]


class CorpusError(SimlookupError):
    """A corpus cannot be found or read (missing file, missing column, unknown name)."""


@dataclass(frozen=True)
class CorpusSpec:
    """What a corpus yields: its id, content columns and payload columns (with Qdrant index types)."""

    name: str
    modality: Modality
    text_column: str | None = "text"
    image_column: str | None = None
    caption_column: str | None = None
    payload_indexes: dict[str, str] = field(default_factory=dict)
    description: str = ""


class Corpus(Protocol):
    """A source of rows."""

    spec: CorpusSpec

    def load(self, limit: int | None = None) -> Any:
        """The rows as a ``datasets.Dataset`` with an ``id`` column (str, unique)."""
        ...

    def fingerprint(self) -> str:
        """Changes whenever the corpus content may have changed (file hash, version, …)."""
        ...


def stable_id(prefix: str, text: str) -> str:
    """A content-derived id: ``prefix-<sha1[:16]>``."""
    return f"{prefix}-{hashlib.sha1(text.encode('utf-8')).hexdigest()[:16]}"


def file_digest(paths: list[Any], content_limit: int = 256 << 20) -> str:
    """sha256 prefix over the files' names and contents (size and mtime only for files above content_limit)."""
    h = hashlib.sha256()
    for p in sorted(paths, key=str):
        st = p.stat()
        h.update(f"{p.name}:{st.st_size}".encode())
        if st.st_size > content_limit:
            h.update(str(st.st_mtime_ns).encode())
            continue
        with open(p, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
    return h.hexdigest()[:16]
