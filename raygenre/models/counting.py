"""Parameter counts, the one definition every model family reports."""

from __future__ import annotations

from torch import nn


def param_counts(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts now (``requires_grad``); buffers such as BatchNorm running
    statistics are not counted."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable
