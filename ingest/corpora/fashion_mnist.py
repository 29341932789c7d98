"""Fashion-MNIST (70k 28×28 grayscale images, 10 classes) from Debian's ``dataset-fashion-mnist``.

Files: ``/usr/share/datasets/fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``
(16-byte image header, 8-byte label header). Elsewhere, the hub's ``zalando-datasets/fashion_mnist``.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Any

import numpy as np

from ingest.corpora.base import CorpusError, CorpusSpec, file_digest

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
SPEC = CorpusSpec(
    name="fashion-mnist",
    modality="image",
    text_column=None,
    image_column="image",
    caption_column="caption",
    payload_indexes={"label": "keyword", "split": "keyword"},
    description="Fashion-MNIST: 70k 28x28 images with class-name captions (Debian dataset-fashion-mnist)",
)


def fmnist_dir() -> Path:
    d = Path(os.environ.get("SIMLOOKUP_FASHION_MNIST_DIR", DEFAULT_DIR))
    if not (d / "train-images-idx3-ubyte.gz").exists():
        raise CorpusError(
            f"Fashion-MNIST not found in {d}: apt-get install dataset-fashion-mnist (Debian), or set "
            "SIMLOOKUP_FASHION_MNIST_DIR; with a network, hf:zalando-datasets/fashion_mnist works too"
        )
    return d


def read_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (n, 28, 28), labels uint8 (n,)) for split train or test."""
    prefix = {"train": "train", "test": "t10k"}[split]
    d = fmnist_dir()
    with gzip.open(d / f"{prefix}-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(d / f"{prefix}-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), dtype=np.uint8, offset=8)
    if len(images) != len(labels):
        raise CorpusError(f"Fashion-MNIST {split}: {len(images)} images but {len(labels)} labels")
    return images, labels


class FashionMnistCorpus:
    """Images as PIL (grayscale; the CLIP encoder converts), caption = class name, payload label and split."""

    spec = SPEC

    def load(self, limit: int | None = None) -> Any:
        from datasets import Dataset, Features, Image, Value

        def gen() -> Any:
            from PIL import Image as PILImage

            n = 0
            for split in ("train", "test"):
                images, labels = read_split(split)
                for i in range(len(images)):
                    if limit is not None and n >= limit:
                        return
                    yield {
                        "id": f"{split}-{i}",
                        "image": PILImage.fromarray(images[i], mode="L"),
                        "caption": f"a photo of a {CLASSES[labels[i]].lower()}",
                        "label": CLASSES[labels[i]],
                        "split": split,
                    }
                    n += 1

        feats = Features(
            {
                "id": Value("string"),
                "image": Image(),
                "caption": Value("string"),
                "label": Value("string"),
                "split": Value("string"),
            }
        )
        return Dataset.from_generator(gen, features=feats)

    def fingerprint(self) -> str:
        d = fmnist_dir()
        return "fashion-mnist@" + file_digest(sorted(d.glob("*-ubyte.gz")))
