"""``python -m raygenre.prepare``: GTZAN audio (or the synthetic set) in, cached Parquet shards out.

    python -m raygenre.prepare --data synthetic --out runs/demo
    python -m raygenre.prepare --data ~/gtzan --out runs/gtzan --profile paper --split fault_filtered

The shard set lands in ``RUN_DIR/shards/<config hash>/``; an identical second call reuses it
and computes nothing, and so does a later ``python -m raygenre.sweep`` with the same profile and
data (the sweep calls the same ``ensure_shards``). Shards hold every usable clip; the split is
drawn when a trial reads them, but prepare checks here that the configured split can be drawn.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from raygenre.config import PrepareSpec, deep_merge, load_prepare_spec
from raygenre.data.pipeline import ensure_shards, shard_dir_of
from raygenre.data.shards import MANIFEST, read_manifest
from raygenre.data.source import absolute_source
from raygenre.errors import RaygenreError, one_line
from raygenre.overrides import parse_overrides
from raygenre.ray_session import ADDRESS_HELP, requested_address

log = logging.getLogger("raygenre.prepare")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m raygenre.prepare", description=__doc__.split("\n")[0])
    p.add_argument("--data", default="synthetic", help="'synthetic' or a GTZAN folder (default: synthetic)")
    p.add_argument("--out", required=True, type=Path, help="run directory; shards go to RUN_DIR/shards/<hash>/")
    p.add_argument("--profile", default="quick", help="quick or paper (default: quick)")
    p.add_argument("--split", choices=["paper", "fault_filtered"], help="split (default from the profile)")
    p.add_argument("--seed", type=int, help="split seed to check (default: the profile's seeds)")
    p.add_argument("--representations", help="comma-separated subset of features,mel,waveform "
                                              "(default from the profile)")
    p.add_argument("--workers", type=int, help="actors in the decode/feature pool (default: one per CPU)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                   help="config override, e.g. prepare.clip_seconds=10 (repeatable)")
    p.add_argument("--address", help=ADDRESS_HELP)
    return p.parse_args(argv)


def build_spec(args: argparse.Namespace) -> PrepareSpec:
    """The resolved spec; bad values fail here, in one sentence, before Ray starts."""
    overrides = parse_overrides(args.set or [])
    cli: dict = {"data": {"source": absolute_source(args.data)}, "split": {}, "prepare": {}}
    if args.split:
        cli["split"]["name"] = args.split
    if args.seed is not None:
        cli["split"]["seeds"] = [args.seed]
    if args.representations:
        cli["prepare"]["representations"] = [r.strip() for r in args.representations.split(",") if r.strip()]
    if args.workers is not None:
        cli["prepare"]["workers"] = args.workers
    return load_prepare_spec(args.profile, deep_merge(overrides, cli))


def summary(shard_dir: Path, manifest: dict, reused: bool) -> str:
    """What a person wants to see at the end: where, how many, what was skipped and why."""
    lines = [f"shards: {shard_dir} ({'cache hit: nothing computed' if reused else 'computed'})"]
    check = manifest["split_check"]
    lines.append(f"clips: {manifest['counts']['clips']} usable; split {check['name']} (seeds "
                 f"{', '.join(map(str, check['seeds']))}) gives " +
                 ", ".join(f"{s} {n}" for s, n in check["counts"].items() if n))
    for folder, entry in manifest["representations"].items():
        lines.append(f"{folder}: {entry['rows']} rows")
    skipped = manifest["skipped"]
    lines.append(f"skipped: {len(skipped)} file(s)")
    lines += [f"  {s['path']}: {s['reason']}" for s in skipped]
    if not reused:
        lines.append("timings (s): " + json.dumps(manifest["timings_s"]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    args = parse_args(argv)
    try:
        spec = build_spec(args)
        shard_dir = shard_dir_of(spec, args.out)
        before = (shard_dir / MANIFEST).read_bytes() if (shard_dir / MANIFEST).is_file() else None
        with requested_address(args.address):  # Ray starts only when shards must be computed
            shard_dir = ensure_shards(spec, args.out)
        manifest = read_manifest(shard_dir)
    except RaygenreError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    reused = before is not None and before == (shard_dir / MANIFEST).read_bytes()
    print(summary(shard_dir, manifest, reused))
    return 0


if __name__ == "__main__":
    sys.exit(main())
