"""Progress reporting for long runs: a tqdm bar on a terminal, plain log lines otherwise.

Start-up (Ray, actor placement, model loading) is timed apart from compute: the rate and the
ETA count from :meth:`Progress.start`, called when the first worker is ready, so a run that
spent 20 s starting and 1 s computing does not report a compute rate averaged over 21 s.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

log = logging.getLogger(__name__)


class Progress:
    """Report chunk progress in the task's own unit, with a rate and an ETA.

    Parameters
    ----------
    total_chunks
        Chunks this run has to compute (already finished ones excluded).
    label
        What is being computed, shown in front of the bar or log line.
    unit
        What progress counts (``"mutants"``, ``"sequences"``, ``"cells"``).
    interval_s
        Minimum seconds between two log lines when not on a terminal.
    """

    def __init__(self, total_chunks: int, label: str, unit: str, *, interval_s: float = 10.0) -> None:
        self.total = total_chunks
        self.label = label
        self.unit = unit
        self.interval_s = interval_s
        self.done = 0
        self.units = 0
        self._created = time.monotonic()
        self._started: float | None = None
        self._finished: float | None = None
        self._last_log = 0.0
        self._bar: Any = None

    def start(self) -> None:
        """Mark the end of start-up (the first worker is ready); later calls do nothing."""
        if self._started is not None:
            return
        self._started = time.monotonic()
        log.info("%s: started in %.1f s; %d chunks to compute", self.label, self.startup_s, self.total)
        if sys.stderr.isatty() and self.total > 0:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, desc=self.label, unit="chunk", dynamic_ncols=True)

    def advance(self, units: int) -> None:
        """Record one finished chunk of ``units`` units."""
        self.start()
        self.done += 1
        self.units += units
        rate = self.units / max(self.compute_s, 1e-9)
        if self._bar is not None:
            self._bar.set_postfix_str(f"{rate:,.0f} {self.unit}/s")
            self._bar.update(1)
            return
        now = time.monotonic()
        if now - self._last_log >= self.interval_s or self.done == self.total:
            self._last_log = now
            remaining = (self.total - self.done) * self.compute_s / self.done
            log.info(
                "%s: %d/%d chunks, %.0f %s/s, ETA %.0f s", self.label, self.done, self.total, rate, self.unit, remaining
            )

    def close(self) -> None:
        """Stop the clocks and close the terminal bar, if any."""
        if self._finished is None:
            self._finished = time.monotonic()
        if self._bar is not None:
            self._bar.close()

    @property
    def startup_s(self) -> float:
        """Seconds from creation to :meth:`start` (or to now / :meth:`close` if never started)."""
        end = self._started if self._started is not None else self._finished or time.monotonic()
        return end - self._created

    @property
    def compute_s(self) -> float:
        """Seconds from :meth:`start` to now (or to :meth:`close`); 0 if never started."""
        if self._started is None:
            return 0.0
        return (self._finished or time.monotonic()) - self._started
