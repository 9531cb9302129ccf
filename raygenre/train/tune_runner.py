"""Ray Tune wiring for every family: one Tune run per study, resources from the registry, retries, records.

A Tune function trial runs :func:`raygenre.train.trial.run_trial`; its record reaches the driver as
the trial's final result and :class:`RecordWriter` appends it there, once, as the trial finishes.

Trials that drive a trainer (distributed XGBoost, every spectrogram model) reserve almost nothing
themselves: their trainer's workers hold the CPUs/GPUs. :func:`max_concurrent` then caps how many such
trials run at once so that all their workers fit the cluster; otherwise Tune would start a trial per
free CPU and every trainer would wait forever for workers' resources the trials themselves hold.
"""

from __future__ import annotations

import json
import os
import platform
import threading
import time
import uuid
import weakref
from dataclasses import dataclass

import ray
from ray import tune

from raygenre.config import ExperimentConfig
from raygenre.models.registry import get_model
from raygenre.records import latest_by_trial, read_records, write_record
from raygenre.storage import RunPath
from raygenre.train.trial import failed_record, run_trial

DISTRIBUTED_TRIAL_CPU = 0.01  # the trial only waits on its trainer; Tune refuses 0 CPUs
TRAINER_FAMILIES = ("spectrogram", "waveform")  # families whose trial launches a Ray Train TorchTrainer


class RecordWriter(tune.Callback):
    """Appends each finished trial's record on the driver, as soon as it finishes, exactly once."""

    def __init__(self, run_dir: RunPath, study: str, total: int, label: str):
        self.run_dir = run_dir
        self.study = study
        self.total = total
        self.label = label
        self.count = 0

    def on_trial_complete(self, iteration, trials, trial, **info):
        text = (trial.last_result or {}).get("record_json")
        if not text:
            return
        record = json.loads(text)
        write_record(self.run_dir, self.study, record)
        self.count += 1
        extra = (f" boot{record['bootstrap_index']}" if record["bootstrap_index"] is not None
                 else f" frac {record['train_fraction']:.2f}" if record["study"] == "exp4-size" else "")
        variant = "" if record["variant"] == "default" else f" {record['variant']}"
        print(f"[{self.label}] {self.count}/{self.total} {record['model']}{variant}{extra} "
              f"seed {record['split']['seed']}: accuracy {record['metrics']['accuracy']:.3f}", flush=True)


def trial_device(settings: dict) -> tuple[str, dict]:
    """(torch device, resources description) of the calling Tune trial."""
    gpu_ids = ray.get_gpu_ids()
    device = "cpu"
    if gpu_ids:  # a node can advertise a logical GPU it does not have
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    resources = {"cpu": settings.get("cpus_per_trial", 1), "gpu": len(gpu_ids),
                 "platform": platform.platform(), "pid": os.getpid(),
                 "node": ray.get_runtime_context().get_node_id()[:12]}
    return device, resources


def tune_trial(config: dict, inputs: dict, settings: dict) -> None:
    """Ray Tune function trial: run one spec and report its record as the trial's final result."""
    spec = config["trial"]
    device, resources = trial_device(settings)
    record = run_trial(spec, inputs, settings, device=device, resources=resources)
    if spec.get("search_of"):  # a searched row's refit names the search its configuration came from
        record["search"] = spec["search_of"]
    tune.report({"accuracy": record["metrics"]["accuracy"], "macro_f1": record["metrics"]["macro_f1"],
                 "record_json": json.dumps(record, default=str)})


def gpus_for(cfg: ExperimentConfig, spec: dict) -> float:
    """GPUs per trial: the registry's default, ``train.gpus_per_worker`` for neural models (for a trial
    that drives a trainer, the GPUs of each of its workers). ``auto`` is the registry's ``gpus``: for the
    networks on images and waveforms (``"auto"`` there too) ``train.gpu_share`` of a GPU when the cluster
    has GPUs; for the feature nets none."""
    entry = get_model(spec["model"])
    setting = (spec.get("train") or {}).get("gpus_per_worker", entry.gpus) if entry.neural else entry.gpus
    if setting == "auto":
        setting = entry.gpus
    if setting == "auto":  # a network's share of one GPU (train.gpu_share) when the cluster has GPUs
        share = float((spec.get("train") or {}).get("gpu_share", 1.0))
        return share if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
    return float(setting)


def uses_distributed_xgboost(cfg: ExperimentConfig, trials: list[dict]) -> bool:
    from raygenre.train.tabular_runner import XGBOOST_MODELS

    return cfg.xgboost.backend == "distributed" and any(t["model"] in XGBOOST_MODELS for t in trials)


def drives_trainer(spec: dict) -> bool:
    """True for trials whose work runs in a Ray Train trainer's workers, not in the trial itself
    (``train.workers: 0`` is Train's local mode: the trial's own process trains and holds the resources)."""
    if spec.get("embedding"):  # a head on cached embeddings trains in the trial itself
        return False
    return spec["family"] in TRAINER_FAMILIES and int((spec.get("train") or {}).get("workers", 1)) > 0


def resources_for(cfg: ExperimentConfig, trials: list[dict]):
    """Per-trial resources: the registry's CPUs (or ``resources.cpus_per_trial``) and GPUs.

    A distributed-XGBoost or spectrogram trial reserves almost nothing: its trainer places its workers
    in a placement group of its own (see ``raygenre.train.xgb``, ``raygenre.train.torch_runner``),
    capped by :func:`max_concurrent`.
    """
    from raygenre.train.tabular_runner import XGBOOST_MODELS

    cpus = cfg.resources.cpus_per_trial
    distributed = cfg.xgboost.backend == "distributed"
    gpus = {t["trial_key"]: gpus_for(cfg, t) for t in trials if not drives_trainer(t)}

    def request(config: dict):
        spec = config["trial"]
        if (spec["model"] in XGBOOST_MODELS and distributed) or drives_trainer(spec):
            return {"cpu": DISTRIBUTED_TRIAL_CPU}
        gpu = gpus.get(spec["trial_key"], 0.0)
        return {"cpu": cpus, "gpu": gpu} if gpu else {"cpu": cpus}

    return request


def trainer_room(cfg: ExperimentConfig, trials: list[dict], cpus: float | None = None) -> int | None:
    """How many trainer-driving trials fit at once: ``cpus`` (default: the cluster's) // CPUs per trainer,
    and for GPU trainers also cluster GPUs // GPUs per trainer (the largest trainer of the study decides)."""
    from raygenre.train.torch_runner import WORKER_CPUS

    trainers = [t for t in trials if drives_trainer(t)]
    if not trainers:
        return None
    res = ray.cluster_resources()
    workers = max(int((t.get("train") or {}).get("workers", 1)) for t in trainers)
    room = int((cpus or res.get("CPU", 1)) // (workers * WORKER_CPUS + DISTRIBUTED_TRIAL_CPU))
    gpus = max(gpus_for(cfg, t) for t in trainers)
    if gpus:
        room = min(room, int(res.get("GPU", 0) // (workers * gpus)))
    return max(1, room)


def max_concurrent(cfg: ExperimentConfig, trials: list[dict], cpu_limit: float | None = None) -> int | None:
    """The configured cap; for trials that drive a trainer (distributed XGBoost, spectrogram models) at
    most as many as the cluster has room for their workers, so no trainer waits forever for CPUs or
    GPUs that other trials hold. ``cpu_limit``: the CPUs these trials may hold together (a study running
    beside the GPU studies leaves the rest to them), else the whole cluster's."""
    configured = cfg.resources.max_concurrent_trials
    cpus = cpu_limit or ray.cluster_resources().get("CPU", 1)
    rooms = [room for room in (trainer_room(cfg, trials, cpus),) if room]
    if uses_distributed_xgboost(cfg, trials):
        rooms.append(max(1, int(cpus // cfg.xgboost.workers)))
    if cpu_limit:  # trials that hold their own CPUs: as many as the limit has room for
        rooms.append(max(1, int(cpu_limit // cfg.resources.cpus_per_trial)))
    if not rooms:
        return configured
    room = min(rooms)
    return min(room, configured) if configured else room


@dataclass(frozen=True)
class LaneShare:
    """What a Tune run may take while another runs beside it: at most ``cpus`` CPUs for its trials (None:
    the cluster's), and ``stop``, once set, ends the whole run (the other lane failed, or Ctrl-C)."""
    cpus: float | None = None
    stop: threading.Event | None = None

    def stopper(self) -> tune.Stopper | None:
        return StopWhenSet(self.stop) if self.stop is not None else None


#: the events stoppers watch, by key: Tune pickles its run config (stopper included), and an Event cannot be
_STOP_EVENTS: weakref.WeakValueDictionary[str, threading.Event] = weakref.WeakValueDictionary()


class StopWhenSet(tune.Stopper):
    """Ends a Tune run, every trial of it, once ``event`` is set; unfinished trials get no record, so
    ``--resume`` runs them again."""

    def __init__(self, event: threading.Event):
        self.key = uuid.uuid4().hex
        _STOP_EVENTS[self.key] = event

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        event = _STOP_EVENTS.get(self.key)
        return event is not None and event.is_set()


_TUNE_REGISTRY = threading.Lock()


def registered(trainable, name: str) -> str:
    """``trainable`` registered with Tune under a name of its own; the Tuner is given that name.

    Tune keys its trainables by name, process-wide, and its registry is not thread-safe: two Tune runs at
    once (a GPU study beside a CPU-only one) must neither share a name nor register at the same moment.
    """
    name = "raygenre_" + "".join(c if c.isalnum() else "_" for c in name)
    with _TUNE_REGISTRY:
        tune.register_trainable(name, trainable)
    return name


def run_trials(cfg: ExperimentConfig, study: str, trials: list[dict], inputs: dict, settings: dict,
               run_dir: RunPath, *, resume: bool = False, share: LaneShare | None = None) -> None:
    """One Tune experiment over ``trials``; ok records are appended by the callback as trials
    finish, and trials that still fail after ``max_failures`` retries get a failed record.
    ``share`` caps the CPUs its trials hold together (see :func:`max_concurrent`) and can stop it.

    A searched row (``search`` in its spec) is a Tune search of its own first
    (:func:`raygenre.train.search.run_search`); its refit then runs in the grid with the other trials.
    """
    share = share or LaneShare()
    searched = [t for t in trials if t.get("search") and not t.get("search_of")]
    refits = []
    for spec in searched:
        from raygenre.train.search import run_search

        refits.append(run_search(cfg, study, spec, inputs, settings, run_dir, resume=resume, share=share))
    trials = [t for t in trials if t not in searched] + [r for r in refits if r is not None]
    if not trials:
        return
    writer = RecordWriter(run_dir, study, len(trials), study)
    # with_parameters puts the inputs in the object store once; every trial gets the same copy.
    trainable = registered(tune.with_resources(tune.with_parameters(tune_trial, inputs=inputs, settings=settings),
                                               resources_for(cfg, trials)), study)
    tuner = tune.Tuner(
        trainable,
        param_space={"trial": tune.grid_search(trials)},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=max_concurrent(cfg, trials, share.cpus),
            reuse_actors=True,  # one warm process per slot, not an import of torch/xgboost per trial
            trial_dirname_creator=lambda t: t.config["trial"]["trial_key"].replace("/", "_"),
            trial_name_creator=lambda t: t.config["trial"]["trial_key"],
        ),
        run_config=tune.RunConfig(
            name=f"{study}-{int(time.time())}",
            storage_path=str(run_dir / "tune"),
            callbacks=[writer],
            failure_config=tune.FailureConfig(max_failures=cfg.resources.max_failures),
            stop=share.stopper(),
            verbose=0,
        ),
    )
    grid = tuner.fit()
    recorded = latest_by_trial(read_records(run_dir, require=False))
    for result in grid:
        if result.error is None or not result.config:  # done, or never started before a stop: no record
            continue
        spec = result.config["trial"]
        if recorded.get(spec["trial_key"], {}).get("status") != "ok":
            error = f"{type(result.error).__name__}: {result.error}"
            write_record(run_dir, study, failed_record(spec, settings, error))
            print(f"[{study}] FAILED {spec['trial_key']}: {str(result.error).strip().splitlines()[-1]}",
                  flush=True)
