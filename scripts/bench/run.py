"""Benchmark vmkeep against borg, restic and Benji on the same VM-like image.

    python scripts/bench/run.py [--size 4G] [--runs 3] [--peers borg,restic,benji | --no-peers]
                                [--tools vmkeep,borg,...] [--workdir DIR]

Generates (once, cached in WORKDIR/images) a base image and an incremental one with about 2 % of its
1 MiB blocks changed plus the changed-areas list (see genimage.py). Then, interleaved (run 1 of
every tool, then run 2, ...), each tool in a fresh repository: a full backup of the base image, an
incremental backup of the changed image, the repository's disk usage, and a restore of the
incremental point to a file whose sha256 is checked against the source (outside the timing).
Each command's wall time and peak RSS (ru_maxrss from os.wait4) are recorded; the table shows the
median of the runs, and WORKDIR/results.json keeps every number.

Missing peers are installed with peers.sh (apt-get for borg and restic, a venv for Benji) unless
--no-install is given. `--no-peers --size 64M --runs 1` is the quick smoke test: vmkeep alone, no
network; the exit status is non-zero if any command failed or any restore did not match.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import genimage

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
DEFAULT_WORKDIR = REPO_ROOT / ".bench"
DEFAULT_BENJI_VENV = REPO_ROOT / ".bench" / "benji-venv"
ALL_PEERS = ("borg", "restic", "benji")
VM_NAME = "bench"
MiB = genimage.MiB


class BenchError(Exception):
    """A command or a check failed; the message says which and where its output is."""


# ---------------------------------------------------------------------------------------------
# Running commands


@dataclass(frozen=True, slots=True)
class Step:
    seconds: float
    max_rss_kib: int
    stdout: str


def run_cmd(
    argv: Sequence[str],
    *,
    log: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    ok_codes: tuple[int, ...] = (0,),
) -> Step:
    """Run argv, timing it; peak RSS comes from os.wait4 (this child and its waited-for children).

    stdout goes to LOG.out and is returned, stderr to LOG.err.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    out_path = log.with_suffix(".out")
    err_path = log.with_suffix(".err")
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        err.write(f"$ {shlex.join(argv)}\n".encode())
        err.flush()
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=full_env, cwd=cwd
        )
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code
    stdout = out_path.read_text(errors="replace")
    if code not in ok_codes:
        tail = err_path.read_text(errors="replace").strip().splitlines()[-15:]
        raise BenchError(
            f"`{shlex.join(argv)}` exited {code}; stderr in {err_path}:\n    " + "\n    ".join(tail)
        )
    return Step(seconds=seconds, max_rss_kib=int(usage.ru_maxrss), stdout=stdout)


def disk_usage(paths: Sequence[Path]) -> int:
    """Bytes allocated on disk (like du) under the given files and directories."""
    total = 0
    for path in paths:
        if path.is_file():
            total += path.stat().st_blocks * 512
            continue
        for root, _dirs, files in os.walk(path):
            for name in files:
                with contextlib.suppress(FileNotFoundError):
                    total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


def sha256_file(path: Path) -> str:
    """sha256 of a file; reading it also warms the page cache."""
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(8 * MiB)
        view = memoryview(buf)
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def link_as(target: Path, link: Path) -> None:
    """Make `link` a hard link to `target`, atomically replacing what was there."""
    tmp = link.with_name(link.name + ".new")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.link(target, tmp)
    os.replace(tmp, link)


# ---------------------------------------------------------------------------------------------
# Tool adapters


@dataclass(frozen=True, slots=True)
class Images:
    base: Path
    incr: Path
    areas: Path  # changed areas, vmkeep's --changed format
    base_hints: Path  # Benji rbd-diff hints: data extents of base
    incr_hints: Path  # Benji rbd-diff hints: changed areas
    incr_sha256: str


@dataclass(slots=True)
class RunCtx:
    """One tool's run: a fresh directory holding its repository, caches, logs and restore."""

    dir: Path
    images: Images
    source: Path  # hard link to the image being backed up; same path for full and incremental

    @property
    def repo(self) -> Path:
        return self.dir / "repo"

    @property
    def logs(self) -> Path:
        return self.dir / "logs"


class Tool(ABC):
    name: str

    @abstractmethod
    def missing(self) -> str | None:
        """Why the tool cannot run here, or None."""

    @abstractmethod
    def config(self) -> str:
        """One line saying how the tool is configured."""

    def init(self, ctx: RunCtx) -> None:  # noqa: B027 - optional hook
        """Create an empty repository (untimed)."""

    @abstractmethod
    def full(self, ctx: RunCtx) -> Step: ...

    @abstractmethod
    def incremental(self, ctx: RunCtx) -> Step: ...

    @abstractmethod
    def restore(self, ctx: RunCtx, out_dir: Path) -> tuple[Step, Path]:
        """Restore the incremental point under out_dir; return the step and the restored file."""

    def repo_paths(self, ctx: RunCtx) -> list[Path]:
        return [ctx.repo]

    def extra(self, ctx: RunCtx) -> dict[str, Any]:
        """Anything worth keeping in results.json (untimed)."""
        return {}


class Vmkeep(Tool):
    name = "vmkeep"

    def __init__(self, exe: str | None, backup_args: Sequence[str]) -> None:
        self.exe = exe
        self.backup_args = list(backup_args)
        self.points: list[str] = []
        self.seen = ""  # compression and block size, as `image points --json` reports them

    def missing(self) -> str | None:
        if self.exe is None:
            return "vmkeep CLI not found: run `.venv/bin/pip install -e .` or pass --vmkeep PATH"
        return None

    def config(self) -> str:
        args = " ".join(self.backup_args) or "defaults"
        seen = f": {self.seen}" if self.seen else ""
        return f"vmkeep image backup ({args}{seen}); incremental with --changed AREAS.json"

    def _env(self, ctx: RunCtx) -> dict[str, str]:
        return {"VMKEEP_CACHE_DIR": str(ctx.dir / "vmkeep-cache")}

    def _exe(self) -> str:
        assert self.exe is not None
        return self.exe

    def _backup(self, ctx: RunCtx, step: str, extra: list[str]) -> Step:
        argv = [self._exe(), "image", "backup", "--repo", str(ctx.repo), "--name", VM_NAME]
        res = run_cmd(
            [*argv, *extra, *self.backup_args, str(ctx.source)],
            log=ctx.logs / step,
            env=self._env(ctx),
        )
        lines = [ln.strip() for ln in res.stdout.splitlines() if ln.strip()]
        if not lines:
            raise BenchError(f"vmkeep image backup printed no point id (logs in {ctx.logs})")
        self.points.append(lines[-1])
        return res

    def init(self, ctx: RunCtx) -> None:
        self.points = []

    def full(self, ctx: RunCtx) -> Step:
        return self._backup(ctx, "full", [])

    def incremental(self, ctx: RunCtx) -> Step:
        return self._backup(ctx, "incr", ["--changed", str(ctx.images.areas)])

    def restore(self, ctx: RunCtx, out_dir: Path) -> tuple[Step, Path]:
        out = out_dir / "disk.img"
        argv = [self._exe(), "image", "restore", "--repo", str(ctx.repo), self.points[-1], str(out)]
        return run_cmd(argv, log=ctx.logs / "restore", env=self._env(ctx)), out

    def extra(self, ctx: RunCtx) -> dict[str, Any]:
        argv = [self._exe(), "image", "points", "--repo", str(ctx.repo), "--json"]
        try:
            res = run_cmd(argv, log=ctx.logs / "points", env=self._env(ctx))
            points = json.loads(res.stdout)
        except (BenchError, ValueError) as err:
            return {"points_error": str(err)}
        try:
            last = points[-1]
            self.seen = (
                f"compression {last['compression']}, "
                f"block size {last['disks'][0]['block_size'] // 1024} KiB"
            )
        except (LookupError, TypeError) as err:
            return {"points": points, "points_error": f"unexpected points JSON: {err!r}"}
        return {"points": points}


class Borg(Tool):
    name = "borg"
    compression = "zstd,3"

    def missing(self) -> str | None:
        return None if shutil.which("borg") else "borg not installed (peers.sh installs it)"

    def config(self) -> str:
        return (
            f"{_version(['borg', '--version'])}: init -e none, create --compression "
            f"{self.compression}, default chunker (buzhash 19,23,21,4095), extract --sparse"
        )

    def _env(self, ctx: RunCtx) -> dict[str, str]:
        return {
            "BORG_BASE_DIR": str(ctx.dir / "home"),
            "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
            "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes",
        }

    def init(self, ctx: RunCtx) -> None:
        run_cmd(
            ["borg", "init", "-e", "none", str(ctx.repo)], log=ctx.logs / "init", env=self._env(ctx)
        )

    def _create(self, ctx: RunCtx, archive: str) -> Step:
        argv = ["borg", "create", "--compression", self.compression]
        return run_cmd(
            [*argv, f"{ctx.repo}::{archive}", ctx.source.name],
            log=ctx.logs / archive,
            env=self._env(ctx),
            cwd=ctx.source.parent,
            ok_codes=(0, 1),  # 1 = warnings only
        )

    def full(self, ctx: RunCtx) -> Step:
        return self._create(ctx, "full")

    def incremental(self, ctx: RunCtx) -> Step:
        return self._create(ctx, "incr")

    def restore(self, ctx: RunCtx, out_dir: Path) -> tuple[Step, Path]:
        argv = ["borg", "extract", "--sparse", f"{ctx.repo}::incr", ctx.source.name]
        step = run_cmd(argv, log=ctx.logs / "restore", env=self._env(ctx), cwd=out_dir)
        return step, out_dir / ctx.source.name


class Restic(Tool):
    name = "restic"

    def missing(self) -> str | None:
        return None if shutil.which("restic") else "restic not installed (peers.sh installs it)"

    def config(self) -> str:
        return (
            f"{_version(['restic', 'version'])}: init --repository-version 2 (compression auto), "
            "backup, restore latest --target (0.14 restore writes zeros, no --sparse)"
        )

    def _env(self, ctx: RunCtx) -> dict[str, str]:
        return {
            "RESTIC_PASSWORD": "bench",
            "RESTIC_REPOSITORY": str(ctx.repo),
            "RESTIC_CACHE_DIR": str(ctx.dir / "cache"),
        }

    def init(self, ctx: RunCtx) -> None:
        argv = ["restic", "init", "--repository-version", "2"]
        run_cmd(argv, log=ctx.logs / "init", env=self._env(ctx))

    def _backup(self, ctx: RunCtx, step: str) -> Step:
        argv = ["restic", "backup", "--quiet", "--host", VM_NAME, str(ctx.source)]
        return run_cmd(argv, log=ctx.logs / step, env=self._env(ctx))

    def full(self, ctx: RunCtx) -> Step:
        return self._backup(ctx, "full")

    def incremental(self, ctx: RunCtx) -> Step:
        return self._backup(ctx, "incr")

    def restore(self, ctx: RunCtx, out_dir: Path) -> tuple[Step, Path]:
        argv = ["restic", "restore", "latest", "--host", VM_NAME, "--target", str(out_dir)]
        step = run_cmd(argv, log=ctx.logs / "restore", env=self._env(ctx))
        return step, out_dir / str(ctx.source).lstrip("/")


class Benji(Tool):
    name = "benji"
    block_size = 4 * MiB
    zstd_level = 3

    def __init__(self, exe: Path) -> None:
        self.exe = exe
        self.versions: list[str] = []

    def missing(self) -> str | None:
        return None if self.exe.exists() else f"{self.exe} not found (peers.sh installs Benji)"

    def config(self) -> str:
        return (
            f"benji {_version([str(self.exe.parent / 'pip'), 'show', 'benji'], 'Version: ')}: "
            f"file storage + sqlite, zstd level {self.zstd_level}, block size "
            f"{self.block_size // MiB} MiB, BLAKE2b-256; full with --rbd-hints = data extents "
            "(like rbd diff), incremental with --rbd-hints = changed areas and --base-version, "
            "restore --sparse"
        )

    def _config_file(self, ctx: RunCtx) -> Path:
        return ctx.dir / "benji.yaml"

    def _argv(self, ctx: RunCtx, *args: str) -> list[str]:
        return [str(self.exe), "-c", str(self._config_file(ctx)), "--log-level", "WARNING", *args]

    def init(self, ctx: RunCtx) -> None:
        self.versions = []
        ctx.repo.mkdir(parents=True)
        (ctx.repo / "data").mkdir()
        self._config_file(ctx).write_text(
            "configurationVersion: '1'\n"
            f"databaseEngine: sqlite:///{ctx.repo / 'benji.sqlite'}\n"
            "defaultStorage: store\n"
            f"logFile: {ctx.logs / 'benji.log'}\n"
            f"blockSize: {self.block_size}\n"
            "storages:\n"
            "  - name: store\n"
            "    storageId: 1\n"
            "    module: file\n"
            "    configuration:\n"
            f"      path: {ctx.repo / 'data'}\n"
            "      activeTransforms: [zstd]\n"
            "transforms:\n"
            "  - name: zstd\n"
            "    module: zstd\n"
            "    configuration:\n"
            f"      level: {self.zstd_level}\n"
            "ios:\n"
            "  - name: file\n"
            "    module: file\n"
        )
        ctx.logs.mkdir(parents=True, exist_ok=True)
        run_cmd(self._argv(ctx, "database-init"), log=ctx.logs / "init")

    def _backup(self, ctx: RunCtx, step: str, hints: Path, base: str | None) -> Step:
        args = ["-m", "backup", "--rbd-hints", str(hints)]
        if base is not None:
            args += ["--base-version", base]
        res = run_cmd(self._argv(ctx, *args, f"file://{ctx.source}", VM_NAME), log=ctx.logs / step)
        try:
            self.versions.append(str(json.loads(res.stdout)["versions"][0]["uid"]))
        except (ValueError, KeyError, IndexError) as err:
            raise BenchError(f"cannot read Benji's version uid from {ctx.logs / step}.out") from err
        return res

    def full(self, ctx: RunCtx) -> Step:
        return self._backup(ctx, "full", ctx.images.base_hints, None)

    def incremental(self, ctx: RunCtx) -> Step:
        return self._backup(ctx, "incr", ctx.images.incr_hints, self.versions[-1])

    def restore(self, ctx: RunCtx, out_dir: Path) -> tuple[Step, Path]:
        out = out_dir / "disk.img"
        argv = self._argv(ctx, "restore", "--sparse", self.versions[-1], f"file://{out}")
        return run_cmd(argv, log=ctx.logs / "restore"), out


def _version(argv: list[str], prefix: str = "") -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return argv[0]
    for line in out.splitlines():
        if line.startswith(prefix):
            return line[len(prefix) :].strip()
    return out.strip()


# ---------------------------------------------------------------------------------------------
# Images


def rbd_hints(areas: Sequence[genimage.Area]) -> list[dict[str, object]]:
    return [{"offset": a.offset, "length": a.length, "exists": "true"} for a in areas]


def prepare_images(workdir: Path, size: int, seed: int, fraction: float) -> Images:
    """Generate (or reuse) the base and incremental images and their hint files."""
    d = workdir / "images"
    d.mkdir(parents=True, exist_ok=True)
    tag = f"{genimage.format_size(size)}-s{seed}-f{fraction:g}-v{genimage.GENERATOR_VERSION}"
    base, incr = d / f"base-{tag}.img", d / f"incr-{tag}.img"
    areas, stamp = d / f"changed-{tag}.json", d / f"done-{tag}.json"
    base_hints, incr_hints = d / f"base-hints-{tag}.json", d / f"incr-hints-{tag}.json"
    if not (stamp.exists() and base.exists() and incr.exists() and areas.exists()):
        for old in d.iterdir():  # keep one image set only
            old.unlink()
        t0 = time.perf_counter()
        stats = genimage.generate_image(base, size, seed=seed)
        t1 = time.perf_counter()
        changed = genimage.make_incremental(base, incr, areas, seed=seed + 1, fraction=fraction)
        t2 = time.perf_counter()
        print(
            f"generated {base.name} ({stats.allocated / MiB:.0f} MiB allocated) "
            f"in {t1 - t0:.1f} s, "
            f"{incr.name} ({sum(a.length for a in changed) / MiB:.1f} MiB in {len(changed)} "
            f"changed areas) in {t2 - t1:.1f} s",
            flush=True,
        )
        stamp.write_text(json.dumps({"blocks": stats.blocks, "allocated": stats.allocated}) + "\n")
    base_hints.write_text(json.dumps(rbd_hints(list(genimage.data_extents(base)))) + "\n")
    incr_areas = [genimage.Area(a["offset"], a["length"]) for a in json.loads(areas.read_text())]
    incr_hints.write_text(json.dumps(rbd_hints(incr_areas)) + "\n")
    t0 = time.perf_counter()
    sha256_file(base)  # warm the page cache
    incr_sha = sha256_file(incr)
    print(f"read both images once to warm the page cache ({time.perf_counter() - t0:.1f} s)")
    return Images(base, incr, areas, base_hints, incr_hints, incr_sha)


def check_disk(workdir: Path, size: int, n_tools: int) -> None:
    """Refuse to start when the workdir's file system cannot hold images, a repo and a restore."""
    workdir.mkdir(parents=True, exist_ok=True)
    have_images = any((workdir / "images").glob("base-*.img"))
    # two images ~0.75 size each, one repository <= ~0.6 size at a time, one (maybe dense) restore
    need = (0 if have_images else 2 * size * 3 // 4) + size + size * 2 // 3 + 512 * MiB
    free = shutil.disk_usage(workdir).free
    if free < need:
        raise BenchError(
            f"{workdir} has {free / 2**30:.1f} GiB free but this run needs about "
            f"{need / 2**30:.1f} GiB; free some space, pick --workdir elsewhere or a smaller --size"
        )


# ---------------------------------------------------------------------------------------------
# Measuring


@dataclass(slots=True)
class RunResult:
    run: int
    full_s: float | None = None
    incr_s: float | None = None
    restore_s: float | None = None
    repo_bytes: int | None = None
    rss_kib: dict[str, int] = field(default_factory=dict)
    restore_ok: bool | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def run_tool_once(tool: Tool, workdir: Path, images: Images, run: int) -> RunResult:
    res = RunResult(run=run)
    ctx = RunCtx(dir=workdir / "runs" / tool.name, images=images, source=Path())
    shutil.rmtree(ctx.dir, ignore_errors=True)
    ctx.dir.mkdir(parents=True)
    src_dir = ctx.dir / "src"
    src_dir.mkdir()
    ctx.source = src_dir / "disk.img"
    out_dir = ctx.dir / "restore"
    out_dir.mkdir()
    try:
        tool.init(ctx)
        link_as(images.base, ctx.source)
        step = tool.full(ctx)
        res.full_s, res.rss_kib["full"] = step.seconds, step.max_rss_kib
        link_as(images.incr, ctx.source)
        step = tool.incremental(ctx)
        res.incr_s, res.rss_kib["incr"] = step.seconds, step.max_rss_kib
        res.repo_bytes = disk_usage(tool.repo_paths(ctx))
        res.extra = tool.extra(ctx)
        step, restored = tool.restore(ctx, out_dir)
        res.restore_s, res.rss_kib["restore"] = step.seconds, step.max_rss_kib
        if not restored.is_file():
            raise BenchError(f"{tool.name} restore produced no file at {restored}")
        got = sha256_file(restored)
        res.restore_ok = got == images.incr_sha256
        if not res.restore_ok:
            res.error = f"restored image sha256 {got} != source {images.incr_sha256}"
    except BenchError as err:
        res.error = str(err)
    finally:
        # keep logs and the repo of a failed run for a look; drop the bulky files of a good one
        shutil.rmtree(out_dir, ignore_errors=True)
        if res.error is None:
            shutil.rmtree(ctx.repo, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            ctx.source.unlink()
    return res


def _median(values: Sequence[float | int | None]) -> float | None:
    got = [float(v) for v in values if v is not None]
    return statistics.median(got) if got else None


def summarize(runs: Sequence[RunResult]) -> dict[str, float | None]:
    good = [r for r in runs if r.error is None]
    return {
        "full_s": _median([r.full_s for r in good]),
        "incr_s": _median([r.incr_s for r in good]),
        "restore_s": _median([r.restore_s for r in good]),
        "repo_mib": _median([r.repo_bytes / MiB if r.repo_bytes else None for r in good]),
        "peak_rss_mib": _median(
            [max(r.rss_kib.values()) / 1024 if r.rss_kib else None for r in good]
        ),
    }


def _fmt(v: float | None, digits: int = 2) -> str:
    return "FAIL" if v is None else f"{v:.{digits}f}"


def _ratio(peer: float | None, mine: float | None) -> str:
    if peer is None or mine is None or mine <= 0:
        return "-"
    return f"{peer / mine:.2f}x"


def render_table(summary: Mapping[str, Mapping[str, float | None]]) -> str:
    cols = ["tool", "full s", "incr s", "restore s", "repo MiB", "peak RSS MiB"]
    has_ref = "vmkeep" in summary and len(summary) > 1
    if has_ref:
        cols += ["full x", "incr x", "restore x"]
    rows = [cols, ["---"] * len(cols)]
    ref = summary.get("vmkeep", {})
    for name, s in summary.items():
        row = [
            name,
            _fmt(s["full_s"]),
            _fmt(s["incr_s"]),
            _fmt(s["restore_s"]),
            _fmt(s["repo_mib"], 1),
            _fmt(s["peak_rss_mib"], 1),
        ]
        if has_ref:
            row += [
                _ratio(s[k], ref.get(k)) if name != "vmkeep" else "1.00x"
                for k in ("full_s", "incr_s", "restore_s")
            ]
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(cols))]
    lines = []
    for r in rows:
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        if r[0] == "---":
            cells = ["-" * w for w in widths]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Main


def _find_vmkeep(given: str | None) -> str | None:
    if given:
        return given
    local = REPO_ROOT / ".venv" / "bin" / "vmkeep"
    return str(local) if local.exists() else shutil.which("vmkeep")


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--size", default="4G", help="image size, e.g. 64M, 1G, 4G (default 4G)")
    p.add_argument("--runs", type=int, default=3, help="runs per tool; the table shows medians")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--peers", default=",".join(ALL_PEERS), help="peers to compare with vmkeep")
    g.add_argument("--no-peers", action="store_true", help="vmkeep alone (smoke test)")
    g.add_argument("--tools", help="exact tool list, e.g. borg,restic,benji (vmkeep not implied)")
    p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="default: <repo>/.bench")
    p.add_argument("--seed", type=int, default=1, help="image PRNG seed")
    p.add_argument("--changed-fraction", type=float, default=0.02, help="share of blocks changed")
    p.add_argument("--vmkeep", help="vmkeep executable (default: <repo>/.venv/bin/vmkeep)")
    p.add_argument(
        "--vmkeep-backup-args",
        default="",
        help="extra arguments for `vmkeep image backup`, e.g. '--block-size 1M'",
    )
    p.add_argument("--benji-venv", type=Path, default=DEFAULT_BENJI_VENV, help="Benji's venv")
    p.add_argument("--no-install", action="store_true", help="never run peers.sh")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        size = genimage.parse_size(args.size)
    except ValueError as err:
        print(f"run.py: {err}", file=sys.stderr)
        return 2
    if args.runs < 1:
        print("run.py: --runs must be at least 1", file=sys.stderr)
        return 2
    if args.tools:
        names = _split(args.tools)
    elif args.no_peers:
        names = ["vmkeep"]
    else:
        names = ["vmkeep", *_split(args.peers)]
    factories: dict[str, Callable[[], Tool]] = {
        "vmkeep": lambda: Vmkeep(_find_vmkeep(args.vmkeep), shlex.split(args.vmkeep_backup_args)),
        "borg": Borg,
        "restic": Restic,
        "benji": lambda: Benji(args.benji_venv / "bin" / "benji"),
    }
    unknown = [n for n in names if n not in factories]
    if unknown or not names:
        print(
            f"run.py: unknown tools {unknown}; choose from {', '.join(factories)}", file=sys.stderr
        )
        return 2
    tools = [factories[n]() for n in dict.fromkeys(names)]

    missing = {t.name: m for t in tools if (m := t.missing()) is not None}
    if missing and not args.no_install and set(missing) & set(ALL_PEERS):
        print(
            f"installing peers ({', '.join(sorted(set(missing) & set(ALL_PEERS)))}) with peers.sh"
        )
        subprocess.run(["bash", str(HERE / "peers.sh"), str(args.benji_venv)], check=False)
        tools = [factories[t.name]() for t in tools]
        missing = {t.name: m for t in tools if (m := t.missing()) is not None}
    if missing:
        for name, why in missing.items():
            print(f"run.py: {name}: {why}", file=sys.stderr)
        return 2

    workdir: Path = args.workdir.resolve()
    try:
        check_disk(workdir, size, len(tools))
        images = prepare_images(workdir, size, args.seed, args.changed_fraction)
    except (BenchError, OSError) as err:
        print(f"run.py: {err}", file=sys.stderr)
        return 2

    results: dict[str, list[RunResult]] = {t.name: [] for t in tools}
    for run in range(1, args.runs + 1):
        for tool in tools:
            r = run_tool_once(tool, workdir, images, run)
            results[tool.name].append(r)
            if r.error is None:
                print(
                    f"run {run} {tool.name:7} full {r.full_s:7.2f} s  incr {r.incr_s:7.2f} s  "
                    f"restore {r.restore_s:7.2f} s  repo {(r.repo_bytes or 0) / MiB:8.1f} MiB  "
                    f"rss {max(r.rss_kib.values()) / 1024:7.1f} MiB",
                    flush=True,
                )
            else:
                print(f"run {run} {tool.name:7} FAILED: {r.error}", flush=True)

    configs = {t.name: t.config() for t in tools}
    summary = {name: summarize(rs) for name, rs in results.items()}
    table = render_table(summary)
    alloc = sum(e.length for e in genimage.data_extents(images.base))
    changed = sum(a["length"] for a in json.loads(images.areas.read_text()))
    print()
    print(
        f"image {genimage.format_size(size)} ({alloc / MiB:.0f} MiB allocated), incremental "
        f"{changed / MiB:.1f} MiB changed; median of {args.runs} run(s), warm page cache, "
        f"{os.cpu_count()} CPUs"
    )
    print(table)
    if "vmkeep" in summary and len(summary) > 1:
        print("x = peer time / vmkeep time (above 1: vmkeep is faster)")
    for name, cfg in configs.items():
        print(f"- {name}: {cfg}")

    failures = [(n, r) for n, rs in results.items() for r in rs if r.error is not None]
    doc = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": {"machine": platform.machine(), "cpus": os.cpu_count(), "python": sys.version},
        "params": {
            "size": size,
            "runs": args.runs,
            "seed": args.seed,
            "changed_fraction": args.changed_fraction,
            "tools": list(results),
        },
        "images": {
            "base": str(images.base),
            "incremental": str(images.incr),
            "changed_areas": str(images.areas),
            "allocated_bytes": alloc,
            "changed_bytes": changed,
            "incremental_sha256": images.incr_sha256,
        },
        "configs": configs,
        "summary": summary,
        "runs": {name: [asdict(r) for r in rs] for name, rs in results.items()},
        "table": table,
        "ok": not failures,
    }
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for path in (workdir / "results.json", workdir / f"results-{stamp}.json"):
        path.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"results: {workdir / 'results.json'}")
    if failures:
        for name, r in failures:
            print(f"FAILED: {name} run {r.run}: {r.error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
