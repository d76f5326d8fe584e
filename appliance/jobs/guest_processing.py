"""Guest processing around one VM's snapshot: the pre-freeze script before it, the post-thaw
script right after it (or, when the snapshot failed, right after that), over SSH
(``appliance.guest.scripts``).

What the job says decides the outcome: a guest that cannot be reached fails the VM or is a
warning (the backup is then crash-consistent); a pre-freeze script that fails (non-zero, or
out of time) fails the VM or is a warning; post-thaw runs once whenever the guest was reached,
so an application frozen by pre-freeze is always thawed; a failing post-thaw is a warning.
Every script's exit status and output go to the session log (the output verbatim, a line each)
and, with the point, to ``guest_processing`` in its configuration.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from appliance import api
from appliance.errors import SshError, VmkeepError
from appliance.guest.postgres import PgBackup, PgTarget
from appliance.guest.scripts import Guest, ScriptRun
from appliance.ssh import SshAuth, SshTarget

LogFn = Callable[[str, str], None]


class GuestProcessingError(VmkeepError):
    """Guest processing failed and the job says that fails the VM."""

    exit_code = 14
    code = "guest_processing"


class GuestProcessing:
    def __init__(self, spec: api.GuestSpec | None,
                 login: Callable[[], tuple[SshTarget, SshAuth, str]], log: LogFn, *,
                 verbatim: LogFn | None = None) -> None:
        """``log`` says what happened; ``verbatim`` takes the scripts' output lines as they
        are (default: ``log``)."""
        self.spec = spec
        self.login = login
        self.log = log
        self.verbatim = verbatim or log
        self.record: dict[str, Any] = {"scripts": []}
        self.warnings: list[str] = []
        self.guest: Guest | None = None
        self.pg: PgBackup | None = None
        self.post_ran = False

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        self.log("warning", message)

    def _report(self, run: ScriptRun) -> None:
        took = (run.ended - run.started).total_seconds()
        how = ("ran out of its time and was killed with its children" if run.timed_out
               else f"exited {run.exit_code}")
        self.log("info" if run.ok else "warning",
                 f"{run.name} script {how} after {took:.1f} s"
                 + (f"; {run.left_behind} process(es) it left were killed"
                    if run.left_behind else "") + (": its output follows"
                                                   if run.stdout or run.stderr else ""))
        for line in run.stdout.splitlines():
            self.verbatim("info", line)
        for line in run.stderr.splitlines():
            self.verbatim("warning", line)
        self.record["scripts"].append(run.to_json())

    def before_snapshot(self) -> None:
        """Reach the guest and run pre-freeze; raise GuestProcessingError to fail the VM."""
        spec = self.spec
        if spec is None:
            return
        try:
            self.guest = Guest(*self.login())
        except (SshError, VmkeepError) as exc:
            self.record["guest"] = f"unreachable: {exc}"
            why = f"the guest {spec.user}@{spec.host} cannot be reached: {exc}"
            if spec.unreachable == "warn":
                self._warn(f"{why}; backing up without guest processing (crash-consistent, "
                           "as the job allows)")
                return
            raise GuestProcessingError(f"{why}; the VM is not backed up (the job says so: "
                                       "--guest-unreachable fail)") from None
        self.record["guest"] = f"{spec.user}@{spec.host}"
        if spec.postgres:
            self._start_postgres(spec.postgres)
        if not spec.pre_freeze:
            return
        try:
            run = self.guest.run_script("pre-freeze", spec.pre_freeze,
                                        spec.script_timeout_seconds)
        except VmkeepError as exc:
            self.after_snapshot()
            raise GuestProcessingError(f"the pre-freeze script could not run: {exc}") from None
        self._report(run)
        if run.ok:
            return
        why = ("the pre-freeze script ran out of time" if run.timed_out
               else f"the pre-freeze script failed (exit {run.exit_code})")
        if spec.on_script_failure == "warn":
            self._warn(f"{why}; going on, as the job allows")
            return
        self.after_snapshot()  # what pre-freeze froze is thawed before the VM fails
        raise GuestProcessingError(f"{why}; the VM is not backed up (the job says so: "
                                   "--on-script-failure fail)")

    def _start_postgres(self, target: str) -> None:
        assert self.guest is not None and self.spec is not None
        try:
            self.pg = PgBackup(self.guest, PgTarget.parse(target))
            lsn = self.pg.start()
        except VmkeepError as exc:
            self.record["postgres"] = {"error": str(exc)}
            why = f"PostgreSQL ({target}) could not start a base backup: {exc}"
            if self.spec.on_script_failure == "warn":
                self._warn(f"{why}; the image is crash-consistent for it")
                return
            raise GuestProcessingError(f"{why}; the VM is not backed up (the job says so: "
                                       "--on-script-failure fail)") from None
        self.record["postgres"] = {"target": target, "start_lsn": lsn}
        self.log("info", f"PostgreSQL in backup mode from {lsn} (pg_backup_start)")

    def _stop_postgres(self) -> None:
        pg, self.pg = self.pg, None
        if pg is None:
            return
        try:
            done = pg.stop()
            self.record["postgres"].update(done)
            self.log("info", f"PostgreSQL out of backup mode at {done['stop_lsn']}; the "
                             "backup label is kept with the point")
        except VmkeepError as exc:
            self._warn(f"PostgreSQL's pg_backup_stop failed: {exc}; a restore of this point "
                       "needs crash recovery from the WAL")
        finally:
            pg.close()

    def after_snapshot(self) -> None:
        """Run post-thaw, once (the snapshot's ``before_read`` hook, and after a failure),
        then end PostgreSQL's backup mode."""
        try:
            self._post_thaw()
        finally:
            self._stop_postgres()

    def _post_thaw(self) -> None:
        spec = self.spec
        if spec is None or self.guest is None or self.post_ran or not spec.post_thaw:
            return
        self.post_ran = True
        try:
            run = self.guest.run_script("post-thaw", spec.post_thaw,
                                        spec.script_timeout_seconds)
        except VmkeepError as exc:
            self._warn(f"the post-thaw script could not run: {exc}")
            return
        self._report(run)
        if not run.ok:
            self._warn("the post-thaw script " + ("ran out of time" if run.timed_out
                                                  else f"failed (exit {run.exit_code})"))

    def close(self) -> None:
        if self.pg is not None:
            self.pg.close()
        if self.guest is not None:
            self.guest.close()
