"""The service's /docs (Swagger UI) and /redoc pages work offline: their files come from the installed package,
checked in a real headless browser (Debian's chromium) that may reach the service and nothing else."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from ingest.job import IngestOptions, run_ingest  # noqa: E402
from retrieval.settings import Settings  # noqa: E402
from simlookup.server.app import create_app  # noqa: E402

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, minilm):  # type: ignore[no-untyped-def]
    s = Settings(data_dir=tmp_path_factory.mktemp("docs") / "data")
    opts = IngestOptions("stsb", "docs", indexes=["flat"], qdrant="none", limit=40, progress=False)
    run_ingest(s, opts, encoders={"text": minilm})
    return create_app(s, "docs", encoders={"text": minilm})


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_reference_no_external_host(app, page: str) -> None:  # type: ignore[no-untyped-def]
    with TestClient(app) as c:
        html = c.get(page).text
        refs = re.findall(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)['"]""", html)
        assert refs, html
        assert not [r for r in refs if "//" in r], f"{page} loads from another host: {refs}"
        for ref in refs:  # every script, stylesheet and the schema come from the service itself
            r = c.get(ref)
            assert r.status_code == 200 and r.content, ref
        assert not re.search(r"https?://(?!127\.0\.0\.1|localhost)", html), html


@pytest.fixture(scope="module")
def live_url(app) -> Iterator[str]:  # type: ignore[no-untyped-def]
    uvicorn = pytest.importorskip("uvicorn")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    for _ in range(500):
        if server.started:
            break
        time.sleep(0.02)
    assert server.started, "uvicorn did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    t.join(10)


def _browser() -> str:
    for name in BROWSERS:
        if found := shutil.which(name):
            return found
    pytest.skip(f"no headless browser installed (looked for {', '.join(BROWSERS)}): apt-get install -y chromium")


def _rendered(url: str) -> str:
    """The DOM after the page's scripts ran, in headless chromium that can resolve no host but the service's."""
    cmd = [
        _browser(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # offline: a CDN reference would fail
        "--virtual-time-budget=20000",
        "--dump-dom",
        url,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_swagger_ui_renders_offline_in_a_browser(live_url: str) -> None:
    dom = _rendered(f"{live_url}/docs")
    paths = re.findall(r'class="opblock-summary-path"[^>]*>.*?<span[^>]*>([^<]+)<', dom, flags=re.S)
    paths += re.findall(r'data-path="([^"]+)"', dom)
    assert "/search" in paths, dom[-3000:]


def test_redoc_renders_offline_in_a_browser(live_url: str) -> None:
    dom = _rendered(f"{live_url}/redoc")
    assert "redoc-wrap" in dom or "api-content" in dom, dom[-3000:]
    assert "/search" in dom, dom[-3000:]
