"""Image input robustness: conversions and per-item rejections with their reasons."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from retrieval.encoders.images import load_image
from retrieval.errors import InvalidInputError


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "LA", "I;16"])
def test_modes_convert_to_rgb(mode: str) -> None:
    img = Image.new(mode, (20, 10))
    assert load_image(img).mode == "RGB"


def test_rgba_composited_on_white() -> None:
    img = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert load_image(img).getpixel((0, 0)) == (255, 255, 255)


def test_rejections(tmp_path: Path) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(InvalidInputError, match="zero-size"):
        load_image(empty)
    text = tmp_path / "notes.png"
    text.write_text("hello, I am not an image")
    with pytest.raises(InvalidInputError, match="not an image"):
        load_image(text)
    buf = io.BytesIO()
    Image.new("RGB", (200, 200), (1, 2, 3)).save(buf, format="PNG")
    trunc = tmp_path / "trunc.png"
    trunc.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(InvalidInputError, match="truncated|unreadable"):
        load_image(trunc)
    big = tmp_path / "big.png"
    Image.new("L", (3000, 3000)).save(big)
    with pytest.raises(InvalidInputError, match="decompression bomb"):
        load_image(big, max_pixels=1_000_000)
    with pytest.raises(InvalidInputError, match="no such"):
        load_image(tmp_path / "missing.jpg")


def text_bomb_png(path: Path) -> Path:
    """A valid 8x8 PNG whose zTXt chunk inflates above PIL's MAX_TEXT_CHUNK (PIL raises a raw ValueError)."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "x" * (2 << 20), zip=True)
    Image.new("RGB", (8, 8)).save(path, format="PNG", pnginfo=info)
    return path


def test_oversized_png_text_chunk_is_an_invalid_input(tmp_path: Path) -> None:
    bomb = text_bomb_png(tmp_path / "textbomb.png")
    with pytest.raises(InvalidInputError, match="textbomb.png: unreadable image .*MAX_TEXT_CHUNK"):
        load_image(bomb)
    with pytest.raises(InvalidInputError, match="unreadable image"):
        load_image(bomb.read_bytes())
