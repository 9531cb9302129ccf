"""The ``search:`` block of a model row: a Tune search space over the row's own config keys, validated.

A row with a ``search:`` block is searched (trials scored on validation clips only) and the best
configuration refit and scored once on test (:mod:`raygenre.train.search`). Distributions are written
the way Ray Tune names them, one key each::

    search:
      space:
        params.max_depth: {randint: [3, 10]}        # tune.randint: upper bound excluded
        params.learning_rate: {loguniform: [0.01, 0.3]}
        params.n_estimators: {quniform: [50, 500, 50]}
        train.optimizer: {choice: [adam, adamw]}
      num_samples: 16
      algorithm: optuna                              # random | optuna (TPE, ray.tune.search.optuna)
      scheduler: {name: asha, grace_period: 10, reduction_factor: 3}

A top-level ``search:`` mapping of an experiment (``--set search.num_samples=4``, a profile) is merged
over every row's block, so profiles and the command line can shrink a search without restating the rows.
No Ray import here: the config layer validates without loading Tune.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DISTRIBUTIONS = ("choice", "uniform", "loguniform", "randint", "quniform", "grid")
METRICS = ("valid_accuracy", "valid_loss")
SPACE_PREFIXES = ("params.", "train.")
#: train keys a search may set (numbers and choices of the train block; not where training runs)
SEARCHABLE_TRAIN = ("optimizer", "learning_rate", "weight_decay", "schedule", "epochs", "batch_size")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SchedulerConfig(_Strict):
    """``none`` (every trial runs its whole budget) or ASHA over epochs / boosting rounds."""
    name: Literal["none", "asha"] = "none"
    grace_period: int = Field(1, ge=1)       # epochs or rounds before a trial can be stopped
    reduction_factor: float = Field(3.0, gt=1)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_distribution(key: str, spec: Any) -> tuple[str, list]:
    """``(kind, arguments)`` of one space entry; a ValueError sentence naming ``key`` otherwise."""
    if not isinstance(spec, dict) or len(spec) != 1:
        raise ValueError(f"{key}: a distribution is one mapping such as {{uniform: [0.1, 0.5]}}, "
                         f"one of {', '.join(DISTRIBUTIONS)}")
    kind, args = next(iter(spec.items()))
    if kind not in DISTRIBUTIONS:
        raise ValueError(f"{key}: unknown distribution '{kind}', choose one of {', '.join(DISTRIBUTIONS)}")
    if not isinstance(args, list) or not args:
        raise ValueError(f"{key}: {kind} needs a non-empty list")
    if kind in ("choice", "grid"):
        return kind, list(args)
    want = 3 if kind == "quniform" else 2
    if len(args) != want:
        raise ValueError(f"{key}: {kind} takes {want} numbers, got {len(args)}")
    bad = [a for a in args if not _is_number(a)]
    if bad:
        raise ValueError(f"{key}: {kind} bound {bad[0]!r} is not a number")
    low, high = args[0], args[1]
    if not low < high:
        raise ValueError(f"{key}: {kind} needs low < high, got {low} and {high}")
    if kind == "loguniform" and low <= 0:
        raise ValueError(f"{key}: loguniform needs a positive lower bound, got {low}")
    if kind == "randint" and not all(isinstance(a, int) for a in args):
        raise ValueError(f"{key}: randint bounds must be integers")
    if kind == "quniform" and args[2] <= 0:
        raise ValueError(f"{key}: quniform step must be positive, got {args[2]}")
    return kind, list(args)


class SearchConfig(_Strict):
    """A Tune search over one model row (see the module docstring)."""
    space: dict[str, dict[str, Any]]
    num_samples: int = Field(8, ge=1)
    metric: Literal["valid_accuracy", "valid_loss"] = "valid_accuracy"
    mode: Literal["max", "min"] | None = None   # None: max for accuracy, min for loss
    algorithm: Literal["random", "optuna"] = "optuna"
    scheduler: SchedulerConfig = SchedulerConfig()
    max_concurrent: int | None = Field(None, ge=1)
    seed: int = 0
    report_every: int = Field(1, ge=1)  # boosting rounds per report (XGBoost); epochs always report each
    # holdout: one stratified carve of the training clips (or fault_filtered's valid list) scores every report;
    # kfold (feature models): out-of-fold predictions over every training clip, one score per trial
    validation: Literal["holdout", "kfold"] = "holdout"
    folds: int = Field(5, ge=2, le=20)

    @field_validator("space")
    @classmethod
    def _space(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        if not v:
            raise ValueError("a search needs at least one key in its space")
        for key, spec in v.items():
            if not key.startswith(SPACE_PREFIXES) or key in SPACE_PREFIXES:
                raise ValueError(f"{key}: a searched key is params.<name> or train.<name>")
            if key.startswith("train.") and key[6:] not in SEARCHABLE_TRAIN:
                raise ValueError(f"{key}: unknown key, train keys a search may set are {', '.join(SEARCHABLE_TRAIN)}")
            check_distribution(key, spec)
        return v

    @model_validator(mode="after")
    def _consistent(self) -> SearchConfig:
        if self.mode is None:
            object.__setattr__(self, "mode", "max" if self.metric == "valid_accuracy" else "min")
        if self.validation == "kfold" and self.scheduler.name != "none":
            raise ValueError("validation: kfold scores a trial once, out of fold, so no scheduler can stop it; "
                             "set scheduler: {name: none}")
        if self.validation == "kfold" and self.metric != "valid_accuracy":
            raise ValueError("validation: kfold scores accuracy (the out-of-fold predictions); set metric: "
                             "valid_accuracy")
        grids = [k for k, s in self.space.items() if "grid" in s]
        if grids and self.algorithm != "random":
            raise ValueError(f"space.{grids[0]}: grid values need algorithm: random (Optuna samples, it does "
                             f"not enumerate)")
        return self

    def kinds(self) -> dict[str, tuple[str, list]]:
        return {k: check_distribution(k, s) for k, s in self.space.items()}


def apply_search_overlay(data: Any) -> Any:
    """Merge an experiment's top-level ``search:`` mapping over each row's ``search:`` block (raw dicts).

    The overlay is removed from the experiment (its effect is in the rows, so the config hash sees it
    once); an overlay with no searched row to apply to is an error, not a silent no-op.
    """
    from raygenre.config import deep_merge

    if not isinstance(data, dict) or "search" not in data:
        return data
    data = dict(data)
    overlay = data.pop("search") or {}
    if not isinstance(overlay, dict):
        raise ValueError("search: must be a mapping of search settings for the rows that have a search block")
    models = data.get("models") or []
    rows = [m for m in models if isinstance(m, dict) and m.get("search")]
    if overlay and not rows:
        raise ValueError("search: no model row has a search block to apply these settings to")
    space = overlay.get("space") or {}
    rest = {k: copy.deepcopy(v) for k, v in overlay.items() if k != "space"}
    out = []
    for m in models:
        if m in rows:  # each overlaid space key replaces the row's distribution whole (another kind may follow)
            m = deep_merge(m, {"search": rest})
            m["search"]["space"] = {**(m["search"].get("space") or {}), **copy.deepcopy(space)}
        out.append(m)
    data["models"] = out
    return data
