"""Planning: an experiment config becomes a list of trial specs, one per Tune trial.

A trial spec is a small JSON-able dict; its ``trial_key`` is the stable name used to
resume a run and to check, before reporting success, that every planned trial has a record.
"""

from __future__ import annotations

from raygenre.config import ExperimentConfig

FEATURE_STUDY = "exp3-features"
BOOTSTRAP_STUDY = "exp4-bootstrap"
SIZE_STUDY = "exp4-size"
SELECT_STUDY = "exp4-select"


def _spec(cfg: ExperimentConfig, study: str, model: str, seed: int, *, params: dict | None = None,
          train_fraction: float = 1.0, bootstrap_index: int | None = None,
          evaluate_on: str = "test") -> dict:
    key_parts = [cfg.experiment, study, model, cfg.features.set, f"{cfg.split.name}-{seed}"]
    if bootstrap_index is not None:
        key_parts.append(f"boot{bootstrap_index:03d}")
    if study == SIZE_STUDY:
        key_parts.append(f"frac{train_fraction:.2f}")
    return {
        "trial_key": "/".join(key_parts),
        "experiment": cfg.experiment,
        "study": study,
        "model": model,
        "variant": "default",
        "representation": "features",
        "feature_set": cfg.features.set,
        "params": dict(params or {}),
        "split": {"name": cfg.split.name, "seed": seed, "test_fraction": cfg.split.test_fraction},
        "train_fraction": float(train_fraction),
        "bootstrap_index": bootstrap_index,
        "evaluate_on": evaluate_on,
        "fractions": list(cfg.exp4.fractions) if cfg.exp4 else [],
    }


def plan_exp3(cfg: ExperimentConfig) -> list[dict]:
    """Every feature model on every split seed."""
    if not cfg.models:
        raise ValueError("exp3 needs at least one entry under 'models'.")
    return [_spec(cfg, FEATURE_STUDY, m.name, seed, params=m.params)
            for seed in cfg.split.seeds for m in cfg.models]


def params_for(cfg: ExperimentConfig, model: str) -> dict:
    """Parameters a model gets in exp4: those given for it under ``models``, if any."""
    for spec in cfg.models:
        if spec.name == model:
            return dict(spec.params)
    return {}


def plan_selection(cfg: ExperimentConfig, candidates: list[str]) -> list[dict]:
    """exp4's optional model choice: each candidate scored on a validation split of the training set."""
    return [_spec(cfg, SELECT_STUDY, m, seed, params=params_for(cfg, m), evaluate_on="valid")
            for seed in cfg.split.seeds for m in candidates]


def plan_exp4(cfg: ExperimentConfig, model: str | None = None) -> list[dict]:
    """``bootstraps`` resamples plus one trial per training fraction, for every split seed."""
    if cfg.exp4 is None:
        raise ValueError("exp4 needs an 'exp4' section.")
    model = model or cfg.exp4.model
    params = params_for(cfg, model)
    trials = []
    for seed in cfg.split.seeds:
        trials += [_spec(cfg, BOOTSTRAP_STUDY, model, seed, params=params, bootstrap_index=b)
                   for b in range(cfg.exp4.bootstraps)]
        trials += [_spec(cfg, SIZE_STUDY, model, seed, params=params, train_fraction=f)
                   for f in cfg.exp4.fractions]
    return trials


def check_unique(trials: list[dict]) -> list[dict]:
    keys = [t["trial_key"] for t in trials]
    if len(keys) != len(set(keys)):
        raise ValueError("two planned trials share a trial key; check the split seeds and models.")
    return trials
