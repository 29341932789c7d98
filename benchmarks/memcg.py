"""A cgroup v1 memory group for one benchmark child process, and page-cache eviction of a store's files.

The memory limit benchmark (``benchmarks.memlimit``) runs each search process inside its own memory cgroup, a
child of this process's own memory cgroup (read from /proc/self/cgroup, so any limit above it still applies):
``memory.limit_in_bytes`` (and ``memory.memsw.limit_in_bytes`` where present, so swap cannot hide a shortfall)
caps anonymous memory and the page cache the process faults in together, as the kernel charges them. A store's
files are evicted from the page cache first (``posix_fadvise(DONTNEED)`` per file, checked with ``mincore``;
``/proc/sys/vm/drop_caches`` only where that leaves pages behind), so their pages are charged to the process
that reads them, not to whoever read them last.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import itertools
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

MOUNT = Path("/sys/fs/cgroup/memory")
PAGE = os.sysconf("SC_PAGE_SIZE")
_counter = itertools.count()


def own_group() -> Path:
    """This process's memory cgroup folder (v1), or the mount's root when /proc/self/cgroup does not name one."""
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, rel = line.split(":", 2)
            if "memory" in controllers.split(","):
                path = MOUNT / rel.lstrip("/")
                if path.is_dir():
                    return path
    except (OSError, ValueError):
        pass
    return MOUNT


class MemCgroup:
    """One cgroup v1 memory group: create, join, limit, read its counters, remove."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, prefix: str = "simlookup-memlimit") -> MemCgroup:
        """A new empty group under this process's own memory group (no limit yet)."""
        path = own_group() / f"{prefix}-{os.getpid()}-{next(_counter)}"
        path.mkdir()
        return cls(path)

    def _read(self, name: str) -> str:
        return (self.path / name).read_text()

    def _write(self, name: str, value: str | int) -> None:
        (self.path / name).write_text(str(value))

    def join(self, pid: int) -> None:
        """Move the task ``pid`` into the group (its later page faults are charged here)."""
        self._write("cgroup.procs", pid)

    def has_memsw(self) -> bool:
        return (self.path / "memory.memsw.limit_in_bytes").exists()

    def set_limit(self, limit: int) -> None:
        """Cap memory (and memory + swap, where the kernel accounts swap) at ``limit`` bytes.

        memsw must stay ≥ the memory limit at every step: lowered after it, raised before it."""
        if not self.has_memsw():
            self._write("memory.limit_in_bytes", limit)
            return
        lowering = limit < int(self._read("memory.limit_in_bytes"))
        order = ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes")
        for name in order if lowering else order[::-1]:
            self._write(name, limit)

    def usage(self) -> int:
        return int(self._read("memory.usage_in_bytes"))

    def max_usage(self) -> int:
        return int(self._read("memory.max_usage_in_bytes"))

    def reset_max_usage(self) -> None:
        self._write("memory.max_usage_in_bytes", 0)

    def counters(self) -> dict[str, int]:
        """failcnt (times the limit was hit), oom_kill (tasks the cgroup's OOM killer killed), peak usage."""
        out = {"failcnt": int(self._read("memory.failcnt")), "max_usage_bytes": self.max_usage()}
        for line in self._read("memory.oom_control").splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                out["oom_kill"] = int(value)
        return out

    def remove(self, attempts: int = 50) -> None:
        """Remove the group once its tasks have gone (an exited task may linger for a moment)."""
        for _ in range(attempts):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.1)
        self.path.rmdir()


def unavailable() -> str | None:
    """Why a memory cgroup cannot be created and limited here, or None when it can."""
    if not (MOUNT / "memory.limit_in_bytes").exists():
        return f"no cgroup v1 memory controller mounted at {MOUNT}"
    try:
        group = MemCgroup.create("simlookup-memcheck")
    except OSError as e:
        return f"cannot create a memory cgroup under {own_group()}: {e}"
    try:
        group.set_limit(1 << 30)
    except OSError as e:
        return f"cannot write a memory limit in {group.path}: {e}"
    finally:
        group.remove()
    return None


# ---- page cache ----

_libc: Any = None


def _c() -> Any:
    global _libc
    if _libc is None:
        lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        lib.mmap.restype = ctypes.c_void_p
        lib.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
        lib.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
        lib.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
        _libc = lib
    return _libc


def resident_bytes(path: Path) -> int:
    """Bytes of ``path`` in the page cache now (mincore over a read-only map of the whole file)."""
    size = path.stat().st_size
    if size == 0:
        return 0
    lib = _c()
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = lib.mmap(None, size, 1, 1, fd, 0)  # PROT_READ, MAP_SHARED
        if addr in (None, ctypes.c_void_p(-1).value):
            return -1
        try:
            pages = (size + PAGE - 1) // PAGE
            vec = (ctypes.c_ubyte * pages)()
            if lib.mincore(addr, size, vec) != 0:
                return -1
            return sum(b & 1 for b in bytes(vec)) * PAGE
        finally:
            lib.munmap(addr, size)
    finally:
        os.close(fd)


def store_files(root: Path) -> list[Path]:
    """Every regular file under a store's folder."""
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def _resident(files: Iterable[Path]) -> int:
    return sum(max(resident_bytes(f), 0) for f in files if f.exists())


def drop_caches() -> bool:
    """sync, then ask the kernel to drop clean page cache (all of it); False where not permitted."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("1")
    except OSError:
        return False
    return True


def evict(files: Iterable[Path], allow_drop_caches: bool = True) -> dict[str, Any]:
    """Drop ``files`` from the page cache: fsync + posix_fadvise(DONTNEED) per file, verified with mincore;
    drop_caches only where pages stay behind (a page mapped by a live process cannot be dropped either way)."""
    files = [f for f in files if f.exists()]
    total = sum(f.stat().st_size for f in files)
    before = _resident(files)
    for f in files:
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fsync(fd)  # dirty pages cannot be dropped until written
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    after = _resident(files)
    method = "posix_fadvise(DONTNEED) per file"
    if after > 0.01 * total and allow_drop_caches and drop_caches():
        method += ", then drop_caches (pages stayed)"
        after = _resident(files)
    return {
        "method": method,
        "files": len(files),
        "bytes": total,
        "resident_before_bytes": before,
        "resident_after_bytes": after,
    }
