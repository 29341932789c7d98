"""The session's real Qdrant server: QDRANT_URL (+ QDRANT_API_KEY), else a testcontainers Qdrant, else skip.

Never a stand-in: when no Docker daemon is reachable, every test that needs a server is skipped with the
reason. Anything else (a broken fixture, an image that will not pull or start) fails: it is not "no Docker".
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
    from docker.errors import DockerException

    try:
        container = QdrantContainer(image=IMAGE, api_key=TEST_API_KEY)
    except DockerException as exc:  # raised by the constructor when no daemon answers
        pytest.skip(f"no QDRANT_URL and no reachable Docker daemon for testcontainers ({type(exc).__name__}: {exc})")
    try:
        container.start()
    except Exception as exc:  # noqa: BLE001 - a daemon is there, so a failed start is a failure, not a skip
        pytest.fail(f"Docker is reachable but {IMAGE} did not start ({type(exc).__name__}: {exc})")
    try:
        yield QdrantServer(f"http://{container.rest_host_address}", TEST_API_KEY, container)
    finally:
        container.stop()
