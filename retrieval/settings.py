"""Settings, built once at the edge (the CLI or the caller) and passed inward.

Environment variables use the prefix ``SIMLOOKUP_`` and ``__`` for nesting, e.g.
``SIMLOOKUP_DATA_DIR``, ``SIMLOOKUP_QDRANT__MODE=server``, ``SIMLOOKUP_QDRANT__URL``.
A ``.env`` file in the working directory is read too.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Protocol, Union, get_args, get_origin

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from retrieval.errors import ConfigError, InvalidInputError

ENV_PREFIX = "SIMLOOKUP_"
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]*@")


def redact_url(text: str) -> str:
    """Replace the ``user:password@`` part of every URL in a text by ``***@`` (for errors, logs and `info`)."""
    return _USERINFO.sub(lambda m: f"{m.group('scheme')}***@", text)

QdrantMode = Literal["edge", "server", "local"]
Quantization = Literal["none", "scalar", "binary", "product"]
PayloadIndexKind = Literal["keyword", "integer", "float", "bool"]


class QdrantSettings(BaseModel):
    """Where the Qdrant collection lives and how it is built."""

    mode: QdrantMode = "edge"
    url: str | None = None
    api_key: SecretStr | None = None
    path: Path | None = Field(
        default=None, description="local mode: a folder, or ':memory:'; edge mode: overrides the data dir"
    )
    timeout_s: float = 10.0
    prefer_grpc: bool = False
    shard_number: int = Field(default=1, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    hnsw_m: int = Field(default=16, ge=2)
    hnsw_ef_construct: int = Field(default=100, ge=4)
    hnsw_ef: int = Field(default=64, ge=1, description="default hnsw_ef at query time")
    quantization: Quantization | None = Field(
        default=None,
        description="scalar (int8) | binary (1 bit) | product | none, searched with rescoring by the original vectors; "
        "unset: as the collection was created (none for a new one). A writer's change applies at the next build",
    )
    on_disk: bool | None = Field(
        default=None,
        description="original vectors and HNSW graph on disk (memory-mapped, read on demand; quantized vectors "
        "stay in RAM); unset: as the collection was created (off for a new one)",
    )
    oversampling: float | None = Field(
        default=None,
        ge=1,
        le=100,
        description="quantized search: k × oversampling candidates rescored, when neither a search nor auto-tune "
        "sets it (unset: 2 for scalar, 4 for product, 8 for binary quantization)",
    )
    indexing_threshold_kb: int = Field(default=10, ge=0, description="edge/server: segments above this get HNSW")
    full_scan_threshold_kb: int = Field(
        default=1000, ge=0, description="below this many KB of vectors (or filter matches) Qdrant scans exactly"
    )
    exact_filter_limit: int = Field(
        default=4096,
        ge=0,
        description="a filter matching at most this many points is answered by exact search over them, as on the "
        "FAISS kinds (Qdrant's own full scan threshold is in KB of the collection's vectors, decided per segment)",
    )
    search_threads: int | None = Field(
        default=None, ge=1, description="edge: threads in the shard's search pool (None: one per CPU)"
    )
    indexing_threads: int = Field(default=0, ge=0, description="edge/server: HNSW build threads (0: automatic)")
    upload_batch_size: int = Field(default=256, ge=1)
    retries: int = Field(default=5, ge=0)
    backoff_s: float = Field(default=0.5, ge=0)
    payload_indexes: dict[str, PayloadIndexKind] = Field(
        default_factory=dict,
        description='payload fields to index, e.g. {"genre": "keyword", "year": "integer"} (JSON in the env var)',
    )
    auto_payload_indexes: bool = Field(
        default=True, description="build() also indexes the payload fields it finds (types inferred from the values)"
    )

    @model_validator(mode="after")
    def _consistent(self) -> QdrantSettings:
        if self.url and self.path:
            raise ValueError(
                "SIMLOOKUP_QDRANT__URL and SIMLOOKUP_QDRANT__PATH are both set: a server URL and a local "
                "path contradict each other; unset one"
            )
        if self.mode == "server" and not self.url:
            raise ValueError("SIMLOOKUP_QDRANT__MODE=server needs SIMLOOKUP_QDRANT__URL (e.g. http://localhost:6333)")
        if self.mode != "server" and self.url:
            raise ValueError(
                f"SIMLOOKUP_QDRANT__URL is set but SIMLOOKUP_QDRANT__MODE={self.mode}: "
                "set SIMLOOKUP_QDRANT__MODE=server to use the server, or unset the URL"
            )
        return self

    def public(self) -> dict[str, Any]:
        """The settings without secrets, for logs and `simlookup info`."""
        out = self.model_dump(mode="json", exclude={"api_key"})
        out["api_key_set"] = self.api_key is not None
        if self.url:
            out["url"] = redact_url(self.url)
        return out

    def with_mode(self, mode: str | None) -> QdrantSettings:
        """These settings for another Qdrant mode (a collection's recorded one); server mode needs the URL here."""
        if mode is None or mode == self.mode:
            return self
        if mode == "server" and not self.url:
            raise ConfigError(
                "this needs the Qdrant server (the collection was ingested with --qdrant server): set "
                "SIMLOOKUP_QDRANT__MODE=server and SIMLOOKUP_QDRANT__URL (and SIMLOOKUP_QDRANT__API_KEY if needed)"
            )
        return self.model_copy(update={"mode": mode, "url": self.url if mode == "server" else None})


class ClipSettings(BaseModel):
    """The CLIP model: an open_clip architecture and where its weights come from."""

    arch: str = "ViT-B-32"
    pretrained: str | None = Field(
        default=None,
        description="an open_clip pretrained tag (needs the hub) or a local checkpoint file (.pt/.bin/.safetensors)",
    )
    max_image_pixels: int = Field(default=50_000_000, ge=1, description="decompression-bomb cap")


class FaissSettings(BaseModel):
    """Default build and query parameters of the FAISS kinds (each overridable per store or per query)."""

    ivf_nlist: int | None = Field(default=None, description="None: 4*sqrt(N) at training time")
    ivf_nprobe: int = Field(default=48, ge=1, description="48: recall@10 ≥ 0.95 vs flat on STS-B MiniLM at nlist≈400")
    pq_m: int | None = Field(default=None, ge=1, description="None: dim/8 sub-quantizers (8 dimensions each)")
    pq_nbits: int = Field(default=8, ge=1, le=16)
    rerank_factor: int = Field(default=10, ge=1)
    sq8_rerank: bool = Field(
        default=False,
        description="ivf_sq8 / hnsw_sq8 re-rank k*rerank_factor candidates exactly (float rows read on demand "
        "from the vector file) by default, and tuning tries re-rank factors; false: the 8-bit codes alone",
    )
    hnsw_m: int = Field(default=32, ge=2)
    hnsw_ef_construction: int = Field(default=100, ge=1)
    hnsw_ef_search: int = Field(default=64, ge=1)
    exact_filter_limit: int = Field(
        default=4096, ge=0, description="a filter matching at most this many points is answered by exact search"
    )
    exact_filter_cost: float = Field(
        default=2.0,
        ge=0,
        description="IVF kinds: a filter matching at most this many times the rows the index would read for the "
        "query (its centroids, its probed lists' codes as full rows, its re-rank) is answered by exact search "
        "too (0: only exact_filter_limit decides)",
    )
    hnsw_compact_fraction: float = Field(
        default=0.2, gt=0, le=1, description="rebuild an HNSW graph once this fraction of its nodes is deleted"
    )
    flat_resident: bool = Field(
        default=True,
        description="flat scans a private copy of the vectors in anonymous memory (huge pages; ~35% faster scans "
        "than the file map) that costs the vectors' size in RAM per process: false scans the shared file map",
    )


class QueryParams(Protocol):
    """The query-time parameters a cap applies to (``retrieval.stores.SearchParams``)."""

    @property
    def nprobe(self) -> int | None: ...
    @property
    def hnsw_ef(self) -> int | None: ...
    @property
    def rerank(self) -> int | None: ...
    @property
    def oversampling(self) -> float | None: ...


class SearchLimits(BaseModel):
    """Upper bounds on query parameters, so that no request can make an allocation scale with a number it sends.

    The one table of query caps: the Retriever, every store opened by ``open_store(settings, ...)``, the CLI
    and the REST service apply these numbers, and every refusal names the variable that sets the cap.
    """

    max_k: int = Field(default=10_000, ge=1, description="hits per query (CLI, Python API, REST)")
    max_ef: int = Field(default=4_096, ge=1, description="HNSW ef / Qdrant hnsw_ef at query time")
    max_nprobe: int = Field(default=65_536, ge=1, description="IVF lists visited per query")
    max_rerank: int = Field(
        default=100, ge=1, description="re-rank factor and Qdrant oversampling (candidates = k × factor)"
    )

    def check(self, k: int, params: QueryParams | None = None) -> None:
        """Refuse a k, ef, nprobe or re-rank factor above its cap (InvalidInputError naming the variable)."""
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise InvalidInputError(f"k must be a positive integer, got {k!r}")
        if k > self.max_k:
            raise InvalidInputError(f"k={k} is above the limit of {self.max_k} hits ({ENV_PREFIX}LIMITS__MAX_K)")
        if params is None:
            return
        caps = (
            ("ef", params.hnsw_ef, self.max_ef, "MAX_EF"),
            ("nprobe", params.nprobe, self.max_nprobe, "MAX_NPROBE"),
            ("rerank factor", params.rerank, self.max_rerank, "MAX_RERANK"),
            ("oversampling", params.oversampling, self.max_rerank, "MAX_RERANK"),
        )
        for what, v, cap, var in caps:
            if v is not None and v > cap:
                raise InvalidInputError(f"{what}={v} is above the limit of {cap} ({ENV_PREFIX}LIMITS__{var})")


class ApiSettings(BaseModel):
    """`simlookup serve`: key, limits and the worker pool."""

    key: SecretStr | None = Field(default=None, description="requests must send it as X-API-Key or Bearer token")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    max_k: int = Field(default=100, ge=1, description="hits per request, on top of SIMLOOKUP_LIMITS__MAX_K")
    max_text_chars: int = Field(default=2000, ge=1)
    max_filter_conditions: int = Field(default=16, ge=0)
    max_filter_values: int = Field(default=1024, ge=1)  # values in all any-of ($in / $nin / list) conditions
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
    workers: int = Field(default=4, ge=1, description="threads that encode and search off the event loop")
    batch_window_ms: float = Field(
        default=6.0, ge=0, le=1000, description="micro-batching: wait this long after a query for others to join it"
    )
    max_batch: int = Field(default=32, ge=1, le=1024, description="queries encoded and searched together; 1 = off")
    batch_concurrency: int = Field(
        default=1, ge=1, le=64, description="micro-batches encoded and searched at once (each on its own worker)"
    )

    @field_validator("key")
    @classmethod
    def _key_not_blank(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not v.get_secret_value().strip():
            raise ValueError(
                "is set but empty: every request would be refused; unset it to serve without a key, or set a key"
            )
        return v


class KeywordSettings(BaseModel):
    """The keyword leg (BM25) and hybrid search (``retrieval.hybrid``): SIMLOOKUP_KEYWORD__*."""

    enabled: bool = Field(default=True, description="ingest builds the keyword leg of text collections")
    k1: float = Field(default=1.5, gt=0, description="BM25 term-frequency saturation (recorded when a leg is built)")
    b: float = Field(default=0.75, ge=0, le=1, description="BM25 length normalisation (recorded when a leg is built)")
    fusion: Literal["rrf", "dbsf"] = Field(default="rrf", description="how a hybrid search fuses its two legs")
    alpha: float = Field(default=0.5, ge=0, le=1, description="the dense leg's share of a hybrid score")
    rrf_k: int = Field(default=60, ge=1, description="RRF's constant k: score = sum of weight / (k + rank)")
    candidates: int = Field(default=100, ge=1, description="hits each leg of a hybrid search fetches (at least k)")


class IngestSettings(BaseModel):
    """How `simlookup ingest` encodes: in this process (local) or on a Ray cluster (ray)."""

    engine: Literal["local", "ray"] = "local"
    ray_address: str | None = Field(
        default=None, description="None: a local Ray started in-process; 'auto', 'host:6379' or 'ray://host:10001'"
    )
    workers: int = Field(default=2, ge=1, description="ray: encoder actors (one model load each)")
    gpus_per_worker: float = Field(default=0.0, ge=0, description="ray: GPUs per encoder actor (0: CPU)")
    ray_connect_timeout_s: float = Field(default=10.0, gt=0, description="ray: give up on an unreachable address")


class Settings(BaseSettings):
    """Every setting of simlookup. Build once (``Settings()``) and pass it inward."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    data_dir: Path = Path("data")
    text_model: str = "all-MiniLM-L6-v2"
    text_quantize: Literal["none", "int8"] = Field(
        default="none", description="int8: dynamic quantization of the text model's Linear layers (~2× faster on CPU)"
    )
    clip: ClipSettings = ClipSettings()
    device: str = "cpu"
    batch_size: int = Field(default=64, ge=1)
    threads: int | None = Field(default=None, ge=1, description="torch / faiss threads; None leaves defaults")
    qdrant: QdrantSettings = QdrantSettings()
    faiss: FaissSettings = FaissSettings()
    api: ApiSettings = ApiSettings()
    limits: SearchLimits = SearchLimits()
    ingest: IngestSettings = IngestSettings()
    keyword: KeywordSettings = KeywordSettings()

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not (v == "cpu" or v.startswith("cuda") or v == "mps"):
            raise ValueError(f"SIMLOOKUP_DEVICE={v!r} is not a device: use cpu, cuda, cuda:N or mps")
        return v

    def with_qdrant_mode(self, mode: str | None) -> Settings:
        """These settings with the Qdrant mode a collection recorded (None or 'none': unchanged)."""
        if mode is None or mode == "none" or mode == self.qdrant.mode:
            return self
        return self.model_copy(update={"qdrant": self.qdrant.with_mode(mode)})

    def with_ingest(self, **flags: Any) -> Settings:
        """These settings with `simlookup ingest`'s engine flags applied (None: unchanged), validated again."""
        given = {k: v for k, v in flags.items() if v is not None}
        if not given:
            return self
        try:
            ingest = IngestSettings.model_validate(self.ingest.model_dump() | given)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise ConfigError(f"--{str(err['loc'][0]).replace('_', '-')}: {err['msg']}") from None
        return self.model_copy(update={"ingest": ingest})

    def public(self) -> dict[str, Any]:
        """Resolved settings as JSON-able data, secrets left out."""
        out = self.model_dump(mode="json", exclude={"qdrant", "api"})
        out["qdrant"] = self.qdrant.public()
        out["api"] = self.api.model_dump(mode="json", exclude={"key"}) | {"key_set": self.api.key is not None}
        return out


def _json_shape(path: list[str]) -> str | None:
    """What the variable of the setting at this path (``["qdrant", "payload_indexes"]``) holds when it is read
    as JSON ("a JSON object", "a JSON list"); None for a plain value."""
    ann: Any = Settings
    for part in path:
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)) or part not in ann.model_fields:
            return None
        ann = ann.model_fields[part].annotation
    for a in [a for a in get_args(ann) if a is not type(None)] if get_origin(ann) in (Union, UnionType) else [ann]:
        if (isinstance(a, type) and issubclass(a, BaseModel)) or dict in (a, get_origin(a)):
            return "a JSON object"
        if any(t in (a, get_origin(a)) for t in (list, set, tuple)):
            return "a JSON list"
    return None


def _bad_json_variables(exc: SettingsError) -> list[str]:
    """The JSON-valued SIMLOOKUP_ variables (environment, then .env) that do not parse, each with the JSON error.

    The values are never shown: a JSON setting can hold a secret (``SIMLOOKUP_QDRANT='{"api_key": ...}'``).
    """
    field = re.search(r'field "([^"]+)"', str(exc))
    dotenv = "DotEnv" in str(exc)
    values: dict[str, str | None] = {}
    if dotenv:
        from dotenv import dotenv_values

        env_file = Settings.model_config.get("env_file")
        if isinstance(env_file, (str, Path)) and Path(env_file).is_file():
            values = dict(dotenv_values(env_file))
    else:
        values = dict(os.environ)
    where = f" (in {Settings.model_config.get('env_file')})" if dotenv else ""
    out = []
    for name, value in sorted(values.items()):
        if value is None or not name.upper().startswith(ENV_PREFIX):
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        if field is not None and path[0] != field.group(1).lower():
            continue
        shape = _json_shape(path)
        if shape is None:
            continue
        try:
            json.loads(value)
        except ValueError as err:
            fix = f"give {shape}" + (
                f", or set its fields one by one ({name.upper()}__FIELD=value)" if len(path) == 1 else ""
            )
            out.append(f"{name.upper()}{where} is not valid JSON ({err}): {fix}")
    return out


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from the environment (and overrides), turning every settings error into ConfigError.

    A JSON-valued variable that does not parse (``SIMLOOKUP_QDRANT__PAYLOAD_INDEXES=nope``) is named too.
    """
    try:
        return Settings(**overrides)
    except SettingsError as exc:
        lines = _bad_json_variables(exc) or [f"{exc}: check the SIMLOOKUP_ variables that hold JSON"]
        raise ConfigError(redact_url("invalid settings:\n  " + "\n  ".join(lines))) from None
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = "__".join(str(p) for p in err["loc"] if p not in ("",))
            var = f"{ENV_PREFIX}{loc}".upper() if loc else "settings"
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{var}: {msg}")
        raise ConfigError(redact_url("invalid settings:\n  " + "\n  ".join(lines))) from None
