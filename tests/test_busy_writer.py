"""`simlookup compact` (and tune) while an ingest writes the collection: refused, naming the ingest's process and
saying it must finish first, not the store's advice to "open it read-only to search alongside" (adversarial pass,
item 4)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from retrieval.settings import QdrantSettings, Settings
from simlookup.cli import main
from tests.test_incomplete import _start


@pytest.fixture
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, int]]:
    s = Settings(data_dir=tmp_path_factory.mktemp("busy") / "data", qdrant=QdrantSettings(mode="edge"))
    proc, pid = _start(s.data_dir, "running")
    yield s, pid
    proc.communicate("", timeout=60)


@pytest.mark.parametrize("command", [["compact", "c"], ["tune", "c", "--index", "hnsw"]])
def test_a_whole_collection_write_during_an_ingest_says_to_let_it_finish(
    running: tuple[Settings, int], command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    s, pid = running
    assert main(["--data-dir", str(s.data_dir), *command]) == 2
    err = capsys.readouterr().err
    assert f"collection 'c' is being ingested (process {pid} is writing it)" in err
    assert "the ingest must finish first" in err and f"`simlookup {command[0]} c` again" in err
    assert "read-only" not in err and "alongside" not in err
