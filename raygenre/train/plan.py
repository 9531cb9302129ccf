"""Planning: an experiment config becomes a list of trial specs, one per Tune trial.

A trial spec is a small JSON-able dict that says everything a runner needs: the registered model
(its family and representation come from the registry), variant, params, training and weights
settings, split and seed, training fraction or bootstrap index, and whether augmented rows train.
Its ``trial_key`` is the stable name used to resume a run and to check, before reporting success,
that every planned trial has a record.
"""

from __future__ import annotations

from collections.abc import Callable

from raygenre.config import ExperimentConfig, ModelSpec
from raygenre.errors import ConfigError
from raygenre.models.registry import get_model

BOOTSTRAP_STUDY = "exp4-bootstrap"
SIZE_STUDY = "exp4-size"
SELECT_STUDY = "exp4-select"


def study_name(experiment: str, representation: str) -> str:
    """``exp3-features``, ``exp3-waveform``, ``exp1-mel``: one records file per experiment and input."""
    return f"{experiment}-{representation}"


def trial_spec(cfg: ExperimentConfig, study: str, model: ModelSpec, seed: int, *, train_fraction: float = 1.0,
               bootstrap_index: int | None = None, evaluate_on: str = "test") -> dict:
    entry = get_model(model.name)
    representation = entry.representation
    augmented = bool(cfg.prepare.augment.enabled) and representation != "features"
    inputs = f"features-{cfg.features.set}" if representation == "features" else representation
    key_parts = [cfg.experiment, study, model.name, model.variant, inputs, "augmented" if augmented else "original",
                 f"{cfg.split.name}-{seed}"]
    if bootstrap_index is not None:
        key_parts.append(f"boot{bootstrap_index:03d}")
    if study == SIZE_STUDY:
        key_parts.append(f"frac{train_fraction:.2f}")
    if model.search is not None:
        key_parts.append("searched")  # the refit of a searched row; its search trials extend this key
    spec = {
        "trial_key": "/".join(key_parts),
        "experiment": cfg.experiment,
        "study": study,
        "model": model.name,
        "family": entry.family,
        "builder": entry.builder,  # the spec is self-contained: workers need not share the driver's registry
        "variant": model.variant,
        "representation": representation,
        "feature_set": cfg.features.set if representation == "features" else None,
        "augmented": augmented,
        "params": dict(model.params),
        "train": model.train_config(cfg.train).model_dump(mode="json") if entry.neural else None,
        "weights": model.weights_config(cfg.weights).model_dump(mode="json") if entry.pretrained else None,
        "split": {"name": cfg.split.name, "seed": seed, "test_fraction": cfg.split.test_fraction},
        "train_fraction": float(train_fraction),
        "bootstrap_index": bootstrap_index,
        "evaluate_on": evaluate_on,
        "validation_fraction": cfg.exp4.validation_fraction if cfg.exp4 else cfg.train.validation_fraction,
        "fractions": list(cfg.exp4.fractions) if cfg.exp4 else [],
        "keep_artifact": keeps_artifact(cfg.artifacts, study, train_fraction, bootstrap_index),
    }
    if model.search is not None:  # only searched rows carry the key: other specs (and their hashes) are unchanged
        spec["search"] = model.search.model_dump(mode="json")
    if entry.encoder is not None and model.variant in entry.cached_variants:  # a head on cached embeddings
        spec["embedding"] = {"encoder": entry.encoder, "head_builder": entry.head_builder}
    return spec


def keeps_artifact(policy: str, study: str, train_fraction: float, bootstrap_index: int | None) -> bool:
    """``table_rows`` keeps the models behind the report's rows: every exp1-exp3 model and exp4's
    full-training-set point, not its resamples, smaller fractions or validation-scored choices."""
    if policy != "table_rows":
        return policy == "all"
    if study in (BOOTSTRAP_STUDY, SELECT_STUDY) or bootstrap_index is not None:
        return False
    return train_fraction >= 1.0


def plan_models(cfg: ExperimentConfig) -> list[dict]:
    """Every ``models`` entry on every split seed (exp1, exp2, exp3)."""
    if not cfg.models:
        raise ConfigError(f"{cfg.experiment} needs at least one entry under 'models'.")
    return [trial_spec(cfg, study_name(cfg.experiment, get_model(m.name).representation), m, seed)
            for seed in cfg.split.seeds for m in cfg.models]


def model_spec_for(cfg: ExperimentConfig, model: str) -> ModelSpec:
    """exp4's model as listed under ``models`` (its params and overrides), or plain."""
    for spec in cfg.models:
        if spec.name == model:
            return spec
    return ModelSpec(name=model)


def plan_selection(cfg: ExperimentConfig, candidates: list[str]) -> list[dict]:
    """exp4's optional model choice: each candidate scored on validation clips of the training set."""
    return [trial_spec(cfg, SELECT_STUDY, model_spec_for(cfg, m), seed, evaluate_on="valid")
            for seed in cfg.split.seeds for m in candidates]


def plan_exp4(cfg: ExperimentConfig, model: str | None = None) -> list[dict]:
    """``bootstraps`` resamples plus one trial per training fraction, for every split seed."""
    if cfg.exp4 is None:
        raise ConfigError("exp4 needs an 'exp4' section.")
    spec = model_spec_for(cfg, model or cfg.exp4.model)
    trials = []
    for seed in cfg.split.seeds:
        trials += [trial_spec(cfg, BOOTSTRAP_STUDY, spec, seed, bootstrap_index=b) for b in range(cfg.exp4.bootstraps)]
        trials += [trial_spec(cfg, SIZE_STUDY, spec, seed, train_fraction=f) for f in cfg.exp4.fractions]
    return trials


#: experiment name -> its plan function (exp4's may be given the model chosen on validation clips).
PLANNERS: dict[str, Callable[..., list[dict]]] = {
    "exp1": plan_models,
    "exp2": plan_models,
    "exp3": plan_models,
    "exp4": plan_exp4,
    # searches: rows with a `search:` block become a search plus a refit (raygenre.train.search)
    "search-xgboost": plan_models,
    "search-cnn": plan_models,
    "search-finetune": plan_models,
    "exp5": plan_models,  # pretrained encoders: probe rows on cached embeddings (searched over layer, lr, wd)
}


def plan_experiment(cfg: ExperimentConfig, **kwargs) -> list[dict]:
    """The experiment's trials, checked for unique keys."""
    return check_unique(PLANNERS[cfg.experiment](cfg, **kwargs))


def by_study(trials: list[dict]) -> dict[str, list[dict]]:
    """Trials grouped by study (each study is one Tune run and one records file), in :func:`device_first` order."""
    out: dict[str, list[dict]] = {}
    for t in device_first(trials):
        out.setdefault(t["study"], []).append(t)
    return out


def device_first(trials: list[dict]) -> list[dict]:
    """Networks on mel images or waveforms (the GPU's work) before the CPU-only feature models, the largest
    first (augmented rows, then more epochs), otherwise in plan order: the GPU starts at once and its long
    trials do not start last, behind short CPU trials that other cores could run beside them."""
    def key(t: dict) -> tuple:
        if t["representation"] == "features":
            return (1, 0, 0)
        return (0, not t.get("augmented"), -int((t.get("train") or {}).get("epochs", 0)))
    return sorted(trials, key=key)


def representations_of(trials: list[dict]) -> list[str]:
    return list(dict.fromkeys(t["representation"] for t in trials))


def check_unique(trials: list[dict]) -> list[dict]:
    keys = [t["trial_key"] for t in trials]
    if len(keys) != len(set(keys)):
        dup = sorted({k for k in keys if keys.count(k) > 1})[0]
        raise ConfigError(f"two planned trials share the key {dup}: list each model and variant once.")
    return trials
