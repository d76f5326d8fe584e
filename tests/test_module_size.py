"""The orchestration layer stays readable: no module of the services, the sessions, the CLI,
the server or the daemon is over 400 lines, and the composition root is small (issue 12)."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import REPO_ROOT

LIMIT = 400
PACKAGES = ("service", "sessions", "cli", "server", "daemon")


def _over(limit: int) -> list[str]:
    appliance = REPO_ROOT / "appliance"
    files = [p for pkg in PACKAGES for p in sorted((appliance / pkg).rglob("*.py"))]
    files += [appliance / "registry.py", appliance / "scheduler.py", appliance / "notifier.py"]
    assert all(p.exists() for p in files) and len(files) > 40
    return [f"{p.relative_to(REPO_ROOT)}: {n} lines" for p in files
            if (n := len(p.read_text().splitlines())) > limit]


def test_no_orchestration_module_is_over_400_lines() -> None:
    assert _over(LIMIT) == []


def test_the_check_sees_a_long_module() -> None:
    assert _over(200)  # several are over 200: the check reads the real files


def test_the_registry_is_a_small_composition_root() -> None:
    registry: Path = REPO_ROOT / "appliance" / "registry.py"
    assert len(registry.read_text().splitlines()) < 100
