"""The torch loop on in-memory rows with a local checkpoint folder: no Ray, no pyarrow, no config layer.

What a trial with ``train.workers: 0`` runs (:func:`raygenre.train.torch_loop.train_loop` through
:class:`~raygenre.train.train_session.InTrialSession`), fed by :class:`~raygenre.train.device_data.LocalRows`
instead of Ray Datasets, so the real loop, not a copy of it, can be timed on a machine that has only torch
(``bench/paper_time.py``) and tested quickly.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import torch

from raygenre.train.device_data import LocalRows
from raygenre.train.torch_loop import PREDICTIONS_FILE, train_loop
from raygenre.train.train_session import InTrialSession

#: a spec's ``train`` block with the repository's defaults for the spectrogram nets (exp1.yaml at paper settings)
PAPER_TRAIN = {"optimizer": "adamw", "learning_rate": 1e-3, "weight_decay": 1e-4, "schedule": "cosine",
               "epochs": 30, "batch_size": 32, "precision": "auto", "workers": 0, "gpus_per_worker": "auto",
               "gpu_share": 1.0, "selection": "last", "validation_fraction": 0.2, "patience": None,
               "checkpoint": {"every_s": 60.0, "max_overhead": 0.05}, "device_data_mb": 1024.0}


def run_local(model: dict, train: dict, rows: tuple[np.ndarray, np.ndarray], eval_rows: tuple[np.ndarray, np.ndarray],
              folder: str, *, seed: int = 0, device: str | torch.device = "cpu", column: str = "image",
              weights: dict | None = None, threads: int = 1, session_hook: Any = None) -> dict[str, Any]:
    """Train ``model`` (a build description: name, family, variant, params) on ``rows`` (compact inputs,
    labels) and predict ``eval_rows``; the latest checkpoint lives in ``folder`` (a second call resumes from
    it). Returns the final ``predictions.json`` payload."""
    x, y = rows
    ex, ey = eval_rows
    datasets = {"train": LocalRows({column: x, "label": np.asarray(y, dtype=np.int64)}),
                "eval": LocalRows({column: ex, "label": np.asarray(ey, dtype=np.int64),
                                   "index": np.arange(len(ey), dtype=np.int64)})}
    session = InTrialSession(datasets, folder, torch.device(device))
    if session_hook is not None:
        session_hook(session)
    config = {"model": model, "weights": weights or {"source": "random", "dir": None, "offline": None},
              "train": train, "seed": seed, "has_valid": False, "cpus_per_worker": threads, "cache_trunk": True,
              "report_eval": False, "n_train": len(y), "train_mb": x.nbytes / 2**20}
    train_loop(config, session)
    with open(os.path.join(session.latest() or folder, PREDICTIONS_FILE)) as f:
        return json.load(f)
