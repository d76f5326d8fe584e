"""Issue 13 §4: a backup outlives the vCenter's session idle timeout. The session is kept
alive with ``CurrentTime`` calls while it is open, and a datastore read that finds its
session gone anyway logs in again and goes on with the new cookie.

The simulator expires idle sessions after two seconds (``VCSIM_SESSION_IDLE``), and its
``/folder`` needs a live session's cookie (``VCSIM_FOLDER_AUTH``); reads there do not keep a
session alive, as on vCenter. A backup is held after its snapshot (hold point
``vm-snapshot-taken``) until a session that nobody keeps alive has expired: the ordering comes
from the simulator's own answer, not from a clock."""

from __future__ import annotations

import logging
from collections.abc import Callable

import httpx
import pytest

from appliance import faults
from appliance.vsphere.session import VSphereSession, connect
from tests.helpers import poll
from tests.vcsim import Vcsim
from tests.vsphere.vmenv import VM, Env

STRICT = {"VCSIM_SESSION_IDLE": "2s", "VCSIM_FOLDER_AUTH": "1"}
pytestmark = pytest.mark.parametrize("vcsim", [STRICT], indirect=True)


def _status(sim: Vcsim, cookie: str) -> int:
    """What the vCenter's ``/folder`` answers a small file's GET with this session cookie."""
    url = (f"https://{sim.host}:{sim.port}/folder/{VM}/{VM}.vmx"
           "?dcPath=DC0&dsName=LocalDS_0")
    r = httpx.get(url, cookies={"vmware_soap_session": cookie}, verify=False, timeout=30)
    return r.status_code


def _login(sim: Vcsim, keepalive: float | None) -> VSphereSession:
    return connect(sim.host, sim.port, sim.user, sim.password, fingerprint=None,
                   insecure=True, keepalive=keepalive)


def _until_expired(sim: Vcsim, session: VSphereSession) -> Callable[[str], None]:
    """A hold point's hook: wait until ``session`` (kept alive by nobody) has expired."""
    cookie = session.cookie

    def hold(_detail: str) -> None:
        poll("a session nobody keeps alive to expire", lambda: _status(sim, cookie) == 401,
             30, every=0.2)
    return hold


def test_a_session_kept_alive_outlives_the_idle_timeout(vcsim: Vcsim) -> None:
    with _login(vcsim, None) as idle, _login(vcsim, 0.5) as kept:
        assert _status(vcsim, idle.cookie) == _status(vcsim, kept.cookie) == 200
        _until_expired(vcsim, idle)("")
        assert _status(vcsim, kept.cookie) == 200  # the same age, kept alive


def test_a_backup_outlives_the_idle_timeout(env: Env, vcsim: Vcsim,
                                            caplog: pytest.LogCaptureFixture) -> None:
    want = env.content(1)  # (env's own session is not kept alive: read it now)
    with _login(vcsim, None) as idle, _login(vcsim, 0.5) as kept:
        env.session = kept
        with caplog.at_level(logging.INFO, "appliance.vsphere"), \
                faults.hooked("vm-snapshot-taken", _until_expired(vcsim, idle)):
            r = env.backup(transport="vcenter")
    assert r.status == "success", env.logs
    assert env.restored(r.point_id or "", 1) == want
    assert "logging in again" not in caplog.text  # it never expired


def test_a_read_that_finds_its_session_expired_logs_in_again(
        env: Env, vcsim: Vcsim, caplog: pytest.LogCaptureFixture) -> None:
    want = env.content(1)
    with _login(vcsim, None) as lone:
        env.session = lone
        with caplog.at_level(logging.INFO, "appliance.vsphere"), \
                faults.hooked("vm-snapshot-taken", _until_expired(vcsim, lone)):
            r = env.backup(transport="vcenter")
    assert r.status == "success", env.logs
    assert env.restored(r.point_id or "", 1) == want
    assert "logging in again" in caplog.text
