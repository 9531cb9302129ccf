"""The tabular family's runner: pick the rows, fit a feature model, predict and score.

Called by :func:`raygenre.train.trial.run_trial` with the feature table (clip id index, ``label``,
``length`` and the 57 features), the same whether it came from prepared shards or the Kaggle CSV.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from raygenre.data.kaggle_csv import feature_columns
from raygenre.genres import GENRE_INDEX, GENRES
from raygenre.stats import classification_metrics

XGBOOST_MODELS = ("xgboost", "xgboost_tuned")


def fit_predict(spec: dict, settings: dict, X_train: np.ndarray, y_train: np.ndarray,
                X_eval: np.ndarray, device: str, y_eval: np.ndarray | None = None,
                ) -> tuple[np.ndarray, tuple[int, int] | None, object]:
    """Fit the trial's model and predict ``X_eval``; XGBoost may go to the distributed backend.

    Returns the predicted labels, (total, trainable) parameter counts of a network (else None) and
    the fitted pipeline (None for the distributed backend, whose booster stays in its checkpoint).
    A search trial (``settings["progress"]``) reports its validation scores while it fits, every
    ``search.report_every`` boosting rounds or every epoch; it fits in the trial whatever the backend
    (the distributed backend reports once, at the end, and could not be stopped early).
    """
    seed = spec["split"]["seed"]
    nthread = max(1, int(settings.get("cpus_per_trial", 1)))
    xgb = settings.get("xgboost", {})
    progress = settings.get("progress")
    if spec["model"] in XGBOOST_MODELS and xgb.get("backend") == "distributed" and progress is None:
        from raygenre.models.tabular import TUNED_XGBOOST_PARAMS
        from raygenre.train.xgb import fit_predict_distributed
        params = {**(TUNED_XGBOOST_PARAMS if spec["model"] == "xgboost_tuned" else {}), **spec["params"]}
        return fit_predict_distributed(X_train, y_train, X_eval, params, num_workers=xgb.get("workers", 2),
                                       seed=seed, storage_path=settings.get("train_storage")), None, None
    from raygenre.models.registry import resolve_builder
    from raygenre.models.tabular import network_param_counts
    build = resolve_builder(spec.get("builder") or "raygenre.models.tabular:build_classifier")
    model = build(spec["model"], params=spec["params"], train=spec.get("train"), seed=seed,
                  nthread=xgb.get("nthread") or nthread, device=device)
    if progress is not None and y_eval is not None:
        from raygenre.train.search_progress import attach_progress

        every = int((spec.get("search") or {}).get("report_every", 1))
        attach_progress(model, X_eval, y_eval, y_train, progress, every)
    model.fit(X_train, y_train)
    return np.asarray(model.predict(X_eval)), network_param_counts(model), model


def run_tabular(spec: dict, table: pd.DataFrame, settings: dict, *, device: str = "cpu") -> dict:
    """The trial's work as numbered steps; returns the result the record is built from."""
    from raygenre.train.trial import select_rows

    # 1. Rows: the split, then the bootstrap resample or training fraction.
    train_ids, eval_ids = select_rows(spec, sorted(table.index))
    return fit_rows(spec, table, settings, train_ids, eval_ids, device=device)


def fit_rows(spec: dict, table: pd.DataFrame, settings: dict, train_ids: list[str], eval_ids: list[str], *,
             device: str = "cpu") -> dict:
    """Steps 2-4 of :func:`run_tabular` on given rows (a search's k-fold trials fit each fold with it)."""
    # 2. Inputs: the named feature set; labels as GTZAN indices.
    columns = list(feature_columns(spec["feature_set"]))
    X_train = table.loc[train_ids, columns].to_numpy(np.float32)
    X_eval = table.loc[eval_ids, columns].to_numpy(np.float32)
    y_train = np.array([GENRE_INDEX[g] for g in table.loc[train_ids, "label"]])
    y_true = [str(g) for g in table.loc[eval_ids, "label"]]
    # 3. Fit and predict (scaling is fitted on the training rows inside the model pipeline).
    fit_start = time.perf_counter()
    y_eval = np.array([GENRE_INDEX[g] for g in y_true])
    predicted, counts, fitted = fit_predict(spec, settings, X_train, y_train, X_eval, device, y_eval)
    fit_predict_s = time.perf_counter() - fit_start
    y_pred = [GENRES[int(k)] for k in predicted]
    # 4. Score.
    return {
        "metrics": classification_metrics(y_true, y_pred),
        "test": {"ids": list(eval_ids), "y_true": y_true, "y_pred": y_pred, "set": spec.get("evaluate_on", "test")},
        "n_train": len(train_ids),
        "params": {"total": counts[0], "trainable": counts[1]} if counts else None,
        "timings": {"fit_predict_s": round(fit_predict_s, 4)},
        "fitted": fitted,  # kept by run_trial when the spec asks (None: the distributed backend keeps none)
        "keep": {"feature_set": spec["feature_set"], "feature_columns": columns},
    }
