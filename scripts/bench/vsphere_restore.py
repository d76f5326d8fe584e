"""Benchmark how vmkeep writes VM disks in vSphere, and how hot-add reads them, on one disk.

    python scripts/bench/vsphere_restore.py [--size 512M] [--runs 3] [--workdir DIR]
                                            [--datastore-dir DIR]

Builds vcsim (scripts/vcsim/build.sh), starts it on 127.0.0.1 with the simulated ESXi hosts'
own endpoints (VCSIM_HOST_ENDPOINTS=1) and udev's by-id links played by the simulator
(VCSIM_BY_ID_DIR, see scripts/vcsim/main.go), gives VM DC0_H0_VM0 a disk of --size holding
genimage.py's VM-like content (how much is allocated is printed), backs it up once, then for run
1..N (interleaved) measures:

  Restores of that point to a new VM (each new VM deleted again after its run):
  NFC import         vmkeep's restore_new_vm: ImportVApp + HttpNfcLease, the disk sent to the
                     host as a streamOptimized VMDK of the point's stored blocks only;
  PUT (vCenter)      what a new-VM restore did before: CreateVM_Task, then one PUT of the
                     whole flat file (capacity, zeros included) through the vCenter's /folder;
  PUT (host)         the same PUT to the host's own /folder with an httpPut ticket (how a
                     restore over the original VM writes now).
  bytes sent: what the simulator received (its /vmkeep/counters for NFC; the PUT's length).

  Reads of the same disk by a full backup (backup_vm, fresh repository each run):
  host full          transport "host": Range streams from the host's /folder with tickets;
  hot-add full       transport "hotadd": the snapshot's disk attached to the appliance VM
                     (DC0_H0_VM1 here) and read as a block device. In the simulator the
                     device is the by-id link to the snapshot's flat file, so this row
                     measures the attach/detach round trips and local reads, not a SCSI path.

Exit status: 0 when every measurement ran, 1 when one failed, 2 for a usage or set-up problem.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import ssl
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import genimage
import run as bench_run
import vsphere as bench_vsphere

from appliance.jobs import vm_restore
from appliance.jobs.backup import BackupOptions
from appliance.jobs.restore import disk_bytes, prepare_disk
from appliance.jobs.vm_backup import backup_vm
from appliance.jobs.workspace import open_workspace
from appliance.repository.repo import Repository
from appliance.vsphere import restore_target as rt
from appliance.vsphere.host_endpoint import host_of_vm, service_ticket
from appliance.vsphere.session import VSphereSession, connect
from appliance.vsphere.transport import DatastoreEndpoint
from appliance.vsphere.upload import upload_file, upload_to_host
from appliance.vsphere.vm_config import VmConfig
from catalog.store import Catalog

HERE = Path(__file__).resolve().parent
VM = bench_vsphere.VM
APPLIANCE_VM = "DC0_H0_VM1"
USER, PASSWORD = bench_vsphere.USER, bench_vsphere.PASSWORD
MB = 1_000_000
NFC = "NFC import"
PUT_VC = "PUT (vCenter)"
PUT_HOST = "PUT (host)"
HOST_READ = "host full"
HOTADD_READ = "hot-add full"
WRITE_ROWS = (NFC, PUT_VC, PUT_HOST)
READ_ROWS = (HOST_READ, HOTADD_READ)


class BenchError(Exception):
    """Set-up or measurement failed."""


@dataclass(frozen=True, slots=True)
class Sim:
    host: str
    port: int
    pid: int
    by_id: Path  # where the simulator makes the by-id links of hot-added disks


@contextmanager
def running_vcsim(binary: Path, tmpdir: Path, log: Path) -> Iterator[Sim]:
    """vcsim as bench/vsphere.py starts it, plus by-id links in ``tmpdir/by-id``."""
    by_id = tmpdir / "by-id"
    by_id.mkdir()
    with bench_vsphere.running_vcsim(binary, tmpdir, log,
                                     {"VCSIM_BY_ID_DIR": str(by_id)}) as sim:
        yield Sim(sim.host, sim.port, sim.pid, by_id)


def nfc_received(sim: Sim) -> int:
    """Bytes the simulator's NFC endpoints have received so far."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    url = f"https://{sim.host}:{sim.port}/vmkeep/counters"
    with urllib.request.urlopen(url, context=ctx, timeout=30) as resp:
        return int(json.load(resp)["nfc"]["bytes_received"])


@dataclass
class Sample:
    seconds: float
    nbytes: int  # bytes sent (writes) or read (reads)


@dataclass
class Bench:
    sim: Sim
    session: VSphereSession
    repo_dir: Path
    size: int
    options: BackupOptions
    point: str = ""
    repo: Repository | None = None
    samples: dict[str, list[Sample]] = field(default_factory=dict)

    def _log(self, level: str, msg: str) -> None:
        if level in ("warning", "error"):
            print(f"  {level}: {msg}", file=sys.stderr)

    def backup(self, repo: Repository, transport: str) -> Sample:
        cat = Catalog.open(None)
        try:
            with open_workspace(repo, cat.cursor, exclusive=False, operation="bench") as ws:
                started = time.perf_counter()
                r = backup_vm(self.session, ws, VM, self.options, enable_cbt_consent=True,
                              force_full=True, transport=transport,  # type: ignore[arg-type]
                              log=self._log)
                seconds = time.perf_counter() - started
        finally:
            cat.close()
        if r.point_id is None or r.backup is None:
            raise BenchError(f"backup through {transport} failed: {r.warnings}")
        if transport == "host":
            self.point = r.point_id
        return Sample(seconds, sum(d.bytes_read for d in r.disks))

    def _new_repo(self, name: str) -> Repository:
        path = self.repo_dir / name
        shutil.rmtree(path, ignore_errors=True)
        return Repository.open_local(path, create=True)

    def restore_nfc(self, name: str) -> Sample:
        assert self.repo is not None
        before = nfc_received(self.sim)
        cat = Catalog.open(None)
        try:
            with open_workspace(self.repo, cat.cursor, exclusive=False,
                                operation="bench") as ws:
                started = time.perf_counter()
                r = vm_restore.restore_new_vm(self.session, ws, self.point, name,
                                              log=self._log)
                seconds = time.perf_counter() - started
        finally:
            cat.close()
        rt.destroy_vm(self.session, r.vm_moref)
        return Sample(seconds, nfc_received(self.sim) - before)

    def restore_put(self, name: str, on_host: bool) -> Sample:
        """The whole-file PUT a new-VM restore made before NFC imports."""
        assert self.repo is not None
        cat = Catalog.open(None)
        try:
            with open_workspace(self.repo, cat.cursor, exclusive=False,
                                operation="bench") as ws:
                manifest = ws.repo.read_manifest(self.point)
                config = VmConfig.from_record(manifest.config)
                placement = rt.resolve_placement(self.session)
                started = time.perf_counter()
                target = rt.create_vm(self.session, placement, config, config.disks[:1], name,
                                      keep_macs=False)
                disk = prepare_disk(ws, self.point, 0)
                tdisk = target.disks[0]
                if on_host:
                    host = host_of_vm(self.session, target.moref)
                    session = self.session
                    sent = upload_to_host(host, lambda url: service_ticket(session, url, "PUT"),
                                          tdisk.datastore, tdisk.flat_path, disk.size,
                                          disk_bytes(ws, disk))
                else:
                    s = self.session
                    endpoint = DatastoreEndpoint(s.host, s.port, s.cookie, s.ssl_context,
                                                 s.fingerprint)
                    sent = upload_file(endpoint, target.datacenter_path, tdisk.datastore,
                                       tdisk.flat_path, disk.size, disk_bytes(ws, disk))
                seconds = time.perf_counter() - started
        finally:
            cat.close()
        rt.destroy_vm(self.session, target.moref)
        return Sample(seconds, sent)

    def one_run(self, n: int) -> None:
        print(f"run {n}", flush=True)
        steps: tuple[tuple[str, Callable[[], Sample]], ...] = (
                (HOST_READ, lambda: self.backup(self._new_repo(f"host-{n}"), "host")),
                (HOTADD_READ, lambda: self.backup(self._new_repo(f"hotadd-{n}"), "hotadd")),
                (NFC, lambda: self.restore_nfc(f"bench-nfc-{n}")),
                (PUT_VC, lambda: self.restore_put(f"bench-put-vc-{n}", on_host=False)),
                (PUT_HOST, lambda: self.restore_put(f"bench-put-host-{n}", on_host=True)))
        for row, measure in steps:
            sample = measure()
            if row == HOST_READ:
                self.repo = Repository.open_local(self.repo_dir / f"host-{n}", create=False)
            self.samples.setdefault(row, []).append(sample)
            print(f"  {row:<14} {sample.seconds:7.2f} s  {sample.nbytes / MB:9.1f} MB",
                  flush=True)


def _med(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def render(bench: Bench) -> str:
    lines = [f"{'what':<16}{'bytes MB':>10}{'x capacity':>12}{'time s':>9}{'MB/s of disk':>14}"]
    for title, rows in (("writes (restore to a new VM)", WRITE_ROWS),
                        ("reads (full backup)", READ_ROWS)):
        lines.append(title)
        for row in rows:
            got = bench.samples.get(row, [])
            nbytes = _med([s.nbytes for s in got])
            secs = _med([s.seconds for s in got])
            lines.append(f"  {row:<14}{nbytes / MB:>10.1f}{nbytes / bench.size:>12.2f}"
                         f"{secs:>9.2f}{bench.size / secs / MB:>14.1f}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="512M", help="disk size, e.g. 256M, 1G (default 512M)")
    p.add_argument("--runs", type=int, default=3, help="runs; the table shows medians (3)")
    p.add_argument("--workdir", type=Path, default=bench_vsphere.DEFAULT_WORKDIR,
                   help="default <repo>/.bench; images and logs go to WORKDIR/vsphere")
    p.add_argument("--datastore-dir", type=Path, default=None,
                   help="where vcsim keeps its datastores (default /dev/shm when it has room)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        size = genimage.parse_size(args.size)
    except ValueError as err:
        print(f"vsphere_restore.py: {err}", file=sys.stderr)
        return 2
    if args.runs < 1:
        print("vsphere_restore.py: --runs must be at least 1", file=sys.stderr)
        return 2
    workdir: Path = (args.workdir / "vsphere").resolve()
    logging.getLogger("appliance.vsphere.session").setLevel(logging.ERROR)
    try:
        bench_run.check_disk(workdir, size, 2)
        binary = bench_vsphere.build_vcsim()
        images = bench_run.prepare_images(workdir, size, seed=1, fraction=0.02)
        ds_root = bench_vsphere._datastore_dir(args.datastore_dir, workdir, size)
        ds_root.mkdir(parents=True, exist_ok=True)
    except (bench_vsphere.BenchError, bench_run.BenchError, OSError) as err:
        print(f"vsphere_restore.py: {err}", file=sys.stderr)
        return 2
    simdir = Path(tempfile.mkdtemp(prefix="vmkeep-bench-vcsim-", dir=ds_root))
    repo_dir = Path(tempfile.mkdtemp(prefix="vmkeep-bench-repos-", dir=workdir))
    signal.signal(signal.SIGTERM, bench_vsphere._terminated)
    try:
        with running_vcsim(binary, simdir, workdir / "vcsim-restore.log") as sim, \
                connect(sim.host, sim.port, USER, PASSWORD, fingerprint=None,
                        insecure=True) as session:
            disk = bench_vsphere.resize_disk(session, size)
            bench_vsphere.install(images.base, disk)
            os.environ["VMKEEP_APPLIANCE_VM"] = APPLIANCE_VM  # hot-add attaches to it
            os.environ["VMKEEP_HOTADD_BY_ID"] = str(sim.by_id)  # the simulator's "udev"
            bench = Bench(sim, session, repo_dir, size, BackupOptions())
            alloc = sum(e.length for e in genimage.data_extents(images.base))
            print(f"vcsim pid {sim.pid} on {sim.host}:{sim.port}; {VM}: "
                  f"{genimage.format_size(size)} disk, {alloc / MB:.0f} MB allocated; "
                  f"appliance VM for hot-add: {APPLIANCE_VM}", flush=True)
            for n in range(1, args.runs + 1):
                bench.one_run(n)
    except (BenchError, bench_vsphere.BenchError, OSError) as err:
        print(f"vsphere_restore.py: {err}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(simdir, ignore_errors=True)
        shutil.rmtree(repo_dir, ignore_errors=True)
    print()
    print(f"median of {args.runs} run(s), {os.cpu_count()} CPUs, MB = 10^6 bytes; "
          "MB/s of disk: the disk's capacity over the time")
    print(render(bench))
    print("NFC import: only the point's stored blocks travel (plus ~0.8 % framing), and a thin "
          "disk stays thin; its time includes ImportVApp and the lease. A PUT sends the whole "
          "capacity, zeros included (a thin disk is inflated). On loopback bytes are cheap: "
          "the time columns compare the CPU each path costs, the bytes what a network pays.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
