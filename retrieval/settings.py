"""Settings, built once at the edge (the CLI or the caller) and passed inward.

Environment variables use the prefix ``SIMLOOKUP_`` and ``__`` for nesting, e.g.
``SIMLOOKUP_DATA_DIR``, ``SIMLOOKUP_QDRANT__MODE=server``, ``SIMLOOKUP_QDRANT__URL``.
A ``.env`` file in the working directory is read too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from retrieval.errors import ConfigError

ENV_PREFIX = "SIMLOOKUP_"

QdrantMode = Literal["edge", "server", "local"]
Quantization = Literal["none", "scalar", "product"]
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
    quantization: Quantization = "none"
    indexing_threshold_kb: int = Field(default=10, ge=0, description="edge/server: segments above this get HNSW")
    full_scan_threshold_kb: int = Field(
        default=1000, ge=0, description="below this many KB of vectors (or filter matches) Qdrant scans exactly"
    )
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
        return out


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
    ivf_nprobe: int = Field(default=16, ge=1)
    pq_m: int = Field(default=8, ge=1)
    pq_nbits: int = Field(default=8, ge=1, le=16)
    rerank_factor: int = Field(default=10, ge=1)
    hnsw_m: int = Field(default=32, ge=2)
    hnsw_ef_construction: int = Field(default=100, ge=1)
    hnsw_ef_search: int = Field(default=64, ge=1)
    payload_in_ram: bool = Field(default=True, description="keep ids and payload JSON in RAM for fast hits")


class ApiSettings(BaseModel):
    """`simlookup serve`: key, limits and the worker pool."""

    key: SecretStr | None = Field(default=None, description="requests must send it as X-API-Key or Bearer token")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    max_k: int = Field(default=100, ge=1)
    max_text_chars: int = Field(default=2000, ge=1)
    max_filter_conditions: int = Field(default=16, ge=0)
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
    workers: int = Field(default=4, ge=1, description="threads that encode and search off the event loop")


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

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not (v == "cpu" or v.startswith("cuda") or v == "mps"):
            raise ValueError(f"SIMLOOKUP_DEVICE={v!r} is not a device: use cpu, cuda, cuda:N or mps")
        return v

    def public(self) -> dict[str, Any]:
        """Resolved settings as JSON-able data, secrets left out."""
        out = self.model_dump(mode="json", exclude={"qdrant", "api"})
        out["qdrant"] = self.qdrant.public()
        out["api"] = self.api.model_dump(mode="json", exclude={"key"}) | {"key_set": self.api.key is not None}
        return out


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from the environment (and overrides), turning validation errors into ConfigError."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = "__".join(str(p) for p in err["loc"] if p not in ("",))
            var = f"{ENV_PREFIX}{loc}".upper() if loc else "settings"
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{var}: {msg}")
        raise ConfigError("invalid settings:\n  " + "\n  ".join(lines)) from None
