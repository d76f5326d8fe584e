"""Restore points: the VMs, and per VM a timeline of points; restore the whole VM (a new VM
where the original was unless changed, or over the original after typing its name; each
after its plan is shown), a disk to a file, verify now. A restore runs as a session of the
appliance: once started, its session view opens (progress per disk, log, result)."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import DataTable, Label, OptionList, Static
from textual.widgets.option_list import Option

from appliance import api
from appliance.api import shown
from appliance.errors import VmkeepError
from tui import columns, empty
from tui import format as fmt
from tui.base import VmkeepScreen, fetch, report
from tui.filter import KEY, key_at, narrow, remember
from tui.fitted import fill
from tui.screens.dialogs import ConfirmScreen, Field, FormScreen, TypeToConfirmScreen
from tui.screens.vm_history import VmHistoryScreen


def guest_note(p: api.Point) -> str:
    """What guest processing did for a point, briefly: scripts ✓/✗, quiesced, PostgreSQL."""
    g = p.guest_processing
    if not g:
        return ""
    notes = []
    if g.scripts:
        ok = all(s.exit_code == 0 and not s.timed_out for s in g.scripts)
        notes.append("scripts ✓" if ok else "scripts ✗")
    if g.quiesced:
        notes.append("quiesced")
    if g.postgres is not None:
        notes.append("pg ✓" if g.postgres.backup_label else "pg ✗")
    return f" ({', '.join(notes)})" if notes else ""

#: The timeline's columns; a narrow terminal leaves out the highest rank first (time, kind
#: and verified state stay).
COLUMNS = (columns.Column("Created (UTC)", 0), columns.Column("Kind", 0),
           columns.Column("Verified", 0), columns.Column("Job", 2),
           columns.Column("Repository", 3), columns.Column("Stored", 4),
           columns.Column("Read", 5), columns.Column("Id", 6))


class PointsLoaded(Message):
    def __init__(self, points: list[api.Point]) -> None:
        super().__init__()
        self.points = points


class RestoreDefaults(Message):
    """Where a new VM restored from ``point`` would go by default (the original VM's
    placement, as the appliance resolved it)."""

    def __init__(self, point: api.Point, plan: api.VmRestorePlan) -> None:
        super().__init__()
        self.point = point
        self.plan = plan


class RestorePlanned(Message):
    """The plan of ``request``, to show before it runs."""

    def __init__(self, point: api.Point, request: api.VmRestore,
                 plan: api.VmRestorePlan) -> None:
        super().__init__()
        self.point = point
        self.request = request
        self.plan = plan


class Verified(Message):
    def __init__(self, point: str, answer: api.VerifyAnswer) -> None:
        super().__init__()
        self.point = point
        self.answer = answer


class PointsScreen(VmkeepScreen):
    """Every VM with restore points; the selected VM's points newest first."""

    MODE = "points"
    BINDINGS = [  # noqa: RUF012
        Binding("v", "restore_vm", "Restore VM"),
        Binding("d", "restore_disk", "Restore disk"),
        Binding("c", "verify", "Verify now"),
        Binding("h", "history", "History"),
        Binding("f5", "refresh", "Refresh"),
        KEY,
    ]
    FILTERS = {"vms": "show_vms", "points": "show_points"}  # noqa: RUF012

    def __init__(self) -> None:
        super().__init__()
        self.by_vm: dict[str, list[api.Point]] = {}
        self.vm: str | None = None

    def body(self) -> ComposeResult:
        with Horizontal():
            with Vertical(id="vm-pane"):
                yield Label("VMs", classes="panel-title")
                yield OptionList(id="vms")
            with Vertical(id="point-pane"):
                yield Label("Restore points", id="points-title", classes="panel-title")
                yield DataTable(id="points", cursor_type="row", zebra_stripes=True)
                yield Static("", id="verify-result", markup=False)

    def on_resize(self) -> None:
        if self.vm:
            self.show_vm(self.vm)

    def load_data(self) -> None:
        points = fetch(self, "points", self.client.points)
        if points is not None:
            self.post_message(PointsLoaded(points))

    def on_points_loaded(self, message: PointsLoaded) -> None:
        by_vm: dict[str, list[api.Point]] = {}
        for p in message.points:
            by_vm.setdefault(p.vm, []).append(p)
        self.by_vm = {vm: ps[::-1] for vm, ps in sorted(by_vm.items())}
        self.show_vms()

    def show_vms(self) -> None:
        vms = self.query_one("#vms", OptionList)
        mark = remember(vms)
        vms.clear_options()
        vms.add_options([Option(Text(f"{shown(vm)} ({len(ps)})"), id=vm)
                         for vm, ps in self.by_vm.items()])
        narrow(vms, mark)
        if vms.highlighted is not None:
            self.show_vm(str(vms.get_option_at_index(vms.highlighted).id))
        elif not self.by_vm:
            empty.title(self.query_one("#points-title", Label), "", empty.NO_POINT)

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self.show_vm(str(event.option.id))

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.query_one("#points", DataTable).focus()

    def show_vm(self, vm: str) -> None:
        self.vm = vm
        points = self.by_vm.get(vm, [])
        empty.title(self.query_one("#points-title", Label), f"Restore points of {shown(vm)}",
                    None)
        table = self.query_one("#points", DataTable)
        mark = remember(table)
        rows = []
        for p in points:
            ok = self.vmkeep.verified.get(p.id)
            rows.append(fmt.plain(fmt.when(p.created, zone=False), p.kind + guest_note(p),
                                  "—" if ok is None else ("✓ ok" if ok[0] else "✗ damaged"),
                                  p.job or "—", p.repository, fmt.size(p.bytes_stored),
                                  fmt.size(p.bytes_read), p.id))
        fill(table, COLUMNS, rows, [p.id for p in points], table.size.width)
        narrow(table, mark)

    def show_points(self) -> None:
        if self.vm:
            self.show_vm(self.vm)

    def selected(self) -> api.Point | None:
        key = key_at(self.query_one("#points", DataTable))
        point = next((p for p in self.by_vm.get(self.vm or "", []) if p.id == key), None)
        if point is None:
            self.notify("no restore point selected")
        return point

    def action_refresh(self) -> None:
        self.reload()

    def action_history(self) -> None:
        """The selected VM's history across jobs and repositories (its own screen)."""
        if self.vm is not None:
            self.app.push_screen(VmHistoryScreen(self.vm))

    def action_verify(self) -> None:
        p = self.selected()
        if p is None:
            return

        def work() -> None:
            answer = fetch(self, "verify", lambda: self.client.verify(p.repository, p.id))
            if answer is not None:
                self.post_message(Verified(p.id, answer))

        self.notify(f"verifying {p.id}…")
        self.run_worker(work, thread=True, group="act", exit_on_error=False)

    def on_verified(self, message: Verified) -> None:
        a = message.answer
        self.vmkeep.verified[message.point] = (a.ok, a.summary)
        lines = [("✓ verified: " if a.ok else "✗ damaged: ") + a.summary]
        for p in a.points[:3]:
            jobs = f" (job {', '.join(p.jobs)})" if p.jobs else ""
            lines.append(f"VM {p.vm}{jobs}, point {p.point}: {'; '.join(p.causes[:2])}")
        if len(a.points) > 3:
            lines.append(f"and {len(a.points) - 3} more points: `vmkeep verify` lists them")
        if a.next_step:
            lines.append(f"Next: {a.next_step}")
        result = self.query_one("#verify-result", Static)
        result.update("\n".join(shown(line) for line in lines))
        result.set_class(not a.ok, "damaged")
        result.add_class("shown")
        self.notify(shown(lines[0]), title="✓ verified" if a.ok else "✗ damaged",
                    severity="information" if a.ok else "error", markup=False)
        if self.vm:
            self.show_vm(self.vm)

    def action_restore_disk(self) -> None:
        p = self.selected()
        if p is None:
            return
        disks = ", ".join(f"{d.index} {d.label} {fmt.size(d.size)}" for d in p.disks)

        def submitted(values: dict[str, str] | None) -> None:
            if not values:
                return
            try:
                disk = int(values["disk"] or "0")
            except ValueError:
                self.notify("the disk is a number", severity="error")
                return
            to = values["to"]
            self.restore("restore disk", lambda: self.client.restore_disk(p.id, disk, to))

        self.app.push_screen(FormScreen(
            f"Restore a disk of {p.vm} ({fmt.when(p.created)}) to a file",
            [Field("disk", "Disk number", "0"),
             Field("to", "To file (absolute path on the appliance's machine, new)", "",
                   placeholder="/restore/disk0.img")],
            note=f"Disks: {disks or 'none'}"), submitted)

    def restore(self, what: str, start: Callable[[], api.SessionSummary]) -> None:
        """Start a restore (a worker thread); its session view opens once it runs (a
        refusal is reported as any other)."""
        def work() -> None:
            s = fetch(self, what, start)
            if s is not None:
                self.app.call_from_thread(self.vmkeep.action_open_session, s.id)

        self.run_worker(work, thread=True, group="act", exit_on_error=False)

    def action_restore_vm(self) -> None:
        p = self.selected()
        if p is None:
            return
        request = api.VmRestore(point=p.id, name=f"{p.vm}-restored")
        self.run_worker(lambda: self._plan(p, request, defaults=True), thread=True,
                        group="act", exit_on_error=False)

    def _plan(self, p: api.Point, request: api.VmRestore, *, defaults: bool = False) -> None:
        """Ask the appliance for the plan of ``request`` (a worker thread)."""
        try:
            plan = self.client.plan_restore_vm(request)
        except VmkeepError as exc:
            report(self, "restore VM", exc)
            return
        self.post_message(RestoreDefaults(p, plan) if defaults
                          else RestorePlanned(p, request, plan))

    def on_restore_defaults(self, message: RestoreDefaults) -> None:
        p, where = message.point, message.plan.placement
        defaults = {"host": where.host if where else "",
                    "resource_pool": where.resource_pool if where else "",
                    "datastore": where.datastore if where else "",
                    "folder": where.folder if where else ""}
        original = ", ".join(where.as_original) if where and where.as_original else "none"
        networks = sorted((where.networks if where else {}).items())

        def submitted(values: dict[str, str] | None) -> None:
            if values is None:
                return
            def changed(key: str) -> str | None:
                """A placement name the administrator changed (None: the default)."""
                value = values.get(key, "") if values["name"] else ""
                return value if value and value != defaults[key] else None

            mapped = {source: values[f"net{i}"] for i, (source, on) in enumerate(networks)
                      if values["name"] and values[f"net{i}"] and values[f"net{i}"] != on}
            request = api.VmRestore(point=p.id, name=values["name"] or None,
                                    host=changed("host"),
                                    resource_pool=changed("resource_pool"),
                                    datastore=changed("datastore"), folder=changed("folder"),
                                    networks=mapped)
            self.run_worker(lambda: self._plan(p, request), thread=True, group="act",
                            exit_on_error=False)

        self.app.push_screen(FormScreen(
            f"Restore VM {p.vm} from {fmt.when(p.created)}",
            [Field("name", "New VM name (empty: over the original VM)", f"{p.vm}-restored"),
             Field("host", "Host", defaults["host"]),
             Field("resource_pool", "Resource pool", defaults["resource_pool"]),
             Field("datastore", "Datastore", defaults["datastore"]),
             Field("folder", "VM folder", defaults["folder"]),
             *(Field(f"net{i}", f"Network for the NICs on {source!r}", on)
               for i, (source, on) in enumerate(networks))],
            note=f"A new VM goes where the original was (the original VM's: {original}), "
                 "its NICs on their own networks; change any of them. ctrl+s shows the plan "
                 "before anything is done."),
            submitted)

    def on_restore_planned(self, message: RestorePlanned) -> None:
        p, request, plan = message.point, message.request, message.plan
        text = "\n".join(plan.lines)
        if plan.mode == "new":
            def answered(yes: bool | None) -> None:
                if yes:
                    self.restore("restore VM", lambda: self.client.restore_vm(request))

            self.app.push_screen(ConfirmScreen(
                f"Restore {p.vm} as a new VM {plan.target}?",
                f"{text}\n\n{p.vm} stays as it is."), answered)
            return

        def typed(yes: bool | None) -> None:
            if yes:
                self.restore("restore VM", lambda: self.client.restore_vm(
                    request.model_copy(update={"confirm": True})))

        self.app.push_screen(TypeToConfirmScreen(
            f"Overwrite VM {p.vm}?",
            f"{text}\n\nThe VM is powered off and its disks are overwritten with the point "
            f"of {fmt.when(p.created)}.", plan.target), typed)
