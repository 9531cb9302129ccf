"""``python -m raygenre.sweep {exp3,exp4,all}``: every trial of an experiment on Ray Tune.

Locally it starts a Ray of its own; under ``ray job submit`` (``RAY_ADDRESS`` set) it attaches to
the cluster. Each finished trial's record is appended by the driver as it arrives, so a killed
sweep loses nothing, and ``--resume`` runs only the planned trials that have no record yet.
Before success is reported, the records are counted against the plan.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import yaml

from raygenre.config import ConfigError, ExperimentConfig, config_hash, load_experiment
from raygenre.data.gtzan import DatasetError, discover
from raygenre.data.splits import parse_seeds
from raygenre.records import RecordsError, latest_by_trial, read_records
from raygenre.train.plan import check_unique, plan_exp3, plan_exp4, plan_selection

SWEEPABLE = ("exp3", "exp4")
NOT_YET = {"exp1": "spectrogram models", "exp2": "augmented spectrogram models"}


class SweepFailed(RuntimeError):
    """Trials failed or are missing; the message names them."""


def parse_overrides(items: list[str]) -> dict:
    """``["exp4.bootstraps=10", "split.seeds=[0,1]"]`` -> a nested override mapping (values read as YAML)."""
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r} is not of the form key.path=value.")
        path, value = item.split("=", 1)
        node = out
        keys = path.split(".")
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = yaml.safe_load(value)
    return out


def build_configs(args: argparse.Namespace) -> list[ExperimentConfig]:
    """Resolve and validate every experiment's config before any Ray work starts."""
    names = list(SWEEPABLE) if args.experiment == "all" else [args.experiment]
    overrides = parse_overrides(args.set or [])
    cli: dict = {"data": {}, "split": {}, "features": {}, "xgboost": {}}
    if args.data:
        cli["data"]["source"] = args.data
    if args.features_csv:
        cli["data"]["features_csv"] = str(Path(args.features_csv).expanduser().resolve())
    if args.split:
        cli["split"]["name"] = args.split
    if args.split_seeds:
        cli["split"]["seeds"] = parse_seeds(args.split_seeds)
    if args.feature_set:
        cli["features"]["set"] = args.feature_set
    if args.xgboost_backend:
        cli["xgboost"]["backend"] = args.xgboost_backend
    from raygenre.config import deep_merge
    configs = [load_experiment(n, args.profile, deep_merge(overrides, cli)) for n in names]
    for cfg in configs:
        check_data_paths(cfg)
    return configs


def check_data_paths(cfg: ExperimentConfig) -> None:
    """Bad data paths fail in one sentence, before a cluster is touched."""
    if cfg.data.features_csv:
        from raygenre.data.kaggle_csv import read_features_csv
        read_features_csv(cfg.data.features_csv)
    elif cfg.data.source != "synthetic":
        discover(cfg.data.source)


def run_name(configs: list[ExperimentConfig], experiment: str) -> str:
    body = [c.model_dump(mode="json") for c in configs]
    return f"{experiment}-{configs[0].profile}-{config_hash(body, 10)}"


def connect_ray(num_cpus: int | None = None) -> bool:
    """Attach to ``RAY_ADDRESS`` if set, else start a local Ray; True when this process started it."""
    import ray
    if ray.is_initialized():
        return False
    quiet = bool(os.environ.get("CI"))
    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=not quiet)
        return True
    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=not quiet)
    return True


def load_table(cfg: ExperimentConfig, run_dir: Path):
    """The feature table (clip id -> label, length, 57 features) and a description of where it came from."""
    import hashlib

    if cfg.data.features_csv:
        from raygenre.data.kaggle_csv import read_features_csv
        digest = hashlib.sha256(Path(cfg.data.features_csv).read_bytes()).hexdigest()[:12]
        return read_features_csv(cfg.data.features_csv), {"source": f"csv:{cfg.data.features_csv}",
                                                           "data_hash": digest}
    from raygenre.config import prepare_spec_of
    from raygenre.data.pipeline import ensure_shards, load_features
    spec = prepare_spec_of(cfg)
    shard_dir = ensure_shards(spec, run_dir, ["features"])
    return load_features(shard_dir), {"source": cfg.data.source, "data_hash": spec.hash(),
                                      "shards": str(shard_dir)}


def hardware() -> dict:
    import ray
    res = ray.cluster_resources()
    return {"cluster_cpus": res.get("CPU", 0), "cluster_gpus": res.get("GPU", 0),
            "nodes": len([n for n in ray.nodes() if n.get("Alive")])}


def trial_settings(cfg: ExperimentConfig, run_dir: Path, run_info: dict) -> dict:
    return {"neural": cfg.neural.model_dump(mode="json"), "xgboost": cfg.xgboost.model_dump(mode="json"),
            "cpus_per_trial": cfg.resources.cpus_per_trial, "run": run_info,
            "train_storage": str(run_dir / "train")}


def run_study(cfg: ExperimentConfig, study: str, trials: list[dict], table, settings: dict,
              run_dir: Path, *, resume: bool) -> list[dict]:
    """Run the trials that have no ok record yet; returns the planned trials."""
    from raygenre.train.tune_runner import run_trials
    done = {k for k, r in latest_by_trial(read_records(run_dir, require=False)).items() if r["status"] == "ok"}
    planned = {t["trial_key"] for t in trials}
    already = planned & done
    if already and not resume:
        raise ConfigError(f"{run_dir} already holds records for {len(already)} of the {len(planned)} "
                          f"planned {study} trials; pass --resume to finish that run or --name for a new one.")
    todo = [t for t in trials if t["trial_key"] not in done]
    print(f"[{study}] {len(trials)} planned, {len(already)} already recorded, {len(todo)} to run", flush=True)
    if todo:
        run_trials(cfg, study, todo, table, settings, run_dir)
    return trials


def check_complete(run_dir: Path, planned: list[dict]) -> None:
    """Records must match the plan: every trial once, none failed."""
    latest = latest_by_trial(read_records(run_dir, require=False))
    missing = [t["trial_key"] for t in planned if t["trial_key"] not in latest]
    failed = [k for k in (t["trial_key"] for t in planned) if k in latest and latest[k]["status"] != "ok"]
    if missing:
        raise SweepFailed(f"{len(missing)} of {len(planned)} planned trials have no record (interrupted?): "
                          f"{', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}; rerun with --resume.")
    if failed:
        errors = "; ".join(f"{k}: {latest[k]['error'].strip().splitlines()[-1]}" for k in failed[:5])
        raise SweepFailed(f"{len(failed)} of {len(planned)} trials failed after retries: {errors}")


def choose_exp4_model(cfg: ExperimentConfig, table, settings: dict, run_dir: Path, resume: bool) -> str:
    """exp4's model: the configured one, or the best on validation clips when asked to choose."""
    if not cfg.exp4.select_by_validation:
        return cfg.exp4.model
    candidates = [m.name for m in cfg.models] or ["knn", "random_forest", "xgboost", "xgboost_tuned"]
    trials = check_unique(plan_selection(cfg, candidates))
    for t in trials:
        t["validation_fraction"] = cfg.exp4.validation_fraction
    run_study(cfg, "exp4-select", trials, table, settings, run_dir, resume=True)
    check_complete(run_dir, trials)
    latest = latest_by_trial(read_records(run_dir))
    scores: dict[str, list[float]] = {}
    for t in trials:
        scores.setdefault(t["model"], []).append(latest[t["trial_key"]]["metrics"]["accuracy"])
    best = max(scores, key=lambda m: sum(scores[m]) / len(scores[m]))
    print("[exp4-select] validation accuracy: " +
          ", ".join(f"{m} {sum(v) / len(v):.3f}" for m, v in scores.items()) + f" -> {best}", flush=True)
    return best


def run_experiment(cfg: ExperimentConfig, run_dir: Path, resume: bool) -> list[dict]:
    """Load the data once, plan, run, and check one experiment; returns its planned trials."""
    import ray

    started = time.perf_counter()
    table, source = load_table(cfg, run_dir)
    run_info = {**source, "profile": cfg.profile, "run_dir": str(run_dir), "hardware": hardware(),
                "experiment_config_hash": cfg.hash(), "rows": int(len(table))}
    settings = trial_settings(cfg, run_dir, run_info)
    table_ref = ray.put(table)
    (run_dir / "config").mkdir(parents=True, exist_ok=True)
    (run_dir / "config" / f"{cfg.experiment}.json").write_text(json.dumps(cfg.model_dump(mode="json"), indent=2))
    if cfg.experiment == "exp3":
        plans = {"exp3-features": check_unique(plan_exp3(cfg))}
    else:
        model = choose_exp4_model(cfg, table_ref, settings, run_dir, resume)
        trials = check_unique(plan_exp4(cfg, model))
        plans = {"exp4-bootstrap": [t for t in trials if t["study"] == "exp4-bootstrap"],
                 "exp4-size": [t for t in trials if t["study"] == "exp4-size"]}
    planned = []
    for study, trials in plans.items():
        planned += run_study(cfg, study, trials, table_ref, settings, run_dir, resume=resume)
    check_complete(run_dir, planned)
    print(f"[{cfg.experiment}] {len(planned)} trials recorded in {time.perf_counter() - started:.1f} s", flush=True)
    return planned


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m raygenre.sweep", description=__doc__.splitlines()[0])
    p.add_argument("experiment", help="exp3, exp4 or all (exp1/exp2 arrive with the deep models)")
    p.add_argument("--data", help="'synthetic' or a GTZAN folder (default from the config: synthetic)")
    p.add_argument("--features-csv", help="a Kaggle features_30_sec.csv to use instead of audio features")
    p.add_argument("--profile", default="quick", help="quick (minutes on a laptop) or paper (the study's)")
    p.add_argument("--split", choices=["paper", "fault_filtered"])
    p.add_argument("--split-seeds", help="split seeds, e.g. 0-4 or 0,3")
    p.add_argument("--feature-set", choices=["kaggle58", "content57"])
    p.add_argument("--xgboost-backend", choices=["in_trial", "distributed"])
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override, e.g. exp4.bootstraps=10")
    p.add_argument("--storage", default="runs", help="folder that holds run directories (default: runs)")
    p.add_argument("--name", help="run directory name (default: <experiment>-<profile>-<config hash>)")
    p.add_argument("--resume", action="store_true", help="finish a run: only trials without a record run")
    p.add_argument("--no-report", action="store_true", help="skip writing the report at the end")
    p.add_argument("--report-dir", help="where the report goes (default: <run dir>/report)")
    p.add_argument("--num-cpus", type=int, help="CPUs for a local Ray (default: all)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.experiment in NOT_YET:
            raise ConfigError(f"{args.experiment} ({NOT_YET[args.experiment]}) is not part of this release; "
                              f"run exp3, exp4 or all.")
        if args.experiment not in (*SWEEPABLE, "all"):
            raise ConfigError(f"unknown experiment '{args.experiment}': choose exp3, exp4 or all.")
        if str(args.storage).startswith("s3://"):
            raise ConfigError("s3:// storage is not supported yet: give a local or shared-filesystem folder.")
        configs = build_configs(args)
        run_dir = Path(args.storage).expanduser().resolve() / (args.name or run_name(configs, args.experiment))
        run_dir.mkdir(parents=True, exist_ok=True)
        print(f"[sweep] run directory {run_dir}", flush=True)
        started_ray = connect_ray(args.num_cpus)
        try:
            for cfg in configs:
                run_experiment(cfg, run_dir, args.resume)
        finally:
            if started_ray:
                import ray
                ray.shutdown()
        if not args.no_report:
            from raygenre.report import write_report
            report = write_report(run_dir, Path(args.report_dir) if args.report_dir else run_dir / "report")
            print(f"[sweep] report: {report}", flush=True)
        return 0
    except (ConfigError, DatasetError, RecordsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SweepFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
