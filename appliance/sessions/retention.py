"""A job's retention after its session (backup and copy sessions): applied to the points of
the VMs this run covered, or postponed to the next run when it cannot be applied now."""

from __future__ import annotations

from datetime import UTC, datetime

from appliance import api
from appliance.errors import LockedError, VmkeepError
from appliance.jobs.prune import execute_prune, plan_prune
from appliance.jobs.retention import RetentionPolicy
from appliance.repository.hardening import ImmutableError
from appliance.repository.repo import Repository
from appliance.service.repositories import RepositoryInfo
from appliance.sessions.core import SessionRun


def apply_retention(run: SessionRun, spec: api.JobSpec, repo: Repository, names: set[str],
                    info: RepositoryInfo) -> None:
    """Apply the job's retention to the points of this run's VMs (exclusive lock; plan,
    then execute). A busy repository, or points still immutable in a hardened one,
    postpone it to the next run."""
    reg = run.registry
    policy = RetentionPolicy(keep_last=spec.keep_last, keep_days=spec.keep_days)
    try:
        # The exclusive lock at once or not at all (a plan-then-execute prune inside).
        with reg.workspace(repo, info.name, exclusive=True, operation="retention") as ws:
            plan = plan_prune(ws, policy, datetime.now(UTC), names=names)
            if not plan.remove_points:
                return
            try:
                plan = reg.hardening.guard_prune(info, repo, ws.cat, plan)
            except (ImmutableError, VmkeepError) as exc:
                run.log("info", f"retention postponed: {exc}")
                return
            result = execute_prune(ws, plan)
    except LockedError:
        run.log("info", "retention postponed: the repository is in use")
        return
    run.log("info", f"retention removed {result.points_removed} "
                    f"restore point(s): {', '.join(plan.remove_points)}")


def retention_due(run: SessionRun, spec: api.JobSpec) -> bool:
    """Whether the job keeps fewer than all its points and the session was not stopped."""
    return bool(spec.keep_last or spec.keep_days) and not run.live.stop.is_set()
