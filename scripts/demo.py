"""`make demo`: vmkeep end to end with the real `vmkeep` CLI, as an admin would run it.

1. Disk images: make a sample disk, back it up (full, then incremental with a changed-areas
   list), restore both points and check them.
2. vSphere: build and start vcsim (govmomi's simulator) on 127.0.0.1, give a VM a 64 MiB disk
   with VM-like content, back the VM up (CBT enabled with consent: a full, then, after the
   "guest" writes, an incremental that reads only the changed blocks), restore the VM to a new
   VM and a disk to a file, check both byte for byte, and run the Snapshot Hunter's dry run.

3. The appliance: start it (home .demo/home), add the vCenter and a repository, create a
   scheduled job, run a full and an incremental, restore a disk and check it, list the
   sessions, query the catalog, and, on a terminal, open the TUI on it; then stop it.

Everything lives in .demo/ (repositories, catalog cache, images, the appliance's home); run
it again at will.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / ".demo"
MiB = 1 << 20


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(MiB):
            h.update(chunk)
    return h.hexdigest()


VC: list[str] = []  # the connection options of `vmkeep vsphere …`, shown as $VC
PASSWORD = "demo-password"


def vmkeep(*args: str) -> str:
    """Run `vmkeep ARGS` (a "$VC" argument stands for the vCenter connection options)."""
    print(f"$ vmkeep {' '.join(args)}", flush=True)
    argv = [x for a in args for x in (VC if a == "$VC" else [a])]
    env = {**os.environ, "VMKEEP_CACHE_DIR": str(DEMO / "cache"),
           "VMKEEP_VSPHERE_PASSWORD": PASSWORD}  # read by `vsphere …` and `vcenter add`
    proc = subprocess.run([sys.executable, "-m", "appliance.cli", *argv], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    for line in proc.stderr.splitlines():
        print(f"  {line}")
    if proc.returncode != 0:
        sys.exit(f"demo: `vmkeep {' '.join(args)}` failed with exit code {proc.returncode}")
    return proc.stdout


def make_sample(path: Path, size: int, rng: random.Random) -> None:
    """A VM-like disk: unallocated space, logs, binaries, random data, a copied region."""
    with path.open("wb") as f:
        f.truncate(size)
        for mib in range(0, size // MiB):
            kind = rng.randrange(6)
            f.seek(mib * MiB)
            if kind == 1:
                line = f"Nov 24 21:00:{mib % 60:02d} web01 nginx: GET /api/v1/items 200\n"
                f.write((line.encode() * (MiB // len(line) + 1))[:MiB])
            elif kind == 2:
                f.write(rng.randbytes(4096) * 256)
            elif kind == 3:
                f.write(rng.randbytes(MiB))
            # kinds 0, 4, 5: left unallocated


def image_demo(rng: random.Random) -> list[str]:
    """Part 1: a raw disk image, full + incremental, both restored and checked."""
    print("== 1. disk images ==")
    image = DEMO / "web01-disk0.img"
    repo = DEMO / "repository"
    make_sample(image, 64 * MiB, rng)
    print(f"sample disk {image.relative_to(ROOT)}: 64 MiB, sparse\n")
    full = vmkeep("image", "backup", "--repo", str(repo), "--name", "web01", str(image)).strip()
    sha_full = sha256(image)
    # The guest writes a little; the changed-areas list plays the part of VMware CBT.
    areas = []
    with image.open("r+b") as f:
        for _ in range(5):
            off = rng.randrange(0, 64 * MiB - 65536) // 4096 * 4096
            f.seek(off)
            f.write(rng.randbytes(16384))
            areas.append({"offset": off, "length": 16384})
    (DEMO / "changed.json").write_text(json.dumps(areas))
    incr = vmkeep("image", "backup", "--repo", str(repo), "--name", "web01", "--changed",
                  str(DEMO / "changed.json"), str(image)).strip()
    sha_incr = sha256(image)
    print(vmkeep("image", "points", "--repo", str(repo)))
    failures = []
    for point, expected in ((full, sha_full), (incr, sha_incr)):
        out = DEMO / f"restored-{point}.img"
        vmkeep("image", "restore", "--repo", str(repo), point, str(out))
        same = sha256(out) == expected
        failures += [] if same else [f"image point {point}"]
        print(f"  restored {point}: {'byte-identical' if same else 'MISMATCH'}")
    print(vmkeep("image", "verify", "--repo", str(repo)))
    listing = json.loads(vmkeep("image", "points", "--repo", str(repo), "--json"))
    size = sum(p.stat().st_size for p in repo.rglob("*") if p.is_file())
    print(f"  points: {', '.join(p['kind'] for p in listing)}; read: full "
          f"{listing[0]['bytes_read'] / MiB:.1f} MiB, incremental "
          f"{listing[1]['bytes_read'] / MiB:.1f} MiB; repository {size / MiB:.1f} MiB\n")
    return failures


def start_vcsim() -> tuple[subprocess.Popen[str], str, int]:
    """Build vcsim (quick when up to date) and start it on 127.0.0.1 on a free port."""
    print("building the vSphere simulator (vcsim) from Debian's govmomi, about a minute the "
          "first time…", flush=True)
    # Its progress lines ("building …", "built … in N s", "up to date") go to the terminal.
    build = subprocess.run(["bash", str(ROOT / "scripts" / "vcsim" / "build.sh")],
                           stdout=subprocess.PIPE, text=True)
    if build.returncode != 0:
        sys.exit("demo: building vcsim failed (its messages are above)")
    binary = build.stdout.strip().splitlines()[-1]
    proc = subprocess.Popen([binary, "-l", "127.0.0.1:0", "-username", "admin",
                             "-password", PASSWORD, "-stdinexit"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True,
                            # each simulated ESXi host serves its datastores: vmkeep reads
                            # disks from the host that runs the VM
                            env={**os.environ, "VCSIM_HOST_ENDPOINTS": "1"})
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("VCSIM_URL="):
        proc.kill()
        sys.exit(f"demo: vcsim did not start: {line!r}")
    info = dict(kv.split("=", 1) for kv in line.split())
    return proc, info["VCSIM_HOST"], int(info["VCSIM_PORT"])


def vm_disk_file(host: str, port: int, fingerprint: str, vm_name: str,
                 grow_to: int | None = None) -> Path:
    """The flat file of the VM's first disk in vcsim's datastore folder, the place where a
    guest's writes land (optionally growing the disk first). This plays the guest."""
    from pyVim.task import WaitForTask
    from pyVmomi import vim

    from appliance.vsphere.cbt import flat_file_of, split_datastore_path
    from appliance.vsphere.inventory import find_vm
    from appliance.vsphere.session import connect

    with connect(host, port, "admin", PASSWORD, fingerprint=fingerprint) as s:
        info = find_vm(s, vm_name)
        vm = s.content.searchIndex.FindByUuid(None, info.instance_uuid, True, True)
        disk: Any = next(d for d in vm.config.hardware.device
                         if isinstance(d, vim.vm.device.VirtualDisk))
        if grow_to is not None:
            disk.capacityInKB = grow_to // 1024
            disk.capacityInBytes = grow_to
            WaitForTask(vm.ReconfigVM_Task(vim.vm.ConfigSpec(  # type: ignore[no-untyped-call]
                deviceChange=[vim.vm.device.VirtualDeviceSpec(  # type: ignore[no-untyped-call]
                    operation="edit", device=disk)])))
        ds, path = split_datastore_path(disk.backing.fileName)
        urls = {d.name: d.info.url for d in vm.datastore}
        return Path(urls[ds]) / flat_file_of(path)


def disk_content(path: Path, size: int) -> str:
    """sha256 of a disk of ``size`` bytes whose flat file is ``path`` (zeros past its end)."""
    data = path.read_bytes()[:size]
    return hashlib.sha256(data + bytes(size - len(data))).hexdigest()


def vsphere_demo(rng: random.Random) -> list[str]:
    """Part 2: a VM in vcsim backed up with CBT, restored to a new VM and to a file."""
    print("== 2. vSphere (vcsim on 127.0.0.1) ==")
    proc, host, port = start_vcsim()
    try:
        fingerprint = vmkeep("vsphere", "fingerprint", "--host", host, "--port",
                             str(port)).strip()
        VC[:] = ["--host", host, "--port", str(port), "--user", "admin", "--fingerprint",
                 fingerprint]
        print(f"  $VC = --host {host} --port {port} --user admin --fingerprint "
              f"{fingerprint[:11]}…  (password from VMKEEP_VSPHERE_PASSWORD)\n")
        vm, size = "DC0_H0_VM0", 64 * MiB
        flat = vm_disk_file(host, port, fingerprint, vm, grow_to=size)
        make_sample(flat, size, rng)
        print(vmkeep("vsphere", "vms", "$VC"))
        repo = str(DEMO / "vsphere-repository")
        full = vmkeep("vsphere", "backup", "$VC", "--repo", repo, "--enable-cbt", vm).strip()
        sha_full = disk_content(flat, size)
        with flat.open("r+b") as f:  # the guest writes ~1 % of its disk
            for _ in range(5):
                f.seek(rng.randrange(0, size - 65536))
                f.write(rng.randbytes(8192))
        incr = vmkeep("vsphere", "backup", "$VC", "--repo", repo, "-v", vm).strip()
        sha_incr = disk_content(flat, size)
        print(vmkeep("image", "points", "--repo", repo))
        failures = []
        vmkeep("vsphere", "restore-vm", "$VC", "--repo", repo, incr, "--name",
               f"{vm}-restored")
        restored = vm_disk_file(host, port, fingerprint, f"{vm}-restored")
        same = disk_content(restored, size) == sha_incr
        failures += [] if same else ["VM restore"]
        print(f"  new VM {vm}-restored: disk 0 {'byte-identical' if same else 'MISMATCH'}")
        out = DEMO / f"{vm}-{full}-disk0.img"
        vmkeep("image", "restore", "--repo", repo, "--disk", "0", full, str(out))
        same = sha256(out) == sha_full
        failures += [] if same else ["disk restore"]
        print(f"  disk 0 of the full point to {out.name}: "
              f"{'byte-identical' if same else 'MISMATCH'}")
        print(vmkeep("vsphere", "hunter", "$VC", "--dry-run"))
        listing = json.loads(vmkeep("image", "points", "--repo", repo, "--json"))
        print(f"  points: {', '.join(p['kind'] for p in listing)}; read: full "
              f"{listing[0]['bytes_read'] / MiB:.1f} MiB, incremental "
              f"{listing[1]['bytes_read'] / MiB:.2f} MiB of a {size // MiB} MiB disk\n")
        return failures + appliance_demo(host, port, fingerprint, rng)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def appliance_demo(host: str, port: int, fingerprint: str, rng: random.Random) -> list[str]:
    """Part 3: the appliance: a vCenter, a repository and a job; a full and an incremental
    run; a disk restored and checked; sessions and a catalog query."""
    print("== 3. the appliance (VMKEEP_HOME=.demo/home) ==")
    os.environ["VMKEEP_HOME"] = str(DEMO / "home")
    os.environ.pop("VMKEEP_SOCKET", None)
    vm = "DC0_H0_VM1"
    vmkeep("appliance", "start")
    try:
        vmkeep("vcenter", "add", "vc", "--host", host, "--port", str(port), "--user", "admin",
               "--fingerprint", fingerprint)
        vmkeep("repo", "add", "main", "--path", str(DEMO / "appliance-repository"))
        flat = vm_disk_file(host, port, fingerprint, vm, grow_to=32 * MiB)
        make_sample(flat, 32 * MiB, rng)
        vmkeep("job", "create", "nightly", "--vcenter", "vc", "--vm", vm, "--repo", "main",
               "--enable-cbt", "--daily", "22:00", "--days", "weekdays", "--keep-last", "14")
        vmkeep("job", "run", "nightly", "--wait")
        with flat.open("r+b") as f:  # the guest writes a little
            f.seek(rng.randrange(0, 32 * MiB - 65536))
            f.write(rng.randbytes(20000))
        vmkeep("job", "run", "nightly", "--wait")
        sha_now = disk_content(flat, 32 * MiB)
        print(vmkeep("session", "list"))
        points = json.loads(vmkeep("points", "list", "--vm", vm, "--json"))
        out = DEMO / f"{vm}-disk0.img"
        vmkeep("restore", "disk", points[-1]["id"], "--disk", "0", "--to", str(out))
        same = sha256(out) == sha_now
        print(f"  disk 0 of the incremental point: {'byte-identical' if same else 'MISMATCH'}")
        print(vmkeep("catalog", "query", "SELECT vm, points, full_points FROM points_per_vm "
                     "ORDER BY vm"))
        print(f"  points of {vm}: {', '.join(p['kind'] for p in points)}\n")
        if sys.stdin.isatty() and sys.stdout.isatty():
            print("== 4. the TUI on this appliance (ctrl+q quits; then the demo stops the "
                  "appliance and vcsim) ==")
            subprocess.run([sys.executable, "-m", "appliance.cli", "tui"], check=False)
        return [] if same and [p["kind"] for p in points] == ["full", "incremental"] \
            else ["appliance restore"]
    finally:
        vmkeep("appliance", "stop")


def main() -> int:
    shutil.rmtree(DEMO, ignore_errors=True)
    DEMO.mkdir()
    rng = random.Random(2026)
    started = time.monotonic()
    failures = image_demo(rng) + vsphere_demo(rng)
    print("summary")
    verdict = "all byte-identical" if not failures else "FAILED: " + ", ".join(failures)
    print(f"  restores: {verdict}; {time.monotonic() - started:.1f} s in all")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
