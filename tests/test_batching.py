"""Micro-batching: the batcher alone (a fake run function), then the service with batching on and off."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from retrieval.settings import Settings
from simlookup.server.batching import MicroBatcher, QueueFullError
from tests.test_multimodal import gallery, ingested  # noqa: F401 - fixtures: a tiny-CLIP image collection


class Recorder:
    """A run function that records the batches it was given and answers each query with (query, batch size)."""

    def __init__(self, gate: threading.Event | None = None, fail: bool = False) -> None:
        self.batches: list[list[Any]] = []
        self.gate = gate
        self.fail = fail

    def __call__(self, queries: Sequence[Any]) -> list[Any]:
        if self.gate is not None:
            self.gate.wait(10)
        self.batches.append(list(queries))
        if self.fail:
            raise RuntimeError("encoder exploded")
        return [ValueError(f"bad {q}") if q == "bad" else (q, len(queries)) for q in queries]


def make(run: Callable[[Sequence[Any]], list[Any]], **kw: Any) -> tuple[MicroBatcher[Any, Any], list[int]]:
    sizes: list[int] = []

    async def to_thread(fn: Callable[[], list[Any]]) -> list[Any]:
        return await asyncio.to_thread(fn)

    opts = {"window_s": 0.05, "max_batch": 8, "max_pending": 100} | kw
    return MicroBatcher(run, to_thread=to_thread, observe=lambda n, waits: sizes.append(n), **opts), sizes


def test_concurrent_queries_share_batches_and_get_their_own_answers() -> None:
    run = Recorder()
    b, sizes = make(run)

    async def main() -> list[Any]:
        return await asyncio.gather(*(b.submit(i) for i in range(20)))

    out = asyncio.run(main())
    assert [q for q, _ in out] == list(range(20))
    assert max(sizes) > 1 and all(n <= 8 for n in sizes) and sum(sizes) == 20
    assert sorted(q for batch in run.batches for q in batch) == list(range(20))


def test_max_batch_one_runs_each_query_alone() -> None:
    run = Recorder()
    b, sizes = make(run, max_batch=1)

    async def main() -> list[Any]:
        return await asyncio.gather(*(b.submit(i) for i in range(6)))

    assert [n for _, n in asyncio.run(main())] == [1] * 6
    assert sizes == [1] * 6 and len(run.batches) == 6


def test_one_bad_query_fails_alone_and_a_failed_batch_fails_every_query() -> None:
    b, _ = make(Recorder())

    async def main() -> list[Any]:
        return await asyncio.gather(*(b.submit(q) for q in ["a", "bad", "c"]), return_exceptions=True)

    a, bad, c = asyncio.run(main())
    assert a[0] == "a" and c[0] == "c" and isinstance(bad, ValueError) and "bad" in str(bad)
    b2, _ = make(Recorder(fail=True))

    async def main2() -> list[Any]:
        return await asyncio.gather(*(b2.submit(q) for q in ["x", "y"]), return_exceptions=True)

    assert all(isinstance(r, RuntimeError) for r in asyncio.run(main2()))


def test_a_lone_query_does_not_wait_for_the_window() -> None:
    b, _ = make(Recorder(), window_s=60.0)

    async def main() -> Any:
        return await asyncio.wait_for(b.submit("alone"), timeout=30)

    assert asyncio.run(main()) == ("alone", 1)


def test_cancelled_waiters_are_skipped_and_the_rest_answered() -> None:
    gate = threading.Event()
    run = Recorder(gate)
    b, _ = make(run, window_s=0.0, max_batch=4)

    async def main() -> list[Any]:
        first = asyncio.create_task(b.submit("first"))  # occupies the consumer until the gate opens
        await asyncio.sleep(0.05)
        gone = asyncio.create_task(b.submit("gone"))
        kept = [asyncio.create_task(b.submit(f"q{i}")) for i in range(3)]
        await asyncio.sleep(0.05)
        gone.cancel()  # the client disconnected while its query waited
        gate.set()
        return [await first] + [await t for t in kept]

    out = asyncio.run(main())
    assert [q for q, _ in out] == ["first", "q0", "q1", "q2"]
    assert all("gone" not in batch for batch in run.batches)


def test_queue_full_is_refused_not_queued() -> None:
    gate = threading.Event()
    b, _ = make(Recorder(gate), window_s=0.0, max_batch=2, max_pending=3)

    async def main() -> list[Any]:
        tasks = [asyncio.create_task(b.submit(i)) for i in range(8)]
        await asyncio.sleep(0.1)
        gate.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    out = asyncio.run(main())
    refused = [r for r in out if isinstance(r, QueueFullError)]
    answered = [r for r in out if isinstance(r, tuple)]
    assert refused and answered and len(refused) + len(answered) == 8
    assert "limit 3" in str(refused[0])


# ---- the service, batching on and off: the same hits for the same queries ----

pytest.importorskip("fastapi")


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory, minilm) -> Any:  # type: ignore[no-untyped-def]
    from ingest.job import IngestOptions, run_ingest
    from retrieval.settings import Settings

    s = Settings(data_dir=tmp_path_factory.mktemp("batch") / "data")
    run_ingest(
        s, IngestOptions("stsb", "b", indexes=["flat", "hnsw"], limit=200, progress=False), encoders={"text": minilm}
    )
    return s


QUERIES = [
    {"text": "A man is playing a flute.", "k": 5, "index": "flat"},
    {"text": "A woman is slicing an onion.", "k": 5, "index": "flat"},
    {"text": "A dog runs in the grass.", "k": 3, "index": "hnsw"},
    {"text": "Stocks fell sharply on Monday.", "k": 5, "index": "qdrant"},
    {"text": "A cat sits on a mat.", "k": 5, "index": "flat", "filter": {"genre": "main-captions"}},
    {"text": "The president spoke to reporters.", "k": 4, "index": "hnsw", "hnsw_ef": 32},
    {"text": "A man is playing a flute.", "k": 2, "index": "qdrant", "exact": True},
    {"text": "Two children play football.", "k": 5, "index": "hnsw", "rerank": True},
] * 3


def run_queries(settings: Any, minilm: Any, window_ms: float, max_batch: int) -> tuple[list[Any], str]:
    import httpx

    from retrieval.settings import ApiSettings
    from simlookup.server.app import create_app

    s = settings.model_copy(update={"api": ApiSettings(batch_window_ms=window_ms, max_batch=max_batch)})
    app = create_app(s, "b", encoders={"text": minilm})  # reuse the session's loaded model

    async def main() -> tuple[list[Any], str]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            rs = await asyncio.gather(*(c.post("/search", json=q) for q in QUERIES))
            metrics = (await c.get("/metrics")).text
        return [r.json() for r in rs], metrics

    try:
        return asyncio.run(main())
    finally:
        app.state.retriever.close()


def batch_sizes(metrics: str) -> tuple[float, float]:
    def value(prefix: str) -> float:
        line = next(x for x in metrics.splitlines() if x.startswith(prefix))
        return float(line.rsplit(" ", 1)[1])

    return value('simlookup_batch_size_count{queue="text"}'), value('simlookup_batch_size_sum{queue="text"}')


def test_batched_answers_equal_unbatched(collection: Any, minilm: Any) -> None:
    minilm._cache.clear()  # noqa: SLF001 - both runs must encode, not hit the query cache
    off, m_off = run_queries(collection, minilm, 0.0, 1)
    minilm._cache.clear()  # noqa: SLF001
    on, m_on = run_queries(collection, minilm, 20.0, 32)
    n_off, sum_off = batch_sizes(m_off)
    n_on, sum_on = batch_sizes(m_on)
    assert n_off == sum_off == len(QUERIES)  # one query per batch
    assert sum_on == len(QUERIES) and n_on < len(QUERIES)  # some batches held several queries
    assert "simlookup_queue_seconds_count" in m_on
    for q, a, b in zip(QUERIES, off, on, strict=True):
        assert "hits" in a and "hits" in b, (q, a, b)
        assert [h["id"] for h in a["hits"]] == [h["id"] for h in b["hits"]], q
        assert [h["score"] for h in a["hits"]] == pytest.approx([h["score"] for h in b["hits"]], abs=1e-5)
        assert len(a["hits"]) == q["k"]
        if "filter" in q:
            assert all(h["payload"]["genre"] == "main-captions" for h in b["hits"])


def test_a_bad_query_in_a_batch_fails_alone(collection: Any, minilm: Any) -> None:
    import httpx

    from retrieval.settings import ApiSettings
    from simlookup.server.app import create_app

    s = collection.model_copy(update={"api": ApiSettings(batch_window_ms=50.0, max_batch=32)})
    app = create_app(s, "b", encoders={"text": minilm})

    async def main() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            good = [c.post("/search", json={"text": f"a dog number {i}", "k": 3}) for i in range(4)]
            # an unknown field now matches nothing (the filter language); a malformed filter is still refused
            bad = c.post("/search", json={"text": "a dog", "k": 3, "filter": {"colour": {"$bogus": "red"}}})
            # over the settings' ef cap: refused inside the batch, as in-process, while the batch answers
            capped = c.post("/search", json={"text": "a cat", "k": 3, "index": "hnsw", "hnsw_ef": 5000})
            return await asyncio.gather(*good, bad, capped)

    try:
        *good, bad, capped = asyncio.run(main())
    finally:
        app.state.retriever.close()
    assert [r.status_code for r in good] == [200] * 4 and all(len(r.json()["hits"]) == 3 for r in good)
    assert bad.status_code == 422 and "$bogus" in bad.json()["detail"]
    assert capped.status_code == 422 and "SIMLOOKUP_LIMITS__MAX_EF" in capped.json()["detail"]


def test_int8_queries_in_a_batch_get_the_vector_they_get_alone() -> None:
    import numpy as np

    from retrieval.encoders.text import TextEncoder

    enc = TextEncoder("all-MiniLM-L6-v2", quantize="int8")
    a, b = "A man is playing a flute.", "Stock markets around the world fell sharply today after the report."
    alone = enc.encode_text([a])[0]
    # the reason: dynamic int8 scales activations over the whole batch, so a neighbour changes the vector
    assert not np.array_equal(enc.encode_text([a, b])[0], alone)
    batched = enc.encode_queries([a, b])  # what the batch path calls; the query cache holds each alone too
    assert np.array_equal(batched[0], alone) and np.array_equal(batched[1], enc.encode_text([b])[0])


def test_batching_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from retrieval.settings import ConfigError, load_settings

    monkeypatch.setenv("SIMLOOKUP_API__BATCH_WINDOW_MS", "7.5")
    monkeypatch.setenv("SIMLOOKUP_API__MAX_BATCH", "1")
    api = load_settings().api
    assert (api.batch_window_ms, api.max_batch) == (7.5, 1)
    monkeypatch.setenv("SIMLOOKUP_API__MAX_BATCH", "0")
    with pytest.raises(ConfigError, match="SIMLOOKUP_API__MAX_BATCH"):
        load_settings()


def test_image_queries_batched_equal_unbatched_and_a_broken_image_fails_alone(
    ingested: Settings,  # noqa: F811 - the image collection of test_multimodal
    gallery: tuple[Path, list[str]],  # noqa: F811
) -> None:
    import httpx

    from retrieval.settings import ApiSettings
    from simlookup.server.app import create_app

    root, good = gallery
    files = [*good, "bad/notes.png"]

    def run(window_ms: float, max_batch: int) -> tuple[list[httpx.Response], str]:
        app = create_app(
            ingested.model_copy(update={"api": ApiSettings(batch_window_ms=window_ms, max_batch=max_batch)}), "imgs"
        )

        async def main() -> tuple[list[httpx.Response], str]:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
                rs = await asyncio.gather(
                    *(
                        c.post("/search/image", files={"image": (n, (root / n).read_bytes())}, data={"k": "3"})
                        for n in files
                    )
                )
                return list(rs), (await c.get("/metrics")).text

        try:
            return asyncio.run(main())
        finally:
            app.state.retriever.close()

    off, _ = run(0.0, 1)
    on, metrics = run(50.0, 32)
    count = next(x for x in metrics.splitlines() if x.startswith('simlookup_batch_size_count{queue="image"}'))
    assert float(count.rsplit(" ", 1)[1]) < len(files)  # several images shared a batch
    for name, a, b in zip(files, off, on, strict=True):
        if name.startswith("bad/"):
            assert a.status_code == b.status_code == 422, (a.text, b.text)
            continue
        assert a.status_code == b.status_code == 200, (a.text, b.text)
        assert b.json()["hits"][0]["id"] == name  # every image finds itself
        assert [h["id"] for h in a.json()["hits"]] == [h["id"] for h in b.json()["hits"]]
        assert [h["score"] for h in a.json()["hits"]] == pytest.approx([h["score"] for h in b.json()["hits"]], abs=1e-5)


class Overlap:
    """A slow run function that records how many batches were running at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0

    def __call__(self, queries: Sequence[Any]) -> list[Any]:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        threading.Event().wait(0.05)
        with self.lock:
            self.now -= 1
        return [(q, len(queries)) for q in queries]


@pytest.mark.parametrize("concurrency", [1, 2, 3])
def test_batch_concurrency_bounds_the_batches_in_flight(concurrency: int) -> None:
    run = Overlap()
    b, sizes = make(run, window_s=0.005, max_batch=4, concurrency=concurrency)

    async def main() -> list[Any]:
        return await asyncio.gather(*(b.submit(i) for i in range(24)))

    out = asyncio.run(main())
    assert [q for q, _ in out] == list(range(24))
    assert sum(sizes) == 24 and all(n <= 4 for n in sizes)
    assert run.most == concurrency  # 24 queries in batches of at most 4 keep every slot busy, and no more


def test_batches_fill_while_every_slot_is_busy() -> None:
    """With one slot, queries that arrive while a batch runs wait for the slot and go together."""
    run = Overlap()
    b, sizes = make(run, window_s=0.0, max_batch=32, concurrency=1)

    async def main() -> list[Any]:
        first = asyncio.ensure_future(b.submit("first"))
        await asyncio.sleep(0.01)  # the first batch (one query) is running now
        rest = [asyncio.ensure_future(b.submit(i)) for i in range(10)]
        return [await first, *[await r for r in rest]]

    asyncio.run(main())
    assert sizes == [1, 10]


@pytest.mark.parametrize("regroup", [True, False])
def test_after_an_answer_the_next_batch_waits_for_the_answered_clients(
    regroup: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Closed-loop clients: 8 queries answered together come back together, even when they return a few ms
    apart and the first one is alone in the queue; without that wait (REGROUP_MAX=1) they split."""
    from simlookup.server import batching

    if not regroup:
        monkeypatch.setattr(batching, "REGROUP_MAX", 1)
    run = Overlap()
    b, sizes = make(run, window_s=0.06, max_batch=32)

    async def client(i: int) -> None:
        for _ in range(3):
            await b.submit(i)
            await asyncio.sleep(0.004 * i)  # each client takes a little longer to send its next query

    async def main() -> None:
        await asyncio.gather(*(client(i) for i in range(8)))

    asyncio.run(main())
    assert sum(sizes) == 24
    if regroup:
        assert sizes[-2:] == [8, 8], sizes  # after the first round (how they first arrived), whole rounds
    else:
        assert len(sizes) > 3 and 1 in sizes[1:], sizes  # a lone first comer goes alone, rounds split


def test_a_lone_client_never_waits_for_the_window() -> None:
    run = Overlap()
    b, sizes = make(run, window_s=0.5, max_batch=32)

    async def main() -> float:
        t0 = time.perf_counter()
        for i in range(4):
            await b.submit(i)
        return time.perf_counter() - t0

    took = asyncio.run(main())
    assert sizes == [1, 1, 1, 1]
    assert took < 4 * 0.05 + 0.4  # four 50 ms batches; one 0.5 s window would already exceed this


class _Abort(BaseException):
    """Not an Exception: a batcher that caught only Exception left every client of the batch hanging."""


@pytest.mark.parametrize("bad", ["too_few", "too_many", "none", "base_exception"])
def test_a_broken_batch_still_answers_every_query(bad: str) -> None:
    def run(queries: Sequence[Any]) -> Any:
        if bad == "too_few":
            return list(queries)[:-1]
        if bad == "too_many":
            return [*queries, "extra"]
        if bad == "none":
            return None
        raise _Abort("encoder aborted")

    b, _ = make(run, window_s=0.01)

    async def main() -> list[Any]:
        return await asyncio.wait_for(asyncio.gather(*(b.submit(i) for i in range(3)), return_exceptions=True), 5)

    out = asyncio.run(main())
    assert len(out) == 3 and all(isinstance(r, Exception) for r in out), out


def test_disconnected_clients_do_not_fill_the_queue() -> None:
    gate = threading.Event()
    b, _ = make(Recorder(gate=gate), window_s=0.0, max_batch=8, max_pending=3)

    async def main() -> Any:
        busy = asyncio.ensure_future(b.submit("busy"))  # holds the only slot
        await asyncio.sleep(0.05)
        gone = [asyncio.ensure_future(b.submit(i)) for i in range(3)]
        await asyncio.sleep(0.02)
        for t in gone:
            t.cancel()  # those clients went away
        await asyncio.sleep(0.02)
        new = asyncio.ensure_future(b.submit("new"))  # accepted: nobody is really waiting
        await asyncio.sleep(0.02)
        gate.set()
        return await busy, await new

    (busy, new) = asyncio.run(main())
    assert busy[0] == "busy" and new[0] == "new"


def test_a_lone_query_does_not_wait_for_clients_another_batch_took() -> None:
    """concurrency 2: L1 runs alone; g0..g3 queue meanwhile and leave in the second slot's batch. L1's answer must
    not make L2 (alone, a window after the last arrival, a slot free) wait for those four as if they were
    coming back."""
    gate_l, gate_g = threading.Event(), threading.Event()

    def run(queries: Sequence[Any]) -> list[Any]:
        (gate_l if queries[0] == "L1" else gate_g if str(queries[0]).startswith("g") else threading.Event()).wait(
            1 if queries[0] != "L2" else 0
        )
        return [(q, len(queries)) for q in queries]

    b, _ = make(run, window_s=0.2, max_batch=32, concurrency=2)
    took: dict[str, float] = {}

    async def lone() -> None:
        t0 = time.perf_counter()
        asyncio.get_running_loop().call_later(0.15, gate_l.set)
        await b.submit("L1")
        await asyncio.sleep(0.22 - (time.perf_counter() - t0))
        t1 = time.perf_counter()
        await b.submit("L2")
        took["L2"] = time.perf_counter() - t1
        gate_g.set()

    async def group() -> None:
        await asyncio.sleep(0.01)
        await asyncio.gather(*(b.submit(f"g{i}") for i in range(4)))

    async def main() -> None:
        await asyncio.gather(lone(), group())

    asyncio.run(main())
    assert took["L2"] < 0.1, took  # it went at once (it waited ~130 ms when L1's answer counted the queue)
