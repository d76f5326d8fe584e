"""Connecting to vSphere: fingerprint pinning, --insecure, and one-line errors (vcsim)."""

from __future__ import annotations

import hashlib
import socket
import ssl
import time

import pytest

from appliance.errors import VmkeepError
from appliance.vsphere.inventory import list_vms
from appliance.vsphere.session import (
    FingerprintMismatchError,
    FingerprintRequiredError,
    VSphereLoginError,
    VSphereUnreachableError,
    connect,
    fetch_fingerprint,
    format_fingerprint,
)
from tests.vcsim import Vcsim


def _server_fingerprint(sim: Vcsim) -> str:
    pem = ssl.get_server_certificate((sim.host, sim.port))
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


def _one_line(err: VmkeepError) -> str:
    text = str(err)
    assert "\n" not in text and "Traceback" not in text
    return text


def test_fetch_fingerprint_matches_the_served_certificate(vcsim: Vcsim) -> None:
    assert fetch_fingerprint(vcsim.host, vcsim.port) == _server_fingerprint(vcsim)


def test_connect_with_the_right_fingerprint_in_any_spelling(vcsim: Vcsim) -> None:
    pin = format_fingerprint(_server_fingerprint(vcsim)).lower()  # colons, lower case
    with connect(vcsim.host, vcsim.port, vcsim.user, vcsim.password, fingerprint=pin) as s:
        assert "govmomi simulator" in s.content.about.fullName
        assert s.cookie and s.cookie in s.cookie_header
        assert s.fingerprint == _server_fingerprint(vcsim)


def test_wrong_fingerprint_names_both(vcsim: Vcsim) -> None:
    with pytest.raises(FingerprintMismatchError) as info:
        connect(vcsim.host, vcsim.port, vcsim.user, vcsim.password, fingerprint="00" * 32)
    text = _one_line(info.value)
    assert format_fingerprint(_server_fingerprint(vcsim)) in text
    assert format_fingerprint("00" * 32) in text


def test_no_fingerprint_and_not_insecure_prints_the_servers(vcsim: Vcsim) -> None:
    with pytest.raises(FingerprintRequiredError) as info:
        connect(vcsim.host, vcsim.port, vcsim.user, vcsim.password, fingerprint=None)
    text = _one_line(info.value)
    assert format_fingerprint(_server_fingerprint(vcsim)) in text
    assert "--fingerprint" in text and "--insecure" in text


def test_insecure_connects_without_a_pin(vcsim: Vcsim) -> None:
    with connect(vcsim.host, vcsim.port, vcsim.user, vcsim.password, fingerprint=None,
                 insecure=True) as s:
        assert s.fingerprint is None
        assert s.content.about.apiType == "VirtualCenter"


def test_wrong_password_is_a_clear_error(vcsim: Vcsim) -> None:
    with pytest.raises(VSphereLoginError) as info:
        connect(vcsim.host, vcsim.port, vcsim.user, "wrong", fingerprint=None, insecure=True)
    text = _one_line(info.value)
    assert "password" in text and vcsim.user in text
    assert info.value.exit_code == 12


@pytest.mark.parametrize("insecure", [False, True])
def test_unreachable_port_fails_fast(insecure: bool) -> None:
    with socket.socket() as probe:  # a port nobody listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(VSphereUnreachableError) as info:
        connect("127.0.0.1", port, "u", "p", fingerprint="00" * 32, insecure=insecure,
                timeout=5)
    assert time.monotonic() - started < 5
    text = _one_line(info.value)
    assert f"127.0.0.1:{port}" in text and "refused" in text


def test_expired_session_logs_in_again(vcsim: Vcsim) -> None:
    with connect(vcsim.host, vcsim.port, vcsim.user, vcsim.password, fingerprint=None,
                 insecure=True) as s:
        before = s.cookie
        s.content.sessionManager.Logout()  # what an idle timeout does on the server
        assert len(list_vms(s)) == 4
        assert s.cookie != before
