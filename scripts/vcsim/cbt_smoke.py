#!/usr/bin/env python3
# mypy: disable-error-code="no-untyped-call,attr-defined"
"""Manual check of vcsim's Changed Block Tracking (not a pytest test).

Run:  .venv/bin/python scripts/vcsim/cbt_smoke.py   (after scripts/vcsim/build.sh)

Runs the scenario twice: once unpaged, once with VCSIM_CBT_MAX_EXTENTS=1 so
that every QueryChangedDiskAreas reply covers only part of the disk and the
client must page with startOffset. Each run: CBT off -> NotSupported; enable
CBT with ReconfigVM; write known bytes into the VM's flat file; snapshot 1;
"*" gives the written 64 KiB areas; write more; snapshot 2; changeId of
snapshot 1 gives exactly the changed areas; bad arguments -> InvalidArgument
naming the argument; snapshot 1's frozen flat file did not see the later
writes; RemoveSnapshot deletes it and its changeId stays usable; with no
snapshot argument the live disk is compared; RemoveSnapshot(removeChildren)
deletes the descendants' frozen copies.
Exits non-zero on any failure.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from typing import Any

from pyVim.connect import Disconnect, SmartConnect
from pyVim.task import WaitForTask
from pyVmomi import vim, vmodl

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.join(HERE, "bin", "vcsim")
USER, PWD = "vmkeep", "secret"
BLOCK = 64 * 1024
CHANGE_ID = re.compile(r"^52( [0-9a-f]{2}){7}-[0-9a-f]{2}( [0-9a-f]{2}){7}/\d+$")

Extents = list[tuple[int, int]]


def start(max_extents: int) -> tuple[subprocess.Popen[str], dict[str, str]]:
    env = dict(os.environ)
    env.pop("VCSIM_CBT_MAX_EXTENTS", None)
    if max_extents:
        env["VCSIM_CBT_MAX_EXTENTS"] = str(max_extents)
    proc = subprocess.Popen(
        [BIN, "-l", "127.0.0.1:0", "-username", USER, "-password", PWD,
         "-cluster", "1", "-host", "1", "-vm", "1", "-stdinexit"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("VCSIM_URL="):
        proc.kill()
        raise SystemExit(f"unexpected first line from vcsim: {line!r}")
    return proc, dict(kv.split("=", 1) for kv in line.split())


def merge(extents: Extents) -> Extents:
    out: Extents = []
    for s, n in sorted(extents):
        if out and out[-1][0] + out[-1][1] == s:
            out[-1] = (out[-1][0], out[-1][1] + n)
        else:
            out.append((s, n))
    return out


def query(vm: Any, snap: Any, key: int, capacity: int, change_id: str) -> tuple[Extents, int]:
    """All changed areas, paging with startOffset; returns (extents, pages)."""
    offset, pages, got = 0, 0, []
    while offset < capacity:
        r = vm.QueryChangedDiskAreas(snapshot=snap, deviceKey=key,
                                     startOffset=offset, changeId=change_id)
        pages += 1
        assert r.startOffset == offset, (r.startOffset, offset)
        assert 0 < r.length <= capacity - offset, r.length
        for e in r.changedArea or []:
            assert offset <= e.start and e.start + e.length <= offset + r.length, e
            got.append((e.start, e.length))
        offset += r.length
    return merge(got), pages


def fault_of(fn: Any, **kwargs: Any) -> Any:
    try:
        fn(**kwargs)
    except vmodl.MethodFault as e:
        return e
    raise AssertionError("no fault raised")


def disk_of(devices: Any) -> Any:
    return next(d for d in devices if isinstance(d, vim.vm.device.VirtualDisk))


def local_path(datastores: dict[str, str], ds_path: str) -> str:
    m = re.match(r"^\[([^\]]+)\] (.*)$", ds_path)
    assert m, ds_path
    return os.path.join(datastores[m.group(1)], m.group(2))


def flat(vmdk: str) -> str:
    return vmdk[: -len(".vmdk")] + "-flat.vmdk"


def write(path: str, offset: int, data: bytes) -> None:
    with open(path, "r+b" if os.path.exists(path) else "wb") as f:
        f.seek(offset)
        f.write(data)


def snapshot(vm: Any, name: str) -> Any:
    assert WaitForTask(vm.CreateSnapshot_Task(name=name, memory=False, quiesce=False)) == "success"
    return vm.snapshot.currentSnapshot


def scenario(max_extents: int) -> None:
    proc, info = start(max_extents)
    print(f"--- VCSIM_CBT_MAX_EXTENTS={max_extents or 'unset'} (pid {proc.pid})")
    try:
        si = SmartConnect(host=info["VCSIM_HOST"], port=int(info["VCSIM_PORT"]),
                          user=USER, pwd=PWD, disableSslCertValidation=True)
        content = si.RetrieveContent()
        view = content.viewManager.CreateContainerView(
            content.rootFolder, [vim.VirtualMachine], True)
        vm = sorted(view.view, key=lambda v: v.name)[0]
        view.Destroy()
        datastores = {ds.name: ds.info.url for ds in vm.datastore}

        disk = disk_of(vm.config.hardware.device)
        key, capacity = disk.key, disk.capacityInKB * 1024
        live = flat(local_path(datastores, disk.backing.fileName))
        print(f"{vm.name}: disk key {key}, {capacity} bytes, flat file {live}")

        e = fault_of(vm.QueryChangedDiskAreas, deviceKey=key, startOffset=0, changeId="*")
        print("CBT off:", type(e).__name__)
        assert isinstance(e, vmodl.fault.NotSupported), e

        spec = vim.vm.ConfigSpec(changeTrackingEnabled=True)
        assert WaitForTask(vm.ReconfigVM_Task(spec=spec)) == "success"
        assert vm.config.changeTrackingEnabled is True

        # Blocks 1 and 2 (2 only partly) and 7.
        write(live, 1 * BLOCK, b"A" * BLOCK)
        write(live, 2 * BLOCK + 100, b"B" * 10)
        write(live, 7 * BLOCK + BLOCK - 1, b"C")
        s1 = snapshot(vm, "cbt1")
        d1 = disk_of(s1.config.hardware.device)
        cid1 = d1.backing.changeId
        print("snapshot 1:", s1, "changeId", cid1, "file", d1.backing.fileName)
        assert CHANGE_ID.match(cid1), cid1
        assert d1.backing.fileName != disk.backing.fileName
        frozen1 = flat(local_path(datastores, d1.backing.fileName))
        assert os.path.exists(frozen1)

        got, pages = query(vm, s1, key, capacity, "*")
        print(f'"*" at snapshot 1 ({pages} pages):', got)
        assert got == [(1 * BLOCK, 2 * BLOCK), (7 * BLOCK, BLOCK)], got
        if max_extents:
            assert pages > 1, pages

        # Change block 7, zero block 2, write block 10 (past the file's old end).
        write(live, 7 * BLOCK, b"D")
        write(live, 2 * BLOCK, bytes(BLOCK))
        write(live, 10 * BLOCK + 5, b"E" * 3)
        s2 = snapshot(vm, "cbt2")
        cid2 = disk_of(s2.config.hardware.device).backing.changeId
        print("snapshot 2:", s2, "changeId", cid2)
        assert CHANGE_ID.match(cid2) and cid2 != cid1
        assert cid2.split("/")[0] == cid1.split("/")[0]

        want = [(2 * BLOCK, BLOCK), (7 * BLOCK, BLOCK), (10 * BLOCK, BLOCK)]
        got, pages = query(vm, s2, key, capacity, cid1)
        print(f"since snapshot 1 at snapshot 2 ({pages} pages):", got)
        assert got == want, got
        got, _ = query(vm, s2, key, capacity, cid2)
        assert got == [], got
        got, _ = query(vm, s2, key, capacity, "*")
        assert got == [(1 * BLOCK, BLOCK), (7 * BLOCK, BLOCK), (10 * BLOCK, BLOCK)], got

        # Offsets inside the disk: extents clipped to startOffset.
        r = vm.QueryChangedDiskAreas(snapshot=s2, deviceKey=key,
                                     startOffset=7 * BLOCK + 10, changeId=cid1)
        assert r.changedArea[0].start == 7 * BLOCK + 10, r

        bad: list[tuple[dict[str, Any], str]] = [
            ({"changeId": "52 00 00 00 00 00 00 00-00 00 00 00 00 00 00 00/1"}, "changeId"),
            ({"deviceKey": 99999}, "deviceKey"),
            ({"startOffset": capacity}, "startOffset"),
        ]
        for kw, prop in bad:
            args: dict[str, Any] = {"snapshot": s2, "deviceKey": key,
                                    "startOffset": 0, "changeId": cid1}
            args.update(kw)
            e = fault_of(vm.QueryChangedDiskAreas, **args)
            print(f"{kw}: {type(e).__name__} invalidProperty={getattr(e, 'invalidProperty', None)}")
            assert isinstance(e, vmodl.fault.InvalidArgument), e
            assert e.invalidProperty == prop, e

        with open(frozen1, "rb") as f:
            data = f.read()
        assert data[1 * BLOCK: 2 * BLOCK] == b"A" * BLOCK
        assert data[2 * BLOCK + 100: 2 * BLOCK + 110] == b"B" * 10
        assert data[7 * BLOCK] == 0 and len(data) < 10 * BLOCK, len(data)
        print("frozen file of snapshot 1 unchanged by later writes:", frozen1)

        assert WaitForTask(s1.RemoveSnapshot_Task(removeChildren=False)) == "success"
        assert not os.path.exists(frozen1), frozen1
        got, _ = query(vm, s2, key, capacity, cid1)
        assert got == want, got
        print("snapshot 1 removed: frozen file deleted, its changeId still usable")

        # No snapshot argument: compared against the VM's live disk.
        write(live, 12 * BLOCK, b"F")
        got, _ = query(vm, None, key, capacity, cid2)
        print("live disk since snapshot 2:", got)
        assert got == [(12 * BLOCK, BLOCK)], got

        # removeChildren deletes the descendants' frozen copies too.
        s3 = snapshot(vm, "cbt3")
        frozen = [flat(local_path(datastores, disk_of(s.config.hardware.device).backing.fileName))
                  for s in (s2, s3)]
        assert all(os.path.exists(f) for f in frozen), frozen
        assert WaitForTask(s2.RemoveSnapshot_Task(removeChildren=True)) == "success"
        assert vm.snapshot is None
        assert not any(os.path.exists(f) for f in frozen), frozen
        print("RemoveSnapshot(removeChildren) deleted", [os.path.basename(f) for f in frozen])
        Disconnect(si)
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        rc = proc.wait(timeout=10)
        print(f"vcsim pid {proc.pid} stopped, exit code {rc}")
        assert rc == 0, rc


def main() -> int:
    scenario(0)
    scenario(1)
    print("CBT SMOKE OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
