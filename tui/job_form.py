"""A job's fields as the wizard's inputs show them (text, a checkbox, a choice), and back.

``form_of`` fills the inputs from a stored ``api.JobSpec`` (or a new job's defaults);
``job_fields`` reads them back into ``api.JobEdit`` fields. An input left as it was gives the
value it was filled from, so saving an unchanged job changes nothing. Schedule fields that
do not apply to the chosen kind (a day of month for a daily job) keep what the job had."""

from __future__ import annotations

from collections.abc import Mapping

from appliance import api

Value = str | bool
NTH_WORDS = {1: "first", 2: "second", 3: "third", 4: "fourth", -1: "last"}
#: The schedule inputs each kind reads; the others keep the stored value.
KIND_INPUTS: dict[str, tuple[str, ...]] = {
    "none": (), "daily": ("at", "days"), "monthly": ("at", "day", "nth", "weekday"),
    "periodic": ("every",), "after": ("after",)}


def number(x: float | None) -> str:
    """A number as typed: ``26`` for 26.0, every digit of ``45.123456789``."""
    if x is None:
        return ""
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def listed(items: list[str]) -> str:
    return ", ".join(items)


def form_of(spec: api.JobSpec | None) -> dict[str, Value]:
    """Every input's first value: the job's, or a new job's defaults."""
    if spec is None:
        return {"keep-last": "", "keep-days": "", "rpo": "", "block-size": "1M",
                "compression": "zstd-fast", "cbt": True, "quiesce": False,
                "quiesce-fallback": "warn", "exclude": "", "transport": "host",
                "datastore-paths": "", "parallel-vms": "2", "retries": "3",
                "retry-wait": "600", "active-full": "", "notify": "", "containers": "",
                "kind": "none", "at": "22:00", "days": "", "day": "1", "nth": "",
                "weekday": "", "every": "", "after": "", "tz": "UTC", "window": "",
                **guest_form(None)}
    s = spec.schedule
    return {
        "keep-last": number(spec.keep_last), "keep-days": number(spec.keep_days),
        "rpo": number(spec.rpo_hours), "block-size": spec.block_size,
        "compression": spec.compression, "cbt": spec.enable_cbt, "quiesce": spec.quiesce,
        "quiesce-fallback": spec.quiesce_fallback, "exclude": listed(spec.exclude_disks),
        "transport": spec.transport,
        "datastore-paths": listed([f"{k}={v}" for k, v in spec.datastore_paths.items()]),
        "parallel-vms": str(spec.parallel_vms), "retries": str(spec.retries),
        "retry-wait": number(spec.retry_wait_seconds), "active-full": spec.active_full or "",
        "notify": listed(spec.notify_to), "containers": listed(spec.containers),
        "kind": s.kind, "at": s.at or "", "days": s.days or "",
        "day": ("last" if s.day_of_month == -1 else number(s.day_of_month)),
        "nth": NTH_WORDS.get(s.nth, str(s.nth)) if s.nth is not None else "",
        "weekday": s.weekday or "", "every": s.every or "", "after": s.after or "",
        "tz": s.tz, "window": listed(s.window), **guest_form(spec.guest)}


def guest_form(g: api.GuestSpec | None) -> dict[str, Value]:
    """The guest processing inputs (its password is never shown: empty keeps it)."""
    return {"guest-host": g.host if g else "", "guest-user": g.user if g else "",
            "guest-fingerprint": g.host_key_fingerprint if g else "", "guest-password": "",
            "pre-freeze": (g.pre_freeze or "") if g else "",
            "post-thaw": (g.post_thaw or "") if g else "",
            "script-timeout": number(g.script_timeout_seconds) if g else "600",
            "on-script-failure": g.on_script_failure if g else "fail",
            "guest-unreachable": g.unreachable if g else "fail",
            "postgres": (g.postgres or "") if g else ""}


def guest_changes(v: Mapping[str, Value], stored: api.GuestSpec | None
                  ) -> dict[str, object]:
    """``{"guest": …}`` when the inputs change the guest processing (or give its password);
    ``{}`` when they show it as stored. No host: none."""
    host = str(v["guest-host"]).strip()
    password = str(v["guest-password"])
    if not host:
        return {} if stored is None else {"guest": None}
    fields: dict[str, object] = {
        "host": host, "user": str(v["guest-user"]).strip(),
        "host_key_fingerprint": str(v["guest-fingerprint"]).strip(),
        "pre_freeze": str(v["pre-freeze"]) or None, "post_thaw": str(v["post-thaw"]) or None,
        "script_timeout_seconds": _real(str(v["script-timeout"]), "script time limit")
        or 600.0,
        "on_script_failure": str(v["on-script-failure"]),
        "unreachable": str(v["guest-unreachable"]),
        "postgres": str(v["postgres"]).strip() or None}
    if stored is not None and fields == stored.model_dump() and not password:
        return {}
    return {"guest": {**fields, "password": password or None}}


def _items(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _whole(text: str, what: str) -> int | None:
    t = text.strip().lower()
    if not t:
        return None
    words = {w: n for n, w in NTH_WORDS.items()}
    if t in words:
        return words[t]
    try:
        return int(t)
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not a whole number") from None


def _real(text: str, what: str) -> float | None:
    t = text.strip()
    if not t:
        return None
    try:
        return float(t)
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not a number") from None


def _datastore_paths(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in _items(text):
        name, sep, root = item.partition("=")
        if not sep:
            raise ValueError(f"datastore path {item!r}: write DATASTORE=DIR")
        out[name.strip()] = root.strip()
    return out


def schedule_of(v: Mapping[str, Value], stored: api.ScheduleSpec | None) -> api.ScheduleSpec:
    """The schedule the inputs give; what the kind does not read stays as stored."""
    kind = api.as_schedule_kind(str(v["kind"]))
    given: dict[str, object] = {
        "at": str(v["at"]).strip() or None, "days": str(v["days"]).strip() or None,
        "day_of_month": _whole(str(v["day"]), "day of month"),
        "nth": _whole(str(v["nth"]), "which weekday"),
        "weekday": str(v["weekday"]).strip() or None,
        "every": str(v["every"]).strip() or None, "after": str(v["after"]).strip() or None}
    old = stored or api.ScheduleSpec()
    names = {"day": "day_of_month"}
    reads = {names.get(i, i) for i in KIND_INPUTS[kind]}
    if kind == "monthly" and given["nth"] is not None:
        reads.discard("day_of_month")  # the nth weekday wins: a day of month is not kept
        given["day_of_month"] = old.day_of_month
    fields = {k: (val if k in reads else getattr(old, k)) for k, val in given.items()}
    return api.ScheduleSpec.model_validate({
        "kind": kind, **fields, "tz": str(v["tz"]).strip() or "UTC",
        "window": _items(str(v["window"]))})


def job_fields(v: Mapping[str, Value], stored: api.JobSpec | None) -> dict[str, object]:
    """The ``api.JobEdit`` / ``api.JobCreate`` fields the inputs give (ValueError: a number
    that is not one)."""
    keep_last = _whole(str(v["keep-last"]), "keep last")
    return {
        "containers": _items(str(v["containers"])),
        "block_size": str(v["block-size"]).strip() or "1M",
        "compression": str(v["compression"]).strip() or "zstd-fast",
        "enable_cbt": bool(v["cbt"]), "quiesce": bool(v["quiesce"]),
        "quiesce_fallback": str(v["quiesce-fallback"]),
        "keep_last": keep_last, "keep_days": _real(str(v["keep-days"]), "keep days"),
        "rpo_hours": _real(str(v["rpo"]), "RPO hours"),
        "exclude_disks": _items(str(v["exclude"])),
        "transport": str(v["transport"]),
        "datastore_paths": _datastore_paths(str(v["datastore-paths"])),
        "parallel_vms": _whole(str(v["parallel-vms"]), "VMs at once") or 2,
        "retries": _whole(str(v["retries"]), "retries") or 0,
        "retry_wait_seconds": _real(str(v["retry-wait"]), "wait between retries") or 0.0,
        "active_full": str(v["active-full"]).strip() or None,
        "notify_to": _items(str(v["notify"])),
        "schedule": schedule_of(v, stored.schedule if stored else None),
        **guest_changes(v, stored.guest if stored else None),
    }
