"""Maintenance of repositories: verify, prune (plan, then execute; guarded in a hardened
repository) and moving a job's or a VM's points to another repository."""

from __future__ import annotations

from datetime import UTC, datetime

from appliance import api
from appliance.errors import NotFoundError, UsageError
from appliance.faults import hold_point
from appliance.jobs.copy import copy_points
from appliance.jobs.prune import execute_prune, plan_prune, plan_removal
from appliance.jobs.retention import RetentionPolicy
from appliance.jobs.verify import verify_point, verify_repository
from appliance.progress import human_bytes
from appliance.repository.hardening import ImmutableError
from appliance.service.hardening import HardeningService
from appliance.service.job_definition import JobDefinition
from appliance.service.jobs import JobService
from appliance.service.repositories import RepositoryInfo, RepositoryService
from appliance.service.restores import RestoreService
from appliance.service.state import State


def _next_step(repository: str, points: list[api.DamagedPoint]) -> str:
    """What an administrator does about damage: the blocks found damaged are remembered, so
    the next backup of each VM stores them anew; until then restore from a point not named."""
    if not points:
        return (f"no restore point needs the damaged files; `vmkeep prune --repo {repository}` "
                "removes what no point needs")
    runs = sorted({j for p in points for j in p.jobs})
    vms = sorted({p.vm for p in points})
    how = (f"run job {', '.join(runs)} (`vmkeep job run NAME`)" if runs
           else f"back up {', '.join(vms)} again")
    return (f"{how}: the next backup stores the damaged blocks anew; until then restore "
            f"{', '.join(vms)} from a point not named here, or from a copy in another "
            "repository")


class MaintenanceService:
    def __init__(self, state: State, repositories: RepositoryService,
                 hardening: HardeningService, jobs: JobService,
                 restores: RestoreService) -> None:
        self._state = state
        self._repositories = repositories
        self._hardening = hardening
        self._jobs = jobs
        self._restores = restores

    def verify(self, repository: str, point: str | None) -> api.VerifyAnswer:
        with self._repositories.open_named(repository) as repo, self._state.workspace(
                repo, repository, exclusive=False, operation="verify",
                read_only_ok=True) as ws:
            report = verify_point(ws, point) if point else verify_repository(ws)
        summary = (f"checked {report.points_checked} points, {report.packs_checked} packs, "
                   f"{report.blocks_checked} blocks ({human_bytes(report.bytes_checked)})")
        causes: dict[str, list[str]] = {}
        for d in report.damage:
            for pid in d.points:
                causes.setdefault(pid, []).append(f"{d.file}: {d.problem}")
        points = self._damaged_points(causes)
        return api.VerifyAnswer(
            ok=report.ok, summary=summary, points=points,
            next_step=_next_step(repository, points) if not report.ok else "",
            damage=[f"{d.file}: {d.problem}; affects "
                    f"{', '.join(d.points) if d.points else 'no restore point'}"
                    for d in report.damage])

    def _damaged_points(self, causes: dict[str, list[str]]) -> list[api.DamagedPoint]:
        """Each damaged point with its VM and the jobs that back that VM up now."""
        jobs = self._jobs.all()
        out = []
        with self._state.catalog() as cat:
            for pid, why in sorted(causes.items()):
                row = cat.point(pid)
                vm = row.object_name if row is not None else "?"
                out.append(api.DamagedPoint(
                    point=pid, vm=vm, causes=why,
                    jobs=sorted(j.name for j in jobs if any(v.name == vm for v in j.spec.vms))))
        return out

    def prune(self, req: api.PruneRequest) -> api.PruneAnswer:
        policy = RetentionPolicy(keep_last=req.keep_last, keep_days=req.keep_days)
        info = self._repositories.get(req.repository)
        # The repository's exclusive lock, never the catalog's: the API answers meanwhile.
        # A dry run only reads: a shared lock, read-only where the repository cannot be written.
        with self._repositories.open(info) as repo, self._state.workspace(
                repo, req.repository, exclusive=not req.dry_run, operation="prune",
                read_only_ok=req.dry_run) as ws:
            plan = plan_prune(ws, policy, datetime.now(UTC))
            if not req.dry_run:
                plan = self._hardening.guard_prune(info, repo, ws.cat, plan)
            lines = [f"{'keep' if d.keep else 'remove'} {d.point_id} ({d.object_name}): "
                     f"{'; '.join(d.reasons) or 'no rule keeps it'}" for d in plan.decisions]
            if req.dry_run or not plan.remove_points:
                return api.PruneAnswer(lines=[*lines, "nothing was changed"
                                              if req.dry_run else "nothing to remove"],
                                       removed=[])
            result = execute_prune(ws, plan)
        return api.PruneAnswer(lines=[*lines, f"removed {result.points_removed} points"],
                               removed=list(plan.remove_points))

    def _move_source(self, req: api.MoveRequest) -> tuple[RepositoryInfo, set[str],
                                                          JobDefinition | None]:
        """Where the points to move are, the VM names whose they are, and the job (moving a
        job's points switches the job over)."""
        if req.job is not None and req.vm is None:
            job = self._jobs.get(req.job)
            spec = job.spec
            if spec.copy_of:
                raise UsageError(f"job {req.job!r} is a copy job; move the points of a backup "
                                 "job")
            return (self._repositories.get(spec.repository), self._jobs.vm_names(req.job),
                    job)
        if req.vm is not None and req.job is None:
            if req.source is not None:
                return self._repositories.get(req.source), {req.vm}, None
            holders = sorted({repo for repo, _p, _d in self._restores.points(req.vm)}
                             - {req.to})
            if len(holders) != 1:
                raise UsageError(f"VM {req.vm!r} has points in {len(holders)} other "
                                 "repositories" + (f" ({', '.join(holders)})" if holders
                                                   else "") + ": name one with --from")
            return self._repositories.get(holders[0]), {req.vm}, None
        raise UsageError("move the points of a job (--job NAME) or of one VM (--vm NAME)")

    def move(self, req: api.MoveRequest) -> api.MoveAnswer:
        """Every point of a job (or of one VM) to another repository: copied and verified,
        the job switched over (its next run goes on incrementally there), then removed at the
        source, unless immutable there (then kept, and said so)."""
        dst_info = self._repositories.get(req.to)
        src_info, names, job = self._move_source(req)
        if src_info.name == dst_info.name:
            raise UsageError(f"the points are in repository {dst_info.name!r} already")
        lines: list[str] = []
        repos, state = self._repositories, self._state
        with repos.open(src_info) as src, repos.open(dst_info) as dst, \
                state.workspace(src, src_info.name, exclusive=True, operation="move") as sws, \
                state.workspace(dst, dst_info.name, exclusive=False, operation="move") as dws:
            scat = sws.cat
            ids = [p.point_id for p in scat.points(src.id) if p.object_name in names]
            if not ids:
                raise NotFoundError(f"no points of {', '.join(sorted(names))} in "
                                    f"repository {src_info.name!r}")
            hold_point("move-locked", src_info.name)
            result = copy_points(sws, dws, ids, log=lines.append)
            if result.copied and self._hardening.policy(dst_info) is not None:
                self._hardening.lock_files(dst_info, dst, dws.cat, list(result.copied.values()))
            if job is not None:
                self._jobs.switch_repository(job, dst_info.name)
                lines.append(f"job {job.name!r} now writes to repository "
                             f"{dst_info.name!r}")
            done = [i for i in ids if i in result.copied or i in result.present]
            try:
                plan = self._hardening.guard_prune(src_info, src, scat, plan_removal(sws, done))
                execute_prune(sws, plan)
                lines.append(f"removed {len(done)} point(s) from repository "
                             f"{src_info.name!r}")
            except ImmutableError as exc:
                lines.append(f"kept the points in repository {src_info.name!r}: {exc}")
        return api.MoveAnswer(moved=len(ids), lines=lines)
