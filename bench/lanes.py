"""The two study lanes against one study after another: the same sweep, twice, on one Ray with a GPU.

    .venv/bin/python bench/lanes.py                       # all --profile quick, 4 CPUs + 1 logical GPU
    .venv/bin/python bench/lanes.py --experiment exp3 --cpus 4

Starts a Ray head (``ray start``) with ``--cpus`` CPUs and one GPU (a logical one on a machine without),
then runs ``python -m raygenre.sweep EXPERIMENT`` against it with ``--sequential`` (the baseline) and
without (the lanes), each in a fresh run directory, and prints each run's wall time, the ratio, and when
each study's trials started and ended (from the records' ``started_unix`` / ``finished_unix``).

On a machine without a GPU the "GPU" trials compute on the same CPUs as the CPU-only ones, so the lanes
can only fill cores the GPU lane leaves idle; on a GPU node they also keep the GPU fed while the feature
models and exp4 run, which is the saving this layout exists for (bench/README.md, paper_time projection).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def start_head(cpus: int, port: int, env: dict) -> None:
    ray = Path(sys.executable).with_name("ray")
    subprocess.run([str(ray), "start", "--head", f"--num-cpus={cpus}", "--num-gpus=1", f"--port={port}",
                    "--include-dashboard=false"], check=True, env=env, capture_output=True)


def stop_head(env: dict) -> None:
    ray = Path(sys.executable).with_name("ray")
    subprocess.run([str(ray), "stop", "--force"], env=env, capture_output=True)


def run_sweep(experiment: str, profile: str, storage: Path, name: str, address: str, extra: list[str],
              env: dict) -> float:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "raygenre.sweep", experiment, "--profile", profile,
                           "--storage", str(storage), "--name", name, "--address", address, "--no-report", *extra],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"{name}: the sweep failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    lane_line = [line for line in proc.stdout.splitlines() if line.startswith("[sweep] GPU lane")]
    if lane_line:
        print(lane_line[0])
    return wall


def timeline(run_dir: Path) -> dict[str, tuple[int, float, float]]:
    """study -> (trials, first start, last end), seconds since the run's first trial started."""
    from raygenre.records import read_records

    spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for record in read_records(run_dir):
        spans[record["study"]].append((record["timings"]["started_unix"], record["timings"]["finished_unix"]))
    origin = min(start for span in spans.values() for start, _ in span)
    return {study: (len(span), min(s for s, _ in span) - origin, max(e for _, e in span) - origin)
            for study, span in spans.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--experiment", default="all")
    p.add_argument("--profile", default="quick")
    p.add_argument("--cpus", type=int, default=4, help="CPUs the Ray head advertises (default 4)")
    p.add_argument("--port", type=int, default=6397)
    p.add_argument("--set", action="append", default=[], help="passed to both sweeps")
    args = p.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # progress as it comes, also into a file
    env = {**os.environ, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled"), "RAYGENRE_QUIET": "1"}
    env.pop("RAY_ADDRESS", None)
    extra = [f"--set={s}" for s in args.set]
    storage = Path(tempfile.mkdtemp(prefix="bench-lanes-"))
    start_head(args.cpus, args.port, env)
    try:
        address = f"127.0.0.1:{args.port}"
        walls, spans = {}, {}
        for name, flags in (("sequential", ["--sequential"]), ("lanes", [])):
            walls[name] = run_sweep(args.experiment, args.profile, storage, name, address, extra + flags, env)
            studies = timeline(storage / name)
            spans[name] = max(last for _, _, last in studies.values())
            print(f"{name:10s} wall {walls[name]:7.1f} s (the sweep command, prepare included); "
                  f"trials {spans[name]:7.1f} s (first start to last end)")
            for study, (n, first, last) in sorted(studies.items(), key=lambda kv: kv[1][1]):
                print(f"    {study:16s} {n:4d} trials  {first:7.1f} -> {last:7.1f} s")
    finally:
        stop_head(env)
        shutil.rmtree(storage, ignore_errors=True)
    print(f"{args.experiment} --profile {args.profile} on {args.cpus} CPUs + 1 GPU (logical unless the machine "
          f"has one): lanes / sequential: wall {walls['lanes'] / walls['sequential']:.2f} x, "
          f"trials {spans['lanes'] / spans['sequential']:.2f} x")


if __name__ == "__main__":
    main()
