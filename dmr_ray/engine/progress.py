"""Progress reporting for long runs: a tqdm bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger(__name__)


class Progress:
    """Report chunk progress with a mutants-per-second rate and an ETA.

    Parameters
    ----------
    total_chunks
        Chunks this run has to compute (already finished ones excluded).
    label
        What is being computed, shown in front of the bar or log line.
    mutants_per_sequence
        Mutants (forward passes per replicate) per reference sequence, for the rate.
    rate_unit
        What the rate counts (``"mutants"``; ``"sequences"`` with ``mutants_per_sequence=1``).
    interval_s
        Minimum seconds between two log lines when not on a terminal.
    """

    def __init__(
        self,
        total_chunks: int,
        label: str,
        mutants_per_sequence: int,
        *,
        rate_unit: str = "mutants",
        interval_s: float = 10.0,
    ) -> None:
        self.total = total_chunks
        self.label = label
        self.mutants_per_sequence = mutants_per_sequence
        self.rate_unit = rate_unit
        self.interval_s = interval_s
        self.done = 0
        self.mutants = 0
        self._start = time.monotonic()
        self._last_log = 0.0
        self._bar = None
        if sys.stderr.isatty() and total_chunks > 0:
            from tqdm import tqdm

            self._bar = tqdm(total=total_chunks, desc=label, unit="chunk", dynamic_ncols=True)

    def advance(self, n_sequences: int) -> None:
        """Record one finished chunk of ``n_sequences`` reference sequences."""
        self.done += 1
        self.mutants += n_sequences * self.mutants_per_sequence
        rate = self.mutants / max(time.monotonic() - self._start, 1e-9)
        if self._bar is not None:
            self._bar.set_postfix_str(f"{rate:,.0f} {self.rate_unit}/s")
            self._bar.update(1)
            return
        now = time.monotonic()
        if now - self._last_log >= self.interval_s or self.done == self.total:
            self._last_log = now
            remaining = (self.total - self.done) * (now - self._start) / self.done
            log.info(
                "%s: %d/%d chunks, %.0f %s/s, ETA %.0f s",
                self.label,
                self.done,
                self.total,
                rate,
                self.rate_unit,
                remaining,
            )

    def close(self) -> None:
        """Close the terminal bar, if any."""
        if self._bar is not None:
            self._bar.close()

    @property
    def elapsed_s(self) -> float:
        """Seconds since the reporter was created."""
        return time.monotonic() - self._start
