"""One experiment on Ray: load its inputs once, plan, run each study as a Tune run, check the records.

The sweep CLI hands validated configs here; everything below talks to the rest of raygenre only
through the run directory (shards, records, Tune storage).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raygenre.config import ExperimentConfig, prepare_spec_of
from raygenre.data.gtzan import Discovery
from raygenre.errors import ConfigError, RecordsError
from raygenre.records import check_complete, latest_by_trial, ok_trial_keys, read_records
from raygenre.storage import RunPath
from raygenre.train.plan import by_study, plan_experiment, plan_selection, representations_of

if TYPE_CHECKING:
    from raygenre.train.tune_runner import LaneShare


class SweepFailed(RuntimeError):
    """Trials failed after their retries; the message names them."""


@dataclass
class SourceData:
    """The run's data, read once before Ray starts: scanned audio clips and/or the Kaggle CSV table."""
    found: Discovery | None = None
    csv_table: Any = None
    csv_hash: str | None = None


def audio_representations(cfg: ExperimentConfig) -> list[str]:
    """The representations this experiment reads from audio (features come from the CSV when given)."""
    return [r for r in representations_of(plan_experiment(cfg)) if r != "features" or not cfg.data.features_csv]


def scan_sources(configs: list[ExperimentConfig], run_dir: RunPath) -> SourceData:
    """Read the CSV (validating it) and scan the audio folder, each at most once, before any Ray work."""
    from raygenre.data.kaggle_csv import read_features_csv
    from raygenre.data.source import find_clips

    data = SourceData()
    csvs = {c.data.features_csv for c in configs if c.data.features_csv}
    if len(csvs) > 1:
        raise ConfigError("the experiments of one sweep must read the same features CSV.")
    if csvs:
        csv = Path(csvs.pop())
        data.csv_table = read_features_csv(csv)
        data.csv_hash = hashlib.sha256(csv.read_bytes()).hexdigest()[:12]
    audio = [c for c in configs if audio_representations(c)]
    if audio:
        data.found = find_clips(audio[0].data, run_dir)
    return data


def load_inputs(cfg: ExperimentConfig, representations: list[str], run_dir: RunPath,
                data: SourceData) -> tuple[dict, dict, list[str]]:
    """Each representation's trial input, a description of the data, and the usable clip ids.

    Features are the CSV's table when one is configured, else read from prepared shards; mel and
    waveform trials get the shard folder and read their rows themselves.
    """
    from raygenre.data.pipeline import ensure_shards
    from raygenre.data.shards import load_features, usable_clip_ids

    inputs: dict = {}
    audio = [r for r in representations if r != "features" or not cfg.data.features_csv]
    source: dict = {"source": cfg.data.source}
    ids: list[str] = []
    if audio:
        spec = prepare_spec_of(cfg)
        shard_dir = ensure_shards(spec, run_dir, audio, augmented=cfg.prepare.augment.enabled, found=data.found)
        ids = usable_clip_ids(shard_dir)
        source.update(data_hash=spec.hash(), shards=str(shard_dir))
        for rep in audio:
            inputs[rep] = load_features(shard_dir) if rep == "features" else {"shard_dir": str(shard_dir), "ids": ids}
    if "features" in representations and cfg.data.features_csv:
        inputs["features"] = data.csv_table
        ids = sorted(data.csv_table.index)
        source.update(source=f"csv:{cfg.data.features_csv}", data_hash=data.csv_hash)
    return inputs, source, ids


def audio_settings(cfg: ExperimentConfig) -> dict:
    """How audio becomes this experiment's inputs, kept with each model so ``predict`` does the same (and
    refuses the files prepare would have skipped: ``max_seconds``, ``max_file_mb``).

    The Kaggle CSV's features come from whole 30 s clips at 22,050 Hz, whatever the profile says.
    """
    out = cfg.prepare.model_dump(mode="json", include={"sample_rate", "waveform_rate", "clip_seconds",
                                                        "min_seconds", "max_seconds", "max_file_mb", "mel"})
    if cfg.data.features_csv:
        out.update(sample_rate=22050, clip_seconds=30.0, source="kaggle_csv")
    return out


def run_study(cfg: ExperimentConfig, study: str, trials: list[dict], inputs: dict, settings: dict,
              run_dir: RunPath, *, resume: bool, share: LaneShare | None = None) -> None:
    """Run the trials of one study that have no ok record yet (within ``share``, when beside another)."""
    from raygenre.train.tune_runner import run_trials

    done = ok_trial_keys(run_dir)
    planned = {t["trial_key"] for t in trials}
    already = planned & done
    if already and not resume:
        raise ConfigError(f"{run_dir} already holds records for {len(already)} of the {len(planned)} "
                          f"planned {study} trials; pass --resume to finish that run or --name for a new one.")
    todo = [t for t in trials if t["trial_key"] not in done]
    print(f"[{study}] {len(trials)} planned, {len(already)} already recorded, {len(todo)} to run", flush=True)
    if todo:  # only the study's own inputs travel to its trials
        study_inputs = {r: inputs[r] for r in representations_of(todo)}
        run_trials(cfg, study, todo, study_inputs, settings, run_dir, resume=resume, share=share)


def refuse_recorded(configs: list[ExperimentConfig], run_dir: RunPath) -> None:
    """Without ``--resume``, a run directory that already holds ok records for planned trials is refused."""
    done = ok_trial_keys(run_dir)
    for cfg in configs if done else []:
        planned = {t["trial_key"] for t in plan_experiment(cfg)}
        if planned & done:
            raise ConfigError(f"{run_dir} already holds records for {len(planned & done)} of the {len(planned)} "
                              f"planned {cfg.experiment} trials; pass --resume to finish that run or --name for "
                              "a new one.")


def require_success(run_dir: RunPath, planned: list[dict]) -> None:
    """Every planned trial has an ok record, or SweepFailed names what is missing or failed."""
    try:
        failed = check_complete(run_dir, planned)
    except RecordsError as exc:
        raise SweepFailed(str(exc)) from None
    if failed:
        raise SweepFailed(f"{len(failed)} of {len(planned)} trials failed after retries: " + "; ".join(failed[:5]))


@dataclass
class ExperimentRun:
    """An experiment with its inputs loaded: what its studies need, and the trials they must record."""
    cfg: ExperimentConfig
    run_dir: RunPath
    trials: list[dict]
    inputs: dict
    settings: dict
    source: dict
    resume: bool
    started: float

    @property
    def chooses_model(self) -> bool:
        """exp4 chooses its model on validation clips first: its studies are not known until it has."""
        return bool(self.cfg.exp4 and self.cfg.exp4.select_by_validation)

    def choose_model(self, share: LaneShare | None = None) -> None:
        """exp4's model chosen on validation clips (when asked), and its trials planned for it."""
        chosen = choose_exp4_model(self.cfg, self.inputs, self.settings, self.run_dir, share)
        if chosen:
            self.trials = plan_experiment(self.cfg, model=chosen)

    def studies(self) -> list[tuple[str, list[dict]]]:
        """(study, its trials) in the order they run: GPU work first (:func:`raygenre.train.plan.by_study`)."""
        return list(by_study(self.trials).items())

    def run_study(self, study: str, trials: list[dict], share: LaneShare | None = None) -> None:
        """One study as one Tune run; records are appended as its trials finish."""
        self.ensure_embeddings(trials)
        run_study(self.cfg, study, trials, self.inputs, self.settings, self.run_dir, resume=self.resume,
                  share=share)

    def run_in_turn(self) -> None:
        """Every study of this experiment, one after another (exp4's model chosen first, when asked)."""
        self.choose_model()
        for study, trials in self.studies():
            self.run_study(study, trials)

    def ensure_embeddings(self, trials: list[dict]) -> None:
        """Frozen-backbone embeddings, once per backbone and shard set, before a study's head trials start."""
        waveform = self.inputs.get("waveform")
        if waveform and "embeddings" not in waveform and any(t["family"] == "waveform" for t in trials):
            from raygenre.data.embeddings import ensure_embeddings

            cached = ensure_embeddings(waveform["shard_dir"], self.trials, self.source.get("data_hash", ""))
            self.inputs["waveform"] = {**waveform, "embeddings": cached}

    def finish(self) -> list[dict]:
        """Every planned trial recorded ok, or SweepFailed; returns the planned trials."""
        require_success(self.run_dir, self.trials)
        print(f"[{self.cfg.experiment}] {len(self.trials)} trials recorded in "
              f"{time.perf_counter() - self.started:.1f} s", flush=True)
        return self.trials


def choose_exp4_model(cfg: ExperimentConfig, inputs: dict, settings: dict, run_dir: RunPath,
                      share: LaneShare | None = None) -> str | None:
    """exp4's model: None (the configured one), or the best on validation clips when asked to choose."""
    from raygenre.models.registry import get_model, model_names

    if not cfg.exp4 or not cfg.exp4.select_by_validation:
        return None
    candidates = [m.name for m in cfg.models] or [n for n in model_names("tabular") if not get_model(n).neural]
    trials = plan_selection(cfg, candidates)
    run_study(cfg, "exp4-select", trials, inputs, settings, run_dir, resume=True, share=share)
    require_success(run_dir, trials)
    latest = latest_by_trial(read_records(run_dir))
    scores: dict[str, list[float]] = {}
    for t in trials:
        scores.setdefault(t["model"], []).append(latest[t["trial_key"]]["metrics"]["accuracy"])
    best = max(scores, key=lambda m: sum(scores[m]) / len(scores[m]))
    print("[exp4-select] validation accuracy: " +
          ", ".join(f"{m} {sum(v) / len(v):.3f}" for m, v in scores.items()) + f" -> {best}", flush=True)
    return best


def prepare_experiment(cfg: ExperimentConfig, run_dir: RunPath, *, resume: bool, data: SourceData,
                       hardware: dict) -> ExperimentRun:
    """Plan, load the inputs the plan needs (preparing shards), check the split; no trial runs yet."""
    from raygenre.data.splits import check_splits

    started = time.perf_counter()
    # 1. Plan first: the representations it needs decide which inputs load.
    trials = plan_experiment(cfg)
    inputs, source, ids = load_inputs(cfg, representations_of(trials), run_dir, data)
    # 2. The split must be drawable over the usable clips for every seed, before any trial starts.
    check_splits(ids, cfg.split.name, cfg.split.seeds, cfg.split.test_fraction)
    run_info = {**source, "profile": cfg.profile, "run_dir": str(run_dir), "hardware": hardware,
                "experiment_config_hash": cfg.hash(), "clips": len(ids)}
    settings = {"xgboost": cfg.xgboost.model_dump(mode="json"), "cpus_per_trial": cfg.resources.cpus_per_trial,
                "audio": audio_settings(cfg),
                "run": run_info, "train_storage": str(run_dir / "train")}
    (run_dir / "config" / f"{cfg.experiment}.json").write_json(cfg.model_dump(mode="json"))
    return ExperimentRun(cfg, run_dir, trials, inputs, settings, source, resume, started)


def run_experiment(cfg: ExperimentConfig, run_dir: RunPath, *, resume: bool, data: SourceData,
                   hardware: dict) -> list[dict]:
    """One experiment, its studies one after another: load the inputs, plan, run, check the records."""
    run = prepare_experiment(cfg, run_dir, resume=resume, data=data, hardware=hardware)
    run.run_in_turn()
    return run.finish()


def run_experiments(configs: list[ExperimentConfig], run_dir: RunPath, *, resume: bool, data: SourceData,
                    hardware: dict, overlap: bool = True) -> list[dict]:
    """Every experiment of a sweep. With ``overlap`` on a cluster with GPUs, every input is prepared first;
    then the studies that use the GPU run one after another while the CPU-only ones run beside them
    (:mod:`raygenre.train.lanes`). Otherwise each experiment runs whole, in turn."""
    import ray

    from raygenre.train.lanes import plan_lanes, run_lanes

    if not resume:  # before any config is written or any study starts, in either lane
        refuse_recorded(configs, run_dir)
    if not overlap or ray.cluster_resources().get("GPU", 0) <= 0:
        return [t for cfg in configs for t in run_experiment(cfg, run_dir, resume=resume, data=data,
                                                              hardware=hardware)]
    runs = [prepare_experiment(cfg, run_dir, resume=resume, data=data, hardware=hardware) for cfg in configs]
    lanes = plan_lanes(runs)
    if lanes is None:  # no GPU work, or nothing to run beside it: in turn
        for run in runs:
            run.run_in_turn()
    else:
        run_lanes(lanes)
    return [t for run in runs for t in run.finish()]
