"""How ``simlookup verify`` reports to people and scripts: its text and exit status, from a report as
``retrieval.verify.VerifyReport.to_dict`` or the service's ``POST /verify`` gives it (no heavy import: the CLI
prints a service's report without numpy)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

INCOMPLETE_EXIT = 3


def exit_status(doc: Mapping[str, Any]) -> int:
    """``simlookup verify``'s exit status from its report (``VerifyReport.to_dict``, or the service's): 0 every
    index agrees, 1 differences (damage) found, 3 incomplete (an ingest running or stopped midway) and nothing
    else found."""
    return 0 if doc["ok"] else 1 if doc["differences"] else INCOMPLETE_EXIT


def report_text(doc: Mapping[str, Any]) -> str:
    """``simlookup verify``'s report for people: ``OK:``, ``INCOMPLETE: <state>`` (the indexes' mid-write
    differences follow as notes) or ``DIFFERENCES:`` (with the state line when the collection is also incomplete),
    then the counts and the notes."""
    state = doc.get("state_message")
    if doc["differences"]:
        head = "DIFFERENCES:\n  " + "\n  ".join(doc["differences"]) + (f"\nstate: {state}" if state else "") + "\n"
    elif state:
        head = f"INCOMPLETE: {state}\n"
    else:
        head = "OK: "
    counts = json.dumps(doc["counts"])
    return (
        head + ("" if head == "OK: " else "counts: ") + counts + "".join(f"\nnote: {n}" for n in doc.get("notes") or [])
    )
