"""Integrity of the FAISS point store: vector rows checked against the checksums recorded at each flush, rows no
upsert could store (NaN, zero cosine vectors), and payload rows that are not JSON, by `verify` and on open."""

from __future__ import annotations

import shutil
import sqlite3
import zlib
from pathlib import Path

import numpy as np
import pytest

from ingest.job import IngestOptions, run_ingest
from retrieval.collection import CollectionManifest, VectorSpace, save_collection
from retrieval.errors import CorruptIndexError
from retrieval.retriever import Retriever
from retrieval.settings import QdrantSettings, Settings
from retrieval.stores import FAISS_KINDS, open_store
from retrieval.stores import point_registry as registry
from retrieval.stores import points as pts
from retrieval.verify import verify

N, DIM = 1000, 16
KINDS = list(FAISS_KINDS)


def _settings(d: Path) -> Settings:
    return Settings(data_dir=d, qdrant=QdrantSettings(mode="edge"))


def _vectors() -> np.ndarray:
    v = np.random.default_rng(5).normal(size=(N, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _write(s: Settings, kinds: list[str], lo: int, hi: int, flush: bool = True) -> None:
    vecs, ids = _vectors(), [f"p{i}" for i in range(N)]
    for kind in kinds:
        st = open_store(s, "syn", kind, dim=DIM, fingerprint="fake@1")
        try:
            for i in range(lo, hi, 400):  # several writes, flushed (or not) at the end
                j = min(i + 400, hi)
                st.upsert(ids[i:j], vecs[i:j], [{"g": k % 3} for k in range(i, j)])
            st.build()
            if flush:
                st.flush()
        finally:
            st.close()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A FAISS-only collection of every kind (no Qdrant: nothing else holds a copy of the vectors)."""
    d = tmp_path_factory.mktemp("integrity") / "d"
    s = _settings(d)
    _write(s, KINDS, 0, N)
    space = VectorSpace(name="text", encoder="text", model="fake", fingerprint="fake@1", dim=DIM)
    save_collection(d, CollectionManifest(
        name="syn", corpus="synthetic", corpus_fingerprint="x", modality="text", vectors={"text": space},
        indexes=KINDS, qdrant_mode="edge", count=N, complete=True,
    ))
    return d


@pytest.fixture
def coll(pristine: Path, tmp_path: Path) -> Path:
    d = tmp_path / "d"
    shutil.copytree(pristine, d)
    return d


def _points(d: Path) -> Path:
    return d / "faiss/syn/points"


def _poke(d: Path, fid: int, row: np.ndarray) -> None:
    """Overwrite one vector row in place (the file keeps its size)."""
    with open(_points(d) / "vectors.f32", "r+b") as f:
        f.seek(fid * DIM * 4)
        f.write(np.asarray(row, dtype=np.float32).tobytes())


def _sql(d: Path, statement: str) -> None:
    db = sqlite3.connect(_points(d) / "points.sqlite")
    try:
        db.execute(statement)
        db.commit()
    finally:
        db.close()


def _damage_lines(rep_differences: list[str]) -> list[str]:
    return [x for x in rep_differences if x.startswith("text/points:")]


def test_a_zeroed_vector_file_is_reported_with_its_rows_and_repair(coll: Path) -> None:
    s = _settings(coll)
    rep = verify(s, "syn")
    assert rep.ok and not rep.notes, (rep.differences, rep.notes)
    vf = _points(coll) / "vectors.f32"
    vf.write_bytes(bytes(vf.stat().st_size))  # same size, every byte zero
    rep = verify(s, "syn")
    assert not rep.ok
    (line,) = [x for x in _damage_lines(rep.differences) if "checksum" in x]
    assert f"{N} vector(s) in {vf} differ from the checksum" in line
    assert "fid 0 (id 'p0')" in line and "`simlookup ingest synthetic --name syn --index flat," in line
    assert not any("not unit length" in x for x in rep.differences)  # the damaged rows are reported once


@pytest.mark.parametrize("kind", KINDS)
def test_one_flipped_bit_names_exactly_its_point(coll: Path, kind: str) -> None:
    s = _settings(coll)
    save_collection(coll, CollectionManifest(  # a collection of this kind alone
        name="syn", corpus="synthetic", corpus_fingerprint="x", modality="text",
        vectors={"text": VectorSpace(name="text", encoder="text", model="fake", fingerprint="fake@1", dim=DIM)},
        indexes=[kind], qdrant_mode="edge", count=N, complete=True,
    ))
    row = _vectors()[137].copy()
    row.view(np.uint32)[3] ^= 1  # the lowest mantissa bit: still a unit vector to 1e-7
    _poke(coll, 137, row)
    rep = verify(s, "syn")
    assert [x for x in rep.differences if "fid" in x and "checksum" in x] == _damage_lines(rep.differences)
    (line,) = _damage_lines(rep.differences)
    assert line.startswith("text/points: 1 vector(s)") and "fid 137 (id 'p137')" in line and "p138" not in line


def test_nan_and_zero_rows_are_reported_where_no_checksum_exists(coll: Path) -> None:
    s = _settings(coll)
    _sql(coll, "DROP TABLE vector_crc")  # as a store written before checksums
    _poke(coll, 5, np.full(DIM, np.nan))
    _poke(coll, 9, np.zeros(DIM))
    _poke(coll, 11, np.full(DIM, 0.5))  # norm 2 in a cosine collection
    rep = verify(s, "syn")
    assert any("1 vector(s)" in x and "NaN or inf" in x and "fid 5 (id 'p5')" in x for x in rep.differences)
    assert any(
        "2 vector(s)" in x and "zero or not unit length" in x and "fid 9 (id 'p9'), fid 11 (id 'p11')" in x
        for x in rep.differences
    ), rep.differences
    assert any(f"{N} of {N} vector rows are not checksummed yet" in x for x in rep.notes)


def test_a_store_written_before_checksums_opens_and_gets_them_at_its_next_flush(coll: Path) -> None:
    s = _settings(coll)
    _sql(coll, "DROP TABLE vector_crc")
    with open_store(s, "syn", "hnsw", create=False, read_only=True) as st:  # read-only: opens, creates nothing
        assert st.search(_vectors()[:1], k=1)[0][0].id == "p0"
    assert not any(str(x).endswith("vector_crc") for x in _points(coll).iterdir())
    rep = verify(s, "syn")
    assert rep.ok and any("not checksummed yet" in x for x in rep.notes)
    with open_store(s, "syn", "flat", create=False) as st:
        st.flush()
    rep = verify(s, "syn")
    assert rep.ok and not rep.notes, rep.notes
    _poke(coll, 700, np.zeros(DIM))
    assert "fid 700 (id 'p700')" in " ".join(_damage_lines(verify(s, "syn").differences))


def test_flushes_record_each_new_row_once_in_chunks(tmp_path: Path) -> None:
    s = _settings(tmp_path / "d")
    _write(s, ["flat"], 0, 300)
    _write(s, ["flat"], 300, N)  # a second flush: appends to the partial first chunk
    ps = registry.acquire(_points(tmp_path / "d"), "re-ingest", read_only=True)
    try:
        crcs = ps.recorded_crcs()
        want = [zlib.crc32(r.tobytes()) for r in _vectors()]
        assert crcs.tolist() == want
        assert ps.check_vectors().damaged == []
    finally:
        registry.release(ps)
    db = sqlite3.connect(_points(tmp_path / "d") / "points.sqlite")
    try:
        assert db.execute("SELECT chunk, length(crcs) FROM vector_crc").fetchall() == [(0, N * 4)]
    finally:
        db.close()


def test_a_flush_recomputes_a_partial_chunk_that_went_missing(tmp_path: Path) -> None:
    s = _settings(tmp_path / "d")
    _write(s, ["flat"], 0, 300)
    writer = open_store(s, "syn", "flat", create=False)
    try:
        _sql(tmp_path / "d", "DELETE FROM vector_crc")  # the recorded start of the chunk the next flush extends
        writer.upsert([f"p{i}" for i in range(300, 500)], _vectors()[300:500], [{} for _ in range(200)])
        writer.flush()
        ps = pts.PointStore(_points(tmp_path / "d"), "re-ingest", read_only=True)
        try:
            assert ps.recorded_crcs().tolist() == [zlib.crc32(r.tobytes()) for r in _vectors()[:500]]
        finally:
            ps._close_files()  # noqa: SLF001 - a snapshot outside the registry
    finally:
        writer.close()


def test_rows_written_but_not_yet_flushed_are_no_false_alarm(tmp_path: Path) -> None:
    s = _settings(tmp_path / "d")
    _write(s, ["flat"], 0, 400)
    writer = open_store(s, "syn", "flat", create=False)
    try:
        vecs = _vectors()
        writer.upsert([f"p{i}" for i in range(400, 900)], vecs[400:900], [{} for _ in range(500)])
        ps = pts.PointStore(_points(tmp_path / "d"), "re-ingest", read_only=True)  # another process's view
        try:
            chk = ps.check_vectors()
        finally:
            ps._close_files()  # noqa: SLF001 - a snapshot outside the registry
        assert (chk.rows, chk.checked, chk.damaged, chk.non_finite, chk.not_unit) == (900, 400, [], [], [])
    finally:
        writer.close()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("payload", "why"), [("not json", "Expecting value"), ("[1, 2]", "a JSON list")])
def test_a_payload_that_is_not_json_names_its_row_and_repair(coll: Path, kind: str, payload: str, why: str) -> None:
    s = _settings(coll)
    _sql(coll, f"UPDATE points SET payload='{payload}' WHERE fid=1")
    where = rf"{_points(coll) / 'points.sqlite'}: the payload of row fid 1 \(id 'p1'\) is not a JSON object \({why}"
    with pytest.raises(CorruptIndexError, match=where + r".*UPDATE points SET payload='\{\}' WHERE fid=1"):
        open_store(s, "syn", kind, create=False, read_only=True)
    with Retriever(s, "syn") as r, pytest.raises(CorruptIndexError, match=where):
        r.search_vector(_vectors()[0], kind, k=3)
    rep = verify(s, "syn")
    assert any(x.startswith(f"text/{kind}: cannot open (CorruptIndexError: point store") and "fid 1" in x
               for x in rep.differences), rep.differences


def test_reingest_repairs_zeroed_vectors_and_a_fixed_payload_row(tmp_path: Path, minilm) -> None:  # type: ignore[no-untyped-def]
    s = _settings(tmp_path / "d")
    csv = tmp_path / "docs.csv"
    csv.write_text("id,text,n\n" + "".join(f"r{i},About trains on line {i}.,{i}\n" for i in range(30)))
    opts = IngestOptions(str(csv), "docs", indexes=["flat", "hnsw"], qdrant="none", progress=False)
    run_ingest(s, opts, encoders={"text": minilm})
    assert verify(s, "docs").ok
    vf = s.data_dir / "faiss/docs/points/vectors.f32"
    vf.write_bytes(bytes(vf.stat().st_size))
    assert any("30 vector(s)" in x and "checksum" in x for x in verify(s, "docs").differences)
    run_ingest(s, opts, encoders={"text": minilm})  # the repair verify names
    rep = verify(s, "docs")
    assert rep.ok, rep.differences
    # the damaged rows became garbage (30 of 60 rows), which the ingest's build compacted away
    assert not any("differ" in x or "garbage" in x for x in rep.notes), rep.notes
    assert not vf.exists() and vf.with_name("vectors.1.f32").exists()
    with Retriever(s, "docs") as r:
        assert r.search_text("About trains on line 7.", index="flat", k=1).hits[0].score > 0.99
    # a payload row that is not JSON: the repair its error names
    db = sqlite3.connect(s.data_dir / "faiss/docs/points/points.sqlite")
    fid = db.execute("SELECT fid FROM points WHERE id='r3'").fetchone()[0]
    db.execute("UPDATE points SET payload='{' WHERE fid=?", (fid,))
    db.commit()
    with pytest.raises(CorruptIndexError, match=f"fid {fid} \\(id 'r3'\\)"):
        run_ingest(s, opts, encoders={"text": minilm})
    db.execute("UPDATE points SET payload='{}' WHERE fid=?", (fid,))
    db.commit()
    db.close()
    run_ingest(s, opts, encoders={"text": minilm})
    assert verify(s, "docs").ok
    with open_store(s, "docs", "hnsw", create=False, read_only=True) as st:
        assert st.fetch(["r3"])["r3"][1]["n"] == 3
