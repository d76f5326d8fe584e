"""The TUI talks through the same checked client: opened on a socket another user serves, it
sends that user nothing and says whose it is (in an error toast)."""

from __future__ import annotations

import os
from pathlib import Path

from appliance.client import ApplianceClient
from tests.appliance.test_socket_trust import NOBODY, Impostor, need_root, start_impostor
from tests.appliance.test_socket_trust import base as base  # the fixture
from tests.appliance.test_socket_trust import impostors as impostors  # the fixture
from tests.tui.helpers import until
from tui.app import create_app


async def test_the_tui_sends_another_users_server_nothing(
        base: Path, impostors: list[Impostor]) -> None:
    need_root()
    imp = start_impostor(base, 0o755, as_nobody=True)
    impostors.append(imp)
    os.chown(imp.folder, 0, 0)  # the socket looks ours; the process serving it is not
    os.chown(imp.socket, 0, 0)
    client = ApplianceClient(imp.socket, timeout=10)
    app = create_app(client)
    try:
        async with app.run_test(size=(160, 48)) as pilot:
            def told() -> list[str]:
                return [n.message for n in app._notifications if n.severity == "error"]

            # (what a toast says: Textual's notifications, as test_end_to_end reads them)
            await until(pilot, told, timeout=30, why="an error shown")
            assert f"belongs to user nobody (uid {NOBODY})" in told()[0]
            assert "sends nothing" in told()[0]
    finally:
        client.close()
    seen = imp.connections()
    assert seen and set(seen) == {""}, seen  # connected, then sent nothing
