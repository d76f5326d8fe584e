"""`/` filters a list or a tree: a line above the footer where what is typed narrows the list
to the rows whose visible text holds it (any case).

A screen names its filterable lists in ``VmkeepScreen.FILTERS`` (the widget's id → the method
that fills it again from what the screen holds) and lets its fill keep the filter:
``mark = remember(widget)`` before it empties the list, ``narrow(widget, mark)`` after it has
put every row back. ``narrow`` takes out the rows that do not match, puts the cursor back on
the row it was on (by the row's key; else at the same place) and says on the filter's line
how many rows match — or "no match for 'xyz'". A periodic refresh is one more fill, so the
filter and the cursor stay.

Keys in the filter's line: Enter keeps the filter and gives the list the focus back; Esc
empties it, hides the line and gives the list the focus back. Letters and digits type into
it (a text field has focus: no screen key or digit acts)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.coordinate import Coordinate
from textual.widget import Widget
from textual.widgets import DataTable, Input, Label, OptionList, Tree
from textual.widgets.option_list import Option, OptionDoesNotExist
from textual.widgets.tree import TreeNode

#: The key of every screen that can filter (listed after the screen's own keys).
KEY = Binding("slash", "filter", "Filter")


@dataclass(frozen=True, slots=True)
class Mark:
    """Where a list's cursor was before the list is filled again: the row's key (a tree: the
    keys of the node's path) and its index (a tree: its line)."""

    key: tuple[str, ...] | None
    index: int


def plain(x: object) -> str:
    """The characters of a cell, an option or a label (Rich ``Text``, Textual ``Content``)."""
    text = getattr(x, "plain", None)
    return text if isinstance(text, str) else str(x)


def matches(text: str, needle: str) -> bool:
    return needle.casefold() in text.casefold()


def _node_key(node: TreeNode[object]) -> str:
    """A tree node's lasting name: its data's ``name`` (a VM's label changes with its state),
    else its label."""
    name = getattr(node.data, "name", None)
    return name if isinstance(name, str) else plain(node.label)


def remember(widget: Widget) -> Mark:
    """The row under ``widget``'s cursor, before the widget is emptied and filled again."""
    if isinstance(widget, DataTable):
        if not widget.row_count:
            return Mark(None, 0)
        row = widget.cursor_row
        key = widget.coordinate_to_cell_key(Coordinate(row, 0)).row_key.value
        return Mark(None if key is None else (key,), row)
    if isinstance(widget, OptionList):
        h = widget.highlighted
        if h is None or not widget.option_count:
            return Mark(None, 0)
        oid = widget.get_option_at_index(h).id
        return Mark(None if oid is None else (oid,), h)
    if isinstance(widget, Tree):
        node = widget.cursor_node
        path: list[str] = []
        while node is not None and not node.is_root:
            path.insert(0, _node_key(node))
            node = node.parent
        return Mark(tuple(path) if path else None, widget.cursor_line)
    raise TypeError(f"{type(widget).__name__} cannot be filtered")


def key_at(table: DataTable[object]) -> str | None:
    """The key of the row under a table's cursor (what a filtered table's index is not)."""
    mark = remember(table)
    return mark.key[0] if mark.key else None


def narrow(widget: Widget, mark: Mark) -> None:
    """Take out of ``widget`` (just filled with every row) the rows the screen's filter does
    not match; the cursor back where ``mark`` says; the count on the filter's line."""
    bar = next(iter(widget.screen.query(FilterBar)), None) if widget.is_attached else None
    needle = bar.needle if bar is not None and bar.target == widget.id else ""
    if isinstance(widget, DataTable):
        shown, total = _narrow_table(widget, needle, mark)
    elif isinstance(widget, OptionList):
        shown, total = _narrow_options(widget, needle, mark)
    elif isinstance(widget, Tree):
        shown, total = _narrow_tree(widget, needle, mark)
    else:
        raise TypeError(f"{type(widget).__name__} cannot be filtered")
    if bar is not None and bar.target == widget.id:
        bar.counted(shown, total)


def _narrow_table(table: DataTable[object], needle: str, mark: Mark) -> tuple[int, int]:
    rows = [(r.key.value, table.get_row(r.key)) for r in table.ordered_rows]
    keep = [(k, cells) for k, cells in rows
            if not needle or matches(" ".join(plain(c) for c in cells), needle)]
    if len(keep) < len(rows):
        table.clear()
        for key, cells in keep:
            table.add_row(*cells, key=key)
    if table.row_count:
        key = mark.key[0] if mark.key else None
        row = (table.get_row_index(key) if key is not None and key in table.rows
               else min(mark.index, table.row_count - 1))
        table.move_cursor(row=row)
    return len(keep), len(rows)


def _narrow_options(ol: OptionList, needle: str, mark: Mark) -> tuple[int, int]:
    options = [ol.get_option_at_index(i) for i in range(ol.option_count)]
    keep = [o for o in options if not needle or matches(plain(o.prompt), needle)]
    if len(keep) < len(options):
        ol.clear_options()
        ol.add_options([Option(o.prompt, id=o.id, disabled=o.disabled) for o in keep])
    if ol.option_count:
        try:
            index = ol.get_option_index(mark.key[0]) if mark.key else None
        except OptionDoesNotExist:
            index = None
        ol.highlighted = index if index is not None else min(mark.index, ol.option_count - 1)
    return len(keep), len(options)


def _narrow_tree(tree: Tree[object], needle: str, mark: Mark) -> tuple[int, int]:
    """Leaves (VMs) whose label or an ancestor's label holds ``needle`` stay, with the nodes
    above them; a node whose own label holds it keeps everything below it."""

    def prune(node: TreeNode[object], hit: bool) -> tuple[int, int]:
        shown = total = 0
        for child in list(node.children):
            child_hit = hit or matches(plain(child.label), needle)
            if child.children:
                s, t = prune(child, child_hit)
                if not s and not child_hit:
                    child.remove()
            else:
                s, t = int(child_hit), 1
                if not child_hit:
                    child.remove()
            shown, total = shown + s, total + t
        return shown, total

    shown, total = prune(tree.root, not needle)
    if tree.last_line >= 0:  # (asking builds the tree's lines: a node knows its line)
        node: TreeNode[object] | None = tree.root
        for key in mark.key or ():
            node = next((c for c in node.children if _node_key(c) == key), None) if node \
                else None
        if mark.key and node is not None:
            tree.move_cursor(node)
        elif mark.index >= 0:
            tree.move_cursor_to_line(min(mark.index, tree.last_line))
    return shown, total


class FilterInput(Input):
    """The filter's text field: Esc empties it and hides its line."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "clear_filter", "Clear the filter"),
    ]

    def action_clear_filter(self) -> None:
        bar = self.parent
        if isinstance(bar, FilterBar):
            bar.clear()


class FilterBar(Horizontal):
    """The filter's line above the footer: hidden until `/`; while a filter holds, it shows
    the filter and how many rows match. One filter per screen: `/` on another list of the
    screen moves the filter there (the first list shows every row again)."""

    def __init__(self, fills: Mapping[str, Callable[[], None]]) -> None:
        super().__init__(id="filter-bar")
        self.fills = dict(fills)
        self.target: str | None = None  # the id of the list the filter narrows
        self.needle = ""

    def compose(self) -> ComposeResult:
        yield Label("/", id="filter-sign")
        yield FilterInput(placeholder="filter: type to narrow · enter keeps · esc clears",
                          id="filter")
        yield Label("", id="filter-count", markup=False)

    def open(self, target: str | None) -> None:
        """Show the line for the list ``target`` (None: the screen's first list)."""
        target = target if target in self.fills else next(iter(self.fills))
        if self.target not in (None, target) and self.needle:
            old, self.needle = self.target, ""
            self.fills[str(old)]()
        self.target = target
        self.display = True
        field = self.query_one(FilterInput)
        field.value = self.needle
        field.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        if event.value != self.needle and self.target is not None:
            self.needle = event.value
            self.fills[self.target]()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if not self.needle:
            self.display = False
        self._back()

    def clear(self) -> None:
        """Every row again; the line hidden; the list has the focus."""
        self.query_one(FilterInput).value = ""
        self.display = False
        if self.needle and self.target is not None:
            self.needle = ""
            self.fills[self.target]()
        self._back()

    def _back(self) -> None:
        if self.target is not None:
            self.screen.query_one(f"#{self.target}").focus()

    def counted(self, shown: int, total: int) -> None:
        """Say how many rows the filter lets through."""
        label = self.query_one("#filter-count", Label)
        if not self.needle:
            label.update("")
        elif shown:
            label.update(f"{shown} of {total}")
        else:
            label.update(f"no match for '{self.needle}'")
