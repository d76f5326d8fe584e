"""Benchmark vmkeep's vSphere disk transports against a plain parallel HTTPS Range download.

    python scripts/bench/vsphere.py [--size 1G] [--runs 3] [--streams N] [--threads N]
                                    [--block-size 1M] [--compression zstd-fast]
                                    [--workdir DIR] [--datastore-dir DIR] [--repo-dir DIR]

Builds vcsim (scripts/vcsim/build.sh), starts it on 127.0.0.1 on a free port (datastores in
/dev/shm when it has room), gives VM DC0_H0_VM0 a disk of --size holding genimage.py's VM-like
content (cached in WORKDIR/vsphere/images), then, for run 1..N (interleaved), measures:

  plain download     the disk's -flat.vmdk fetched whole from https://127.0.0.1:PORT/folder/…
                     with the session cookie: --streams threads (default: the backup's read
                     streams, as vmkeep opens one connection per read stream), one keep-alive
                     http.client connection each, requests of the backup's block size, bytes
                     read into a reused buffer and dropped: the baseline;
  https reads only   vmkeep's DatastoreDiskSource reading the same file with the same request
                     size from a pool of the backup's thread count, bytes dropped: the
                     transport's own cost next to the baseline;
  https full         backup_vm full backup, transport "vcenter", into a fresh local repository
                     with an in-memory catalog (default BackupOptions unless flags say else);
  plain download (host)
                     the same file fetched whole from the simulated ESXi host's own endpoint
                     as a plain client would: --streams contiguous regions, one single-use
                     service ticket and one Range GET each, bytes dropped: the host path's
                     baseline;
  host full          the same read from the simulated ESXi host's own endpoint (transport
                     "host": single-use service tickets, a few long Range streams per disk),
                     its "x plain" against the host path's baseline;
  direct full        the same through the direct-path transport (no TLS): the rest of the
                     backup's cost;
  https incr         after ~2 % of the 1 MiB blocks were rewritten, an incremental (https).

Throughput is bytes fetched per second (vmkeep reads only the allocated blocks CBT reports;
the baseline fetches the whole file). A backup is timed twice: its data path (run_backup's own
time: read, hash, compress, write packs and manifest) and the whole backup_vm call (also the
snapshot, which vcsim makes by copying and hashing the whole disk: ~3 s per GiB, an artifact of
the simulator). The issue's target: HTTPS full data-path throughput >= 0.80 x the baseline,
and host full >= 0.80 x the host path's baseline.
CPU columns: seconds used by this process and by vcsim while reading (for a backup, from the
snapshot being taken to the end). vcsim serves TLS on the same cores, so on a small machine the
run is CPU-bound; the "CPU-bound ceiling" line estimates the best the HTTPS backup could do
there. vcsim is stopped by PID at the end, also on errors and Ctrl-C.

Exit status: 0 when every measurement ran (whatever the ratio), 1 when one failed, 2 for a
usage or set-up problem.
"""

from __future__ import annotations

import argparse
import http.client
import logging
import os
import resource
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import genimage
import run as bench_run
from pyVim.task import WaitForTask
from pyVmomi import vim

from appliance.errors import UsageError
from appliance.jobs.backup import BackupOptions, block_size_named
from appliance.jobs.vm_backup import HTTPS_READ_STREAMS, backup_vm
from appliance.jobs.workspace import open_workspace
from appliance.repository import codec
from appliance.repository.repo import Repository
from appliance.source import Extent
from appliance.vsphere.cbt import flat_file_of, split_datastore_path
from appliance.vsphere.host_endpoint import TICKET_COOKIE, host_of_vm, service_ticket
from appliance.vsphere.host_transport import host_url_path
from appliance.vsphere.inventory import find_vm
from appliance.vsphere.session import VSphereSession, connect
from appliance.vsphere.transport import DatastoreDiskSource, DatastoreEndpoint
from catalog.store import Catalog

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
BUILD = REPO_ROOT / "scripts" / "vcsim" / "build.sh"
DEFAULT_WORKDIR = REPO_ROOT / ".bench"
SHM = Path("/dev/shm")
VM = "DC0_H0_VM0"
USER, PASSWORD = "vmkeep", "vmkeep-secret"
MiB = genimage.MiB
MB = 1_000_000
TARGET = 0.80
PLAIN = "plain download"
HOST_PLAIN = "plain download (host)"
READS = "vmkeep https reads only"
HTTPS = "vmkeep https full"
HOST = "vmkeep host full"
DIRECT = "vmkeep direct full"
INCR = "vmkeep https incr"
ROWS = (PLAIN, HOST_PLAIN, READS, HTTPS, HOST, DIRECT, INCR)


class BenchError(Exception):
    """Set-up or measurement failed."""


# ---------------------------------------------------------------------------------------------
# vcsim


def build_vcsim() -> Path:
    """Build vcsim (quick when up to date); its path is the last line build.sh prints."""
    proc = subprocess.run(["bash", str(BUILD)], capture_output=True, text=True, timeout=900,
                          check=False)
    if proc.returncode != 0:
        raise BenchError(f"building vcsim failed:\n{proc.stderr[-4000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


@dataclass(frozen=True, slots=True)
class Sim:
    host: str
    port: int
    pid: int


@contextmanager
def running_vcsim(binary: Path, tmpdir: Path, log: Path,
                  env: dict[str, str] | None = None) -> Iterator[Sim]:
    """vcsim on 127.0.0.1, a free port (its datastores under ``tmpdir``, stderr to ``log``,
    ``env`` added to its environment); stopped by PID on leaving (it also exits when our end
    of its stdin closes)."""
    with log.open("w") as err:
        proc = subprocess.Popen(
            [str(binary), "-l", "127.0.0.1:0", "-username", USER, "-password", PASSWORD,
             "-stdinexit"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
            env={**os.environ, "TMPDIR": str(tmpdir), "VCSIM_HOST_ENDPOINTS": "1",
                 **(env or {})})
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # vcsim prints this line once it listens
        if not line.startswith("VCSIM_URL="):
            raise BenchError(f"vcsim did not start: {line!r}; see {log}")
        info = dict(kv.split("=", 1) for kv in line.split())
        yield Sim(info["VCSIM_HOST"], int(info["VCSIM_PORT"]), int(info["VCSIM_PID"]))
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------------------------------------
# The VM's disk


@dataclass(frozen=True, slots=True)
class Disk:
    datacenter: str
    datastore: str
    flat_rel: str  # the -flat.vmdk's path inside the datastore
    local: Path  # the same file in vcsim's datastore folder
    size: int

    @property
    def url_path(self) -> str:
        query = urllib.parse.urlencode({"dcPath": self.datacenter, "dsName": self.datastore})
        return "/folder/" + urllib.parse.quote(self.flat_rel) + "?" + query


def _disks(vm: Any) -> list[Any]:
    return [d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk)]


def resize_disk(session: VSphereSession, size: int) -> Disk:
    """Give the VM's (only) disk ``size`` bytes of capacity; return where its flat file is."""
    info = find_vm(session, VM)
    vm: Any = session.content.searchIndex.FindByUuid(None, info.instance_uuid, True, True)
    disks = _disks(vm)
    if len(disks) != 1:
        raise BenchError(f"{VM} has {len(disks)} disks; expected the simulator's single disk")
    disk = disks[0]
    disk.capacityInKB = size // 1024
    disk.capacityInBytes = size
    change = vim.vm.device.VirtualDeviceSpec(  # type: ignore[no-untyped-call]
        operation="edit", device=disk)
    WaitForTask(vm.ReconfigVM_Task(  # type: ignore[no-untyped-call]
        vim.vm.ConfigSpec(deviceChange=[change])))  # type: ignore[no-untyped-call]
    disk = _disks(vm)[0]
    got = int(disk.capacityInBytes or 0) or int(disk.capacityInKB) * 1024
    if got != size:
        raise BenchError(f"resizing {VM}'s disk gave {got} bytes, not {size}")
    ds_name, rel = split_datastore_path(str(disk.backing.fileName))
    roots = {str(ds.name): str(ds.info.url) for ds in vm.datastore}
    flat = flat_file_of(rel)
    return Disk(info.datacenter_path, ds_name, flat, Path(roots[ds_name]) / flat, size)


def install(image: Path, disk: Disk) -> None:
    """Make ``image`` the VM's current disk content (a sparse copy, renamed into place)."""
    tmp = disk.local.with_name(disk.local.name + ".bench-tmp")
    genimage.sparse_copy(image, tmp)
    os.replace(tmp, disk.local)


# ---------------------------------------------------------------------------------------------
# Measurements


def _cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` from /proc; 0 where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_times() -> list[int]:
    """The machine's CPU time counters (/proc/stat "cpu" line; empty where unavailable)."""
    try:
        return [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return []


def steal_share(before: list[int], after: list[int]) -> float | None:
    """Share of CPU time the hypervisor gave to others (steal) between two _cpu_times()."""
    if len(before) < 8 or len(after) < 8:
        return None
    delta = [a - b for a, b in zip(after, before, strict=False)]
    total = sum(delta[:8])  # user nice system idle iowait irq softirq steal
    return delta[7] / total if total > 0 else None


@dataclass(slots=True)
class CpuMeter:
    """CPU seconds used by this process and by vcsim since ``start``."""

    pid: int
    mine: float = 0.0
    sim: float = 0.0

    def start(self) -> None:
        self.mine, self.sim = _cpu_self(), _cpu_of(self.pid)

    def stop(self) -> tuple[float, float]:
        return _cpu_self() - self.mine, _cpu_of(self.pid) - self.sim


@dataclass(frozen=True, slots=True)
class Sample:
    seconds: float  # what the row's throughput is computed from
    nbytes: int  # bytes fetched
    cpu: float  # CPU seconds of this process while reading
    cpu_sim: float  # CPU seconds of vcsim while reading
    wall: float | None = None  # vmkeep: the whole backup_vm call
    stored: int | None = None  # vmkeep: bytes written to packs


def _timed_threads(sim: Sim, worker: Callable[[int], None], count: int,
                   name: str) -> tuple[float, float, float]:
    """Run ``worker(0..count-1)`` in threads at once: (wall seconds, our CPU seconds,
    vcsim's CPU seconds) from the first start to the last join."""
    threads = [threading.Thread(target=worker, args=(s,), name=f"{name}-{s}")
               for s in range(count)]
    meter = CpuMeter(sim.pid)
    meter.start()
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    cpu, cpu_sim = meter.stop()
    return seconds, cpu, cpu_sim


def plain_download(sim: Sim, session: VSphereSession, disk: Disk, streams: int,
                   request: int) -> Sample:
    """Fetch the whole flat file in ``request``-byte Range GETs over ``streams`` keep-alive
    connections (one per thread), reading into a buffer that is thrown away."""
    n_requests = (disk.size + request - 1) // request
    next_index = iter(range(n_requests))
    lock = threading.Lock()
    got = [0] * streams
    errors: list[BaseException] = []
    cookie = session.cookie
    ctx: ssl.SSLContext = session.ssl_context

    def worker(slot: int) -> None:
        conn = http.client.HTTPSConnection(sim.host, sim.port, timeout=60, context=ctx)
        view = memoryview(bytearray(request))
        try:
            while not errors:
                with lock:
                    i = next(next_index, None)
                if i is None:
                    return
                first = i * request
                last = min(disk.size, first + request) - 1
                conn.request("GET", disk.url_path, headers={
                    "Range": f"bytes={first}-{last}",
                    "Cookie": f"vmware_soap_session={cookie}",
                    "Accept": "application/octet-stream",
                })
                resp = conn.getresponse()
                if resp.status != 206:
                    raise BenchError(f"plain download: HTTP {resp.status} for bytes "
                                     f"{first}-{last}")
                want = last - first + 1
                have = 0
                while have < want:
                    n = resp.readinto(view[have:want])
                    if not n:
                        break
                    have += n
                resp.read()  # nothing is left: this readies the connection for reuse
                if have != want:
                    raise BenchError(f"plain download: {have} of {want} bytes at {first}")
                got[slot] += have
        except BaseException as exc:
            errors.append(exc)
        finally:
            conn.close()

    seconds, cpu, cpu_sim = _timed_threads(sim, worker, streams, "plain")
    if errors:
        raise BenchError(f"plain download failed: {errors[0]}") from errors[0]
    if sum(got) != disk.size:
        raise BenchError(f"plain download fetched {sum(got)} of {disk.size} bytes")
    return Sample(seconds, sum(got), cpu, cpu_sim)


def host_plain_download(sim: Sim, session: VSphereSession, disk: Disk, streams: int,
                        request: int) -> Sample:
    """Fetch the whole flat file from the ESXi host that runs the VM: the file cut into
    ``streams`` contiguous regions, each one Range GET with a service ticket of its own (they
    are single-use), read ``request`` bytes at a time into a buffer that is thrown away."""
    host = host_of_vm(session, find_vm(session, VM).moref)
    path = host_url_path(disk.datastore, disk.flat_rel)
    address = f"[{host.address}]" if ":" in host.address else host.address
    url = f"https://{address}:{host.port}{path}"
    per = -(-disk.size // streams)
    regions = [(first, min(disk.size, first + per) - 1)
               for first in range(0, disk.size, per)]
    got = [0] * len(regions)
    errors: list[BaseException] = []
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # a throwaway test certificate

    def worker(slot: int) -> None:
        first, last = regions[slot]
        conn = http.client.HTTPSConnection(host.address, host.port, timeout=60, context=ctx)
        view = memoryview(bytearray(request))
        try:
            conn.request("GET", path, headers={
                "Range": f"bytes={first}-{last}",
                "Cookie": f"{TICKET_COOKIE}={service_ticket(session, url)}",
                "Accept": "application/octet-stream",
            })
            resp = conn.getresponse()
            if resp.status != 206:
                raise BenchError(f"plain download (host): HTTP {resp.status} for bytes "
                                 f"{first}-{last}")
            while n := resp.readinto(view):
                got[slot] += n
        except BaseException as exc:
            errors.append(exc)
        finally:
            conn.close()

    seconds, cpu, cpu_sim = _timed_threads(sim, worker, len(regions), "host-plain")
    if errors:
        raise BenchError(f"plain download (host) failed: {errors[0]}") from errors[0]
    if sum(got) != disk.size:
        raise BenchError(f"plain download (host) fetched {sum(got)} of {disk.size} bytes")
    return Sample(seconds, sum(got), cpu, cpu_sim)


def transport_reads(sim: Sim, session: VSphereSession, disk: Disk, threads: int,
                    request: int) -> Sample:
    """vmkeep's HTTPS transport alone: DatastoreDiskSource.read of the whole flat file in
    ``request``-byte reads from a pool of ``threads`` (as the backup's pool calls it), the bytes
    dropped: what the transport costs next to the plain download, without hashing or packing."""
    endpoint = DatastoreEndpoint(session.host, session.port, session.cookie,
                                 session.ssl_context)
    src = DatastoreDiskSource(endpoint, disk.datacenter, disk.datastore, disk.flat_rel,
                              disk.size, "bench", [Extent(0, disk.size)])
    meter = CpuMeter(sim.pid)
    try:
        meter.start()
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="reads") as pool:
            got = sum(map(len, pool.map(lambda off: src.read(off, request),
                                        range(0, disk.size, request))))
        seconds = time.perf_counter() - t0
        cpu, cpu_sim = meter.stop()
    finally:
        src.close()
    if got != disk.size:
        raise BenchError(f"transport reads fetched {got} of {disk.size} bytes")
    return Sample(seconds, got, cpu, cpu_sim)


BenchTransport = Literal["https", "host", "direct"]  # "https": the vCenter's /folder


def vmkeep_backup(sim: Sim, session: VSphereSession, disk: Disk, repo: Repository,
                  cat: Catalog, options: BackupOptions, transport: BenchTransport,
                  kind: str) -> Sample:
    """One backup_vm call; CPU is counted from the snapshot being taken (``before_read``)."""
    logs: list[tuple[str, str]] = []
    meter = CpuMeter(sim.pid)
    t0 = time.perf_counter()
    with open_workspace(repo, cat.cursor, exclusive=False, operation="bench") as ws:
        r = backup_vm(session, ws, VM, options, enable_cbt_consent=True,
                      transport="vcenter" if transport == "https" else transport,
                      datastore_paths={disk.datastore: str(disk.local)[
                          : -len(disk.flat_rel)].rstrip("/")},
                      log=lambda lvl, m: logs.append((lvl, m)),
                      before_read=meter.start)
    wall = time.perf_counter() - t0
    cpu, cpu_sim = meter.stop()
    problems = [m for lvl, m in logs if lvl != "info"]
    if r.point_id is None or r.backup is None or r.status != "success":
        raise BenchError(f"vmkeep {transport} {kind} backup: status {r.status}: {problems}")
    if r.backup.kind != kind:
        raise BenchError(f"vmkeep {transport} backup was {r.backup.kind}, expected {kind} "
                         f"({r.backup.reason})")
    fetched = sum(d.bytes_read for d in r.disks)  # with the CBT sanity samples
    return Sample(r.backup.seconds, fetched, cpu, cpu_sim, wall, r.backup.bytes_stored)


@dataclass(slots=True)
class Bench:
    sim: Sim
    session: VSphereSession
    disk: Disk
    images: bench_run.Images
    repo_dir: Path
    options: BackupOptions
    streams: int
    samples: dict[str, list[Sample]] = field(default_factory=lambda: {k: [] for k in ROWS})

    def _backup(self, row: str, repo: Repository, cat: Catalog, transport: BenchTransport,
                kind: str) -> str:
        s = vmkeep_backup(self.sim, self.session, self.disk, repo, cat, self.options,
                          transport, kind)
        self.samples[row].append(s)
        return f"{transport} {kind[:4]} {s.seconds:5.2f} s ({s.wall or 0:5.2f} s)"

    def one_run(self, n: int) -> None:
        """Plain download, HTTPS full + incremental, host full, direct full: each in a fresh
        repository."""
        install(self.images.base, self.disk)
        s = plain_download(self.sim, self.session, self.disk, self.streams,
                           self.options.block_size)
        self.samples[PLAIN].append(s)
        line = [f"run {n}: plain {s.seconds:5.2f} s"]
        s = host_plain_download(self.sim, self.session, self.disk, self.streams,
                                self.options.block_size)
        self.samples[HOST_PLAIN].append(s)
        line.append(f"host plain {s.seconds:5.2f} s")
        s = transport_reads(self.sim, self.session, self.disk, self.options.read_streams,
                            self.options.block_size)
        self.samples[READS].append(s)
        line.append(f"reads {s.seconds:5.2f} s")
        for transport in ("https", "host", "direct"):
            d = self.repo_dir / f"repo-{transport}"
            shutil.rmtree(d, ignore_errors=True)
            repo = Repository.open_local(d, create=True)
            cat = Catalog.open(None)
            try:
                if transport == "https":
                    line.append(self._backup(HTTPS, repo, cat, "https", "full"))
                    install(self.images.incr, self.disk)
                    line.append(self._backup(INCR, repo, cat, "https", "incremental"))
                    install(self.images.base, self.disk)
                elif transport == "host":
                    line.append(self._backup(HOST, repo, cat, "host", "full"))
                else:
                    line.append(self._backup(DIRECT, repo, cat, "direct", "full"))
            finally:
                cat.close()
                shutil.rmtree(d, ignore_errors=True)
        print("  ".join(line), flush=True)


# ---------------------------------------------------------------------------------------------
# Table


def _med(values: Sequence[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return statistics.median(got) if got else None


def _fmt(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def render(samples: dict[str, list[Sample]]) -> tuple[str, float | None, float | None]:
    """The table, and vmkeep HTTPS full / plain download throughput (data path, whole call)."""
    med: dict[str, dict[str, float | None]] = {}
    for row, ss in samples.items():
        med[row] = {
            "s": _med([s.seconds for s in ss]),
            "mb": _med([s.nbytes / MB for s in ss]),
            "rate": _med([s.nbytes / s.seconds / MB for s in ss]),
            "wall": _med([s.wall for s in ss]),
            "wrate": _med([s.nbytes / s.wall / MB for s in ss if s.wall]),
            "cpu": _med([s.cpu for s in ss]),
            "cpu_sim": _med([s.cpu_sim for s in ss]),
            "stored": _med([s.stored / MB if s.stored is not None else None for s in ss]),
        }

    def ratio(row: str, key: str) -> float | None:
        """Against the plain download of the same path (the host's for the host row)."""
        v = med[row][key]
        base = med[HOST_PLAIN if row == HOST else PLAIN]["rate"]
        return None if v is None or not base or row in (PLAIN, HOST_PLAIN, INCR) else v / base

    cols = ["", "time s", "MB fetched", "MB/s", "x plain", "backup_vm s", "MB/s whole",
            "x plain whole", "CPU s client", "CPU s vcsim", "MB stored"]
    rows = [cols]
    for row in ROWS:
        m = med[row]
        rows.append([row, _fmt(m["s"]), _fmt(m["mb"], 0), _fmt(m["rate"], 0),
                     "1.00" if row in (PLAIN, HOST_PLAIN) else _fmt(ratio(row, "rate")),
                     _fmt(m["wall"]), _fmt(m["wrate"], 0), _fmt(ratio(row, "wrate")),
                     _fmt(m["cpu"]), _fmt(m["cpu_sim"]), _fmt(m["stored"], 0)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(cols))]
    lines = []
    for i, r in enumerate(rows):
        cells = [c.ljust(w) if j == 0 else c.rjust(w)
                 for j, (c, w) in enumerate(zip(r, widths, strict=True))]
        lines.append("| " + " | ".join(cells) + " |")
        if i == 0:
            lines.append("| " + " | ".join("-" * w for w in widths) + " |")
    return "\n".join(lines), ratio(HTTPS, "rate"), ratio(HOST, "rate")


def cpu_ceiling(samples: dict[str, list[Sample]]) -> float | None:
    """MB/s the HTTPS full backup could reach if every core were busy all the time: the
    transport's CPU per byte (reads-only row, both processes) for the bytes it fetched, plus the
    CPU of the rest of the backup (direct row, which fetches the same bytes without TLS)."""
    per_byte = _med([(s.cpu + s.cpu_sim) / s.nbytes for s in samples[READS]])
    processing = _med([s.cpu + s.cpu_sim for s in samples[DIRECT]])
    fetched = _med([float(s.nbytes) for s in samples[HTTPS]])
    if per_byte is None or processing is None or fetched is None:
        return None
    cpu_seconds = per_byte * fetched + processing
    return fetched / (cpu_seconds / (os.cpu_count() or 1)) / MB


# ---------------------------------------------------------------------------------------------
# Main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="1G", help="disk size, e.g. 256M, 1G (default 1G)")
    p.add_argument("--runs", type=int, default=3, help="runs; the table shows medians (3)")
    p.add_argument("--streams", type=int, default=None,
                   help="plain download streams (default: as many as vmkeep reads with)")
    p.add_argument("--threads", type=int, default=None,
                   help="BackupOptions.threads for vmkeep (default: BackupOptions' default)")
    p.add_argument("--block-size", default=None,
                   help="BackupOptions.block_size, also the plain download's request size "
                        "(256K, 512K, 1M, 4M; default: BackupOptions' default)")
    p.add_argument("--compression", default=None, choices=sorted(codec.COMPRESSIONS),
                   help="BackupOptions.compression (default: BackupOptions' default)")
    p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR,
                   help="default <repo>/.bench; images and logs go to WORKDIR/vsphere")
    p.add_argument("--datastore-dir", type=Path, default=None,
                   help="where vcsim keeps its datastores (default /dev/shm when it has room: "
                        "the simulated ESXi's disk I/O is then not on ours)")
    p.add_argument("--repo-dir", type=Path, default=None,
                   help="where the repositories are made (default WORKDIR/vsphere)")
    return p.parse_args(argv)


def _datastore_dir(given: Path | None, workdir: Path, size: int) -> Path:
    if given is not None:
        return given
    # the live disk, one install copy and the snapshot's frozen copy
    if SHM.is_dir() and os.access(SHM, os.W_OK) and shutil.disk_usage(SHM).free > 4 * size:
        return SHM
    return workdir


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        size = genimage.parse_size(args.size)
    except ValueError as err:
        print(f"vsphere.py: {err}", file=sys.stderr)
        return 2
    if min(args.runs, args.streams or 1, args.threads or 1) < 1:
        print("vsphere.py: --runs, --streams and --threads must be at least 1", file=sys.stderr)
        return 2
    options = BackupOptions()
    try:
        if args.block_size is not None:
            options = replace(options, block_size=block_size_named(args.block_size))
    except UsageError as err:
        print(f"vsphere.py: {err}", file=sys.stderr)
        return 2
    if args.threads is not None:
        options = replace(options, threads=args.threads)
    if args.compression is not None:
        options = replace(options, compression=args.compression)
    # vmkeep reads with one HTTPS connection per read stream, one block per request.
    if not options.read_streams:
        options = replace(options, read_streams=max(options.threads, HTTPS_READ_STREAMS))
    streams = args.streams or options.read_streams
    workdir: Path = (args.workdir / "vsphere").resolve()
    repo_dir: Path = (args.repo_dir or workdir).resolve()
    # connect() warns about --insecure; vcsim's certificate is a throwaway test one.
    logging.getLogger("appliance.vsphere.session").setLevel(logging.ERROR)
    try:
        bench_run.check_disk(workdir, size, 1)
        repo_dir.mkdir(parents=True, exist_ok=True)
        binary = build_vcsim()
        images = bench_run.prepare_images(workdir, size, seed=1, fraction=0.02)
        ds_root = _datastore_dir(args.datastore_dir, workdir, size)
        ds_root.mkdir(parents=True, exist_ok=True)
    except (BenchError, bench_run.BenchError, OSError) as err:
        print(f"vsphere.py: {err}", file=sys.stderr)
        return 2

    simdir = Path(tempfile.mkdtemp(prefix="vmkeep-bench-vcsim-", dir=ds_root))
    # SIGTERM unwinds like Ctrl-C, so that vcsim is stopped and its folder removed.
    signal.signal(signal.SIGTERM, _terminated)
    try:
        with running_vcsim(binary, simdir, workdir / "vcsim.log") as sim, \
                connect(sim.host, sim.port, USER, PASSWORD, fingerprint=None,
                        insecure=True) as session:
            disk = resize_disk(session, size)
            bench = Bench(sim, session, disk, images, repo_dir, options, streams)
            print(f"vcsim pid {sim.pid} on {sim.host}:{sim.port}, datastores in {simdir}; "
                  f"repositories in {repo_dir}; load average {os.getloadavg()[0]:.2f}\n"
                  f"{VM}: [{disk.datastore}] {disk.flat_rel}, {genimage.format_size(size)}; "
                  f"vmkeep: {options.block_size // 1024} KiB blocks, {options.threads} backup "
                  f"threads, {options.read_streams} HTTPS streams, {options.compression}; "
                  f"plain download: {streams} streams x {options.block_size // 1024} KiB",
                  flush=True)
            before = _cpu_times()
            for n in range(1, args.runs + 1):
                bench.one_run(n)
            steal = steal_share(before, _cpu_times())
    except (BenchError, OSError) as err:
        print(f"vsphere.py: {err}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(simdir, ignore_errors=True)

    table, ratio, host_ratio = render(bench.samples)
    alloc = sum(e.length for e in genimage.data_extents(images.base))
    print()
    print(f"disk {genimage.format_size(size)} ({alloc / MiB:.0f} MiB allocated), median of "
          f"{args.runs} run(s), warm page cache, {os.cpu_count()} CPUs"
          + (f" ({steal:.0%} of CPU time stolen by the hypervisor)" if steal else "")
          + ", MB = 10^6 bytes. "
          "time s: data path (run_backup); backup_vm s: the whole call, with vcsim's snapshot")
    print(table)
    ceiling = cpu_ceiling(bench.samples)
    plain = _med([s.nbytes / s.seconds / MB for s in bench.samples[PLAIN]])
    if ceiling is not None and plain:
        print(f"CPU-bound ceiling of vmkeep https full on {os.cpu_count()} CPUs shared with "
              f"vcsim: {ceiling:.0f} MB/s ({ceiling / plain:.2f} x plain) = transport CPU "
              "(reads-only row) + backup CPU without TLS (direct row), every core busy")
    for name, r in (("https / plain download", ratio),
                    ("host / plain download (host)", host_ratio)):
        mark = "PASS" if r is not None and r >= TARGET else "BELOW"
        print(f"vmkeep {name} throughput: {_fmt(r)} (data path); target >= {TARGET:.2f}: "
              f"{mark}")
    plain_s = _med([s.seconds for s in bench.samples[PLAIN]])
    full_s = _med([s.seconds for s in bench.samples[HTTPS]])
    if plain_s and full_s:
        print(f"the same disk per second (download time / backup data-path time, as a backup "
              f"tool's processing rate counts it): {plain_s / full_s:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
