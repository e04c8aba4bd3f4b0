"""What the CLI shows: a rich progress bar and tables for people, plain JSON/CSV for scripts.

Progress goes to stderr and only when stderr is a terminal, so a piped command prints nothing but
its result on stdout.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, TextIO

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.progress import Progress as RichProgress
from rich.table import Table


class ProgressLike(Protocol):
    """The conversion service's progress value (b24app.crm.conversion.Progress)."""

    total: int
    converted: int
    failed: int
    skipped: int
    requests: int


class PreviewLike(Protocol):
    """A planner preview (b24app.crm.planner.LeadPreview)."""

    lead_id: int
    skip: str | None
    create: tuple[str, ...]
    move: tuple[int, ...]
    complete: tuple[int, ...]

    def text(self) -> str:
        """One line describing the plan."""
        ...


def is_terminal(stream: TextIO | None) -> bool:
    """Whether `stream` is an interactive terminal (False for pipes, files and test runners)."""
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def stdout_console() -> Console:
    """A console on stdout: colours and live widths on a terminal, plain text when piped."""
    return Console(file=sys.stdout, highlight=False, soft_wrap=False)


def stderr_console() -> Console:
    """A console on stderr, for progress and narration that must not mix with the result."""
    return Console(file=sys.stderr, highlight=False)


class ProgressBar:
    """A progress bar for a conversion; call it with each Progress. Silent unless `enabled`
    (default: stderr is a terminal)."""

    def __init__(
        self,
        description: str = "converting leads",
        *,
        enabled: bool | None = None,
        console: Console | None = None,
    ) -> None:
        self.enabled = is_terminal(sys.stderr) if enabled is None else enabled
        self._description = description
        self._console = console
        self._bar: RichProgress | None = None
        self._task: Any = None

    def __enter__(self) -> ProgressBar:
        if self.enabled:
            self._bar = RichProgress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TaskProgressColumn(),
                TextColumn("{task.fields[detail]}"),
                TimeElapsedColumn(),
                console=self._console or stderr_console(),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(self._description, total=None, detail="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __call__(self, progress: ProgressLike) -> None:
        """Show one progress report."""
        if self._bar is None:
            return
        done = progress.converted + progress.failed + progress.skipped
        detail = f"{progress.failed} failed, {progress.requests} requests"
        self._bar.update(self._task, total=progress.total or None, completed=done, detail=detail)


def echo_json(data: Any) -> None:
    """Print `data` as one JSON document on stdout."""
    click.echo(json.dumps(data, ensure_ascii=False, sort_keys=False))


def report_table(report: Mapping[str, Any], *, title: str = "Conversion") -> Table:
    """A summary table of a report dict (`JobReport.to_dict()`)."""
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    if report.get("job_id") is not None:
        table.add_row("job", str(report["job_id"]))
    if report.get("status"):
        table.add_row("status", str(report["status"]))
    for name in ("converted", "failed", "skipped", "requests"):
        table.add_row(name, str(report.get(name, 0)))
    return table


def failed_lines(report: Mapping[str, Any], *, limit: int = 20) -> list[str]:
    """One line per failed lead (at most `limit`, then a count of the rest)."""
    failed = [lead for lead in report.get("leads", ()) if lead.get("status") == "failed"]
    lines = [f"lead {lead['lead_id']}: {lead.get('error') or 'failed'}" for lead in failed[:limit]]
    if len(failed) > limit:
        lines.append(f"... and {len(failed) - limit} more failed lead(s)")
    return lines


def preview_totals(previews: Iterable[PreviewLike]) -> dict[str, int]:
    """Totals over previews: leads, skipped, entities to create by kind, activities."""
    totals: Counter[str] = Counter()
    for preview in previews:
        totals["leads"] += 1
        if preview.skip:
            totals["skipped"] += 1
            continue
        for name in preview.create:
            totals[name] += 1
        totals["activities moved"] += len(preview.move)
        totals["activities completed"] += len(preview.complete)
    order = (
        "leads",
        "skipped",
        "company",
        "contact",
        "deal",
        "activities moved",
        "activities completed",
    )
    return {name: totals[name] for name in order}


def totals_table(totals: Mapping[str, int], *, title: str) -> Table:
    """A two-column table of named counts."""
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("count", justify="right")
    for name, count in totals.items():
        label = f"{name}s to create" if name in ("company", "contact", "deal") else name
        table.add_row(label.replace("companys", "companies"), str(count))
    return table


def preview_lines(previews: Sequence[PreviewLike], *, limit: int | None = None) -> list[str]:
    """The previews as text lines (the first `limit`, then a count of the rest)."""
    shown = previews if limit is None else previews[:limit]
    lines = [preview.text() for preview in shown]
    if limit is not None and len(previews) > limit:
        lines.append(f"... and {len(previews) - limit} more lead(s)")
    return lines


JOB_COLUMNS = (
    "id",
    "kind",
    "status",
    "created_at",
    "converted",
    "failed",
    "skipped",
    "requests",
    "error",
)


def jobs_table(jobs: Sequence[Mapping[str, Any]], *, title: str) -> Table:
    """The jobs (`JobRow.to_dict()`), newest first, one row each."""
    table = Table(title=title, title_justify="left")
    for column in JOB_COLUMNS:
        table.add_column(
            column,
            justify="right"
            if column in ("id", "converted", "failed", "skipped", "requests")
            else "left",
        )
    for job in jobs:
        created = str(job.get("created_at") or "")[:19].replace("T", " ")
        cells = {**job, "created_at": created}
        table.add_row(*("" if cells.get(c) is None else str(cells[c]) for c in JOB_COLUMNS))
    return table
