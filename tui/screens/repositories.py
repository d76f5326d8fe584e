"""Repositories and vCenters: list, add (a vCenter's certificate fingerprint is shown for
confirmation before it is pinned), test, rescan."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable, Label

from appliance import api
from appliance.errors import PinDetail, VmkeepError
from tui import format as fmt
from tui.base import VmkeepScreen, fetch, report
from tui.filter import KEY, key_at, narrow, remember
from tui.messages import Failed, Succeeded
from tui.screens.dashboard import free_text
from tui.screens.dialogs import ConfirmScreen, Field, FormScreen


class TargetsLoaded(Message):
    def __init__(self, repositories: list[api.Repository], vcenters: list[api.VCenter]
                 ) -> None:
        super().__init__()
        self.repositories = repositories
        self.vcenters = vcenters


class FingerprintSeen(Message):
    """The vCenter presented this certificate; the user is to confirm it."""

    def __init__(self, spec: api.VCenterAdd, fingerprint: str) -> None:
        super().__init__()
        self.spec = spec
        self.fingerprint = fingerprint


class RepositoriesScreen(VmkeepScreen):
    """Where backups go and where VMs come from."""

    MODE = "repositories"
    REFRESH_EVERY = 10.0
    BINDINGS = [  # noqa: RUF012
        Binding("a", "add_repository", "Add repository"),
        Binding("r", "rescan", "Rescan"),
        Binding("v", "add_vcenter", "Add vCenter"),
        Binding("t", "test", "Test vCenter"),
        Binding("tab", "app.focus_next", "Switch table", show=False),
        KEY,
    ]
    FILTERS = {"repos": "show_targets", "vcenters": "show_targets"}  # noqa: RUF012

    def __init__(self) -> None:
        super().__init__()
        self.repositories: list[api.Repository] = []
        self.vcenters: list[api.VCenter] = []

    def body(self) -> ComposeResult:
        yield Label("Repositories", classes="panel-title")
        yield DataTable(id="repos", cursor_type="row")
        yield Label("vCenters", classes="panel-title")
        yield DataTable(id="vcenters", cursor_type="row")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#repos", DataTable).add_columns("Repository", "Location", "Points",
                                                       "Stored", "Free")
        self.query_one("#vcenters", DataTable).add_columns("vCenter", "Host", "User",
                                                          "Certificate")

    def load_data(self) -> None:
        repos = fetch(self, "repositories", self.client.repositories)
        vcs = fetch(self, "vCenters", self.client.vcenters)
        if repos is not None and vcs is not None:
            self.post_message(TargetsLoaded(repos, vcs))

    def on_targets_loaded(self, message: TargetsLoaded) -> None:
        self.repositories, self.vcenters = message.repositories, message.vcenters
        self.show_targets()

    def show_targets(self) -> None:
        t = self.query_one("#repos", DataTable)
        mark = remember(t)
        t.clear()
        for r in self.repositories:
            notes = [*(["SSH"] if r.kind == "sftp" else []),
                     *(["encrypted"] if r.encrypted else []),
                     *([f"immutable {r.immutable_days} d"] if r.immutable_days else []),
                     *([f"locked until {r.immutable_until:%Y-%m-%d}"]
                       if r.immutable_until else [])]
            where = r.location + (f" ({', '.join(notes)})" if notes else "")
            t.add_row(*fmt.plain(r.name, where, str(r.points),
                                 fmt.size(r.stored_bytes), free_text(r)), key=r.name)
        narrow(t, mark)
        t = self.query_one("#vcenters", DataTable)
        mark = remember(t)
        t.clear()
        for v in self.vcenters:
            cert = "⚠ not checked (insecure)" if v.insecure else (
                f"pinned {v.fingerprint[:16]}…" if v.fingerprint else "—")
            t.add_row(*fmt.plain(v.name, f"{v.host}:{v.port}", v.user, cert), key=v.name)
        narrow(t, mark)

    def action_add_repository(self) -> None:
        def submitted(values: dict[str, str] | None) -> None:
            if values and values["name"] and values["path"]:
                name, path = values["name"], values["path"]
                self.act("add repository", lambda: self.client.add_repository(name, path),
                         done=f"repository {name} added")

        self.app.push_screen(FormScreen("Add a repository", [
            Field("name", "Name"), Field("path", "Folder (absolute; created when missing, "
                                                 "imported when a repository)")]), submitted)

    def action_rescan(self) -> None:
        key = key_at(self.query_one("#repos", DataTable))
        r = next((r for r in self.repositories if r.name == key), None)
        if r is None:
            self.notify("no repository: press a to add one")
            return
        self.notify(f"rescanning {r.name}…")
        self.act("rescan", lambda: self.client.rescan_repository(r.name),
                 done=f"repository {r.name} rescanned")

    def action_test(self) -> None:
        key = key_at(self.query_one("#vcenters", DataTable))
        v = next((v for v in self.vcenters if v.name == key), None)
        if v is None:
            self.notify("no vCenter: press v to add one")
            return

        def work() -> None:
            answer = fetch(self, f"test {v.name}", lambda: self.client.test_vcenter(v.name))
            if answer is not None and answer.ok:
                self.app.post_message(Succeeded(f"{v.name}: {answer.message}"))
            elif answer is not None:
                self.app.post_message(Failed(f"test {v.name}", answer.message))

        self.run_worker(work, thread=True, group="act", exit_on_error=False)

    def action_add_vcenter(self) -> None:
        def submitted(values: dict[str, str] | None) -> None:
            if not values:
                return
            try:
                spec = api.VCenterAdd(name=values["name"], host=values["host"],
                                      port=int(values["port"] or "443"), user=values["user"],
                                      password=values["password"])
            except ValueError as exc:
                self.notify(f"the vCenter's details do not fit: {exc}", severity="error")
                return
            self.run_worker(lambda: self._first_contact(spec), thread=True, group="act",
                            exit_on_error=False)

        self.app.push_screen(FormScreen("Add a vCenter", [
            Field("name", "Name"), Field("host", "Host"), Field("port", "Port", "443"),
            Field("user", "User"), Field("password", "Password", password=True)],
            note="The server's certificate fingerprint is shown next, for you to confirm."),
            submitted)

    def _first_contact(self, spec: api.VCenterAdd) -> None:
        """Add without a pin: the appliance answers with the server's fingerprint."""
        try:
            self.client.add_vcenter(spec)
        except VmkeepError as exc:
            pin = exc.detail
            if not isinstance(pin, PinDetail) or pin.what != "vcenter":
                report(self, "add vCenter", exc)
                return
            self.post_message(FingerprintSeen(spec, pin.fingerprint))
            return
        self.app.post_message(Succeeded(f"vCenter {spec.name} added"))
        self.app.call_from_thread(self.reload)

    def on_fingerprint_seen(self, message: FingerprintSeen) -> None:
        spec = message.spec

        def answered(yes: bool | None) -> None:
            if yes:
                pinned = spec.model_copy(update={"fingerprint": message.fingerprint})
                self.act("add vCenter", lambda: self.client.add_vcenter(pinned),
                         done=f"vCenter {spec.name} added; certificate pinned")

        self.app.push_screen(ConfirmScreen(
            f"Trust the certificate of {spec.host}:{spec.port}?",
            f"SHA-256 fingerprint:\n{message.fingerprint}\n\nCompare it with the one vCenter "
            "shows; yes pins it (a different certificate later is refused)."), answered)
