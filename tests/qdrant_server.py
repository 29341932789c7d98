"""The session's real Qdrant server: QDRANT_URL (+ QDRANT_API_KEY), else a testcontainers Qdrant, else skip.

Never a stand-in: when no server can be had, every test that needs one is skipped with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

IMAGE = "qdrant/qdrant:v1.16.2"
TEST_API_KEY = "simlookup-test-key"


@dataclass
class QdrantServer:
    url: str
    api_key: str | None
    container: Any = None  # set when testcontainers started it (stop/start tests need it)


def start_server() -> Iterator[QdrantServer]:
    url = os.environ.get("QDRANT_URL")
    if url:
        yield QdrantServer(url, os.environ.get("QDRANT_API_KEY"))
        return
    try:
        from testcontainers.community.qdrant import QdrantContainer
    except ImportError as exc:
        pytest.skip(f"no QDRANT_URL and testcontainers[qdrant] is not installed: {exc}")
    try:
        container = QdrantContainer(image=IMAGE, api_key=TEST_API_KEY)
    except Exception as exc:  # noqa: BLE001 - docker.errors.DockerException when no daemon answers
        pytest.skip(f"no QDRANT_URL and no reachable Docker daemon for testcontainers ({type(exc).__name__}: {exc})")
    try:
        container.start()
    except Exception as exc:  # noqa: BLE001 - image pull or start failure
        pytest.skip(f"could not start {IMAGE} with testcontainers ({type(exc).__name__}: {exc})")
    try:
        yield QdrantServer(f"http://{container.rest_host_address}", TEST_API_KEY, container)
    finally:
        container.stop()
