"""One table for every bench's rows (dicts with the same or overlapping keys)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.console import Console
from rich.table import Table


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
