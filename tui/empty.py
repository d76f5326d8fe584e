"""What a screen says when it has nothing to show: that there is nothing, and what to do
about it (the TUI's key first, then the CLI command), one sentence each. A panel's title says
it (``title``: it then wraps, see app.tcss); a tree's line does not wrap, so NO_VCENTER and
``no_vm`` fit a line of an 80-column screen."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Label

NO_VCENTER = "No vCenter yet — add one: Repos screen (7, then v) or `vmkeep vcenter add`"
NO_JOB = "No job yet — press n to create one, or `vmkeep job create NAME --vm VM --repo REPO`"
NO_POINT = ("No restore point yet — run a job on the Jobs screen (2, then r) or with "
            "`vmkeep job run NAME`")
NO_SESSION = ("No session yet — run a job on the Jobs screen (2, then r) or with "
              "`vmkeep job run NAME`")


def no_vm(vcenters: list[str]) -> str:
    """The vCenters answer but hold no VM (``vcenters``: their names; none: NO_VCENTER)."""
    if not vcenters:
        return NO_VCENTER
    return f"No VM in vCenter {', '.join(vcenters)} — create VMs there, then press F5 here"


def title(label: Label, normal: str, nothing: str | None) -> None:
    """The panel title ``label``: ``normal``, or ``nothing`` (what to do) when there is
    nothing to show, wrapped over as many lines as it takes."""
    label.update(Text(nothing if nothing is not None else normal))
    label.set_class(nothing is not None, "-empty")
