"""``python -m raygenre.sweep {exp1,exp2,exp3,exp4,all,exp5,search-*}``: every trial of an experiment on Ray Tune.

Locally it starts a Ray of its own; under ``ray job submit`` (``RAY_ADDRESS`` set) or with ``--address``
it attaches to the cluster. Each finished trial's record is appended by the driver as it arrives, so a killed
sweep loses nothing, and ``--resume`` runs only the planned trials that have no record yet.
Before success is reported, the records are counted against the plan. This module only parses,
validates and hands over: the work is in ``raygenre.train.experiment``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from raygenre.config import (
    EXPERIMENTS,
    STUDY_EXPERIMENTS,
    ExperimentConfig,
    config_hash,
    deep_merge,
    load_experiment,
    sweeps_dir,
)
from raygenre.errors import ConfigError, RaygenreError, one_line
from raygenre.overrides import parse_overrides
from raygenre.ray_session import ADDRESS_HELP
from raygenre.storage import RunPath, check_reachable


def available_experiments() -> list[str]:
    """Experiments that have a ``sweeps/<exp>.yaml`` (``all`` runs these)."""
    root = sweeps_dir()
    return [e for e in EXPERIMENTS if (root / f"{e}.yaml").is_file()]


def build_configs(args: argparse.Namespace) -> list[ExperimentConfig]:
    """Resolve and validate every experiment's config before any Ray work starts."""
    from raygenre.data.source import absolute_source
    from raygenre.data.splits import parse_seeds

    available = available_experiments()
    if args.experiment not in (*EXPERIMENTS, "all"):
        raise ConfigError(f"unknown experiment '{args.experiment}': choose one of {', '.join(available)} or all.")
    if args.experiment != "all" and args.experiment not in available:
        raise ConfigError(f"{args.experiment} is not part of this release (no sweeps/{args.experiment}.yaml); "
                          f"run {', '.join(available)} or all.")
    names = [e for e in available if e in STUDY_EXPERIMENTS] if args.experiment == "all" else [args.experiment]
    overrides = parse_overrides(args.set or [])
    cli: dict = {"data": {}, "split": {}, "features": {}, "xgboost": {}}
    if args.data:
        cli["data"]["source"] = absolute_source(args.data)
    if args.features_csv:
        csv = Path(args.features_csv).expanduser().resolve()
        if not csv.is_file():
            raise ConfigError(f"--features-csv {args.features_csv} does not exist or is not a file.")
        cli["data"]["features_csv"] = str(csv)
    if args.split:
        cli["split"]["name"] = args.split
    if args.split_seeds:
        cli["split"]["seeds"] = parse_seeds(args.split_seeds)
    if args.feature_set:
        cli["features"]["set"] = args.feature_set
    if args.xgboost_backend:
        cli["xgboost"]["backend"] = args.xgboost_backend
    return [load_experiment(n, args.profile, deep_merge(overrides, cli)) for n in names]


def run_name(configs: list[ExperimentConfig], experiment: str) -> str:
    body = [c.model_dump(mode="json") for c in configs]
    return f"{experiment}-{configs[0].profile}-{config_hash(body, 10)}"


def check_splits_early(configs: list[ExperimentConfig], data) -> None:
    """The configured splits over the clips found (CSV rows or audio files), before Ray starts.

    Prepare checks again over the clips that decode; this catches most cases at no cluster cost.
    """
    from raygenre.data.splits import check_splits

    for cfg in configs:
        if cfg.data.features_csv and data.csv_table is not None:
            ids = sorted(data.csv_table.index)
        elif data.found is not None:
            ids = data.found.ids
        else:
            continue
        check_splits(ids, cfg.split.name, cfg.split.seeds, cfg.split.test_fraction)


def check_weights_early(configs: list[ExperimentConfig]) -> None:
    """Pretrained weights every planned model needs, resolved on the driver before prepare or any trial:
    a missing file is one sentence naming it, at no cluster cost."""
    from raygenre.models.registry import get_model, resolve_builder

    seen = set()
    for cfg in configs:
        for model in cfg.models:
            entry = get_model(model.name)
            weights = model.weights_config(cfg.weights)
            key = (model.name, weights.source, weights.dir, str(model.params.get("backbone")))
            if entry.preflight and key not in seen:
                seen.add(key)
                found = resolve_builder(entry.preflight)(model.name, weights.source, weights.dir, dict(model.params))
                print(f"[sweep] weights of {model.name}: {found}", flush=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m raygenre.sweep", description=__doc__.splitlines()[0])
    p.add_argument("experiment", help="exp1, exp2, exp3, exp4, all (exp1-exp4), exp5 (pretrained encoders, beyond "
                                      "the study), or a search: search-xgboost, search-cnn, search-finetune")
    p.add_argument("--data", help="'synthetic' or a GTZAN folder (default from the config: synthetic)")
    p.add_argument("--features-csv", help="a Kaggle features_30_sec.csv to use instead of audio features")
    p.add_argument("--profile", default="quick", help="quick (minutes on a laptop) or paper (the study's)")
    p.add_argument("--split", choices=["paper", "fault_filtered"])
    p.add_argument("--split-seeds", help="split seeds, e.g. 0-4 or 0,3")
    p.add_argument("--feature-set", choices=["kaggle58", "content57"])
    p.add_argument("--xgboost-backend", choices=["in_trial", "distributed"])
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override, e.g. exp4.bootstraps=10")
    p.add_argument("--storage", default="runs",
                   help="folder or object-store URI (s3://bucket/prefix) that holds run directories (default: runs)")
    p.add_argument("--name", help="run directory name (default: <experiment>-<profile>-<config hash>)")
    p.add_argument("--resume", action="store_true", help="finish a run: only trials without a record run")
    p.add_argument("--no-report", action="store_true", help="skip writing the report at the end")
    p.add_argument("--report-dir", help="where the report goes (default: <run dir>/report)")
    p.add_argument("--num-cpus", type=int, help="CPUs for a local Ray (default: all)")
    p.add_argument("--address", help=ADDRESS_HELP)
    p.add_argument("--sequential", action="store_true",
                   help="run the studies one after another even on a cluster with GPUs (by default the CPU-only "
                        "studies run beside the GPU ones)")
    return p


def show_stage_progress() -> None:
    """raygenre's own INFO lines (prepare's probe, cache hits, timings) on stdout, one line each."""
    logger = logging.getLogger("raygenre.prepare")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("[prepare] %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    show_stage_progress()
    from raygenre.train.experiment import SweepFailed

    lock = None
    try:
        storage = RunPath.of(args.storage)
        configs = build_configs(args)
        check_weights_early(configs)
        check_reachable(storage)
        run_dir = storage / (args.name or run_name(configs, args.experiment))
        run_dir.mkdir()
        print(f"[sweep] run directory {run_dir}", flush=True)
        from raygenre.run_guard import RunLock, check_resume

        lock = RunLock.acquire(run_dir)  # one sweep per run directory, released in `finally`
        check_resume(run_dir, configs, resume=args.resume)  # --resume only with the run's own settings
        from raygenre.train.experiment import run_experiments, scan_sources

        data = scan_sources(configs, run_dir)
        check_splits_early(configs, data)
        from raygenre.ray_session import cluster_hardware, ray_session

        with ray_session(args.num_cpus, address=args.address):
            hardware = cluster_hardware()
            run_experiments(configs, run_dir, resume=args.resume, data=data, hardware=hardware,
                            overlap=not args.sequential)
        if not args.no_report:
            from raygenre.report import write_report

            report = write_report(run_dir, args.report_dir or run_dir / "report")
            print(f"[sweep] report: {report}", flush=True)
        return 0
    except RaygenreError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    except SweepFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if lock is not None:
            lock.release()


if __name__ == "__main__":
    sys.exit(main())
