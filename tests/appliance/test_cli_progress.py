"""`vmkeep job run --wait` on a real terminal (a pseudo-terminal of 120×40) shows a bar per
VM and the session's with bytes, rate and ETA, and a summary line at the end; without a
terminal it prints plain lines (no redraws, no escape codes) and the same summary (issue 15,
item 9). The exit code is the result's either way."""

from __future__ import annotations

import fcntl
import os
import random
import re
import select
import struct
import subprocess
import sys
import termios
import time

from tests.appliance.lab import VM, Lab
from tests.helpers import REPO_ROOT

SIZE = 96 << 20
ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
SUMMARY = re.compile(r"^session \S+: success in \S+.*, read [\d.]+ MiB, transferred [\d.]+ "
                     r"\S+, dedup [\d.]+x, compression [\d.]+x$", re.MULTILINE)


def filled(lab: Lab) -> None:
    lab.grow(SIZE)
    rnd = random.Random(15)
    with lab.flat().open("r+b") as f:
        for off in range(0, SIZE, 4 << 20):
            f.seek(off)
            f.write(rnd.randbytes(4 << 20))


def on_terminal(lab: Lab, *args: str, timeout: float = 240.0) -> tuple[int, bytes]:
    """The CLI with stdout and stderr on a pseudo-terminal; what it wrote there, as is."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = {**lab.env, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40",
           "PYTHONIOENCODING": "utf-8"}
    proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", *args], cwd=REPO_ROOT,
                            env=env, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    written = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"still running after {timeout}s:\n{written.decode()[-2000:]}"
            ready, _, _ = select.select([master], [], [], left)
            if not ready:
                continue
            try:
                chunk = os.read(master, 1 << 16)
            except OSError:  # EIO: the child closed the terminal's last descriptor
                break
            if not chunk:
                break
            written += chunk
        return proc.wait(timeout=30), bytes(written)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_job_run_wait_on_a_terminal_shows_bars_with_eta_and_a_summary(lab: Lab) -> None:
    filled(lab)
    assert lab.vmkeep("job", "create", "big", "--vcenter", "vc", "--vm", VM, "--repo",
                      "main", "--enable-cbt", "--block-size", "256K").code == 0
    code, raw = on_terminal(lab, "job", "run", "big", "--wait")
    text = raw.decode(errors="replace")
    assert code == 0, text
    assert "\x1b[" in text  # drawn in place
    plain = ESCAPE.sub("", text).replace("\r", "\n")
    assert "━" in plain, plain  # rich's bar
    assert re.search(rf"{VM} +━+.*\d+% +[\d.]+ \w?i?B/[\d.]+ MiB +[\d.]+ \w?i?B/s", plain), \
        plain
    assert re.search(r"session \(\d/1 VMs\) +━+", plain), plain
    assert re.search(r"ETA \d+:\d\d:\d\d", plain), plain
    assert re.search(r"in \d+:\d\d:\d\d", plain), plain  # a finished bar: how long it took
    assert "session ended: success" in plain  # the log, above the bars
    assert SUMMARY.search(plain.replace("\r\n", "\n")), plain


def test_job_run_wait_without_a_terminal_prints_plain_lines(lab: Lab) -> None:
    filled(lab)
    assert lab.vmkeep("job", "create", "big", "--vcenter", "vc", "--vm", VM, "--repo",
                      "main", "--enable-cbt", "--block-size", "256K").code == 0
    r = lab.vmkeep("job", "run", "big", "--wait")
    assert r.code == 0, r.err
    assert "\x1b" not in r.err and "\r" not in r.err, r.err
    lines = r.err.splitlines()
    steps = [x for x in lines if re.fullmatch(rf"{VM}: (25|50|75)% [\d.]+ MiB of 96.0 MiB, "
                                              r"[\d.]+ \w?i?B/s(, ETA \d+:\d\d:\d\d)?", x)]
    assert steps, r.err
    assert SUMMARY.fullmatch(lines[-1]), r.err
    assert r.out.strip() == lines[-1].split()[1].rstrip(":")  # the session's id
