"""CLIP encoder over open_clip: images and texts in one space, loaded from a tag or a local checkpoint."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.encoders.base import check_texts, hash_files, normalize
from retrieval.encoders.images import ImageInput, load_image
from retrieval.errors import InvalidInputError, ModelNotFoundError

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")


class ClipEncoder:
    """open_clip model: ``encode_text`` / ``encode_queries`` / ``encode_query`` and ``encode_images``, float32 unit
    vectors in one space, with a fingerprint (an ``ImageEncoder``)."""

    def __init__(
        self,
        arch: str = "ViT-B-32",
        pretrained: str | None = None,
        *,
        device: str = "cpu",
        batch_size: int = 32,
        max_image_pixels: int = 50_000_000,
    ) -> None:
        if not pretrained:
            raise ModelNotFoundError(
                "no CLIP weights configured: set SIMLOOKUP_CLIP__PRETRAINED to a local open_clip checkpoint "
                f"file for {arch} (e.g. /models/vit-b-32.pt), or, with a network, to an open_clip pretrained "
                "tag such as laion2b_s34b_b79k (list them with open_clip.list_pretrained())"
            )
        import open_clip

        self.arch = arch
        self.pretrained = pretrained
        self.batch_size = batch_size
        self.max_image_pixels = max_image_pixels
        self.device = device
        is_file = Path(pretrained).suffix in CHECKPOINT_SUFFIXES or os.sep in pretrained
        if is_file and not Path(pretrained).is_file():
            raise ModelNotFoundError(f"CLIP checkpoint {pretrained!r} does not exist")
        if not is_file and os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false"):
            known = {tag for a, tag in open_clip.list_pretrained() if a == arch}
            if pretrained not in known:
                raise ModelNotFoundError(f"{pretrained!r} is neither a checkpoint file nor a pretrained tag of {arch}")
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=pretrained, device=device)
        except Exception as exc:  # noqa: BLE001
            raise ModelNotFoundError(
                f"cannot load CLIP {arch} from {pretrained!r}: {exc}. Offline, point SIMLOOKUP_CLIP__PRETRAINED at a "
                "local checkpoint file"
            ) from exc
        model.eval()
        self._model: Any = model
        self._preprocess: Any = preprocess
        self._tokenizer: Any = open_clip.get_tokenizer(arch)
        self._dim = int(self._embed_dim())
        if is_file:
            self._fingerprint = f"{arch}@{hash_files([Path(pretrained)])}"
        else:
            self._fingerprint = f"{arch}@{pretrained}"

    def _embed_dim(self) -> int:
        proj = getattr(self._model, "text_projection", None)
        if proj is not None and hasattr(proj, "shape"):
            return int(proj.shape[-1])
        return int(self.encode_text(["probe"]).shape[1])

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def encode_text(self, texts: list[str], batch_size: int | None = None) -> np.ndarray:
        """Encode captions or queries with the CLIP text tower."""
        import torch

        texts = check_texts(texts)
        bs = batch_size or self.batch_size
        out: list[np.ndarray] = []
        with torch.inference_mode():
            for i in range(0, len(texts), bs):
                tokens = self._tokenizer(texts[i : i + bs]).to(self.device)
                out.append(self._model.encode_text(tokens).float().cpu().numpy())
        if not out:
            return np.zeros((0, getattr(self, "_dim", 0)), dtype=np.float32)
        return normalize(np.concatenate(out))

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        """Encode text queries with the text tower (an (n, dim) array; each row as if encoded alone)."""
        return self.encode_text(texts)

    def encode_query(self, text: str) -> np.ndarray:
        """Encode one text query (a (dim,) vector)."""
        return self.encode_queries([text])[0]

    def encode_images(self, images: list[ImageInput], batch_size: int | None = None) -> np.ndarray:
        """Encode images (PIL images, paths or bytes); any bad item raises InvalidInputError naming it."""
        import torch

        if not isinstance(images, (list, tuple)):
            raise InvalidInputError("ClipEncoder.encode_images takes a list of images, not one")
        pil = [load_image(im, self.max_image_pixels) for im in images]
        bs = batch_size or self.batch_size
        out: list[np.ndarray] = []
        with torch.inference_mode():
            for i in range(0, len(pil), bs):
                batch = torch.stack([self._preprocess(im) for im in pil[i : i + bs]]).to(self.device)
                out.append(self._model.encode_image(batch).float().cpu().numpy())
        if not out:
            return np.zeros((0, self.dim), dtype=np.float32)
        return normalize(np.concatenate(out))

    def encode_image(self, images: list[ImageInput], batch_size: int | None = None) -> np.ndarray:
        """The former name of ``encode_images`` (it too takes a list), kept for existing callers."""
        return self.encode_images(images, batch_size)
