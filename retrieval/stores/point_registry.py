"""The in-process registry of point stores: one ``PointStore`` object per folder and process (the writer's, when
this process writes; read-only snapshots are replaced by a newer one when a writer elsewhere committed since)."""

from __future__ import annotations

import threading
from pathlib import Path

from retrieval.stores.points import PointStore, stored_seq
from retrieval.stores.vector_file import vector_file_name

_REGISTRY: dict[tuple[str, bool], PointStore] = {}
_REGISTRY_LOCK = threading.Lock()


def acquire(folder: Path, repair: str, read_only: bool) -> PointStore:
    """The shared PointStore of this folder (a read-only open shares this process's writer if there is one)."""
    key = str(folder.resolve())
    with _REGISTRY_LOCK:
        ps = _REGISTRY.get((key, False))
        if ps is None and read_only:
            ps = _REGISTRY.get((key, True))
            if ps is not None and not is_current(ps, folder):
                ps = None  # replaced below; stores holding the old snapshot keep it until they release it
        if ps is None:
            ps = PointStore(folder, repair, read_only)
            _REGISTRY[(key, read_only)] = ps
        ps._refs += 1  # noqa: SLF001 - the registry owns the count
        return ps


def acquire_latest(folder: Path, repair: str) -> PointStore:
    """A read-only PointStore of this folder at its latest committed state: this process's writer, the
    registered snapshot if no write was committed since it was read, else a fresh snapshot that replaces it
    in the registry (stores still holding the old one keep it until they release it)."""
    key = str(folder.resolve())
    with _REGISTRY_LOCK:
        ps = _REGISTRY.get((key, False))
        if ps is None:
            ps = _REGISTRY.get((key, True))
            if ps is None or not is_current(ps, folder):
                ps = PointStore(folder, repair, True)
                _REGISTRY[(key, True)] = ps
        ps._refs += 1  # noqa: SLF001 - the registry owns the count
        return ps


def is_current(ps: PointStore, folder: Path) -> bool:
    """Whether a read-only snapshot is the point store on disk at its last commit: the same seq, and the very
    vector file the snapshot holds (a folder dropped and written again can reach the same seq)."""
    return ps.seq == stored_seq(folder) and ps.vectors.holds(folder / vector_file_name(ps.generation))


def release(ps: PointStore) -> None:
    """Drop one reference; the last one closes the files and the lock."""
    key = (str(ps.folder.resolve()), ps.read_only)
    with _REGISTRY_LOCK:
        ps._refs -= 1  # noqa: SLF001
        if ps._refs > 0:  # noqa: SLF001
            return
        if _REGISTRY.get(key) is ps:
            del _REGISTRY[key]
    with ps.lock:
        ps._close_files()  # noqa: SLF001
