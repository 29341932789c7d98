"""``simlookup verify``: every index of a collection holds the same ids and vectors, and the expected count.

Also reported: a quantized FAISS index whose codes of a sample of its points miss the stored vectors, an
unreadable collection manifest, a store that cannot be opened (a missing or garbage file,
a payload that is not JSON), a store whose dimension or model differs from the collection's, stored vectors of
the wrong size, and FAISS vector rows that differ from the checksums recorded when they were flushed (a vector
file overwritten or damaged on disk) or that no upsert could have stored (NaN, inf; zero or non-unit vectors of
a cosine collection).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from retrieval.collection import Collection, CollectionManifest, VectorSpace
from retrieval.collection_manifest import ingest_command
from retrieval.errors import CorruptManifestError, InvalidInputError, SimlookupError, StoreLockedError
from retrieval.settings import Settings
from retrieval.stores import FAISS_KINDS, VectorStore
from retrieval.stores import point_registry as registry

TOLERANCE = 1e-4


@dataclass
class VerifyReport:
    """Differences found between the stores of one collection (empty when they agree)."""

    name: str
    ok: bool = True
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    expected: int = 0
    differences: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # worth knowing, not a difference (ok stays True)
    # an incomplete collection (``retrieval.catalog.ingest_state``): its indexes differ mid-write as a matter of
    # course, so that is no difference; ``ok`` is False, ``differences`` holds only what is wrong besides
    state: str = "complete"  # complete | ingest running | interrupted | incomplete | unreadable
    state_message: str | None = None
    ingest_pid: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def verify(
    settings: Settings,
    name: str,
    sample: int | None = None,
    opened: Callable[[str, str], VectorStore] | None = None,
    collection: Collection | None = None,
) -> VerifyReport:
    """Compare id sets, counts, dimensions and stored vectors across every index of the collection.

    ``collection``: an open collection (the service's): its stores are used (checked as they open) and left
    open. ``opened(index, space)``: the same for a caller holding stores some other way.
    """
    if sample is not None and (not isinstance(sample, int) or sample < 1):
        raise InvalidInputError(f"sample must be a positive number of ids, got {sample!r}")
    if collection is not None:
        collection.refresh()  # verify what is on disk now
        opened = opened or collection.store
    try:
        coll = collection if collection is not None else Collection(settings, name, read_only=True)
    except CorruptManifestError as exc:
        return VerifyReport(name=name, ok=False, differences=[str(exc)], state="unreadable")
    try:
        return _verify(settings, coll, sample, opened)
    finally:
        if collection is None:
            coll.close()


def _verify(
    settings: Settings, coll: Collection, sample: int | None, opened: Callable[[str, str], VectorStore] | None
) -> VerifyReport:
    from retrieval.catalog import ingest_state

    m, name = coll.manifest, coll.name
    rep = VerifyReport(name=name, expected=m.count)
    repair = f"repair: `{ingest_command(m)}`"
    state = ingest_state(settings, m)
    if state is not None:  # the indexes differ as a matter of course: said once, their differences are notes
        rep.state, rep.state_message, rep.ingest_pid = state.state, state.message, state.pid
    mid = "mid-write (expected while the collection is incomplete): "
    for space_name, space in m.vectors.items():
        stores: dict[str, VectorStore] = {}
        try:
            for index in m.indexes:
                try:
                    st = opened(index, space_name) if opened is not None else coll.open_index(index, space_name)
                except StoreLockedError as exc:
                    if state is None or state.state == "interrupted":
                        rep.differences.append(f"{space_name}/{index}: cannot open ({exc}); {repair}")
                    else:
                        rep.notes.append(f"{space_name}/{index}: not checked, the running ingest holds it ({exc})")
                    continue
                except Exception as exc:  # noqa: BLE001 - every failure is a difference to report
                    rep.differences.append(f"{space_name}/{index}: cannot open ({type(exc).__name__}: {exc}); {repair}")
                    continue
                stores[index] = st
                _check_space(space_name, index, st, space, rep, repair)
                _check_codes(f"{space_name}/{index}", st, rep, repair, sample)
            before = len(rep.differences)
            expected = m.count if space_name != "caption" and state is None else None
            _compare(space_name, space, stores, expected, rep, sample)
            if state is not None:
                rep.notes += [mid + d for d in rep.differences[before:]]
                del rep.differences[before:]
            _check_points(settings, m, space_name, rep, repair)
        finally:
            for st in stores.values() if opened is None else ():
                st.close()
    _check_tuning(m, rep, name)
    rep.ok = not rep.differences and state is None
    return rep


def _check_tuning(m: CollectionManifest, rep: VerifyReport, name: str) -> None:
    """Flag an index whose collection grew or shrank by more than half since it was tuned, or whose tuning
    could not reach its recall target (notes: searches still answer; the next build re-tunes)."""
    from retrieval.tuning import shortfall, stale

    for space, points in m.tuning.items():
        for index, op in points.items():
            if index not in m.indexes:
                continue
            if stale(op, m.count):
                rep.notes.append(
                    f"{space}/{index}: tuned at {op.get('count')} points, the collection holds {m.count}: its default "
                    f"query setting {op.get('params')} may no longer reach recall@{op.get('k')} {op.get('target')}; "
                    f"the next build re-tunes it, or run `simlookup tune {name}`"
                )
            if not op.get("reached"):
                rep.notes.append(
                    f"{space}/{index}: its best setting {op.get('params')} answers at {shortfall(op)}: "
                    f"{op.get('advice')}"
                )


def _check_space(
    space_name: str, index: str, st: VectorStore, space: VectorSpace, rep: VerifyReport, repair: str
) -> None:
    """A store must have the dimension and the model the collection manifest records."""
    if st.dim != space.dim:
        rep.differences.append(
            f"{space_name}/{index}: store dimension {st.dim}, the collection manifest says {space.dim}; {repair}"
        )
    if st.fingerprint and st.fingerprint != space.fingerprint:
        rep.differences.append(
            f"{space_name}/{index}: built by {st.fingerprint}, the collection manifest says {space.fingerprint}"
        )


def _check_codes(where: str, st: VectorStore, rep: VerifyReport, repair: str, sample: int | None) -> None:
    """A coded FAISS kind (ivfpq, ivf_sq8, hnsw_sq8) whose codes of a sample of its points are far from the
    stored vectors (values outside the ranges or codebooks it was trained on) answers them with wrong scores."""
    check = getattr(st, "check_codes", None)
    got = check(sample) if check is not None else None
    if not got:
        return
    if got["off"]:
        rep.differences.append(
            f"{where}: {got['off']} of {got['checked']} points checked are coded far from their stored vectors "
            f"(error up to {got['worst']:.3g}, the index allows {got['limit']:.3g}: values outside what it was "
            f"trained on), so it answers them with wrong scores; {repair} (its build re-trains the index)"
        )
    if got["held_out"]:
        rep.notes.append(
            f"{where}: {got['held_out']} point(s) written since the last build lie outside the codes the index was "
            "trained on: they are answered exactly, and the next build re-trains it"
        )


def _check_points(settings: Settings, m: CollectionManifest, space_name: str, rep: VerifyReport, repair: str) -> None:
    """Every row of the FAISS point store's vector file against its recorded checksum, and no NaN / zero rows."""
    folder = settings.data_dir / "faiss" / m.store_name(space_name) / "points"
    if not any(i in FAISS_KINDS for i in m.indexes) or not (folder / "points.sqlite").exists():
        return  # no FAISS kind, or a missing point store: the kinds' own opens report it
    try:
        ps = registry.acquire(folder, repair, read_only=True)
    except SimlookupError:
        return  # a point store that cannot be opened: reported by every kind that opens it
    where = f"{space_name}/points"
    try:
        chk = ps.check_vectors()

        def some(fids: list[int]) -> str:
            return ", ".join(f"fid {f} (id {ps.id_of(f)!r})" for f in fids[:5]) + (", ..." if len(fids) > 5 else "")

        fix = f"{repair} (re-ingesting rewrites the damaged points)"
        if chk.damaged:
            rep.differences.append(
                f"{where}: {len(chk.damaged)} vector(s) in {ps.vector_path} differ from the checksum recorded when "
                f"they were written (the file was overwritten or damaged on disk; every FAISS index of the "
                f"collection reads these rows): {some(chk.damaged)}; {fix}"
            )
        if chk.non_finite:
            rep.differences.append(
                f"{where}: {len(chk.non_finite)} vector(s) in {ps.vector_path} hold NaN or inf (no upsert stores "
                f"such a vector): {some(chk.non_finite)}; {fix}"
            )
        if chk.not_unit:
            rep.differences.append(
                f"{where}: {len(chk.not_unit)} vector(s) in {ps.vector_path} are zero or not unit length, in a "
                f"cosine collection (no upsert stores such a vector): {some(chk.not_unit)}; {fix}"
            )
        if chk.damaged_dead:
            rep.notes.append(
                f"{where}: {chk.damaged_dead} row(s) of replaced or deleted points differ from their checksum "
                "(no search reads them)"
            )
        if garbage := ps.garbage():
            rep.notes.append(
                f"{where}: {garbage} of {ps.next_fid} vector rows ({ps.garbage_fraction():.1%}) are garbage (rows of "
                f"replaced or deleted points, no search reads them): `simlookup compact {m.name}` reclaims them, as "
                "an ingest's build does once they pass 25%"
            )
        if chk.checked < chk.rows:
            rep.notes.append(
                f"{where}: {chk.rows - chk.checked} of {chk.rows} vector rows are not checksummed yet (written "
                "before checksums existed, or since the writer's last flush): the next flush records them; "
                "they were checked for NaN and, in a cosine collection, for zero or non-unit vectors only"
            )
    except SimlookupError as exc:
        rep.differences.append(f"{where}: {exc}")
    finally:
        registry.release(ps)


def _compare(
    space: str,
    vspace: VectorSpace,
    stores: dict[str, VectorStore],
    expected: int | None,
    rep: VerifyReport,
    sample: int | None,
) -> None:
    id_sets = {k: st.ids() for k, st in stores.items()}
    rep.counts[space] = {k: st.count() for k, st in stores.items()}
    for k, n in rep.counts[space].items():
        if expected is not None and n != expected:
            rep.differences.append(f"{space}/{k}: holds {n} points, expected {expected} (corpus minus rejects)")
    if not id_sets:
        return
    union = set().union(*id_sets.values())
    for k, ids in id_sets.items():
        missing = sorted(union - ids)
        if missing:
            rep.differences.append(f"{space}/{k}: missing {len(missing)} id(s), e.g. {missing[:5]}")
    common = sorted(set.intersection(*id_sets.values()))
    if sample is not None and len(common) > sample:
        common = [common[i] for i in np.random.default_rng(0).choice(len(common), sample, replace=False)]
    ref_name = next(iter(stores))
    for i in range(0, len(common), 1000):
        chunk = common[i : i + 1000]
        fetched = {k: st.fetch(chunk) for k, st in stores.items()}
        for k, got in fetched.items():
            bad = [pid for pid in chunk if (v := got[pid][0]) is not None and v.shape != (vspace.dim,)]
            if bad:
                rep.differences.append(
                    f"{space}/{k}: {len(bad)} stored vector(s) are not {vspace.dim}-d, e.g. {bad[0]!r}"
                )
        refs = [fetched[ref_name][pid][0] for pid in chunk]
        for k, got in fetched.items():
            for i in _differing([got[pid][0] for pid in chunk], refs):
                rep.differences.append(f"{space}/{k}: vector of {chunk[i]!r} differs from {ref_name}")
        for pid in chunk:
            for k, got in fetched.items():
                if got[pid][0] is None or fetched[ref_name][pid][0] is None:
                    continue
                mine, ref_pl = got[pid][1], fetched[ref_name][pid][1]
                # a multi-vector Qdrant point merges the payloads of its spaces: compare the keys both hold
                if any(not same_value(mine[key], ref_pl[key]) for key in mine.keys() & ref_pl.keys()) or not (
                    mine.keys() <= ref_pl.keys() or ref_pl.keys() <= mine.keys()
                ):
                    rep.differences.append(f"{space}/{k}: payload of {pid!r} differs from {ref_name}")


def same_value(a: Any, b: Any) -> bool:
    """Payload values equal, a float within 1e-9 relative of the other counted equal: Qdrant Edge's number round
    trip changes the last digits of some doubles (9373.711634780513 comes back as 9373.711634780511; README,
    payload numbers), which is not damage."""
    if isinstance(a, float) and isinstance(b, float | int) and not isinstance(b, bool):
        return math.isclose(a, float(b), rel_tol=1e-9, abs_tol=0.0) or a == b
    if isinstance(b, float) and isinstance(a, int) and not isinstance(a, bool):
        return math.isclose(float(a), b, rel_tol=1e-9, abs_tol=0.0)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    return bool(a == b)


def _differing(vs: list[np.ndarray | None], refs: list[np.ndarray | None]) -> list[int]:
    """Positions where both vectors exist and differ (another shape, or not np.allclose at TOLERANCE), found
    with one comparison per shape instead of one call per vector."""
    by_shape: dict[tuple[int, ...], list[int]] = {}
    out: list[int] = []
    for i, (v, r) in enumerate(zip(vs, refs, strict=True)):
        if v is None or r is None:
            continue
        if v.shape != r.shape:
            out.append(i)
        else:
            by_shape.setdefault(v.shape, []).append(i)
    for rows in by_shape.values():
        a = np.stack([vs[i] for i in rows])  # type: ignore[misc]
        b = np.stack([refs[i] for i in rows])  # type: ignore[misc]
        close = np.isclose(a, b, atol=TOLERANCE).reshape(len(rows), -1).all(axis=1)
        out.extend(rows[j] for j in np.flatnonzero(~close).tolist())
    return sorted(out)
