"""Auto-tune: the cheapest query setting of an index that reaches a recall target, measured on its own points.

After autofaiss' ``get_optimal_hyperparameters`` (a search over nprobe / efSearch with the index's own vectors as
queries), with the recall target as the constraint: a sample of the store's own points is searched against exact
ground truth (``SearchParams(exact=True)``), and the candidate settings of the kind are tried from the cheapest up.
Which sample stands for fresh queries depends on the index (``sample_kind``, measured against held-out queries
at 100k and 1M clustered, STS-B and Fashion-MNIST):

- graphs (hnsw, hnsw_sq8, Qdrant), ``moved``: each point moved by a random offset as long as its distance to its
  REACH-th nearest neighbour. An unmoved stored point is an easier query for a graph, which links it to its
  neighbours directly (100k, ef 16: unmoved 0.876, fresh 0.741); moved, the sample reads a little below fresh
  queries.
- inverted lists (ivf, ivfpq, ivf_sq8), ``points+moved``: half the sample the stored points themselves, half
  moved, and each setting counts at the lower of the two recalls. Moved points alone overstated IVF-PQ (100k:
  0.921 on them, 0.878 fresh at nprobe 8, re-rank 10; a stored point falls in its nearest list as a fresh vector
  does), unmoved points alone overstated IVF on STS-B (0.929 against 0.914 at nprobe 16).

Every sampled point's own id is left out of its truth and its hits, moved or not (moved, it is still its own
nearest hit: at k=1 the whole answer).

Recall is plain id overlap at k (no tie credit), and a setting counts only when its recall reaches the target plus
a margin of two standard errors of the sample, so that fresh queries from the same distribution reach the target
too. The chosen operating point is recorded in the collection manifest (``tuning``) and becomes the index's default
query setting; explicit parameters still win. Nothing here knows an engine: stores are searched through the
public contract.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from retrieval.errors import InvalidInputError
from retrieval.stores import SearchParams, VectorStore

TUNE_MIN_POINTS = 5000  # below: exact search is cheap and recall sampling too noisy; the defaults stay
DEFAULT_TARGET = 0.95
DEFAULT_K = 10
SAMPLE = 200  # queries drawn from the store's own points (2,000 pairs at k=10: two standard errors stay under the
#               margin floor at recall ≥ 0.95, so more queries would only cost time)
TIMED = 40  # of them, timed one at a time for the chosen setting's p50
MARGIN_FLOOR = 0.015  # 0.01 let two STS-B rows tune right at the edge: Qdrant Edge m=16 read 0.960 on its sample at
#                      ef 16 and 0.947 on fresh queries, the seed IVF-PQ 0.963 and 0.948
MIN_QUERIES = 20  # a caller's own queries: fewer measure nothing a margin can bound (3 read "reached" at 1.0)
REACH = 10  # sample queries are stored points moved by the distance to their REACH-th nearest other point

_EF = [16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096]
_NPROBE = [1, 2, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 2048, 4096]
_RERANK = [10, 20, 50, 100]
PLATEAU = 0.001  # a 4x dearer setting gaining no more recall than this: the kind cannot get further by searching more
# a quantized Qdrant collection's candidates per hit, rescored. Not 1: it rescores only the k hits themselves, so
# the quantization's ranking error passes through, and the sample misjudged it (scalar, 100k clustered 384-d:
# sample 0.963, fresh queries 0.944)
_OVERSAMPLING = [2, 3, 4, 6, 8, 12, 16, 24, 32]


@dataclass
class OperatingPoint:
    """A tuned default: the setting, what it measured, and when."""

    params: dict[str, int]
    recall: float  # id overlap at k over the sample, self-matches excluded
    target: float
    k: int
    reached: bool  # recall ≥ target + margin
    margin: float
    p50_ms: float
    sample: int
    count: int  # points the index held when tuned
    seconds: float  # what tuning cost
    at: str = ""
    tried: list[dict[str, Any]] = field(default_factory=list)
    advice: str = ""  # when not reached: the build change that would reach it
    sample_kind: str = ""  # "moved" (points moved off themselves), "points+moved" (half unmoved with their own id
    #                        left out, half moved; the lower recall counts), "queries" (the caller's); empty in
    #                        points recorded before it existed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def search_params(self) -> SearchParams:
        """The setting as query parameters."""
        return as_params(self.params)


def candidates(store: VectorStore) -> list[dict[str, int]]:
    """The settings to try for this index, cheapest first (empty: nothing to tune, e.g. flat)."""
    accepts = store.query_params() or frozenset()
    lim = store.limits
    if "oversampling" in accepts and "hnsw_ef" in accepts:  # quantized Qdrant: one ef sweep per oversampling
        efs = [{"hnsw_ef": e} for e in _EF if e <= lim.max_ef]
        return [{"oversampling": o, **c} for o in _OVERSAMPLING if o <= lim.max_rerank for c in efs]
    if "nprobe" in accepts:
        nlist = int(store.info().get("nlist") or 0) or max(_NPROBE)
        probes = [p for p in _NPROBE if p <= min(nlist, lim.max_nprobe)]
        if probes and probes[-1] < min(nlist, lim.max_nprobe):
            probes.append(min(nlist, lim.max_nprobe))
        if getattr(store, "kind", "") == "ivfpq" or getattr(store, "reranks", False):  # sq8 kinds: re-rank on
            reranks = [r for r in _RERANK if r <= lim.max_rerank] or [lim.max_rerank]
            return [{"nprobe": p, "rerank": r} for r in reranks for p in probes]
        return [{"nprobe": p} for p in probes]
    if "hnsw_ef" in accepts:
        efs = [{"hnsw_ef": e} for e in _EF if e <= lim.max_ef]
        if getattr(store, "reranks", False):  # hnsw_sq8 with re-rank on: one ef sweep per factor
            return [{**c, "rerank": r} for r in [r for r in _RERANK if r <= lim.max_rerank] or [lim.max_rerank]
                    for c in efs]
        return efs
    return []


def as_params(c: dict[str, int]) -> SearchParams:
    """A setting ({"nprobe": 8, "rerank": 10}) as query parameters."""
    return SearchParams(
        nprobe=c.get("nprobe"), hnsw_ef=c.get("hnsw_ef"), rerank=c.get("rerank"), oversampling=c.get("oversampling")
    )


def _ids(hits: list[list[Any]], own: list[str], k: int) -> list[list[str]]:
    return [[h.id for h in row if h.id != me][:k] for row, me in zip(hits, own, strict=True)]


def _recall(got: list[list[str]], truth: list[list[str]], k: int) -> float:
    hit = sum(len(set(g) & set(t)) for g, t in zip(got, truth, strict=True))
    total = sum(min(k, len(t)) for t in truth)
    return hit / total if total else 1.0


def _margin(recall: float, n: int) -> float:
    """Two standard errors of a recall measured over n (query, neighbour) pairs, at least MARGIN_FLOOR (the
    sample's queries are a proxy for fresh ones, not the same thing)."""
    return max(MARGIN_FLOOR, 2 * math.sqrt(max(recall * (1 - recall), 0.01 * 0.99) / max(n, 1)))


def needed(target: float, margin: float) -> float:
    """The sample recall a setting must show to count as reaching ``target``: the target plus the margin, capped
    at 1 (a target above 0.99 then asks for every sampled neighbour found, not for a recall above 1)."""
    return min(target + margin, 1.0)


def _advice(store: VectorStore) -> str:
    """The build or limit change that would let ``store`` reach a target its tuning fell short of: the real limit
    (codes, graph, re-rank cap), and the nprobe cap only where it stops short of the index's lists."""
    kind = getattr(store, "kind", store.backend)
    if "oversampling" in (store.query_params() or ()):
        return (
            "quantized vectors too coarse for this target even rescored: scalar instead of binary quantization "
            "(SIMLOOKUP_QDRANT__QUANTIZATION=scalar, made at the next build), a larger oversampling cap "
            "(SIMLOOKUP_LIMITS__MAX_RERANK) or a larger m (SIMLOOKUP_QDRANT__HNSW_M)"
        )
    nlist, cap = int(store.info().get("nlist") or 0), store.limits.max_nprobe
    probes = (f"more lists visited than the nprobe cap allows: raise SIMLOOKUP_LIMITS__MAX_NPROBE (now {cap}, the "
              f"index has {nlist} lists)") if cap < nlist else ""
    rerank = "a larger re-rank factor cap (SIMLOOKUP_LIMITS__MAX_RERANK)"
    graph = "a larger M (SIMLOOKUP_FAISS__HNSW_M, e.g. 48 or 64), then rebuild"
    if kind == "ivfpq":
        ways = [f"PQ codes too coarse for this target: more PQ bytes (SIMLOOKUP_FAISS__PQ_M, e.g. dim/4) or {rerank}, "
                "then rebuild", probes]
    elif kind == "ivf":
        ways = [probes or f"every one of the {nlist} lists visited and still short: the sample cannot show this "
                "target (near-ties at rank k); tune to a lower target"]
    elif kind == "hnsw":
        ways = [f"graph too sparse for this target: {graph}"]
    elif kind in ("ivf_sq8", "hnsw_sq8"):  # without re-rank the 8-bit codes, not nprobe or ef, cap the recall
        codes = ("8-bit codes too coarse for this target: re-rank on (SIMLOOKUP_FAISS__SQ8_RERANK=true: rows read "
                 "from the vector file), then `simlookup tune`")
        ways = [rerank if getattr(store, "reranks", False) else codes, probes if kind == "ivf_sq8" else graph]
    else:
        ways = []
    if ways:
        return "; or ".join(w for w in ways if w)
    return ("graph too sparse for this target: a larger m (SIMLOOKUP_QDRANT__HNSW_M, e.g. 32 or 48) or ef_construct, "
            "then rebuild; or raise SIMLOOKUP_LIMITS__MAX_EF")


def tune(
    store: VectorStore,
    target: float = DEFAULT_TARGET,
    k: int = DEFAULT_K,
    queries: np.ndarray | None = None,
    sample: int = SAMPLE,
    seed: int = 0,
) -> OperatingPoint | None:
    """The cheapest setting of ``store`` whose recall@k reaches ``target`` (or the best one, ``reached`` False).

    ``queries``: the caller's own (n, dim) queries; else ``sample`` of the store's points (their own id left out
    of every list). None when the index has no query setting to tune (flat) or holds no points.
    """
    from retrieval.stores.manifest import now_iso

    if not 0 < target <= 1:
        raise InvalidInputError(f"the recall target must lie in (0, 1], got {target}")
    if k < 1:
        raise InvalidInputError(f"k must be a positive integer, got {k}")
    if queries is not None and (queries.ndim != 2 or queries.shape[1] != store.dim or not len(queries)):
        raise InvalidInputError(f"tuning queries must be an (n, {store.dim}) array, got shape {queries.shape}")
    if queries is not None and len(queries) < MIN_QUERIES:
        raise InvalidInputError(
            f"tuning needs at least {MIN_QUERIES} queries to measure a recall its margin can bound, got {len(queries)}"
        )
    t0 = time.perf_counter()
    cands = candidates(store)
    n = store.count()
    if not cands or n == 0:
        return None
    own: list[str]
    if queries is None:
        ids = sorted(store.ids())
        rng = np.random.default_rng(seed)
        pick = [ids[i] for i in sorted(rng.choice(len(ids), min(sample, len(ids)), replace=False))]
        got = store.fetch(pick)
        pick = [i for i in pick if got[i][0] is not None]
        if not pick:
            return None  # an engine that keeps no vectors to draw from
        x = np.stack([np.asarray(got[i][0], dtype=np.float32) for i in pick])
        how = sample_kind(store)
        # own ids are left out of every truth and every hit list: unmoved, a point is its own nearest hit; moved, it
        # is still the nearest (a planted neighbour any index finds: at k=1 the whole answer, HNSW read 0.98 there
        # and fresh queries got 0.94)
        own = pick
        if how == "points+moved":  # the first half as they are, the second half moved
            h = (len(pick) + 1) // 2
            q = np.concatenate([x[:h], _fresh_like(store, x[h:], pick[h:], seed)]) if h < len(pick) else x
            parts = [slice(0, h), slice(h, len(pick))]
        else:
            q, parts = _fresh_like(store, x, pick, seed), [slice(0, len(pick))]
    else:
        how = "queries"
        q = np.asarray(queries, dtype=np.float32)
        own, parts = [""] * len(q), [slice(0, len(q))]
    parts = [p for p in parts if p.stop > p.start]
    kk = min(k + 1, n)
    truth = _ids(store.search(q, kk, params=SearchParams(exact=True), with_payload=False), own, k)
    pairs = min(sum(min(k, len(t)) for t in truth[p]) for p in parts)  # of the smallest part: its margin
    tried: list[dict[str, Any]] = []

    def measure(c: dict[str, int]) -> float:
        before = _topups(store)
        got = _ids(store.search(q, kk, params=as_params(c), with_payload=False), own, k)
        topped = _topups(store) - before
        each = [_recall(got[p], truth[p], k) for p in parts]
        r = min(each)  # the harder stand-in for fresh queries counts
        tried.append({**c, "recall": round(r, 4), **({"each": [round(e, 4) for e in each]} if len(each) > 1 else {}),
                      **({"topped_up": topped} if topped else {})})
        # answers the index could not fill (fewer than k in its probed lists) were completed by exact search: that
        # recall is not the setting's own, and at a smaller k the same setting has no top-up to lean on (nprobe 1
        # tuned at k=100 answered k=10 at 0.25). Such a setting counts as reaching nothing.
        return 0.0 if topped > max(1, len(q) // 100) else r

    best: tuple[float, dict[str, int]] | None = None
    reaching: list[tuple[float, dict[str, int]]] = []
    cap = None  # ivfpq: a larger re-rank reaches with no more lists than a smaller one: only fewer are worth a try
    for group in _monotone_groups(cands):  # recall grows along each group
        if cap is not None:
            group = group[:cap]
            if not group:
                break
        found, top = _first_reaching(
            group,
            measure,
            lambda r: r >= needed(target, _margin(r, pairs)),
            top_first=cap is not None,
        )
        if top is not None and (best is None or top[0] > best[0]):
            best = top
        if found is not None:
            reaching.append(found)
            cap = group.index(found[1])
    reached = bool(reaching)
    if reaching:  # the cheapest by measured time (ivfpq: one candidate per re-rank factor)
        timed = [(_p50_ms(store, q[:TIMED], kk, c), r, c) for r, c in reaching]
        p50, chosen_recall, chosen = min(timed, key=lambda t: t[0])
    else:
        assert best is not None
        chosen_recall, chosen = best
        p50 = _p50_ms(store, q[:TIMED], kk, chosen)
    return OperatingPoint(
        params=dict(chosen),
        recall=round(chosen_recall, 4),
        target=target,
        k=k,
        reached=reached,
        margin=round(_margin(chosen_recall, pairs), 4),
        p50_ms=round(p50, 3),
        sample=len(q),
        count=n,
        seconds=round(time.perf_counter() - t0, 3),
        at=now_iso(),
        tried=tried,
        advice="" if reached else _advice(store),
        sample_kind=how,
    )


def _topups(store: VectorStore) -> int:
    """Queries the store has completed by exact search because its index returned fewer than k (FAISS IVF kinds
    with few points in the probed lists; 0 where the engine does not count them)."""
    return int((store.info().get("searches") or {}).get("topup", 0))


def sample_kind(store: VectorStore) -> str:
    """How ``store``'s own points stand in for fresh queries: "moved" (``_fresh_like``) for graphs, which link a
    stored point to its neighbours directly; "points+moved" for inverted lists: half the sample the points
    themselves (own id left out), half moved, and a setting's recall the lower of the two (neither reads fresh
    queries right on every dataset: see the module's docstring)."""
    return "points+moved" if "nprobe" in (store.query_params() or ()) else "moved"


def _fresh_like(store: VectorStore, x: np.ndarray, own: list[str], seed: int) -> np.ndarray:
    """Queries like fresh ones from the same distribution, made from stored points: each point moved by a random
    offset as long as the distance to its nearest other point. A stored point itself is an easier query than
    a fresh one (an HNSW graph links it to its neighbours directly): tuned on points, HNSW read 0.96 on them
    and 0.88 on fresh queries from the same mixture; on the moved points the two agree."""
    hits = store.search(x, REACH + 1, params=SearchParams(exact=True), with_payload=False)
    rng = np.random.default_rng(seed + 1)
    out = np.empty_like(x)
    metric = store.metric.value
    for i, (row, me) in enumerate(zip(hits, own, strict=True)):
        others = [h for h in row if h.id != me]
        other = others[min(REACH, len(others)) - 1] if others else None
        if other is None:
            out[i] = x[i]
            continue
        if metric == "l2":
            dist = float(other.score)
        else:  # cosine (unit vectors) or dot: the euclidean distance between the two
            dist = float(np.sqrt(max(2.0 - 2.0 * float(other.score), 0.0))) if metric == "cosine" else 0.0
            if metric == "dot":
                dist = float(np.linalg.norm(x[i])) * 0.1
        step = np.asarray(rng.normal(size=x.shape[1]), dtype=np.float32)
        out[i] = x[i] + step / (np.linalg.norm(step) or 1.0) * dist
    return out


def _first_reaching(
    group: list[dict[str, int]],
    measure: Callable[[dict[str, int]], float],
    ok: Callable[[float], bool],
    top_first: bool = False,
) -> tuple[tuple[float, dict[str, int]] | None, tuple[float, dict[str, int]] | None]:
    """The first setting of ``group`` (recall growing along it) whose measured recall is ``ok``, and the best one
    measured. Galloping from the cheap end (each try at least 4× the last setting), then a binary search between
    the last setting short of it and the first that reached: a search costs about what its setting does, so the
    settings tried stay near the answer instead of starting at the middle of the list. A 4× dearer setting that
    gains no recall ends the group there (IVF-PQ at a small re-rank: its codes, not the lists visited, cap the
    recall). ``top_first``: the last setting is tried first and, when it falls short, alone (a larger re-rank
    factor cut to fewer lists than the last factor needed)."""
    found: tuple[float, dict[str, int]] | None = None
    best: tuple[float, dict[str, int]] | None = None

    def reaches(i: int) -> bool:
        nonlocal found, best
        r = measure(group[i])
        if best is None or r > best[0]:
            best = (r, group[i])
        if ok(r):
            found = (r, group[i])
            return True
        return False

    lo, i, last = 0, 0, len(group) - 1
    if top_first:  # only settings cheaper than one known to reach are left: if the dearest fails, all do
        if not reaches(last):
            return None, best
        # down one setting at a time: the answer sits at or just below the cap (a larger re-rank saves a list
        # or two), so a binary search from the cheap end measured hopeless settings first (IVF-PQ at 100k: 3
        # searches at re-rank ×50 where 1 told the same)
        for _ in range(2):
            if last == 0 or not reaches(last - 1):
                return found, best
            last -= 1
        i = last  # still reaching two below the cap: a binary search below it
    prev = -1.0
    while i < last and not reaches(i):
        assert best is not None
        if 0 < best[0] <= prev + PLATEAU:  # 4x the work found nothing more (ivfpq: the codes cap it): stop
            return None, best
        prev = best[0]
        lo, i = i + 1, _next_gallop(group, i)
    hi = i - 1 if found is not None or reaches(i) else -1  # (top_first: found already, i = last)
    while lo <= hi:
        mid = (lo + hi) // 2
        if reaches(mid):
            hi = mid - 1
        else:
            lo = mid + 1
    return found, best


def _next_gallop(group: list[dict[str, int]], i: int) -> int:
    """The next position to try after ``i``: the first whose swept setting (nprobe, ef) is at least 4× this one's,
    or the next position (positions without a swept number: doubling, 0, 1, 3, 7, ...)."""
    last = len(group) - 1
    now = group[i].get("nprobe") or group[i].get("hnsw_ef")
    if not now:
        return min(2 * i + 1, last)
    for j in range(i + 1, last + 1):
        v = group[j].get("nprobe") or group[j].get("hnsw_ef") or 0
        if v >= 4 * now:
            return j
    return last


def _monotone_groups(cands: list[dict[str, int]]) -> list[list[dict[str, int]]]:
    """Candidates split by every parameter but the last one they list (ivfpq: one nprobe sweep per re-rank)."""
    groups: dict[tuple[tuple[str, int], ...], list[dict[str, int]]] = {}
    for c in cands:
        keys = list(c)
        groups.setdefault(tuple((k, c[k]) for k in keys if k != "nprobe" and k != "hnsw_ef"), []).append(c)
    return list(groups.values())


def _p50_ms(store: VectorStore, q: np.ndarray, k: int, c: dict[str, int]) -> float:
    params = as_params(c)
    store.search(q[:5], k, params=params)  # warm-up
    times = []
    for row in q:
        t = time.perf_counter()
        store.search(row, k, params=params)
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.median(times)) if times else 0.0


def shortfall(point: dict[str, Any]) -> str:
    """How a recorded operating point that did not reach its target falls short, in words."""
    recall, target, k = float(point.get("recall") or 0.0), float(point.get("target") or 0.0), point.get("k")
    if recall < target:
        return f"recall@{k} {recall:.3f} at best (measured when tuned), below the target {target}"
    return (
        f"recall@{k} {recall:.3f} at best (measured when tuned), within the sampling margin "
        f"({point.get('margin')}) of the target {target}, so fresh queries may answer below it"
    )


def stale(point: dict[str, Any], count: int) -> bool:
    """Whether an index's collection grew or shrank by more than half since it was tuned."""
    at = int(point.get("count") or 0)
    return at > 0 and (count > 1.5 * at or count < 0.5 * at)
