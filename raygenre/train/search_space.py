"""A searched row's space as Tune sees it, and what one sampled configuration does to a trial spec.

Pure helpers shared by the driver (:mod:`raygenre.train.search`) and the trials
(:mod:`raygenre.train.search_progress`): a configuration is a flat mapping of the row's YAML keys
(``params.max_depth``, ``train.learning_rate``) to values, applied to a copy of the spec.

Random search samples every configuration up front on the driver (Tune's own domains, one seeded
generator), so a resumed search knows which sample indices are still to run and never redraws one.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

from raygenre.errors import ConfigError
from raygenre.search_config import SearchConfig


def tune_domain(kind: str, args: list):
    """The Tune distribution of one space entry (``grid`` is expanded by :func:`sample_configs`)."""
    from ray import tune

    if kind == "choice":
        return tune.choice(args)
    if kind == "uniform":
        return tune.uniform(*args)
    if kind == "loguniform":
        return tune.loguniform(*args)
    if kind == "randint":
        return tune.randint(*args)
    if kind == "quniform":
        return tune.quniform(*args)
    raise ValueError(f"no single Tune domain for '{kind}'")


def normalize(search: SearchConfig, config: dict[str, Any]) -> dict[str, Any]:
    """Plain JSON values: numpy scalars made Python, quniform on integer bounds made int (rounds, depths)."""
    kinds = search.kinds()
    out = {}
    for key, value in config.items():
        value = value.item() if hasattr(value, "item") else value
        kind, args = kinds[key]
        if kind == "quniform" and all(isinstance(a, int) for a in args):
            value = int(round(value))
        out[key] = value
    return out


def sample_configs(search: SearchConfig) -> list[dict[str, Any]]:
    """Every configuration of a random search, in index order: ``num_samples`` draws per grid combination."""
    import numpy as np

    kinds = search.kinds()
    grids = {k: args for k, (kind, args) in kinds.items() if kind == "grid"}
    rng = np.random.default_rng(search.seed)
    out = []
    for _ in range(search.num_samples):
        for combo in itertools.product(*grids.values()) if grids else [()]:
            config = dict(zip(grids, combo))
            for key, (kind, args) in kinds.items():
                if kind != "grid":
                    config[key] = tune_domain(kind, args).sample(random_state=rng)
            out.append(normalize(search, {k: config[k] for k in kinds}))
    return out


def planned_count(search: SearchConfig) -> int:
    """How many search trials the row runs (random search: samples x grid combinations)."""
    combos = 1
    for kind, args in search.kinds().values():
        if kind == "grid":
            combos *= len(args)
    return search.num_samples * combos


def apply_config(spec: dict, config: dict[str, Any]) -> dict:
    """A copy of ``spec`` with each ``params.*`` / ``train.*`` value of ``config`` set."""
    out = copy.deepcopy(spec)
    for key, value in config.items():
        block, name = key.split(".", 1)
        if block == "train":
            if out.get("train") is None:
                raise ConfigError(f"search key {key}: model '{spec['model']}' has no train block (not a network).")
            out["train"][name] = value
        else:
            out["params"] = {**(out.get("params") or {}), name: value}
    return out


def budget_of(spec: dict) -> tuple[int, str]:
    """(full budget, unit) of one trial: its epochs for a network, boosting rounds for XGBoost, else one fit."""
    from raygenre.models.registry import get_model

    if get_model(spec["model"]).neural and spec.get("train"):
        return int(spec["train"]["epochs"]), "epoch"
    from raygenre.train.tabular_runner import XGBOOST_MODELS

    if spec["model"] in XGBOOST_MODELS:
        from raygenre.train.xgb import boosting_rounds

        return boosting_rounds(spec["model"], spec.get("params") or {}), "round"
    return 1, "fit"


def _upper(kind: str, args: list) -> Any:
    if kind in ("choice", "grid"):
        return max(a for a in args if isinstance(a, int | float))
    if kind == "randint":
        return args[1] - 1
    return args[1]


def max_budget(spec: dict, search: SearchConfig) -> int:
    """The largest budget any configuration can have: ASHA's ``max_t``."""
    highs = {}
    for key, (kind, args) in search.kinds().items():
        try:
            highs[key] = _upper(kind, args)
        except ValueError:  # a choice of strings: never a budget
            continue
    candidates = [budget_of(spec)[0]]
    for key in ("train.epochs", "params.n_estimators"):
        if key in highs:
            candidates.append(budget_of(apply_config(spec, {key: int(highs[key])}))[0])
    return max(candidates)


def kfold_rows(spec: dict, ids: list[str], search: SearchConfig) -> list[tuple[list[str], list[str]]]:
    """``validation: kfold``: (fit ids, held-out ids) of each stratified fold of the split's training clips.

    Only the training clips are folded (the test clips never enter); the folds are drawn from the split seed
    and the search seed, so every trial of a search sees the same folds.
    """
    from sklearn.model_selection import StratifiedKFold

    from raygenre.data.gtzan import genre_of
    from raygenre.train.trial import select_rows

    train = sorted(set(select_rows({**spec, "evaluate_on": "test"}, ids)[0]))
    folds = StratifiedKFold(search.folds, shuffle=True, random_state=int(spec["split"]["seed"]) * 1000 + search.seed)
    return [([train[i] for i in fit], [train[i] for i in held])
            for fit, held in folds.split(train, [genre_of(i) for i in train])]


def evaluation_ids(spec: dict, ids: list[str], search: SearchConfig) -> list[str]:
    """The clips a search trial's predictions are for, in report order (never a test clip)."""
    from raygenre.train.trial import select_rows

    if search.validation == "kfold":
        return [i for _, held in kfold_rows(spec, ids, search) for i in held]
    return list(select_rows(spec, ids)[1])


def trial_base(spec: dict) -> dict:
    """The spec a search trial starts from: scored on validation clips, the last epoch, nothing kept.

    ``train.selection`` is ``last`` here: the search's own validation clips score every epoch, and a
    second carve inside them would only shrink the training rows.
    """
    base = copy.deepcopy(spec)
    base.update(evaluate_on="valid", keep_artifact=False)
    if base.get("train"):
        base["train"].update(selection="last", patience=None)
    return base
