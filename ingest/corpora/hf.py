"""Hugging Face datasets: ``hf:<dataset>[:<config>][:<split>]`` from the hub, or a folder saved with save_to_disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ingest.corpora.base import CorpusError, CorpusSpec
from ingest.corpora.files import assign_ids, normalise_columns


def parse_hf_spec(spec: str) -> tuple[str, str | None, str]:
    """``hf:name[:config][:split]`` → (name, config, split); split defaults to train."""
    parts = spec.removeprefix("hf:").split(":")
    if not parts[0]:
        raise CorpusError(f"{spec!r}: expected hf:<dataset>[:<config>][:<split>]")
    name = parts[0]
    config = parts[1] or None if len(parts) > 1 else None
    split = parts[2] if len(parts) > 2 and parts[2] else "train"
    if len(parts) > 3:
        raise CorpusError(f"{spec!r}: too many ':' parts")
    return name, config, split


class HFCorpus:
    """A Hugging Face dataset with a column mapping (text, id; image for image sets)."""

    def __init__(
        self, spec: str, text_column: str = "text", id_column: str = "id", image_column: str | None = None
    ) -> None:
        self.name, self.config, self.split = parse_hf_spec(spec)
        self.text_column = text_column
        self.id_column = id_column
        self.image_column = image_column
        self.spec = CorpusSpec(
            name=self.name.replace("/", "__"),
            modality="image" if image_column else "text",
            text_column=None if image_column else text_column,
            image_column="image" if image_column else None,
            description=f"Hugging Face dataset {spec}",
        )

    def _raw(self) -> Any:
        import datasets

        local = Path(self.name)
        try:
            if local.is_dir():
                ds = datasets.load_from_disk(str(local))
                if isinstance(ds, datasets.DatasetDict):
                    if self.split not in ds:
                        raise CorpusError(f"{local}: no split {self.split!r} (has {list(ds)})")
                    ds = ds[self.split]
                return ds
            return datasets.load_dataset(self.name, self.config, split=self.split)
        except CorpusError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise CorpusError(
                f"cannot load Hugging Face dataset {self.name!r} (config {self.config}, split {self.split}): {exc}. "
                "Offline (HF_HUB_OFFLINE=1) only cached datasets or folders saved with save_to_disk load."
            ) from None

    def load(self, limit: int | None = None) -> Any:
        ds = self._raw()
        if self.image_column:
            if self.image_column not in ds.column_names:
                raise CorpusError(f"{self.name}: no image column {self.image_column!r} (columns: {ds.column_names})")
            if limit is not None:
                ds = ds.select(range(min(limit, len(ds))))
            if self.image_column != "image":
                ds = ds.rename_column(self.image_column, "image")
            return assign_ids(ds, self.id_column, self.name)
        return normalise_columns(ds, self.text_column, self.id_column, limit, self.name)

    def fingerprint(self) -> str:
        ds = self._raw()
        fp = getattr(ds, "_fingerprint", None) or f"{len(ds)}"
        cols = f"text={self.text_column},id={self.id_column},image={self.image_column}"
        return f"hf:{self.name}:{self.config}:{self.split}@{fp}:{cols}"
