"""Advisory file locks: one writer per store folder, across processes (fcntl.flock)."""

from __future__ import annotations

import fcntl
from pathlib import Path
from typing import IO

from retrieval.errors import StoreLockedError


def lock_exclusive(path: Path, busy: str) -> IO[str]:
    """Open ``path`` and take an exclusive, non-blocking lock on it; ``StoreLockedError(busy)`` if it is held."""
    f = open(path, "a+")  # noqa: SIM115 - held until unlock()
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise StoreLockedError(busy) from None
    return f


def unlock(f: IO[str] | None) -> None:
    """Release a lock taken by ``lock_exclusive`` and close its file (None: nothing to do)."""
    if f is None:
        return
    try:
        fcntl.flock(f, fcntl.LOCK_UN)
    finally:
        f.close()
