"""One open engine handle per path per process, for both Qdrant backends (Edge shards, qdrant-client local mode).

Both engines lock their folder against a second open, so every store on one path (a reader beside a writer,
the named-vector views of one collection) shares one handle, opened by the first and closed by the last. One
lock guards the table: two threads opening the same path at once get the same handle.
(FAISS keeps its own registry of point stores in ``retrieval/stores/points.py``.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Key = tuple[str, str]  # (engine, resolved path)


@dataclass
class _Entry:
    handle: Any
    users: int = 1
    writable: bool = False  # a writer has held it: the last release finishes its writes


class HandleRegistry:
    """Open handles by (engine, path), shared and counted; opened and closed under one lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[Key, _Entry] = {}

    @staticmethod
    def key(engine: str, path: Path) -> Key:
        return (engine, str(path.resolve()))

    def acquire(
        self,
        key: Key,
        opener: Callable[[], Any],
        closer: Callable[[Any], None],
        check: Callable[[Any], None] | None = None,
        writer: bool = False,
        on_writer: Callable[[Any], None] | None = None,
    ) -> Any:
        """The handle at key: this process's open one, or ``opener()`` then ``check(handle)`` (closed again if
        the check fails). ``on_writer(handle)`` runs when the first writer joins it."""
        with self._lock:
            entry = self._open.get(key)
            if entry is None:
                handle = opener()
                try:
                    if check is not None:
                        check(handle)
                    if writer and on_writer is not None:
                        on_writer(handle)
                except BaseException:
                    closer(handle)
                    raise
                self._open[key] = _Entry(handle, 1, writer)
                return handle
            if writer and not entry.writable:
                if on_writer is not None:
                    on_writer(entry.handle)
                entry.writable = True
            entry.users += 1
            return entry.handle

    def release(self, key: Key, on_last: Callable[[Any, bool], None]) -> None:
        """Drop one user; the last one runs ``on_last(handle, writable)``, which closes it."""
        with self._lock:
            entry = self._open.get(key)
            if entry is None:
                return
            entry.users -= 1
            if entry.users == 0:
                del self._open[key]
                on_last(entry.handle, entry.writable)

    def release_handle(self, handle: Any, on_last: Callable[[Any, bool], None]) -> bool:
        """``release`` by the handle itself; False when it is not registered here (not shared)."""
        with self._lock:
            key = next((k for k, e in self._open.items() if e.handle is handle), None)
        if key is None:
            return False
        self.release(key, on_last)
        return True

    def users(self, key: Key) -> int:
        """How many stores hold the handle at key (0: none open)."""
        with self._lock:
            entry = self._open.get(key)
            return 0 if entry is None else entry.users


HANDLES = HandleRegistry()
