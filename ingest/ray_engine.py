"""The Ray engine of ``simlookup ingest``: encoder actors on Ray Data; cache, writer and stores stay here.

Ray Data holds one item per shard that is not cached yet (its row range and the spaces it lacks) and runs
them through ``map_batches`` on an actor pool. Each actor loads the encoder once and opens the corpus once,
with the same corpus readers as the local engine (memory-mapped Arrow where the corpus allows it), reads
its shard's rows and encodes them with the local engine's ``encode_shard``. Shards stream back in row
order; this process puts each into the embedding cache and yields it to the job's single writer, so
resume, idempotence, rejects and the summary are the local engine's. On a cluster, every node needs
simlookup installed and the corpus at the same path (or a hub dataset it can reach).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Generator, Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import numpy as np

from ingest.cache import EmbeddingCache, Shard
from ingest.corpora.base import CorpusError
from retrieval.collection import VectorSpace
from retrieval.errors import BackendUnavailableError, ConfigError, SimlookupError
from retrieval.settings import ApiSettings, IngestSettings, QdrantSettings, Settings

if TYPE_CHECKING:
    from ingest.options import IngestOptions

log = logging.getLogger(__name__)
LOCAL_RAY_CPUS = 2
_PASS_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME")


def import_ray() -> Any:
    """The ``ray`` module, or a ConfigError that says how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401 - the data extra must be there too
    except ImportError as exc:
        raise ConfigError(f"--engine ray needs Ray Data: pip install 'simlookup[ray]' ({exc})") from None
    return ray


def _check_reachable(address: str, timeout_s: float) -> None:
    """Fail fast (within timeout_s) when a host:port Ray address does not answer."""
    if address == "auto":
        return
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    host, port = parts.hostname, parts.port
    if not host or not port:
        raise ConfigError(f"--ray-address {address!r}: use 'auto', 'host:6379' or 'ray://host:10001'")
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as exc:
        raise BackendUnavailableError(
            f"Ray at {address} is unreachable ({exc}; waited at most {timeout_s:g} s): start the cluster "
            "(`ray start --head`), fix --ray-address, or leave it out for a local Ray"
        ) from None


def connect(settings: Settings, quiet: bool = True) -> bool:
    """Join the configured Ray (an existing one in this process is reused); True when this call started it.

    ``quiet`` (the default; ``simlookup -v`` turns it off) keeps Ray's own log lines out of a run: its Python
    loggers at ERROR and the workers' output in Ray's session logs instead of the terminal. Failures still
    surface: a worker's exception is raised here with its traceback.
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    cfg = settings.ingest
    env = {k: os.environ[k] for k in _PASS_ENV if k in os.environ}
    common: dict[str, Any] = {
        "include_dashboard": False,
        "logging_level": logging.ERROR if quiet else logging.INFO,
        "log_to_driver": not quiet,
        "runtime_env": {"env_vars": env} if env else None,
    }
    if cfg.ray_address is None:
        ray.init(num_cpus=max(LOCAL_RAY_CPUS, cfg.workers), **common)
        return True
    _check_reachable(cfg.ray_address, cfg.ray_connect_timeout_s)
    try:
        ray.init(address=cfg.ray_address, **common)
    except (ConnectionError, RuntimeError, TimeoutError) as exc:
        raise BackendUnavailableError(f"cannot join Ray at {cfg.ray_address}: {exc}") from None
    return True


def actor_demand(gpus_per_worker: float) -> dict[str, float]:
    """What one encoder actor asks Ray for: one CPU, and its GPUs."""
    return {"CPU": 1.0} | ({"GPU": float(gpus_per_worker)} if gpus_per_worker > 0 else {})


def actors_that_fit(nodes: list[dict[str, float]], demand: Mapping[str, float]) -> int:
    """How many actors of this demand the nodes (each node's total resources) can hold at once."""
    return sum(int(min(res.get(k, 0.0) / v for k, v in demand.items()) + 1e-9) for res in nodes)


def _where(cfg: IngestSettings) -> str:
    return f"the Ray cluster at {cfg.ray_address}" if cfg.ray_address else "the local Ray (this machine)"


def check_resources(ray: Any, cfg: IngestSettings, actors: int) -> None:
    """Refuse, within the connect timeout, a cluster on which no encoder actor can ever start (Ray Data would
    wait forever, "The job may hang forever unless the cluster scales up"): the error names what is missing.
    A cluster that holds fewer actors than asked for runs with those (the others wait for it to scale up)."""
    demand = actor_demand(cfg.gpus_per_worker)
    deadline = time.monotonic() + cfg.ray_connect_timeout_s
    while True:  # a cluster that is still starting (or scaling up) may show its nodes late
        nodes = [n.get("Resources") or {} for n in ray.nodes() if n.get("Alive")]
        fit = actors_that_fit(nodes, demand)
        if fit > 0 or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    if fit == 0:
        total = {k: sum(res.get(k, 0.0) for res in nodes) for k in demand}
        have = ", ".join(f"{total[k]:g} {k}" for k in demand)
        need = " and ".join(f"{v:g} {k}" for k, v in demand.items())
        if "GPU" in demand:
            fix = (
                "set --gpus-per-worker 0 (SIMLOOKUP_INGEST__GPUS_PER_WORKER) to encode on CPUs, or run on a Ray "
                "cluster with GPU nodes (--ray-address)"
            )
        else:
            fix = "add CPUs to the cluster (`ray start --num-cpus N`), or leave --ray-address out for a local Ray"
        raise ConfigError(
            f"--engine ray: no node of {_where(cfg)} has {need} for an encoder actor (it has {have} in all, "
            f"waited {cfg.ray_connect_timeout_s:g} s): {fix}"
        )
    if fit < actors:
        log.warning(
            "%s holds %d of the %d encoder actors asked for (%s each); the others start if it scales up",
            _where(cfg), fit, actors, ", ".join(f"{v:g} {k}" for k, v in demand.items()),
        )


class ShardEncoder:
    """A Ray Data actor: loads the encoder(s) and the corpus once, then encodes whole shards."""

    def __init__(self, settings: Settings, opts: IngestOptions, corpus_fp: str, spaces: list[VectorSpace]) -> None:
        from ingest.corpora import get_corpus
        from retrieval.encoders.loader import load_encoder

        corpus = get_corpus(
            opts.corpus, text_column=opts.text_column, id_column=opts.id_column, image_column=opts.image_column
        )
        if corpus.fingerprint() != corpus_fp:
            raise CorpusError(
                f"corpus {opts.corpus!r} differs on this Ray worker ({corpus.fingerprint()} != {corpus_fp}): "
                "every node needs the same corpus at the same path"
            )
        self.ds = corpus.load(limit=opts.limit)
        self.settings = settings
        self.spaces: dict[str, VectorSpace] = {sp.name: sp for sp in spaces}
        self.encoders = {sp.encoder: load_encoder(settings, sp.encoder) for sp in spaces}

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from ingest.rows import encode_shard

        out: dict[str, list[Any]] = {k: [] for k in ("start", "end", "space", "n", "dim", "vectors", "meta")}
        for start, end, names in zip(batch["start"], batch["end"], batch["spaces"], strict=True):
            rows = self.ds.select(range(int(start), int(end))).to_list()
            for name in str(names).split(","):
                sp = self.spaces[name]
                shard = encode_shard(self.settings, sp, self.encoders[sp.encoder], rows, int(start))
                vecs = np.ascontiguousarray(shard.vectors, dtype=np.float32)
                out["start"].append(int(start))
                out["end"].append(int(end))
                out["space"].append(name)
                out["n"].append(vecs.shape[0])
                out["dim"].append(vecs.shape[1] if vecs.ndim == 2 else 0)
                out["vectors"].append(vecs.tobytes())
                out["meta"].append(json.dumps({"ids": shard.ids, "payloads": shard.payloads, "rejects": shard.rejects}))
        return {k: np.array(v, dtype=object if k in ("space", "vectors", "meta") else np.int64) for k, v in out.items()}


def _to_shard(row: dict[str, Any]) -> Shard:
    meta = json.loads(row["meta"])
    n, dim = int(row["n"]), int(row["dim"])
    vecs = np.frombuffer(row["vectors"], dtype=np.float32).reshape(n, dim).copy()
    return Shard(int(row["start"]), int(row["end"]), meta["ids"], vecs, meta["payloads"], meta["rejects"])


def _worker_settings(settings: Settings) -> Settings:
    """What the actors get: the encoder settings, no Qdrant or API secrets; the device follows the GPUs."""
    upd: dict[str, Any] = {"qdrant": QdrantSettings(), "api": ApiSettings()}
    if settings.ingest.gpus_per_worker > 0 and settings.device == "cpu":
        upd["device"] = "cuda"
    return settings.model_copy(update=upd)


def ray_shards(
    settings: Settings,
    opts: IngestOptions,
    corpus_fp: str,
    spaces: list[VectorSpace],
    caches: Mapping[str, EmbeddingCache],
    ranges: list[tuple[int, int]],
) -> Generator[tuple[VectorSpace, Shard, bool], None, None]:
    """The Ray engine: (space, shard, encoded now?) in row order, from the cache or encoded on Ray actors."""
    missing = [
        (start, end, [sp.name for sp in spaces if caches[sp.name].get(start, end) is None]) for start, end in ranges
    ]
    todo = [(s, e, names) for s, e, names in missing if names]
    if not todo:
        for start, end, _ in missing:
            for sp in spaces:
                yield sp, _cached(caches[sp.name], start, end), False
        return

    ray = import_ray()
    quiet = not log.isEnabledFor(logging.INFO)  # simlookup -v: Ray's own logs and progress too
    started = connect(settings, quiet=quiet)
    from ray.data import DataContext

    ctx = DataContext.get_current()
    saved = (ctx.execution_options.preserve_order, ctx.enable_progress_bars)
    ctx.execution_options.preserve_order = True  # shards come back in row order, as the local engine yields them
    ctx.enable_progress_bars = opts.progress and not quiet  # the job's own bars show the shards
    if quiet:
        logging.getLogger("ray.data").setLevel(logging.ERROR)
    encoded: Iterator[dict[str, Any]] | None = None
    try:
        items = [{"start": s, "end": e, "spaces": ",".join(names)} for s, e, names in todo]
        cfg = settings.ingest
        check_resources(ray, cfg, min(cfg.workers, len(items)))
        encoded = iter(
            ray.data.from_items(items, override_num_blocks=len(items))
            .map_batches(
                ShardEncoder,
                batch_size=1,
                compute=ray.data.ActorPoolStrategy(size=min(cfg.workers, len(items))),
                num_cpus=1,
                num_gpus=cfg.gpus_per_worker or None,
                # an encoder actor that dies fails the run with its error instead of being restarted: the shards
                # done are cached, so a re-run resumes; and a restartable actor whose constructor arguments sit in
                # the object store makes Ray's core print an error-level core_worker.cc line on every run
                max_restarts=0,
                fn_constructor_kwargs={
                    "settings": _worker_settings(settings),
                    "opts": opts,
                    "corpus_fp": corpus_fp,
                    "spaces": spaces,
                },
            )
            .iter_rows()
        )
        for start, end, names in missing:
            for sp in spaces:
                if sp.name not in names:
                    yield sp, _cached(caches[sp.name], start, end), False
                    continue
                row = _next(encoded)
                shard = _to_shard(row)
                if (shard.start, shard.end, row["space"]) != (start, end, sp.name):
                    raise SimlookupError(f"ray returned shard {shard.start}-{shard.end}/{row['space']} out of order")
                caches[sp.name].put(shard)
                yield sp, shard, True
    finally:
        # close Ray Data's iterator while Ray is still up: closed after shutdown, it prints a traceback
        close = getattr(encoded, "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # noqa: BLE001 - best effort: the shards are already cached
                log.debug("closing the Ray iterator failed", exc_info=True)
        ctx.execution_options.preserve_order, ctx.enable_progress_bars = saved
        if started:
            ray.shutdown()


def _next(encoded: Iterator[dict[str, Any]]) -> dict[str, Any]:
    """The next encoded shard; a worker's failure surfaces as the project error it raised, or a short one."""
    try:
        return next(encoded)
    except SimlookupError:
        raise  # Ray re-raises a worker's exception as an instance of its class too
    except Exception as exc:  # noqa: BLE001 - Ray wraps worker failures in many kinds
        cause: BaseException = exc
        while cause.__cause__ is not None:
            cause = cause.__cause__
        if isinstance(cause, SimlookupError):
            raise cause from None
        lines = [ln for ln in str(exc).splitlines() if ln.strip()]
        raise SimlookupError(f"the Ray encode stage failed: {lines[-1] if lines else type(exc).__name__}") from exc


def _cached(cache: EmbeddingCache, start: int, end: int) -> Shard:
    shard = cache.get(start, end)
    if shard is None:
        raise SimlookupError(f"cached shard {start}-{end} under {cache.dir} vanished during the ingest")
    return shard
