"""Multimodal ingestion and search with a tiny random-init open_clip model loaded from a checkpoint file."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ingest.job import IngestOptions, rejects_of, run_ingest
from retrieval.collection import load_collection
from retrieval.encoders import Encoder, load_encoder
from retrieval.errors import InvalidInputError
from retrieval.retriever import Retriever
from retrieval.settings import ClipSettings, QdrantSettings, Settings
from retrieval.verify import verify
from simlookup.cli import main
from tests.test_images import text_bomb_png

COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220)}
BAD = {
    "bad/empty.png": "zero-size",
    "bad/notes.png": "not an image",
    "bad/truncated.png": "truncated",
    "bad/huge.png": "decompression bomb",
    "bad/textbomb.png": "MAX_TEXT_CHUNK",
}


@pytest.fixture(scope="module")
def gallery(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("gallery")
    rng = np.random.default_rng(1)
    good: list[str] = []
    captions = []
    for label, rgb in COLOURS.items():
        (root / label).mkdir()
        for i in range(8):
            arr = (np.array(rgb) * 0.6 + rng.integers(0, 100, (24, 24, 3))).clip(0, 255).astype(np.uint8)
            img = Image.fromarray(arr)
            mode = ["RGB", "L", "RGBA", "P", "CMYK"][i % 5]
            img = img.convert(mode)
            name = f"{label}/{i}.{'jpg' if mode == 'CMYK' else 'png'}"
            img.save(root / name)
            good.append(name)
            if i % 2 == 0:
                captions.append({"file": name, "caption": f"a {label} square number {i}"})
    (root / "captions.csv").write_text("file,caption\n" + "".join(f"{c['file']},{c['caption']}\n" for c in captions))
    (root / "bad").mkdir()
    (root / "bad/empty.png").write_bytes(b"")
    (root / "bad/notes.png").write_text("this is not an image")
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (64, 64, 3)).astype(np.uint8)).save(buf, format="PNG")
    (root / "bad/truncated.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    Image.new("L", (900, 900)).save(root / "bad/huge.png")
    text_bomb_png(root / "bad/textbomb.png")
    return root, good


@pytest.fixture(scope="module")
def ingested(
    gallery: tuple[Path, list[str]], tiny_clip_checkpoint: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    root, _ = gallery
    arch, ckpt = tiny_clip_checkpoint
    s = Settings(
        data_dir=tmp_path_factory.mktemp("mm") / "data",
        clip=ClipSettings(arch=arch, pretrained=str(ckpt), max_image_pixels=500_000),
        qdrant=QdrantSettings(mode="edge", full_scan_threshold_kb=1),
    )
    summ = run_ingest(s, IngestOptions(str(root), "imgs", indexes=["flat", "hnsw"], progress=False))
    assert summ.counts == {"flat": 16, "hnsw": 16, "qdrant": 16}
    return s


def test_rejects_have_reasons(ingested: Settings, gallery: tuple[Path, list[str]]) -> None:
    rej = {r["id"]: r["reason"] for r in rejects_of(ingested.data_dir, "imgs")}
    assert set(rej) == set(BAD)
    for rid, reason in BAD.items():
        assert reason in rej[rid], (rid, rej[rid])


def test_manifest_and_named_vectors(ingested: Settings) -> None:
    m = load_collection(ingested.data_dir, "imgs")
    assert m.modality == "image" and set(m.vectors) == {"image", "caption"}
    assert m.vectors["image"].dim == 32 and m.vectors["image"].encoder == "clip"
    meta = json.loads((ingested.data_dir / "qdrant-edge" / "imgs" / "simlookup.json").read_text())
    assert meta["vectors"] == {"image": 32, "caption": 32}  # one collection, two named vectors
    assert verify(ingested, "imgs").ok


@pytest.mark.parametrize("index", ["flat", "qdrant"])
def test_every_image_finds_itself(ingested: Settings, gallery: tuple[Path, list[str]], index: str) -> None:
    root, good = gallery
    with Retriever(ingested, "imgs") as r:
        top1 = [r.search_image(root / name, index=index, k=1).hits[0].id for name in good]
    assert top1 == good  # image→image recall@1 = 1.0


def test_label_filter_and_payload(ingested: Settings, gallery: tuple[Path, list[str]]) -> None:
    root, good = gallery
    with Retriever(ingested, "imgs") as r:
        for index in ("flat", "hnsw", "qdrant"):
            res = r.search_image(root / good[0], index=index, k=5, filter={"label": "blue"})
            assert len(res.hits) == 5 and all(h.payload["label"] == "blue" for h in res.hits)
            assert {"file", "width", "height"} <= set(res.hits[0].payload)


def test_caption_targets(ingested: Settings, gallery: tuple[Path, list[str]]) -> None:
    root, good = gallery
    with Retriever(ingested, "imgs") as r:
        for index in ("flat", "qdrant"):
            t2c = r.search_text("a red square number 2", index=index, k=3, target="caption")
            assert len(t2c.hits) == 3 and all(h.payload["caption"] for h in t2c.hits)
            assert t2c.hits[0].payload["caption"] == "a red square number 2"
            i2c = r.search_image(root / good[0], index=index, k=2, target="caption")
            assert all(h.payload["caption"] for h in i2c.hits)
            t2i = r.search_text("a snowy day", index=index, k=4)
            assert t2i.target == "image" and len(t2i.hits) == 4


class TextOnly:
    """The collection's CLIP text tower behind the text contract alone (no ``encode_images``)."""

    def __init__(self, clip: Encoder) -> None:
        self.clip, self.dim, self.fingerprint = clip, clip.dim, clip.fingerprint

    def encode_text(self, texts: list[str], batch_size: int | None = None) -> np.ndarray:
        return self.clip.encode_text(texts, batch_size)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self.clip.encode_queries(texts)

    def encode_query(self, text: str) -> np.ndarray:
        return self.clip.encode_query(text)


def test_an_injected_encoder_serves_and_image_queries_need_an_image_encoder(
    ingested: Settings, gallery: tuple[Path, list[str]]
) -> None:
    root, good = gallery
    clip = load_encoder(ingested, "clip")
    with Retriever(ingested, "imgs", encoders={"clip": clip}) as r:
        assert r.search_image(root / good[0], k=1).hits[0].id == good[0]
        assert r.encoder("clip") is clip
    with Retriever(ingested, "imgs", encoders={"clip": TextOnly(clip)}) as r:
        assert len(r.search_text("a red square", k=2).hits) == 2  # text queries need only the text contract
        with pytest.raises(InvalidInputError, match="TextOnly.* does not encode images: pass an ImageEncoder"):
            r.search_image(root / good[0], k=1)


def test_cli_image_search_json(
    ingested: Settings,
    gallery: tuple[Path, list[str]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root, good = gallery
    monkeypatch.setenv("SIMLOOKUP_DATA_DIR", str(ingested.data_dir))
    monkeypatch.setenv("SIMLOOKUP_CLIP__ARCH", ingested.clip.arch)
    monkeypatch.setenv("SIMLOOKUP_CLIP__PRETRAINED", str(ingested.clip.pretrained))
    assert (
        main(
            [
                "search",
                "--image",
                str(root / good[3]),
                "--name",
                "imgs",
                "--target",
                "image",
                "-k",
                "2",
                "--index",
                "qdrant",
                "--json",
            ]
        )
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["hits"][0]["id"] == good[3] and doc["target"] == "image" and doc["index"] == "qdrant"
    assert main(["search", "a blue square", "--name", "imgs", "--target", "caption", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["target"] == "caption" and all("caption" in h["payload"] for h in doc["hits"])
    assert main(["search", "--image", str(root / "bad/notes.png"), "--name", "imgs"]) == 2
    assert "not an image" in capsys.readouterr().err
    assert main(["search", "--image", str(root / "bad/textbomb.png"), "--name", "imgs"]) == 2
    assert "textbomb.png: unreadable image" in capsys.readouterr().err
