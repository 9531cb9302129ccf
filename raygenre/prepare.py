"""``python -m raygenre.prepare``: GTZAN audio (or the synthetic set) in, cached Parquet shards out.

    python -m raygenre.prepare --data synthetic --out runs/demo
    python -m raygenre.prepare --data ~/gtzan --out runs/gtzan --profile paper --split fault_filtered

The shard set lands in ``RUN_DIR/shards/<config hash>/``; an identical second call reuses it
and computes nothing. The sweep calls the same code (``ensure_shards``) when shards are missing.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from raygenre.config import ConfigError, PrepareSpec, deep_merge, load_prepare_spec
from raygenre.data.gtzan import DatasetError
from raygenre.data.pipeline import MANIFEST, PrepareError, ensure_shards, read_manifest
from raygenre.data.synthetic import SyntheticError

log = logging.getLogger("raygenre.prepare")


class UsageError(ValueError):
    """A command-line value that cannot be used."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m raygenre.prepare", description=__doc__.split("\n")[0])
    p.add_argument("--data", default="synthetic", help="'synthetic' or a GTZAN folder (default: synthetic)")
    p.add_argument("--out", required=True, type=Path, help="run directory; shards go to RUN_DIR/shards/<hash>/")
    p.add_argument("--profile", default="quick", help="quick or paper (default: quick)")
    p.add_argument("--split", choices=["paper", "fault_filtered"], help="split (default from the profile)")
    p.add_argument("--seed", type=int, help="split seed (default: the profile's first seed)")
    p.add_argument("--representations", help="comma-separated subset of features,mel,waveform "
                                              "(default from the profile)")
    p.add_argument("--workers", type=int, help="actors in the decode/feature pool (default: one per CPU)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                   help="config override, e.g. prepare.clip_seconds=10 (repeatable)")
    return p.parse_args(argv)


def build_spec(args: argparse.Namespace) -> PrepareSpec:
    """The resolved spec; bad values fail here, in one sentence, before Ray starts."""
    overrides: dict = {}
    if args.set:
        from raygenre.sweep import parse_overrides

        overrides = parse_overrides(args.set)
    cli: dict = {"data": {}, "split": {}, "prepare": {}}
    if args.data == "synthetic":
        cli["data"]["source"] = "synthetic"
    else:
        folder = Path(args.data).expanduser()
        if not folder.is_dir():
            raise UsageError(f"--data must be 'synthetic' or an existing GTZAN folder; {args.data!r} is neither.")
        cli["data"]["source"] = str(folder.resolve())
    if args.split:
        cli["split"]["name"] = args.split
    if args.seed is not None:
        cli["split"]["seeds"] = [args.seed]
    if args.representations:
        cli["prepare"]["representations"] = [r.strip() for r in args.representations.split(",") if r.strip()]
    if args.workers is not None:
        cli["prepare"]["workers"] = args.workers
    spec = load_prepare_spec(args.profile, deep_merge(overrides, cli))
    if spec.data.source != "synthetic":
        from raygenre.data.gtzan import discover

        discover(spec.data.source)
    return spec


def summary(shard_dir: Path, manifest: dict, reused: bool) -> str:
    """What a person wants to see at the end: where, how many, what was skipped and why."""
    lines = [f"shards: {shard_dir} ({'cache hit: nothing computed' if reused else 'computed'})"]
    clips = manifest["counts"]["clips"]
    lines.append("clips: " + ", ".join(f"{s} {n}" for s, n in clips.items() if n))
    for rep, entry in manifest["representations"].items():
        rows = ", ".join(f"{s} {n}" for s, n in entry["rows"].items() if n)
        aug = sum(entry["augmented_rows"].values())
        lines.append(f"{rep}: {rows}" + (f" (of which {aug} augmented)" if aug else ""))
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
        shard_dir = args.out.expanduser() / "shards" / spec.hash()
        before = (shard_dir / MANIFEST).read_bytes() if (shard_dir / MANIFEST).is_file() else None
        shard_dir = ensure_shards(spec, args.out)
        manifest = read_manifest(shard_dir)
    except (UsageError, ConfigError, DatasetError, SyntheticError, PrepareError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    reused = before is not None and before == (shard_dir / MANIFEST).read_bytes()
    print(summary(shard_dir, manifest, reused))
    return 0


if __name__ == "__main__":
    sys.exit(main())
