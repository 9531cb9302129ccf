"""exp4's 109 tuned-XGBoost fits: Ray Tune against a sequential loop and against the ideal.

    python bench/exp4_parallel.py [--rows 1000] [--cpus 2] [--trials 109] [--features-csv PATH]

In one run on one machine: (a) the same per-trial function in a plain loop, which also gives every
single fit's time; (b) the ideal parallel wall time, the sum of those fit times divided by the CPUs,
and the same fits in a plain process pool without Ray (what parallel fits cost on this hardware);
(c) the Tune sweep (driver-side records included) on a local Ray with ``--cpus`` CPUs; and (d) one
fit on the distributed backend (``XGBoostTrainer``, 2 workers) beside one in-trial fit.
Goal: Tune <= 1.15 x ideal.
Without ``--features-csv`` the table is a GTZAN-sized (1000 × 58) learnable synthetic feature table.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import make_classification

from raygenre.config import load_experiment
from raygenre.data.gtzan import GENRES
from raygenre.data.kaggle_csv import KAGGLE_FEATURE_COLUMNS, read_features_csv
from raygenre.train.plan import plan_exp4
from raygenre.train.trial import run_trial


def gtzan_sized_table(rows: int, seed: int = 0) -> pd.DataFrame:
    per_genre = rows // len(GENRES)
    X, y = make_classification(n_samples=2 * rows, n_features=58, n_informative=14, n_redundant=6,
                               n_classes=10, n_clusters_per_class=2, class_sep=1.0, random_state=seed)
    idx = np.concatenate([np.where(y == k)[0][:per_genre] for k in range(len(GENRES))])
    ids = [f"{GENRES[k]}.{i:05d}" for k in range(len(GENRES)) for i in range(per_genre)]
    table = pd.DataFrame(X[idx, 1:], columns=list(KAGGLE_FEATURE_COLUMNS), index=pd.Index(ids, name="clip_id"))
    table.insert(0, "length", np.round(661_794 + np.abs(X[idx, 0]) * 50))
    table.insert(0, "label", [g for g in GENRES for _ in range(per_genre)])
    return table


_POOL_STATE: dict = {}


def _pool_init(table: pd.DataFrame, settings: dict) -> None:
    _POOL_STATE.update(table=table, settings=settings)


def _pool_fit(trial: dict) -> float:
    return run_trial(trial, {"features": _POOL_STATE["table"]}, _POOL_STATE["settings"])["timings"]["total_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--cpus", type=int, default=os.cpu_count())
    ap.add_argument("--trials", type=int, default=109, help="first N of exp4's planned trials")
    ap.add_argument("--features-csv")
    args = ap.parse_args()
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")

    table = read_features_csv(args.features_csv) if args.features_csv else gtzan_sized_table(args.rows)
    cfg = load_experiment("exp4", "quick")
    trials = plan_exp4(cfg)
    # interleave bootstraps and sizes so a --trials subset keeps both kinds
    trials = sorted(trials, key=lambda t: (t["bootstrap_index"] or 0, t["train_fraction"]))[: args.trials]
    settings = {"xgboost": cfg.xgboost.model_dump(mode="json"), "cpus_per_trial": 1, "run": {"source": "bench"}}
    print(f"machine: {platform.machine()} {platform.processor() or ''} {os.cpu_count()} CPUs, "
          f"python {sys.version.split()[0]}; table {table.shape[0]} rows; {len(trials)} tuned-XGBoost trials")

    # (a) sequential loop, one thread per fit as each Tune trial gets
    t0 = time.perf_counter()
    fit_times = [run_trial(t, {"features": table}, settings)["timings"]["total_s"] for t in trials]
    sequential = time.perf_counter() - t0
    ideal = sum(fit_times) / args.cpus
    print(f"sequential loop : {sequential:8.1f} s   (single fit: median {np.median(fit_times):.2f} s, "
          f"min {min(fit_times):.2f}, max {max(fit_times):.2f})")
    print(f"ideal on {args.cpus} CPUs: {ideal:8.1f} s   (sum of single-fit times / CPUs)")

    # (b2) the same fits in a plain process pool (no Ray): what 2-way parallelism costs on this hardware
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.cpus, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_pool_init, initargs=(table, settings)) as pool:  # fork deadlocks after OpenMP
        pool_times = list(pool.map(_pool_fit, trials))
    pool_wall = time.perf_counter() - t0
    print(f"process pool    : {pool_wall:8.1f} s   (no Ray; single fit inside the pool: median "
          f"{np.median(pool_times):.2f} s) -> pool / ideal {pool_wall / ideal:.3f}")

    # (c) the Tune sweep, through the same code path the CLI uses
    import ray

    from raygenre.train.tune_runner import run_trials
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run_trials(cfg, "exp4-bench", trials, {"features": table}, settings, Path(tmp))
        tune_wall = time.perf_counter() - t0
        lines = (Path(tmp) / "records" / "exp4-bench.jsonl").read_text().splitlines()
        assert len(lines) == len(trials), f"{len(lines)} records for {len(trials)} trials"
        in_tune = [json.loads(line)["timings"]["total_s"] for line in lines]
        print(f"Ray Tune        : {tune_wall:8.1f} s   ({len(lines)} records; single fit inside Tune: median "
              f"{np.median(in_tune):.2f} s, sum/CPUs {sum(in_tune) / args.cpus:.1f} s)")
        print(f"speed-up vs loop: {sequential / tune_wall:8.2f} x")
        print(f"Tune / ideal    : {tune_wall / ideal:8.3f}   (goal <= 1.15)")
        print(f"Tune / pool     : {tune_wall / pool_wall:8.3f}   (Ray's own overhead over plain processes)")

        # (d) one fit on each backend
        one = trials[-1]
        t0 = time.perf_counter()
        run_trial(one, {"features": table}, settings)
        in_trial = time.perf_counter() - t0
        distributed_settings = {**settings, "xgboost": {**settings["xgboost"], "backend": "distributed",
                                                        "workers": 2}, "train_storage": tmp}
        t0 = time.perf_counter()
        run_trial(one, {"features": table}, distributed_settings)
        distributed = time.perf_counter() - t0
        print(f"one fit in-trial: {in_trial:8.1f} s;  distributed (XGBoostTrainer, 2 workers): {distributed:.1f} s "
              f"-> in_trial is {distributed / in_trial:.1f} x faster at this size")
    ray.shutdown()


if __name__ == "__main__":
    main()
