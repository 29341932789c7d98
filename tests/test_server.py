"""The REST service through FastAPI's test client: every route, auth, limits, metrics, and schemathesis."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from ingest.job import IngestOptions, run_ingest  # noqa: E402
from retrieval.settings import ApiSettings, Settings  # noqa: E402
from simlookup.server.app import create_app  # noqa: E402

KEY = "test-key-123"
AUTH = {"X-API-Key": KEY}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, minilm) -> Settings:  # type: ignore[no-untyped-def]
    s = Settings(
        data_dir=tmp_path_factory.mktemp("srv") / "data",
        api=ApiSettings(key=KEY, max_k=20, max_text_chars=200, max_filter_conditions=2, max_upload_bytes=2048),
    )
    run_ingest(
        s, IngestOptions("stsb", "srv", indexes=["flat", "hnsw"], limit=300, progress=False), encoders={"text": minilm}
    )
    return s


@pytest.fixture(scope="module")
def client(served: Settings, minilm) -> TestClient:  # type: ignore[no-untyped-def]
    app = create_app(served, "srv", encoders={"text": minilm})  # reuse the session's loaded model
    with TestClient(app) as c:
        yield c


def test_text_search(client: TestClient) -> None:
    r = client.post("/search", json={"text": "A man is playing a flute.", "k": 3, "index": "hnsw"}, headers=AUTH)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert set(doc) == {"query", "index", "target", "took_ms", "hits", "mode"} and doc["index"] == "hnsw"
    assert doc["mode"] == "dense"  # every answer says its search mode (issue 27)
    assert len(doc["hits"]) == 3 and set(doc["hits"][0]) == {"id", "score", "payload"}
    assert "flute" in doc["hits"][0]["payload"]["text"].lower()
    r = client.post(
        "/search",
        json={"text": "news", "k": 4, "filter": {"genre": "main-news"}},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert r.status_code == 200 and all(h["payload"]["genre"] == "main-news" for h in r.json()["hits"])


def test_vector_search(client: TestClient, minilm) -> None:  # type: ignore[no-untyped-def]
    vec = minilm.encode_text(["A man is playing a flute."])[0].tolist()
    r = client.post("/search", json={"vector": vec, "k": 2, "index": "qdrant"}, headers=AUTH)
    assert r.status_code == 200 and r.json()["query"] == "<vector>" and len(r.json()["hits"]) == 2


def test_auth(client: TestClient) -> None:
    assert client.post("/search", json={"text": "x"}).status_code == 401
    assert client.post("/search", json={"text": "x"}, headers={"X-API-Key": "wrong"}).status_code == 401
    assert client.get("/indexes").status_code == 401
    assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"text": "x" * 201}, 413, "max_text_chars"),
        ({"text": "x", "filter": {"a": 1, "b": 2, "c": 3}}, 413, "max_filter_conditions"),
        ({"text": "x", "filter": {"$or": [{"a": 1}, {"b": 2}, {"c": 3}]}}, 413, "3 conditions"),  # leaves, not keys
        ({"text": "x", "filter": {"a": list(range(2000))}}, 413, "max_filter_values"),
        ({"text": "x", "k": 21}, 422, "above this service's limit of 20 hits (SIMLOOKUP_API__MAX_K)"),
        ({"text": "x", "hnsw_ef": 5000}, 422, "SIMLOOKUP_LIMITS__MAX_EF"),  # the same caps as in-process
        # one cap per parameter, the settings' (no hard-coded bound of the REST model answers first)
        ({"text": "x", "hnsw_ef": 10**9}, 422, "ef=1000000000 is above the limit of 4096 (SIMLOOKUP_LIMITS__MAX_EF)"),
        ({"text": "x", "nprobe": 10**9}, 422, "above the limit of 65536 (SIMLOOKUP_LIMITS__MAX_NPROBE)"),
        ({"text": "x", "rerank_factor": 500}, 422, "above the limit of 100 (SIMLOOKUP_LIMITS__MAX_RERANK)"),
        ({"text": "x", "index": "hnsw", "hnsw_ef": 4096, "k": 3}, 200, "hits"),  # at the cap: answered
        ({"text": "x", "vector": [0.1]}, 422, "exactly one"),
        ({"vector": [0.1, 0.2]}, 422, "dimensions"),
        ({"text": "x", "filter": {"colour": {"$bogus": 1}}}, 422, "unknown operator"),
        ({"text": "   "}, 422, "empty"),
        ({"text": "x", "index": "annoy"}, 404, "unknown index"),
        ({"text": "x", "target": "image"}, 404, "unknown target"),
        ({"text": "x", "surprise": 1}, 422, "surprise"),
        ({"text": "x", "k": True}, 422, "int"),  # not k=1
        ({"text": "x", "k": "5"}, 422, "int"),
    ],
)
def test_limits_and_errors(client: TestClient, body: dict, status: int, words: str) -> None:
    r = client.post("/search", json=body, headers=AUTH)
    assert r.status_code == status, r.text
    assert words in r.text


@pytest.mark.parametrize(
    "raw",
    [
        b'{"text": "x", "k": 1e400}',
        b'{"text": "x", "k": NaN}',
        b'{"text": "x", "k": -1e400}',
        b'{"text": NaN}',
        b'{"text": "x", "rerank": NaN}',
        b'{"text": "x", "vector": [Infinity, 0.1]}',
    ],
)
def test_non_finite_json_numbers_are_422_not_500(client: TestClient, raw: bytes) -> None:
    """Python's JSON reader accepts NaN and 1e400 (inf); FastAPI's own 422 handler could not echo them back."""
    r = client.post("/search", content=raw, headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"]
    r = client.post("/verify", content=b'{"sample": NaN}', headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 422, r.text


def test_image_upload_limits(client: TestClient) -> None:
    big = {"image": ("big.png", b"\x89PNG" + b"0" * 4096, "image/png")}
    r = client.post("/search/image", files=big, data={"index": "flat", "target": "text"}, headers=AUTH)
    assert r.status_code == 413 and "max_upload_bytes" in r.text
    small = {"image": ("s.png", b"\x89PNG0000", "image/png")}
    r = client.post("/search/image", files=small, data={"index": "flat", "target": "text"}, headers=AUTH)
    assert r.status_code == 422 and "CLIP" in r.text


def test_indexes_health_ready(client: TestClient) -> None:
    r = client.get("/indexes", headers=AUTH)
    assert r.status_code == 200
    idx = {i["index"]: i for i in r.json()["indexes"]}
    assert set(idx) == {"flat", "hnsw", "qdrant"}
    assert all(i["count"] == 300 and i["dim"] == 384 for i in idx.values())
    assert idx["flat"]["fingerprint"].startswith("all-MiniLM-L6-v2@")
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["status"] == "ready"


class OtherModel:
    """MiniLM's vectors under another model's fingerprint: an encoder the collection was not embedded with."""

    fingerprint = "other-model@0000000000000000"

    def __init__(self, enc) -> None:  # type: ignore[no-untyped-def]
        self.enc, self.dim = enc, enc.dim

    def encode_text(self, texts: list[str], batch_size: int | None = None):  # type: ignore[no-untyped-def]
        return self.enc.encode_text(texts, batch_size)

    def encode_queries(self, texts: list[str]):  # type: ignore[no-untyped-def]
        return self.enc.encode_queries(texts)

    def encode_query(self, text: str):  # type: ignore[no-untyped-def]
        return self.enc.encode_query(text)


def test_the_injected_encoder_serves(client: TestClient, minilm) -> None:  # type: ignore[no-untyped-def]
    assert client.app.state.retriever.encoder("text") is minilm  # type: ignore[attr-defined]  # not loaded again


def test_an_injected_encoder_of_another_model_is_refused(served: Settings, minilm) -> None:  # type: ignore[no-untyped-def]
    with TestClient(create_app(served, "srv", encoders={"text": OtherModel(minilm)})) as c:
        r = c.post("/search", json={"text": "A man is playing a flute.", "k": 3}, headers=AUTH)
    assert r.status_code == 422, r.text
    assert "other-model@0000000000000000" in r.json()["detail"] and minilm.fingerprint in r.json()["detail"]


def test_metrics_count_requests(client: TestClient) -> None:
    def count() -> float:
        text = client.get("/metrics").text
        line = next(
            (
                x
                for x in text.splitlines()
                if x.startswith("simlookup_requests_total{")
                and 'route="/search"' in x
                and 'index="flat"' in x
                and 'status="200"' in x
            ),
            None,
        )
        return float(line.rsplit(" ", 1)[1]) if line else 0.0

    before = count()
    for _ in range(3):
        assert client.post("/search", json={"text": "a dog", "index": "flat"}, headers=AUTH).status_code == 200
    assert count() == before + 3
    text = client.get("/metrics").text
    assert 'simlookup_stage_seconds_count{index="flat",stage="encode"}' in text
    assert 'simlookup_stage_seconds_count{index="flat",stage="search"}' in text


def test_openapi_schema(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/search", "/search/image", "/indexes", "/healthz", "/readyz", "/metrics"} <= set(spec["paths"])
    assert "SearchRequest" in spec["components"]["schemas"] and "SearchResponse" in spec["components"]["schemas"]


def test_schemathesis_finds_no_server_errors(client: TestClient) -> None:
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    codes: list[int] = []

    def check_operation(strategy: object) -> None:
        @settings(max_examples=15, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def check(case: object) -> None:
            response = case.call(headers=AUTH)  # type: ignore[attr-defined]
            codes.append(response.status_code)
            assert response.status_code < 500, (case, response.status_code, response.text[:300])

        check()

    operations = [op.ok() for op in schema.get_all_operations()]
    for operation in operations:
        check_operation(operation.as_strategy())
    assert len(operations) >= 6 and len(codes) >= 6 * 5
