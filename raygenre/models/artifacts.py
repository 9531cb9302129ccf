"""Kept models: save a fitted model in a format that loads without running code, and load it back.

A kept model is a folder (``RUN_DIR/artifacts/<trial key>/``) with ``model.json`` — what is needed
to rebuild and use it: model, variant, params, representation and its settings, feature columns,
label order, package versions — and one model file whose format runs no code when read:

==========  ===========================  ============================================================
kind        file                         for
==========  ===========================  ============================================================
xgboost     ``model.ubj``                XGBoost's own binary JSON (the booster)
torch       ``model.safetensors``        the state dict of an Appendix B network (MLP, LSTM)
skops       ``model.skops``              scikit-learn estimators (KNN, RandomForest, ...), loaded
                                         with only scikit-learn / numpy types trusted
==========  ===========================  ============================================================

Feature models are kept as (scaler, model): the standard scaler fitted on the training rows is stored
as plain numbers in ``model.json``. Nothing here uses pickle; a pickle planted in place of a model file
fails to load with an :class:`~raygenre.errors.ArtifactError`.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from raygenre.errors import ArtifactError
from raygenre.genres import GENRES, N_CLASSES

ARTIFACT_FORMAT = 1
META = "model.json"
_TRUSTED_PREFIXES = ("sklearn.", "numpy.", "builtins.", "scipy.")


def artifact_name(trial_key: str) -> str:
    return trial_key.replace("/", "__")


def _write_json(path: Path, body: dict) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    tmp.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def save_tabular(folder: Path, pipeline, meta: dict) -> Path:
    """Keep a fitted ``Pipeline(StandardScaler, model)`` of a feature model under ``folder``."""
    from raygenre.models.tabular import LabelSafeXGBClassifier, TorchTabularClassifier

    folder.mkdir(parents=True, exist_ok=True)
    scaler, model = pipeline[0], pipeline[-1]
    body = {**meta, "format": ARTIFACT_FORMAT, "labels": list(GENRES),
            "scaler": {"mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist()},
            "classes": [int(c) for c in model.classes_]}
    if isinstance(model, LabelSafeXGBClassifier):
        model.get_booster().save_model(str(folder / "model.ubj"))
        body.update(kind="xgboost", file="model.ubj")
    elif isinstance(model, TorchTabularClassifier):
        from safetensors.torch import save_file

        save_file({k: v.detach().cpu().contiguous() for k, v in model.model_.state_dict().items()},
                  str(folder / "model.safetensors"))
        body.update(kind="torch", file="model.safetensors",
                    network={"arch": model.arch, "n_features": int(model.n_features_in_), "dropout": model.dropout,
                             "n_classes": int(model.n_classes)})
    else:
        import skops.io

        skops.io.dump(model, folder / "model.skops")
        body.update(kind="skops", file="model.skops")
    _write_json(folder / META, body)
    return folder


@dataclass
class KeptModel:
    """A loaded kept model: ``predict_proba(X)`` gives (N, 10) probabilities in GENRES order."""

    meta: dict
    estimator: Any

    @property
    def feature_columns(self) -> list[str]:
        return list(self.meta["feature_columns"])

    def _scaled(self, X: np.ndarray) -> np.ndarray:
        scaler = self.meta["scaler"]
        X = np.asarray(X, dtype=np.float64)
        return ((X - np.asarray(scaler["mean"])) / np.asarray(scaler["scale"])).astype(np.float32)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X = self._scaled(X)
        kind = self.meta["kind"]
        if kind == "xgboost":
            import xgboost

            scores = self.estimator.predict(xgboost.DMatrix(X))
        elif kind == "torch":
            import torch

            with torch.no_grad():
                scores = torch.softmax(self.estimator(torch.from_numpy(X)), dim=1).numpy()
        elif hasattr(self.estimator, "predict_proba"):
            scores = self.estimator.predict_proba(X)
        else:  # a classifier without probabilities: one-hot of its prediction
            predicted = np.asarray(self.estimator.predict(X))
            scores = (predicted[:, None] == np.asarray(self.meta["classes"])[None, :]).astype(float)
        return _to_all_genres(np.asarray(scores, dtype=np.float64), self.meta["classes"])


def _to_all_genres(scores: np.ndarray, classes: list[int]) -> np.ndarray:
    """Columns of the classes the model saw in training -> all ten genres (absent ones get 0)."""
    if scores.ndim == 1:
        scores = scores[:, None]
    out = np.zeros((scores.shape[0], N_CLASSES))
    out[:, list(classes)] = scores
    return out


def _check_meta(folder: Path) -> dict:
    path = folder / META
    if not path.is_file():
        raise ArtifactError(f"{folder} holds no {META}: it is not a raygenre kept model.")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise ArtifactError(f"{path} is not valid JSON.") from None
    if meta.get("format") != ARTIFACT_FORMAT:
        raise ArtifactError(f"{folder} was written in kept-model format {meta.get('format')!r}; this raygenre "
                            f"reads format {ARTIFACT_FORMAT}: re-run the sweep to keep the model again.")
    missing = [k for k in ("kind", "file", "model", "feature_columns", "scaler", "classes") if k not in meta]
    if missing:
        raise ArtifactError(f"{path} lacks {', '.join(missing)}: it was written by an incompatible version.")
    if not (folder / meta["file"]).is_file():
        raise ArtifactError(f"{folder} lacks its model file {meta['file']}.")
    return meta


def load_kept_model(folder: Path | str) -> KeptModel:
    """Load a kept model without running code from the folder; anything unexpected is an ArtifactError."""
    folder = Path(folder)
    meta = _check_meta(folder)
    file = folder / meta["file"]
    try:
        if meta["kind"] == "xgboost":
            import xgboost

            booster = xgboost.Booster()
            booster.load_model(str(file))
            return KeptModel(meta, booster)
        if meta["kind"] == "torch":
            from safetensors.torch import load_file

            from raygenre.models.tabular import build_network

            net = meta["network"]
            module = build_network(net["arch"], net["n_features"], net["n_classes"], net["dropout"])
            module.load_state_dict(load_file(str(file)))
            return KeptModel(meta, module.eval())
        if meta["kind"] == "skops":
            import skops.io

            untrusted = skops.io.get_untrusted_types(file=file)
            refused = [t for t in untrusted if not t.startswith(_TRUSTED_PREFIXES)]
            if refused:
                raise ArtifactError(f"{file} holds types raygenre does not trust ({', '.join(refused[:3])}); "
                                    f"it was not written by raygenre.")
            return KeptModel(meta, skops.io.load(file, trusted=untrusted))
    except ArtifactError:
        raise
    except Exception as exc:  # a planted pickle, a truncated file, a wrong format: the file's fault
        raise ArtifactError(f"{file} cannot be read as a {meta['kind']} model "
                            f"({type(exc).__name__}); it was not written by raygenre or is damaged.") from None
    raise ArtifactError(f"{folder}: unknown kept-model kind {meta['kind']!r}.")
