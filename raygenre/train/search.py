"""A searched model row on Ray Tune: trials scored on validation clips, then the best refit on test.

1. **Trials** run :func:`raygenre.train.search_progress.search_trial` with Optuna's TPE
   (``ray.tune.search.optuna.OptunaSearch``) or random search, under ASHA (``time_attr: step``, epochs or
   boosting rounds) or no scheduler. Each trial is scored on validation clips only: ``evaluate_on: valid``
   makes :func:`raygenre.train.trial.select_rows` give ``fault_filtered``'s valid list or a stratified carve
   of the training clips, the same code exp4's model choice uses. The test clips are never read.
2. **Records**: :class:`SearchRecorder` (a Tune callback on the driver) writes one record per finished or
   stopped trial, built from its last report: configuration, the validation score of every report, the
   step it ended at and why (``finished``, or ``stopped`` by the scheduler), the clips it was scored on
   (``test.set: valid``). Trial keys are ``<refit key>/trialNNN``.
3. **Choice** (:func:`choose`): the best final score among trials that ran their whole budget (a trial
   stopped early competes only if none did), ties to the lower validation loss, then the lower index.
4. **Refit**: the chosen configuration trained on the whole training split and scored once on test (in the
   study's grid with its other trials), under the row's planned trial key; its record's ``search`` names the
   search and the chosen trial.

**Resume** is by records, like every other study: a relaunch with ``--resume`` keeps the trials that
have a record, runs the rest (random search: the sample indices without one; Optuna: the remaining
count, with the recorded trials given to TPE as evaluated points) and refits once. ASHA's rungs start
empty again after a resume: the earlier trials still count for the choice, not for stopping.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from ray import tune

from raygenre.config import ExperimentConfig, config_hash
from raygenre.errors import ConfigError
from raygenre.records import latest_by_trial, read_records, write_record
from raygenre.search_config import SearchConfig
from raygenre.storage import RunPath
from raygenre.train.search_space import (
    apply_config,
    budget_of,
    max_budget,
    normalize,
    planned_count,
    sample_configs,
    trial_base,
    tune_domain,
)

if TYPE_CHECKING:
    from raygenre.train.tune_runner import LaneShare

CHOICE_RULE = "best final score among trials that ran their full budget (all trials if none did)"


def trial_key(search_id: str, index: int) -> str:
    return f"{search_id}/trial{index:03d}"


def recorded_trials(run_dir: RunPath, search_id: str) -> dict[int, dict]:
    """This search's ok trial records by index (a retried index: its latest record)."""
    out = {}
    for rec in latest_by_trial(read_records(run_dir, require=False)).values():
        info = rec.get("search") or {}
        if info.get("id") == search_id and info.get("role") == "trial" and rec.get("status") == "ok":
            out[int(info["index"])] = rec
    return out


def evaluation_clips(spec: dict, inputs: dict, search: SearchConfig) -> tuple[list[str], list[str]]:
    """(validation clip ids, their genres) a search trial of ``spec`` is scored on, in report order."""
    from raygenre.data.gtzan import genre_of
    from raygenre.train.search_space import evaluation_ids

    rep = inputs[spec["representation"]]
    if hasattr(rep, "index"):  # the feature table
        ids = evaluation_ids(spec, sorted(rep.index), search)
        return ids, [str(g) for g in rep.loc[ids, "label"]]
    ids = evaluation_ids(spec, list(rep["ids"]), search)
    return ids, [genre_of(i) for i in ids]


class SearchRecorder(tune.Callback):
    """Writes each search trial's record on the driver when it finishes or the scheduler stops it."""

    def __init__(self, run_dir: RunPath, study: str, base: dict, search: SearchConfig, settings: dict,
                 clips: tuple[list[str], list[str]], next_index: int, total: int):
        self.run_dir, self.study, self.base, self.search, self.settings = run_dir, study, base, search, settings
        self.ids, self.y_true = clips
        self.next_index, self.total = next_index, total
        self.reports: dict[str, list[dict]] = {}
        self.last: dict[str, dict] = {}

    def on_trial_result(self, iteration, trials, trial, result, **info):
        score = {k: (None if v != v else round(float(v), 6)) for k in ("valid_accuracy", "valid_loss")
                 if (v := result.get(k)) is not None}
        self.reports.setdefault(trial.trial_id, []).append({"step": int(result["step"]), **score})
        self.last[trial.trial_id] = result

    def on_trial_recover(self, iteration, trials, trial, **info):
        self.reports.pop(trial.trial_id, None)  # a retried trial starts its reports again

    def on_trial_complete(self, iteration, trials, trial, **info):
        from raygenre.genres import GENRES
        from raygenre.records import build_record
        from raygenre.stats import classification_metrics

        last = self.last.pop(trial.trial_id, None)
        if last is None:
            return
        if "sample" in trial.config:
            index, values = int(trial.config["sample"]["index"]), trial.config["sample"]["config"]
        else:
            index, self.next_index = self.next_index, self.next_index + 1
            values = {k: trial.config[k] for k in self.search.space}
        config = normalize(self.search, values)
        spec = apply_config(self.base, config)
        spec["trial_key"] = trial_key(self.base["trial_key"], index)
        budget, unit = budget_of(spec)
        step = int(last["step"])
        y_pred = [GENRES[int(p)] for p in last["pred"]]
        result = {"metrics": classification_metrics(self.y_true, y_pred),
                  "test": {"ids": self.ids, "y_true": self.y_true, "y_pred": y_pred, "set": "valid"},
                  "n_train": int(last.get("n_train") or 0),
                  "timings": {"total_s": round(float(last.get("time_total_s") or 0.0), 4)}}
        record = build_record(spec, self.settings, result=result,
                              resources={"cpu": self.settings.get("cpus_per_trial", 1)})
        score = last.get(self.search.metric)
        record["search"] = {
            "id": self.base["trial_key"], "role": "trial", "index": index, "config": config,
            "algorithm": self.search.algorithm, "scheduler": self.search.scheduler.name,
            "metric": self.search.metric, "mode": self.search.mode,
            "score": None if score is None or score != score else float(score),
            "reports": self.reports.pop(trial.trial_id, []),
            "ended": {"reason": "finished" if step >= budget else "stopped", "step": step, "budget": budget,
                      "unit": unit},
        }
        write_record(self.run_dir, self.study, record)
        print(f"[{self.study}] search trial {index:03d} (of {self.total}) {spec['model']} "
              f"{json.dumps(config, default=str)}: {self.search.metric} {record['search']['score']} "
              f"({record['search']['ended']['reason']} at {unit} {step}/{budget})", flush=True)


def state_api_available() -> bool:
    """Whether Ray's state API answers (it needs the dashboard). Ray Train V2 releases the workers of a trial
    that Tune stops through it (its PlacementGroupCleaner); without it, their CPUs/GPUs stay reserved."""
    from ray.util.state import list_actors

    try:
        list_actors(limit=1, timeout=10, raise_on_missing_output=False)
        return True
    except Exception:  # ServerUnavailable and friends: no dashboard
        return False


def choose(trials: dict[int, dict], search: SearchConfig) -> tuple[int, dict]:
    """(index, record) of the configuration to refit (:data:`CHOICE_RULE`)."""
    scored = {i: r for i, r in trials.items() if r["search"]["score"] is not None}
    if not scored:
        raise ConfigError(f"no search trial of {next(iter(trials.values()))['search']['id']} has a "
                          f"{search.metric} to choose by.")
    full = {i: r for i, r in scored.items() if r["search"]["ended"]["reason"] == "finished"} or scored
    sign = 1.0 if search.mode == "max" else -1.0

    def key(item):
        index, rec = item
        loss = next((rep.get("valid_loss") for rep in reversed(rec["search"]["reports"])
                     if rep.get("valid_loss") is not None), float("inf"))
        return (-sign * rec["search"]["score"], loss, index)

    return min(full.items(), key=key)


def tune_search(cfg: ExperimentConfig, study: str, spec: dict, search: SearchConfig, done: dict[int, dict],
          inputs: dict, settings: dict, run_dir: RunPath, share: LaneShare | None = None) -> None:
    """One Tune run over the search trials that have no record yet (within ``share``, when beside another)."""
    from ray.tune.schedulers import ASHAScheduler

    from raygenre.train.search_progress import search_trial
    from raygenre.train.tune_runner import LaneShare, drives_trainer, max_concurrent, registered, resources_for

    share = share or LaneShare()

    base = trial_base(spec)
    total = planned_count(search)
    if search.scheduler.name == "asha" and drives_trainer(spec) and not state_api_available():
        raise ConfigError(f"{spec['model']} trains in Ray Train workers (train.workers: "
                          f"{spec['train']['workers']}) and ASHA would stop them, but this Ray has no dashboard, "
                          "whose state API Ray Train needs to release a stopped trial's workers: set "
                          "train.workers: 0, scheduler none, or run on a cluster with a dashboard (--address).")
    resources = resources_for(cfg, [spec])({"trial": spec})
    slug = f"{spec['model']}-{spec['variant']}-{config_hash(spec['trial_key'], 8)}"
    trainable = registered(tune.with_resources(
        tune.with_parameters(search_trial, base=base, inputs=inputs, settings=settings), resources), "search-" + slug)
    caps = [c for c in (search.max_concurrent, max_concurrent(cfg, [spec], share.cpus)) if c]
    if search.algorithm == "random":
        samples = [{"index": i, "config": c} for i, c in enumerate(sample_configs(search)) if i not in done]
        space, algorithm, num_samples = {"sample": tune.grid_search(samples)}, None, 1
    else:
        from ray.tune.search.optuna import OptunaSearch

        space = {k: tune_domain(kind, args) for k, (kind, args) in search.kinds().items()}
        points = [(r["search"]["config"], r["search"]["score"]) for _, r in sorted(done.items())
                  if r["search"]["score"] is not None]
        algorithm = OptunaSearch(points_to_evaluate=[p for p, _ in points] or None,
                                 evaluated_rewards=[s for _, s in points] or None,
                                 # resumed: a seed of its own, so TPE's random start does not replay the
                                 # configurations of the trials already recorded
                                 seed=search.seed + len(done))
        num_samples = total - len(done)
    scheduler = None
    if search.scheduler.name == "asha":
        scheduler = ASHAScheduler(time_attr="step", max_t=max_budget(base, search),
                                  grace_period=search.scheduler.grace_period,
                                  reduction_factor=search.scheduler.reduction_factor)
    recorder = SearchRecorder(run_dir, study, base, search, settings, evaluation_clips(base, inputs, search),
                              max(done, default=-1) + 1, total)
    tuner = tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(metric=search.metric, mode=search.mode, search_alg=algorithm,
                                    scheduler=scheduler, num_samples=num_samples,
                                    max_concurrent_trials=min(caps) if caps else None, reuse_actors=True),
        run_config=tune.RunConfig(name=f"search-{slug}-{int(time.time())}", storage_path=str(run_dir / "tune"),
                                  callbacks=[recorder], verbose=0, stop=share.stopper(),
                                  failure_config=tune.FailureConfig(max_failures=cfg.resources.max_failures)),
    )
    tuner.fit()


def refit_spec(spec: dict, search: SearchConfig, index: int, chosen: dict, trials: dict[int, dict]) -> dict:
    """The row's planned trial with the chosen configuration, scored on test, naming its search."""
    refit = apply_config(spec, chosen["search"]["config"])
    steps = [(r["search"]["ended"]["step"], r["search"]["ended"]["budget"]) for r in trials.values()]
    refit["search_of"] = {
        "id": spec["trial_key"], "role": "refit", "index": index, "config": chosen["search"]["config"],
        "algorithm": search.algorithm, "scheduler": search.scheduler.name, "metric": search.metric,
        "mode": search.mode, "score": chosen["search"]["score"], "rule": CHOICE_RULE,
        "trials": len(trials), "stopped": sum(r["search"]["ended"]["reason"] == "stopped" for r in trials.values()),
        "spent": sum(s for s, _ in steps), "full_budget": sum(b for _, b in steps),
        "unit": chosen["search"]["ended"]["unit"],
    }
    return refit


def run_search(cfg: ExperimentConfig, study: str, spec: dict, inputs: dict, settings: dict, run_dir: RunPath,
               *, resume: bool, share: LaneShare | None = None) -> dict | None:
    """Search one row (trials without a record) and choose on validation clips; returns the refit's spec
    (the caller runs it once, on test, beside the study's other trials), or None when every trial failed."""
    from raygenre.train.trial import failed_record

    search = SearchConfig.model_validate(spec["search"])
    search_id = spec["trial_key"]
    done = recorded_trials(run_dir, search_id)
    total = planned_count(search)
    if done and not resume:
        raise ConfigError(f"{run_dir} already holds {len(done)} of the {total} trials of the search "
                          f"{search_id}; pass --resume to finish it or --name for a new run.")
    print(f"[{study}] search {search_id}: {total} trials ({search.algorithm}, scheduler {search.scheduler.name}), "
          f"{len(done)} already recorded", flush=True)
    if len(done) < total:
        tune_search(cfg, study, spec, search, done, inputs, settings, run_dir, share)
        done = recorded_trials(run_dir, search_id)
    if not done:
        write_record(run_dir, study, failed_record(spec, settings, "every search trial failed"))
        return None
    index, chosen = choose(done, search)
    print(f"[{study}] search {search_id}: refit trial {index:03d} "
          f"{json.dumps(chosen['search']['config'], default=str)} ({search.metric} {chosen['search']['score']})",
          flush=True)
    return refit_spec(spec, search, index, chosen, done)

