"""Readers follow writers: a read-only store, a Retriever and the service see what another process flushed,
never a false corruption while it flushes, and say so when the collection is incomplete (issue 21, items 1, 4)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks.datasets import Dataset, clustered
from retrieval.collection import CollectionManifest, VectorSpace, save_collection
from retrieval.errors import StoreNotFoundError
from retrieval.retriever import Retriever
from retrieval.settings import QdrantSettings, Settings
from retrieval.stores import FAISS_KINDS, open_store

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def vecs() -> Dataset:
    return clustered(n=600, d=16, nq=5, seed=3)


def _settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", qdrant=QdrantSettings(mode="edge"))


def _run_writer(data_dir: Path, body: str, wait: bool = True) -> subprocess.Popen[str]:
    """Run ``body`` in another process with ``s`` (its settings), ``np`` and ``open_store`` at hand."""
    code = textwrap.dedent(
        f"""
        import sys, numpy as np
        sys.path.insert(0, {str(ROOT)!r})
        from retrieval.settings import QdrantSettings, Settings
        from retrieval.stores import open_store
        s = Settings(data_dir={str(data_dir)!r}, qdrant=QdrantSettings(mode="edge"))
        """
    ) + textwrap.dedent(body)
    proc = subprocess.Popen([sys.executable, "-c", code], text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if wait:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    return proc


def _write(settings: Settings, name: str, kind: str, data: Dataset, n: int) -> None:
    st = open_store(settings, name, kind, dim=data.dim)
    st.upsert(data.point_ids()[:n], data.xb[:n], [{"i": i} for i in range(n)])
    st.build()
    st.close()


@pytest.mark.parametrize("kind", FAISS_KINDS)
def test_read_only_store_follows_a_writer_in_another_process(tmp_path: Path, vecs: Dataset, kind: str) -> None:
    s = _settings(tmp_path)
    _write(s, "c", kind, vecs, 600)
    ro = open_store(s, "c", kind, create=False, read_only=True)
    gone = vecs.point_ids()[0]
    assert ro.count() == 600
    assert ro.search(vecs.xb[0], k=1)[0][0].id == gone
    np.save(tmp_path / "x.npy", vecs.xb)
    _run_writer(
        s.data_dir,
        f"""
        st = open_store(s, "c", {kind!r}, create=False)
        ids = ["p%d" % i for i in range(600)]
        st.delete(ids[:300])                                   # a re-ingest that removed half the rows
        x = np.load({str(tmp_path / "x.npy")!r})
        st.upsert(["new"], x[:1] * -1, [{{"i": -1}}])
        st.build()
        st.close()
        """,
    )
    assert ro.count() == 301  # before the fix: 600, and searches kept answering deleted rows
    hits = ro.search(vecs.xb[0], k=5)[0]
    assert gone not in {h.id for h in hits}
    assert {h.id for h in hits} <= ro.ids()
    assert ro.search(-vecs.xb[0], k=1)[0][0].id == "new"
    assert ro.fetch([gone]) == {}
    ro.close()


def test_unchanged_store_does_not_reload(tmp_path: Path, vecs: Dataset) -> None:
    s = _settings(tmp_path)
    _write(s, "c", "hnsw", vecs, 600)
    ro = open_store(s, "c", "hnsw", create=False, read_only=True)
    for _ in range(5):
        ro.search(vecs.xb[:3], k=3)
    assert ro.info()["searches"].get("reloads", 0) == 0
    ro.close()


def test_removed_index_is_a_clear_error_for_a_reader(tmp_path: Path, vecs: Dataset) -> None:
    s = _settings(tmp_path)
    _write(s, "c", "flat", vecs, 100)
    ro = open_store(s, "c", "flat", create=False, read_only=True)
    (s.data_dir / "faiss" / "c" / "flat" / "manifest.json").unlink()
    with pytest.raises(StoreNotFoundError, match="removed by another process"):
        ro.search(vecs.xb[0], k=1)
    ro.close()


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_read_only_opens_beside_a_flushing_writer_never_see_corruption(
    tmp_path: Path, vecs: Dataset, kind: str
) -> None:
    """A writer upserting 50 points and flushing in a loop; read-only opens in this process meanwhile see the
    last complete state (the old or the new index), never a false 'does not match its manifest checksum'."""
    s = _settings(tmp_path)
    _write(s, "w", kind, vecs, 300)
    np.save(tmp_path / "x.npy", vecs.xb)
    writer = _run_writer(
        s.data_dir,
        f"""
        import time
        x = np.load({str(tmp_path / "x.npy")!r})
        st = open_store(s, "w", {kind!r}, create=False)
        print("ready", flush=True)
        for r in range(60):
            st.upsert(["r%d-%d" % (r, j) for j in range(50)], x[300 + (r * 50 + np.arange(50)) % 300])
            st.flush()
        st.close()
        """,
        wait=False,
    )
    assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
    opens, errors, counts = 0, [], set()
    while writer.poll() is None:
        try:
            ro = open_store(s, "w", kind, create=False, read_only=True)
            try:
                counts.add(ro.count())
                hits = ro.search(vecs.xb[:2], k=3)
                assert all(len(h) == 3 for h in hits)
            finally:
                ro.close()
            opens += 1
        except Exception as exc:  # noqa: BLE001 - every failure is collected and reported below
            errors.append(f"{type(exc).__name__}: {exc}")
    _, err = writer.communicate()
    assert writer.returncode == 0, err
    assert opens >= 3
    assert not errors, f"{len(errors)} of {opens + len(errors)} opens failed; first: {errors[0]}"
    assert all((c - 300) % 50 == 0 for c in counts)  # whole upserts only


def _collection(s: Settings, name: str, dim: int, complete: bool, count: int) -> None:
    space = VectorSpace(name="text", encoder="text", model="m", fingerprint="fp", dim=dim)
    save_collection(
        s.data_dir,
        CollectionManifest(
            name=name, corpus="c.csv", corpus_fingerprint="x", modality="text", vectors={"text": space},
            indexes=["flat"], count=count, complete=complete,
        ),
    )


def test_retriever_follows_a_re_ingest_and_says_when_incomplete(tmp_path: Path, vecs: Dataset) -> None:
    s = _settings(tmp_path)
    st = open_store(s, "ca", "flat", dim=vecs.dim, fingerprint="fp")
    st.upsert(vecs.point_ids()[:60], vecs.xb[:60])
    st.close()
    _collection(s, "ca", vecs.dim, True, 60)
    with Retriever(s, "ca") as r:
        res = r.search_vector(vecs.xb[0], index="flat", k=60)
        assert len(res.hits) == 60 and res.warnings == []
        # another process starts a re-ingest: the manifest says incomplete while it writes
        _collection(s, "ca", vecs.dim, False, 0)
        res = r.search_vector(vecs.xb[0], index="flat", k=60)
        assert res.warnings and "incomplete" in res.warnings[0] and "simlookup ingest c.csv" in res.warnings[0]
        assert res.to_dict()["warnings"] == res.warnings
        _run_writer(
            s.data_dir,
            """
            st = open_store(s, "ca", "flat", create=False)
            st.delete(["p%d" % i for i in range(30, 60)])
            st.close()
            """,
        )
        _collection(s, "ca", vecs.dim, True, 30)
        res = r.search_vector(vecs.xb[0], index="flat", k=60)
        assert len(res.hits) == 30 and res.warnings == []  # before the fix: 60 hits, 30 of them deleted rows
        assert "warnings" not in res.to_dict()


def test_cli_search_of_an_incomplete_collection_warns_on_stderr(tmp_path: Path, vecs: Dataset) -> None:
    s = _settings(tmp_path)
    st = open_store(s, "inc", "flat", dim=vecs.dim, fingerprint="fp")
    st.upsert(vecs.point_ids()[:10], vecs.xb[:10])
    st.close()
    _collection(s, "inc", vecs.dim, False, 0)
    vec = json.dumps(vecs.xb[0].tolist())
    env = {"SIMLOOKUP_DATA_DIR": str(s.data_dir), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-m", "simlookup", "search", "--vector", vec, "--name", "inc", "--index", "flat", "-k", "3",
         "--json"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "incomplete" in out.stderr
    assert len(json.loads(out.stdout)["hits"]) == 3
    assert json.loads(out.stdout)["warnings"]


def test_reloading_reader_keeps_answering_during_many_reloads(tmp_path: Path, vecs: Dataset) -> None:
    """Searches from several threads while the reader reloads: each answer comes from one whole snapshot."""
    import threading

    s = _settings(tmp_path)
    _write(s, "t", "hnsw", vecs, 300)
    ro = open_store(s, "t", "hnsw", create=False, read_only=True)
    np.save(tmp_path / "x.npy", vecs.xb)
    writer = _run_writer(
        s.data_dir,
        f"""
        x = np.load({str(tmp_path / "x.npy")!r})
        st = open_store(s, "t", "hnsw", create=False)
        for r in range(20):
            st.upsert(["r%d-%d" % (r, j) for j in range(10)], x[300 + r * 10: 310 + r * 10])
            st.flush()
        st.close()
        """,
        wait=False,
    )
    bad: list[str] = []

    def loop() -> None:
        while writer.poll() is None:
            try:
                for hits in ro.search(vecs.xb[:4], k=5):
                    if len(hits) != 5 or len({h.id for h in hits}) != 5:
                        bad.append(f"hits {[h.id for h in hits]}")
            except Exception as exc:  # noqa: BLE001
                bad.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=loop) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    writer.communicate()
    time.sleep(0.01)
    assert not bad, bad[:3]
    assert ro.count() == 500
    ro.close()


def test_service_follows_a_re_ingest(tmp_path: Path, vecs: Dataset) -> None:
    """The issue's case: `serve` keeps running while another process removes 30 of 60 rows: /search and
    /indexes answer from the new state, and an incomplete collection is flagged in the response."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from simlookup.server.app import create_app

    s = _settings(tmp_path)
    st = open_store(s, "srv", "flat", dim=vecs.dim, fingerprint="fp")
    st.upsert(vecs.point_ids()[:60], vecs.xb[:60])
    st.close()
    _collection(s, "srv", vecs.dim, True, 60)
    body = {"vector": vecs.xb[0].tolist(), "k": 60, "index": "flat"}
    with TestClient(create_app(s, "srv")) as c:
        assert len(c.post("/search", json=body).json()["hits"]) == 60
        assert c.get("/indexes").json()["indexes"][0]["count"] == 60
        _collection(s, "srv", vecs.dim, False, 0)
        doc = c.post("/search", json=body).json()
        assert "incomplete" in doc["warnings"][0]
        _run_writer(
            s.data_dir,
            """
            st = open_store(s, "srv", "flat", create=False)
            st.delete(["p%d" % i for i in range(30, 60)])
            st.close()
            """,
        )
        _collection(s, "srv", vecs.dim, True, 30)
        doc = c.post("/search", json=body).json()
        assert len(doc["hits"]) == 30 and "warnings" not in doc
        assert c.get("/indexes").json()["indexes"][0]["count"] == 30


# ---- a collection dropped and created again under the same name (adversarial pass after issues 21 and 23) ----
_RECREATE = """
from retrieval.catalog import drop_collection
from retrieval.collection import CollectionManifest, VectorSpace, save_collection
drop_collection(s, {name!r})
rng = np.random.default_rng(7)
x = rng.standard_normal(({n}, {dim})).astype(np.float32)
for kind in {kinds!r}:
    st = open_store(s, {name!r}, kind, dim={dim}, fingerprint="fp2")
    st.upsert(["q%d" % i for i in range({n})], x, [{{"new": True}}] * {n})
    st.build()
    st.close()
np.save({out!r}, x)
space = VectorSpace(name="text", encoder="text", model="m2", fingerprint="fp2", dim={dim})
save_collection(s.data_dir, CollectionManifest(name={name!r}, corpus="new.csv", corpus_fingerprint="y",
                modality="text", vectors={{"text": space}}, indexes={kinds!r}, count={n}, complete=True))
"""


def _recreate(s: Settings, tmp_path: Path, name: str, dim: int, kinds: list[str], n: int = 60) -> np.ndarray:
    """Another process drops the collection and ingests a new one under the same name; its vectors."""
    out = tmp_path / f"new-{dim}.npy"
    _run_writer(s.data_dir, _RECREATE.format(name=name, n=n, dim=dim, kinds=kinds, out=str(out)))
    return np.load(out)


def _old_collection(s: Settings, name: str, vecs: Dataset, n: int = 60) -> None:
    st = open_store(s, name, "flat", dim=vecs.dim, fingerprint="fp")
    st.upsert(vecs.point_ids()[:n], vecs.xb[:n])  # one write: the new collection's point store has the same seq
    st.build()
    st.close()
    _collection(s, name, vecs.dim, True, n)


def test_retriever_follows_a_drop_and_re_create_of_the_same_shape(tmp_path: Path, vecs: Dataset) -> None:
    """Before the fix: the reader kept answering the dropped points (p*) from its old snapshot."""
    s = _settings(tmp_path)
    _old_collection(s, "dr", vecs)
    with Retriever(s, "dr") as r:
        assert r.search_vector(vecs.xb[0], index="flat", k=1).hits[0].id == "p0"
        x = _recreate(s, tmp_path, "dr", vecs.dim, ["flat"])
        res = r.search_vector(x[5], index="flat", k=60)
        assert {h.id[0] for h in res.hits} == {"q"} and res.hits[0].id == "q5"
        assert res.hits[0].payload == {"new": True}
        assert r.manifest.corpus == "new.csv" and r.store("flat").count() == 60


def test_service_follows_a_drop_and_re_create_with_another_dim_and_index(tmp_path: Path, vecs: Dataset) -> None:
    """The new collection is 8-d and has hnsw only: the service answers from it (or refuses), never from the
    dropped 16-d flat index."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from simlookup.server.app import create_app

    s = _settings(tmp_path)
    _old_collection(s, "dd", vecs)
    with TestClient(create_app(s, "dd")) as c:
        body = {"vector": vecs.xb[0].tolist(), "k": 5, "index": "flat"}
        assert c.post("/search", json=body).json()["hits"][0]["id"] == "p0"
        x = _recreate(s, tmp_path, "dd", 8, ["hnsw"])
        new = c.post("/search", json={"vector": x[3].tolist(), "k": 5, "index": "hnsw"})
        assert new.status_code == 200, new.text  # not "unknown index 'hnsw'" nor "the index has 16 dimensions"
        assert new.json()["hits"][0]["id"] == "q3"
        old = c.post("/search", json=body)
        assert old.status_code == 404 and "unknown index 'flat'" in old.json()["detail"], old.text
        idx = c.get("/indexes").json()["indexes"]
        assert [(i["index"], i["dim"], i["count"]) for i in idx] == [("hnsw", 8, 60)]


def test_dropped_collection_is_an_error_for_a_reader_not_an_answer(tmp_path: Path, vecs: Dataset) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from simlookup.server.app import create_app

    s = _settings(tmp_path)
    _old_collection(s, "gone", vecs)
    r = Retriever(s, "gone")
    assert len(r.search_vector(vecs.xb[0], index="flat", k=3).hits) == 3
    with TestClient(create_app(s, "gone")) as c:
        body = {"vector": vecs.xb[0].tolist(), "k": 3, "index": "flat"}
        assert c.post("/search", json=body).status_code == 200
        _run_writer(s.data_dir, 'from retrieval.catalog import drop_collection\ndrop_collection(s, "gone")')
        resp = c.post("/search", json=body)
        assert resp.status_code == 404 and "was removed" in resp.json()["detail"], resp.text
        assert c.get("/indexes").status_code == 404
    with pytest.raises(StoreNotFoundError, match="was removed"):
        r.search_vector(vecs.xb[0], index="flat", k=3)
    r.close()


def test_read_only_store_follows_a_store_re_created_under_its_name(tmp_path: Path, vecs: Dataset) -> None:
    """A bare read-only store (no collection manifest): its folder deleted and written again with as many
    writes (the same point-store seq). Same shape: it follows the new store; another dim: a clear error."""
    s = _settings(tmp_path)
    _write(s, "bare", "flat", vecs, 100)
    ro = open_store(s, "bare", "flat", create=False, read_only=True)
    assert ro.search(vecs.xb[0], k=1)[0][0].id == "p0"
    remake = """
    import shutil
    shutil.rmtree(s.data_dir / "faiss" / "bare")
    x = np.random.default_rng(1).standard_normal((100, {dim})).astype(np.float32)
    st = open_store(s, "bare", "flat", dim={dim})
    st.upsert(["q%d" % i for i in range(100)], x, [{{"i": i}} for i in range(100)])
    st.build()
    st.close()
    np.save({out!r}, x)
    """
    _run_writer(s.data_dir, remake.format(dim=vecs.dim, out=str(tmp_path / "b.npy")))
    x = np.load(tmp_path / "b.npy")
    assert ro.search(x[7], k=1)[0][0].id == "q7"
    assert ro.fetch(["p0"]) == {} and ro.count() == 100
    _run_writer(s.data_dir, remake.format(dim=8, out=str(tmp_path / "b8.npy")))
    with pytest.raises(StoreNotFoundError, match="re-created.*8-d.*open it again"):
        ro.search(x[7], k=1)
    ro.close()


class _HashEncoder:
    """A deterministic encoder per model name (each model maps a text to a different unit vector)."""

    def __init__(self, model: str, dim: int = 8) -> None:
        self.model, self._dim = model, dim

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def fingerprint(self) -> str:
        return f"fp-{self.model}"

    def encode_query(self, text: str) -> np.ndarray:
        rng = np.random.default_rng(abs(hash((self.model, text))) % 2**32)
        v = rng.normal(size=self._dim).astype(np.float32)
        return v / np.linalg.norm(v)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return np.stack([self.encode_query(t) for t in texts])

    def encode_text(self, texts: list[str], batch_size: int | None = None) -> np.ndarray:
        return self.encode_queries(texts)


def test_a_retriever_loads_the_new_model_of_a_collection_re_created_with_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dropped and re-ingested with another model: the next text search encodes with the new collection's model
    (it used to keep the old encoder and refuse every query as 'settings differ')."""
    import retrieval.retriever as retriever_mod
    from retrieval.catalog import drop_collection
    from retrieval.collection import Collection, CollectionManifest, VectorSpace

    loads: list[str | None] = []

    def fake_load(settings: Settings, kind: str, model: str | None = None) -> _HashEncoder:
        loads.append(model)
        return _HashEncoder(model or "default")

    monkeypatch.setattr(retriever_mod, "load_encoder", fake_load)
    s = Settings(data_dir=tmp_path / "d")

    def ingest(model: str) -> None:
        enc = _HashEncoder(model)
        space = VectorSpace(name="text", encoder="text", model=model, fingerprint=enc.fingerprint, dim=enc.dim)
        m = CollectionManifest(name="c", corpus="t", corpus_fingerprint=model, modality="text",
                               vectors={"text": space}, indexes=["flat"], complete=True)
        coll = Collection(s, "c", read_only=False, manifest=m)
        coll.store("flat", create=True)
        texts = ["alpha", "beta", "gamma"]
        coll.upsert([f"{model}-{t}" for t in texts], enc.encode_text(texts), [{} for _ in texts])
        coll.build()
        coll.flush()
        coll.save()
        coll.close()

    ingest("m1")
    with retriever_mod.Retriever(s, "c") as r:
        assert r.search_text("beta", index="flat", k=1).hits[0].id == "m1-beta"
        drop_collection(s, "c")
        ingest("m2")
        assert r.search_text("beta", index="flat", k=1).hits[0].id == "m2-beta"
        assert r.search_text("gamma", index="flat", k=1).hits[0].id == "m2-gamma"
    assert loads == ["m1", "m2"]  # loaded again once, not per query
