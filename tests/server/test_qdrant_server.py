"""Against a real Qdrant server (QDRANT_URL, or testcontainers): settings applied, auth, ingest, outages,
snapshots. Skipped, with the reason, where no server can be had; never run against a stand-in."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest

from benchmarks.datasets import Dataset
from ingest.job import IngestOptions, run_ingest
from retrieval.errors import SimlookupError
from retrieval.settings import QdrantSettings, Settings
from retrieval.stores import open_store
from retrieval.stores.qdrant_client_store import QdrantClientStore, make_client
from retrieval.verify import verify
from tests.qdrant_server import QdrantServer

pytestmark = pytest.mark.qdrant_server


def server_settings(tmp: Path, srv: QdrantServer, **q: object) -> Settings:
    return Settings(
        data_dir=tmp / "data",
        qdrant=QdrantSettings(mode="server", url=srv.url, api_key=srv.api_key, **q),  # type: ignore[arg-type]
    )


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_collection_settings_are_applied(tmp_path: Path, qdrant_server: QdrantServer, data: Dataset) -> None:
    s = server_settings(tmp_path, qdrant_server, hnsw_m=24, hnsw_ef_construct=123, quantization="scalar")
    name = uniq("settings")
    st = open_store(s, name, "qdrant", dim=data.dim, payload_indexes={"group": "keyword", "rank": "integer"})
    try:
        info = st.client.get_collection(name)  # type: ignore[attr-defined]
        assert info.config.hnsw_config.m == 24 and info.config.hnsw_config.ef_construct == 123
        assert set(info.payload_schema) == {"group", "rank"}
        assert info.config.quantization_config is not None
        assert info.config.quantization_config.scalar is not None
        assert info.config.params.vectors.size == data.dim
        assert st.info()["hnsw"] == {"m": 24, "ef_construct": 123}
    finally:
        st.client.delete_collection(name)  # type: ignore[attr-defined]
        st.close()


def test_wrong_api_key_is_refused(tmp_path: Path, qdrant_server: QdrantServer) -> None:
    if not qdrant_server.api_key:
        pytest.skip("the server under test has no API key configured")
    s = Settings(data_dir=tmp_path, qdrant=QdrantSettings(mode="server", url=qdrant_server.url, api_key="wrong"))
    with pytest.raises(Exception, match="(?i)unauthori|403|401|invalid api key|forbidden"):
        open_store(s, uniq("auth"), "qdrant", dim=8)


def test_ingest_and_verify_on_server(tmp_path: Path, qdrant_server: QdrantServer, minilm) -> None:  # type: ignore[no-untyped-def]
    s = server_settings(tmp_path, qdrant_server)
    name = uniq("ingest")
    opts = IngestOptions("stsb", name, indexes=["flat", "hnsw"], limit=300, progress=False)
    first = run_ingest(s, opts, encoders={"text": minilm})
    assert first.counts == {"flat": 300, "hnsw": 300, "qdrant": 300}
    again = run_ingest(s, opts, encoders={"text": minilm})
    assert again.counts == first.counts
    assert verify(s, name).ok


def test_kill_and_resume_against_server(tmp_path: Path, qdrant_server: QdrantServer, minilm) -> None:  # type: ignore[no-untyped-def]
    from tests.test_ingest import kill_during_ingest

    s = server_settings(tmp_path, qdrant_server)
    name = uniq("kill")
    env = {"SIMLOOKUP_QDRANT__MODE": "server", "SIMLOOKUP_QDRANT__URL": qdrant_server.url}
    if qdrant_server.api_key:
        env["SIMLOOKUP_QDRANT__API_KEY"] = qdrant_server.api_key
    kill_during_ingest(s, name, 700, 100, env)
    done = run_ingest(
        s, IngestOptions("stsb", name, limit=700, shard_size=100, progress=False), encoders={"text": minilm}
    )
    assert done.counts == dict.fromkeys(["flat", "ivf", "ivfpq", "hnsw", "qdrant"], 700)
    assert verify(s, name).ok


def test_server_outage_mid_ingest_loses_nothing(tmp_path: Path, qdrant_server: QdrantServer, minilm) -> None:  # type: ignore[no-untyped-def]
    if qdrant_server.container is None:
        pytest.skip("stopping the server needs the testcontainers-managed container (QDRANT_URL was given)")
    s = server_settings(tmp_path, qdrant_server, retries=1, backoff_s=0.05, timeout_s=2)
    name = uniq("outage")
    opts = IngestOptions("stsb", name, indexes=["flat"], limit=1200, shard_size=100, progress=False)
    wrapped = qdrant_server.container.get_wrapped_container()

    def outage() -> None:
        time.sleep(1.0)
        wrapped.stop()

    t = threading.Thread(target=outage)
    t.start()
    with pytest.raises(SimlookupError):
        run_ingest(s, opts, encoders={"text": minilm})
    t.join()
    wrapped.start()
    time.sleep(3)
    qdrant_server.url = f"http://{qdrant_server.container.rest_host_address}"  # the mapped port may change
    s = server_settings(tmp_path, qdrant_server, retries=8, backoff_s=0.5)
    done = run_ingest(s, opts, encoders={"text": minilm})
    assert done.counts == {"flat": 1200, "qdrant": 1200}
    assert verify(s, name).ok


def test_snapshot_create_and_restore(tmp_path: Path, qdrant_server: QdrantServer, data: Dataset) -> None:
    s = server_settings(tmp_path, qdrant_server)
    name = uniq("snap")
    st = open_store(s, name, "qdrant", dim=data.dim)
    assert isinstance(st, QdrantClientStore)
    ids = data.point_ids()[:200]
    st.upsert(ids, data.xb[:200], [{"i": i} for i in range(200)])
    snap = st.snapshot()
    st.delete(ids[:50])
    assert st.count() == 150
    st.restore(snap)
    assert st.count() == 200 and st.ids() == set(ids)
    st.client.delete_collection(name)
    st.close()


def test_congruence_exact_mode(tmp_path: Path, qdrant_server: QdrantServer, data: Dataset) -> None:
    """The same exact queries give the same top-k ids and scores in FAISS Flat, Edge, local mode and the server."""
    from tests.test_congruence import assert_congruent, load_all

    server = server_settings(tmp_path, qdrant_server)
    stores = load_all(tmp_path, data, extra={"server": (server, uniq("cong"))})
    try:
        assert_congruent(stores, data)
    finally:
        stores["server"].client.delete_collection(stores["server"].name)  # type: ignore[attr-defined]
        for st in stores.values():
            st.close()


def test_make_client_points_at_server(qdrant_server: QdrantServer, tmp_path: Path) -> None:
    client = make_client(QdrantSettings(mode="server", url=qdrant_server.url, api_key=qdrant_server.api_key), tmp_path)
    try:
        assert isinstance(client.get_collections().collections, list)
    finally:
        client.close()
