"""Routes of the repositories: add or import, list, edit, harden and audit, rescan, repair
the key, forget."""

from __future__ import annotations

from fastapi import FastAPI

from appliance import api
from appliance.server.responses import ERRORS
from appliance.server.state import ApplianceState


def add_routes(app: FastAPI, state: ApplianceState) -> None:
    reg = state.registry
    v = api.PREFIX

    @app.get(f"{v}/repositories", response_model=list[api.Repository], responses=ERRORS)
    def list_repositories() -> list[api.Repository]:
        return [r.wire() for r in reg.repositories.all()]

    @app.post(f"{v}/repositories", response_model=api.Repository, status_code=201,
              responses=ERRORS)
    def add_repository(body: api.RepositoryAdd) -> api.Repository:
        """Create the folder and a repository in it if missing, or import the repository
        there (its points are indexed)."""
        return reg.repositories.add(
            body.name, body.path, ssh_key=body.ssh_key, ssh_password=body.ssh_password,
            host_key_fingerprint=body.host_key_fingerprint,
            encryption_password=body.encryption_password,
            reconnect_every=body.reconnect_every_seconds,
            reconnect_for=body.reconnect_for_seconds).wire()

    @app.post(f"{v}/repositories/{{name}}/harden", response_model=api.Repository,
              responses=ERRORS)
    def harden_repository(name: str, body: api.RepositoryHarden) -> api.Repository:
        """Make an SSH repository hardened: after each session its files become immutable
        on the host (through the root-owned helper, which must answer first)."""
        return reg.hardening.harden(name, body.days, body.epoch_days).wire()

    @app.get(f"{v}/repositories/{{name}}/audit", response_model=api.AuditAnswer,
             responses=ERRORS)
    def audit_repository(name: str) -> api.AuditAnswer:
        """A hardened repository's lock ledger against what the host says is immutable."""
        lines = reg.hardening.audit(name)
        return api.AuditAnswer(ok=not lines, lines=lines)

    @app.patch(f"{v}/repositories/{{name}}", response_model=api.Repository, responses=ERRORS)
    def edit_repository(name: str, body: api.RepositoryEdit) -> api.Repository:
        """An SSH repository's login or pinned host key, checked by logging in first."""
        return reg.repositories.edit(
            name, ssh_key=body.ssh_key, ssh_password=body.ssh_password,
            host_key_fingerprint=body.host_key_fingerprint).wire()

    @app.get(f"{v}/repositories/{{name}}", response_model=api.Repository, responses=ERRORS)
    def get_repository(name: str) -> api.Repository:
        return reg.repositories.get(name).wire()

    @app.post(f"{v}/repositories/{{name}}/rescan", response_model=api.Repository,
              responses=ERRORS)
    def rescan_repository(name: str) -> api.Repository:
        return reg.repositories.rescan(name).wire()

    @app.post(f"{v}/repositories/{{name}}/repair-key", response_model=api.Done,
              responses=ERRORS)
    def repair_repository_key(name: str) -> api.Done:
        """Write the appliance's copy of the block-id key file back when it is missing or
        damaged (never over an intact key that differs)."""
        return api.Done(message=reg.repositories.repair_key(name))

    @app.delete(f"{v}/repositories/{{name}}", response_model=api.Done, responses=ERRORS)
    def remove_repository(name: str) -> api.Done:
        reg.repositories.remove(name)
        return api.Done(message=f"forgot repository {name!r}; its files stay where they are")
