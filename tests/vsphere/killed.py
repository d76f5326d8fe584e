"""A backup killed mid-run: ``backup_vm`` in a child process that SIGKILLs itself at one of
its hooks, leaving what a crash leaves (its snapshot, attached disks, a repository without the
point). tests/vsphere/test_crash.py kills it before the first read, test_hotadd.py at the
first progress report of a hot-add read."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Literal

from tests.helpers import REPO_ROOT
from tests.vcsim import Vcsim

CHILD = """
import json, os, signal, sys
from pathlib import Path
from appliance.jobs.backup import BackupOptions
from appliance.jobs.vm_backup import backup_vm
from appliance.jobs.workspace import open_workspace
from appliance.repository.repo import Repository
from appliance.vsphere.session import connect
from catalog.store import Catalog

a = json.loads(sys.argv[1])
kill = {a["kill_at"]: lambda *_: os.kill(os.getpid(), signal.SIGKILL)}
transport = {"transport": a["transport"]} if a["transport"] else {}
with connect(a["host"], a["port"], a["user"], a["password"], fingerprint=None,
             insecure=True) as s:
    repo = Repository.open_local(Path(a["repo"]), create=True)
    with open_workspace(repo, Catalog.open(None).cursor, exclusive=False,
                        operation="backup") as ws:
        backup_vm(s, ws, a["vm"], BackupOptions(block_size=256 << 10),
                  enable_cbt_consent=True, log=lambda lvl, m: None, **transport, **kill)
"""


def killed_backup(vcsim: Vcsim, repo: Path, vm: str, *,
                  kill_at: Literal["before_read", "progress"],
                  transport: str | None = None) -> subprocess.CompletedProcess[str]:
    """Back up ``vm`` into the local repository ``repo`` (256 KiB blocks, CBT consent) in a
    child process that kills itself with SIGKILL when ``backup_vm`` calls its ``kill_at``
    hook; ``transport`` as ``backup_vm`` takes it (None: its default)."""
    args = {"host": vcsim.host, "port": vcsim.port, "user": vcsim.user,
            "password": vcsim.password, "repo": str(repo), "vm": vm, "kill_at": kill_at,
            "transport": transport}
    return subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
