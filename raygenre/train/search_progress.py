"""Inside a search trial: intermediate reports on the validation clips, so a scheduler can stop the trial.

Every report is one dict with the same keys, whoever sends it (:data:`REPORT_KEYS`): ``step`` (epochs or
boosting rounds done, ASHA's time attribute), ``budget`` (the trial's full budget), ``valid_accuracy``,
``valid_loss`` and ``pred`` (the predicted genre index of each validation clip, in the evaluation
order), plus ``n_train``. The driver builds the trial's record from its last report, so a trial stopped
by the scheduler still has one, saying at which step it ended.

* XGBoost (in the trial): :class:`RoundReporter`, an ``xgboost`` training callback, every
  ``search.report_every`` rounds and at the last round.
* MLP/LSTM: an epoch hook on the estimator (:func:`attach_progress`).
* The torch loop (spectrogram nets, Wav2Vec2 end to end) reports per epoch itself: through the
  in-trial session's report with ``train.workers: 0``, through Ray Train's ``TuneReportCallback`` with
  workers (``raygenre.train.torch_runner``).
* Models with no rounds or epochs (KNN, random forest) send one report when they finish.

No model is named here: estimators are recognised by what they offer (an ``xgboost`` model, or an
``epoch_hook`` attribute).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

REPORT_KEYS = ("step", "budget", "valid_accuracy", "valid_loss", "pred", "n_train")
EPS = 1e-15


def _scores(proba: np.ndarray, classes: np.ndarray, y_eval: np.ndarray) -> tuple[float, float, list[int]]:
    """(accuracy, mean log loss, predicted labels) of class probabilities over ``classes``."""
    pred = classes[np.argmax(proba, axis=1)]
    where = {int(c): i for i, c in enumerate(classes)}
    p_true = np.array([proba[r, where[int(y)]] if int(y) in where else 0.0 for r, y in enumerate(y_eval)])
    loss = float(-np.mean(np.log(np.clip(p_true, EPS, 1.0))))
    return float(np.mean(pred == y_eval)), loss, [int(p) for p in pred]


def round_reporter(scaler: Any, X_eval: np.ndarray, y_eval: np.ndarray, classes: np.ndarray, total: int,
                   every: int, progress: Callable[[dict], None], n_train: int):
    """An ``xgboost`` callback reporting validation scores every ``every`` rounds and at round ``total``."""
    import xgboost

    class RoundReporter(xgboost.callback.TrainingCallback):
        def __init__(self) -> None:
            super().__init__()
            self._dmatrix = None

        def after_iteration(self, model, epoch: int, evals_log) -> bool:
            done = epoch + 1
            if done % every and done != total:
                return False
            if self._dmatrix is None:  # the pipeline's scaler is fitted by the time boosting starts
                self._dmatrix = xgboost.DMatrix(scaler.transform(X_eval).astype(np.float32))
            proba = model.predict(self._dmatrix, iteration_range=(0, done))
            acc, loss, pred = _scores(np.asarray(proba).reshape(len(y_eval), -1), classes, y_eval)
            progress({"step": done, "budget": total, "valid_accuracy": acc, "valid_loss": loss, "pred": pred,
                      "n_train": n_train})
            return False

    return RoundReporter()


def epoch_hook(scaler: Any, X_eval: np.ndarray, y_eval: np.ndarray, total: int,
               progress: Callable[[dict], None], n_train: int) -> Callable[[Any, int], None]:
    """A per-epoch hook for a torch estimator: the network scored on the validation rows, in eval mode."""
    import torch

    def hook(model, epoch: int) -> None:
        device = next(model.parameters()).device
        x = torch.from_numpy(scaler.transform(X_eval).astype(np.float32)).to(device)
        was_training = model.training
        model.eval()
        with torch.no_grad():
            proba = torch.softmax(model(x), dim=1).cpu().numpy()
        model.train(was_training)
        acc, loss, pred = _scores(proba, np.arange(proba.shape[1]), y_eval)
        progress({"step": epoch, "budget": total, "valid_accuracy": acc, "valid_loss": loss, "pred": pred,
                  "n_train": n_train})

    return hook


def attach_progress(pipeline: Any, X_eval: np.ndarray, y_eval: np.ndarray, y_train: np.ndarray,
                    progress: Callable[[dict], None], every: int) -> None:
    """Make a tabular pipeline report while it fits (XGBoost rounds, network epochs); others report at the end."""
    import xgboost

    scaler, est = pipeline[0], pipeline[-1]
    y_eval = np.asarray(y_eval)
    if isinstance(est, xgboost.XGBModel):
        total = int(est.get_params()["n_estimators"] or 100)
        est.set_params(callbacks=[round_reporter(scaler, X_eval, y_eval, np.unique(y_train), total, every,
                                                 progress, len(y_train))])
    elif hasattr(est, "epoch_hook"):
        est.epoch_hook = epoch_hook(scaler, X_eval, y_eval, int(est.epochs), progress, len(y_train))


def search_trial(config: dict, base: dict, inputs: dict, settings: dict) -> None:
    """The Tune function trial of a search: one sampled configuration, scored on validation clips."""
    from ray import tune

    from raygenre.genres import GENRE_INDEX
    from raygenre.search_config import SearchConfig
    from raygenre.train.search_space import apply_config, budget_of, normalize
    from raygenre.train.trial import run_trial
    from raygenre.train.tune_runner import trial_device

    search = SearchConfig.model_validate(base["search"])
    values = config["sample"]["config"] if "sample" in config else {k: config[k] for k in search.space}
    spec = apply_config(base, normalize(search, values))
    budget = budget_of(spec)[0]
    last = {"step": 0}

    def progress(metrics: dict) -> None:
        report = {k: metrics[k] for k in REPORT_KEYS if k in metrics}
        report.setdefault("budget", budget)
        last["step"] = int(report["step"])
        tune.report(report)

    device, resources = trial_device(settings)
    if search.validation == "kfold":  # out-of-fold predictions over the training clips, one report
        from raygenre.train.search_space import kfold_rows
        from raygenre.train.tabular_runner import fit_rows

        table = inputs[spec["representation"]]
        pred, truth, n_train = [], [], []
        for fit_ids, held_ids in kfold_rows(spec, sorted(table.index), search):
            result = fit_rows(spec, table, settings, fit_ids, held_ids, device=device)
            pred += [GENRE_INDEX[g] for g in result["test"]["y_pred"]]
            truth += [GENRE_INDEX[g] for g in result["test"]["y_true"]]
            n_train.append(result["n_train"])
        tune.report({"step": budget, "budget": budget, "valid_accuracy": float(np.mean(np.equal(pred, truth))),
                     "valid_loss": float("nan"), "pred": pred, "n_train": int(round(np.mean(n_train)))})
        return
    record = run_trial(spec, inputs, {**settings, "progress": progress}, device=device, resources=resources)
    if last["step"] == 0:  # a model that trains in one go: its only report
        pred = [GENRE_INDEX[g] for g in record["test"]["y_pred"]]
        tune.report({"step": budget, "budget": budget, "valid_accuracy": record["metrics"]["accuracy"],
                     "valid_loss": float("nan"), "pred": pred, "n_train": record["n_train"]})
