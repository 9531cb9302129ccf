"""search-xgboost's search with ASHA against the same search without a scheduler, and Tune's per-trial overhead.

    python bench/search_efficiency.py [--rows 1000] [--samples 16] [--seed 0] [--cpus 2]
                                      [--algorithm random|optuna] [--features-csv PATH]

In one run on one machine, with the shipped ``sweeps/search-xgboost.yaml`` space (9 XGBoost parameters,
100-1000 rounds, a report every 10 rounds on the validation clips) and the same samples and seed:

(a) the search with ASHA (the yaml's grace period and reduction factor) and (b) without a scheduler, both
through :func:`raygenre.train.search.tune_search` (what the sweep runs), each printing its best validation
accuracy, the boosting rounds all its trials spent, and the ratio of the two. Random search (the default)
draws the same configurations for both, so the difference is the scheduler's alone; with Optuna the
proposals depend on the scores each run saw. Goal: ASHA within 1 point of the unscheduled best with at
most 40 % of its rounds.
(c) Tune's per-trial overhead: the unscheduled configurations fitted again in a plain loop (the same trial
function, reports discarded), against the Tune run's wall time x CPUs.
Without ``--features-csv`` the table is the GTZAN-sized (1000 x 58) learnable synthetic table of
``bench/exp4_parallel.py``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from exp4_parallel import gtzan_sized_table  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cpus", type=int, default=os.cpu_count())
    ap.add_argument("--algorithm", choices=["random", "optuna"], default="random")
    ap.add_argument("--features-csv")
    args = ap.parse_args()
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

    import ray

    from raygenre.config import load_experiment
    from raygenre.data.kaggle_csv import read_features_csv
    from raygenre.records import read_records
    from raygenre.search_config import SearchConfig
    from raygenre.train.plan import plan_experiment
    from raygenre.train.search import tune_search
    from raygenre.train.search_space import apply_config, trial_base
    from raygenre.train.trial import run_trial

    table = read_features_csv(args.features_csv) if args.features_csv else gtzan_sized_table(args.rows)
    inputs = {"features": table}
    print(f"machine: {platform.machine()} {os.cpu_count()} CPUs, python {sys.version.split()[0]}; "
          f"table {table.shape[0]} rows; {args.samples} samples, seed {args.seed}, {args.algorithm}")
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    results = {}
    for scheduler in ("asha", "none"):
        overlay = {"num_samples": args.samples, "seed": args.seed, "algorithm": args.algorithm,
                   "scheduler": {"name": scheduler}}
        cfg = load_experiment("search-xgboost", "paper", {"search": overlay})
        spec = plan_experiment(cfg)[0]
        search = SearchConfig.model_validate(spec["search"])
        settings = {"xgboost": cfg.xgboost.model_dump(mode="json"), "cpus_per_trial": 1, "run": {"source": "bench"}}
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            tune_search(cfg, "bench", spec, search, {}, inputs, settings, Path(tmp))
            wall = time.perf_counter() - t0
            trials = [r for r in read_records(tmp) if (r.get("search") or {}).get("role") == "trial"]
        best = max(r["search"]["score"] for r in trials)
        rounds = sum(r["search"]["ended"]["step"] for r in trials)
        stopped = sum(r["search"]["ended"]["reason"] == "stopped" for r in trials)
        results[scheduler] = {"best": best, "rounds": rounds, "wall": wall, "trials": trials, "spec": spec,
                              "settings": settings}
        print(f"{scheduler:>5}: best valid accuracy {100 * best:5.1f} %, {rounds:6d} rounds in {len(trials)} trials "
              f"({stopped} stopped early), {wall:6.1f} s wall")
    a, n = results["asha"], results["none"]
    print(f"ASHA - none: {100 * (a['best'] - n['best']):+.1f} points of best validation accuracy; "
          f"rounds {a['rounds'] / n['rounds']:.1%} of the unscheduled search's "
          f"(goal: within 1 point with <= 40 %); wall {a['wall'] / n['wall']:.2f} x")

    # (c) Tune's own cost per trial: the unscheduled search's configurations fitted in a plain loop.
    base = trial_base(n["spec"])
    t0 = time.perf_counter()
    for rec in n["trials"]:
        run_trial(apply_config(base, rec["search"]["config"]), inputs,
                  {**n["settings"], "progress": lambda metrics: None})
    loop = time.perf_counter() - t0
    count = len(n["trials"])
    overhead = (n["wall"] * args.cpus - loop) / count
    print(f"plain loop of the same {count} fits (with the same per-10-round validation scoring): {loop:.1f} s; "
          f"Tune on {args.cpus} CPUs {n['wall']:.1f} s -> overhead {overhead:.2f} CPU-s per trial "
          f"((wall x CPUs - loop) / trials; includes idle CPUs at the end of the run)")
    ray.shutdown()


if __name__ == "__main__":
    main()
