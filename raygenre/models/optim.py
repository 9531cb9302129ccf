"""Optimiser and learning-rate schedule from the config's ``train:`` block, for every torch model.

One place, so the MLP/LSTM and the deep models read ``optimizer``, ``learning_rate``,
``weight_decay`` and ``schedule`` the same way. Schedules step once per epoch.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from raygenre.errors import ConfigError

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "step", "plateau")


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
                   ) -> torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau:
    """Per-epoch schedule: ``constant``; ``cosine`` to zero over ``epochs``; ``step`` x0.1 at 1/2 and 3/4;
    ``plateau`` x0.1 after 2 epochs without a lower training loss (step it with :func:`step_scheduler`).

    ``plateau`` is for Wav2Vec2's progressive row: the study names "an adaptive learning rate scheduler"
    without saying which, and it has no validation split, so the epoch's training loss is what it watches.
    """
    if name == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.1, patience=2)
    if name == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _epoch: 1.0)
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs))
    if name == "step":
        milestones = sorted({max(1, epochs // 2), max(1, (3 * epochs) // 4)})
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
    raise ConfigError(f"unknown schedule '{name}' (train.schedule): choose one of {', '.join(SCHEDULES)}.")


def step_scheduler(scheduler: torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau,
                   epoch_loss: float) -> None:
    """End-of-epoch step: ``plateau`` watches the epoch's loss, the others count epochs."""
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(epoch_loss)
    else:
        scheduler.step()
