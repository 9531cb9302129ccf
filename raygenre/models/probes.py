"""Heads trained on cached frozen-encoder embeddings (pure torch): the probes of experiment 5 and Wav2Vec2's
cached rows of experiment 3. One builder, :func:`cached_head`, serves training and ``predict``.

Cached features are ``([W,] layers, hidden)`` per clip. Variants:

===============  ==========================================================================================
``linear``       logistic regression: standardised features of one layer -> Linear(hidden, 10)
``mlp``          standardised features of one layer -> Linear(hidden, ``params.hidden`` = 512), ReLU,
                 Dropout(``params.dropout`` = 0.2) -> Linear(512, 10) (MARBLE's MLP probe shape)
``frozen``       the study's Wav2Vec2 head on the last layer (:func:`raygenre.models.waveform.build_head`)
``layer_probe``  a learned softmax weighting of all layers, then that head
===============  ==========================================================================================

``params.layer`` picks the layer (Python indexing, default ``-1``, the last): the search or grid over it is
how a layer is chosen on validation clips. Standardisation statistics come from the training rows only
(:meth:`ProbeHead.fit_inputs`) and are buffers of the head, so a kept probe applies them in ``predict``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from raygenre.errors import ConfigError
from raygenre.genres import N_CLASSES
from raygenre.models.registry import PROBE_ONLY_PARAMS  # noqa: F401  (the head's params, not the encoder's)

PROBE_PARAMS = ("backbone", "layer", "hidden", "dropout", "window_seconds")


class ProbeHead(nn.Module):
    """One layer's features, standardised with training statistics, into a linear or MLP classifier."""

    def __init__(self, variant: str, n_layers: int, hidden: int, layer: int, width: int, dropout: float) -> None:
        super().__init__()
        if not -n_layers <= layer < n_layers:
            raise ConfigError(f"params key 'layer' is {layer}, but this encoder's cache holds {n_layers} layers "
                              f"(0 to {n_layers - 1}, or -1 for the last).")
        self.layer = layer
        self.register_buffer("mean", torch.zeros(hidden))
        self.register_buffer("scale", torch.ones(hidden))
        self.net = (nn.Linear(hidden, N_CLASSES) if variant == "linear" else nn.Sequential(
            nn.Linear(hidden, width), nn.ReLU(), nn.Dropout(dropout), nn.Linear(width, N_CLASSES)))

    def select(self, features: torch.Tensor) -> torch.Tensor:
        return features[..., self.layer, :]

    @torch.no_grad()
    def fit_inputs(self, features: torch.Tensor) -> None:
        """Standardisation from the training rows (every window counts as a row)."""
        x = self.select(features).reshape(-1, self.mean.shape[0]).float()
        self.mean.copy_(x.mean(dim=0))
        self.scale.copy_(x.std(dim=0, unbiased=False).clamp_min(1e-6))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net((self.select(features) - self.mean) / self.scale)


class _LastLayer(nn.Module):
    """The study's ``frozen`` head reads the last layer of the cached states."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features[..., -1, :].contiguous())


class _WindowMean(nn.Module):
    """A head applied to each window's features; the clip's logits are the mean over its windows."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, w = x.shape[:2]
        return self.head(x.flatten(0, 1)).reshape(n, w, -1).mean(dim=1)

    def fit_inputs(self, features: torch.Tensor) -> None:
        if hasattr(self.head, "fit_inputs"):
            self.head.fit_inputs(features.flatten(0, 1))


def _number(params: dict, key: str, default: Any, kind: type) -> Any:
    value = params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and int(value) != value):
        raise ConfigError(f"params key '{key}' must be a{'n integer' if kind is int else ' number'}, not {value!r}.")
    return kind(value)


def cached_head(variant: str, feature_shape: tuple[int, ...], windows: bool,
                params: dict[str, Any] | None = None) -> nn.Module:
    """The head of ``variant`` on cached features of ``feature_shape`` (``[W,] layers, hidden``)."""
    params = dict(params or {})
    layers, hidden = int(feature_shape[-2]), int(feature_shape[-1])
    if variant in ("frozen", "layer_probe"):
        from raygenre.models.waveform import build_head

        head = build_head(variant, hidden, n_layers=layers)
        head = _LastLayer(head) if variant == "frozen" else head
    elif variant in ("linear", "mlp"):
        unknown = sorted(set(params) - set(PROBE_PARAMS) - {"chunk_seconds", "sample_rate"})
        if unknown:
            raise ConfigError(f"unknown params key '{unknown[0]}' for a {variant} probe: it takes "
                              f"{', '.join(PROBE_PARAMS)}.")
        dropout = _number(params, "dropout", 0.2, float)
        if not 0 <= dropout < 1:
            raise ConfigError(f"params key 'dropout' must be in [0, 1), not {dropout}.")
        head = ProbeHead(variant, layers, hidden, _number(params, "layer", -1, int),
                         _number(params, "hidden", 512, int), dropout)
    else:
        raise ConfigError(f"unknown cached-embedding variant '{variant}': choose linear, mlp, frozen or layer_probe.")
    return _WindowMean(head) if windows else head
