"""What a collection's keyword leg is, as its manifest records it (imports no numpy: manifests are read by light
commands).

The document side of the leg is the same on every engine: the payload field ``field`` (``text``), tokenized by
``retrieval.keyword.tokenize``, weighted by ``retrieval.keyword.bm25`` with the collection's ``avgdl``. FAISS
collections keep the term counts in an inverted index beside the point store (``retrieval.keyword.index``); Qdrant
keeps each document's factors in the sparse named vector ``vector`` (IDF modifier on). ``avgdl`` is fixed when the
leg is built (``ingest``, ``simlookup build-keyword``) so that both engines weigh a document alike whatever was
written since; rebuilding the leg measures it again.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, Field

from retrieval.keyword.tokenize import TOKENIZER

K1 = 1.5  # bm25s' defaults (its "lucene" method)
B = 0.75
SPARSE_VECTOR = "keyword"  # the Qdrant sparse named vector of the keyword leg


@dataclass(frozen=True)
class Bm25Params:
    """BM25's term-frequency saturation (k1) and length normalisation (b)."""

    k1: float = K1
    b: float = B


class KeywordSpec(BaseModel):
    """The keyword leg of one collection: the field it reads, its tokenizer, BM25 parameters and average length."""

    field: str = "text"
    tokenizer: str = TOKENIZER
    k1: float = Field(default=K1, gt=0)
    b: float = Field(default=B, ge=0, le=1)
    avgdl: float = Field(gt=0, description="the average document length (tokens) every engine weighs documents by")
    vector: str = SPARSE_VECTOR
    built: str = ""

    @property
    def params(self) -> Bm25Params:
        return Bm25Params(self.k1, self.b)
