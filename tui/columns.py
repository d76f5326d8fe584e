"""Tables that fit their width: which columns to show, the least important left out first.

A table's columns each have a rank (0 = must stay); when the widest cell of every column does
not fit the table's width, columns are dropped from the highest rank down (the rightmost of
equal rank first) until the rest fits. Pure: ``fit`` takes widths and gives indexes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.cells import cell_len
from rich.text import Text

PAD = 2  # a DataTable cell's padding, one each side


@dataclass(frozen=True, slots=True)
class Column:
    label: str
    rank: int  # 0: always shown; higher: left out sooner when the table is narrow


def fit(widths: Sequence[int], ranks: Sequence[int], available: int) -> list[int]:
    """The indexes of the columns to show, in their order: all whose widths (padding
    included) fit ``available``, dropping the highest rank first."""
    shown = list(range(len(widths)))
    while sum(widths[i] for i in shown) > available:
        droppable = [i for i in shown if ranks[i] > 0]
        if not droppable:
            break
        worst = max(droppable, key=lambda i: (ranks[i], i))
        shown.remove(worst)
    return shown


def _plain(cell: str | Text) -> str:
    return cell.plain if isinstance(cell, Text) else cell


def widths(columns: Sequence[Column], rows: Sequence[Sequence[str | Text]]) -> list[int]:
    """Each column's width: its widest cell or label, plus the cell padding."""
    out = []
    for i, c in enumerate(columns):
        cells = [cell_len(_plain(r[i])) for r in rows]
        out.append(max([cell_len(c.label), *cells]) + PAD)
    return out
