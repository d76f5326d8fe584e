"""A DataTable filled with the columns that fit its width (``tui.columns`` chooses them): the
one place a screen's table is cleared and refilled so, its cursor kept on its row."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import DataTable

from tui import columns


def fill(table: DataTable[str | Text], cols: Sequence[columns.Column],
         rows: Sequence[Sequence[str | Text]], keys: Sequence[str], width: int) -> list[int]:
    """Show ``rows`` (one per key) in the columns of ``cols`` that fit ``width`` (0: all);
    the columns are replaced only when the choice changed. Returns the shown indexes."""
    available = width - 1 if width else 0  # a scrollbar may take 1
    shown = (columns.fit(columns.widths(cols, rows), [c.rank for c in cols], available)
             if available > 0 else list(range(len(cols))))
    cursor = table.cursor_row
    if [str(c.label) for c in table.columns.values()] != [cols[i].label for i in shown]:
        table.clear(columns=True)
        table.add_columns(*(cols[i].label for i in shown))
    else:
        table.clear()
    for key, row in zip(keys, rows, strict=True):
        table.add_row(*(row[i] for i in shown), key=key)
    if rows:
        table.move_cursor(row=min(cursor, len(rows) - 1))
    return shown
