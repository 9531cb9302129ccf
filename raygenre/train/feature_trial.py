"""One feature-model trial: pick the training rows, fit, predict, score, build the record.

``run_feature_trial`` is a plain function (tests call it without Ray); ``feature_trial`` is the
Ray Tune function trial that wraps it and reports the record to the driver, which appends it.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import time
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from raygenre.config import config_hash
from raygenre.data.gtzan import GENRE_INDEX, GENRES
from raygenre.data.kaggle_csv import feature_columns
from raygenre.data.splits import bootstrap_sample, make_split, nested_fractions, paper_split
from raygenre.records import RECORD_VERSION
from raygenre.train.metrics import classification_metrics
from raygenre.versions import package_versions

XGBOOST_MODELS = ("xgboost", "xgboost_tuned")


def select_rows(spec: dict, ids: list[str]) -> tuple[list[str], list[str]]:
    """(training ids, evaluation ids) for a trial; bootstrap ids may repeat."""
    split_cfg = spec["split"]
    split = make_split(ids, split_cfg["name"], split_cfg["seed"], split_cfg["test_fraction"])
    train, evaluate = split.train, split.test
    if spec.get("evaluate_on") == "valid":
        if split.valid:
            evaluate = split.valid
        else:  # the paper split has no validation set: carve one from its training ids
            inner = paper_split(train, split_cfg["seed"], spec.get("validation_fraction", 0.2))
            train, evaluate = inner.train, inner.test
    if not train or not evaluate:
        raise ValueError(f"split {split_cfg['name']} leaves no training or evaluation clips for this data.")
    if spec.get("bootstrap_index") is not None:
        train = bootstrap_sample(train, spec["bootstrap_index"], split_cfg["seed"])
    elif spec.get("train_fraction", 1.0) < 1.0:
        train = nested_fractions(train, spec["fractions"], split_cfg["seed"])[spec["train_fraction"]]
    return train, evaluate


def fit_predict(spec: dict, settings: dict, X_train: np.ndarray, y_train: np.ndarray,
                X_eval: np.ndarray, device: str) -> np.ndarray:
    """Fit the trial's model and predict ``X_eval``; XGBoost may go to the distributed backend."""
    seed = spec["split"]["seed"]
    nthread = max(1, int(settings.get("cpus_per_trial", 1)))
    xgb = settings.get("xgboost", {})
    if spec["model"] in XGBOOST_MODELS and xgb.get("backend") == "distributed":
        from raygenre.models.tabular import TUNED_XGBOOST_PARAMS
        from raygenre.train.xgb import fit_predict_distributed
        params = {**(TUNED_XGBOOST_PARAMS if spec["model"] == "xgboost_tuned" else {}), **spec["params"]}
        return fit_predict_distributed(X_train, y_train, X_eval, params, num_workers=xgb.get("workers", 2),
                                       seed=seed, storage_path=settings.get("train_storage"))
    from raygenre.models.tabular import build_classifier
    model = build_classifier(spec["model"], params=spec["params"], neural=settings.get("neural"),
                             seed=seed, nthread=xgb.get("nthread") or nthread, device=device)
    model.fit(X_train, y_train)
    return np.asarray(model.predict(X_eval))


def run_feature_trial(spec: dict, table: pd.DataFrame, settings: dict, *, device: str = "cpu",
                      resources: dict | None = None) -> dict:
    """The whole trial as numbered steps; returns the record (raises if the model fails)."""
    started = time.perf_counter()
    # 1. Rows: the split, then the bootstrap resample or training fraction.
    train_ids, eval_ids = select_rows(spec, sorted(table.index))
    # 2. Inputs: the named feature set; labels as GTZAN indices.
    columns = list(feature_columns(spec["feature_set"]))
    X_train = table.loc[train_ids, columns].to_numpy(np.float32)
    X_eval = table.loc[eval_ids, columns].to_numpy(np.float32)
    y_train = np.array([GENRE_INDEX[g] for g in table.loc[train_ids, "label"]])
    y_true = [str(g) for g in table.loc[eval_ids, "label"]]
    # 3. Fit and predict (scaling is fitted on the training rows inside the model pipeline).
    fit_start = time.perf_counter()
    predicted = fit_predict(spec, settings, X_train, y_train, X_eval, device)
    fit_predict_s = time.perf_counter() - fit_start
    y_pred = [GENRES[int(k)] for k in predicted]
    # 4. Score and describe.
    metrics = classification_metrics(y_true, y_pred)
    trial_config = {**spec, "settings": {k: settings[k] for k in ("neural", "xgboost") if k in settings}}
    return {
        "record_version": RECORD_VERSION,
        "trial_key": spec["trial_key"],
        "experiment": spec["experiment"],
        "study": spec["study"],
        "model": spec["model"],
        "variant": spec["variant"],
        "representation": spec["representation"],
        "feature_set": spec["feature_set"],
        "augmented": False,
        "split": {"name": spec["split"]["name"], "seed": spec["split"]["seed"]},
        "train_fraction": spec["train_fraction"],
        "bootstrap_index": spec["bootstrap_index"],
        "status": "ok",
        "error": None,
        "metrics": metrics,
        "test": {"ids": list(eval_ids), "y_true": y_true, "y_pred": y_pred, "set": spec.get("evaluate_on")},
        "n_train": len(train_ids),
        "timings": {"fit_predict_s": round(fit_predict_s, 4),
                    "total_s": round(time.perf_counter() - started, 4)},
        "resources": {**(resources or {}), "device": device, "node": socket.gethostname()},
        "config": trial_config,
        "config_hash": config_hash(trial_config),
        "run": settings.get("run", {}),
        "versions": package_versions(),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def failed_record(spec: dict, settings: dict, error: str) -> dict:
    """The record of a trial that kept failing: same keys, no metrics, the error text."""
    trial_config = {**spec, "settings": {k: settings[k] for k in ("neural", "xgboost") if k in settings}}
    return {
        "record_version": RECORD_VERSION, "trial_key": spec["trial_key"], "experiment": spec["experiment"],
        "study": spec["study"], "model": spec["model"], "variant": spec["variant"],
        "representation": spec["representation"], "feature_set": spec["feature_set"], "augmented": False,
        "split": {"name": spec["split"]["name"], "seed": spec["split"]["seed"]},
        "train_fraction": spec["train_fraction"], "bootstrap_index": spec["bootstrap_index"],
        "status": "failed", "error": error, "metrics": None, "test": None, "n_train": None,
        "timings": {}, "resources": {}, "config": trial_config, "config_hash": config_hash(trial_config),
        "run": settings.get("run", {}), "versions": package_versions(),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def feature_trial(config: dict, table: pd.DataFrame, settings: dict) -> None:
    """Ray Tune function trial: run one spec and report its record as the trial's final result."""
    import ray
    from ray import tune

    spec = config["trial"]
    if isinstance(table, ray.ObjectRef):  # the driver put the table in the object store once
        table = ray.get(table)
    gpu_ids = ray.get_gpu_ids()
    device = "cuda" if gpu_ids else "cpu"
    resources = {"cpu": settings.get("cpus_per_trial", 1), "gpu": len(gpu_ids),
                 "platform": platform.platform(), "pid": os.getpid()}
    record = run_feature_trial(spec, table, settings, device=device, resources=resources)
    tune.report({"accuracy": record["metrics"]["accuracy"], "macro_f1": record["metrics"]["macro_f1"],
                 "record_json": json.dumps(record, default=str)})
