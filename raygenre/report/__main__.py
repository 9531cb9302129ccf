"""``python -m raygenre.report RUN_DIR [--out reports/<name>]``."""

from __future__ import annotations

import argparse
import sys

from raygenre.errors import RaygenreError, one_line
from raygenre.report.document import default_out_dir, write_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m raygenre.report",
        description="Write REPORT.md and its figures from the records of one run directory.")
    parser.add_argument("run_dir", help="run directory holding records/*.jsonl")
    parser.add_argument("--out", default=None,
                        help="output folder (default: reports/<name of RUN_DIR>)")
    args = parser.parse_args(argv)
    try:
        path = write_report(args.run_dir, args.out if args.out is not None else default_out_dir(args.run_dir))
    except RaygenreError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
