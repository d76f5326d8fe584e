"""`make docs-check`: the docs must not promise as future what is already there (or never was).

Fails, naming FILE:LINE, on a phrase that puts the project's state in the future ("still to
come", "not yet", "a later issue", …) in README.md and docs/*.md, unless the line is under a
heading (of any level above it) whose text contains "Plans". Run with file names to check
those instead.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parent.parent
PHRASES: Final = ("still to come", "not yet", "arrives with", "a later issue", "will serve",
                  "joins it later", "later issue", "in a later", "coming soon")
_PATTERN: Final = re.compile("|".join(re.escape(p) for p in PHRASES), re.IGNORECASE)
_HEADING: Final = re.compile(r"^(#{1,6})\s+(.*)$")
_FENCE: Final = re.compile(r"^\s*(```|~~~)")


def findings(path: Path) -> Iterator[tuple[int, str, str]]:
    """(line number, phrase, line) for each future-tense phrase outside a Plans section."""
    headings: list[tuple[int, str]] = []  # (level, text) of the sections the line is in
    in_fence = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if _FENCE.match(line):
            in_fence = not in_fence
        heading = None if in_fence else _HEADING.match(line)
        if heading:
            level = len(heading.group(1))
            headings = [h for h in headings if h[0] < level] + [(level, heading.group(2))]
        if any("plans" in text.lower() for _, text in headings):
            continue
        for match in _PATTERN.finditer(line):
            yield number, match.group(0), line.strip()


def default_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def main(argv: Sequence[str]) -> int:
    files = [Path(a) for a in argv] or default_files()
    bad = 0
    for path in files:
        shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        for number, phrase, line in findings(path):
            print(f"{shown}:{number}: {phrase!r} promises as future what should be said as it "
                  f"is now (or moved under a 'Plans' heading): {line}", file=sys.stderr)
            bad += 1
    if bad:
        print(f"{bad} future-tense phrase(s) in the docs", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
