"""The CLI's one progress renderer: on a terminal, bars drawn in place by ``rich.progress``
(bar, bytes done of total, rate, ETA); elsewhere plain lines, with no redraws and no escape
codes. ``Progress`` is the single bar of the offline commands (``image``/``vsphere``);
``Bars`` draws several (a followed session: one per VM and the session's) with log lines
above them. Also ``human_bytes``, the size format every part of the appliance uses."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from rich.progress import Progress as RichProgress
    from rich.progress import TaskID


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def clock(seconds: float) -> str:
    """3725.2 → '1:02:05' (an ETA or an elapsed time on a bar)."""
    s = max(0, round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _rich(stream: TextIO) -> RichProgress:
    """The bars' columns: what, bar, percent, bytes done of total, rate, ETA (or, once done,
    the time it took). A bar's ``rate``/``eta`` fields, when set, are the appliance's own
    figures (its ETA leaves the snapshot out); otherwise rich's, from the updates it saw."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn
    from rich.text import Text

    class BytesColumn(ProgressColumn):
        def render(self, task: Task) -> Text:
            total = "?" if task.total is None else human_bytes(task.total)
            return Text(f"{human_bytes(task.completed)}/{total}")

    class RateColumn(ProgressColumn):
        def render(self, task: Task) -> Text:
            rate = task.fields.get("rate")
            if rate is None:
                rate = task.finished_speed or task.speed
            return Text("" if rate is None else f"{human_bytes(rate)}/s")

    class EtaColumn(ProgressColumn):
        max_refresh = 0.5

        def render(self, task: Task) -> Text:
            end = task.fields.get("end")
            if end is not None:
                return Text(str(end))
            if task.finished:
                return Text(f"in {clock(task.finished_time or task.elapsed or 0)}")
            eta = task.fields.get("eta")
            if eta is None:
                eta = task.time_remaining
            return Text(f"ETA {'-:--:--' if eta is None else clock(eta)}")

    return Progress(TextColumn("{task.description}", markup=False), BarColumn(bar_width=30),
                    TextColumn("{task.percentage:>3.0f}%"), BytesColumn(), RateColumn(),
                    EtaColumn(), console=Console(file=stream, highlight=False),
                    refresh_per_second=10)


class Bars:
    """Named bars and log lines on ``stream`` (stderr by default). On a terminal: rich bars,
    redrawn in place, the lines printed above them. Otherwise the lines as they are and, if
    ``plain_steps``, one plain line for a bar each time it passes a quarter."""

    def __init__(self, stream: TextIO | None = None, *, plain_steps: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.terminal = self.stream.isatty()
        self.plain_steps = plain_steps
        self._rich: RichProgress | None = None
        self._ids: dict[str, TaskID] = {}
        self._quarter: dict[str, int] = {}

    def __enter__(self) -> Bars:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _started(self) -> RichProgress:
        if self._rich is None:
            self._rich = _rich(self.stream)
            self._rich.start()
        return self._rich

    def update(self, key: str, label: str, done: int, total: int, *,
               rate: float | None = None, eta: float | None = None,
               end: str | None = None) -> None:
        """Bar ``key`` shows ``label`` and ``done`` of ``total`` bytes; ``rate`` (bytes/s)
        and ``eta`` (seconds) if the caller knows better than the updates' timing; ``end``
        (a result: "failed") in place of the ETA once its work ended short of the total."""
        if not self.terminal:
            self._plain(key, label, done, total, rate, eta)
            return
        bars = self._started()
        if key not in self._ids:
            self._ids[key] = bars.add_task(label, total=total or None)
        bars.update(self._ids[key], description=label, completed=done,
                    total=total or None, rate=rate, eta=eta, end=end)

    def _plain(self, key: str, label: str, done: int, total: int, rate: float | None,
               eta: float | None) -> None:
        if not self.plain_steps or not total:
            return
        quarter = min(4, 4 * done // total)
        if quarter <= self._quarter.get(key, 0) or quarter == 4:
            return
        self._quarter[key] = quarter
        text = f"{label}: {25 * quarter}% {human_bytes(done)} of {human_bytes(total)}"
        if rate is not None:
            text += f", {human_bytes(rate)}/s"
        if eta is not None:
            text += f", ETA {clock(eta)}"
        self.line(text)

    def line(self, text: str) -> None:
        """A line of its own (a log line, a summary): above the bars on a terminal."""
        if self._rich is not None:
            from rich.text import Text

            self._rich.console.print(Text(text), soft_wrap=True)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        """Draw the bars a last time and leave them on the screen; lines go below them."""
        if self._rich is not None:
            self._rich.stop()
            self._rich = None


class Progress:
    """One bar for an offline command's ``progress(done, total)`` callback; on a terminal only
    (the command prints its own summary line when it ends)."""

    def __init__(self, what: str, stream: TextIO | None = None) -> None:
        self.what = what
        self.bars = Bars(stream)
        self.enabled = self.bars.terminal

    def __call__(self, done: int, total: int) -> None:
        if self.enabled:
            self.bars.update("", self.what, done, total)

    def done(self) -> None:
        self.bars.close()
