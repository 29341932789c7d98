"""The Qdrant server fixture skips only when no Docker daemon is reachable; anything else fails."""

from __future__ import annotations

from typing import Any

import pytest

from tests import qdrant_server


def _fake_container(raise_in_init: BaseException | None, raise_in_start: BaseException | None) -> type:
    class Fake:
        def __init__(self, **kwargs: Any) -> None:
            if raise_in_init is not None:
                raise raise_in_init

        def start(self) -> None:
            if raise_in_start is not None:
                raise raise_in_start

    return Fake


def _start(monkeypatch: pytest.MonkeyPatch, fake: type) -> None:
    import testcontainers.community.qdrant as tc

    monkeypatch.delenv("QDRANT_URL", raising=False)
    monkeypatch.setattr(tc, "QdrantContainer", fake)
    next(qdrant_server.start_server())


def test_no_docker_daemon_skips(monkeypatch: pytest.MonkeyPatch) -> None:
    from docker.errors import DockerException

    with pytest.raises(pytest.skip.Exception, match="no reachable Docker daemon"):
        _start(monkeypatch, _fake_container(DockerException("Error while fetching server API version"), None))


def test_a_broken_fixture_fails_instead_of_skipping(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TypeError, match="bad keyword"):
        _start(monkeypatch, _fake_container(TypeError("bad keyword"), None))


def test_a_container_that_does_not_start_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(pytest.fail.Exception, match="did not start"):
        _start(monkeypatch, _fake_container(None, RuntimeError("pull access denied")))
