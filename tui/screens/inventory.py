"""The vCenter inventory tree: vCenter → datacenter → host → VM, with each VM's power state,
CBT, snapshots, consolidation, protecting jobs and newest restore point."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import Label, Static, Tree

from appliance import api
from appliance.api import shown
from tui import empty
from tui.base import VmkeepScreen, fetch
from tui.filter import KEY, narrow, remember
from tui.screens.vm_history import VmHistoryScreen


class InventoryLoaded(Message):
    def __init__(self, vms: list[api.InventoryVm], vcenters: list[str] | None = None) -> None:
        super().__init__()
        self.vms = vms
        self.vcenters = vcenters or []  # looked up only when there is no VM


def vm_label(vm: api.InventoryVm) -> str:
    power = {"poweredOn": "on", "poweredOff": "off", "suspended": "susp"}.get(
        vm.power_state, vm.power_state)
    parts = [vm.name, power, "CBT on" if vm.cbt_enabled else "CBT off"]
    if vm.snapshots:
        parts.append(f"{len(vm.snapshots)} snap")
    if vm.consolidation_needed:
        parts.append("⚠ consolidate")
    parts.append("jobs: " + ",".join(vm.jobs) if vm.jobs else "unprotected")
    return " · ".join(parts)


def vm_detail(vm: api.InventoryVm) -> str:
    disks = ", ".join(f"{d.index}: {d.capacity_bytes >> 20} MiB" for d in vm.disks)
    # Names from vCenter: a newline or an escape code in one is shown escaped (\n, \x1b).
    return (f"{shown(vm.name)} ({shown(vm.instance_uuid)}) on {shown(vm.host)}\n"
            f"power {vm.power_state} · CBT {'on' if vm.cbt_enabled else 'off'} · "
            f"snapshots: {shown(', '.join(vm.snapshots)) or 'none'}"
            f"{' · ⚠ needs consolidation' if vm.consolidation_needed else ''}\n"
            f"disks {disks or 'none'} · jobs {shown(', '.join(vm.jobs)) or 'none'} · "
            f"last point {vm.last_point or 'none'}\n"
            f"last result {vm.last_result or '—'}"
            f"{f' (job {shown(vm.last_job)})' if vm.last_job else ''} · RPO {vm.rpo_status}"
            f"{f' · {shown(vm.last_reason)}' if vm.last_reason else ''}")


class InventoryScreen(VmkeepScreen):
    """What the vCenters hold and how well it is protected."""

    MODE = "inventory"
    BINDINGS = [  # noqa: RUF012
        Binding("h", "history", "History"),
        Binding("f5", "refresh", "Refresh"),
        KEY,
    ]
    FILTERS = {"inventory": "show_inventory"}  # noqa: RUF012

    def __init__(self) -> None:
        super().__init__()
        self.vms: list[api.InventoryVm] = []
        self.vcenters: list[str] = []

    def body(self) -> ComposeResult:
        yield Label("Inventory (h: the VM's history)", classes="panel-title")
        yield Tree("vCenters", id="inventory")
        yield Static("", id="vm-detail", markup=False)

    def load_data(self) -> None:
        vms = fetch(self, "inventory", self.client.inventory)
        if vms is not None:
            vcenters = [] if vms else fetch(self, "vCenters", self.client.vcenters) or []
            self.post_message(InventoryLoaded(vms, [v.name for v in vcenters]))

    def on_inventory_loaded(self, message: InventoryLoaded) -> None:
        self.vms, self.vcenters = message.vms, message.vcenters
        self.show_inventory()

    def show_inventory(self) -> None:
        tree: Tree[api.InventoryVm | None] = self.query_one(Tree)
        mark = remember(tree)
        tree.clear()
        tree.root.expand()
        nodes: dict[tuple[str, ...], object] = {}
        for vm in sorted(self.vms, key=lambda v: (v.vcenter, v.datacenter, v.host, v.name)):
            path: tuple[str, ...] = ()
            parent: object = tree.root
            for part, sign in ((vm.vcenter, "◆"), (vm.datacenter, "▣"), (vm.host, "▤")):
                path = (*path, part)
                node = nodes.get(path)
                if node is None:
                    node = nodes[path] = parent.add(Text(f"{sign} {shown(part)}"),  # type: ignore[attr-defined]
                                                    expand=True)
                parent = node
            parent.add_leaf(Text(shown(vm_label(vm))), data=vm)  # type: ignore[attr-defined]
        if not self.vms:
            tree.root.add_leaf(Text(shown(empty.no_vm(self.vcenters))))
        narrow(tree, mark)

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted[api.InventoryVm | None]
                                 ) -> None:
        vm = event.node.data
        self.query_one("#vm-detail", Static).update(vm_detail(vm) if vm else "")

    def action_history(self) -> None:
        """The highlighted VM's history across jobs and repositories (its own screen)."""
        node = self.query_one(Tree).cursor_node
        vm = node.data if node is not None else None
        if isinstance(vm, api.InventoryVm):
            self.app.push_screen(VmHistoryScreen(vm.name))
        else:
            self.notify("no VM highlighted: move to a VM first")

    def action_refresh(self) -> None:
        self.reload()

    def on_screen_resume(self) -> None:
        self.show_connection()
        if not self.query_one(Tree).root.children:
            self.reload()
