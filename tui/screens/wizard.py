"""The job wizard, in Veeam's order: name → VMs from the inventory tree → repository and
retention → processing options → schedule with its backup window → summary."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import (
    Checkbox,
    ContentSwitcher,
    Input,
    Label,
    Select,
    Static,
    TextArea,
    Tree,
)

from appliance import api
from appliance.api import shown
from tui import format as fmt
from tui.base import VmkeepScreen, fetch
from tui.filter import KEY, narrow, remember
from tui.job_form import form_of, job_fields
from tui.screens.dialogs import ConfirmScreen
from tui.ticks import TickBox, VmTree, vms_under

STEPS = (("name", "1/6 Name"), ("vms", "2/6 Virtual machines"),
         ("storage", "3/6 Repository and retention"), ("processing", "4/6 Processing"),
         ("schedule", "5/6 Schedule and backup window"), ("summary", "6/6 Summary"))
KINDS = (("none (run by hand)", "none"), ("daily", "daily"), ("every N minutes/hours",
         "periodic"), ("after another job", "after"), ("monthly", "monthly"))
FAIL_WARN = (("fails the VM", "fail"), ("warns", "warn"))
FALLBACKS = (("warn, crash-consistent snapshot", "warn"), ("fail the VM", "fail"))
TRANSPORTS = (("host (the ESXi host)", "host"), ("vcenter", "vcenter"),
              ("direct (mounted datastores)", "direct"), ("hotadd", "hotadd"))


class WizardData(Message):
    def __init__(self, vcenters: list[api.VCenter], repositories: list[api.Repository],
                 inventory: list[api.InventoryVm]) -> None:
        super().__init__()
        self.vcenters = vcenters
        self.repositories = repositories
        self.inventory = inventory


class Preflight(Message):
    """What ``job check`` says of the stored job's next run, as lines."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


def preflight_text(check: api.JobCheck) -> str:
    """``job check``'s answer in a few lines: the counts, then each VM that is not ok."""
    counts = {s: sum(1 for vm in check.vms if vm.status == s)
              for s in ("ok", "warning", "refused")}
    mark = {"ok": "✓", "warning": "⚠", "refused": "✗"}[check.result]
    lines = [f"Pre-flight   {mark} {len(check.vms)} VM(s): {counts['ok']} will back up, "
             f"{counts['warning']} with disks skipped, {counts['refused']} will fail "
             "(job check, of the job as stored)"]
    lines += [f"  {shown(vm.name)}: {vm.status} — {shown(vm.reason)}" for vm in check.vms
              if vm.status != "ok"]
    return "\n".join(lines)


class JobSaved(Message):
    def __init__(self, job: api.Job) -> None:
        super().__init__()
        self.job = job


class WizardError(Message):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


def _opt(text: str) -> str | None:
    return text.strip() or None


class JobWizard(VmkeepScreen):
    """Create a job, or edit one (its name and vCenter stay)."""

    BINDINGS = [  # noqa: RUF012
        Binding("ctrl+n", "next", "Next", priority=True),
        Binding("ctrl+b", "back", "Back", priority=True),
        Binding("ctrl+s", "finish", "Save job", priority=True),
        Binding("escape", "cancel", "Cancel"),
        KEY,
    ]
    FILTERS = {"tree": "fill_tree"}  # noqa: RUF012

    def __init__(self, job: api.Job | None) -> None:
        super().__init__()
        self.job = job
        self.step = 0
        self.chosen: set[str] = {vm.name for vm in job.spec.vms} if job else set()
        self.inventory: list[api.InventoryVm] = []
        self.opened_with: tuple[object, ...] = ()  # what Esc compares with (``dirty``)

    def body(self) -> ComposeResult:
        spec = self.job.spec if self.job else None
        v = form_of(spec)

        def text(label: str, wid: str, placeholder: str = "") -> ComposeResult:
            yield Label(label)
            yield Input(str(v[wid]), id=wid, placeholder=placeholder)

        yield Label("", id="step-title", classes="panel-title", markup=False)
        with ContentSwitcher(initial="name", id="steps"):
            with Vertical(id="name"):
                yield Label("Job name")
                yield Input(spec.name if spec else "", id="job-name", disabled=bool(spec),
                            placeholder="e.g. nightly")
                yield Label("vCenter")
                yield Select([], id="vcenter", allow_blank=True, prompt="loading…")
            with Vertical(id="vms"):
                yield Label("space/enter: tick the VM (a host: all its VMs) · / filter",
                            id="vms-help")
                yield VmTree("inventory", id="tree")
                yield from text("Containers: every VM in them at each run (inventory paths, "
                                "comma separated)", "containers", "e.g. /DC0/host/DC0_C0")
            with VerticalScroll(id="storage"):
                yield Label("Repository")
                yield Select([], id="repository", allow_blank=True, prompt="loading…")
                yield Label("Keep the last N restore points per VM (empty: no limit)")
                yield Input(str(v["keep-last"]), id="keep-last", type="integer")
                yield Label("Keep restore points for D days (empty: no limit)")
                yield Input(str(v["keep-days"]), id="keep-days", type="number")
                yield from text("RPO: alert when a VM has no good point for H hours (empty: "
                                "never)", "rpo")
                yield from text("Also e-mail (addresses, comma separated)", "notify")
            with VerticalScroll(id="processing"):
                yield from text("Block size (256K, 512K, 1M, 4M)", "block-size")
                yield from text("Compression (none, zstd-fast, zstd-3, zstd-9)", "compression")
                yield TickBox("Consent to turn Changed Block Tracking on where it is off",
                               bool(v["cbt"]), id="cbt")
                yield TickBox("Quiesce the guest (VMware Tools)", bool(v["quiesce"]),
                               id="quiesce")
                yield Label("Without VMware Tools running")
                yield Select(FALLBACKS, value=v["quiesce-fallback"], id="quiesce-fallback",
                             allow_blank=False)
                yield from text("Exclude disks (\"N\" or \"VM:N\", comma separated)",
                                "exclude")
                yield Label("Transport: where disks are read")
                yield Select(TRANSPORTS, value=v["transport"], id="transport",
                             allow_blank=False)
                yield from text("Datastore paths for direct (DS=DIR, comma separated)",
                                "datastore-paths")
                yield from text("VMs at once · retries · wait between retries (seconds)",
                                "parallel-vms")
                yield Input(str(v["retries"]), id="retries")
                yield Input(str(v["retry-wait"]), id="retry-wait")
                yield from text("Active full on (sat, or 1 … 31; empty: never)", "active-full")
                yield Label("Guest processing over SSH (empty host: none)", classes="section")
                yield from text("Guest host[:port] (tools: VMware Tools' address) · user · "
                                "host key (SHA256:…)", "guest-host")
                yield Input(str(v["guest-user"]), id="guest-user", placeholder="user")
                yield Input(str(v["guest-fingerprint"]), id="guest-fingerprint",
                            placeholder="SHA256:…")
                yield Label("Guest password (empty: the stored login stays; a key: "
                            "`vmkeep job edit --guest-key`)")
                yield Input("", id="guest-password", password=True)
                yield Label("Pre-freeze script · post-thaw script")
                yield TextArea(str(v["pre-freeze"]), id="pre-freeze")
                yield TextArea(str(v["post-thaw"]), id="post-thaw")
                yield from text("Script time limit (seconds)", "script-timeout")
                yield Label("A failing pre-freeze script · an unreachable guest")
                yield Select(FAIL_WARN, value=v["on-script-failure"], id="on-script-failure",
                             allow_blank=False)
                yield Select(FAIL_WARN, value=v["guest-unreachable"], id="guest-unreachable",
                             allow_blank=False)
                yield from text("PostgreSQL in the guest (HOST:PORT:USER[:DB]; empty: none)",
                                "postgres")
            with VerticalScroll(id="schedule"):
                yield Select(KINDS, value=v["kind"], id="kind", allow_blank=False)
                yield from text("Time zone of the times (IANA, e.g. Europe/Berlin)", "tz")
                yield from text("At (HH:MM; daily, monthly)", "at")
                yield from text("Daily: days (every, weekdays, mon,wed,fri)", "days",
                                "every")
                yield from text("Monthly: day (1 … 31, last), or which weekday (first … "
                                "fourth, last) and the weekday (mon … sun)", "day")
                yield Input(str(v["nth"]), id="nth", placeholder="e.g. last")
                yield Input(str(v["weekday"]), id="weekday", placeholder="e.g. sun")
                yield Label("Every (30m, 2h) · after job")
                yield Input(str(v["every"]), id="every", placeholder="e.g. 4h")
                yield Input(str(v["after"]), id="after", placeholder="job name")
                yield from text("Backup window (HH:MM-HH:MM, comma separated; empty: always)",
                                "window")
            with VerticalScroll(id="summary"):
                yield Static("", id="summary-text", markup=False)
                yield Static("", id="preflight", markup=False)
        yield Static("", id="wizard-error", markup=False)

    def on_mount(self) -> None:
        super().on_mount()
        self.show_step()
        self.opened_with = self.state()

    def on_screen_resume(self) -> None:
        self.show_connection()
        if not self.inventory:
            self.reload()

    def load_data(self) -> None:
        c = self.client
        vcenters = fetch(self, "vCenters", c.vcenters)
        repos = fetch(self, "repositories", c.repositories)
        inventory = fetch(self, "inventory", c.inventory)
        if vcenters is not None and repos is not None:
            self.post_message(WizardData(vcenters, repos, inventory or []))

    def on_wizard_data(self, message: WizardData) -> None:
        clean = not self.dirty()
        spec = self.job.spec if self.job else None
        vc = self.query_one("#vcenter", Select)
        names = [v.name for v in message.vcenters]
        if spec and spec.vcenter not in names:  # a copy or log job has none; or it is gone
            names.append(spec.vcenter)
        vc.set_options([(n or "none (a copy or log job)", n) for n in names])
        if spec:
            vc.value = spec.vcenter
            vc.disabled = True
        elif message.vcenters:
            vc.value = message.vcenters[0].name
        repo = self.query_one("#repository", Select)
        repos = [(f"{r.name} ({r.location})", r.name) for r in message.repositories]
        if spec and spec.repository not in {r.name for r in message.repositories}:
            repos.append((spec.repository, spec.repository))
        repo.set_options(repos)
        if spec:
            repo.value = spec.repository
        elif message.repositories:
            repo.value = message.repositories[0].name
        self.inventory = message.inventory
        self.fill_tree()
        if clean:  # what was loaded is what the wizard opened with
            self.opened_with = self.state()

    def fill_tree(self) -> None:
        tree: Tree[api.InventoryVm | None] = self.query_one("#tree", Tree)
        mark = remember(tree)
        tree.clear()
        tree.root.expand()
        vcenter = self.query_one("#vcenter", Select).value
        nodes: dict[tuple[str, ...], object] = {}
        for vm in sorted(self.inventory, key=lambda v: (v.datacenter, v.host, v.name)):
            if vcenter not in (Select.BLANK, None) and vm.vcenter != vcenter:
                continue
            dc = nodes.get((vm.datacenter,))
            if dc is None:
                dc = nodes[(vm.datacenter,)] = tree.root.add(Text(f"▣ {shown(vm.datacenter)}"),
                                                             expand=True)
            host = nodes.get((vm.datacenter, vm.host))
            if host is None:
                host = nodes[(vm.datacenter, vm.host)] = dc.add(  # type: ignore[attr-defined]
                    Text(f"▤ {shown(vm.host)}"), expand=True)
            host.add_leaf(self.vm_label(vm), data=vm)  # type: ignore[attr-defined]
        narrow(tree, mark)

    def vm_label(self, vm: api.InventoryVm) -> Text:
        """A VM's line in the tree: its name from vCenter as it is (no markup) and escaped (a
        newline or a control code shows as \\n, \\x9b)."""
        mark = "[x]" if vm.name in self.chosen else "[ ]"
        return Text(f"{mark} {shown(vm.name)}")

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "vcenter" and self.inventory:
            self.fill_tree()

    def on_tree_node_selected(self, event: Tree.NodeSelected[api.InventoryVm | None]) -> None:
        """Tick the VM, or every VM shown under a host (all ticked already: untick them)."""
        nodes = vms_under(event.node)
        names = {n.data.name for n in nodes if n.data is not None}
        if names <= self.chosen:
            self.chosen -= names
        else:
            self.chosen |= names
        for n in nodes:
            if n.data is not None:
                n.set_label(self.vm_label(n.data))

    # -- steps ------------------------------------------------------------------------------

    def show_step(self) -> None:
        key, title = STEPS[self.step]
        what = f"Edit job {self.job.spec.name}" if self.job else "New job"
        self.query_one("#step-title", Label).update(
            f"{what} — {title}   (ctrl+n next · ctrl+b back · esc cancel)")
        self.query_one(ContentSwitcher).current = key
        self.query_one("#wizard-error", Static).update("")
        if key == "summary":
            self.query_one("#summary-text", Static).update(self.summary())
            if self.job is not None:
                self.preflight(self.job.spec.name)
        first = {"name": "#job-name" if not self.job else "#vcenter", "vms": "#tree",
                 "storage": "#repository", "processing": "#block-size", "schedule": "#kind"}
        if key in first:
            self.query_one(first[key]).focus()
        self.refresh_bindings()  # `/` filters the tree of VMs, on its step only

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return action != "filter" or STEPS[self.step][0] == "vms"

    def problem(self) -> str | None:
        key = STEPS[self.step][0]
        if key == "name":
            if not self.query_one("#job-name", Input).value.strip():
                return "give the job a name"
            if self.job is None and self.query_one("#vcenter", Select).value in (
                    Select.BLANK, None):
                return "choose a vCenter (add one on the Repos screen, key 7)"
        spec = self.job.spec if self.job else None
        copies = spec is not None and (bool(spec.copy_of) or spec.logs is not None)
        if key == "vms" and not self.chosen and not copies and not self.query_one(
                "#containers", Input).value.strip():
            return ("choose at least one VM: move to it and press enter (or give a "
                    "container)")
        if key == "storage" and self.query_one("#repository", Select).value in (Select.BLANK,
                                                                                None):
            return "choose a repository (add one on the Repos screen, key 7)"
        return None

    def action_next(self) -> None:
        problem = self.problem()
        if problem:
            self.query_one("#wizard-error", Static).update(f"✗ {problem}")
            return
        if self.step == len(STEPS) - 1:
            self.action_finish()
            return
        self.step += 1
        self.show_step()

    def action_back(self) -> None:
        if self.step:
            self.step -= 1
            self.show_step()

    def state(self) -> tuple[object, ...]:
        """Everything the wizard's inputs hold (what ``dirty`` compares)."""
        return (self.values(), frozenset(self.chosen), self.query_one("#job-name", Input).value,
                *(self.query_one(f"#{s}", Select).value for s in ("vcenter", "repository")))

    def dirty(self) -> bool:
        """Has anything changed since the wizard opened (and loaded what it shows)?"""
        return self.state() != self.opened_with

    def action_cancel(self) -> None:
        """Esc: close; when something was changed, only after "discard changes?" — yes."""
        if not self.dirty():
            self.dismiss()
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.dismiss()

        what = f"job {self.job.spec.name}" if self.job else "the new job"
        self.app.push_screen(ConfirmScreen(
            "Discard changes?", f"What was changed in {what} is lost: nothing is saved. "
            "n (or Esc) goes back to the wizard."), answered)

    def values(self) -> dict[str, str | bool]:
        """Every input's value, by its id (as ``tui.job_form`` names them)."""
        out: dict[str, str | bool] = {}
        for wid in form_of(None):
            widget = self.query_one(f"#{wid}")
            if isinstance(widget, Checkbox):
                out[wid] = widget.value
            elif isinstance(widget, Select):
                out[wid] = str(widget.value)
            elif isinstance(widget, Input):
                out[wid] = widget.value
            elif isinstance(widget, TextArea):
                out[wid] = widget.text
        return out

    def fields(self) -> dict[str, object]:
        spec = self.job.spec if self.job else None
        old = [v.name for v in spec.vms] if spec else []
        vms = [v for v in old if v in self.chosen] + sorted(self.chosen - set(old))
        return {"vms": vms, "repository": str(self.query_one("#repository", Select).value),
                **job_fields(self.values(), spec)}

    def summary(self) -> str:
        try:
            f = self.fields()
        except ValueError as exc:
            return f"✗ {exc}"
        sched = f["schedule"]
        assert isinstance(sched, api.ScheduleSpec)
        name = self.query_one("#job-name", Input).value.strip()
        keep = []
        if f["keep_last"]:
            keep.append(f"last {f['keep_last']} points")
        if f["keep_days"]:
            keep.append(f"{f['keep_days']} days")

        def listed(key: str) -> str:
            items = f[key]
            assert isinstance(items, list)
            return ", ".join(shown(str(i)) for i in items) or "none"

        rpo = f"{f['rpo_hours']} h" if f["rpo_hours"] else "no alert"
        return "\n".join([
            f"Job          {name}",
            f"vCenter      {self.query_one('#vcenter', Select).value}",
            f"VMs          {listed('vms')}",
            f"Containers   {listed('containers')}",
            f"Repository   {f['repository']}",
            f"Retention    {' and '.join(keep) or 'keep everything'} · RPO {rpo}",
            f"Processing   block {f['block_size']}, {f['compression']}, "
            f"CBT {'consent' if f['enable_cbt'] else 'as is'}, "
            f"quiesce {'on' if f['quiesce'] else 'off'} (else {f['quiesce_fallback']}), "
            f"transport {f['transport']}",
            f"Excluded     {listed('exclude_disks')}",
            f"Retries      {f['retries']}, {f['parallel_vms']} VM(s) at once",
            f"Notify       {listed('notify_to')}",
            f"Schedule     {fmt.schedule(sched, zone=True)}",
            "",
            "ctrl+s (or ctrl+n) saves the job.",
        ])

    def preflight(self, name: str) -> None:
        """Ask the appliance what the job's next run would do (``job check``), in a worker."""
        self.query_one("#preflight", Static).update("Pre-flight   checking (job check)…")

        def work() -> None:
            try:
                text = preflight_text(self.client.check_job(name))
            except Exception as exc:  # a copy or log job, vCenter not reachable: said so
                text = f"Pre-flight   not checked: {exc}"
            self.post_message(Preflight(text))

        self.run_worker(work, thread=True, group="preflight", exclusive=True,
                        exit_on_error=False)

    def on_preflight(self, message: Preflight) -> None:
        self.query_one("#preflight", Static).update(message.text)

    def action_finish(self) -> None:
        for step in range(len(STEPS) - 1):
            self.step = step
            problem = self.problem()
            if problem:
                self.show_step()
                self.query_one("#wizard-error", Static).update(f"✗ {problem}")
                return
        self.step = len(STEPS) - 1
        try:
            f = self.fields()
        except ValueError as exc:
            self.post_message(WizardError(str(exc)))
            return
        name = self.query_one("#job-name", Input).value.strip()
        vcenter = str(self.query_one("#vcenter", Select).value)
        job = self.job

        def work() -> None:
            try:
                if job is None:
                    saved = self.client.create_job(api.JobCreate(
                        name=name, vcenter=vcenter, **f))  # type: ignore[arg-type]
                else:
                    saved = self.client.edit_job(name, api.JobEdit(**f))  # type: ignore[arg-type]
            except Exception as exc:  # the appliance's refusal, shown in the wizard
                self.post_message(WizardError(str(exc)))
                return
            self.post_message(JobSaved(saved))

        self.query_one("#wizard-error", Static).update("saving…")
        self.run_worker(work, thread=True, group="save", exit_on_error=False)

    def on_wizard_error(self, message: WizardError) -> None:
        self.query_one("#wizard-error", Static).update(f"✗ {message.text}")

    def on_job_saved(self, message: JobSaved) -> None:
        self.notify(f"job {message.job.spec.name} saved", title="✓ done")
        self.dismiss()
