"""The fake client cannot drift from the real one: same methods and signatures, and its
data comes from replies recorded from a real appliance, which fit the API models."""

from __future__ import annotations

import inspect

from pydantic import BaseModel

from appliance import api
from appliance.client import ApplianceClient
from tests.tui.fake import FakeClient
from tests.tui.record import load

MODELS: dict[str, type[BaseModel]] = {
          "handshake": api.Handshake, "vcenters": api.VCenter, "repositories": api.Repository,
          "jobs": api.Job, "sessions": api.SessionSummary, "session": api.Session,
          "points": api.Point, "inventory": api.InventoryVm, "hunter": api.HuntReport,
          "test_vcenter": api.VCenterTest, "verify": api.VerifyAnswer,
          "notifications": api.Notifications}


def public(cls: type) -> dict[str, inspect.Signature]:
    return {name: inspect.signature(fn) for name, fn in vars(cls).items()
            if callable(fn) and (not name.startswith("_") or name in ("__enter__", "__exit__"))
            and name != "from_environment"}


def test_the_fake_has_every_method_of_the_client_with_the_same_signature() -> None:
    real, fake = public(ApplianceClient), public(FakeClient)
    assert set(real) <= set(fake), set(real) - set(fake)
    for name, sig in real.items():
        want = str(sig).replace("ApplianceClient", "Self")
        assert str(fake[name]).replace("FakeClient", "Self") == want, name


def test_the_recorded_replies_fit_the_api_models() -> None:
    doc = load()
    for key, model in MODELS.items():
        value = doc[key]
        for item in value if isinstance(value, list) else [value]:
            model.model_validate(item)
    for answer in doc["queries"].values():
        api.QueryAnswer.model_validate(answer)
    assert doc["errors"]["add_vcenter_unpinned"]["code"] == "vsphere_fingerprint_required"


def test_the_fakes_backup_replies_fit_the_models_and_end_in_a_point() -> None:
    fake = FakeClient()
    s = fake.run_job("nightly")
    seen = []
    while True:
        session = fake.session(s.id, wait=1.0)
        api.Session.model_validate(session.model_dump(mode="json"))
        seen.append(session.tasks[0].bytes_done)
        if session.state != "running":
            break
    assert seen == sorted(seen) and len(seen) == fake.steps
    assert (session.state, session.result) == ("ended", "success")
    assert fake.points()[-1].id == session.tasks[0].point_id
