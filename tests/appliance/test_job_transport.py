"""A job's disk transport (issue 13, §2): `job create --transport host|vcenter|direct` is kept
in the job's spec (host by default, also for jobs stored before the field existed), `direct`
needs `--datastore-path DS=DIR`, `job edit` changes it, and a run reads the way it says."""

from __future__ import annotations

import json

from appliance import api
from tests.appliance.lab import VM, Lab


def _log(lab: Lab, sid: str) -> list[str]:
    shown = json.loads(lab.vmkeep("session", "show", sid, "--json").out)
    return [line["message"] for line in shown["log"]]


def _spec(lab: Lab, job: str) -> dict[str, object]:
    spec: dict[str, object] = json.loads(lab.vmkeep("job", "show", job, "--json").out)["spec"]
    return spec


def test_a_jobs_transport_is_kept_and_used(lab: Lab) -> None:
    base = ("--vcenter", "vc", "--vm", VM, "--repo", "main", "--enable-cbt")
    assert lab.vmkeep("job", "create", "h", *base).code == 0
    assert (_spec(lab, "h")["transport"], _spec(lab, "h")["datastore_paths"]) == ("host", {})
    run = lab.vmkeep("job", "run", "h", "--wait")
    assert run.code == 0, run.err
    assert any("reading disks from host DC0_H0" in m for m in _log(lab, run.out.strip()))

    assert lab.vmkeep("job", "create", "v", *base, "--transport", "vcenter").code == 0
    assert _spec(lab, "v")["transport"] == "vcenter"
    run = lab.vmkeep("job", "run", "v", "--wait")
    assert run.code == 0, run.err
    assert any("through the vCenter" in m and "slower" in m
               for m in _log(lab, run.out.strip()))

    r = lab.vmkeep("job", "create", "d", *base, "--transport", "direct")
    assert r.code == 2 and "--datastore-path" in r.err, r.err
    r = lab.vmkeep("job", "create", "d", *base, "--transport", "direct",
                   "--datastore-path", "LocalDS_0=relative/dir")
    assert r.code == 2 and "absolute" in r.err, r.err
    root = str(lab.flat().parent.parent)
    r = lab.vmkeep("job", "create", "d", *base, "--transport", "direct",
                   "--datastore-path", f"LocalDS_0={root}")
    assert r.code == 0, r.err
    assert _spec(lab, "d")["datastore_paths"] == {"LocalDS_0": root}
    run = lab.vmkeep("job", "run", "d", "--wait")
    assert run.code == 0, run.err
    assert any("mounted here" in m for m in _log(lab, run.out.strip()))

    r = lab.vmkeep("job", "edit", "h", "--transport", "vcenter")
    assert r.code == 0, r.err
    assert _spec(lab, "h")["transport"] == "vcenter"
    r = lab.vmkeep("job", "edit", "h", "--transport", "direct")
    assert r.code == 2 and "--datastore-path" in r.err, r.err
    assert _spec(lab, "h")["transport"] == "vcenter"


def test_a_job_stored_before_transports_reads_from_the_host() -> None:
    old = {"name": "j", "vcenter": "vc", "vms": [], "repository": "main", "block_size": "1M",
           "compression": "zstd-fast", "enable_cbt": False, "quiesce": False,
           "sample_blocks": 4, "keep_last": None, "keep_days": None}
    spec = api.JobSpec.model_validate_json(json.dumps(old))
    assert spec.transport == "host" and spec.datastore_paths == {}
