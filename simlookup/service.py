"""Find a running `simlookup serve` for a collection, and talk to it (stdlib HTTP only: no torch, no httpx).

``serve`` writes ``DATA_DIR/run/serve-NAME.json`` (pid, url) once it listens and removes it on exit. A record
whose process is gone, or whose address refuses the connection or serves another collection, is stale: it is
ignored (and removed when the process is gone), and the CLI loads in-process as before.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from retrieval.errors import SimlookupError
from retrieval.filters import Filter

PROBE_TIMEOUT_S = 0.5


class ServiceError(SimlookupError):
    """The service answered with an error, or could not be reached."""


def endpoint_file(data_dir: Path, name: str) -> Path:
    """Where `serve` records its address for collection ``name``."""
    return Path(data_dir) / "run" / f"serve-{name}.json"


def write_endpoint(data_dir: Path, name: str, url: str) -> Path:
    """Record this process as the service of ``name`` (atomically: write a temporary file, then rename)."""
    path = endpoint_file(data_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps({"name": name, "url": url, "pid": os.getpid(), "started": time.time()}) + "\n")
    tmp.replace(path)
    return path


def remove_endpoint(data_dir: Path, name: str) -> None:
    """Remove the record if it is this process's own (a newer service may have replaced it)."""
    path = endpoint_file(data_dir, name)
    rec = _read(path)
    if rec is not None and rec.get("pid") == os.getpid():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def find_service(data_dir: Path, name: str, key: str | None = None) -> str | None:
    """The URL of a live service for ``name``, or None (no record, or a stale one)."""
    path = endpoint_file(data_dir, name)
    rec = _read(path)
    if rec is None or not isinstance(rec.get("url"), str) or not isinstance(rec.get("pid"), int):
        return None
    if not _alive(rec["pid"]):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return None
    try:
        health = ServiceClient(rec["url"], key, timeout_s=PROBE_TIMEOUT_S).get("/healthz")
    except ServiceError:
        return None
    return rec["url"] if health.get("detail", {}).get("name") == name else None


def _read(path: Path) -> dict[str, Any] | None:
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def filter_to_dict(flt: Filter) -> dict[str, Any]:
    """The JSON form of a filter (what POST /search takes)."""
    out: dict[str, Any] = {}
    for c in flt.conditions:
        if c.field in out:
            raise SimlookupError(f"filter on {c.field!r} given twice: the service takes one condition per field")
        if c.op == "eq":
            out[c.field] = c.value
        elif c.op == "any":
            out[c.field] = list(c.values)
        elif c.op == "range":
            out[c.field] = {k: v for k in ("gte", "gt", "lte", "lt") if (v := getattr(c, k)) is not None}
        else:
            raise SimlookupError(f"filter operation {c.op!r} cannot be sent to the service")
    return out


class ServiceClient:
    """JSON over HTTP to one `simlookup serve`; errors become ServiceError with the service's own message."""

    def __init__(self, url: str, key: str | None = None, timeout_s: float = 30.0) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise SimlookupError(f"--url {url!r} is not an http(s) URL such as http://127.0.0.1:8000")
        self.url = url.rstrip("/")
        self.key = key
        self.timeout_s = timeout_s
        # loopback needs no proxy, and an HTTP(S)_PROXY in the environment must not capture it
        loopback = parsed.hostname in ("127.0.0.1", "localhost", "::1")
        self._opener = urllib.request.build_opener(*([urllib.request.ProxyHandler({})] if loopback else []))

    def get(self, path: str) -> dict[str, Any]:
        """GET a JSON document."""
        return self._call(urllib.request.Request(self.url + path, headers=self._headers()))

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST a JSON body, return the JSON answer."""
        data = json.dumps(body).encode()
        headers = self._headers() | {"Content-Type": "application/json"}
        return self._call(urllib.request.Request(self.url + path, data=data, headers=headers, method="POST"))

    def post_file(self, path: str, field: str, filename: str, content: bytes, form: dict[str, str]) -> dict[str, Any]:
        """POST one file and some form fields as multipart/form-data."""
        boundary = uuid.uuid4().hex
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
            for k, v in form.items()
        ]
        safe = filename.replace('"', "_").replace("\r", "_").replace("\n", "_")
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{safe}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode()
            + content
            + b"\r\n"
        )
        data = b"".join(parts) + f"--{boundary}--\r\n".encode()
        headers = self._headers() | {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        return self._call(urllib.request.Request(self.url + path, data=data, headers=headers, method="POST"))

    def _headers(self) -> dict[str, str]:
        return {"X-API-Key": self.key} if self.key else {}

    def _call(self, req: urllib.request.Request) -> dict[str, Any]:
        try:
            with self._opener.open(req, timeout=self.timeout_s) as resp:
                return dict(json.loads(resp.read()))
        except urllib.error.HTTPError as exc:
            raise ServiceError(f"{self.url}: HTTP {exc.code}: {_detail(exc)}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise ServiceError(f"cannot reach the service at {self.url} ({exc})") from None


def _detail(exc: urllib.error.HTTPError) -> str:
    try:
        doc = json.loads(exc.read())
    except (OSError, ValueError):
        return exc.reason if isinstance(exc.reason, str) else "error"
    detail = doc.get("detail", doc) if isinstance(doc, dict) else doc
    return detail if isinstance(detail, str) else json.dumps(detail)
