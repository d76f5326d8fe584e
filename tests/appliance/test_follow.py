"""Several clients follow one running session — one by long polling, one by the event stream
(Server-Sent Events) — each sees the progress rise and the end; a client that joins after the
end gets the whole history, by either way."""

from __future__ import annotations

import json
import random
import threading

from appliance.client import ApplianceClient
from tests.appliance.lab import VM, Lab

SIZE = 160 << 20


def grow_and_fill(lab: Lab) -> None:
    lab.grow(SIZE)
    rnd = random.Random(8)
    with lab.flat().open("r+b") as f:
        for off in range(0, SIZE, 4 << 20):
            f.seek(off)
            f.write(rnd.randbytes(4 << 20))


def follow(socket: str, sid: str, seen: list[int], end: list[str]) -> None:
    with ApplianceClient(socket) as client:
        while True:
            s = client.session(sid, wait=5.0)
            if s.tasks and s.tasks[0].bytes_done and (not seen or
                                                      s.tasks[0].bytes_done != seen[-1]):
                seen.append(s.tasks[0].bytes_done)
            if s.state != "running":
                end.append(f"{s.state}/{s.result}")
                return


def follow_events(socket: str, sid: str, seen: list[int], end: list[str]) -> None:
    with ApplianceClient(socket) as client:
        for event in client.events(sid):
            vm = next((t for t in event.tasks or [] if t.disk is None), None)
            if vm is not None and vm.bytes_done and (not seen or vm.bytes_done != seen[-1]):
                seen.append(vm.bytes_done)
            if event.summary is not None:
                end.append(f"{event.summary.state}/{event.summary.result}")


def test_two_followers_see_progress_rise_and_a_late_one_the_history(lab: Lab) -> None:
    grow_and_fill(lab)
    assert lab.vmkeep("job", "create", "big", "--vcenter", "vc", "--vm", VM, "--repo",
                      "main", "--enable-cbt", "--block-size", "256K").code == 0
    socket = str(lab.home / "appliance.sock")
    sid = lab.vmkeep("job", "run", "big").out.strip()
    seen: list[list[int]] = [[], []]
    ends: list[list[str]] = [[], []]
    threads = [threading.Thread(target=fn, args=(socket, sid, seen[i], ends[i]))
               for i, fn in enumerate((follow, follow_events))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    for values, end in zip(seen, ends, strict=True):
        assert end == ["ended/success"]
        assert len(values) >= 3, values
        assert values == sorted(values), values  # rising
    late = json.loads(lab.vmkeep("session", "show", sid, "--json").out)
    assert late["state"] == "ended" and late["tasks"][0]["bytes_done"] > 0
    messages = [x["message"] for x in late["log"]]
    assert any("snapshot" in m and "taken" in m for m in messages)
    assert messages[-1] == "session ended: success"
    with ApplianceClient(socket) as client:
        events = list(client.events(sid))
    assert [e.line.message for e in events if e.line] == messages
    assert events[-1].summary is not None and events[-1].summary.result == "success"
    assert lab.vmkeep("session", "follow", sid).code == 0
