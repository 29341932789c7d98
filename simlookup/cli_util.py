"""What every ``simlookup`` command shares: settings built once from the environment and flags, and the one
way output is printed (one JSON document with ``--json``, else text; URLs' user:password@ redacted)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from retrieval.settings import Settings, load_settings, redact_url


def emit(args: argparse.Namespace, data: Any, text: str) -> None:
    """Print the JSON document (--json) or the text, with any user:password@ in URLs redacted."""
    if getattr(args, "json", False):
        sys.stdout.write(redact_url(json.dumps(data, indent=2, default=str)) + "\n")
    else:
        print(redact_url(text))


def settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = Path(args.data_dir)
    s = load_settings(**overrides)
    if s.threads:
        os.environ.setdefault("OMP_NUM_THREADS", str(s.threads))
    return s
