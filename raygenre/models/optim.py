"""Optimiser and learning-rate schedule from the config's ``train:`` block, for every torch model.

One place, so the MLP/LSTM and the deep models read ``optimizer``, ``learning_rate``,
``weight_decay`` and ``schedule`` the same way. Schedules step once per epoch.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from raygenre.errors import ConfigError

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "step")


def make_optimizer(params: Iterable, name: str, learning_rate: float, weight_decay: float = 0.0
                   ) -> torch.optim.Optimizer:
    """Adam, AdamW or SGD with Nesterov-free momentum 0.9 (the usual fine-tuning choice)."""
    kwargs = {"lr": learning_rate, "weight_decay": weight_decay}
    if name == "adam":
        return torch.optim.Adam(params, **kwargs)
    if name == "adamw":
        return torch.optim.AdamW(params, **kwargs)
    if name == "sgd":
        return torch.optim.SGD(params, momentum=0.9, **kwargs)
    raise ConfigError(f"unknown optimizer '{name}' (train.optimizer): choose one of {', '.join(OPTIMIZERS)}.")


def make_scheduler(optimizer: torch.optim.Optimizer, name: str, epochs: int
                   ) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-epoch schedule: ``constant``; ``cosine`` to zero over ``epochs``; ``step`` x0.1 at 1/2 and 3/4."""
    if name == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _epoch: 1.0)
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs))
    if name == "step":
        milestones = sorted({max(1, epochs // 2), max(1, (3 * epochs) // 4)})
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
    raise ConfigError(f"unknown schedule '{name}' (train.schedule): choose one of {', '.join(SCHEDULES)}.")
