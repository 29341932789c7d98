"""Store and corpus names: plain names that cannot escape the data directory."""

from __future__ import annotations

import re

from retrieval.errors import InvalidInputError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


def check_name(name: str, what: str = "name") -> str:
    """Refuse empty names, paths (``../x``, ``/abs``, ``a/b``) and odd characters."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidInputError(f"{what} must not be empty")
    if "/" in name or "\\" in name or name in (".", "..") or ".." in name or not NAME_RE.match(name):
        raise InvalidInputError(
            f"{what} {name!r} is not allowed: use letters, digits, '_', '-' and '.', no path separators or '..'"
        )
    return name
