"""``vmkeep session list|show|follow``: the runs of jobs, and following one to its end (also
``job run --wait``)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from appliance.cli import online
from appliance.cli.args import (
    RAW,
    Parser,
    Subparsers,
)
from appliance.cli.online import Handler, dump
from appliance.errors import ApplianceError
from appliance.inputs import shown
from appliance.progress import human_bytes
from appliance.table import render

if TYPE_CHECKING:
    from appliance import api
    from appliance.client import ApplianceClient
    from appliance.progress import Bars


# `job run --wait`: 0 success, 1 warning, 2 failed, stopped or interrupted.
EXIT_BY_RESULT = {"success": 0, "warning": 1}
EXIT_FAILED = 2


def exit_code(s: api.SessionSummary | api.Session) -> int:
    return EXIT_BY_RESULT.get(s.result or "", EXIT_FAILED) if s.state == "ended" else \
        EXIT_FAILED


EPILOG_SESSION = """examples:
  vmkeep session list --json
  vmkeep session list --kind restore                 # the restores and how they ended
  vmkeep session show 20261202T010203Z-1a2b3c --json
  vmkeep session follow 20261202T010203Z-1a2b3c     # live log; exit 0 success, 1 warning, 2 failed
"""


def add_parser(sub: Subparsers) -> None:
    raw = RAW
    sp = sub.add_parser("session", help="sessions: the runs of jobs", epilog=EPILOG_SESSION,
                        formatter_class=raw)
    ssub = sp.add_subparsers(dest="command", required=True, parser_class=Parser)
    p = ssub.add_parser("list", help="sessions, oldest first", epilog=EPILOG_SESSION,
                        formatter_class=raw)
    p.add_argument("--kind", choices=("backup", "copy", "logs", "restore"),
                   help="only the sessions of this kind (restore: the restores)")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p = ssub.add_parser("show", help="a session with its tasks and log", epilog=EPILOG_SESSION,
                        formatter_class=raw)
    p.add_argument("id", metavar="ID")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p = ssub.add_parser("follow", help="follow a session to its end", epilog=EPILOG_SESSION,
                        formatter_class=raw)
    p.add_argument("id", metavar="ID")


def follow(client: ApplianceClient, session_id: str) -> int:
    """Print the session's log as it comes (its event stream) with, on a terminal, a bar per
    VM and the session's (appliance/progress.py; plain lines at each quarter otherwise), and
    a summary line at its end; return the exit code of its result."""
    from appliance.progress import Bars

    with Bars(plain_steps=True) as bars:
        for event in client.events(session_id):
            if event.line is not None:
                line = event.line
                bars.line(f"{line.time:%H:%M:%S} {line.level:7} {shown(line.message)}")
            elif event.tasks is not None:
                show_tasks(bars, event.tasks)
            elif event.summary is not None:
                bars.close()
                bars.line(summary_line(client, event.summary))
                return exit_code(event.summary)
    raise ApplianceError(f"session {session_id}'s events ended before its end")


def show_tasks(bars: Bars, tasks: list[api.Task]) -> None:
    """One bar per VM that has started, then the session's: the VMs' bytes together."""
    vms = [t for t in tasks if t.disk is None]
    for t in vms:
        if t.state == "waiting":
            continue
        running = t.state == "running"
        bars.update(f"vm:{t.name}", shown(t.name), t.bytes_done, t.bytes_total,
                    rate=t.rate if running else None,
                    eta=t.eta_seconds if running else None,
                    end=None if running or t.bytes_done >= t.bytes_total
                    else t.result or t.state)
    finished = sum(1 for t in vms if t.state in ("ended", "stopped"))
    bars.update("session", f"session ({finished}/{len(vms)} VMs)",
                sum(t.bytes_done for t in vms), sum(t.bytes_total for t in vms))


def summary_line(client: ApplianceClient, end: api.SessionSummary) -> str:
    """The session's result, duration, bytes read and transferred, dedup and compression
    ratios (a backup's statistics; the duration alone for other sessions)."""
    try:
        stats = client.session(end.id).stats
    except ApplianceError:
        stats = None
    text = f"session {end.id}: {end.result or end.state}"
    if stats is not None:
        return (f"{text} in {duration(stats.duration_seconds)}, read "
                f"{human_bytes(stats.read)}, transferred {human_bytes(stats.transferred)}, "
                f"dedup {ratio(stats.dedup_ratio)}, compression "
                f"{ratio(stats.compression_ratio)}")
    if end.ended is not None:
        text += f" in {duration((end.ended - end.started).total_seconds())}"
    return text


def cmd_list(args: argparse.Namespace, client: ApplianceClient) -> int:
    rows = client.sessions(args.kind)
    if args.json:
        print(dump([s.model_dump(mode="json") for s in rows]))
    elif not rows:
        print("no sessions yet: `vmkeep job run NAME` starts one (`vmkeep job list` shows "
              "the jobs)")
    else:
        print(render(("ID", "JOB", "KIND", "STATE", "RESULT", "STARTED", "ENDED"),
                     [(s.id, s.job, s.kind, s.state, s.result or "-",
                       f"{s.started:%Y-%m-%d %H:%M:%S}",
                       f"{s.ended:%H:%M:%S}" if s.ended else "-") for s in rows]))
    return 0


def cmd_follow(args: argparse.Namespace, client: ApplianceClient) -> int:
    return follow(client, args.id)


def cmd_show(args: argparse.Namespace, client: ApplianceClient) -> int:
    s = client.session(args.id)
    if args.json:
        print(dump(s.model_dump(mode="json")))
        return 0
    print(f"session {s.id} of job {s.job!r}: {s.state}, {s.result or 'running'}")
    if s.stats is not None:
        print("\n".join(f"  {x}" for x in stats_lines(s.stats)))
    if s.outcome is not None:
        print(f"  {shown(s.outcome.message)}")
    for t in s.tasks:
        print(f"  {shown(t.name)}: {t.state} {t.result or ''} {human_bytes(t.bytes_done)} of "
              f"{human_bytes(t.bytes_total)}" + (f", point {t.point_id}" if t.point_id else ""))
    for line in s.log:
        print(f"  {line.time:%H:%M:%S} {line.level:7} {shown(line.message)}")
    return 0


def duration(seconds: float) -> str:
    """73.4 → '1m 13s'; 4.25 → '4.2s'."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    s = round(seconds)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s" if m else f"{s}s"


def ratio(r: float | None) -> str:
    return "—" if r is None else f"{r:.1f}x"


def stats_lines(st: api.SessionStats) -> list[str]:
    """A finished backup session's summary, as Veeam's statistics window has it."""
    shares = ", ".join(f"{x.stage} {100 * x.share:.0f}%" for x in st.stages)
    lines = [f"duration {duration(st.duration_seconds)}, processing rate "
             f"{human_bytes(st.rate)}/s",
             f"processed {human_bytes(st.processed)}, read {human_bytes(st.read)}, "
             f"transferred {human_bytes(st.transferred)}",
             f"dedup {ratio(st.dedup_ratio)}, compression {ratio(st.compression_ratio)}",
             f"bottleneck: {st.bottleneck or '—'} ({shares})"]
    lines += [f"{shown(v.vm)}: {duration(v.duration_seconds)}, read {human_bytes(v.read)}, "
              f"transferred {human_bytes(v.transferred)}, bottleneck {v.bottleneck or '—'}"
              for v in st.vms]
    return lines


COMMANDS: dict[str, Handler] = {"list": cmd_list, "show": cmd_show, "follow": cmd_follow}


def run(args: argparse.Namespace) -> int:
    return online.run(COMMANDS, args)
