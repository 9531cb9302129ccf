"""One trial, whatever the model family: choose its rows, hand it to the family's runner, build the record.

``run_trial`` is a plain function (tests call it without Ray); the Tune wiring in
``raygenre.train.tune_runner`` wraps it. A family runner takes the spec, the inputs of its
representation and the run-wide settings, and returns a result dict (predictions on the evaluation
clips, training-row count, timings and, for networks, parameter counts and per-epoch history); the
record is built here, the same way for every family.
"""

from __future__ import annotations

import time

from raygenre.data.splits import bootstrap_sample, make_split, nested_fractions, paper_split
from raygenre.errors import SplitError
from raygenre.models.registry import resolve_builder
from raygenre.records import build_record
from raygenre.storage import RunPath

#: family -> its runner ``(spec, inputs, settings, rows, device) -> result``; imported on first use.
RUNNERS: dict[str, str] = {
    "tabular": "raygenre.train.tabular_runner:run_tabular",
    "spectrogram": "raygenre.train.torch_runner:run_spectrogram",
    "waveform": "raygenre.train.waveform_runner:run_waveform",
}


#: family -> how its fitted models are kept.
ARTIFACT_SAVERS: dict[str, str] = {
    "tabular": "raygenre.models.artifacts:save_tabular",
    "spectrogram": "raygenre.models.kept_networks:save_network",
    "waveform": "raygenre.models.kept_networks:save_network",
}


def keep_model(spec: dict, settings: dict, fitted, keep: dict) -> str:
    """Save ``fitted`` under ``RUN_DIR/artifacts/<trial key>``; returns that path relative to the run dir."""
    from raygenre.models.artifacts import artifact_name
    from raygenre.versions import package_versions

    relative = f"artifacts/{artifact_name(spec['trial_key'])}"
    meta = {"trial_key": spec["trial_key"], "model": spec["model"], "variant": spec["variant"],
            "family": spec["family"], "params": spec["params"], "representation": spec["representation"],
            "audio": settings.get("audio", {}), "versions": package_versions(), **keep}
    with (RunPath.of(settings["run"]["run_dir"]) / relative).written_locally() as folder:  # whole or not at all
        resolve_builder(ARTIFACT_SAVERS[spec["family"]])(folder, fitted, meta)
    return relative


def select_rows(spec: dict, ids: list[str]) -> tuple[list[str], list[str]]:
    """(training ids, evaluation ids) for a trial, drawn from the usable clip ids; bootstrap ids may repeat.

    The split is drawn here, from the spec's split name and seed, so one shard set serves every
    split and seed. ``evaluate_on: valid`` scores on validation clips (fault_filtered's list, or a
    stratified carve of the paper split's training clips) and never on the test clips.
    """
    split_cfg = spec["split"]
    split = make_split(ids, split_cfg["name"], split_cfg["seed"], split_cfg["test_fraction"])
    train, evaluate = split.train, split.test
    if spec.get("evaluate_on") == "valid":
        if split.valid:
            evaluate = split.valid
        else:
            inner = paper_split(train, split_cfg["seed"], spec.get("validation_fraction", 0.2))
            train, evaluate = inner.train, inner.test
    if not train or not evaluate:
        raise SplitError(f"split {split_cfg['name']} leaves no training or evaluation clips for this data.")
    if spec.get("bootstrap_index") is not None:
        train = bootstrap_sample(train, spec["bootstrap_index"], split_cfg["seed"])
    elif spec.get("train_fraction", 1.0) < 1.0:
        train = nested_fractions(train, spec["fractions"], split_cfg["seed"])[spec["train_fraction"]]
    return train, evaluate


def run_trial(spec: dict, inputs: dict, settings: dict, *, device: str = "cpu",
              resources: dict | None = None) -> dict:
    """The whole trial as numbered steps; returns its ok record (raises if the model fails)."""
    started, started_unix = time.perf_counter(), time.time()
    # 1. The family's runner, imported only now (a tabular trial never imports torchvision).
    runner = resolve_builder(RUNNERS[spec["family"]])
    # 2. The runner picks rows with ``select_rows``, trains, predicts and scores.
    result = runner(spec, inputs[spec["representation"]], settings, device=device)
    # 3. Keep the fitted model when the spec asks (the artifacts policy), in a format that runs no code.
    fitted, keep = result.pop("fitted", None), result.pop("keep", {})
    run_dir = settings.get("run", {}).get("run_dir")  # absent when a trial runs outside a sweep (tests, benches)
    if spec.get("keep_artifact") and fitted is not None and spec["family"] in ARTIFACT_SAVERS and run_dir:
        result["artifact"] = keep_model(spec, settings, fitted, keep)
    # total_s times the trial; the wall-clock ends place it on the run's timeline (what ran beside what)
    result.setdefault("timings", {}).update(total_s=round(time.perf_counter() - started, 4),
                                            started_unix=round(started_unix, 3), finished_unix=round(time.time(), 3))
    # 4. One record builder for every family.
    return build_record(spec, settings, result=result, resources={**(resources or {}), "device": device})


def failed_record(spec: dict, settings: dict, error: str) -> dict:
    """The record of a trial that kept failing: no metrics, the error text."""
    return build_record(spec, settings, status="failed", error=error)
