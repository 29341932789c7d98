"""The collections of a data folder: list and describe them without loading a model, drop one, drop an index.

A collection owns: its manifest (``collections/NAME.json``), one FAISS folder per vector space
(``faiss/NAME`` or ``faiss/NAME.image`` …), its Qdrant collection (an Edge folder ``qdrant-edge/NAME``, a
collection in the local-mode folder, or one on a server), its rejects file (``rejects/NAME.jsonl``) and, shared
with any collection of the same model and corpus, embedding cache shards (``cache/…``). Nothing here imports
torch or an encoder.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from retrieval.collection_manifest import (
    ENCODER_OF,
    CollectionManifest,
    VectorKind,
    VectorSpace,
    ingest_command,
    load_collection,
    manifest_path,
    scan_collections,
    store_name,
)
from retrieval.disk import file_bytes, folder_bytes
from retrieval.errors import CorruptManifestError, StoreError, StoreLockedError, StoreNotFoundError
from retrieval.settings import Settings
from retrieval.stores import FAISS_KINDS, QDRANT_INDEX
from retrieval.stores.locks import lock_exclusive, unlock
from retrieval.stores.qdrant_tier import Tier
from retrieval.tuning import stale

__all__ = [
    "DropReport",
    "IngestState",
    "check_droppable",
    "describe",
    "drop_collection",
    "drop_index",
    "ingest_state",
    "list_described",
    "owned_paths",
    "qdrant_tier",
    "writer_busy",
    "resolve",
    "scan_one",
]


def _faiss_dirs(settings: Settings, m: CollectionManifest) -> list[Path]:
    return [settings.data_dir / "faiss" / m.store_name(space) for space in m.vectors]


def _edge_dir(settings: Settings, m: CollectionManifest) -> Path | None:
    if m.qdrant_mode != "edge" or QDRANT_INDEX not in m.indexes:
        return None
    return (settings.qdrant.path or settings.data_dir / "qdrant-edge") / m.name


def owned_paths(settings: Settings, m: CollectionManifest) -> list[Path]:
    """Files and folders on this machine that belong to the collection alone (the cache is shared: not listed;
    a local-mode or server Qdrant collection lives inside its engine: see ``drop_collection``)."""
    paths = [manifest_path(settings.data_dir, m.name), settings.data_dir / "rejects" / f"{m.name}.jsonl"]
    paths += _faiss_dirs(settings, m)
    edge = _edge_dir(settings, m)
    if edge is not None:
        paths.append(edge)
    return [p for p in paths if p.exists()]


def _bytes(p: Path) -> int:
    return folder_bytes(p) if p.is_dir() else file_bytes(p)


def qdrant_tier(settings: Settings, m: CollectionManifest) -> dict[str, Any] | None:
    """The memory tier of the collection's Qdrant index (``{"quantization", "on_disk"}``) as the engine recorded
    it, read from its files (Edge: ``simlookup.json``; local mode: the collection's metadata in ``meta.json``; one
    recorded before tiers: none, in RAM). None: no Qdrant index, a server collection (not contacted here: its
    store's ``info()`` and ``GET /indexes`` show it), or files that cannot be read."""
    if QDRANT_INDEX not in m.indexes or m.qdrant_mode not in ("edge", "local"):
        return None
    try:
        if m.qdrant_mode == "edge":
            edge = _edge_dir(settings, m)
            meta = json.loads((edge / "simlookup.json").read_text()) if edge is not None else None
            return Tier.from_meta(meta.get("tier")).to_meta() if isinstance(meta, dict) else None
        folder = settings.qdrant.path or settings.data_dir / "qdrant-local"
        conf = json.loads((folder / "meta.json").read_text())["collections"][m.name]
        return Tier.from_meta((conf.get("metadata") or {}).get("tier")).to_meta()
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def describe(settings: Settings, m: CollectionManifest) -> dict[str, Any]:
    """What ``simlookup collections --json`` prints for one collection (read from files: no store is opened)."""
    first = next(iter(m.vectors.values()), None)
    details: dict[str, Any] = {}
    for space in m.vectors:
        folder = settings.data_dir / "faiss" / m.store_name(space)
        for kind in m.indexes:
            if kind == QDRANT_INDEX:
                edge = _edge_dir(settings, m)
                details.setdefault(kind, {"engine": m.qdrant_mode, "disk_bytes": _bytes(edge) if edge else None})
                details[kind]["tier"] = qdrant_tier(settings, m)
                continue
            kdir = folder / kind
            d = details.setdefault(kind, {"engine": "faiss", "disk_bytes": 0})
            d["disk_bytes"] += _bytes(kdir)
        if any(k in FAISS_KINDS for k in m.indexes):
            pts = folder / "points"
            details.setdefault("points", {"engine": "faiss", "disk_bytes": 0, "shared_by": []})
            details["points"]["disk_bytes"] += _bytes(pts)
            details["points"]["shared_by"] = [k for k in m.indexes if k in FAISS_KINDS]
    for space, points in m.tuning.items():
        for kind, op in points.items():
            if kind in details:
                details[kind].setdefault("tuned", {})[space] = {
                    "params": op.get("params"),
                    "recall": op.get("recall"),
                    "target": op.get("target"),
                    "reached": op.get("reached"),
                    "stale": stale(op, m.count),
                }
    state = ingest_state(settings, m)
    return {
        "name": m.name,
        "model": first.model if first else None,
        "fingerprint": first.fingerprint if first else None,
        "dim": first.dim if first else None,
        "metric": first.metric if first else None,
        "count": m.count,
        "indexes": list(m.indexes),
        "disk_bytes": sum(_bytes(p) for p in owned_paths(settings, m)),
        "last_ingest": m.updated or m.created or None,
        "complete": m.complete,
        "corpus": m.corpus,
        "modality": m.modality,
        "spaces": {k: {"model": v.model, "dim": v.dim, "metric": v.metric} for k, v in m.vectors.items()},
        "qdrant_mode": m.qdrant_mode,
        "qdrant_tier": details.get(QDRANT_INDEX, {}).get("tier"),
        "rejected": m.rejected,
        "index_details": details,
        "state": state.state if state else "complete",
        "ingest_pid": state.pid if state else None,
        "state_message": state.message if state else None,
    }


def _writer_pid(lock: Path) -> int | None:
    """The process holding the write lock file ``lock`` (0: one does, but which is unknown); None: none does.
    Read from /proc/locks (a look, no lock taken); where that names no holder, a non-blocking try confirms it."""
    try:
        st = lock.stat()
    except OSError:
        return None
    try:
        table = Path("/proc/locks").read_text()
    except OSError:
        table = ""
    for line in table.splitlines():
        f = line.split()
        if "FLOCK" not in f or "->" in f:  # "->": a process waiting for a lock, not holding one
            continue
        try:
            i = f.index("FLOCK")
            pid, (major, minor, ino) = int(f[i + 3]), f[i + 4].split(":")
            if int(ino) == st.st_ino and os.makedev(int(major, 16), int(minor, 16)) == st.st_dev:
                return pid
        except (IndexError, ValueError):
            continue
    try:
        held = lock_exclusive(lock, "")
    except StoreLockedError:
        return 0
    unlock(held)
    return None


@dataclass
class IngestState:
    """What an incomplete collection is going through: ``state`` 'ingest running' (a writer holds it),
    'interrupted' (the last ingest stopped before it finished: killed, or it failed) or 'incomplete' (no FAISS
    index to tell which); ``pid`` the writer's process; ``message`` for people."""

    state: str
    pid: int | None
    message: str


def ingest_state(settings: Settings, m: CollectionManifest) -> IngestState | None:
    """Why a collection is incomplete (None: it is complete): an ingest is writing it now, or the last one
    stopped midway. Its indexes then differ from each other and from the count as a matter of course."""
    if m.complete:
        return None
    again = f"`{ingest_command(m)}`"
    locks = [d / "points" / ".lock" for d in _faiss_dirs(settings, m) if any(k in FAISS_KINDS for k in m.indexes)]
    if not locks:
        return IngestState(
            "incomplete",
            None,
            f"collection {m.name!r} is incomplete: an ingest is running or stopped before it finished, so its "
            f"indexes hold part of it; if none is running, complete it with {again}",
        )
    pids = [pid for lock in locks if (pid := _writer_pid(lock)) is not None]
    if pids:
        who = f"process {pids[0]}" if pids[0] else "another process"
        return IngestState(
            "ingest running",
            pids[0] or None,
            f"collection {m.name!r} is incomplete: an ingest is running ({who}), which holds {locks[0]}; its "
            "indexes are being written and differ until it ends: check again then",
        )
    return IngestState(
        "interrupted",
        None,
        f"collection {m.name!r} is incomplete: the last ingest stopped before it finished (killed, or it failed), "
        f"so its indexes hold part of it; complete it with {again} (it resumes)",
    )


def writer_busy(settings: Settings, name: str, command: str) -> str | None:
    """What a command that writes a whole collection (``command``: compact, build-keyword, tune) says when another
    process holds its FAISS write lock: who holds it (the process, an ingest when the manifest says one is under way)
    and that it must finish first. None: no FAISS writer holds it (another lock refused: its own message stands)."""
    try:
        m: CollectionManifest | None = load_collection(settings.data_dir, name)
    except (CorruptManifestError, StoreNotFoundError):
        m = None
    pid = None
    if m is not None:
        for d in _faiss_dirs(settings, m):
            locks = [d / "points" / ".lock", *(d / k / ".lock" for k in m.indexes if k in FAISS_KINDS)]
            pid = next((p for lock in locks if (p := _writer_pid(lock)) is not None), None)
            if pid is not None:
                break
    if pid is None and (m is None or m.complete):
        return None
    who = f"process {pid}" if pid else "another process"
    again = f"then run `simlookup {command} {name}` again; nothing was changed"
    if m is not None and not m.complete:
        return (
            f"collection {name!r} is being ingested ({who} is writing it): `simlookup {command}` needs the collection "
            f"to itself, so the ingest must finish first (or be stopped); {again}"
        )
    return (
        f"collection {name!r} is open for writing in {who} (an ingest, or a program writing through the Python API "
        f"or an adapter): `simlookup {command}` needs the collection to itself, so that process must finish first "
        f"(or be stopped); {again}"
    )


def list_described(settings: Settings) -> list[dict[str, Any]]:
    """Every collection of the data folder, described; an unreadable manifest is listed with its error."""
    good, broken = scan_collections(settings.data_dir)
    out = [describe(settings, m) for m in good]
    out += [{"name": n, "error": why, "indexes": [], "complete": False} for n, why in broken.items()]
    return sorted(out, key=lambda c: c["name"])


@dataclass
class DropReport:
    """What ``drop_collection`` removed."""

    name: str
    removed: list[str] = field(default_factory=list)  # paths, and "qdrant server collection NAME"
    freed_bytes: int = 0
    notes: list[str] = field(default_factory=list)  # e.g. the manifest was unreadable: what could not be known

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "removed": self.removed, "freed_bytes": self.freed_bytes, "notes": self.notes}


def _writer_locks(settings: Settings, m: CollectionManifest) -> list[Any]:
    """Take every FAISS write lock of the collection (refused while an ingest or another writer holds one)."""
    held: list[Any] = []
    try:
        for folder in _faiss_dirs(settings, m):
            lock = folder / "points" / ".lock"
            if lock.parent.exists():
                held.append(
                    lock_exclusive(
                        lock,
                        f"collection {m.name!r} is open for writing in another process (an ingest?): "
                        "stop it first; nothing was removed",
                    )
                )
    except BaseException:
        for h in held:
            unlock(h)
        raise
    return held


def _check_edge_free(settings: Settings, m: CollectionManifest, what: str = "nothing was removed") -> None:
    """Refuse while another process (``serve``, an ingest) has the collection's Edge shard open."""
    edge = _edge_dir(settings, m)
    if edge is None or not edge.exists():
        return
    from retrieval.stores import open_store

    qs = settings.with_qdrant_mode("edge")
    try:
        st = open_store(qs, m.name, QDRANT_INDEX, create=False, vector_name="" if m.modality == "text" else "image")
    except StoreLockedError:
        raise StoreLockedError(
            f"collection {m.name!r}: its Qdrant Edge shard {edge} is open in another process (`simlookup serve`?): "
            f"stop it first; {what}"
        ) from None
    except StoreNotFoundError:
        return
    st.close()


def check_droppable(settings: Settings, m: CollectionManifest, indexes: list[str]) -> None:
    """Refuse, before an ingest changes anything, to drop indexes whose data another process holds open (a
    Qdrant Edge shard that ``simlookup serve`` searches: deleting its folder under it would break the service)."""
    if QDRANT_INDEX in indexes:
        _check_edge_free(
            settings, m, "the ingest would delete it (Qdrant left out or moved to another engine); nothing was changed"
        )


def _drop_qdrant(settings: Settings, m: CollectionManifest, rep: DropReport) -> None:
    """Remove the collection's Qdrant data where it does not live in a folder of its own."""
    if QDRANT_INDEX not in m.indexes or m.qdrant_mode in (None, "edge"):
        return
    from retrieval.stores import open_store

    qs = settings.with_qdrant_mode(m.qdrant_mode)
    try:
        st = open_store(qs, m.name, QDRANT_INDEX, create=False, vector_name="" if m.modality == "text" else "image")
    except StoreNotFoundError:
        return
    try:
        client = getattr(st, "client", None)
        if client is None:
            raise StoreError(f"the {m.qdrant_mode} Qdrant store of {m.name!r} has no client to delete it with")
        client.delete_collection(m.name)
    finally:
        st.close()
    rep.removed.append(f"qdrant {m.qdrant_mode} collection {m.name}")


def drop_collection(settings: Settings, name: str, cache: bool = False) -> DropReport:
    """Remove every index, the Qdrant collection, the manifest and the rejects file of a collection (the shared
    embedding cache stays: see ``ingest.cache``). The manifest goes last: a drop cut short can be run again.
    Refused, with nothing removed, while a writer (an ingest) holds the collection or an Edge shard is open."""
    m, notes = resolve(settings, name)
    rep = DropReport(name=name, notes=notes)
    held = _writer_locks(settings, m)
    try:
        _check_edge_free(settings, m)
        _drop_qdrant(settings, m, rep)
        paths = owned_paths(settings, m)
        manifest = manifest_path(settings.data_dir, name)
        for p in [p for p in paths if p != manifest] + [manifest]:
            rep.freed_bytes += _bytes(p)
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)
            rep.removed.append(str(p))
    finally:
        for h in held:
            unlock(h)
    return rep


def scan_one(settings: Settings, name: str) -> CollectionManifest:
    """The manifest of one collection, or a clear error (unknown, or unreadable: the error names the file)."""
    return load_collection(settings.data_dir, name)


def resolve(settings: Settings, name: str) -> tuple[CollectionManifest, list[str]]:
    """The manifest of a collection to drop, and notes: for an unreadable manifest, a stand-in made from the
    folders its name owns (``faiss/NAME``, ``faiss/NAME.image`` …, the Edge folder), so it can still be dropped;
    an unknown name is a clear error."""
    try:
        return scan_one(settings, name), []
    except CorruptManifestError as exc:
        why = str(exc).split(" (", 1)[-1].split(")", 1)[0]
    faiss = settings.data_dir / "faiss"
    folders: list[tuple[VectorKind, str]] = [("text", name), ("image", f"{name}.image"), ("caption", f"{name}.caption")]
    spaces: dict[str, VectorSpace] = {
        space: VectorSpace(name=space, encoder=ENCODER_OF[space], model="unknown", fingerprint="unknown", dim=0)
        for space, folder in folders
        if (faiss / folder).is_dir()
    }
    modality: Literal["text", "image"] = "text" if set(spaces) <= {"text"} else "image"
    spaces = {k: v for k, v in spaces.items() if (k == "text") == (modality == "text")}
    kinds = {
        kind.name
        for space in spaces
        if (folder := faiss / store_name(name, modality, space)).is_dir()
        for kind in folder.iterdir()
        if kind.is_dir() and kind.name in FAISS_KINDS
    }
    edge = (settings.qdrant.path or settings.data_dir / "qdrant-edge") / name
    m = CollectionManifest(
        name=name,
        corpus="?",
        corpus_fingerprint="",
        modality=modality,
        vectors=spaces,
        indexes=sorted(kinds) + ([QDRANT_INDEX] if edge.is_dir() else []),
        qdrant_mode="edge" if edge.is_dir() else None,
    )
    note = (
        f"the manifest of {name!r} was unreadable ({why}): its files were found by name; a Qdrant collection it "
        "may have had in local mode or on a server is not known from them and was left (delete it there)"
    )
    return m, [note]


def drop_index(settings: Settings, m: CollectionManifest, index: str) -> list[str]:
    """Remove one index's data of a collection (a kind its ingest no longer writes): the FAISS kind folder of
    every space, or its Qdrant collection. Returns what was removed."""
    removed: list[str] = []
    if index == QDRANT_INDEX:
        edge = _edge_dir(settings, m)
        if edge is not None and edge.exists():
            _check_edge_free(settings, m, f"its folder was kept: remove it (`rm -r {edge}`) once that process stops")
            shutil.rmtree(edge)
            removed.append(str(edge))
        else:
            rep = DropReport(m.name)
            _drop_qdrant(settings, m, rep)
            removed += rep.removed
        return removed
    for folder in _faiss_dirs(settings, m):
        kdir = folder / index
        if kdir.exists():
            shutil.rmtree(kdir)
            removed.append(str(kdir))
    return removed
