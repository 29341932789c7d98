"""A FAISS kind's files: reading ``index.faiss`` as its manifest describes it (checksummed through one handle,
racing a writer's flush), writing both crash-safely, and a read-only snapshot following its writer.

A mixin of ``FaissStore``: the store's state is declared here for the type checker and set by the store."""

from __future__ import annotations

import functools
import logging
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np

from retrieval.errors import CorruptIndexError, StoreLockedError, StoreNotFoundError
from retrieval.metric import Metric
from retrieval.stores import point_registry as registry
from retrieval.stores import points as pts
from retrieval.stores.faiss_params import FaissBuildParams, faiss_module, repair_hint
from retrieval.stores.faults import fault_point
from retrieval.stores.manifest import (
    FORMAT_VERSION,
    FileSig,
    Pin,
    file_sig,
    now_iso,
    read_manifest_sig,
    sha256_file,
    sha256_fileobj,
    write_json,
)

log = logging.getLogger(__name__)
_OPEN_TRIES = 50  # re-reads of a manifest that a writer keeps replacing while a reader opens the index
_MOVED_TRIES = 20  # reloads of a read-only snapshot whose rows its writer keeps changing during one read
_Read = TypeVar("_Read", bound=Callable[..., Any])
_T = TypeVar("_T")


def read_following(store: KindFiles, read: Callable[[], _T]) -> _T:
    """``read()`` of a FAISS store's points: a read-only snapshot that finds the point store moved under it
    (``SnapshotMovedError``: its writer replaced, deleted or compacted points since) reloads and reads again."""
    for _ in range(_MOVED_TRIES):
        try:
            return read()
        except pts.SnapshotMovedError:
            store.refresh(force=True)
    raise StoreLockedError(
        f"FAISS store {store.dir}: its writer kept changing the points during {_MOVED_TRIES} reads: try again"
    )


def following(read: _Read) -> _Read:
    """For the reads of a FAISS store: ``read_following`` around each call."""

    @functools.wraps(read)
    def run(self: KindFiles, *args: Any, **kwargs: Any) -> Any:
        return read_following(self, lambda: read(self, *args, **kwargs))

    return cast(_Read, run)


class KindFiles:
    """Reading, writing and following the manifest and index file of one FAISS kind."""

    name: str
    kind: str
    dim: int
    metric: Metric
    fingerprint: str | None
    read_only: bool
    params: FaissBuildParams
    dir: Path
    coll_dir: Path
    index_path: Path
    manifest_path: Path
    stats: Counter[str]
    _points: pts.PointStore | None
    _index: Any
    _index_sum: str | None
    _tomb: np.ndarray
    _tomb_sel: Any
    _uncoded: np.ndarray
    _code_limit: float | None
    _scan_due: bool
    _nlist: int | None
    _trained_on: int
    _created: str
    _sig: FileSig | None
    _pin: Pin
    _disk_gen: int | None
    _resident: bool
    _sp_cache: dict[tuple[str, int], Any]

    @property
    def _ps(self) -> pts.PointStore:
        assert self._points is not None
        return self._points

    def _new_index(self) -> None:
        raise NotImplementedError

    def _load(self, manifest: dict[str, Any]) -> None:
        raise NotImplementedError

    def on_change(self, added: np.ndarray, vectors: np.ndarray, removed: np.ndarray) -> None:
        raise NotImplementedError

    def on_renumber(self, old_fids: np.ndarray) -> None:
        raise NotImplementedError

    def _open_index(self, manifest: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Read index.faiss as the manifest describes it: (the manifest it matched, whether the file is the
        previous index, which a crash between the manifest and the rename leaves, or a writer mid-flush).

        The file is checksummed and read through one handle, so a writer renaming a new index over it in
        between cannot mix two files. A checksum that matches neither the manifest's current nor its previous
        one is read again with the manifest as it is now: a writer that flushed (twice) since the manifest was
        read wrote a newer pair. Only a file that disagrees with a manifest that stays the same is corrupt.
        """
        for _ in range(_OPEN_TRIES):
            previous = manifest.get("previous_checksum")
            if not manifest.get("has_index"):
                self._new_index()
                return manifest, False
            try:
                fh = open(self.index_path, "rb")  # noqa: SIM115 - closed below, after faiss read it
            except FileNotFoundError:
                if previous is None:  # a crash before the first index was renamed into place: none yet
                    self._new_index()
                    return {**manifest, "has_index": False}, True
                actual = None
            else:
                with fh:
                    actual = sha256_fileobj(fh)
                    if actual in (manifest.get("checksum"), previous):
                        self._index = self._read_index_from(fh)
                        self._index_sum = actual
                        return manifest, actual != manifest.get("checksum")
            fresh, sig = read_manifest_sig(self.manifest_path, self._pin)
            if fresh == manifest:  # the manifest stayed: the file itself is wrong
                if actual is None:
                    raise CorruptIndexError(
                        f"{self.index_path} is missing but its manifest says it exists; {repair_hint(self.name)}"
                    )
                raise CorruptIndexError(
                    f"{self.index_path} does not match its manifest checksum (truncated or modified); "
                    + repair_hint(self.name)
                )
            manifest, self._sig = fresh, sig
        raise StoreLockedError(
            f"{self.index_path} was rewritten {_OPEN_TRIES} times while it was being opened (a writer flushing "
            "in a loop): try again"
        )

    def _read_index_from(self, fh: Any) -> Any:
        """faiss.read_index of the file this handle holds (not whatever the path names by now)."""
        proc = Path(f"/proc/self/fd/{fh.fileno()}")
        try:
            if proc.exists():
                return faiss_module().read_index(str(proc))
            fh.seek(0)
            return faiss_module().deserialize_index(np.frombuffer(fh.read(), dtype=np.uint8))
        except RuntimeError as exc:
            raise CorruptIndexError(f"cannot read {self.index_path}: {exc}") from None

    # ---- following a writer (read-only snapshots) ----
    @property
    def follows_writer(self) -> bool:
        """Whether this store is a read-only snapshot that reloads when a writer elsewhere flushes (a
        read-only open that shares this process's writer sees every write already)."""
        ps = self._points
        return self.read_only and ps is not None and ps.read_only

    def refresh(self, force: bool = False) -> bool:
        """Reload when the writer has flushed a newer state since this snapshot was read (one stat when
        nothing changed), or with ``force`` (a read found rows the writer changed since: the point store moved
        ahead of the manifest). True if it reloaded. Every read of a read-only store calls it first."""
        if not self.follows_writer or (not force and file_sig(self.manifest_path) == self._sig):
            return False
        old = self._ps
        with old.lock:
            if self._points is not old:
                return False  # another thread reloaded meanwhile
            if not self.manifest_path.exists():
                raise StoreNotFoundError(
                    f"FAISS {self.kind} index {self.dir} was removed by another process (the collection was "
                    "re-ingested without it, or dropped)"
                )
            pin = Pin()
            manifest, sig = read_manifest_sig(self.manifest_path, pin)
            self._check_same_shape(manifest)
            self._pin.swap(pin)
            kept = (self._index, self._index_sum, self._tomb, self._tomb_sel, self._nlist, self._trained_on,
                    self._created, self._sig, self._disk_gen, self._uncoded, self._code_limit, self._scan_due)
            new = registry.acquire_latest(self.coll_dir / "points", repair_hint(self.name))
            try:
                new.check(self.dim, self.metric, self.manifest_path)
                with new.lock:
                    if self._resident:
                        new.vectors.hold_resident()
                    self._points, self._sig = new, sig
                    self._sp_cache = {}
                    self._load(manifest)
            except BaseException:
                if self._points is new and self._resident:
                    new.vectors.release_resident()
                self._points = old
                (self._index, self._index_sum, self._tomb, self._tomb_sel, self._nlist, self._trained_on,
                 self._created, self._sig, self._disk_gen, self._uncoded, self._code_limit, self._scan_due) = kept
                registry.release(new)
                raise
            if self._resident:
                old.vectors.release_resident()
            old.unlisten(self)
            new.listen(self)
        registry.release(old)
        self.stats["reloads"] += 1
        log.info("FAISS store %s: reloaded at point-store seq %s (a writer flushed)", self.dir, new.seq)
        return True

    def _check_same_shape(self, manifest: dict[str, Any]) -> None:
        """Refuse to follow a kind that was dropped and created again with another dimension, metric, model or
        build parameters (this store's shape is fixed when it opens): the caller opens it again."""
        try:
            same = (
                manifest.get("kind") == self.kind
                and int(manifest["dim"]) == self.dim
                and manifest.get("metric") == self.metric.value
                and manifest.get("fingerprint") == self.fingerprint
                and FaissBuildParams(**manifest["params"]) == self.params
            )
        except (KeyError, TypeError, ValueError):
            same = False
        if not same:
            raise StoreNotFoundError(
                f"FAISS {self.kind} index {self.dir} was dropped and re-created by another process as a "
                f"{manifest.get('dim')}-d {manifest.get('metric')} index of {manifest.get('fingerprint')} "
                f"(this store read a {self.dim}-d {self.metric.value} one of {self.fingerprint}): open it again"
            )

    def _flush(self) -> None:
        if self.read_only:
            return
        ps = self._ps
        with ps.lock:
            ps.sync()  # the points first: a manifest never claims a seq the point store could lose
            has_index = self._index is not None
            # index to a pending file, then the manifest (naming the new and the previous checksum), then the
            # rename: a crash at any point leaves an index the manifest accepts (the previous one is caught up)
            pending = self.dir / ".index.faiss.pending"
            new_sum = None
            if has_index:
                faiss_module().write_index(self._index, str(pending))
                with open(pending, "rb+") as fh:
                    os.fsync(fh.fileno())
                new_sum = sha256_file(pending)
            manifest = {
                "format_version": FORMAT_VERSION,
                "name": self.name,
                "kind": self.kind,
                "dim": self.dim,
                "metric": self.metric.value,
                "fingerprint": self.fingerprint,
                "params": asdict(self.params),
                "nlist": self._nlist,
                "trained_on": self._trained_on,
                # a coded kind's error limit and the points held out of the index (faiss_codes); None: not checked
                "codes": {"limit": self._code_limit, "uncoded": self._uncoded.tolist()}
                if has_index and self._code_limit is not None
                else None,
                "count": len(ps),
                "seq": ps.seq,
                "generation": ps.generation,  # the point-store numbering the index holds
                "previous_generation": self._disk_gen,  # that of the previous index (a crash before the rename)
                "has_index": has_index,
                "index_file": self.index_path.name if has_index else None,
                "points": "../points",
                "checksum": new_sum,
                "previous_checksum": self._index_sum,
                "created": self._created,
                "updated": now_iso(),
                "faiss_version": faiss_module().__version__,
            }
            write_json(self.manifest_path, manifest)
            if has_index:
                fault_point("flush:manifest-written")
                os.replace(pending, self.index_path)
                dfd = os.open(self.dir, os.O_RDONLY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
            elif self.index_path.exists():
                self.index_path.unlink()
            self._index_sum = new_sum
            self._disk_gen = ps.generation if has_index else None
            self._sig = file_sig(self.manifest_path)
