"""Kept models: save a fitted model in a format that loads without running code, and load it back.

A kept model is a folder (``RUN_DIR/artifacts/<trial key>/``) with ``model.json`` — what is needed
to rebuild and use it: model, variant, params, representation and its settings, feature columns,
label order, package versions — and one model file whose format runs no code when read:

==========  ===========================  ============================================================
kind        file                         for
==========  ===========================  ============================================================
xgboost     ``model.ubj``                XGBoost's own binary JSON (the booster)
torch       ``model.safetensors``        the state dict of an Appendix B network (MLP, LSTM)
skops       ``model.skops``              scikit-learn estimators (KNN, RandomForest), loaded only when
                                         every type in the file is one raygenre writes for that model
==========  ===========================  ============================================================

Feature models are kept as (scaler, model): the standard scaler fitted on the training rows is stored
as plain numbers in ``model.json``. Nothing here uses pickle; a pickle planted in place of a model file
fails to load with an :class:`~raygenre.errors.ArtifactError`.

A run directory may come from someone else (a shared bucket, a copied folder), so loading trusts
nothing in it: the folder must be one name under ``<run>/artifacts/``, the model file must be the
kind's fixed name inside it (no links out), and a skops file is audited node by node against an exact
list of (type, loader) pairs per estimator before skops constructs anything.
"""

from __future__ import annotations

import json
import os
import re
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from raygenre.errors import ArtifactError, WeightsError
from raygenre.genres import GENRES, N_CLASSES

ARTIFACT_FORMAT = 1
META = "model.json"
ARTIFACTS_DIR = "artifacts"
MODEL_FILES = {"xgboost": "model.ubj", "torch": "model.safetensors", "skops": "model.skops",
               "network": "model.safetensors"}
#: keys ``model.json`` must hold, by kind (feature models carry their scaler and columns).
_FEATURE_KEYS = ("feature_columns", "scaler", "classes")
REQUIRED_KEYS = {"xgboost": _FEATURE_KEYS, "torch": (*_FEATURE_KEYS, "network"), "skops": _FEATURE_KEYS,
                 "network": ("network", "representation")}
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._=,+-]*")

# Every (type, skops loader) pair that ``skops.io.dump`` writes for the estimators raygenre keeps as
# skops files (scikit-learn 1.5-1.9), and nothing else: the containers and arrays of any estimator plus
# each estimator's own classes. KNN's trees and distance metrics appear for algorithm kd_tree/ball_tree.
_SKOPS_COMMON = frozenset({
    ("builtins.dict", "DictNode"), ("builtins.list", "ListNode"), ("builtins.tuple", "TupleNode"),
    ("builtins.str", "JsonNode"), ("builtins.str", "TypeNode"),
    ("numpy.ndarray", "NdArrayNode"), ("numpy.int64", "NdArrayNode"), ("numpy.float64", "NdArrayNode"),
})
SKOPS_TYPES = {
    "knn": _SKOPS_COMMON | {
        ("sklearn.neighbors._classification.KNeighborsClassifier", "ObjectNode"),
        ("sklearn.neighbors._kd_tree.KDTree", "ObjectNode"),
        ("sklearn.neighbors._ball_tree.BallTree", "ObjectNode"),
        *((f"sklearn.metrics._dist_metrics.{m}Distance64", "ObjectNode")
          for m in ("Euclidean", "Manhattan", "Chebyshev", "Minkowski")),
    },
    "random_forest": _SKOPS_COMMON | {
        ("sklearn.ensemble._forest.RandomForestClassifier", "ObjectNode"),
        ("sklearn.tree._classes.DecisionTreeClassifier", "ObjectNode"),
        ("sklearn.tree._tree.Tree", "TreeNode"),
    },
}
SKOPS_ROOT = {"knn": "sklearn.neighbors._classification.KNeighborsClassifier",
              "random_forest": "sklearn.ensemble._forest.RandomForestClassifier"}


def artifact_name(trial_key: str) -> str:
    return trial_key.replace("/", "__")


def write_json(path: Path, body: dict) -> None:
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
    write_json(folder / META, body)
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
    if path.is_symlink():
        raise ArtifactError(f"{path} is a link; a kept model's files must be plain files in its folder.")
    if not path.is_file():
        raise ArtifactError(f"{folder} holds no {META}: it is not a raygenre kept model.")
    try:
        meta = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ArtifactError(f"{path} is not valid JSON.") from None
    if not isinstance(meta, dict):
        raise ArtifactError(f"{path} is not a JSON object: it is not a raygenre kept model.")
    if meta.get("format") != ARTIFACT_FORMAT:
        raise ArtifactError(f"{folder} was written in kept-model format {meta.get('format')!r}; this raygenre "
                            f"reads format {ARTIFACT_FORMAT}: re-run the sweep to keep the model again.")
    kind = meta.get("kind")
    if kind not in MODEL_FILES:
        raise ArtifactError(f"{path} names an unknown kind {kind!r}: raygenre keeps {', '.join(MODEL_FILES)} models.")
    missing = [k for k in ("file", "model", *REQUIRED_KEYS[kind]) if k not in meta]
    if missing:
        raise ArtifactError(f"{path} lacks {', '.join(missing)}: it was written by an incompatible version.")
    if meta["file"] != MODEL_FILES[kind]:
        raise ArtifactError(f"{path} names the file {meta['file']!r}, but a {kind} kept model is always "
                            f"{MODEL_FILES[kind]!r}; it was not written by raygenre.")
    file = folder / meta["file"]
    if file.is_symlink() or not file.is_file():
        raise ArtifactError(f"{folder} lacks its model file {meta['file']} (or it is a link, which is refused).")
    return meta


def artifact_folder(run_dir, relative: object):
    """``run_dir / relative`` when ``relative`` is ``artifacts/<one name>``, else one ArtifactError sentence.

    Works for a local ``Path`` or a ``RunPath``; locally the folder must also resolve inside
    ``<run>/artifacts`` (no symbolic link out of the run).
    """
    parts = relative.split("/") if isinstance(relative, str) else []
    if len(parts) != 2 or parts[0] != ARTIFACTS_DIR or not _SAFE_NAME.fullmatch(parts[1]) or ".." in parts[1]:
        raise ArtifactError(f"the record's artifact {relative!r} is not of the form '{ARTIFACTS_DIR}/<name>' "
                            f"inside the run; it is refused.")
    folder = run_dir / ARTIFACTS_DIR / parts[1]
    local = folder if isinstance(folder, Path) else folder.local
    if local is not None:
        root = (Path(run_dir if isinstance(run_dir, Path) else run_dir.local).resolve() / ARTIFACTS_DIR)
        if Path(local).resolve().parent != root:
            raise ArtifactError(f"{local} resolves outside {root} (a link out of the run); it is refused.")
    return folder


def audit_skops(file: Path, model: str) -> list[str]:
    """The file's types that skops does not trust by default, once every node is on ``model``'s list.

    Reads ``schema.json`` from the zip without constructing anything; any (type, loader) pair outside
    :data:`SKOPS_TYPES` for ``model``, or a root that is not the model's estimator, is an ArtifactError.
    """
    allowed = SKOPS_TYPES.get(model)
    if allowed is None:
        raise ArtifactError(f"{file}: raygenre never keeps a {model!r} model as a skops file.")
    try:
        with zipfile.ZipFile(file) as archive:
            schema = json.loads(archive.read("schema.json"))
    except Exception as exc:  # not a zip, no schema, not JSON
        raise ArtifactError(f"{file} cannot be read as a skops model ({type(exc).__name__}); it was not written "
                            f"by raygenre or is damaged.") from None
    found: set[tuple[str, str]] = set()
    pending = [schema]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            if "__class__" in node or "__module__" in node or "__loader__" in node:
                found.add((f"{node.get('__module__')}.{node.get('__class__')}", str(node.get("__loader__"))))
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    refused = sorted(found - allowed)
    root = f"{schema.get('__module__')}.{schema.get('__class__')}" if isinstance(schema, dict) else None
    if refused or root != SKOPS_ROOT[model]:
        named = ", ".join(f"{t} ({loader})" for t, loader in refused[:3]) or f"root {root}"
        raise ArtifactError(f"{file} holds types raygenre never writes for a {model} model ({named}); "
                            f"it was not written by raygenre and is not loaded.")
    return sorted({t for t, _ in found})


def load_kept_model(folder: Path | str):
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
            if not (isinstance(net.get("n_features"), int) and 0 < net["n_features"] <= 100_000
                    and net.get("n_classes") == N_CLASSES):
                raise ArtifactError(f"{folder / META} describes a network raygenre never builds ({net!r:.80}).")
            module = build_network(net["arch"], net["n_features"], net["n_classes"], net["dropout"])
            module.load_state_dict(load_file(str(file)))
            return KeptModel(meta, module.eval())
        if meta["kind"] == "network":
            from raygenre.models.kept_networks import KeptNetwork

            return KeptNetwork(folder, meta)
        if meta["kind"] == "skops":
            import skops.io

            audited = audit_skops(file, meta["model"])
            untrusted = skops.io.get_untrusted_types(file=file)
            if set(untrusted) - set(audited):  # skops saw a type the audit did not: never guess
                raise ArtifactError(f"{file} holds types the audit did not see; it is not loaded.")
            return KeptModel(meta, skops.io.load(file, trusted=untrusted))
    except (ArtifactError, WeightsError):  # already one sentence: a refused file, or a missing trunk
        raise
    except Exception as exc:  # a planted pickle, a truncated file, a wrong format: the file's fault
        raise ArtifactError(f"{file} cannot be read as a {meta['kind']} model "
                            f"({type(exc).__name__}); it was not written by raygenre or is damaged.") from None
    raise ArtifactError(f"{folder}: unknown kept-model kind {meta['kind']!r}.")
