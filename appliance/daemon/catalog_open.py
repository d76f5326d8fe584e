"""The catalog at start: read in full before the appliance serves; a missing one in a used
home, or a damaged one, stops the start with the commands that restore it, unless
``--new-catalog``."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from appliance.errors import (
    ApplianceError,
    CatalogDamagedError,
    CatalogMissingError,
    UsageError,
)
from appliance.home import Home

if TYPE_CHECKING:
    from appliance.registry import Registry

log = logging.getLogger("appliance.daemon")


def _restore(home: Home) -> str:
    """The command that brings the configuration back, said as part of a sentence."""
    latest = home.latest_config_backup()
    what = "to bring its vCenters, repositories, jobs and settings back from the latest " \
        "configuration backup"
    if latest is None:
        return (f"`vmkeep config restore --from REPOSITORY-FOLDER` {what} (a repository "
                "folder holding appliance-config/)")
    if latest.startswith("sftp://"):
        return (f"`vmkeep config restore --from FILE` {what}, {latest}, copied to this "
                "machine first (scp)")
    return f"`vmkeep config restore --from {latest}` {what}"


def _restore_hint(home: Home) -> str:
    return f"run `vmkeep appliance start --new-catalog` then {_restore(home)}"


def open_registry(home: Home, *, new_catalog: bool = False) -> tuple[Registry, str | None]:
    """The appliance's registry on a catalog that exists and reads in full, and a notice for
    the administrator (None: nothing to say). A missing catalog in a used home, or a damaged
    one, stops the start (CatalogMissingError, CatalogDamagedError) unless ``new_catalog``:
    then a damaged file is moved aside and the appliance starts empty on purpose. Called
    under the home's lock."""
    from appliance.registry import Registry
    from catalog.store import CatalogBusy, CatalogDamaged, CatalogVersionError

    path = home.catalog
    if not path.exists():
        if not home.used():
            return Registry(home), None  # a new home
        if not new_catalog:
            raise CatalogMissingError(
                f"the appliance's catalog {path} is missing, but this home holds other "
                f"appliance state (secrets, configuration backups); {_restore_hint(home)}; "
                "the appliance does not start empty unless told to")
        notice = (f"the catalog {path} was missing: started with a new, empty one as asked "
                  f"(--new-catalog); now run {_restore(home)}")
        log.warning("%s", notice)
        return Registry(home), notice
    try:
        registry = Registry(home)
    except CatalogBusy:
        raise ApplianceError(f"the appliance's catalog {path} is open in another process; "
                             "stop it, then start the appliance") from None
    except CatalogVersionError:
        raise ApplianceError(f"the appliance's catalog {path} was written by a newer vmkeep; "
                             "run that version (or newer)") from None
    except CatalogDamaged as exc:
        damage = exc.detail
    else:
        try:
            began = time.monotonic()
            with registry.catalog() as cat:
                cat.check()
            log.info("catalog %s read in full in %.1f s", path, time.monotonic() - began)
            if new_catalog:
                registry.close()
                raise UsageError(f"the appliance's catalog {path} reads in full: "
                                 "--new-catalog replaces only a missing or damaged one (to "
                                 "start empty on purpose, move it away first)")
            return registry, None
        except CatalogDamaged as exc:
            damage = exc.detail
            with contextlib.suppress(Exception):  # a damaged database may not close cleanly
                registry.close()
    if not new_catalog:
        raise CatalogDamagedError(f"the appliance's catalog {path} is damaged ({damage}); "
                                  f"{_restore_hint(home)}")
    log.warning("catalog %s is damaged: %s", path, damage)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = path.with_name(f"{path.name}.damaged-{stamp}")
    os.rename(path, aside)
    wal = path.with_name(path.name + ".wal")
    if wal.exists():
        os.rename(wal, path.with_name(f"{wal.name}.damaged-{stamp}"))
    notice = (f"the damaged catalog {path} was moved to {aside}; started with a new, empty "
              f"one as asked (--new-catalog); now run {_restore(home)}")
    log.warning("%s", notice)
    return Registry(home), notice
