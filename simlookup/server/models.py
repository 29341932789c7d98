"""Request and response models of the REST API (they make the OpenAPI schema)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from retrieval.stores.base import SearchParams


class SearchRequest(BaseModel):
    """A text or vector query; exactly one of ``text`` and ``vector``."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(default=None, description="query text (capped by SIMLOOKUP_API__MAX_TEXT_CHARS)")
    vector: list[float] | None = Field(default=None, description="a query vector of the index's dimension")
    k: int = Field(
        default=10,
        ge=1,
        strict=True,
        description="hits to return (capped by SIMLOOKUP_API__MAX_K and SIMLOOKUP_LIMITS__MAX_K)",
    )
    index: str = Field(default="flat", description="flat | ivf | ivfpq | hnsw | ivf_sq8 | hnsw_sq8 | qdrant")
    filter: dict[str, Any] | None = Field(default=None, description='{"field": value | [values] | {"gte": n}}')
    rerank: bool = Field(default=False, description="exact re-rank of k×10 candidates")
    # the upper bounds are the settings' (SIMLOOKUP_LIMITS__*), applied by the retriever with the same message
    # as the CLI and the Python API
    rerank_factor: int | None = Field(
        default=None,
        ge=0,
        description="re-rank k×factor candidates (0 turns it off, ivfpq too; capped by SIMLOOKUP_LIMITS__MAX_RERANK)",
    )
    nprobe: int | None = Field(
        default=None, ge=1, description="IVF lists to visit (capped by SIMLOOKUP_LIMITS__MAX_NPROBE)"
    )
    hnsw_ef: int | None = Field(
        default=None, ge=1, description="HNSW candidate list at query time (capped by SIMLOOKUP_LIMITS__MAX_EF)"
    )
    exact: bool = Field(default=False, description="brute force")
    oversampling: float | None = Field(
        default=None,
        ge=1,
        description="a quantized Qdrant collection: k×oversampling candidates rescored (capped by "
        "SIMLOOKUP_LIMITS__MAX_RERANK)",
    )
    rescore: bool | None = Field(
        default=None, description="a quantized Qdrant collection: false returns the quantized scores, not rescored"
    )
    target: Literal["text", "image", "caption"] | None = Field(default=None, description="vector space")
    mode: Literal["dense", "keyword", "hybrid"] = Field(
        default="dense",
        description="dense: the vectors; keyword: BM25 on the collection's keyword leg; hybrid: both, fused "
        "(keyword and hybrid take 'text')",
    )
    fusion: Literal["rrf", "dbsf"] | None = Field(
        default=None, description="hybrid: how the legs are fused (default SIMLOOKUP_KEYWORD__FUSION, rrf)"
    )
    alpha: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="hybrid: the dense leg's share of the fused score (default SIMLOOKUP_KEYWORD__ALPHA, 0.5)",
    )

    def search_params(self) -> SearchParams:
        """The query-time parameters of this request."""
        rerank = self.rerank_factor if self.rerank_factor is not None else (10 if self.rerank else None)
        return SearchParams(
            nprobe=self.nprobe,
            hnsw_ef=self.hnsw_ef,
            exact=self.exact,
            rerank=rerank,
            oversampling=self.oversampling,
            rescore=self.rescore,
        )


class HitModel(BaseModel):
    id: str
    score: float
    payload: dict[str, Any]


class SearchResponse(BaseModel):
    """The same shape as `simlookup search --json`."""

    query: str
    index: str
    target: str
    took_ms: float
    hits: list[HitModel]
    mode: str = Field(default="dense", description="the search mode: dense, keyword or hybrid")
    fusion: str | None = Field(default=None, description="hybrid: the fusion method (rrf or dbsf)")
    alpha: float | None = Field(default=None, description="hybrid: the dense leg's share of the fused score")
    warnings: list[str] | None = Field(
        default=None, description="present when the answer needs a caveat (the collection is incomplete)"
    )


class IndexInfo(BaseModel):
    index: str
    target: str
    model: str
    fingerprint: str | None
    dim: int
    kind: str
    count: int
    tuned: dict[str, Any] | None = Field(
        default=None, description="the tuned default query setting: params, recall, target, k, reached, count, at"
    )


class IndexesResponse(BaseModel):
    name: str
    corpus: str
    modality: str
    indexes: list[IndexInfo]


class Problem(BaseModel):
    detail: str


class Health(BaseModel):
    status: str
    detail: dict[str, str] = Field(default_factory=dict)


class VerifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sample: int | None = Field(default=None, ge=1, description="compare vectors of N random ids only")


class VerifyResponse(BaseModel):
    """The shape of `simlookup verify --json`."""

    name: str
    ok: bool
    counts: dict[str, dict[str, int]]
    expected: int
    differences: list[str]
    notes: list[str] = Field(default_factory=list, description="worth knowing, not a difference (ok stays true)")
    state: str = Field(default="complete", description="complete | ingest running | interrupted | incomplete")
    state_message: str | None = Field(default=None, description="an incomplete collection: why, and what to run")
    ingest_pid: int | None = Field(default=None, description="the running ingest's process, when known")
