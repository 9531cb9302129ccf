"""The distributed XGBoost backend: Ray Train's ``XGBoostTrainer`` for the feature models.

The default backend (``xgboost.backend: in_trial``) needs nothing from this module: the trial fits
``raygenre.models.tabular``'s ``XGBClassifier`` pipeline in its own process, the right choice for
GTZAN's 1000-row table. This backend takes the same scikit-learn style parameters
(``TUNED_XGBOOST_PARAMS`` and friends), translates them once with :func:`to_native_params` and
trains with ``xgboost.train`` on several workers; it returns int labels. Trees need no feature
scaling, so it does not scale.

``fit_predict_distributed``
    Ray Train's ``XGBoostTrainer`` (Ray 2.60, Train V2): ``num_workers`` actors of one CPU each. In
    2.60 the backend (``ray.train.v2.xgboost.XGBoostConfig``) starts a ``RabitTracker`` on the
    controller and wraps the worker function in ``xgboost.collective.CommunicatorContext`` itself, so
    the worker function only builds a DMatrix from its rows and calls ``xgboost.train``; the
    histograms are merged by the collective. Rank 0 saves the booster into a checkpoint and every rank
    calls ``ray.train.report`` exactly once, at the end (each report blocks for up to
    ``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S``, default 2 s; Ray propagates that variable from the driver's
    environment to the controller and workers, so tests set it to 0.2).

    The table reaches the workers as a Ray Dataset already in the object store (``from_pandas``): no
    Ray Data task then needs a CPU while the workers hold them all (a ``repartition`` there deadlocks
    a 2-CPU cluster). Ray Data does not split it, because ``streaming_split(equal=True)``, which Ray
    Train uses, drops up to ``num_workers - 1`` rows to equalise shards; each worker keeps rows
    ``rank::num_workers`` of the table instead, so every training row is used exactly once.

Launching the distributed trainer from inside a Tune function trial (pattern B of RAY_NOTES)
    What Ray 2.60 does, read from ``ray/train/v2/api/data_parallel_trainer.py``,
    ``ray/train/v2/_internal/execution/worker_group/worker_group.py`` and
    ``ray/air/execution/resources/placement_group.py``:

    * Tune runs each trial in a placement group with ``placement_group_capture_child_tasks=True``.
      The Train controller is an actor with ``num_cpus=0`` pinned to the driver's node, so it fits in
      the trial's bundle whatever the trial reserved.
    * The training workers do **not** use the trial's reservation: the worker group creates a new
      placement group of ``num_workers`` bundles of ``resources_per_worker`` (here ``{"CPU": 1}``) and
      waits for it. So the cluster needs ``num_workers`` CPUs free *beyond* what the running trials
      hold. Reserve little for the trial itself (e.g. ``tune.with_resources(fn, {"cpu": 0.01})`` -- the
      trial only waits on the trainer) and cap concurrency with ``max_concurrent_trials`` so that
      ``trials x num_workers`` CPUs exist; otherwise the placement group never becomes ready and the
      run stalls (checked: a 0.01-CPU trial with 2 workers on a 2-CPU cluster never starts; with 1
      worker it finishes). Tune refuses a trial of 0 CPUs ("empty head"), hence the small amount.
      :func:`train_distributed` refuses up front when the cluster can never hold the workers beside
      the calling trial. A ``tune.PlacementGroupFactory([{"CPU": 0.01}] + [{"CPU": 1}] * n)`` would
      make Tune count the workers' CPUs, but (from the source) Train still creates its own placement
      group for the workers rather than using the trial's bundles, so it would double the demand.
    * ``ray.train.report`` must not be called by the trial itself (it raises in a Tune session); the
      trial reports with ``tune.report``. Pass ``callbacks=[TuneReportCallback()]`` only if the
      worker's metrics should flow to Tune; this module returns predictions and the trial reports them.
    * ``storage_path`` must be reachable from every node (``s3://...`` or a shared file system) on a
      multi-node cluster, because rank 0 uploads the checkpoint there and the caller reads it back.
      Left ``None``, a temporary local directory is used and deleted afterwards (one machine only).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from typing import Any

import numpy as np
import xgboost

N_CLASSES = 10
DEFAULT_NUM_BOOST_ROUND = 100  # XGBClassifier's n_estimators default

#: scikit-learn (XGBClassifier) name -> native learner name.
SKLEARN_TO_NATIVE = {
    "learning_rate": "eta",
    "reg_lambda": "lambda",
    "reg_alpha": "alpha",
    "random_state": "seed",
    "n_jobs": "nthread",
}

#: XGBClassifier arguments that steer the wrapper, not the learner; meaningless here.
_WRAPPER_ONLY = {"importance_type", "kwargs", "missing", "enable_categorical", "early_stopping_rounds",
                 "callbacks", "feature_types", "feature_weights"}

MODEL_FILENAME = "model.ubj"  # the name RayTrainReportCallback.get_model expects


def to_native_params(params: dict[str, Any] | None, *, num_class: int = N_CLASSES) -> tuple[dict, int]:
    """``(native_params, num_boost_round)`` equivalent to ``XGBClassifier(**params)`` on ``num_class``
    classes: ``n_estimators`` becomes the round count (default 100), scikit-learn names become native
    ones (:data:`SKLEARN_TO_NATIVE`), ``None`` values are dropped (library default), and the objective
    is ``multi:softprob`` (or ``multi:softmax`` if asked for) with ``num_class`` classes.
    Native names (``eta``, ``lambda``, ``max_depth`` ...) pass through unchanged.

    One deliberate difference: ``num_class`` is fixed (10 genres) where XGBClassifier counts the labels
    present, so a training set that lacks a genre still trains (the genre is then never predicted).
    The backends below set ``seed`` and ``nthread`` from their own arguments, over ``random_state`` /
    ``n_jobs`` in ``params``.
    """
    params = dict(params or {})
    wrapper_only = sorted(k for k in params if k in _WRAPPER_ONLY and params[k] is not None)
    if wrapper_only:
        raise ValueError(f"XGBoost parameter(s) {wrapper_only} only apply to the scikit-learn wrapper.")
    rounds = params.pop("n_estimators", None)
    num_boost_round = DEFAULT_NUM_BOOST_ROUND if rounds is None else int(rounds)
    native: dict[str, Any] = {}
    for key, value in params.items():
        if value is None or key in _WRAPPER_ONLY:
            continue
        name = SKLEARN_TO_NATIVE.get(key, key)
        if name in native:
            raise ValueError(f"XGBoost parameter '{name}' is given twice (as '{key}' and another alias).")
        native[name] = value
    if native.get("objective") not in (None, "multi:softprob", "multi:softmax"):
        raise ValueError(f"objective {native['objective']!r} is not a multi-class objective.")
    native["objective"] = native.get("objective") or "multi:softprob"
    native["num_class"] = num_class
    return native, num_boost_round


def boosting_rounds(model: str, params: dict[str, Any]) -> int:
    """The rounds a feature model boosts: ``n_estimators`` of its params, else Appendix C's for
    ``xgboost_tuned`` and the library default for ``xgboost`` (a search's budget per trial)."""
    from raygenre.models.tabular import TUNED_XGBOOST_PARAMS

    base = TUNED_XGBOOST_PARAMS if model == "xgboost_tuned" else {}
    rounds = {**base, **params}.get("n_estimators")
    return DEFAULT_NUM_BOOST_ROUND if rounds is None else int(rounds)


def _check_labels(y: np.ndarray, num_class: int) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or (y.size and (y.min() < 0 or y.max() >= num_class)):
        raise ValueError(f"labels must be a 1-d array of integers in 0..{num_class - 1}.")
    return y.astype(np.int32)


def _labels_from(booster: xgboost.Booster, X_test: np.ndarray, nthread: int) -> np.ndarray:
    scores = booster.predict(xgboost.DMatrix(np.asarray(X_test, dtype=np.float32), nthread=nthread))
    return (scores if scores.ndim == 1 else np.argmax(scores, axis=1)).astype(np.int64)


def _worker_loop(config: dict) -> None:
    """Runs on every Ray Train worker, inside Ray's xgboost CommunicatorContext."""
    import ray.train

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    table = ray.train.get_dataset_shard("train").materialize().to_pandas()
    shard = table.iloc[rank::world]  # this worker's rows: every world-th row from its rank on
    dtrain = xgboost.DMatrix(shard[config["features"]].to_numpy(dtype=np.float32),
                             label=shard["label"].to_numpy(dtype=np.int32), nthread=config["params"]["nthread"])
    booster = xgboost.train(config["params"], dtrain, num_boost_round=config["num_boost_round"])
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = None
        if rank == 0:
            booster.save_model(os.path.join(tmp, MODEL_FILENAME))
            checkpoint = ray.train.Checkpoint.from_directory(tmp)
        ray.train.report({"rounds": booster.num_boosted_rounds(), "train_rows": len(shard)},
                         checkpoint=checkpoint)


def _check_worker_capacity(num_workers: int) -> None:
    """Fail fast instead of waiting forever for a placement group the cluster can never grant."""
    import ray

    if not ray.is_initialized():
        raise RuntimeError("the distributed XGBoost backend runs inside a Ray session (a sweep trial).")
    try:  # the autoscaler's ceiling where there is one (what Ray Train itself checks against)
        from ray._private.state import state

        ceiling = (state.get_max_resources_from_cluster_config() or {}).get("CPU")
    except Exception:  # private API: fall back to what the cluster has now
        ceiling = None
    total = ceiling if ceiling else ray.cluster_resources().get("CPU", 0)
    held = 0.0
    group = ray.util.get_current_placement_group()
    if group is not None:  # inside a Tune trial: its own reservation is not available to the workers
        held = sum(bundle.get("CPU", 0) for bundle in group.bundle_specs)
    if num_workers + held > total + 1e-9:
        where = f" beside the {held:g} CPU(s) the calling trial holds" if held else ""
        raise ValueError(f"distributed XGBoost needs {num_workers} CPU(s) for its workers{where}, but the "
                         f"cluster has {total:g}: lower xgboost.workers, reserve less CPU for the trial, "
                         "or use the in_trial backend.")


def train_distributed(X_train, y_train, params: dict | None, *, num_workers: int, seed: int,
                      num_boost_round: int | None = None, storage_path: str | None = None,
                      num_class: int = N_CLASSES) -> xgboost.Booster:
    """The booster ``fit_predict_distributed`` predicts with (see the module docstring)."""
    import pandas as pd
    import ray
    import ray.data
    import ray.train
    from ray.train.xgboost import RayTrainReportCallback, XGBoostTrainer

    native, rounds = to_native_params(params, num_class=num_class)
    native.update(seed=seed, nthread=1)  # one CPU per worker
    if num_boost_round is not None:
        rounds = int(num_boost_round)
    X_train = np.asarray(X_train, dtype=np.float32)
    y_train = _check_labels(y_train, num_class)
    _check_worker_capacity(num_workers)
    if X_train.shape[0] < num_workers:
        raise ValueError(f"{X_train.shape[0]} training rows cannot be split between {num_workers} workers.")
    features = [f"f{i}" for i in range(X_train.shape[1])]
    frame = pd.DataFrame(X_train, columns=features)
    frame["label"] = y_train
    # Already in the object store: no Ray Data task needs a CPU the training workers hold (a
    # ``repartition`` here deadlocks a 2-CPU cluster), and the workers take their rows themselves.
    dataset = ray.data.from_pandas(frame)

    temporary = storage_path is None
    storage = tempfile.mkdtemp(prefix="raygenre-xgb-") if temporary else storage_path
    try:
        trainer = XGBoostTrainer(
            _worker_loop,
            train_loop_config={"params": native, "num_boost_round": rounds, "features": features},
            scaling_config=ray.train.ScalingConfig(num_workers=num_workers, use_gpu=False,
                                                   resources_per_worker={"CPU": 1}),
            run_config=ray.train.RunConfig(storage_path=storage, name=f"xgb-{uuid.uuid4().hex[:12]}"),
            datasets={"train": dataset},
            # Not split by Ray Data: its streaming_split(equal=True) truncates up to num_workers - 1
            # rows to equalise the shards, and a bootstrap resample must be trained on whole.
            dataset_config=ray.train.DataConfig(datasets_to_split=[]),
        )
        result = trainer.fit()
        if result.checkpoint is None:
            raise RuntimeError("the distributed XGBoost run finished without a checkpoint from rank 0.")
        return RayTrainReportCallback.get_model(result.checkpoint, filename=MODEL_FILENAME)
    finally:
        if temporary:
            shutil.rmtree(storage, ignore_errors=True)


def fit_predict_distributed(X_train, y_train, X_test, params: dict | None, *, num_workers: int, seed: int,
                            num_boost_round: int | None = None,
                            storage_path: str | None = None) -> np.ndarray:
    """Train with ``XGBoostTrainer`` on ``num_workers`` one-CPU workers; predicted labels of ``X_test``.

    ``num_boost_round`` overrides ``params["n_estimators"]``. Called from a Tune function trial, the
    trial must leave ``num_workers`` CPUs free for the workers' own placement group (module docstring).
    """
    booster = train_distributed(X_train, y_train, params, num_workers=num_workers, seed=seed,
                                num_boost_round=num_boost_round, storage_path=storage_path)
    return _labels_from(booster, X_test, nthread=1)
