"""How a run looks on the terminal: a status line while servers load, a progress bar over the
samples, and a final summary that counts successes and failures loudly."""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.status import Status
from rich.table import Table

from pipeline.results.records import SampleRecord
from pipeline.run.observer import RunObserver
from pipeline.run.run import RunOutcome

MAX_LISTED_FAILURES = 20


def _counts_text(counts: Mapping[str, int]) -> str:
    text = (
        f"[green]ok {counts.get('ok', 0)}[/] [red]failed {counts.get('failed', 0)}[/]"
        f" skipped {counts.get('skipped', 0)}"
    )
    for status in ("not_run", "held"):
        if counts.get(status):
            text += f" [yellow]{status.replace('_', ' ')} {counts[status]}[/]"
    return text


COLUMNS = {
    "ok": "[green]{}[/]",
    "failed": "[red]{}[/]",
    "skipped": "{}",
    "not_run": "[yellow]{}[/]",
    "held": "[yellow]{}[/]",
}


class ConsoleObserver(RunObserver):
    """Draws a run's progress on ``console``; use as a context manager."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._status: Status | None = None
        self._progress: Progress | None = None
        self._bar: TaskID | None = None

    def servers_waiting(self, waiting: int, elapsed_s: float, timeout_s: float) -> None:
        text = (
            f"waiting for {waiting} server(s) to load the model"
            f" ({elapsed_s:.0f} s of at most {timeout_s:.0f} s)"
        )
        if self._status is None:
            self._status = self.console.status(text)
            self._status.start()
        else:
            self._status.update(text)

    def servers_ready(self) -> None:
        self._stop_status()

    def batch_started(self, total: int) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
        )
        self._progress.start()
        self._bar = self._progress.add_task("samples", total=total, counts=_counts_text({}))

    def sample_finished(self, record: SampleRecord, counts: Mapping[str, int]) -> None:
        if self._progress is not None and self._bar is not None:
            self._progress.update(self._bar, advance=1, counts=_counts_text(counts))

    def batch_finished(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def _stop_status(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def __enter__(self) -> ConsoleObserver:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop_status()
        self.batch_finished()


def print_summary(console: Console, outcome: RunOutcome) -> None:
    records = outcome.records
    counts = records.count_table()
    table = Table(title=f"run {outcome.run_id}", show_header=True)
    for col in (*COLUMNS, "total"):
        table.add_column(col.replace("_", " "), justify="right")
    total = sum(counts[k] for k in COLUMNS)
    table.add_row(*(fmt.format(counts[k]) for k, fmt in COLUMNS.items()), str(total))
    console.print(table)
    _print_notes(console, counts)
    for rec in records.failures[:MAX_LISTED_FAILURES]:
        label = "FAILED" if rec.status == "failed" else "NOT RUN"
        console.print(f"  [red]{label}[/] {rec.key}: {rec.error}")
    if len(records.failures) > MAX_LISTED_FAILURES:
        more = len(records.failures) - MAX_LISTED_FAILURES
        console.print(f"  ... and {more} more (see samples.jsonl)")
    _print_verdict(console, outcome, counts)
    console.print(f"records: {records.manifest_path} and {records.samples_path}")


def _print_notes(console: Console, counts: Mapping[str, int]) -> None:
    redone, kept = counts["redone: settings changed"], counts["kept: other settings"]
    if redone:
        console.print(
            f"[bold yellow]REDONE: {redone} sample(s) had outputs made with other settings[/]"
            " (profile, model, voice, prompt, encoder or alignment); the old outputs were set"
            " aside beside them (*.prev), not deleted."
        )
    if kept:
        console.print(
            f"[bold yellow]KEPT: {kept} sample(s) have outputs made with other settings[/]"
            " (--keep-other-settings): these outputs do not all come from this run's settings."
        )
    if counts["held"]:
        console.print(
            f"[yellow]HELD: {counts['held']} sample(s) are being run by another live run[/]"
            " (their folder's lock is taken); this run left them alone."
        )


def _print_verdict(console: Console, outcome: RunOutcome, counts: Mapping[str, int]) -> None:
    incomplete = outcome.records.incomplete
    if outcome.interrupted is not None:
        console.print(
            f"[bold yellow]INTERRUPTED by {outcome.interrupted.name}[/]: completed samples are"
            " kept; run the same command again to resume."
        )
    elif outcome.error is not None:
        console.print(f"[bold red]RUN FAILED[/]: {outcome.error.splitlines()[0]}")
        if counts["not_run"]:
            console.print(f"{counts['not_run']} sample(s) not run: run again to resume.")
    elif incomplete:
        console.print(
            f"[bold red]INCOMPLETE: {incomplete} sample(s) did not complete[/]"
            " - the evaluation would silently skip them. Re-run to retry them."
        )
    else:
        console.print("[bold green]ALL SAMPLES COMPLETE[/]")
