"""The machine's load average sampled through a measurement (issue 25 item 6): start, highest and end of the
1-minute figure, so a row measured on a busy machine says so."""

from __future__ import annotations

import os
import threading
from types import TracebackType

BUSY = 1.0  # a row whose highest 1-minute load average exceeds this was measured beside other work


class LoadSampler:
    """``with LoadSampler() as s: ...`` samples ``os.getloadavg()[0]`` every ``every`` seconds in a daemon thread;
    ``s.record()`` is ``{"start", "max", "end", "samples"}``."""

    def __init__(self, every: float = 2.0) -> None:
        self.every = every
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.samples.append(os.getloadavg()[0])

    def __enter__(self) -> LoadSampler:
        self.samples = [os.getloadavg()[0]]
        self._thread = threading.Thread(target=self._run, name="load-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.samples.append(os.getloadavg()[0])

    def record(self) -> dict[str, float | int]:
        """Start, highest and end of the samples taken so far (rounded to 0.01), and how many."""
        s = self.samples or [os.getloadavg()[0]]
        return {"start": round(s[0], 2), "max": round(max(s), 2), "end": round(s[-1], 2), "samples": len(s)}


def busy(record: dict[str, float | int] | None) -> bool:
    """Whether a row with this load record was measured above ``BUSY``."""
    return record is not None and float(record["max"]) > BUSY
