"""A crash hook for tests: a write path calls ``fault_point(NAME)`` at its crash-relevant steps, and a process
whose ``SIMLOOKUP_FAULT`` names that point is SIGKILLed there (the crash-safety tests kill at every step)."""

from __future__ import annotations

import os
import signal


def fault_point(name: str) -> None:
    """Tests' crash hook: SIGKILL this process here when the variable SIMLOOKUP_FAULT names this point."""
    if os.environ.get("SIMLOOKUP_FAULT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
