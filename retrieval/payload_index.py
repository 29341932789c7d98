"""In-memory payload index of a FAISS collection: int64 point ids → payloads, answering filters.

The seam between the filter language (``retrieval.filters``) and the FAISS collection store: the store adds and
removes points, and asks ``match(filter)`` for the sorted int64 ids of the live points whose payload satisfies
the filter, exactly as ``Filter.matches`` would (the tests check it against the reference with hypothesis).

A match costs in proportion to what the filter touches, not to the collection: one roaring bitmap per
(path, string) and (path, bool) posting, one per path for "has a value" and "holds null", and per path a sorted
array of numbers (a range is two binary searches). Writes go to a small unsorted tail that is merged into the
sorted arrays once it grows. A bulk batch of payloads sharing their keys is indexed column by column, and its
string columns get their per-value bitmaps on the first filter that reads that path. Negation is "every live
point minus the match". Not thread-safe: the store locks.
"""

from __future__ import annotations

import array
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from operator import itemgetter
from typing import Any, Literal

import numpy as np
from pyroaring import AbstractBitMap, BitMap, FrozenBitMap

from retrieval.errors import InvalidInputError
from retrieval.filters import (
    And,
    Eq,
    Exists,
    Filter,
    In,
    Node,
    Not,
    Or,
    Range,
    as_double,
    flat_values,
    is_empty,
    is_null,
    is_number,
    resolve,
)

MAX_FID = 2**32 - 1
TAIL_MAX = 4096  # unsorted numbers kept aside before a merge into the sorted arrays
COLUMN_MIN = 256  # batches at least this big whose payloads share their keys are indexed column by column
# the exact types of JSON scalars: a payload of these alone is flat (no nested value to walk or to share)
JSON_SCALARS = frozenset({str, int, float, bool, type(None)})


def bitmap(fids: np.ndarray) -> BitMap:
    """A BitMap of uint32-representable ids (the buffer path: no Python loop)."""
    return BitMap(array.array("I", np.ascontiguousarray(fids, dtype=np.uint32).tobytes()))


def to_fids(bm: AbstractBitMap) -> np.ndarray:
    """Sorted int64 ids of a bitmap."""
    return np.frombuffer(bm.to_array(), dtype=np.uint32).astype(np.int64)


def paths_of(payload: Mapping[str, Any]) -> set[str]:
    """Every path a filter could resolve to a value in this payload: the top-level keys, and the dotted paths
    through nested objects (and arrays of objects) whose keys hold no dot."""
    out: set[str] = set(payload)

    def walk(value: Any, prefix: str) -> None:
        if isinstance(value, Mapping):
            items: Iterable[tuple[str, Any]] = value.items()
        elif isinstance(value, list):
            items = ((k, v) for e in value if isinstance(e, Mapping) for k, v in e.items())
        else:
            return
        for k, v in items:
            if "." not in k:
                out.add(f"{prefix}.{k}")
                walk(v, f"{prefix}.{k}")

    for k, v in payload.items():
        if "." not in k:
            walk(v, k)
    return out


def postings(payload: Mapping[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """(kind, path, value) entries of one payload: kind is present, null, str, bool or num."""
    nested = False
    for key, v in payload.items():
        if "." in key or isinstance(v, (list, Mapping)):
            nested = True
        elif v is None:  # the common case, a plain key holding a scalar: no path resolution needed
            yield "null", key, None
        else:
            yield "present", key, None
            if isinstance(v, bool):
                yield "bool", key, v
            elif isinstance(v, str):
                yield "str", key, v
            elif isinstance(v, float):
                yield "num", key, v
            elif isinstance(v, int):
                yield "num", key, as_double(v)
    if nested:
        for path in paths_of(payload):
            if "." not in path and not isinstance(payload[path], (list, Mapping)):
                continue  # done above
            yield from _value_postings(path, resolve(payload, path))


def _value_postings(path: str, raw: list[Any]) -> Iterator[tuple[str, str, Any]]:
    if not raw:
        return
    if not is_empty(raw):
        yield "present", path, None
    if is_null(raw):
        yield "null", path, None
    for x in flat_values(raw):
        if isinstance(x, bool):
            yield "bool", path, x
        elif isinstance(x, str):
            yield "str", path, x
        elif is_number(x):
            yield "num", path, as_double(x)


class _Numbers:
    """The numbers at one path: sorted (value, fid) arrays plus an unsorted tail; stale fids masked until a merge."""

    def __init__(self) -> None:
        self.vals = np.empty(0, dtype=np.float64)
        self.fids = np.empty(0, dtype=np.uint32)
        self.in_main = BitMap()  # fids with entries in the sorted arrays
        self.dead = BitMap()  # fids whose entries in the sorted arrays are stale
        self.tail: dict[int, list[float]] = {}
        self._tail_arrays: tuple[np.ndarray, np.ndarray] | None = None

    def empty(self) -> bool:
        """No live number at this path."""
        return not self.tail and len(self.dead) == len(self.in_main)

    def add(self, entries: dict[int, list[float]]) -> None:
        self.tail.update(entries)
        self._tail_arrays = None
        if len(self.tail) > TAIL_MAX:
            self.merge()

    def add_arrays(self, fids: np.ndarray, vals: np.ndarray) -> None:
        """One number per fid (fids not present here): a big batch goes straight into the sorted arrays."""
        if len(fids) <= TAIL_MAX:
            self.add({f: [v] for f, v in zip(fids.tolist(), vals.tolist(), strict=True)})
        else:
            self.merge(vals, fids)

    def remove(self, fids: Iterable[int]) -> None:
        for fid in fids:
            self.tail.pop(fid, None)
            if fid in self.in_main:
                self.dead.add(fid)
        self._tail_arrays = None
        if len(self.dead) > max(TAIL_MAX, len(self.vals) // 4):
            self.merge()

    def merge(self, extra_vals: np.ndarray | None = None, extra_fids: np.ndarray | None = None) -> None:
        """Fold the tail (and extra (value, fid) entries) into the sorted arrays; drop stale entries."""
        vals, fids = self.vals, self.fids
        if self.dead:
            keep = ~np.isin(fids, to_fids(self.dead).astype(np.uint32))
            vals, fids = vals[keep], fids[keep]
        tv, tf = self._tail()
        parts_v, parts_f = [vals, tv], [fids, tf]
        if extra_vals is not None and extra_fids is not None:
            parts_v.append(extra_vals.astype(np.float64, copy=False))
            parts_f.append(extra_fids.astype(np.uint32, copy=False))
        vals, fids = np.concatenate(parts_v), np.concatenate(parts_f)
        order = np.argsort(vals, kind="stable")
        self.vals, self.fids = vals[order], fids[order]
        self.in_main = bitmap(self.fids)
        self.dead = BitMap()
        self.tail = {}
        self._tail_arrays = None

    def _tail(self) -> tuple[np.ndarray, np.ndarray]:
        if self._tail_arrays is None:
            tv = [v for vs in self.tail.values() for v in vs]
            tf = [f for f, vs in self.tail.items() for _ in vs]
            self._tail_arrays = (np.array(tv, dtype=np.float64), np.array(tf, dtype=np.uint32))
        return self._tail_arrays

    def range(self, r: Range) -> BitMap:
        lo_side: Literal["left", "right"]
        hi_side: Literal["left", "right"]
        lo, lo_side = (r.gt, "right") if r.gt is not None and (r.gte is None or r.gt >= r.gte) else (r.gte, "left")
        hi, hi_side = (r.lt, "left") if r.lt is not None and (r.lte is None or r.lt <= r.lte) else (r.lte, "right")
        i = 0 if lo is None else int(np.searchsorted(self.vals, lo, side=lo_side))
        j = len(self.vals) if hi is None else int(np.searchsorted(self.vals, hi, side=hi_side))
        out = bitmap(self.fids[i:j]) if j > i else BitMap()
        if self.dead and out:
            out -= self.dead
        if self.tail:
            tv, tf = self._tail()
            mask = np.ones(len(tv), dtype=bool)
            for bound, op in ((r.gt, np.greater), (r.gte, np.greater_equal), (r.lt, np.less), (r.lte, np.less_equal)):
                if bound is not None:
                    mask &= op(tv, bound)
            if mask.any():
                out |= bitmap(tf[mask])
        return out


class PayloadIndex:
    """fid → payload, and the fids matching a filter (bitmaps and sorted numbers; see the module docstring)."""

    def __init__(self) -> None:
        self._payloads: dict[int, Mapping[str, Any]] = {}
        self._live = BitMap()
        self._maps: dict[tuple[str, str, Any], BitMap] = {}  # (kind, path, value) → fids
        # string columns of bulk batches whose per-value bitmaps are built on the first filter that reads the
        # path (a unique text field would otherwise cost one bitmap per point at load time)
        self._pending: dict[str, list[tuple[list[int], list[str]]]] = {}
        self._nums: dict[str, _Numbers] = defaultdict(_Numbers)

    def __len__(self) -> int:
        return len(self._payloads)

    def payload(self, fid: int) -> Mapping[str, Any] | None:
        """The payload indexed for fid (None if unknown)."""
        return self._payloads.get(int(fid))

    def add(self, fids: Sequence[int] | np.ndarray, payloads: Sequence[Mapping[str, Any]]) -> None:
        """Index these points (an fid already present is replaced)."""
        ids = _check_fids(fids)
        if len(ids) != len(payloads):
            raise InvalidInputError(f"{len(ids)} fids but {len(payloads)} payloads")
        self.remove([f for f in ids if f in self._payloads])
        grouped: dict[tuple[str, str, Any], list[int]] = defaultdict(list)
        numbers: dict[str, dict[int, list[float]]] = defaultdict(dict)
        self._payloads.update(zip(ids, payloads, strict=True))
        if len(ids) >= COLUMN_MIN and self._add_columns(ids, payloads, grouped):
            payloads = ()  # done column by column
        for fid, pl in zip(ids, payloads, strict=False):
            for kind, path, value in postings(pl):
                if kind == "num":
                    numbers[path].setdefault(fid, []).append(value)
                else:
                    grouped[(kind, path, value)].append(fid)
        self._merge(grouped)
        for path, entries in numbers.items():
            self._nums[path].add(entries)
        self._live |= BitMap(ids)

    def _add_columns(
        self, ids: list[int], payloads: Sequence[Mapping[str, Any]], grouped: dict[tuple[str, str, Any], list[int]]
    ) -> bool:
        """A bulk batch whose payloads share one set of plain keys, indexed one column at a time (what
        postings() gives per payload, in C-level passes). False, having changed nothing, for any other batch."""
        keys = payloads[0].keys()
        if any("." in k for k in keys) or not all(type(p) is dict and p.keys() == keys for p in payloads):
            return False
        cols = {key: list(map(itemgetter(key), payloads)) for key in keys}
        if not all(set(map(type, col)) <= JSON_SCALARS for col in cols.values()):
            return False  # nested values: the general walk
        for key, col in cols.items():
            types = set(map(type, col))
            if types == {str}:
                self._pending.setdefault(key, []).append((ids, col))
                grouped[("present", key, None)].extend(ids)
            elif types == {bool}:
                for fid, v in zip(ids, col, strict=True):
                    grouped[("bool", key, v)].append(fid)
                grouped[("present", key, None)].extend(ids)
            elif types <= {int, float}:
                try:
                    vals = np.array(list(map(float, col)), dtype=np.float64)
                except OverflowError:
                    vals = np.array([as_double(v) for v in col], dtype=np.float64)
                self._nums[key].add_arrays(np.array(ids, dtype=np.uint32), vals)
                grouped[("present", key, None)].extend(ids)
            else:  # mixed scalar types and nulls: value by value
                nums: dict[int, list[float]] = {}
                for fid, v in zip(ids, col, strict=True):
                    t = type(v)
                    if v is None:
                        grouped[("null", key, None)].append(fid)
                        continue
                    grouped[("present", key, None)].append(fid)
                    if t is str:
                        grouped[("str", key, v)].append(fid)
                    elif t is bool:
                        grouped[("bool", key, v)].append(fid)
                    else:
                        nums[fid] = [as_double(v)]
                if nums:
                    self._nums[key].add(nums)
        return True

    def _merge(self, grouped: Mapping[tuple[str, str, Any], list[int]]) -> None:
        """Add each (kind, path, value) posting's fids to its bitmap."""
        for gkey, members in grouped.items():
            bm = self._maps.get(gkey)
            if bm is None:
                self._maps[gkey] = BitMap(members)
            else:
                bm |= BitMap(members)

    def _build_pending(self, path: str) -> None:
        """The per-value bitmaps of a path's pending string columns."""
        by_value: dict[str, list[int]] = defaultdict(list)
        for fids, vals in self._pending.pop(path, ()):
            for fid, v in zip(fids, vals, strict=True):
                by_value[v].append(fid)
        self._merge({("str", path, v): members for v, members in by_value.items()})

    def remove(self, fids: Iterable[int] | np.ndarray) -> None:
        """Forget these points; unknown fids are ignored."""
        grouped: dict[tuple[str, str, Any], list[int]] = defaultdict(list)
        numbers: dict[str, list[int]] = defaultdict(list)
        gone: list[int] = []
        arr = np.asarray(list(fids) if not isinstance(fids, np.ndarray) else fids, dtype=np.int64).tolist()
        if self._pending and any(int(f) in self._payloads for f in arr):
            for path in list(self._pending):
                self._build_pending(path)
        for fid in arr:
            pl = self._payloads.pop(int(fid), None)
            if pl is None:
                continue
            gone.append(int(fid))
            for kind, path, value in postings(pl):
                if kind == "num":
                    numbers[path].append(int(fid))
                else:
                    grouped[(kind, path, value)].append(int(fid))
        for key, members in grouped.items():
            bm = self._maps[key]
            bm -= BitMap(members)
            if not bm:
                del self._maps[key]
        for path, members in numbers.items():
            nums = self._nums[path]
            nums.remove(members)
            if nums.empty():
                del self._nums[path]
        self._live -= BitMap(gone)

    def has_path(self, path: str) -> bool:
        """Whether any indexed payload holds ``path`` (with a value, null, or as a number)."""
        return (
            ("present", path, None) in self._maps
            or ("null", path, None) in self._maps
            or path in self._nums
            or path in self._pending
        )

    def match(self, flt: Filter) -> np.ndarray:
        """Sorted unique int64 fids of the indexed points whose payload satisfies ``flt``."""
        if flt.root is None:
            return to_fids(self._live)
        return to_fids(self._eval(flt.root))

    def count(self, flt: Filter) -> int:
        """How many indexed points satisfy ``flt``."""
        return len(self._live) if flt.root is None else len(self._eval(flt.root))

    # ---- evaluation
    def _eval(self, node: Node) -> AbstractBitMap:
        """The live fids node matches. The result may be one of the index's own bitmaps: never mutate it."""
        if isinstance(node, And):
            if not node.children:
                return self._live
            out: AbstractBitMap | None = None
            for c in sorted(node.children, key=lambda n: isinstance(n, Not)):  # positive parts first
                if isinstance(c, Not) and out is not None:
                    out = out - self._eval(c.child)
                else:
                    part = self._eval(c)
                    out = part if out is None else out & part
                if not out:
                    break
            return out if out is not None else BitMap()
        if isinstance(node, Or):
            return BitMap.union(*(self._eval(c) for c in node.children)) if node.children else BitMap()
        if isinstance(node, Not):
            return self._live - self._eval(node.child)
        if isinstance(node, Eq):
            return self._eq(node.path, node.value)
        if isinstance(node, In):
            return BitMap.union(*(self._eq(node.path, v) for v in node.values))
        if isinstance(node, Range):
            nums = self._nums.get(node.path)
            return nums.range(node) if nums is not None else BitMap()
        if isinstance(node, Exists):
            return self._get("present", node.path, None)
        raise TypeError(f"not a filter node: {node!r}")

    def _get(self, kind: str, path: str, value: Any) -> AbstractBitMap:
        if kind == "str" and path in self._pending:
            self._build_pending(path)
        return self._maps.get((kind, path, value)) or _EMPTY

    def _eq(self, path: str, v: Any) -> AbstractBitMap:
        if v is None:
            return (self._live - self._get("present", path, None)) | self._get("null", path, None)
        if isinstance(v, bool):
            return self._get("bool", path, v)
        if isinstance(v, str):
            return self._get("str", path, v)
        nums = self._nums.get(path)
        x = as_double(v)
        return nums.range(Range(path, gte=x, lte=x)) if nums is not None else BitMap()


_EMPTY = FrozenBitMap()


def _check_fids(fids: Sequence[int] | np.ndarray) -> list[int]:
    arr = np.asarray(fids, dtype=np.int64).reshape(-1)
    if len(arr) and (arr.min() < 0 or arr.max() > MAX_FID):
        raise InvalidInputError(f"payload index ids must be in [0, {MAX_FID}], got {int(arr.min())}..{int(arr.max())}")
    if len(np.unique(arr)) != len(arr):
        raise InvalidInputError("duplicate ids in one payload index update")
    return arr.tolist()
