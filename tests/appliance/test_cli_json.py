"""`--json` on every command that prints a result (issue 15 item 9), and one exit code for an
existing restore target.

The commands are taken from the CLI's own parser: each one either takes ``--json`` or is in
``EXCLUDED`` (with the reason), so a new command without ``--json`` fails
``test_every_command_that_prints_a_result_takes_json``. Each command with ``--json`` is run
once against a lab appliance (vcsim as vCenter "vc", repository "main", a job "nightly" with a
point) and what it prints on stdout must be JSON, and nothing else."""

from __future__ import annotations

import argparse
import json
import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.cli.commands import build_parser
from tests.appliance.lab import VM, Lab, started_lab
from tests.helpers import make_image

# Commands that print no result of their own, or only stream one, and so take no --json.
EXCLUDED: dict[str, str] = {
    "appliance start": "starts the process; `appliance status --json` reports it",
    "appliance stop": "stops the process; exit 0 is its whole answer",
    "session follow": "streams a session's log while it runs",
    "tui": "opens the terminal UI",
}

# Commands with --json that this lab cannot run to a result: checked in the parser only.
PARSER_ONLY: dict[str, str] = {
    "repo edit": "an SSH repository (tests/appliance/test_sftp_repo.py has the host)",
    "repo harden": "an SSH repository with the immutable helper",
    "repo audit": "a hardened SSH repository",
    "restore postgres": "a point with a PostgreSQL base backup (test_postgres_pitr.py)",
    "job stop": "a running job: test_job_run_and_stop_print_json holds one",
}


def leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
           ) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every command of the CLI (`vcenter add`, `verify`, …) with its parser."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield " ".join(path), parser
    for action in subs:
        for name, sub in action.choices.items():
            yield from leaves(sub, (*path, name))


def takes_json(parser: argparse.ArgumentParser) -> bool:
    return any("--json" in a.option_strings for a in parser._actions)


COMMANDS = dict(leaves(build_parser()))
WITH_JSON = sorted(name for name, p in COMMANDS.items() if takes_json(p))


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]
    stdin: str = ""
    code: int = 0  # verify, check, backup: the exit code of their result, as without --json


@dataclass(frozen=True)
class World:
    lab: Lab
    point: str  # the job's point in "main"
    session: str
    image: Path  # a raw image file
    conn: tuple[str, ...]  # `vmkeep vsphere` connection options (password on stdin)


@pytest.fixture(scope="module")
def world(vcsim_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with started_lab(vcsim_binary, tmp_path_factory.mktemp("json")) as lab:
        lab.write(0, random.Random(15).randbytes(300 << 10))
        r = lab.vmkeep("job", "create", "nightly", "--vcenter", "vc", "--vm", VM, "--repo",
                       "main", "--enable-cbt")
        assert r.code == 0, r.err
        run = lab.vmkeep("job", "run", "nightly", "--wait")
        assert run.code == 0, run.err
        point = json.loads(lab.vmkeep("points", "list", "--json").out)[0]["id"]
        image = lab.tmp / "disk.img"
        make_image(image, size=1 << 20)
        sim = lab.sim
        conn = ("--host", sim.host, "--port", str(sim.port), "--user", sim.user,
                "--password-stdin", "--insecure")
        yield World(lab, point, run.out.strip(), image, conn)


def cases(w: World) -> dict[str, Case]:
    """One run of each command with --json, in the order they run (later ones use what
    earlier ones made); without the --json itself."""
    t, sim, pw = w.lab.tmp, w.lab.sim, w.lab.sim.password
    vs = str(t / "vsphere-repo")
    img = str(t / "image-repo")
    return {
        "appliance status": Case(()),
        "vcenter list": Case(()),
        "vcenter test": Case(("vc",)),
        "vcenter check": Case(("vc",)),
        "vcenter add": Case(("vc2", "--host", sim.host, "--port", str(sim.port), "--user",
                             sim.user, "--password-stdin", "--insecure"), stdin=pw),
        "vcenter edit": Case(("vc2", "--port", str(sim.port))),
        "vcenter remove": Case(("vc2",)),
        "repo add": Case(("second", "--path", str(t / "second"))),
        "repo list": Case(()),
        "repo rescan": Case(("second",)),
        "repo repair-key": Case(("second",)),  # intact and equal: nothing to do
        "repo remove": Case(("second",)),
        "catalog query": Case(("SELECT 1 AS one",)),
        "job list": Case(()),
        "job show": Case(("nightly",)),
        "job check": Case(("nightly",)),
        "job create": Case(("json-job", "--vcenter", "vc", "--vm", VM, "--repo", "main",
                            "--enable-cbt")),
        "job edit": Case(("json-job", "--keep-last", "3")),
        "job disable": Case(("json-job",)),
        "job enable": Case(("json-job",)),
        "job run": Case(("json-job", "--wait")),  # the session ended, as `session show`
        "job delete": Case(("json-job",)),
        "session list": Case(()),
        "session show": Case((w.session,)),
        "points list": Case(()),
        "inventory": Case(()),
        "alerts": Case(()),
        "notify show": Case(()),
        "notify set": Case(("--on", "failed")),
        "config schedule": Case(()),
        "config backup": Case(("--repo", "main", "--password-stdin"), stdin="config-pw"),
        "verify": Case(("--repo", "main")),
        "prune": Case(("--repo", "main", "--keep-last", "5", "--dry-run")),
        "hunter": Case(("--dry-run",)),
        "restore disk": Case((w.point, "--to", str(t / "restored.img"))),
        "restore vm": Case((w.point, "--name", "json-copy", "--dry-run")),
        "move": Case(("--job", "nightly", "--to", "offsite")),
        "vsphere fingerprint": Case(("--host", sim.host, "--port", str(sim.port))),
        "vsphere vms": Case(w.conn, stdin=pw),
        "vsphere backup": Case((*w.conn, "--repo", vs, VM), stdin=pw),
        "vsphere restore-vm": Case((*w.conn, "--repo", vs, "--name", "json-vm", "--dry-run",
                                    "@vsphere-point"), stdin=pw),
        "vsphere restore-disk": Case((*w.conn, "--repo", vs, "--vm", VM, "@vsphere-point"),
                                     stdin=pw),
        "vsphere hunter": Case((*w.conn, "--dry-run"), stdin=pw),
        "image backup": Case(("--repo", img, "--name", "disk", str(w.image))),
        "image points": Case(("--repo", img)),
        "image verify": Case(("--repo", img)),
        "image rescan": Case(("--repo", img)),
        "image restore": Case(("--repo", img, "@image-point", str(t / "image-restored.img"))),
        "image prune": Case(("--repo", img, "--keep-last", "1")),
        "image repair-config": Case(("--repo", str(t / "image-repo-copy"),)),
        "config restore": Case(("--from", str(t / "repo"), "--password-stdin"),
                               stdin="config-pw"),
    }


def test_every_command_that_prints_a_result_takes_json() -> None:
    lacking = sorted(set(COMMANDS) - set(WITH_JSON) - set(EXCLUDED))
    assert not lacking, f"these commands print a result but take no --json: {lacking}"
    stale = sorted(set(EXCLUDED) & set(WITH_JSON))
    assert not stale, f"these take --json now; drop them from EXCLUDED: {stale}"
    for name in PARSER_ONLY:
        assert takes_json(COMMANDS[name]), name


def test_an_existing_restore_target_exits_2_in_every_command(world: World) -> None:
    """The exit-code table's "restore target exists" (usage, 2): through the appliance and
    offline alike, with the same words."""
    lab = world.lab
    target = lab.tmp / "already-there.img"
    target.write_bytes(b"keep me")
    online = lab.vmkeep("restore", "disk", world.point, "--to", str(target))
    offline = lab.vmkeep("image", "restore", "--repo", str(lab.tmp / "repo"), world.point,
                         str(target))
    for r in (online, offline):
        assert r.code == 2, r
        assert f"restore target {target} already exists" in r.err
    assert target.read_bytes() == b"keep me"


def test_an_unknown_repository_name_says_a_name_is_expected(world: World) -> None:
    r = world.lab.vmkeep("verify", "--repo", "backups")
    assert r.code == 3
    assert "no repository named 'backups'" in r.err
    assert "--repo takes a repository's NAME here" in r.err and "vmkeep image" in r.err


def test_each_command_prints_json(world: World) -> None:
    w = world
    t = w.lab.tmp
    todo = cases(w)
    missing = sorted(set(WITH_JSON) - set(todo) - set(PARSER_ONLY))
    assert not missing, f"no --json run for: {missing}"
    made: dict[str, str] = {}
    problems: list[str] = []
    for name, case in todo.items():
        if name == "move":
            assert w.lab.vmkeep("repo", "add", "offsite", "--path", str(t / "offsite")).code == 0
        if name == "image repair-config":  # a copy of the image repository without its config
            shutil.copytree(w.lab.tmp / "image-repo", w.lab.tmp / "image-repo-copy")
            (w.lab.tmp / "image-repo-copy" / "config").unlink()
        args = tuple(made.get(a, a) for a in case.args)
        runner = w.lab
        if name == "config restore":  # only into a fresh appliance
            assert w.lab.vmkeep("appliance", "stop").code == 0
            runner = Lab(w.lab.tmp / "fresh", {**w.lab.env,
                                               "VMKEEP_HOME": str(w.lab.tmp / "fresh")},
                         w.lab.sim, w.lab.tmp)
            assert runner.vmkeep("appliance", "start").code == 0
        try:
            r = runner.vmkeep(*name.split(), *args, "--json", stdin=case.stdin)
        finally:
            if runner is not w.lab:
                runner.vmkeep("appliance", "stop")
                assert w.lab.vmkeep("appliance", "start").code == 0
        if r.code != case.code:
            problems.append(f"{name}: exit {r.code}, not {case.code}: {r.err.strip()}")
            continue
        try:
            value = json.loads(r.out)
        except ValueError:
            problems.append(f"{name}: stdout is not JSON: {r.out[:200]!r}")
            continue
        if not isinstance(value, (dict, list)):
            problems.append(f"{name}: {value!r} is neither an object nor a list")
        if name == "vsphere backup":
            made["@vsphere-point"] = value["point_id"]
        if name == "image backup":
            made["@image-point"] = value["point_id"]
    assert not problems, "\n".join(problems)


def test_json_keeps_the_exit_code_and_says_what_a_person_reads(world: World) -> None:
    lab = world.lab
    r = lab.vmkeep("verify", "--repo", "main", "--json")
    assert r.code == 0, r.err
    answer = json.loads(r.out)
    assert answer["ok"] is True and answer["damage"] == []
    human = lab.vmkeep("verify", "--repo", "main")
    assert human.out.startswith("ok: ")


def test_job_run_and_stop_print_json(lab: Lab) -> None:
    """`job run --json` prints the session started and `job stop --json` the appliance's
    answer while the session is held after its snapshot; `job run --wait --json` prints the
    session ended (as `session show --json`), with the exit code of its result."""
    release = lab.tmp / "release"
    assert lab.vmkeep("job", "create", "held", "--vcenter", "vc", "--vm", VM, "--repo", "main",
                      "--enable-cbt").code == 0
    assert lab.vmkeep("appliance", "stop").code == 0
    lab.env.update(VMKEEP_HOLD_AT=f"vm-snapshot-taken:{VM}", VMKEEP_HOLD_RELEASE=str(release))
    assert lab.vmkeep("appliance", "start").code == 0
    r = lab.vmkeep("job", "run", "held", "--json")
    assert r.code == 0, r.err
    started = json.loads(r.out)
    assert started["job"] == "held" and started["state"] == "running", started
    stop = lab.vmkeep("job", "stop", "held", "--json")
    assert stop.code == 0, stop.err
    assert set(json.loads(stop.out)) == {"message"}
    release.touch()
    assert lab.vmkeep("session", "follow", started["id"]).code == 2  # stopped
    waited = lab.vmkeep("job", "run", "held", "--wait", "--json")
    assert waited.code == 0, waited.err
    ended = json.loads(waited.out)
    assert ended["state"] == "ended" and ended["result"] == "success", ended
    shown = json.loads(lab.vmkeep("session", "show", ended["id"], "--json").out)
    # The session as it ended is the session a later read shows (its tasks' rates too: a
    # task no longer running has none; the session's stats have the run's rates).
    assert ended == shown
    assert ended["stats"]["read"] > 0
    assert f"session {ended['id']}: success in " in waited.err  # the summary, on stderr
