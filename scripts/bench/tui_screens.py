"""How fast each TUI screen opens with 200 VMs and 2 000 restore points (issue 5: < 300 ms).

The data come from the tests' fake client (the same shapes as a real appliance's replies,
recorded in tests/tui/recorded.json), so the numbers are the TUI's own: from the key press
to the screen showing its data, headless at 80×24. Run from the repository root:

    .venv/bin/python scripts/bench/tui_screens.py [--vms 200] [--points 2000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from textual import events
from textual.widgets import DataTable, OptionList, Tree

from tests.tui.fake import NOW, FakeClient
from tui.app import VmkeepApp, create_app
from tui.base import VmkeepScreen
from tui.screens.catalog import CatalogScreen
from tui.screens.dashboard import DashboardScreen
from tui.screens.inventory import InventoryScreen
from tui.screens.jobs import JobsScreen
from tui.screens.points import PointsScreen
from tui.screens.repositories import RepositoriesScreen
from tui.screens.sessions import SessionScreen, SessionsScreen
from tui.screens.vm_history import VmHistoryScreen
from tui.screens.wizard import JobWizard

BUDGET_MS = 300.0


def _rows(app: VmkeepApp, selector: str, n: int) -> Callable[[], bool]:
    def ok() -> bool:
        tables = app.screen.query(selector)
        return bool(tables) and isinstance(t := tables.first(), DataTable) and t.row_count >= n
    return ok


def _leaves(app: VmkeepApp, n: int) -> Callable[[], bool]:
    def ok() -> bool:
        trees = app.screen.query(Tree)
        if not trees:
            return False
        count, todo = 0, [trees.first().root]
        while todo:
            node = todo.pop()
            count += node.data is not None
            todo.extend(node.children)
        return count >= n
    return ok


def _options(app: VmkeepApp, n: int) -> Callable[[], bool]:
    def ok() -> bool:
        lists = app.screen.query("#vms")
        return bool(lists) and isinstance(o := lists.first(), OptionList) and o.option_count >= n
    return ok


async def measure(vms: int, points: int) -> dict[str, float]:
    fake = FakeClient.big(vms, points)
    jobs = len(fake.jobs())
    app = create_app(fake, clock=lambda: NOW)
    out: dict[str, float] = {}

    async def timed(name: str, keys: list[str], screen: type[VmkeepScreen],
                    ready: Callable[[], bool]) -> None:
        start = time.perf_counter()
        for key in keys:  # as a terminal sends it (pilot.press would wait for idleness)
            event = events.Key(key, key if len(key) == 1 else "\r" if key == "enter" else None)
            event.set_sender(app)
            assert app._driver is not None
            app._driver.send_message(event)
            await asyncio.sleep(0)
        deadline = start + 30
        while not (type(app.screen) is screen and ready()):
            if time.perf_counter() > deadline:
                raise SystemExit(f"{name}: not open after 30 s: {app.screen} {app.focused}")
            await asyncio.sleep(0.001)
        out[name] = (time.perf_counter() - start) * 1000

    start = time.perf_counter()
    async with app.run_test(size=(80, 24)) as pilot:
        while not _rows(app, "#jobs", jobs)():
            await asyncio.sleep(0.001)
        out["dashboard (start)"] = (time.perf_counter() - start) * 1000
        await timed("jobs", ["2"], JobsScreen, _rows(app, "#jobs", jobs))
        await timed("sessions", ["3"], SessionsScreen, _rows(app, "#sessions", 2))
        await timed("inventory", ["4"], InventoryScreen, _leaves(app, vms))
        await timed("points", ["5"], PointsScreen, lambda: _options(app, vms)() and _rows(
            app, "#points", points // vms)())
        await timed("VM view", ["h"], VmHistoryScreen, _rows(app, "#vm-points", points // vms))
        await pilot.press("escape")
        await pilot.pause()
        await timed("catalog", ["6"], CatalogScreen,
                    lambda: getattr(app.focused, "id", "") == "queries")
        await timed("repositories", ["7"], RepositoriesScreen, _rows(app, "#repos", 1))
        await timed("dashboard (again)", ["1"], DashboardScreen, _rows(app, "#jobs", jobs))
        await timed("session view", ["3", "enter"], SessionScreen,
                    lambda: bool(app.screen.query("#log")))
        await pilot.press("escape")
        await pilot.pause()
        await timed("job wizard (tree)", ["2", "n"], JobWizard, _leaves(app, 10))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=200)
    parser.add_argument("--points", type=int, default=2000)
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    numbers = asyncio.run(measure(args.vms, args.points))
    if args.json:
        print(json.dumps(numbers, indent=1))
    else:
        print(f"TUI screens with {args.vms} VMs and {args.points} points "
              f"(budget {BUDGET_MS:.0f} ms)")
        for name, ms in numbers.items():
            print(f"  {name:<20} {ms:7.1f} ms  {'ok' if ms < BUDGET_MS else 'SLOW'}")
    return 0 if all(ms < BUDGET_MS for ms in numbers.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
