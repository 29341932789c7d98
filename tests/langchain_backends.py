"""Backends the framework adapters are tested on: FAISS flat and hnsw, Qdrant Edge, qdrant-client local, a server.

qdrant-client's local mode runs the same adapter code (``QdrantClientStore``) a Qdrant server does, in process.
"""

from __future__ import annotations

import uuid
from functools import partial
from pathlib import Path

import pytest

from retrieval.settings import QdrantSettings, Settings
from tests.test_store_contract import _drop_collection

BACKENDS = [
    "flat",
    "hnsw",
    "edge",
    "local",
    pytest.param("server", marks=pytest.mark.qdrant_server),  # skips unless a real server is reachable
]


def index_of(backend: str) -> str:
    return "qdrant" if backend in ("edge", "local", "server") else backend


def backend_settings(tmp: Path, backend: str, request: pytest.FixtureRequest) -> tuple[Settings, str]:
    """Settings for one backend and a collection name unique on a shared server (dropped after the test)."""
    if backend == "server":
        server = request.getfixturevalue("qdrant_server")
        q = QdrantSettings(mode="server", url=server.url, api_key=server.api_key, full_scan_threshold_kb=10)
        name = f"lc-{uuid.uuid4().hex[:8]}"
        s = Settings(data_dir=tmp / "data", qdrant=q)
        request.addfinalizer(partial(_drop_collection, s, name))
        return s, name
    mode = "local" if backend == "local" else "edge"
    return Settings(data_dir=tmp / "data", qdrant=QdrantSettings(mode=mode, full_scan_threshold_kb=10)), "lc"
