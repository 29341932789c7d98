"""Run the service: uvicorn on one address, recorded in the data folder while it listens."""

from __future__ import annotations

import signal
import sys
import threading
import time

from retrieval.errors import SimlookupError
from retrieval.settings import Settings
from simlookup.service import find_service, remove_endpoint, write_endpoint

MAX_CONNECTIONS = 2048  # uvicorn answers 503 beyond this many open connections


def serve(settings: Settings, name: str, host: str, port: int) -> int:
    """Serve collection ``name`` until stopped (SIGINT / SIGTERM); port 0 picks a free one."""
    import uvicorn

    from simlookup.server.app import create_app

    key = settings.api.key.get_secret_value() if settings.api.key else None
    if (running := find_service(settings.data_dir, name, key)) is not None:
        raise SimlookupError(f"collection {name!r} is already served at {running}: use it, or stop that service")
    app = create_app(settings, name)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", limit_concurrency=MAX_CONNECTIONS)
    server = uvicorn.Server(config)

    def record() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.02)
        if not server.started:
            return
        bound = server.servers[0].sockets[0].getsockname()[1] if server.servers else port
        url = f"http://{_client_host(host)}:{bound}"
        write_endpoint(settings.data_dir, name, url)
        print(f"simlookup: serving {name!r} on {url} (OpenAPI at /docs)", file=sys.stderr, flush=True)

    threading.Thread(target=record, name="simlookup-endpoint", daemon=True).start()
    # uvicorn shuts down gracefully on SIGTERM / SIGINT, then raises the signal again: make that an exit that
    # unwinds through `finally` (the default SIGTERM action would kill the process and leave the record behind)
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        remove_endpoint(settings.data_dir, name)
        signal.signal(signal.SIGTERM, previous)
    return 0 if server.started else 1


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _client_host(host: str) -> str:
    """The address a client on this machine dials for a bind address (a wildcard means loopback)."""
    if host in ("0.0.0.0", ""):  # noqa: S104 - translating a bind address, not binding
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host
