"""One table for every bench's rows, and the shape of a summary row.

`python -m bench` prints rows made by `figure`: what was measured, the figure, what it is held
against (the platform floor, a goal or a peer), the ratio, the verdict and the command that
reproduces it. A bench run alone may print wider tables of its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.console import Console
from rich.table import Table

COLUMNS = ("what", "measured", "floor / peer", "ratio", "result", "reproduce")


def figure(
    *, what: str, measured: str, versus: str, ratio: str, result: str, reproduce: str
) -> dict[str, str]:
    """One summary row: a measured figure held against a floor, goal or peer."""
    return dict(zip(COLUMNS, (what, measured, versus, ratio, result, reproduce), strict=True))


def columns_of(rows: Sequence[Mapping[str, str]]) -> list[str]:
    """Every key of every row, in first-seen order."""
    return list(dict.fromkeys(key for row in rows for key in row))


def print_table(
    rows: Sequence[Mapping[str, str]], *, title: str, console: Console | None = None
) -> None:
    """Print the rows as one table (missing cells blank)."""
    table = Table(title=title, title_justify="left")
    columns = columns_of(rows)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(str(row.get(column, "")) for column in columns))
    (console or Console(highlight=False, width=200)).print(table)
