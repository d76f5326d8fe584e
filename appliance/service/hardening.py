"""Hardened repositories: an SSH repository whose files the host's root-owned helper makes
immutable (``appliance.repository.hardening``), with a ledger of the locks in the catalog."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from datetime import UTC, datetime

from appliance.errors import UsageError
from appliance.jobs.prune import PrunePlan
from appliance.repository import objfile
from appliance.repository.hardening import RECORDS, Hardening, Helper, refuse_immutable
from appliance.repository.hardening import lock_until as _lock_until
from appliance.repository.manifest import manifest_name
from appliance.repository.pack import pack_name
from appliance.repository.repo import Repository
from appliance.repository.sftp import SftpBackend
from appliance.service.repositories import RepositoryInfo, RepositoryService
from appliance.service.state import State
from catalog.store import Catalog


def _helper(repo: Repository) -> Helper:
    """The host's helper, over the repository's SSH login."""
    backend = repo.backend
    if not isinstance(backend, SftpBackend):
        raise UsageError(f"{repo.location} is not reached over SSH: no helper can lock files")
    return Helper(backend, backend.where.path)


class HardeningService:
    def __init__(self, state: State, repositories: RepositoryService) -> None:
        self._state = state
        self._repositories = repositories

    def harden(self, name: str, days: int | None, epoch_days: int | None) -> RepositoryInfo:
        """Make an SSH repository hardened (``days`` None: no longer): its files become
        immutable on the host through the root-owned helper, which must answer first. What
        is there now is locked at once."""
        info = self._repositories.get(name)
        if days is None:
            with self._state.catalog() as cat:
                cat.set_hardening(name, None, None)
            return self._repositories.get(name)
        hardening = Hardening(days, epoch_days or min(30, days))
        if not info.remote:
            raise UsageError(f"repository {name!r} is a local folder: a hardened repository is "
                             "on another host, reached over SSH (sftp://…), where the "
                             "appliance's account cannot lift immutability")
        with self._repositories.open(info) as repo:
            _helper(repo).check()
            with self._state.catalog() as cat:
                cat.set_hardening(name, hardening.days, hardening.epoch_days)
            hardened = self._repositories.get(name)
            with self._state.catalog() as cat:
                self.lock_files(hardened, repo, cat, cat.point_ids(repo.id))
        return self._repositories.get(name)

    def policy(self, info: RepositoryInfo) -> Hardening | None:
        """The repository's hardening; None when it is not hardened."""
        if info.immutable_days is None:
            return None
        return Hardening(info.immutable_days, info.epoch_days or min(30, info.immutable_days))

    def lock_until(self, info: RepositoryInfo, repo: Repository, now: datetime) -> datetime:
        """Until when a file written into the hardened repository ``now`` is immutable."""
        policy = self.policy(info)
        if policy is None:
            raise UsageError(f"repository {info.name!r} is not hardened (`vmkeep repo harden`)")
        return _lock_until(policy, datetime.fromisoformat(repo.config.created), now)

    def lock_files(self, info: RepositoryInfo, repo: Repository, cat: Catalog,
                   point_ids: Collection[str]) -> int:
        """Make what ``point_ids`` need immutable until their epoch's end plus the days
        (manifests, the packs of their blocks, the config and keys), with a record of it in
        the repository (``immutable/``) and the catalog's ledger. Returns the files locked."""
        until = self.lock_until(info, repo, datetime.now(UTC))
        points = sorted(point_ids)
        # The packs that hold a block of any of the points (the copy restores read: each
        # block's keeper) — one pass over the packs for them all.
        names = {manifest_name(p) for p in points}
        names |= {pack_name(u.pack_id) for u in cat.pack_usage(repo.id, points)
                  if u.live_entries}
        names |= {"config", *repo.backend.list("keys")}
        record = f"{RECORDS}/{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}.json"
        doc = {"until": until.isoformat(), "files": sorted(names)}
        repo.backend.put(record, objfile.encode_json(objfile.MAGIC_LOCK, doc))
        names.add(record)
        ordered = sorted(names)
        _helper(repo).lock(ordered, until)
        cat.record_locks(repo.id, ordered, until)
        return len(ordered)

    def guard_prune(self, info: RepositoryInfo, repo: Repository, cat: Catalog,
                    plan: PrunePlan) -> PrunePlan:
        """In a hardened repository: first let the helper lift expired locks (by the host's
        clock), then refuse to remove a point whose manifest is still immutable (with the
        date), and leave still-locked packs for later. Other repositories: ``plan``."""
        if self.policy(info) is None:
            return plan
        helper = _helper(repo)
        cat.forget_locks(repo.id, helper.expire())
        held = {name: until for until, _flag, name in helper.status()}  # the host's word
        refuse_immutable([manifest_name(p) for p in plan.remove_points], held,
                         "remove these restore points")
        return replace(
            plan,
            delete_packs=tuple(u for u in plan.delete_packs if pack_name(u.pack_id) not in held),
            compact_packs=tuple(u for u in plan.compact_packs
                                if pack_name(u.pack_id) not in held))

    def audit(self, name: str) -> list[str]:
        """A hardened repository's ledger against the host: one line per disagreement."""
        info = self._repositories.get(name)
        if self.policy(info) is None:
            raise UsageError(f"repository {name!r} is not hardened (`vmkeep repo harden`)")
        with self._repositories.open(info) as repo, self._state.catalog() as cat:
            ledger = cat.ledger(repo.id)
            status = {n: (until, flag) for until, flag, n in _helper(repo).status()}
        now = datetime.now(UTC)
        out = []
        for n, until in sorted(ledger.items()):
            if until <= now:
                continue
            got = status.get(n)
            if got is None:
                out.append(f"{n}: the ledger says immutable until {until:%Y-%m-%d}, the host "
                           "keeps no lock")
            elif got[1] != "i":
                out.append(f"{n}: should be immutable until {until:%Y-%m-%d} but is "
                           f"{'missing' if got[1] == 'missing' else 'not immutable'} on the "
                           "host")
        for n, (until, flag) in sorted(status.items()):
            if flag == "i" and n not in ledger:
                out.append(f"{n}: immutable on the host until {until:%Y-%m-%d}, not in the "
                           "ledger (a rescan restores the ledger)")
        return out
