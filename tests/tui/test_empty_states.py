"""A fresh appliance in the TUI (issue 15): each screen with nothing to show says so and what
to do — with the TUI's keys (the real ones) and the CLI command."""

from __future__ import annotations

from textual.binding import Binding

from appliance.cli.commands import build_parser
from tests.tui.fake import FakeClient
from tests.tui.helpers import screen_text, until
from tests.tui.test_screens import app_for, shows
from tui import empty
from tui.base import TABS
from tui.screens.jobs import JobsScreen
from tui.screens.repositories import RepositoriesScreen


async def test_every_screen_of_a_fresh_appliance_says_what_to_do() -> None:
    app = app_for(FakeClient.empty())
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: shows(app, "no job yet", "press 2, then n",
                                         "no repository yet", "press 7, then a",
                                         "no session running", "nothing needs action"))
        for key, texts in (("2", (empty.NO_JOB,)), ("3", (empty.NO_SESSION,)),
                           ("4", (empty.NO_VCENTER,)), ("5", (empty.NO_POINT,))):
            await pilot.press(key)
            await until(pilot, lambda t=texts: shows(app, *t),  # type: ignore[misc]
                        why=f"screen {key}: {texts}\n{screen_text(app)}")


async def test_the_inventory_of_vcenters_without_vms_names_them() -> None:
    app = app_for(FakeClient.empty(vcenters=True))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        await until(pilot, lambda: shows(app, "No VM in vCenter vc — create VMs there, then "
                                              "press F5 here"))
        assert not shows(app, "No vCenter yet")


def test_the_advice_names_keys_and_commands_that_exist() -> None:
    """The keys named are the screens' own (7 Repos, v Add vCenter; 2 Jobs, n New, r Run)
    and the commands `vmkeep` has."""
    assert ("7", "repositories", "Repos") in TABS and ("2", "jobs", "Jobs") in TABS
    keys = {b.key: b.action for b in RepositoriesScreen.BINDINGS if isinstance(b, Binding)}
    assert keys["v"] == "add_vcenter"
    keys = {b.key: b.action for b in JobsScreen.BINDINGS if isinstance(b, Binding)}
    assert (keys["n"], keys["r"]) == ("new", "run")
    parser = build_parser()
    for argv in (["vcenter", "add", "NAME", "--host", "H", "--user", "U"],
                 ["job", "create", "NAME", "--vm", "VM", "--repo", "REPO"],
                 ["job", "run", "NAME"]):
        parser.parse_args(argv)
