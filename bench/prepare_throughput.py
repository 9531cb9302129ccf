"""Throughput of the prepare pipeline: Ray Data against a plain loop over the same per-clip function.

    python bench/prepare_throughput.py                 # 200 synthetic 30 s clips, features + mel
    python bench/prepare_throughput.py --clips 40 --seconds 10

Both sides run ``raygenre.data.features.extract_clip`` (decode, Kaggle features, mel image) on
the same files in the same process tree on the same machine. The Ray side is the prepare
stage's own dataset (``pipeline.clip_dataset``: bytes -> warm actor pool), consumed without the
Parquet write; the loop reads each file and calls the function. Reported separately:

* warm-up: librosa import + numba JIT in a fresh process, with the on-disk numba cache as it is,
  and with an empty cache (what a brand-new worker node pays);
* steady state: clips/s while every actor is warm and busy (each batch's clips are counted
  pro rata to its overlap with that window), and the loop's clips/s after its warm-up;
* end to end: wall time including actor start-up and warm-up;
* how much CPU each side actually got, so that a run disturbed by other jobs shows it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# One BLAS thread, as Ray gives each 1-CPU worker: with the default pool the loop spends ~13 %
# more CPU per clip (measured), which would flatter the Ray side.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from raygenre.config import PrepareConfig  # noqa: E402
from raygenre.data import pipeline  # noqa: E402
from raygenre.data.features import extract_clip, warm_up  # noqa: E402
from raygenre.data.gtzan import discover  # noqa: E402
from raygenre.data.synthetic import generate, is_complete  # noqa: E402

REPRESENTATIONS = ("features", "mel")
COLD_WARM_UP = "from raygenre.data.features import warm_up; import time; print(warm_up())"


class TimedWorker(pipeline.ClipWorker):
    """ClipWorker that stamps when it became warm and when each batch started and ended."""

    def __init__(self, *args):
        super().__init__(*args)
        self.ready_at = time.time()

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        start, cpu = time.time(), time.process_time()
        table = super().__call__(batch)
        end, n, cpu = time.time(), table.num_rows, time.process_time() - cpu
        extra = {"pid": [os.getpid()] * n, "ready_at": [self.ready_at] * n, "warm_up_s": [self.warm_up_s] * n,
                 "batch_start": [start] * n, "batch_end": [end] * n, "batch_rows": [n] * n,
                 "batch_cpu_s": [cpu] * n}
        for name, values in extra.items():
            table = table.append_column(name, pa.array(values))
        return table.drop_columns([c for c in ("mel",) if c in table.column_names])


class CpuSampler(threading.Thread):
    """Samples /proc every second: CPU ticks of the whole machine and of this process tree (Ray)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.samples: list[tuple[float, int, dict[int, int]]] = []
        self.stop = threading.Event()

    @staticmethod
    def _machine_busy() -> int:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(fields) - fields[3] - fields[4]  # all but idle and iowait

    @staticmethod
    def _tree() -> dict[int, int]:
        stats = {}
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    parts = (d / "stat").read_text().rsplit(")", 1)[1].split()
                    stats[int(d.name)] = (int(parts[1]), int(parts[11]) + int(parts[12]))  # ppid, utime+stime
                except (OSError, IndexError, ValueError):
                    continue
        mine, todo = {os.getpid()}, [os.getpid()]
        while todo:
            parent = todo.pop()
            for pid, (ppid, _) in stats.items():
                if ppid == parent and pid not in mine:
                    mine.add(pid)
                    todo.append(pid)
        return {pid: stats[pid][1] for pid in mine if pid in stats}

    def run(self) -> None:
        while not self.stop.wait(1.0):
            self.samples.append((time.time(), self._machine_busy(), self._tree()))

    def window(self, t0: float, t1: float) -> dict:
        """CPUs used between t0 and t1: by the whole machine and by this process tree."""
        inside = [s for s in self.samples if t0 <= s[0] <= t1]
        if len(inside) < 2:
            return {}
        (a, busy_a, tree_a), (b, busy_b, tree_b) = inside[0], inside[-1]
        tick = os.sysconf("SC_CLK_TCK")
        ours = sum(v - tree_a.get(pid, 0) for pid, v in tree_b.items())
        return {"seconds": b - a, "machine_cpus": (busy_b - busy_a) / tick / (b - a),
                "ray_tree_cpus": ours / tick / (b - a)}


def dataset(root: Path, clips: int) -> list[str]:
    found = discover(root)
    return [str(c.path) for c in found.clips[:clips]]


def ensure_data(folder: Path, clips: int, seconds: float) -> tuple[Path, float]:
    per_genre = -(-clips // 10)
    start = time.perf_counter()
    if not is_complete(folder, per_genre, seconds, 0, 0):
        generate(folder, per_genre, seconds, seed=0)
    return folder, time.perf_counter() - start


def cold_warm_up_s() -> float:
    """A fresh interpreter with an empty numba cache: the first-ever warm-up on a new node."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        out = subprocess.run([sys.executable, "-c", COLD_WARM_UP], env=env, capture_output=True, text=True,
                             check=True)
    return float(out.stdout.strip().splitlines()[-1])


def warm_process_warm_up_s() -> float:
    """A fresh interpreter with the numba cache as it is on this machine (what a Ray actor pays)."""
    out = subprocess.run([sys.executable, "-c", COLD_WARM_UP], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def sequential(paths: list[str], cfg: PrepareConfig) -> dict:
    start = time.perf_counter()
    warm = warm_up(cfg.sample_rate)
    loop_start, cpu = time.perf_counter(), time.process_time()
    rows = 0
    for path in paths:
        rows += len(extract_clip(Path(path).read_bytes(), path, cfg, REPRESENTATIONS))
    end, cpu = time.perf_counter(), time.process_time() - cpu
    return {"clips": len(paths), "rows": rows, "warm_up_s": warm, "loop_s": end - loop_start,
            "cpu_s_per_clip": cpu / len(paths), "cpu_share": cpu / (end - loop_start),
            "wall_s": end - start, "steady_clips_per_s": len(paths) / (end - loop_start),
            "end_to_end_clips_per_s": len(paths) / (end - start)}


def with_ray(paths: list[str], cfg: PrepareConfig, workers: int) -> dict:
    sampler = CpuSampler()
    sampler.start()
    start = time.time()
    ds = pipeline.clip_dataset(paths, cfg, REPRESENTATIONS, worker=TimedWorker, workers=workers)
    table = pa.concat_tables([pa.Table.from_pandas(b) for b in ds.iter_batches(batch_format="pandas",
                                                                                 batch_size=None)])
    end = time.time()
    sampler.stop.set()
    rows = table.select(["pid", "ready_at", "warm_up_s", "batch_start", "batch_end", "batch_rows",
                         "batch_cpu_s", "error"]).to_pandas()
    per_worker = rows.groupby("pid").agg(ready=("ready_at", "first"), warm=("warm_up_s", "first"),
                                         last_end=("batch_end", "max"))
    t0, t1 = per_worker["ready"].max(), per_worker["last_end"].min()  # every actor warm and busy
    batches = rows.drop_duplicates(["pid", "batch_start"])
    overlap = (np.minimum(batches["batch_end"], t1) - np.maximum(batches["batch_start"], t0)).clip(lower=0)
    share = overlap / (batches["batch_end"] - batches["batch_start"])
    steady = float((batches["batch_rows"] * share).sum())
    steady_cpu = float((batches["batch_cpu_s"] * share).sum())
    busy = float(overlap.sum()) / (len(per_worker) * (t1 - t0)) if t1 > t0 else float("nan")
    return {"clips": len(paths), "rows": int(len(rows)), "errors": int(rows["error"].notna().sum()),
            "workers": int(len(per_worker)), "wall_s": end - start,
            "first_worker_ready_s": float(per_worker["ready"].min() - start),
            "all_workers_ready_s": float(t0 - start),
            "worker_warm_up_s": sorted(round(float(w), 2) for w in per_worker["warm"]),
            "steady_window_s": float(t1 - t0), "steady_clips": steady,
            "cpu_s_per_clip": float(batches["batch_cpu_s"].sum() / len(paths)),
            "cpu_share": steady_cpu / (t1 - t0) if t1 > t0 else float("nan"),
            "actor_busy_fraction": busy, "window_cpus": sampler.window(t0, t1),
            "steady_clips_per_s": steady / (t1 - t0) if t1 > t0 else float("nan"),
            "end_to_end_clips_per_s": len(paths) / (end - start)}


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"cpus": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
            "platform": platform.platform(), "load_avg_1m": round(os.getloadavg()[0], 2)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clips", type=int, default=200)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--workers", type=int, help="actors (default: CPUs of the local Ray)")
    p.add_argument("--data-dir", type=Path, help="where the synthetic clips are cached "
                                                 "(default: <tmp>/raygenre-bench/<clips>x<seconds>s)")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--skip-cold", action="store_true", help="skip the empty-numba-cache warm-up measurement")
    args = p.parse_args(argv)

    import ray

    folder = args.data_dir or Path(tempfile.gettempdir()) / "raygenre-bench" / f"{args.clips}x{args.seconds:g}s"
    root, gen_s = ensure_data(folder, args.clips, args.seconds)
    paths = dataset(root, args.clips)
    cfg = PrepareConfig(clip_seconds=args.seconds, min_seconds=0.0, representations=REPRESENTATIONS)
    info = {"machine": machine(), "clips": len(paths), "seconds": args.seconds,
            "representations": list(REPRESENTATIONS), "batch_size": cfg.batch_size, "data_s": round(gen_s, 1)}
    print(f"machine: {info['machine']}", flush=True)
    print(f"data: {len(paths)} synthetic clips of {args.seconds:g} s under {root} ({gen_s:.1f} s to make)",
          flush=True)
    info["warm_up_fresh_process_s"] = warm_process_warm_up_s()
    if not args.skip_cold:
        info["warm_up_empty_numba_cache_s"] = cold_warm_up_s()
    print("sequential loop ...", flush=True)
    info["sequential"] = seq = sequential(paths, cfg)
    print("ray data ...", flush=True)
    ray.init(address="local", include_dashboard=False, log_to_driver=False)
    try:
        workers = args.workers or int(ray.cluster_resources()["CPU"])
        info["ray"] = rd = with_ray(paths, cfg, workers)
    finally:
        ray.shutdown()
    info["steady_ratio"] = rd["steady_clips_per_s"] / seq["steady_clips_per_s"]
    info["end_to_end_ratio"] = rd["end_to_end_clips_per_s"] / seq["end_to_end_clips_per_s"]
    info["goal_ratio"] = 0.9 * workers
    info["machine"]["load_avg_1m_end"] = round(os.getloadavg()[0], 2)

    print(f"\n{len(paths)} clips x {args.seconds:g} s, features + mel, {workers} Ray workers on "
          f"{info['machine']['cpus']} CPUs (load avg {info['machine']['load_avg_1m']} -> "
          f"{info['machine']['load_avg_1m_end']})")
    print(f"warm-up, fresh process (numba cache as is): {info['warm_up_fresh_process_s']:.1f} s")
    if "warm_up_empty_numba_cache_s" in info:
        print(f"warm-up, fresh process, empty numba cache:  {info['warm_up_empty_numba_cache_s']:.1f} s")
    print(f"sequential: warm-up {seq['warm_up_s']:.1f} s, loop {seq['loop_s']:.1f} s -> "
          f"{seq['steady_clips_per_s']:.3f} clips/s steady, {seq['end_to_end_clips_per_s']:.3f} end to end")
    print(f"ray data:   first worker warm after {rd['first_worker_ready_s']:.1f} s (its warm-up "
          f"{rd['worker_warm_up_s'][0]:.1f} s), all after {rd['all_workers_ready_s']:.1f} s; wall {rd['wall_s']:.1f} s")
    print(f"ray data:   {rd['steady_clips_per_s']:.3f} clips/s steady ({rd['steady_clips']:.1f} clips in "
          f"{rd['steady_window_s']:.1f} s), {rd['end_to_end_clips_per_s']:.3f} end to end; errors {rd['errors']}")
    print(f"contention check: the loop got {seq['cpu_share']:.2f} of a CPU, the {workers} workers together "
          f"{rd['cpu_share']:.2f} CPUs; CPU s per clip: loop {seq['cpu_s_per_clip']:.2f}, "
          f"workers {rd['cpu_s_per_clip']:.2f}; actors busy {rd['actor_busy_fraction']:.1%} of the steady window")
    cpus = rd["window_cpus"]
    if cpus:
        print(f"steady window, CPUs in use: whole machine {cpus['machine_cpus']:.2f} of "
              f"{info['machine']['cpus']}; this run's Ray processes {cpus['ray_tree_cpus']:.2f} (actors' own "
              f"work {rd['cpu_share']:.2f}, Ray's overhead {cpus['ray_tree_cpus'] - rd['cpu_share']:.2f}); "
              f"other jobs {cpus['machine_cpus'] - cpus['ray_tree_cpus']:.2f}")
    print(f"ratio ray/sequential: steady {info['steady_ratio']:.2f} (goal >= {info['goal_ratio']:.1f}), "
          f"end to end {info['end_to_end_ratio']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(info, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
