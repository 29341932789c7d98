"""In-memory payload index of a FAISS collection: int64 point ids (fids) → the fids matching a filter.

The seam between the filter language (``retrieval.filters``) and the FAISS collection store: the store adds and
removes points, and asks ``match(filter)`` for the sorted int64 ids of the live points whose payload satisfies
the filter, exactly as ``Filter.matches`` would (the tests check it against the reference with hypothesis).

No payload is kept: a match costs in proportion to what the filter touches, not to the collection, and the index
holds per point a few bytes, not a Python object. One roaring bitmap per (path, string) and (path, bool) posting,
one per path for "has a value" and "holds null", and per path a sorted array of numbers (a range is two binary
searches); writes go to a small unsorted tail that is merged into the sorted arrays once it grows. A path with more
than ``STR_DICT_MAX`` distinct strings (a title, a text) keeps bitmaps only for its values of at least
``STR_HEAVY`` points and the rest as a sorted array of 64-bit string hashes, whose candidates for a value are
checked against the payloads themselves (``verify``, the point store's reader): exact, and no string held in RAM.
Without ``verify`` every string gets its bitmap.

Removal is lazy: ``remove`` only clears the fids from the live set, which every answer is intersected with; their
postings stay (the point store never reuses a fid) until ``renumber`` (a compaction) drops them. Adding a fid
that was indexed before first purges its old postings. Negation is "every live point minus the match". The
state can be saved to and restored from plain arrays and bitmaps (``payload_index_file``). Not thread-safe: the
store locks.
"""

from __future__ import annotations

import array
import hashlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from operator import itemgetter
from typing import Any

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
TAIL_MAX = 4096  # unsorted entries kept aside before a merge into the sorted arrays
COLUMN_MIN = 256  # batches at least this big whose payloads share their keys are indexed column by column
STR_DICT_MAX = 4096  # distinct strings a path keeps one bitmap each for (with a verifier; beyond: hashed)
STR_HEAVY = 64  # a hashed path keeps the bitmaps of its values held by at least this many points
# the exact types of JSON scalars: a payload of these alone is flat (no nested value to walk or to share)
JSON_SCALARS = frozenset({str, int, float, bool, type(None)})

Verifier = Callable[[np.ndarray], Sequence[Mapping[str, Any]]]  # live fids → their payloads, in that order
Key = tuple[str, str, Any]  # (kind, path, value) of a bitmap posting


def bitmap(fids: np.ndarray) -> BitMap:
    """A BitMap of uint32-representable ids (the buffer path: no Python loop)."""
    return BitMap(array.array("I", np.ascontiguousarray(fids, dtype=np.uint32).tobytes()))


def to_fids(bm: AbstractBitMap) -> np.ndarray:
    """Sorted int64 ids of a bitmap."""
    return np.frombuffer(bm.to_array(), dtype=np.uint32).astype(np.int64)


def str_hash(value: str) -> int:
    """The 64-bit hash a hashed path keeps of a string (stable across processes: it is saved)."""
    return int.from_bytes(hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


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


def holds_string(payload: Mapping[str, Any], path: str, value: str) -> bool:
    """Whether the payload has the string ``value`` at ``path`` (what a ("str", path, value) posting says)."""
    return any(isinstance(x, str) and x == value for x in flat_values(resolve(payload, path)))


class SortedColumn:
    """(value, fid) entries at one path sorted by value (numbers: float64; hashed strings: uint64), plus an
    unsorted tail merged in once it outgrows 1/64 of them (a merge of two sorted runs: linear); entries of purged
    fids masked until a merge. A fid may hold several values (arrays)."""

    def __init__(self, dtype: type[np.generic]) -> None:
        self.dtype = np.dtype(dtype)
        self.vals = np.empty(0, dtype=self.dtype)
        self.fids = np.empty(0, dtype=np.uint32)
        self.in_main = BitMap()  # fids with entries in the sorted arrays
        self.dead = BitMap()  # fids whose entries in the sorted arrays are stale
        self._tv: list[np.ndarray] = []  # the tail: chunks of values and their fids, unsorted
        self._tf: list[np.ndarray] = []
        self._tn = 0
        self._tail_arrays: tuple[np.ndarray, np.ndarray] | None = None

    def add(self, fids: np.ndarray, vals: np.ndarray) -> None:
        """Add (fid, value) entries (of fids purged or never seen)."""
        self._tv.append(np.asarray(vals).astype(self.dtype, copy=False))
        self._tf.append(np.asarray(fids).astype(np.uint32, copy=False))
        self._tn += len(fids)
        self._tail_arrays = None
        if self._tn > max(TAIL_MAX, len(self.vals) // 64):
            self.merge()

    def purge(self, fids: AbstractBitMap) -> None:
        """Drop every entry of these fids."""
        if self._tn:
            tv, tf = self._tail()
            keep = ~np.isin(tf, to_fids(fids).astype(np.uint32))
            self._tv, self._tf, self._tn = [tv[keep]], [tf[keep]], int(keep.sum())
            self._tail_arrays = None
        self.dead |= fids & self.in_main
        if len(self.dead) > max(TAIL_MAX, len(self.vals) // 4):
            self.merge()

    def merge(self) -> None:
        """Fold the tail into the sorted arrays; drop stale entries."""
        vals, fids = self.vals, self.fids
        if self.dead:
            keep = ~np.isin(fids, to_fids(self.dead).astype(np.uint32))
            vals, fids = vals[keep], fids[keep]
        tv, tf = self._tail()
        self.set_sorted(np.concatenate([vals, tv]), np.concatenate([fids, tf]), presorted=False)

    def set_sorted(self, vals: np.ndarray, fids: np.ndarray, presorted: bool = True) -> None:
        """Replace every entry with these (sorted by value unless ``presorted`` is False)."""
        if not presorted:
            order = np.argsort(vals, kind="stable")  # timsort: two sorted runs merge in linear time
            vals, fids = vals[order], fids[order]
        self.vals, self.fids = vals.astype(self.dtype, copy=False), fids.astype(np.uint32, copy=False)
        self.in_main = bitmap(self.fids)
        self.dead = BitMap()
        self._tv, self._tf, self._tn = [], [], 0
        self._tail_arrays = None

    def _tail(self) -> tuple[np.ndarray, np.ndarray]:
        if self._tail_arrays is None:
            self._tail_arrays = (
                np.concatenate(self._tv) if self._tv else np.empty(0, dtype=self.dtype),
                np.concatenate(self._tf) if self._tf else np.empty(0, dtype=np.uint32),
            )
        return self._tail_arrays

    def between(self, lo: Any, lo_incl: bool, hi: Any, hi_incl: bool) -> BitMap:
        """fids of the entries within the bounds (None: unbounded), dead and live alike."""
        i = 0 if lo is None else int(np.searchsorted(self.vals, lo, side="left" if lo_incl else "right"))
        j = len(self.vals) if hi is None else int(np.searchsorted(self.vals, hi, side="right" if hi_incl else "left"))
        out = bitmap(self.fids[i:j]) if j > i else BitMap()
        if self.dead and out:
            out -= self.dead
        if self._tn:
            tv, tf = self._tail()
            mask = np.ones(len(tv), dtype=bool)
            if lo is not None:
                mask &= tv >= lo if lo_incl else tv > lo
            if hi is not None:
                mask &= tv <= hi if hi_incl else tv < hi
            if mask.any():
                out |= bitmap(tf[mask])
        return out

    def find(self, keys: np.ndarray) -> np.ndarray:
        """Sorted unique fids of the entries whose value is one of ``keys`` (an exact-match lookup)."""
        keys = np.unique(np.asarray(keys).astype(self.dtype, copy=False))
        lo = np.searchsorted(self.vals, keys, side="left")
        counts = np.searchsorted(self.vals, keys, side="right") - lo
        total = int(counts.sum())
        parts = []
        if total:
            ends = np.cumsum(counts)
            idx = np.repeat(lo - (ends - counts), counts) + np.arange(total)
            found = self.fids[idx]
            if self.dead:
                found = found[~np.isin(found, to_fids(self.dead).astype(np.uint32))]
            parts.append(found)
        if self._tn:
            tv, tf = self._tail()
            parts.append(tf[np.isin(tv, keys)])
        return np.unique(np.concatenate(parts)).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)

    def range(self, r: Range) -> BitMap:
        lo, lo_incl = (r.gt, False) if r.gt is not None and (r.gte is None or r.gt >= r.gte) else (r.gte, True)
        hi, hi_incl = (r.lt, False) if r.lt is not None and (r.lte is None or r.lt <= r.lte) else (r.lte, True)
        return self.between(lo, lo_incl, hi, hi_incl)

    def renumber(self, old: np.ndarray) -> None:
        """Keep the entries of the fids in ``old`` (sorted), renumbered to their positions in it."""
        self.merge()
        keep, new = _positions(old, self.fids)
        self.set_sorted(self.vals[keep], new)


def _positions(old: np.ndarray, fids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mask of the fids found in the sorted array ``old``, their positions in it)."""
    if not len(old):
        return np.zeros(len(fids), dtype=bool), np.zeros(0, dtype=np.int64)
    pos = np.minimum(np.searchsorted(old, fids), len(old) - 1)
    keep = old[pos] == fids
    return keep, pos[keep]


class PayloadIndex:
    """The fids matching a filter (bitmaps and sorted columns; see the module docstring)."""

    def __init__(self, verify: Verifier | None = None) -> None:
        self._verify = verify
        self._live = BitMap()
        self._ever = BitMap()  # fids with postings (live or not): adding one again purges the old ones
        self._maps: dict[Key, BitMap] = {}  # (kind, path, value) → fids
        self._nums: dict[str, SortedColumn] = {}  # path → its numbers
        self._hashed: dict[str, SortedColumn] = {}  # path → hashes of its strings that have no bitmap
        self._str_values: Counter[str] = Counter()  # path → string values holding a bitmap

    def __len__(self) -> int:
        return len(self._live)

    @property
    def live(self) -> BitMap:
        """The live fids (do not mutate)."""
        return self._live

    def set_live(self, live: BitMap) -> None:
        """Declare which indexed fids are live (a store loading its postings from a file)."""
        self._live = live

    def add(self, fids: Sequence[int] | np.ndarray, payloads: Sequence[Mapping[str, Any]]) -> None:
        """Index these points (an fid indexed before is replaced)."""
        ids = _check_fids(fids)
        if len(ids) != len(payloads):
            raise InvalidInputError(f"{len(ids)} fids but {len(payloads)} payloads")
        new = BitMap(ids)
        if again := new & self._ever:
            self._purge(again)
        grouped: dict[Key, list[int]] = defaultdict(list)
        numbers: dict[str, tuple[list[int], list[float]]] = defaultdict(lambda: ([], []))
        if len(ids) >= COLUMN_MIN and self._add_columns(ids, payloads, grouped):
            payloads = ()  # done column by column
        for fid, pl in zip(ids, payloads, strict=False):
            for kind, path, value in postings(pl):
                if kind == "num":
                    nf, nv = numbers[path]
                    nf.append(fid)
                    nv.append(value)
                else:
                    grouped[(kind, path, value)].append(fid)
        self._merge(grouped)
        for path, (nf, nv) in numbers.items():
            self._numbers(path).add(np.array(nf, dtype=np.uint32), np.array(nv, dtype=np.float64))
        self._live |= new
        self._ever |= new

    def _numbers(self, path: str) -> SortedColumn:
        col = self._nums.get(path)
        if col is None:
            col = self._nums[path] = SortedColumn(np.float64)
        return col

    def _add_columns(
        self, ids: list[int], payloads: Sequence[Mapping[str, Any]], grouped: dict[Key, list[int]]
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
                for fid, v in zip(ids, col, strict=True):
                    grouped[("str", key, v)].append(fid)
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
                self._numbers(key).add(np.array(ids, dtype=np.uint32), vals)
                grouped[("present", key, None)].extend(ids)
            else:  # mixed scalar types and nulls: value by value
                nf: list[int] = []
                nv: list[float] = []
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
                        nf.append(fid)
                        nv.append(as_double(v))
                if nf:
                    self._numbers(key).add(np.array(nf, dtype=np.uint32), np.array(nv, dtype=np.float64))
        return True

    def _merge(self, grouped: Mapping[Key, list[int]]) -> None:
        """Add each (kind, path, value) posting's fids to its bitmap (strings of hashed paths to their column)."""
        strings: dict[str, dict[str, list[int]]] = defaultdict(dict)
        for gkey, members in grouped.items():
            if gkey[0] == "str":
                strings[gkey[1]][gkey[2]] = members
                continue
            bm = self._maps.get(gkey)
            if bm is None:
                self._maps[gkey] = BitMap(members)
            else:
                bm |= BitMap(members)
        for path, by_value in strings.items():
            self._add_strings(path, by_value)

    def _add_strings(self, path: str, by_value: dict[str, list[int]]) -> None:
        if self._verify is not None and path not in self._hashed:
            fresh = sum(("str", path, v) not in self._maps for v in by_value)
            if self._str_values[path] + fresh > STR_DICT_MAX:
                self._hash_path(path)
        col = self._hashed.get(path)
        rest_f: list[int] = []
        rest_h: list[int] = []
        for v, members in by_value.items():
            key = ("str", path, v)
            bm = self._maps.get(key)
            if bm is not None:
                bm |= BitMap(members)
            elif col is None:
                self._maps[key] = BitMap(members)
                self._str_values[path] += 1
            else:
                rest_f.extend(members)
                rest_h.extend([str_hash(v)] * len(members))
        if col is not None and rest_f:
            col.add(np.array(rest_f, dtype=np.uint32), np.array(rest_h, dtype=np.uint64))

    def _hash_path(self, path: str) -> None:
        """Move a path's strings held by fewer than STR_HEAVY live points from bitmaps into a hashed column."""
        fids: list[np.ndarray] = []
        hashes: list[np.ndarray] = []
        for key in [k for k in self._maps if k[0] == "str" and k[1] == path]:
            live = self._maps[key] & self._live
            if len(live) >= STR_HEAVY:
                continue
            del self._maps[key]
            self._str_values[path] -= 1
            f = to_fids(live)
            fids.append(f)
            hashes.append(np.full(len(f), str_hash(key[2]), dtype=np.uint64))
        col = self._hashed[path] = SortedColumn(np.uint64)
        if fids:
            col.set_sorted(np.concatenate(hashes), np.concatenate(fids), presorted=False)

    def _purge(self, fids: BitMap) -> None:
        """Forget every posting of these fids (they are being indexed again)."""
        for key in list(self._maps):
            bm = self._maps[key]
            if bm.intersect(fids):
                bm -= fids
                if not bm:
                    del self._maps[key]
                    if key[0] == "str":
                        self._str_values[key[1]] -= 1
        for col in (*self._nums.values(), *self._hashed.values()):
            col.purge(fids)
        self._ever -= fids
        self._live -= fids

    def remove(self, fids: Iterable[int] | np.ndarray) -> None:
        """Forget these points (lazily: they leave the live set); unknown fids are ignored."""
        arr = np.asarray(list(fids) if not isinstance(fids, np.ndarray) else fids, dtype=np.int64).reshape(-1)
        arr = arr[(arr >= 0) & (arr <= MAX_FID)]
        if len(arr):
            self._live -= bitmap(arr)

    def renumber(self, old_fids: np.ndarray) -> None:
        """A compaction renumbered the points: fid i is now ``old_fids[i]`` (sorted). Postings of other fids go."""
        old = np.asarray(old_fids, dtype=np.int64)
        for key in list(self._maps):
            keep, new = _positions(old, to_fids(self._maps[key]))
            if len(new):
                self._maps[key] = bitmap(new)
            else:
                del self._maps[key]
                if key[0] == "str":
                    self._str_values[key[1]] -= 1
        for cols in (self._nums, self._hashed):
            for col in cols.values():
                col.renumber(old)
        self._live = bitmap(_positions(old, to_fids(self._live))[1])
        self._ever = BitMap(self._live)

    def has_path(self, path: str) -> bool:
        """Whether any live point's payload holds ``path`` (with a value or null): every number and string has
        its "present" posting."""
        return any(
            (bm := self._maps.get((kind, path, None))) is not None and bm.intersect(self._live)
            for kind in ("present", "null")
        )

    def match(self, flt: Filter) -> np.ndarray:
        """Sorted unique int64 fids of the live points whose payload satisfies ``flt``."""
        if flt.root is None:
            return to_fids(self._live)
        return to_fids(self._eval(flt.root) & self._live)

    def count(self, flt: Filter) -> int:
        """How many live points satisfy ``flt``."""
        return len(self._live) if flt.root is None else self._eval(flt.root).intersection_cardinality(self._live)

    # ---- evaluation: a node's fids, right on the live ones (dead fids may be in; the caller intersects)
    def _eval(self, node: Node) -> AbstractBitMap:
        """The fids node matches, among the live ones. It may be one of the index's own bitmaps: never mutate it."""
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
        return self._maps.get((kind, path, value)) or _EMPTY

    def _eq(self, path: str, v: Any) -> AbstractBitMap:
        if v is None:
            return (self._live - self._get("present", path, None)) | self._get("null", path, None)
        if isinstance(v, bool):
            return self._get("bool", path, v)
        if isinstance(v, str):
            return self._eq_str(path, v)
        nums = self._nums.get(path)
        x = as_double(v)
        return nums.between(x, True, x, True) if nums is not None else BitMap()

    def _eq_str(self, path: str, v: str) -> AbstractBitMap:
        bm = self._maps.get(("str", path, v))
        col = self._hashed.get(path)
        if bm is not None or col is None or self._verify is None:
            return bm or _EMPTY
        h = np.uint64(str_hash(v))
        cand = to_fids(col.between(h, True, h, True) & self._live)
        if not len(cand):
            return BitMap()
        payloads = self._verify(cand)  # a hash is not the string: each candidate's own payload decides
        return bitmap(cand[np.fromiter((holds_string(pl, path, v) for pl in payloads), bool, len(cand))])


_EMPTY = FrozenBitMap()


def _check_fids(fids: Sequence[int] | np.ndarray) -> list[int]:
    arr = np.asarray(fids, dtype=np.int64).reshape(-1)
    if len(arr) and (arr.min() < 0 or arr.max() > MAX_FID):
        raise InvalidInputError(f"payload index ids must be in [0, {MAX_FID}], got {int(arr.min())}..{int(arr.max())}")
    if len(np.unique(arr)) != len(arr):
        raise InvalidInputError("duplicate ids in one payload index update")
    return arr.tolist()
