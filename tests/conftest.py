"""Shared fixtures: offline hub, a seeded clustered dataset, temp settings, the real MiniLM, a tiny CLIP."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from benchmarks.datasets import Dataset, clustered  # noqa: E402
from retrieval.settings import QdrantSettings, Settings  # noqa: E402

TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1},
}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in list(os.environ):
        if k.startswith("SIMLOOKUP_"):
            monkeypatch.delenv(k)


@pytest.fixture(scope="session")
def data() -> Dataset:
    return clustered(n=3000, d=32, nq=50, seed=7)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", qdrant=QdrantSettings(mode="edge"))


@pytest.fixture(scope="session")
def minilm():  # type: ignore[no-untyped-def]
    from retrieval.encoders.text import TextEncoder

    return TextEncoder("all-MiniLM-L6-v2")


@pytest.fixture(scope="session")
def tiny_clip_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A random-init open_clip model under a registered tiny config, saved to a file (no real weights exist here)."""
    import open_clip
    import torch

    d = tmp_path_factory.mktemp("clip")
    cfg = d / "tiny-clip-test.json"
    cfg.write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(cfg)
    torch.manual_seed(0)
    model = open_clip.create_model("tiny-clip-test", pretrained=None)
    ckpt = d / "tiny-clip.pt"
    torch.save(model.state_dict(), ckpt)
    return "tiny-clip-test", ckpt


def recall_at_k(got: list[list[str]], truth: list[list[str]], k: int) -> float:
    return float(np.mean([len(set(g[:k]) & set(t[:k])) / k for g, t in zip(got, truth, strict=True)]))


@pytest.fixture(scope="session")
def qdrant_server():  # type: ignore[no-untyped-def]
    """A real Qdrant server for this session, or a skip that says why there is none."""
    from tests.qdrant_server import start_server

    yield from start_server()
