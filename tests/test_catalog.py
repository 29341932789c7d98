"""Collections a user can manage (issue 23 items 1-3): list without a model, drop, guarded re-ingest, dry run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ingest.job import IngestOptions, run_ingest
from ingest.plan import GuardError
from retrieval.catalog import drop_collection, list_described
from retrieval.collection import load_collection
from retrieval.errors import StoreLockedError, StoreNotFoundError
from retrieval.settings import QdrantSettings, Settings
from retrieval.stores import open_store
from simlookup.cli import main

ROOT = Path(__file__).resolve().parent.parent
ROWS = [(f"r{i}", t) for i, t in enumerate(
    ["a cat sat on the mat", "a dog ran in the park", "birds fly south", "fish swim upstream", "the sun is hot",
     "snow fell all night", "a man plays a flute", "stocks fell sharply"]
)]


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("id,text,g\n" + "".join(f"{i},{t},{n % 2}\n" for n, (i, t) in enumerate(rows)))
    return path


@pytest.fixture
def s(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", qdrant=QdrantSettings(mode="edge"))


def ingest(s: Settings, csv: Path, minilm, **kw: object):  # type: ignore[no-untyped-def]
    opts = IngestOptions(str(csv), "c", indexes=list(kw.pop("indexes", ["flat", "hnsw"])), progress=False, **kw)  # type: ignore[arg-type]
    return run_ingest(s, opts, encoders={"text": minilm})


def test_collections_lists_without_loading_a_model(s: Settings, tmp_path: Path, minilm) -> None:  # type: ignore[no-untyped-def]
    ingest(s, write_csv(tmp_path / "a.csv", ROWS), minilm)
    (s.data_dir / "collections" / "broken.json").write_text("{not json")
    code = (
        "import json, sys; from simlookup.cli import main; rc = main(['--data-dir', sys.argv[1], 'collections', "
        "'--json']); print(json.dumps({'torch': 'torch' in sys.modules, 'st': 'sentence_transformers' in sys.modules}))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(s.data_dir)], capture_output=True, text=True, cwd=ROOT,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    first, _, last = out.stdout.rpartition("\n{")
    doc, mods = json.loads(first), json.loads("{" + last)
    assert mods == {"torch": False, "st": False}
    by = {c["name"]: c for c in doc["collections"]}
    c = by["c"]
    assert {k: c[k] for k in ("count", "dim", "indexes", "complete")} == {
        "count": 8, "dim": 384, "indexes": ["flat", "hnsw", "qdrant"], "complete": True
    }
    assert c["model"] == "all-MiniLM-L6-v2" and c["disk_bytes"] > 0 and c["last_ingest"]
    assert set(c["index_details"]) >= {"flat", "hnsw", "qdrant", "points"}
    assert "error" in by["broken"]


def test_info_loads_no_model_unless_asked(s: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data-dir", str(s.data_dir), "info", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["text_model"] == {"name": s.text_model}


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from simlookup import __version__

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"simlookup {__version__}"


def test_guarded_re_ingest_changes_nothing_without_yes(s: Settings, tmp_path: Path, minilm) -> None:  # type: ignore[no-untyped-def]
    ingest(s, write_csv(tmp_path / "a.csv", ROWS), minilm)
    before = {p: p.stat().st_mtime_ns for p in s.data_dir.rglob("*") if p.is_file()}
    half = write_csv(tmp_path / "half.csv", ROWS[:4])
    with pytest.raises(GuardError, match=r"removes 4 from flat, 4 from hnsw, 4 from qdrant.*--yes"):
        ingest(s, half, minilm, guard=True)
    with pytest.raises(GuardError, match=r"drops indexes \['hnsw'\]"):
        ingest(s, write_csv(tmp_path / "all.csv", ROWS), minilm, guard=True, indexes=["flat"])
    after = {p: p.stat().st_mtime_ns for p in s.data_dir.rglob("*") if p.is_file()}
    assert after == before  # not a byte written
    # a re-ingest that only adds is not guarded
    more = write_csv(tmp_path / "more.csv", [*ROWS, ("r99", "a new row")])
    assert ingest(s, more, minilm, guard=True).ingested == 9
    # with --yes: removed, and the dropped kind's folder deleted
    summary = ingest(s, half, minilm, guard=False, indexes=["flat"])
    assert summary.removed == 5 and summary.plan["dropped_indexes"] == ["hnsw"]
    assert not (s.data_dir / "faiss" / "c" / "hnsw").exists() and summary.dropped
    assert load_collection(s.data_dir, "c").indexes == ["flat", "qdrant"]


def test_dry_run_writes_nothing(s: Settings, tmp_path: Path) -> None:
    summary = run_ingest(s, IngestOptions(str(write_csv(tmp_path / "a.csv", ROWS)), "new", progress=False,
                                          indexes=["flat"], dry_run=True))
    assert summary.plan["exists"] is False and summary.plan["rows"] == 8 and "creates" in summary.plan["text"]
    assert not s.data_dir.exists() or not any(p.is_file() for p in s.data_dir.rglob("*"))


def test_drop_removes_everything_and_is_refused_while_a_writer_holds_it(
    s: Settings, tmp_path: Path, minilm, capsys: pytest.CaptureFixture[str]  # type: ignore[no-untyped-def]
) -> None:
    ingest(s, write_csv(tmp_path / "a.csv", ROWS), minilm)
    writer = open_store(s, "c", "flat", create=False)
    with pytest.raises(StoreLockedError, match="open for writing"):
        drop_collection(s, "c")
    writer.close()
    assert load_collection(s.data_dir, "c").count == 8  # nothing was removed
    args = ["--data-dir", str(s.data_dir), "drop", "c"]
    assert main(args) == 1 and "re-run with --yes" in capsys.readouterr().out  # no --yes: a plan only
    assert load_collection(s.data_dir, "c")
    assert main([*args, "--yes", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["dropped"] and doc["freed_bytes"] > 0
    for sub in ("faiss/c", "qdrant-edge/c", "collections/c.json", "rejects/c.jsonl"):
        assert not (s.data_dir / sub).exists(), sub
    assert any((s.data_dir / "cache").rglob("*.npy"))  # the embedding cache stays without --cache
    assert list_described(s) == []
    with pytest.raises(StoreNotFoundError):
        drop_collection(s, "c")
    assert main(args + ["--yes"]) == 2  # unknown collection: a clear error


# ---- engine moves and the Edge shard a service holds (adversarial pass after issue 23) ----
def test_engine_move_guard_names_the_move_and_no_useless_append(s: Settings, tmp_path: Path, minilm) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("qdrant_client")
    csv = write_csv(tmp_path / "a.csv", ROWS)
    ingest(s, csv, minilm, indexes=["flat"])
    with pytest.raises(GuardError) as exc:
        ingest(s, csv, minilm, indexes=["flat"], qdrant="local", guard=True)
    msg = str(exc.value)
    assert "Qdrant moves from edge to local: the edge collection 'c' (8 points) would be deleted" in msg
    assert "--append" not in msg  # --append keeps points, not the Edge collection
    assert "--qdrant edge" in msg  # what keeps it
    with pytest.raises(GuardError) as exc:
        ingest(s, csv, minilm, indexes=["flat"], qdrant="local", guard=True, append=True)
    assert "--append" not in str(exc.value)
    # leaving a kind out: --append would not keep it either; --index would
    with pytest.raises(GuardError) as exc:
        ingest(s, csv, minilm, indexes=[], guard=True)
    assert "--append" not in str(exc.value) and "--index flat" in str(exc.value)
    # removing rows: --append is the way to keep them
    with pytest.raises(GuardError, match="--append"):
        ingest(s, write_csv(tmp_path / "half.csv", ROWS[:4]), minilm, indexes=["flat"], guard=True)


def _hold_edge(s: Settings, name: str) -> subprocess.Popen[str]:
    """Another process (as `simlookup serve` does) holding the collection's Edge shard open until stdin closes."""
    code = (
        "import sys; from retrieval.settings import QdrantSettings, Settings; from retrieval.collection import "
        "Collection\n"
        f"s = Settings(data_dir={str(s.data_dir)!r}, qdrant=QdrantSettings(mode='edge'))\n"
        f"c = Collection(s, {name!r}); c.store('qdrant').count(); print('ready', flush=True); sys.stdin.read()\n"
        "c.close()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, text=True, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", proc.stderr.read()  # type: ignore[union-attr]
    return proc


def test_re_ingest_that_would_delete_an_open_edge_shard_is_refused(s: Settings, tmp_path: Path, minilm) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("qdrant_client")
    csv = write_csv(tmp_path / "a.csv", ROWS)
    ingest(s, csv, minilm, indexes=["flat"])
    edge = s.data_dir / "qdrant-edge" / "c"
    holder = _hold_edge(s, "c")
    try:
        before = load_collection(s.data_dir, "c")
        for engine in ("local", "none"):
            with pytest.raises(StoreLockedError, match=r"Qdrant Edge shard .* is open in another process.*nothing"):
                ingest(s, csv, minilm, indexes=["flat"], qdrant=engine)
            assert edge.exists()  # before the fix: deleted under the running service
            assert load_collection(s.data_dir, "c") == before
    finally:
        holder.communicate("", timeout=60)
    summary = ingest(s, csv, minilm, indexes=["flat"], qdrant="none")  # the service stopped: it goes ahead
    assert str(edge) in summary.dropped and not edge.exists()


def test_a_collection_with_a_corrupt_manifest_is_listed_and_dropped_by_name(
    s: Settings, tmp_path: Path, minilm, capsys: pytest.CaptureFixture[str]  # type: ignore[no-untyped-def]
) -> None:
    ingest(s, write_csv(tmp_path / "a.csv", ROWS), minilm)
    (s.data_dir / "rejects" / "c.jsonl").write_text("{}\n")
    manifest = s.data_dir / "collections" / "c.json"
    manifest.write_text('{"name": "c", "corp')  # cut short
    base = ["--data-dir", str(s.data_dir)]
    assert main([*base, "collections"]) == 0
    out = capsys.readouterr().out
    assert "c" in out and "UNREADABLE" in out and str(manifest) in out
    assert main([*base, "drop", "c"]) == 1  # no --yes: what would go, from the name
    out = capsys.readouterr().out
    for sub in ("faiss/c", "qdrant-edge/c", "collections/c.json", "rejects/c.jsonl"):
        assert str(s.data_dir / sub) in out, sub
    assert manifest.exists()
    assert main([*base, "drop", "c", "--yes", "--json"]) == 0  # before the fix: exit 2, the manifest is unreadable
    doc = json.loads(capsys.readouterr().out)
    assert doc["dropped"] and "unreadable" in " ".join(doc["notes"])
    for sub in ("faiss/c", "qdrant-edge/c", "collections/c.json", "rejects/c.jsonl"):
        assert not (s.data_dir / sub).exists(), sub
        assert str(s.data_dir / sub) in doc["removed"], sub
    assert list_described(s) == []
