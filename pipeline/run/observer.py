"""What a run tells whoever shows it (a terminal, a log, a test). The engine draws nothing."""

from __future__ import annotations

from collections.abc import Mapping

from pipeline.results.records import SampleRecord


class RunObserver:
    """Progress callbacks of a run; each does nothing unless a command overrides it."""

    def servers_waiting(self, waiting: int, elapsed_s: float, timeout_s: float) -> None:
        """Servers are loading their model; called about every 50 ms until all are ready."""

    def servers_ready(self) -> None:
        """Every server answers."""

    def batch_started(self, total: int) -> None:
        """The samples start to stream (after any warm-up)."""

    def sample_finished(self, record: SampleRecord, counts: Mapping[str, int]) -> None:
        """A sample has its record (counts so far: ok, failed, skipped)."""

    def batch_finished(self) -> None:
        """The batch ended: done, failed or interrupted."""
