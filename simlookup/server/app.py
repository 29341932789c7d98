"""The FastAPI app: search by text, vector or uploaded image; indexes, health, readiness and Prometheus metrics.

Encoders and stores load once and are shared; encoding and search run on a bounded thread pool off the event
loop. Limits answer 413 (too large) or 422 (invalid), an unknown index 404, a missing or wrong key 401.
"""

from __future__ import annotations

import hmac
import json
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, Response, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from retrieval.batch import Query, search_batch
from retrieval.encoders import Encoder
from retrieval.errors import (
    DimensionMismatchError,
    FilterError,
    InvalidInputError,
    ModelNotFoundError,
    SimlookupError,
    StoreNotFoundError,
)
from retrieval.filters import Filter
from retrieval.keyword.fusion import Fusion
from retrieval.retriever import Retriever, SearchResult
from retrieval.settings import Settings
from retrieval.stores import INDEX_NAMES, SearchParams
from retrieval.stores.vector_checks import as_float32
from simlookup.server.batching import MicroBatcher, QueueFullError
from simlookup.server.limits import BodyLimit
from simlookup.server.metrics import Metrics, RequestMetrics
from simlookup.server.models import (
    Health,
    IndexesResponse,
    IndexInfo,
    Problem,
    SearchRequest,
    SearchResponse,
    VerifyRequest,
    VerifyResponse,
)

MAX_PENDING = 1024  # queries waiting for a batch beyond this get 503 (a burst, not a steady load)
BODY_SLACK = 64 * 1024  # bytes of form fields and JSON around the largest allowed upload

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "missing or wrong API key"},
    404: {"model": Problem, "description": "unknown index or vector space"},
    413: {"model": Problem, "description": "a size limit was exceeded"},
    422: {"model": Problem, "description": "invalid request"},
    503: {"model": Problem, "description": "too many queries waiting; retry shortly"},
}


DOCS_STATIC = "/docs-static"


def add_offline_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` with their script, stylesheet and icon served by the app itself from
    the ``fastapi-offline`` package's files, so the pages work on a machine without internet (FastAPI's own
    pages load them from a public CDN)."""
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles

    assets = docs_assets()
    app.mount(DOCS_STATIC, StaticFiles(directory=str(assets)), name="docs-static")
    redirect = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}{redirect}",
            swagger_js_url=f"{root}{DOCS_STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_STATIC}/favicon.png",
        )

    @app.get(redirect, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{DOCS_STATIC}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{DOCS_STATIC}/favicon.png",
            with_google_fonts=False,
        )


def docs_assets() -> Path:
    """The folder of Swagger UI's and ReDoc's files (package ``fastapi-offline``, in the serve extra)."""
    import importlib.util

    found = importlib.util.find_spec("fastapi_offline")
    if found is None or not found.submodule_search_locations:
        raise SimlookupError(
            "the service's /docs page needs the package fastapi-offline (Swagger UI's files, served offline): "
            "pip install 'simlookup[serve]'"
        )
    folder = Path(next(iter(found.submodule_search_locations))) / "static"
    missing = [f for f in DOCS_FILES if not (folder / f).is_file()]
    if missing:
        raise SimlookupError(f"{folder} lacks {missing}: reinstall fastapi-offline (pip install 'simlookup[serve]')")
    return folder


DOCS_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")


def create_app(settings: Settings, name: str, encoders: Mapping[str, Encoder] | None = None) -> FastAPI:
    """Build the app for one collection; stores and encoders open once, read-only, at start-up.

    ``encoders``: already loaded encoders by kind ('text', 'clip') to serve with instead of loading the
    collection's own (tests, or a process that holds the model); their fingerprints are still checked.
    """
    import anyio

    api = settings.api
    retriever = Retriever(settings, name, read_only=True, encoders=encoders)
    metrics = Metrics()
    limiter = anyio.CapacityLimiter(api.workers)
    key_header = APIKeyHeader(name="X-API-Key", auto_error=False)
    bearer = HTTPBearer(auto_error=False)

    def in_thread(fn: Callable[[], Any]) -> Any:
        return anyio.to_thread.run_sync(fn, limiter=limiter)

    def run_batch(queries: Any) -> list[SearchResult | SimlookupError]:
        return search_batch(retriever, queries)

    batchers: dict[str, MicroBatcher[Query, SearchResult]] = {
        kind: MicroBatcher(
            run_batch,
            window_s=api.batch_window_ms / 1e3,
            max_batch=api.max_batch,
            max_pending=MAX_PENDING,
            to_thread=in_thread,
            observe=metrics.observer(kind),
            concurrency=api.batch_concurrency,
        )
        for kind in ("text", "image")
    }

    def require_key(
        x_api_key: str | None = Depends(key_header), auth: HTTPAuthorizationCredentials | None = Depends(bearer)
    ) -> None:
        if api.key is None:
            return
        given = x_api_key or (auth.credentials if auth else None)
        if not given or not hmac.compare_digest(given.encode(), api.key.get_secret_value().encode()):
            raise HTTPException(401, "missing or wrong API key (send X-API-Key or Authorization: Bearer)")

    app = FastAPI(
        title="simlookup",
        version="0.1.0",
        description=f"Semantic search over the collection '{name}' (FAISS and Qdrant).",
        docs_url=None,  # served below from files installed with the package: no CDN, so offline too
        redoc_url=None,
    )
    add_offline_docs(app)
    app.state.retriever = retriever
    app.add_middleware(BodyLimit, limit=api.max_upload_bytes + BODY_SLACK)

    app.add_middleware(RequestMetrics, metrics=metrics)

    @app.exception_handler(SimlookupError)
    async def simlookup_error(request: Request, exc: SimlookupError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=_status(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        """422 with FastAPI's error list, the offending inputs made JSON-safe (NaN or 1e400 made the default
        handler fail with a 500)."""
        return JSONResponse({"detail": _json_safe(exc.errors())}, status_code=422)

    @app.exception_handler(QueueFullError)
    async def queue_full(request: Request, exc: QueueFullError) -> JSONResponse:
        return JSONResponse({"detail": f"service busy: {exc}"}, status_code=503, headers={"Retry-After": "1"})

    def check_common(request: Request, index: str, k: int, flt: dict[str, Any] | None, target: str | None) -> Filter:
        request.scope["simlookup_index"] = index if index in INDEX_NAMES else "unknown"
        retriever.refresh()  # one stat: an ingest, or a drop and a new ingest, elsewhere since the last request
        m = retriever.manifest
        if index not in m.indexes:
            raise HTTPException(404, f"unknown index {index!r}: this service has {m.indexes}")
        if target is not None and target not in m.vectors:
            raise HTTPException(404, f"unknown target {target!r}: this collection has {sorted(m.vectors)}")
        if k > api.max_k:
            raise HTTPException(422, f"k={k} is above this service's limit of {api.max_k} hits (SIMLOOKUP_API__MAX_K)")
        parsed = Filter.from_dict(flt)
        if parsed.condition_count > api.max_filter_conditions:
            raise HTTPException(
                413,
                f"filter has {parsed.condition_count} conditions, above max_filter_conditions="
                f"{api.max_filter_conditions}",
            )
        if parsed.value_count > api.max_filter_values:
            raise HTTPException(
                413, f"filter has {parsed.value_count} values, above max_filter_values={api.max_filter_values}"
            )
        return parsed

    def observe_stages(res: SearchResult) -> None:
        for stage in ("encode", "search"):
            if f"{stage}_ms" in res.timings:
                metrics.stage.labels(stage, res.index).observe(res.timings[f"{stage}_ms"] / 1e3)

    def answer(res: SearchResult, label: str, t0: float, fusion: Fusion | None = None) -> Response:
        """The SearchResponse document, serialised once (the hits come from the stores as plain JSON data)."""
        observe_stages(res)
        doc: dict[str, Any] = {
            "query": label,
            "index": res.index,
            "target": res.target,
            "took_ms": (time.perf_counter() - t0) * 1e3,
            "hits": [{"id": h.id, "score": float(h.score), "payload": h.payload} for h in res.hits],
            "mode": res.mode,
        }
        if fusion is not None:
            doc |= {"fusion": fusion.method, "alpha": fusion.alpha}
        if res.warnings:
            doc["warnings"] = res.warnings
        return Response(json.dumps(doc, default=str), media_type="application/json")

    def request_fusion(req: SearchRequest) -> Fusion | None:
        """The fusion of a hybrid request (the settings' defaults for what it leaves out); 'fusion' and 'alpha'
        on another mode, and 'vector' on a keyword or hybrid one, are refused (422)."""
        if req.mode != "dense" and req.text is None:
            raise HTTPException(422, f"a {req.mode} search takes 'text' (the keyword leg reads words, not vectors)")
        if req.mode != "hybrid":
            if req.fusion is not None or req.alpha is not None:
                raise HTTPException(422, f"'fusion' and 'alpha' tune a hybrid search, not a {req.mode} one")
            return None
        ks = settings.keyword
        return Fusion(req.fusion or ks.fusion, ks.alpha if req.alpha is None else req.alpha, ks.rrf_k)

    @app.post("/search", response_model=SearchResponse, responses=ERRORS, dependencies=[Depends(require_key)])
    async def search(req: SearchRequest, request: Request) -> Response:
        """Search by text (encoded by the collection's model, micro-batched) or by a raw vector; ``mode`` keyword
        (BM25 on the collection's keyword leg) or hybrid (both legs, fused by ``fusion`` with ``alpha``) by text."""
        flt = check_common(request, req.index, req.k, req.filter, req.target)
        if (req.text is None) == (req.vector is None):
            raise HTTPException(422, "give exactly one of 'text' and 'vector'")
        fusion = request_fusion(req)
        t0 = time.perf_counter()
        params = req.search_params()
        if req.text is not None:
            if len(req.text) > api.max_text_chars:
                raise HTTPException(
                    413, f"text has {len(req.text)} characters, above max_text_chars={api.max_text_chars}"
                )
            if not req.text.strip():
                raise HTTPException(422, "the query text is empty")
            query = Query("text", req.text, req.index, req.k, flt, params, req.target, req.mode, fusion)
            return answer(await batchers["text"].submit(query), req.text, t0, fusion)
        target = req.target or ("text" if retriever.manifest.modality == "text" else "image")
        dim = retriever.manifest.vectors[target].dim
        if len(req.vector) != dim:  # type: ignore[arg-type]
            raise HTTPException(422, f"vector has {len(req.vector)} dimensions, the index has {dim}")  # type: ignore[arg-type]
        vec = as_float32(req.vector)  # a component beyond float32: 422 (the cast would make it inf)
        res = await in_thread(lambda: retriever.search_vector(vec, req.index, req.k, flt, params, target))
        return answer(res, "<vector>", t0)

    @app.post("/search/image", response_model=SearchResponse, responses=ERRORS, dependencies=[Depends(require_key)])
    async def search_image(
        request: Request,
        image: UploadFile = File(..., description="the query image"),
        k: int = Form(10, ge=1),
        index: str = Form("flat"),
        target: str = Form("image"),
        rerank: bool = Form(False),
        filter: str | None = Form(None, description='a JSON filter, as in POST /search: {"label": 3}'),
    ) -> Response:
        """Search by an uploaded image (CLIP image tower, micro-batched) in the image or caption space."""
        spec = _json_filter(filter)
        flt = check_common(request, index, k, spec, target)
        data = await image.read(api.max_upload_bytes + 1)
        if len(data) > api.max_upload_bytes:
            raise HTTPException(413, f"upload larger than max_upload_bytes={api.max_upload_bytes}")
        if retriever.manifest.vectors[target].encoder != "clip":
            raise HTTPException(422, "this collection has no CLIP vectors: image queries need an image collection")
        t0 = time.perf_counter()
        query = Query("image", data, index, k, flt, SearchParams(rerank=10 if rerank else None), target)
        return answer(await batchers["image"].submit(query), image.filename or "<image>", t0)

    @app.post("/verify", response_model=VerifyResponse, responses=ERRORS, dependencies=[Depends(require_key)])
    async def verify_route(req: VerifyRequest) -> VerifyResponse:
        """`simlookup verify` in this process, on the stores it already has open."""
        from retrieval.verify import verify

        rep = await in_thread(lambda: verify(settings, name, sample=req.sample, collection=retriever.collection))
        return VerifyResponse(**rep.to_dict())

    @app.get(
        "/indexes", response_model=IndexesResponse, responses={401: ERRORS[401]}, dependencies=[Depends(require_key)]
    )
    async def indexes() -> IndexesResponse:
        """What is loaded: per index and vector space, model, dim, kind and count."""

        def collect() -> list[IndexInfo]:
            out = []
            retriever.refresh()
            m = retriever.manifest
            for index in m.indexes:
                for target, space in m.vectors.items():
                    st = retriever.store(index, target)
                    op = retriever.collection.tuned(index, target)
                    keys = ("params", "recall", "target", "k", "reached", "count", "at")
                    tuned = {key: op[key] for key in keys} if op else None
                    out.append(
                        IndexInfo(
                            index=index,
                            target=target,
                            model=space.model,
                            fingerprint=st.fingerprint,
                            dim=st.dim,
                            kind=index,
                            count=st.count(),
                            tuned=tuned,
                        )
                    )
            return out

        m = retriever.manifest
        return IndexesResponse(
            name=m.name,
            corpus=m.corpus,
            modality=m.modality,
            indexes=await in_thread(collect),
        )

    @app.get("/healthz", response_model=Health)
    async def healthz() -> Health:
        """Liveness: the process answers, and says which collection it serves."""
        return Health(status="ok", detail={"name": name})

    @app.get("/readyz", response_model=Health, responses={503: {"model": Health}})
    async def readyz() -> Any:
        """Readiness: every store opens and answers a count."""
        detail: dict[str, str] = {}

        def probe() -> None:
            for index in retriever.manifest.indexes:
                for target in retriever.manifest.vectors:
                    try:
                        detail[f"{index}/{target}"] = f"{retriever.store(index, target).count()} points"
                    except Exception as exc:  # noqa: BLE001 - reported, not raised
                        detail[f"{index}/{target}"] = f"error: {exc}"

        await in_thread(probe)
        ok = all(not v.startswith("error") for v in detail.values())
        return JSONResponse(
            Health(status="ready" if ok else "not ready", detail=detail).model_dump(), status_code=200 if ok else 503
        )

    @app.get("/metrics", response_class=Response)
    async def prometheus() -> Response:
        """Prometheus: requests and latency per route and index, encode vs search time, batch sizes, queue time."""
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.on_event("startup")
    async def _warm() -> None:
        await in_thread(lambda: warm_up(retriever))

    @app.on_event("shutdown")
    def _close() -> None:
        retriever.close()

    return app


def warm_up(retriever: Retriever) -> None:
    """Open every store and load each encoder before the first query (failures surface in /readyz and queries)."""
    m = retriever.manifest
    for target, space in m.vectors.items():
        for index in m.indexes:
            try:
                retriever.store(index, target)
            except Exception:  # noqa: BLE001, S112 - /readyz reports it
                continue
        try:
            retriever.matching_encoder(space).encode_text(["warm up"])  # the first forward pass is the slow one
        except Exception:  # noqa: BLE001, S112 - the first query reports it
            continue


def _status(exc: SimlookupError) -> int:
    if isinstance(exc, StoreNotFoundError):
        return 404
    if isinstance(exc, ModelNotFoundError):
        return 503
    if isinstance(exc, (InvalidInputError, FilterError, DimensionMismatchError)):
        return 422
    return 500


def _json_filter(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        spec = json.loads(text)
    except ValueError:
        raise HTTPException(422, 'filter must be a JSON object, e.g. {"label": 3}') from None
    if not isinstance(spec, dict):
        raise HTTPException(422, 'filter must be a JSON object, e.g. {"label": 3}')
    return spec


def _json_safe(value: Any) -> Any:
    """value with non-finite floats as strings and anything else JSON cannot hold as its repr."""
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return repr(value)
