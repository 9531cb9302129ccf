"""Ray Tune wiring for feature-model trials: resources, retries, and the record-writing callback."""

from __future__ import annotations

import json
import time
from pathlib import Path

import ray
from ray import tune

from raygenre.config import ExperimentConfig
from raygenre.records import append_record, latest_by_trial, read_records, records_dir
from raygenre.train.feature_trial import XGBOOST_MODELS, failed_record, feature_trial

NEURAL_MODELS = ("mlp", "lstm")


class RecordWriter(tune.Callback):
    """Appends each finished trial's record on the driver, as soon as it finishes, exactly once."""

    def __init__(self, path: Path, total: int, label: str):
        self.path = path
        self.total = total
        self.label = label
        self.written = set(latest_by_trial(read_records(path.parent.parent, require=False)))
        self.count = 0

    def on_trial_complete(self, iteration, trials, trial, **info):
        text = (trial.last_result or {}).get("record_json")
        if not text:
            return
        record = json.loads(text)
        append_record(self.path, record)
        self.count += 1
        extra = (f" boot{record['bootstrap_index']}" if record["bootstrap_index"] is not None
                 else f" frac {record['train_fraction']:.2f}" if record["study"] == "exp4-size" else "")
        print(f"[{self.label}] {self.count}/{self.total} {record['model']}{extra} "
              f"seed {record['split']['seed']}: accuracy {record['metrics']['accuracy']:.3f}", flush=True)


def gpus_for_neural(cfg: ExperimentConfig) -> float:
    setting = cfg.resources.gpus_per_neural_trial
    if setting == "auto":
        return 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
    return float(setting)


DISTRIBUTED_TRIAL_CPU = 0.01  # the trial only waits on its trainer; Tune refuses 0 CPUs


def uses_distributed_xgboost(cfg: ExperimentConfig, trials: list[dict]) -> bool:
    return cfg.xgboost.backend == "distributed" and any(t["model"] in XGBOOST_MODELS for t in trials)


def resources_for(cfg: ExperimentConfig):
    """Per-trial resources: CPUs for every trial, a GPU for MLP/LSTM where the cluster has one.

    A distributed-XGBoost trial reserves almost nothing: its ``XGBoostTrainer`` places its workers
    in a placement group of its own (see ``raygenre.train.xgb``), capped by :func:`max_concurrent`.
    """
    cpus = cfg.resources.cpus_per_trial
    neural_gpus = gpus_for_neural(cfg)
    distributed = cfg.xgboost.backend == "distributed"

    def request(config: dict):
        model = config["trial"]["model"]
        if model in NEURAL_MODELS and neural_gpus:
            return {"cpu": cpus, "gpu": neural_gpus}
        if model in XGBOOST_MODELS and distributed:
            return {"cpu": DISTRIBUTED_TRIAL_CPU}
        return {"cpu": cpus}

    return request


def max_concurrent(cfg: ExperimentConfig, trials: list[dict]) -> int | None:
    """The configured cap; for distributed XGBoost at most as many trials as the cluster has
    room for their workers, so no trainer waits forever for CPUs other trials hold."""
    configured = cfg.resources.max_concurrent_trials
    if not uses_distributed_xgboost(cfg, trials):
        return configured
    room = max(1, int(ray.cluster_resources().get("CPU", 1) // cfg.xgboost.workers))
    return min(room, configured) if configured else room


def run_trials(cfg: ExperimentConfig, study: str, trials: list[dict], table, settings: dict,
               run_dir: Path) -> None:
    """One Tune experiment over ``trials``; ok records are appended by the callback as trials
    finish, and trials that still fail after ``max_failures`` retries get a failed record."""
    out = records_dir(run_dir) / f"{study}.jsonl"
    writer = RecordWriter(out, len(trials), study)
    trainable = tune.with_resources(tune.with_parameters(feature_trial, table=table, settings=settings),
                                    resources_for(cfg))
    tuner = tune.Tuner(
        trainable,
        param_space={"trial": tune.grid_search(trials)},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=max_concurrent(cfg, trials),
            reuse_actors=True,  # one warm process per slot, not an import of torch/xgboost per trial
            trial_dirname_creator=lambda t: t.config["trial"]["trial_key"].replace("/", "_"),
            trial_name_creator=lambda t: t.config["trial"]["trial_key"],
        ),
        run_config=tune.RunConfig(
            name=f"{study}-{int(time.time())}",
            storage_path=str(run_dir / "tune"),
            callbacks=[writer],
            failure_config=tune.FailureConfig(max_failures=cfg.resources.max_failures),
            verbose=0,
        ),
    )
    grid = tuner.fit()
    recorded = latest_by_trial(read_records(run_dir, require=False))
    for result in grid:
        spec = result.config["trial"]
        if result.error is not None and recorded.get(spec["trial_key"], {}).get("status") != "ok":
            append_record(out, failed_record(spec, settings, f"{type(result.error).__name__}: {result.error}"))
            print(f"[{study}] FAILED {spec['trial_key']}: {str(result.error).strip().splitlines()[-1]}",
                  flush=True)
