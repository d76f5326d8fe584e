"""The job wizard, in Veeam's order: name → VMs from the inventory tree → repository and
retention → processing options → schedule with its backup window → summary."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Checkbox, ContentSwitcher, Input, Label, Select, Static, Tree

from appliance import api
from appliance.api import shown
from tui import format as fmt
from tui.base import VmkeepScreen, fetch

STEPS = (("name", "1/6 Name"), ("vms", "2/6 Virtual machines"),
         ("storage", "3/6 Repository and retention"), ("processing", "4/6 Processing"),
         ("schedule", "5/6 Schedule and backup window"), ("summary", "6/6 Summary"))
KINDS = (("none (run by hand)", "none"), ("daily", "daily"), ("every N minutes/hours",
         "periodic"), ("after another job", "after"), ("monthly", "monthly"))


class WizardData(Message):
    def __init__(self, vcenters: list[api.VCenter], repositories: list[api.Repository],
                 inventory: list[api.InventoryVm]) -> None:
        super().__init__()
        self.vcenters = vcenters
        self.repositories = repositories
        self.inventory = inventory


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
    ]

    def __init__(self, job: api.Job | None) -> None:
        super().__init__()
        self.job = job
        self.step = 0
        self.chosen: set[str] = {vm.name for vm in job.spec.vms} if job else set()
        self.inventory: list[api.InventoryVm] = []

    def body(self) -> ComposeResult:
        spec = self.job.spec if self.job else None
        sched = spec.schedule if spec else api.ScheduleSpec()
        yield Label("", id="step-title", classes="panel-title", markup=False)
        with ContentSwitcher(initial="name", id="steps"):
            with Vertical(id="name"):
                yield Label("Job name")
                yield Input(spec.name if spec else "", id="job-name", disabled=bool(spec),
                            placeholder="e.g. nightly")
                yield Label("vCenter")
                yield Select([], id="vcenter", allow_blank=True, prompt="loading…")
            with Vertical(id="vms"):
                yield Label("enter: add or remove the VM under the cursor", id="vms-help")
                yield Tree("inventory", id="tree")
            with Vertical(id="storage"):
                yield Label("Repository")
                yield Select([], id="repository", allow_blank=True, prompt="loading…")
                yield Label("Keep the last N restore points per VM (empty: no limit)")
                yield Input(str(spec.keep_last) if spec and spec.keep_last else "",
                            id="keep-last", type="integer")
                yield Label("Keep restore points for D days (empty: no limit)")
                yield Input(str(spec.keep_days) if spec and spec.keep_days else "",
                            id="keep-days", type="number")
            with VerticalScroll(id="processing"):
                yield Label("Block size (256K, 512K, 1M, 4M)")
                yield Input(spec.block_size if spec else "1M", id="block-size")
                yield Label("Compression (none, zstd-fast, zstd-3, zstd-9)")
                yield Input(spec.compression if spec else "zstd-fast", id="compression")
                yield Checkbox("Enable Changed Block Tracking on the VMs when off",
                               spec.enable_cbt if spec else True, id="cbt")
                yield Checkbox("Quiesce the guest (VMware Tools)",
                               spec.quiesce if spec else False, id="quiesce")
                yield Label("Exclude disks (\"N\" or \"VM:N\", comma separated)")
                yield Input(",".join(spec.exclude_disks) if spec else "", id="exclude")
            with VerticalScroll(id="schedule"):
                yield Select(KINDS, value=sched.kind, id="kind", allow_blank=False)
                yield Label("At (HH:MM) · days (every, weekdays, mon,wed,fri; monthly: 1-31)")
                yield Input(sched.at or "22:00", id="at")
                yield Input(sched.days or "every", id="days")
                yield Label("Every (30m, 2h) · after job")
                yield Input(sched.every or "", id="every", placeholder="e.g. 4h")
                yield Input(sched.after or "", id="after", placeholder="job name")
                yield Label("Backup window (HH:MM-HH:MM, comma separated; empty: always)")
                yield Input(",".join(sched.window), id="window")
            with VerticalScroll(id="summary"):
                yield Static("", id="summary-text", markup=False)
        yield Static("", id="wizard-error", markup=False)

    def on_mount(self) -> None:
        super().on_mount()
        self.show_step()

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
        spec = self.job.spec if self.job else None
        vc = self.query_one("#vcenter", Select)
        vc.set_options([(v.name, v.name) for v in message.vcenters])
        if spec:
            vc.value = spec.vcenter
            vc.disabled = True
        elif message.vcenters:
            vc.value = message.vcenters[0].name
        repo = self.query_one("#repository", Select)
        repo.set_options([(f"{r.name} ({r.location})", r.name) for r in message.repositories])
        if spec:
            repo.value = spec.repository
        elif message.repositories:
            repo.value = message.repositories[0].name
        self.inventory = message.inventory
        self.fill_tree()

    def fill_tree(self) -> None:
        tree: Tree[api.InventoryVm | None] = self.query_one("#tree", Tree)
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

    def vm_label(self, vm: api.InventoryVm) -> Text:
        """A VM's line in the tree: its name from vCenter as it is (no markup) and escaped (a
        newline or a control code shows as \\n, \\x9b)."""
        mark = "[x]" if vm.name in self.chosen else "[ ]"
        return Text(f"{mark} {shown(vm.name)}")

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "vcenter" and self.inventory:
            self.fill_tree()

    def on_tree_node_selected(self, event: Tree.NodeSelected[api.InventoryVm | None]) -> None:
        vm = event.node.data
        if vm is None:
            return
        self.chosen.symmetric_difference_update({vm.name})
        event.node.set_label(self.vm_label(vm))

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
        first = {"name": "#job-name" if not self.job else "#vcenter", "vms": "#tree",
                 "storage": "#repository", "processing": "#block-size", "schedule": "#kind"}
        if key in first:
            self.query_one(first[key]).focus()

    def problem(self) -> str | None:
        key = STEPS[self.step][0]
        if key == "name":
            if not self.query_one("#job-name", Input).value.strip():
                return "give the job a name"
            if self.query_one("#vcenter", Select).value in (Select.BLANK, None):
                return "choose a vCenter (add one on the Repos screen, key 7)"
        if key == "vms" and not self.chosen:
            return "choose at least one VM: move to it and press enter"
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

    def action_cancel(self) -> None:
        self.dismiss()

    def schedule_spec(self) -> api.ScheduleSpec:
        def val(wid: str) -> str:
            return self.query_one(f"#{wid}", Input).value.strip()

        kind = str(self.query_one("#kind", Select).value)
        window = [w.strip() for w in val("window").split(",") if w.strip()]
        if kind == "daily":
            return api.ScheduleSpec(kind="daily", at=val("at"), days=val("days") or "every",
                                    window=window)
        if kind == "monthly":
            day = val("days")
            return api.ScheduleSpec(kind="monthly", at=val("at"), window=window,
                                    day_of_month=int(day) if day.lstrip("-").isdigit() else 1)
        if kind == "periodic":
            return api.ScheduleSpec(kind="periodic", every=val("every"), window=window)
        if kind == "after":
            return api.ScheduleSpec(kind="after", after=val("after"), window=window)
        return api.ScheduleSpec(window=window)

    def fields(self) -> dict[str, object]:
        def val(wid: str) -> str:
            return self.query_one(f"#{wid}", Input).value.strip()

        keep_last, keep_days = _opt(val("keep-last")), _opt(val("keep-days"))
        return {
            "vms": sorted(self.chosen),
            "repository": str(self.query_one("#repository", Select).value),
            "block_size": val("block-size") or "1M",
            "compression": val("compression") or "zstd-fast",
            "enable_cbt": self.query_one("#cbt", Checkbox).value,
            "quiesce": self.query_one("#quiesce", Checkbox).value,
            "keep_last": int(keep_last) if keep_last else None,
            "keep_days": float(keep_days) if keep_days else None,
            "schedule": self.schedule_spec(),
            "exclude_disks": [d.strip() for d in val("exclude").split(",") if d.strip()],
        }

    def summary(self) -> str:
        f = self.fields()
        sched = f["schedule"]
        assert isinstance(sched, api.ScheduleSpec)
        name = self.query_one("#job-name", Input).value.strip()
        keep = []
        if f["keep_last"]:
            keep.append(f"last {f['keep_last']} points")
        if f["keep_days"]:
            keep.append(f"{f['keep_days']} days")
        vms = ", ".join(shown(v) for v in f["vms"])  # type: ignore[attr-defined]
        return "\n".join([
            f"Job          {name}",
            f"vCenter      {self.query_one('#vcenter', Select).value}",
            f"VMs          {vms}",
            f"Repository   {f['repository']}",
            f"Retention    {' and '.join(keep) or 'keep everything'}",
            f"Processing   block {f['block_size']}, {f['compression']}, "
            f"CBT {'on' if f['enable_cbt'] else 'as is'}, "
            f"quiesce {'on' if f['quiesce'] else 'off'}",
            f"Excluded     {', '.join(str(d) for d in f['exclude_disks']) or 'none'}",  # type: ignore[attr-defined]
            f"Schedule     {fmt.schedule(sched)}",
            "",
            "ctrl+s (or ctrl+n) saves the job.",
        ])

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
            self.post_message(WizardError(f"a number is not right: {exc}"))
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
