"""The appliance's settings (notifications) and configuration backups: the state and
secrets sealed with a password into a repository, on a schedule or on demand, and brought
back into a fresh appliance (``appliance.config_backup`` holds the pure parts)."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path
from secrets import token_urlsafe

from appliance import api
from appliance import config_backup as cb
from appliance.errors import (
    ConflictError,
    NotFoundError,
    RepositoryFormatError,
    SshError,
    StorageIOError,
    UsageError,
    VmkeepError,
)
from appliance.secret_store import write_private
from appliance.service.jobs import schedule_of
from appliance.service.repositories import RepositoryInfo, RepositoryService
from appliance.service.state import State
from catalog.models import JobRow, VCenterRow

log = logging.getLogger("appliance.registry")
CONFIG_PASSWORD = "config-backup/password"  # the secret that seals scheduled config backups
DEFAULT_CONFIG_AT = "01:30"  # UTC: the default configuration backup's daily time
_NO_PASSWORD = ("(--password-stdin, --password-file or VMKEEP_CONFIG_PASSWORD)")


class ConfigService:
    def __init__(self, state: State, repositories: RepositoryService) -> None:
        self._state = state
        self._repositories = repositories

    # -- settings -----------------------------------------------------------------------------

    def notifications(self) -> api.Notifications:
        with self._state.catalog() as cat:
            text = cat.setting("notifications")
        return api.Notifications.model_validate_json(text) if text else api.Notifications()

    def set_notifications(self, value: api.Notifications) -> api.Notifications:
        bad = [r for r in value.on if r not in ("failed", "warning", "success")]
        if bad:
            raise UsageError(f"cannot notify on {', '.join(bad)}: choose from failed, warning, "
                             "success")
        if value.webhook_url and not value.webhook_url.startswith(("http://", "https://")):
            raise UsageError(f"webhook {value.webhook_url!r} is not an http(s) URL")
        with self._state.catalog() as cat:
            cat.put_setting("notifications", value.model_dump_json())
        return value

    # -- the schedule -------------------------------------------------------------------------

    def schedule(self) -> api.ConfigScheduleView:
        with self._state.catalog() as cat:
            text = cat.setting("config_backup")
        if not text:
            return api.ConfigScheduleView(repository=None, schedule=api.ScheduleSpec(),
                                          last_backup=None, last_result=None,
                                          last_message=None)
        return _sealed(api.ConfigScheduleView.model_validate_json(text))

    def view(self) -> api.ConfigScheduleView:
        """The schedule as the administrator sees it: also whether the configuration changed
        since the last successful backup."""
        view = self.schedule()
        return view.model_copy(update={
            "changed_since_backup": view.repository is not None and self.changed()})

    def set_schedule(self, value: api.ConfigSchedule) -> api.ConfigScheduleView:
        """Back the configuration up on a schedule (kind none turns it off). A password given
        replaces the one the appliance generated (or was given before)."""
        secrets = self._state.secrets
        schedule_of(value.schedule)
        if value.schedule.kind == "after":
            raise UsageError("a configuration backup runs on a time schedule, not after a job")
        if value.schedule.kind != "none":
            if value.repository is None:
                raise UsageError("name the repository the configuration goes to: --repo NAME")
            self._repositories.get(value.repository)
            if value.password is None and CONFIG_PASSWORD not in secrets.names():
                raise UsageError("give the password that seals the configuration backups "
                                 + _NO_PASSWORD)
        if value.password is not None:
            secrets.put(CONFIG_PASSWORD, value.password)
        old = self.schedule()
        view = api.ConfigScheduleView(
            repository=value.repository, schedule=value.schedule,
            last_backup=old.last_backup, last_result=old.last_result,
            last_message=old.last_message,
            password_generated=old.password_generated and value.password is None,
            # The secret is stored above, before the version that names it is: a backup that
            # reads this version (then the password) is sealed with it.
            password_version=old.password_version + (value.password is not None),
            last_password_version=old.last_password_version)
        with self._state.catalog() as cat:
            cat.put_setting("config_backup", view.model_dump_json())
        return self.view()

    def set_default(self) -> api.ConfigScheduleView | None:
        """Set up the default configuration backup when none was ever set (not even turned
        off) and the appliance has a repository: daily at ``DEFAULT_CONFIG_AT`` UTC into the
        first repository added, sealed with a password generated into the secret store
        (the one stored already, if any). None when there is nothing to do."""
        with self._state.catalog() as cat:
            if cat.setting("config_backup") is not None:
                return None
            names = cat.repository_names()
        if not names:
            return None
        first = min(names, key=lambda r: (r.added, r.name))
        if CONFIG_PASSWORD not in self._state.secrets.names():
            self._state.secrets.put(CONFIG_PASSWORD, token_urlsafe(24))
        view = api.ConfigScheduleView(
            repository=first.name, schedule=api.ScheduleSpec(kind="daily",
                                                             at=DEFAULT_CONFIG_AT),
            last_backup=None, last_result=None, last_message=None, password_generated=True)
        with self._state.catalog() as cat:
            if cat.setting("config_backup") is not None:  # set meanwhile: that one holds
                return None
            cat.put_setting("config_backup", view.model_dump_json())
        log.info("configuration backups: daily at %s UTC into repository %s, sealed with a "
                 "generated password (set your own: `vmkeep config schedule "
                 "--password-stdin`)", DEFAULT_CONFIG_AT, first.name)
        return view

    # -- backing up ---------------------------------------------------------------------------

    def _document(self, *, with_secrets: bool = True) -> dict[str, object]:
        """The state document a configuration backup seals (its secrets left empty unless
        ``with_secrets``)."""
        with self._state.catalog() as cat:
            settings = {n: t for n in ("notifications", "config_backup")
                        if (t := cat.setting(n)) is not None}
            vcenters, names, jobs = cat.vcenters(), cat.repository_names(), cat.jobs()
        return cb.state_document(vcenters, names, jobs, settings,
                                 self._state.secrets.all() if with_secrets else {})

    def _digest(self) -> str:
        """What the configuration is now, as a digest: the state without what a backup itself
        changes (when it ran, how it went), and the secret store's sealed bytes (never a
        hash of a secret in clear)."""
        try:
            sealed = self._state.secrets.path.read_bytes()
        except FileNotFoundError:
            sealed = b""
        return cb.digest(self._document(with_secrets=False), sealed)

    def changed(self) -> bool:
        """Whether the configuration changed since the last successful scheduled backup."""
        digest = self._digest()
        with self._state.catalog() as cat:
            return cat.setting("config_backup_digest") != json.dumps(digest)

    def scheduled_backup(self, now: datetime) -> api.ConfigScheduleView:
        """Run the scheduled configuration backup now and keep how it went."""
        digest = self._digest()  # before the state: a change meanwhile is seen next
        view = self.schedule()  # then the password's version, then the password (in _write)
        if view.repository is None:
            raise UsageError("no configuration backup is scheduled")
        try:
            path = self._write(view.repository, self._document(),
                               self._state.secrets.get(CONFIG_PASSWORD), record=True)
            result, message = "success", str(path)
        except VmkeepError as exc:
            result, message = "failed", str(exc)
        update: dict[str, object] = {"last_backup": now, "last_result": result,
                                     "last_message": message}
        if result == "success":
            update["last_password_version"] = view.password_version
        with self._state.catalog() as cat:
            # The schedule as it is now: it may have been changed (or turned off) meanwhile.
            text = cat.setting("config_backup")
            current = api.ConfigScheduleView.model_validate_json(text) if text else view
            done = current.model_copy(update=update)
            cat.put_setting("config_backup", done.model_dump_json())
            if result == "success":
                cat.put_setting("config_backup_digest", json.dumps(digest))
        return _sealed(done)

    def backup(self, repository: str, password: str) -> str:
        """Seal the appliance's state and secrets with ``password`` into the repository;
        where it went."""
        return self._write(repository, self._document(), password, record=False)

    def _write(self, repository: str, doc: dict[str, object], password: str, *,
               record: bool) -> str:
        """Seal ``doc`` into the repository; where it went. ``record``: a scheduled backup,
        sealed with the password the secret store keeps: its path is recorded in the home,
        so that a lost catalog can be restored (`config restore --from` it, no password
        needed) without knowing where to look."""
        info = self._repositories.get(repository)
        sealed = cb.seal(doc, password)
        if not info.remote:
            where = str(cb.write(Path(info.location), sealed))
        else:
            name = cb.backup_name()
            with self._repositories.open(info) as repo:
                repo.backend.put(name, sealed)
            where = f"{info.location}/{name}"
        if record:
            write_private(self._state.home.last_config_backup, f"{where}\n".encode())
        return where

    # -- restoring ----------------------------------------------------------------------------

    def restore(self, path: str, password: str | None) -> api.ConfigRestored:
        """Bring a configuration backup back into this (fresh) appliance: vCenters with their
        passwords, repositories (re-indexed from their files), jobs and settings. Names that
        exist here already are refused before anything changes. Without ``password``: the
        one this appliance's secret store keeps for its configuration backups."""
        secrets = self._state.secrets
        if password is None:
            password = secrets.find(CONFIG_PASSWORD)
            if password is None:
                raise UsageError("this appliance keeps no configuration backup password; "
                                 "give the one the backup was written with " + _NO_PASSWORD)
        source, doc, skipped = cb.open_newest(Path(path), password)
        with self._state.catalog() as cat:
            clash = ([v["name"] for v in doc["vcenters"] if cat.vcenter(v["name"])]
                     + [r["name"] for r in doc["repositories"]
                        if cat.repository_name(r["name"])]
                     + [j["name"] for j in doc["jobs"] if cat.job(j["name"])])
        if clash:
            raise ConflictError(f"this appliance has {', '.join(sorted(clash))} already; "
                                "restore the configuration into a fresh appliance")
        missing = []
        infos = [RepositoryInfo(r["name"], r["location"], r["repo_id"],
                                datetime.fromisoformat(r["added"]), 0, 0, 0,
                                r.get("host_key_fingerprint"),
                                reconnect_every=r.get("reconnect_every"),
                                reconnect_for=r.get("reconnect_for"))
                 for r in doc["repositories"]]
        for info in infos:
            try:
                with self._repositories.address(info, doc["secrets"]).open(
                        create=False) as repo:
                    found = repo.id
            except (NotFoundError, RepositoryFormatError, SshError, StorageIOError):
                found = None
            if found != info.repo_id:
                missing.append(f"{info.name} ({info.location})")
        if missing:
            raise NotFoundError(f"repositories of the backup are not where it says: "
                                f"{', '.join(missing)}; make them reachable at those paths "
                                "first (nothing was restored)")
        for name, value in doc["secrets"].items():
            secrets.put(name, value)
        with self._state.catalog() as cat:
            for v in doc["vcenters"]:
                cat.add_vcenter(VCenterRow(v["name"], v["host"], int(v["port"]), v["user"],
                                           v["fingerprint"], bool(v["insecure"]),
                                           datetime.fromisoformat(v["added"]),
                                           str(v.get("appliance_vm") or "")))
            for name, text in doc["settings"].items():
                cat.put_setting(name, text)
            for j in doc["jobs"]:
                cat.put_job(JobRow(j["name"], json.dumps(j["spec"]), bool(j["enabled"]),
                                   datetime.fromisoformat(j["created"])))
        for info in infos:
            address = self._repositories.address(info, doc["secrets"])
            auth = address.auth
            self._repositories.add(info.name, info.location,
                                   ssh_key=auth.key_data if auth else None,
                                   ssh_password=auth.password if auth else None,
                                   host_key_fingerprint=info.host_key_fingerprint,
                                   encryption_password=address.password,
                                   reconnect_every=info.reconnect_every,
                                   reconnect_for=info.reconnect_for)
        return api.ConfigRestored(
            vcenters=len(doc["vcenters"]), repositories=len(doc["repositories"]),
            jobs=len(doc["jobs"]), secrets=len(doc["secrets"]), path=str(source),
            skipped_newer=skipped)


def _sealed(view: api.ConfigScheduleView) -> api.ConfigScheduleView:
    """``view`` saying whether its last backup is sealed with the current password."""
    last = view.last_password_version
    return view.model_copy(update={
        "last_sealed_with_current": None if last is None else last == view.password_version})
