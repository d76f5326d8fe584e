"""Plain-text tables for the CLI: columns padded to their widest cell."""

from __future__ import annotations

from collections.abc import Sequence

from appliance.inputs import shown


def render(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    # Cells come from vCenter, repositories and logs: a newline or an escape code in a VM's
    # name is shown escaped (\n, \x1b), never split a row or reach the terminal.
    cells = [[shown(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
              for r in cells]
    return "\n".join(lines)
