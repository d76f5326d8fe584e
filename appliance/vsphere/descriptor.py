"""A virtual disk's descriptor (the ``.vmdk`` text file): which data file holds its bytes.

A flat disk ``folder/disk.vmdk`` names its data in an extent line such as
``RW 16777216 VMFS "disk-flat.vmdk"`` (``FLAT "…" 0`` on hosted products). vmkeep reads the
data file by name, so it is taken from the descriptor, not guessed by appending ``-flat``
(a renamed or migrated disk keeps its old extent name). Exactly one VMFS or FLAT extent at
offset 0 is required; anything else (sparse, SEsparse, RDM, several extents) cannot be read
as one flat file and is refused with the reason.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass

from appliance.errors import SourceError

MAX_DESCRIPTOR_BYTES = 64 << 10  # a descriptor is a few hundred bytes; more is not one
FLAT_TYPES = ("VMFS", "FLAT")
_EXTENT = re.compile(r"^(RW|RDONLY|NOACCESS)\s+(\d+)\s+([A-Z]+)\b(.*)$")


class DescriptorError(SourceError):
    """A disk's descriptor does not name exactly one flat data file."""

    code = "vsphere_descriptor"


@dataclass(frozen=True, slots=True)
class DiskExtent:
    """One extent line: access, size in 512-byte sectors, type, file name, offset."""

    access: str
    sectors: int
    kind: str
    file_name: str
    offset: int = 0


def parse_extents(text: str) -> tuple[DiskExtent, ...]:
    """The extent lines of a descriptor, in order (comments and other lines ignored)."""
    out: list[DiskExtent] = []
    for raw in text.splitlines():
        line = raw.strip()
        m = _EXTENT.match(line)
        if not m:
            continue
        access, sectors, kind, rest = m.groups()
        try:
            fields = shlex.split(rest)
        except ValueError:
            fields = []
        name = fields[0] if fields else ""
        offset = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0
        out.append(DiskExtent(access, int(sectors), kind, name, offset))
    return tuple(out)


def data_file_of(descriptor_path: str, data: bytes, *, what: str) -> str:
    """The datastore path of the file that holds the bytes of the flat disk whose descriptor
    is ``descriptor_path`` (``folder/disk.vmdk``) with content ``data``: the one VMFS/FLAT
    extent's file, in the descriptor's folder. DescriptorError (naming ``what``, the disk)
    otherwise.

    An empty descriptor is vcsim's (the simulator creates empty placeholder files): its data
    file is the conventional ``<name>-flat.vmdk``. vSphere never writes an empty one."""
    if not data.strip():
        return _conventional_flat(descriptor_path)
    if data.startswith(b"KDMV") or data.startswith(b"COWD"):
        raise DescriptorError(f"{what}: {descriptor_path} is a sparse (monolithic) disk, not a "
                              "descriptor with a flat extent: it needs a VDDK/NBD transport")
    if len(data) > MAX_DESCRIPTOR_BYTES or b"\0" in data:
        raise DescriptorError(f"{what}: {descriptor_path} is not a text descriptor "
                              f"({len(data)} bytes)")
    extents = parse_extents(data.decode("utf-8", errors="replace"))
    if len(extents) != 1:
        listed = ", ".join(f"{e.kind} {e.file_name!r}" for e in extents) or "none"
        raise DescriptorError(f"{what}: its descriptor {descriptor_path} has {len(extents)} "
                              f"extents ({listed}); vmkeep reads disks with exactly one flat "
                              "(VMFS/FLAT) extent")
    ext = extents[0]
    if ext.kind not in FLAT_TYPES or ext.offset != 0:
        raise DescriptorError(f"{what}: its descriptor {descriptor_path} names a {ext.kind} "
                              f"extent {ext.file_name!r}"
                              + (f" at offset {ext.offset}" if ext.offset else "")
                              + "; vmkeep reads one flat (VMFS/FLAT) extent at offset 0, "
                              "other kinds need a VDDK/NBD transport")
    name = ext.file_name
    if not name or name.startswith("/") or "/" in name or name in (".", ".."):
        raise DescriptorError(f"{what}: its descriptor {descriptor_path} names the extent "
                              f"{name!r}, not a file next to it")
    return posixpath.join(posixpath.dirname(descriptor_path), name)


def _conventional_flat(path: str) -> str:
    if path.endswith("-flat.vmdk"):
        return path
    if path.endswith(".vmdk"):
        return path[: -len(".vmdk")] + "-flat.vmdk"
    return path
