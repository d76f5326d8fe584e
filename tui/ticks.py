"""What can be ticked: a checkbox that reads ticked or not without colour (``[x]``/``[ ]``,
as under NO_COLOR or on a monochrome terminal), and the wizard's tree of VMs, where Space and
Enter tick (a host, a datacenter: all its VMs shown) and never fold a node."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.content import Content
from textual.widgets import Checkbox, Tree
from textual.widgets.tree import TreeNode

from appliance import api

TICKED, UNTICKED = "[x]", "[ ]"


class TickBox(Checkbox):
    """A checkbox whose box says ``[x]`` or ``[ ]`` (Textual's shows the same ``X`` either
    way and tells them apart by colour only)."""

    @property
    def _button(self) -> Content:
        return Content.styled(TICKED if self.value else UNTICKED,
                              self.get_visual_style("toggle--label"))


VmNode = TreeNode[api.InventoryVm | None]


class VmTree(Tree[api.InventoryVm | None]):
    """The inventory's VMs to tick. Space or Enter on a VM ticks or unticks it; on a host or a
    datacenter it ticks all its VMs shown (a filter shows some), or unticks them when all are
    ticked already. Left folds a node, right unfolds it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "select_cursor", "Tick/untick the VM; a host: all its VMs",
                show=False),
        Binding("enter", "select_cursor",
                "Tick/untick the VM; a host: tick all its VMs (all ticked: untick them)",
                show=False),
        Binding("left", "fold(False)", "Fold the node", show=False),
        Binding("right", "fold(True)", "Unfold the node", show=False),
    ]

    def __init__(self, label: str, *, id: str) -> None:
        super().__init__(label, id=id)
        self.auto_expand = False  # Enter on a host ticks its VMs; it does not fold it

    def action_fold(self, unfold: bool) -> None:
        node = self.cursor_node
        if node is not None and node.allow_expand:
            node.expand() if unfold else node.collapse()


def vms_under(node: VmNode) -> list[VmNode]:
    """The VM nodes at or below ``node`` (a VM's node: itself)."""
    if node.data is not None:
        return [node]
    return [vm for child in node.children for vm in vms_under(child)]
