"""The manifest written beside every FAISS index, and atomic file writes."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from retrieval.errors import CorruptIndexError, ManifestMismatchError

FORMAT_VERSION = 2  # 2: kinds share the collection point store (faiss/NAME/points/)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def sha256_file(path: Path) -> str:
    """sha256 of a file's content, as ``sha256:<hex>``."""
    with open(path, "rb") as f:
        return sha256_fileobj(f)


def atomic_write(path: Path, writer: Callable[[str], object]) -> None:
    """Call writer(tmp_path) then fsync and rename over path: a crash never leaves half a file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        writer(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: Path, data: dict[str, Any]) -> None:
    def _w(tmp: str) -> None:
        Path(tmp).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")

    atomic_write(path, _w)


FileSig = tuple[int, int, int]  # (inode, mtime in ns, size): a file replaced by rename or rewritten differs


def file_sig(path: Path) -> FileSig | None:
    """The signature of the file at ``path`` (None when there is none): one stat, for change checks."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def sha256_fileobj(fh: BinaryIO) -> str:
    """sha256 of an open file from its start (the file the handle holds, even if the path was replaced since)."""
    h = hashlib.sha256()
    fh.seek(0)
    while block := fh.read(1 << 20):
        h.update(block)
    return "sha256:" + h.hexdigest()


def read_manifest(path: Path) -> dict[str, Any]:
    """Read and check a FAISS kind's manifest."""
    return read_manifest_sig(path)[0]


class Pin:
    """The file a reader read, held open: its inode cannot be handed to a replacement while it is held.

    Writers replace manifests by rename. Inode numbers are recycled and mtimes are as coarse as the kernel's
    clock tick, so without the pin a replacement written within one tick could carry the very signature of
    the file read (same inode, mtime and size) and a reader would miss it."""

    def __init__(self, fh: BinaryIO | None = None) -> None:
        self._fh = fh

    def swap(self, other: Pin) -> None:
        """Hold ``other``'s file instead of this one's."""
        old, self._fh, other._fh = self._fh, other._fh, None
        if old is not None:
            old.close()

    def close(self) -> None:
        """Let the file go."""
        fh, self._fh = self._fh, None
        if fh is not None:
            fh.close()


def read_pinned(path: Path) -> tuple[bytes, FileSig, Pin]:
    """A file's bytes, the signature of the very file they came from, and a pin that keeps it (see ``Pin``)."""
    fh = open(path, "rb")  # noqa: SIM115 - handed to the Pin, which closes it
    try:
        st = os.fstat(fh.fileno())
        data = fh.read()
    except BaseException:
        fh.close()
        raise
    return data, (st.st_ino, st.st_mtime_ns, st.st_size), Pin(fh)


def read_manifest_sig(path: Path, pin: Pin | None = None) -> tuple[dict[str, Any], FileSig]:
    """A FAISS kind's manifest and the signature of the very file it was read from (writers replace it by
    rename, so the signature tells a later stat whether a newer one was written). With ``pin``, that pin then
    holds the file read (see ``Pin``)."""
    try:
        raw, st, got = read_pinned(path)
        if pin is not None:
            pin.swap(got)
        else:
            got.close()
        data = json.loads(raw.decode())
    except (OSError, ValueError) as exc:
        raise CorruptIndexError(
            f"manifest {path} is unreadable: {exc}; re-create it with `simlookup ingest CORPUS --name NAME`"
        ) from None
    if not isinstance(data, dict):
        raise CorruptIndexError(f"manifest {path} is not a JSON object; re-create it with `simlookup ingest ...`")
    if data.get("format_version") != FORMAT_VERSION:
        raise ManifestMismatchError(
            f"manifest {path} has format version {data.get('format_version')!r}; "
            f"this simlookup reads {FORMAT_VERSION}: "
            f"delete {path.parent.parent} and ingest again (`simlookup ingest CORPUS --name NAME`)"
        )
    return data, st


def check_expected(manifest: dict[str, Any], path: Path, **expected: Any) -> None:
    """Refuse an index built for another model, dimension, metric or kind."""
    diffs = [
        f"{key}: index has {manifest.get(key)!r}, asked for {want!r}"
        for key, want in expected.items()
        if want is not None and manifest.get(key) != want
    ]
    if diffs:
        raise ManifestMismatchError(
            f"index at {path.parent} does not match: " + "; ".join(diffs) + ". Re-ingest into a new name, "
            "or open it with the model and settings it was built with."
        )
