"""The ``vmkeep`` command line: argument parsing and error reporting.

Commands live in their own modules and are imported only when run, so ``--help`` stays quick.
Every error is one line on stderr (``vmkeep: error: …``) and a documented exit code
(see ``docs/CLI.md``); no traceback reaches the user.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from appliance.errors import EXIT_INTERRUPTED, UsageError, VmkeepError

EXIT_INTERNAL = 70

EPILOG_IMAGE = """examples:
  vmkeep image backup --repo /backups/r1 --name db01 disk.img
  vmkeep image backup --repo /backups/r1 --name db01 --changed areas.json disk.img
  vmkeep image points --repo /backups/r1 --json
  vmkeep image restore --repo /backups/r1 20261124T210101Z-3fa2c1d0 restored.img
  vmkeep image verify --repo /backups/r1
  vmkeep image prune --repo /backups/r1 --keep-last 7 --keep-days 30 --dry-run
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}; see `{self.prog} --help`")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="vmkeep", description="Agentless image-based backup for vSphere.")
    sub = parser.add_subparsers(dest="group", required=True, parser_class=_Parser)
    image = sub.add_parser("image", help="back up and restore raw disk images (offline)",
                           description="Back up, restore, check and prune raw disk images in "
                           "a repository folder, without the appliance.",
                           epilog=EPILOG_IMAGE,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    isub = image.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--repo", required=True, metavar="DIR", help="repository folder")
        p.add_argument("--lock-wait", type=_positive_float, default=60.0, metavar="SECONDS",
                       help="how long to wait for a conflicting lock (default 60)")

    p = isub.add_parser("backup", help="back up an image file as a new restore point")
    common(p)
    p.add_argument("--name", required=True, help="the protected object's name")
    p.add_argument("--changed", metavar="AREAS.json",
                   help='areas changed since the last point: [{"offset": n, "length": n}, …]')
    p.add_argument("--block-size", default="1M", help="256K, 512K, 1M (default) or 4M")
    p.add_argument("--compression", default="zstd-fast",
                   help="none, zstd-fast (default), zstd-3 or zstd-9")
    p.add_argument("--threads", type=int, default=2, help="worker threads (default 2)")
    p.add_argument("file", metavar="FILE", help="raw image file or block device")

    p = isub.add_parser("restore", help="restore a point's disk to a new raw image file")
    common(p)
    p.add_argument("--disk", type=int, default=0, help="disk number (default 0)")
    p.add_argument("point", metavar="POINT")
    p.add_argument("file", metavar="FILE")

    p = isub.add_parser("verify", help="health check of one point or the whole repository")
    common(p)
    p.add_argument("point", metavar="POINT", nargs="?")

    p = isub.add_parser("points", help="list restore points, oldest first")
    common(p)
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.add_argument("--name", help="only points of this object")

    p = isub.add_parser("rescan", help="rebuild the catalog cache from the repository alone")
    common(p)

    p = isub.add_parser("prune", help="apply retention, then free space")
    common(p)
    p.add_argument("--keep-last", type=int, metavar="N", help="keep the N newest per name")
    p.add_argument("--keep-days", type=float, metavar="D", help="keep points younger than D days")
    p.add_argument("--compact-below", type=float, default=0.75, metavar="SHARE",
                   help="rewrite packs whose live share is under SHARE (default 0.75)")
    p.add_argument("--dry-run", action="store_true", help="say what would go; change nothing")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        from appliance import image_cli

        return image_cli.run(args)
    except VmkeepError as exc:
        print(f"vmkeep: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("vmkeep: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except SystemExit as exc:  # --help
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    except Exception as exc:
        print(f"vmkeep: internal error: {type(exc).__name__}: {exc}; please report this with "
              "the command you ran", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
