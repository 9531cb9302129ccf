"""The spectrogram family's runner: a Tune trial that drives one Ray Train ``TorchTrainer``.

Called by :func:`raygenre.train.trial.run_trial` inside the trial (which reserves almost no CPU: the
trainer's workers hold the cluster's CPUs or GPUs, see ``raygenre.train.tune_runner``). Steps:

1. Rows: the trial's split (:func:`~raygenre.train.trial.select_rows`) and, with ``selection: valid``,
   a validation set: ``fault_filtered``'s list, or a stratified carve of the training clips. The test
   clips never choose an epoch.
2. Read the mel rows with pyarrow: originals of the training, validation and evaluation clips, plus
   the augmented rows of the training clips only (``parent_id``) when the trial is augmented.
3. Ray Datasets of uint8 images and int labels, materialized (small: at most ~240 MB for GTZAN x6).
4. A ``TorchTrainer`` running :func:`raygenre.train.torch_loop.train_func`, its run named after the
   trial key and settings under ``settings["train_storage"]``: a re-launched trial (``--resume`` after a
   kill, or a Tune retry) finds the run's checkpoint snapshot there and continues from its last epoch.
   With ``train.workers: 0`` the same loop runs in this trial's process instead (no worker group; see
   :mod:`raygenre.train.train_session`), its latest checkpoint kept in ``<run>/checkpoint``.
5. Predictions on the evaluation clips come back in the final checkpoint, written by rank 0.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections import Counter
from typing import Any

import numpy as np
import pyarrow.fs as pafs

from raygenre.config import config_hash
from raygenre.data.shards import load_table, mel_array, waveform_array
from raygenre.genres import GENRE_INDEX, GENRES
from raygenre.stats import classification_metrics

#: CPUs per Train worker: one, less the 0.01 its trial reserves, so that N trials of W one-CPU workers fit
#: in N x W CPUs (with whole CPUs a 2-CPU cluster runs one 1-worker trainer at a time: 2 x 0.01 + 2 > 2).
WORKER_CPUS = 0.99
BLOCK_ROWS = 256         # rows per Ray Data block (~12 MB of 128x128x3 uint8)
TRAIN_POLL_S = "0.25"    # Train's controller poll; its 2 s default makes every per-epoch report wait ~2 s
#: Worker-group start attempts (60 s each, Train's default) before the trainer gives up: Train's default is to
#: retry forever, so a trial whose workers can never be placed (resources held elsewhere) would hang the sweep.
START_ATTEMPTS = 10
POLL_ENV = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"


def split_rows(spec: dict, ids: list[str]) -> tuple[list[str], list[str], list[str]]:
    """(training, validation, evaluation) clip ids; validation is empty unless ``selection: valid``."""
    from raygenre.data.splits import make_split, paper_split
    from raygenre.train.trial import select_rows

    train_ids, eval_ids = select_rows(spec, ids)
    train_cfg = spec["train"]
    if train_cfg["selection"] != "valid":
        return train_ids, [], eval_ids
    split = spec["split"]
    if split["name"] == "fault_filtered" and spec.get("evaluate_on") != "valid":
        valid = make_split(ids, split["name"], split["seed"], split["test_fraction"]).valid
        if valid:
            return train_ids, list(valid), eval_ids
    inner = paper_split(sorted(set(train_ids)), split["seed"], train_cfg["validation_fraction"])
    keep = set(inner.train)
    return [i for i in train_ids if i in keep], list(inner.test), eval_ids


#: representation -> (shard column, array reader, dataset column the model's ``model_input`` reads)
ROW_FORMATS = {"mel": ("mel", mel_array, "image"), "waveform": ("waveform", waveform_array, "wave")}


def read_rows(shard_dir: str, ids: list[str], augmented_parents: list[str] | None = None,
              representation: str = "mel") -> tuple[np.ndarray, list[int]]:
    """Compact rows (uint8 images (N, H, W, 3), or int16 waves (N, samples)) and label indices of ``ids``
    in order (repeats allowed), followed by the augmented rows of ``augmented_parents`` (each parent's
    rows as often as it is listed)."""
    column, as_array, _ = ROW_FORMATS[representation]
    table = load_table(shard_dir, representation, columns=["clip_id", "label", column], ids=sorted(set(ids)))
    images = as_array(table)
    where = {cid: i for i, cid in enumerate(table.column("clip_id").to_pylist())}
    labels = table.column("label").to_pylist()
    missing = [cid for cid in ids if cid not in where]
    if missing:
        raise KeyError(f"mel shards in {shard_dir} lack clip {missing[0]}")
    rows = [where[cid] for cid in ids]
    out_images, out_labels = [images[rows]], [GENRE_INDEX[labels[r]] for r in rows]
    if augmented_parents:
        times = Counter(augmented_parents)
        aug = load_table(shard_dir, f"{representation}_augmented", columns=["parent_id", "label", column],
                         ids=sorted(times), id_column="parent_id")
        aug_rows = [i for i, parent in enumerate(aug.column("parent_id").to_pylist()) for _ in range(times[parent])]
        aug_labels = aug.column("label").to_pylist()
        out_images.append(as_array(aug)[aug_rows])
        out_labels += [GENRE_INDEX[aug_labels[r]] for r in aug_rows]
    return np.concatenate(out_images), out_labels


def to_dataset(images: np.ndarray, labels: list[int], *, with_index: bool = False, column: str = "image"):
    """A materialized Ray Dataset with ``column`` (the compact rows), ``label`` (int64) and optionally ``index``.

    ``from_items`` builds the blocks in this process; ``from_arrow``/``from_numpy`` would run a metadata
    task per block that needs a free CPU, which trainers of concurrent trials may all hold.
    """
    import ray.data

    # Datasets carry the context they were made in: no progress bars for these few in-memory blocks,
    # neither here nor on the Train workers that iterate them every epoch.
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    # Rows in this order every epoch: the loop's window shuffle (raygenre.train.device_data) is then seeded and
    # the same as drawing the rows on the device once; without it Ray Data may hand blocks out of order.
    context.execution_options.preserve_order = True
    items = [{column: images[i], "label": int(labels[i]), **({"index": i} if with_index else {})}
             for i in range(len(labels))]
    return ray.data.from_items(items, override_num_blocks=max(1, -(-len(items) // BLOCK_ROWS)))


def train_storage(settings: dict) -> str:
    """Where trials keep their training state: the run's ``train/`` folder (a temporary one outside a sweep)."""
    return settings.get("train_storage") or os.path.join(tempfile.gettempdir(), "raygenre-train")


def train_run_name(spec: dict, settings: dict) -> str:
    """Path-safe trial key plus a hash of what training depends on: same trial and settings -> same run
    (so a re-launch resumes it), changed settings under the same run directory -> a fresh run."""
    keys = ("trial_key", "params", "train", "weights", "augmented", "split", "evaluate_on", "train_fraction",
            "bootstrap_index")
    body = {k: spec.get(k) for k in keys}
    body["data_hash"] = (settings.get("run") or {}).get("data_hash")
    return f"{re.sub(r'[^A-Za-z0-9._-]+', '_', spec['trial_key'])}-{config_hash(body, 8)}"


def resolve_gpus(setting: float | str, share: float = 1.0) -> float:
    """GPUs per worker: ``auto`` is ``share`` (``train.gpu_share``) when the cluster has a GPU, else 0."""
    import ray

    if setting == "auto":
        return float(share) if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
    return float(setting)


def _fit(spec: dict, settings: dict, datasets: dict, loop_config: dict) -> Any:
    """Build and run the trainer; returns its Result."""
    import ray.train
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    from raygenre.train.torch_loop import train_func

    os.environ.setdefault(POLL_ENV, TRAIN_POLL_S)  # propagated by Train to its controller and workers
    train = spec["train"]
    gpus = resolve_gpus(train["gpus_per_worker"], train.get("gpu_share", 1.0))
    per_worker = {"CPU": WORKER_CPUS, **({"GPU": gpus} if gpus else {})}
    storage = train_storage(settings)
    trainer = TorchTrainer(
        train_func,
        train_loop_config=loop_config,
        scaling_config=ray.train.ScalingConfig(num_workers=int(train["workers"]), use_gpu=gpus > 0,
                                               resources_per_worker=per_worker),
        run_config=ray.train.RunConfig(
            # a search trial: rank 0's per-epoch reports reach Tune (and its scheduler) the Train V2 way
            callbacks=[TuneReportCallback()] if settings.get("progress") else None,
            storage_path=storage, name=train_run_name(spec, settings),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
            failure_config=ray.train.FailureConfig(controller_failure_limit=START_ATTEMPTS)),
        datasets=datasets,
        # Only the training rows are split across workers (none for one worker: a split starts a coordinator
        # actor, seconds per trial on a small machine); rank 0 reads validation and evaluation rows whole.
        dataset_config=ray.train.DataConfig(datasets_to_split=["train"] if int(train["workers"]) > 1 else []),
    )
    return trainer.fit()


def _train_in_trial(spec: dict, settings: dict, datasets: dict, loop_config: dict, device: str) -> str:
    """``train.workers: 0``: the same loop in this trial's process; returns the final checkpoint's folder."""
    import torch

    from raygenre.train.torch_loop import train_loop
    from raygenre.train.train_session import InTrialSession

    storage = train_storage(settings)
    session = InTrialSession(datasets, os.path.join(storage, train_run_name(spec, settings), "checkpoint"),
                             torch.device(device))
    progress = settings.get("progress")
    if progress is not None:  # a search trial: each epoch's validation scores go to Tune as they come
        keep = session.report

        def report(metrics: dict, folder: str | None) -> None:
            keep(metrics, folder)
            if "step" in metrics:
                progress(metrics)

        session.report = report
    cpus = max(1, round(float(settings.get("cpus_per_trial") or 1)))
    train_loop({**loop_config, "cpus_per_worker": cpus}, session)
    folder = session.latest()
    if folder is None:
        raise RuntimeError(f"the training of {spec['trial_key']} finished without a checkpoint")
    return folder


def run_spectrogram(spec: dict, mel_inputs: dict, settings: dict, *, device: str = "cpu") -> dict:
    """A spectrogram trial (the spine's runner for that family)."""
    return run_torch_trial(spec, mel_inputs, settings, device=device)


def run_torch_trial(spec: dict, rep_inputs: dict, settings: dict, *, device: str = "cpu") -> dict:
    """A trial trained end to end by the torch loop, as numbered steps; returns what the record is built from.

    Spectrogram nets read ``mel`` rows; Wav2Vec2's ``progressive`` variant reads ``waveform`` rows.
    """
    seed = int(spec["split"]["seed"])
    representation = spec["representation"]
    column = ROW_FORMATS[representation][2]
    timings: dict[str, float] = {}
    # 1. Rows: split, optional validation carve (never test clips), augmented rows of training clips only.
    train_ids, valid_ids, eval_ids = split_rows(spec, list(rep_inputs["ids"]))
    # 2. Read the rows with pyarrow; shuffle the training rows once so every block mixes genres.
    t0 = time.perf_counter()
    shard_dir = rep_inputs["shard_dir"]
    train_x, train_y = read_rows(shard_dir, train_ids, train_ids if spec.get("augmented") else None, representation)
    order = np.random.default_rng(seed).permutation(len(train_y))
    train_x, train_y = train_x[order], [train_y[i] for i in order]
    eval_x, eval_y = read_rows(shard_dir, eval_ids, representation=representation)
    timings["read_s"] = time.perf_counter() - t0
    train_mb = train_x.nbytes / 2**20  # with train.device_data_mb: moved to the device once, or streamed
    # 3. Materialized Ray Datasets (compact rows on the wire; conversion happens on the worker's device).
    t0 = time.perf_counter()
    datasets = {"train": to_dataset(train_x, train_y, column=column),
                "eval": to_dataset(eval_x, eval_y, with_index=True, column=column)}
    if valid_ids:
        datasets["valid"] = to_dataset(*read_rows(shard_dir, valid_ids, representation=representation), column=column)
    timings["datasets_s"] = time.perf_counter() - t0
    del train_x, eval_x
    # 4. The trainer (or, with workers: 0, the same loop in this trial): one report per epoch, checkpoints by
    #    train.checkpoint (raygenre.train.checkpoint_policy); a re-launch continues from the last one.
    weights = spec.get("weights") or {"source": "random", "dir": None}
    build = {"name": spec["model"], "family": spec["family"], "variant": spec["variant"],
             "params": dict(spec.get("params") or {})}
    loop_config = {"model": build, "weights": {k: weights.get(k) for k in ("source", "dir", "offline")},
                   "train": spec["train"], "seed": seed, "has_valid": bool(valid_ids),
                   "cpus_per_worker": max(1, round(WORKER_CPUS)), "cache_trunk": True,
                   "report_eval": settings.get("progress") is not None, "n_train": len(train_y),
                   "train_mb": train_mb}
    t0 = time.perf_counter()
    if int(spec["train"]["workers"]) == 0:
        checkpoint_path = _train_in_trial(spec, settings, datasets, loop_config, device)
    else:
        result = _fit(spec, settings, datasets, loop_config)
        if result.checkpoint is None:
            raise RuntimeError(f"the trainer of {spec['trial_key']} finished without a checkpoint")
        checkpoint_path = (result.checkpoint.path if isinstance(result.checkpoint.filesystem, pafs.LocalFileSystem)
                           else result.checkpoint.to_directory())  # from object storage: a local copy
    timings["fit_s"] = time.perf_counter() - t0
    # 5. Predictions and history from the final checkpoint (rank 0 wrote them).
    with open(os.path.join(checkpoint_path, "predictions.json")) as f:
        final = json.load(f)
    by_index = dict(zip(final["index"], final["pred"]))
    y_pred = [GENRES[by_index[i]] for i in range(len(eval_ids))]
    y_true = [GENRES[k] for k in eval_y]
    timings["trunk_cache_s"] = float(final.get("cache_s", 0.0))
    timings.update({k: float(final[k]) for k in ("checkpoint_s", "checkpoint_bytes", "checkpoint_writes",
                                                  "data_once_s") if final.get(k) is not None})
    return {
        "metrics": classification_metrics(y_true, y_pred),
        "test": {"ids": list(eval_ids), "y_true": y_true, "y_pred": y_pred, "set": spec.get("evaluate_on", "test")},
        "n_train": len(train_y),
        "params": final["params"],
        "history": final["history"],
        "weights": final["weights"] if spec.get("weights") is not None else None,
        "selection": spec["train"]["selection"],
        "selected_epoch": final.get("selected_epoch") or final["history"][-1]["epoch"],
        "fitted": {"state_dict_path": os.path.join(checkpoint_path, "model.safetensors"), "build": build,
                   "seed": seed, "weights_source": weights["source"], "weights_dir": weights.get("dir"),
                   "contains": final["contains"]},
        "timings": {k: round(v, 4) for k, v in timings.items()},
    }
