"""What the CLI shows: rich tables and one live display for people, plain lines for pipes.

On a terminal, tables never cut an id or a status: those columns keep their full width, long text
folds, and a table too wide for the terminal is printed as one `name: value` line per cell
instead. Off a terminal (a pipe, a file, cron) every record is one unwrapped line, so grep and
log readers see whole records. Progress and waiting go to stderr and only when stderr is a
terminal; at most one live display runs at a time, and messages printed while it runs go above it.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress
from rich.table import Table
from rich.text import Text


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
    """A console on stdout: colours and the live width on a terminal, never wrapped when piped."""
    if is_terminal(sys.stdout):
        return Console(file=sys.stdout, highlight=False)
    return Console(
        file=sys.stdout, highlight=False, color_system=None, width=100_000, soft_wrap=True
    )


def stderr_console() -> Console:
    """A console on stderr, for progress and messages that must not mix with the result."""
    return Console(file=sys.stderr, highlight=False)


# -- sheets: tables that never cut a value --------------------------------------------------


@dataclass(frozen=True)
class Col:
    """A sheet column. `fold`: long free text that may wrap; `optional`: dropped first (terminal
    only) when the terminal is too narrow for every column."""

    header: str
    right: bool = False
    fold: bool = False
    optional: bool = False


@dataclass(frozen=True)
class Sheet:
    """A titled table of text cells, with notes printed under it."""

    title: str
    columns: tuple[Col, ...]
    rows: tuple[tuple[str, ...], ...]
    notes: tuple[str, ...] = field(default=())
    header: bool = True


FOLD_MIN = 16  # narrowest a folding column gets before the sheet turns into lines


def _widths(sheet: Sheet) -> list[int]:
    return [
        max([len(col.header) if sheet.header else 0, *(len(row[i]) for row in sheet.rows)])
        for i, col in enumerate(sheet.columns)
    ]


def _fits(sheet: Sheet, keep: Sequence[int], width: int) -> bool:
    widths = _widths(sheet)
    need = sum(FOLD_MIN if sheet.columns[i].fold else widths[i] for i in keep)
    return need + 2 * (len(keep) - 1) <= width


def _layout(sheet: Sheet, width: int) -> list[int] | None:
    """The columns a terminal `width` wide shows (a free-text column empty in every row dropped,
    so the others keep its room; optional ones dropped, last first, while the sheet does not
    fit); None when even the required columns do not fit."""
    keep = [
        i
        for i, col in enumerate(sheet.columns)
        if not (col.fold and sheet.rows and not any(row[i] for row in sheet.rows))
    ]
    optional = [i for i, col in reversed(list(enumerate(sheet.columns))) if col.optional]
    while not _fits(sheet, keep, width):
        if not optional:
            return None
        keep.remove(optional.pop(0))
    return keep


def sheet_table(sheet: Sheet, keep: Sequence[int]) -> Table:
    """The `keep` columns of a sheet as a rich Table: ids and statuses never cut, text folds."""
    widths = _widths(sheet)
    table = Table(
        # never wrapped to the table's width: a narrow table under a long title stays readable
        title=Text(sheet.title, style="bold", no_wrap=True, overflow="ignore")
        if sheet.title
        else None,
        title_justify="left",
        box=None,
        pad_edge=False,
        padding=(0, 1),
        header_style="bold",
        show_header=sheet.header,
    )
    for i in keep:
        col = sheet.columns[i]
        if col.fold:
            table.add_column(col.header, overflow="fold", min_width=FOLD_MIN, ratio=1)
        else:
            table.add_column(
                col.header,
                justify="right" if col.right else "left",
                no_wrap=True,
                min_width=widths[i],
            )
    for row in sheet.rows:
        table.add_row(*(Text(row[i]) for i in keep))
    return table


def sheet_lines(sheet: Sheet) -> list[str]:
    """The sheet as plain lines: a header, then one aligned, unwrapped line per row."""
    widths = _widths(sheet)
    last = len(sheet.columns) - 1

    def line(cells: Sequence[str]) -> str:
        parts = []
        for i, (cell, col) in enumerate(zip(cells, sheet.columns, strict=True)):
            if i == last:
                parts.append(cell.rjust(widths[i]) if col.right else cell)
            else:
                parts.append(cell.rjust(widths[i]) if col.right else cell.ljust(widths[i]))
        return "  ".join(parts).rstrip()

    lines = [sheet.title] if sheet.title else []
    if sheet.rows and sheet.header:
        lines.append(line([col.header for col in sheet.columns]))
    lines.extend(line(row) for row in sheet.rows)
    return [*lines, *sheet.notes]


def record_lines(sheet: Sheet) -> list[str]:
    """The sheet as one `header: value` line per cell, a blank line between rows (for a
    terminal too narrow for the table)."""
    lines = [sheet.title] if sheet.title else []
    for row in sheet.rows:
        lines.extend(f"{col.header}: {cell}" for col, cell in zip(sheet.columns, row, strict=True))
        lines.append("")
    return [*lines, *sheet.notes]


def show(sheet: Sheet, console: Console | None = None) -> None:
    """Print a sheet: a table on a terminal wide enough, plain lines otherwise. A folding
    column the terminal has no room for is printed under the table, one line per row."""
    console = console or stdout_console()
    if not console.is_terminal:
        for text in sheet_lines(sheet):
            click.echo(text, file=console.file)
        return
    keep = _layout(sheet, console.width)
    if keep is None:
        for text in record_lines(sheet):
            console.print(text, markup=False, highlight=False)
        return
    console.print(sheet_table(sheet, keep))
    for i, col in enumerate(sheet.columns):
        if col.fold and i not in keep:
            for row in sheet.rows:
                if row[i]:
                    console.print(f"{row[0]}: {row[i]}", markup=False, highlight=False)
    for note in sheet.notes:
        console.print(note, markup=False, highlight=False)


# -- live displays ----------------------------------------------------------------------------


class Live:
    """The one live display (a progress bar or a wait countdown) on stderr at any time.

    `say()` prints a message above the running display (or plainly when none runs), so narration
    never lands on the bar's line. Silent unless `enabled` (default: stderr is a terminal).
    """

    def __init__(self, *, enabled: bool | None = None, console: Console | None = None) -> None:
        self.enabled = is_terminal(sys.stderr) if enabled is None else enabled
        self.console = console or stderr_console()
        self._display: RichProgress | None = None
        self._task: Any = None
        self._kind = ""

    def __enter__(self) -> Live:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """End the running display, leaving its last frame on screen once."""
        if self._display is not None:
            self._display.stop()
            self._display = None

    def say(self, text: str, *, to_stdout: bool = False) -> None:
        """Print a message without disturbing the display; `to_stdout`: part of the result."""
        if to_stdout:
            if not is_terminal(sys.stdout):
                click.echo(text)
            elif self._display is not None and self.console.is_terminal:
                self._display.console.print(text, markup=False, highlight=False)
            else:  # words wrap at the terminal's width, not mid-word
                stdout_console().print(text, markup=False, highlight=False)
            return
        if self._display is not None:
            self._display.console.print(text, markup=False, highlight=False)
        elif self.enabled:
            self.console.print(text, markup=False, highlight=False)

    def _start(self, *columns: Any, description: str) -> None:
        self.stop()
        self._display = RichProgress(*columns, console=self.console, transient=False)
        self._display.start()
        self._task = self._display.add_task(description, total=None, detail="")

    def progress(self, progress: ProgressLike) -> None:
        """Show one conversion progress report (starts the bar on the first one)."""
        if not self.enabled:
            return
        if self._display is None or self._task is None or self._kind != "bar":
            self._start(
                TextColumn("[bold]{task.description}"),
                BarColumn(bar_width=24),
                MofNCompleteColumn(),
                TaskProgressColumn(),
                TextColumn("{task.fields[detail]}"),
                TimeRemainingColumn(),
                description="converting leads",
            )
            self._kind = "bar"
        done = progress.converted + progress.failed + progress.skipped
        detail = f"{progress.failed} failed" if progress.failed else ""
        self._display.update(  # type: ignore[union-attr]
            self._task, total=max(progress.total, done) or None, completed=done, detail=detail
        )

    __call__ = progress

    def waiter(self, timeout: float, what: str) -> Callable[[float], None]:
        """A `wait(seconds)` that sleeps while a countdown shows `what` and the time left of
        `timeout` seconds in all."""
        started = [0.0]

        def wait(seconds: float) -> None:
            if not self.enabled:
                time.sleep(seconds)
                return
            if self._display is None or self._kind != "wait":
                self._start(
                    SpinnerColumn(),
                    TextColumn("{task.description}"),
                    TextColumn("[bold]{task.fields[detail]}"),
                    description=what,
                )
                self._kind = "wait"
            end = time.monotonic() + seconds
            while True:
                left = max(0.0, timeout - started[0] - (seconds - (end - time.monotonic())))
                self._display.update(  # type: ignore[union-attr]
                    self._task, detail=f"{int(left) // 60}:{int(left) % 60:02d} left"
                )
                now = time.monotonic()
                if now >= end:
                    break
                time.sleep(min(0.2, end - now))
            started[0] += seconds

        return wait


def terminal_width() -> int:
    """The terminal's width in columns (80 when unknown)."""
    return shutil.get_terminal_size((80, 24)).columns


def echo_json(data: Any) -> None:
    """Print `data` as one JSON document on stdout."""
    click.echo(json.dumps(data, ensure_ascii=False, sort_keys=False))


# -- what the commands print ------------------------------------------------------------------


def report_sheet(report: Mapping[str, Any], *, title: str = "Conversion") -> Sheet:
    """A job report's summary (`JobReport.to_dict()`) as name/value rows."""
    rows: list[tuple[str, str]] = []
    if report.get("job_id") is not None:
        rows.append(("job", str(report["job_id"])))
    if report.get("status"):
        rows.append(("status", str(report["status"])))
    rows.extend((name, str(report.get(name, 0))) for name in ("converted", "failed", "skipped"))
    rows.append(("requests", str(report.get("requests", 0))))
    return Sheet(title, (Col("what"), Col("value", right=True)), tuple(rows), header=False)


def summary_line(report: Mapping[str, Any]) -> str:
    """What a job did, in words."""
    job = f"job {report['job_id']}" if report.get("job_id") is not None else "the job"
    parts = [f"{report.get('converted', 0)} converted"]
    if report.get("failed"):
        parts.append(f"{report['failed']} failed")
    if report.get("skipped"):
        parts.append(f"{report['skipped']} skipped")
    return f"{job} {report.get('status', '')}: {', '.join(parts)}"


def reason_lines(report: Mapping[str, Any], *, status: str, ids_shown: int = 8) -> list[str]:
    """Leads of one `status` (failed or skipped) grouped by reason: one line per reason."""
    groups: dict[str, list[int]] = {}
    for lead in report.get("leads", ()):
        if lead.get("status") == status:
            groups.setdefault(lead.get("error") or status, []).append(lead["lead_id"])
    lines = []
    for reason, ids in sorted(groups.items(), key=lambda item: -len(item[1])):
        shown = ", ".join(str(i) for i in ids[:ids_shown])
        more = f" and {len(ids) - ids_shown} more" if len(ids) > ids_shown else ""
        noun = "lead" if len(ids) == 1 else "leads"
        lines.append(f"{status} {noun} {shown}{more}: {reason}")
    return lines


def leads_sheet(report: Mapping[str, Any], *, title: str) -> Sheet:
    """Every lead of a report: outcome, the ids created or reused, and why it failed/skipped."""
    columns = (
        Col("lead", right=True),
        Col("outcome"),
        Col("deal", right=True),
        Col("contact", right=True),
        Col("company", right=True),
        Col("reason", fold=True),
    )
    rows = tuple(
        (
            str(lead["lead_id"]),
            str(lead.get("status") or ""),
            *("" if lead.get(k) is None else str(lead[k]) for k in ("deal_id", "contact_id")),
            "" if lead.get("company_id") is None else str(lead["company_id"]),
            str(lead.get("error") or ""),
        )
        for lead in report.get("leads", ())
    )
    return Sheet(title, columns, rows)


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


_TO_CREATE = {"company": "companies to create", "contact": "contacts to create"}


def totals_sheet(totals: Mapping[str, int], *, title: str) -> Sheet:
    """Named counts as name/count rows."""
    rows = tuple(
        (_TO_CREATE.get(name, "deals to create" if name == "deal" else name), str(count))
        for name, count in totals.items()
    )
    return Sheet(title, (Col("what"), Col("count", right=True)), rows, header=False)


def preview_lines(previews: Sequence[PreviewLike], *, limit: int | None = None) -> list[str]:
    """The previews as text lines (the first `limit`, then a count of the rest)."""
    shown = previews if limit is None else previews[:limit]
    lines = [preview.text() for preview in shown]
    if limit is not None and len(previews) > limit:
        lines.append(f"... and {len(previews) - limit} more lead(s)")
    return lines


def jobs_sheet(jobs: Sequence[Mapping[str, Any]], *, title: str) -> Sheet:
    """The jobs (`JobRow.to_dict()`), newest first, one row each; errors as notes below."""
    columns = (
        Col("id", right=True),
        Col("kind"),
        Col("status"),
        Col("created (UTC)"),
        Col("converted", right=True),
        Col("failed", right=True),
        Col("skipped", right=True),
        Col("requests", right=True, optional=True),
        Col("note", fold=True, optional=True),
    )
    rows = tuple(
        (
            str(job["id"]),
            str(job.get("kind") or ""),
            str(job.get("status") or ""),
            str(job.get("created_at") or "")[:16].replace("T", " "),
            str(job.get("converted") or 0),
            str(job.get("failed") or 0),
            str(job.get("skipped") or 0),
            str(job.get("requests") or 0),
            str(job.get("error") or ""),
        )
        for job in jobs
    )
    return Sheet(title, columns, rows)


# -- the names the demo uses ------------------------------------------------------------------


class ProgressBar(Live):
    """A Live display used as a progress callback (the demo's name for it)."""


def report_table(report: Mapping[str, Any], *, title: str = "Conversion") -> Table:
    """A report's summary as a rich Table."""
    sheet = report_sheet(report, title=title)
    return sheet_table(sheet, range(len(sheet.columns)))


def totals_table(totals: Mapping[str, int], *, title: str) -> Table:
    """Named counts as a rich Table."""
    sheet = totals_sheet(totals, title=title)
    return sheet_table(sheet, range(len(sheet.columns)))
