"""Names the command line offers before anything heavy is imported (the parser must not import numpy)."""

from __future__ import annotations

DATASETS = ("stsb", "fashion-mnist", "synthetic")
