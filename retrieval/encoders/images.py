"""Robust image loading: every failure becomes an InvalidInputError with a reason a user can act on."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

from retrieval.errors import InvalidInputError

ImageInput = Any  # a PIL image, a path, or raw bytes


def load_image(src: ImageInput, max_pixels: int = 50_000_000) -> Any:
    """Open an image as RGB, refusing empty, truncated, non-image and oversized (bomb) inputs."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(src, Image.Image):
        img = src
        name = "<PIL image>"
    else:
        if isinstance(src, (bytes, bytearray)):
            data, name = bytes(src), "<bytes>"
        else:
            path = Path(src)
            name = str(path)
            if not path.is_file():
                raise InvalidInputError(f"{name}: no such image file")
            if path.stat().st_size == 0:
                raise InvalidInputError(f"{name}: zero-size file")
            data = path.read_bytes()
        if not data:
            raise InvalidInputError(f"{name}: zero-size file")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise InvalidInputError(f"{name}: not an image (unrecognised format)") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise InvalidInputError(f"{name}: too many pixels (decompression bomb)") from None
        except (OSError, ValueError) as exc:  # ValueError: e.g. a PNG text chunk above PIL's safety limit
            raise InvalidInputError(f"{name}: unreadable image ({exc})") from None
    w, h = img.size
    if w * h == 0:
        raise InvalidInputError(f"{name}: image has zero width or height")
    if w * h > max_pixels:
        raise InvalidInputError(
            f"{name}: too many pixels ({w}x{h} > {max_pixels}; decompression bomb cap, "
            "SIMLOOKUP_CLIP__MAX_IMAGE_PIXELS)"
        )
    try:
        img.load()
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"{name}: truncated or corrupt image ({exc})") from None
    return to_rgb(img)


def to_rgb(img: Any) -> Any:
    """Convert grayscale, palette, CMYK and alpha images to RGB (alpha composited on white)."""
    from PIL import Image

    if img.mode == "RGB":
        return img
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA"):
        rgba = img.convert("RGBA")
        bg = Image.new("RGB", rgba.size, (255, 255, 255))
        bg.paste(rgba, mask=rgba.split()[-1])
        return bg
    return img.convert("RGB")
