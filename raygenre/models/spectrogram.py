"""The spectrogram networks of experiments 1-2 in pure torch (no Ray): custom CNN, CRNN, ImageNet nets.

Every net takes the 128x128x3 mel image as float NCHW, already normalised by :func:`to_model_input`
(``normalization`` says how: ``"imagenet"`` mean/std for AlexNet/VGG16/ResNet18 whatever their weights,
so random-init and pretrained runs see identical inputs; ``"unit"``, just /255, for the custom nets), and
returns logits. Image rows are mel bands with row 0 the *highest* band; columns are time
(:func:`raygenre.data.features.mel_image`).

The study names the custom nets' ingredients (batch norm, conv blocks, max pooling, dropout, an LSTM as
the CRNN's last stage, bidirectional LSTMs tried) but no layers, so these are ours, sized for ~800
training clips (4,800 with augmentation):

``cnn`` (391,466 parameters): four blocks of conv3x3 (no bias: BatchNorm follows) - BatchNorm - ReLU -
max-pool 2, widths 32/64/128/256, then global average pooling, dropout 0.3 and a linear layer. Four
halvings take 128 px to 8 px, so the last block sees most of the image; doubling widths keep the cost per
block even. Global average pooling instead of flatten+dense keeps the head at 2,570 parameters (a
flattened 256x8x8 map would need 164k for 800 clips) and makes the prediction insensitive to where in
the clip a pattern occurs, which is what the time-shift augmentation assumes.

``crnn`` (571,210 parameters), after Choi et al. 2017: four conv blocks (widths 64/128/128/128,
BatchNorm, ELU, dropout 0.1) whose max-pools (2,2), (4,2), (4,2), (4,1) shrink the mel axis (rows, H)
128 -> 1 but time (columns, W) only 128 -> 16; any mel rows left over with other ``pools`` are
max-pooled away. The 16 columns become 16 time steps of 128 features for a 2-layer bidirectional LSTM
(hidden 64); the mean of its outputs over time, dropout 0.3 and a linear layer give the logits. The
recurrent layer is the last learned stage before the classifier, as the study describes, and it runs
along time, never across frequency.

Unknown ``params`` keys, and bad values, raise :class:`ConfigError` naming the key. The ImageNet nets, their
weights and Appendix A's variants are in :mod:`raygenre.models.imagenet`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from raygenre.errors import ConfigError
from raygenre.genres import N_CLASSES
from raygenre.models import imagenet
from raygenre.models.counting import param_counts  # noqa: F401  (re-exported)
from raygenre.models.imagenet import IMAGENET_MODELS, WEIGHT_FILES, FreezePlan

__all__ = ["IMAGENET_MODELS", "SPECTROGRAM_VARIANTS", "WEIGHT_FILES", "SpectrogramNet", "build_spectrogram_model",
           "check_weights", "param_counts", "to_model_input"]

SPECTROGRAM_VARIANTS: dict[str, tuple[str, ...]] = {
    "cnn": ("default",),
    "crnn": ("default",),
    **imagenet.IMAGENET_VARIANTS,
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NORMALIZATIONS = ("imagenet", "unit")


# --------------------------------------------------------------------------------------------------
# params: defaults and checks
# --------------------------------------------------------------------------------------------------

def _positive_int(key: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ConfigError(f"params.{key} must be a positive integer, got {v!r}.")
    return v


def _non_negative_int(key: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ConfigError(f"params.{key} must be an integer >= 0, got {v!r}.")
    return v


def _rate(key: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1:
        raise ConfigError(f"params.{key} must be a number in [0, 1), got {v!r}.")
    return float(v)


def _flag(key: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise ConfigError(f"params.{key} must be true or false, got {v!r}.")
    return v


def _widths(key: str, v: Any) -> tuple[int, ...]:
    if not isinstance(v, (list, tuple)) or not v:
        raise ConfigError(f"params.{key} must be a non-empty list of positive integers, got {v!r}.")
    return tuple(_positive_int(key, w) for w in v)


def _pools(key: str, v: Any) -> tuple[tuple[int, int], ...]:
    ok = isinstance(v, (list, tuple)) and v and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in v)
    if not ok:
        raise ConfigError(f"params.{key} must be a non-empty list of [mel, time] pool sizes, got {v!r}.")
    return tuple((_positive_int(key, p[0]), _positive_int(key, p[1])) for p in v)


def _odd(key: str, v: Any) -> int:
    if _positive_int(key, v) % 2 == 0:
        raise ConfigError(f"params.{key} must be odd (so 'same' padding keeps the size), got {v!r}.")
    return v


def _choice(*options: str) -> Callable[[str, Any], str]:
    def check(key: str, v: Any) -> str:
        if v not in options:
            raise ConfigError(f"params.{key} must be one of {', '.join(options)}, got {v!r}.")
        return v
    return check


_Spec = dict[str, tuple[Any, Callable[[str, Any], Any]]]
PARAM_SPECS: dict[str, _Spec] = {
    "cnn": {"channels": ((32, 64, 128, 256), _widths), "kernel_size": (3, _odd), "dropout": (0.3, _rate)},
    "crnn": {
        "channels": ((64, 128, 128, 128), _widths),
        "pools": (((2, 2), (4, 2), (4, 2), (4, 1)), _pools),
        "kernel_size": (3, _odd),
        "conv_dropout": (0.1, _rate),
        "rnn": ("lstm", _choice("lstm", "gru")),
        "hidden_size": (64, _positive_int),
        "rnn_layers": (2, _positive_int),
        "bidirectional": (True, _flag),
        "readout": ("mean", _choice("mean", "last")),
        "dropout": (0.3, _rate),
    },
    "alexnet": {"train_kept_fc": (False, _flag)},
    "vgg16": {"train_kept_fc": (False, _flag)},
    "resnet18": {"head_epochs": (5, _non_negative_int)},
}


def resolve_params(name: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """``params`` over the model's defaults, every value checked; an unknown key is a ConfigError."""
    spec = PARAM_SPECS[name]
    given = dict(params or {})
    for key in given:
        if key not in spec:
            raise ConfigError(f"unknown params key '{key}' for model {name} (known: {', '.join(spec) or 'none'}).")
    out = {key: check(key, given.get(key, default)) for key, (default, check) in spec.items()}
    if name == "crnn" and len(out["pools"]) != len(out["channels"]):
        raise ConfigError(f"params.pools needs one [mel, time] pair per conv block ({len(out['channels'])}), "
                          f"got {len(out['pools'])}.")
    return out


# --------------------------------------------------------------------------------------------------
# Custom networks
# --------------------------------------------------------------------------------------------------

def conv_block(c_in: int, c_out: int, kernel: int, pool: tuple[int, int], act: nn.Module,
               dropout: float = 0.0) -> nn.Sequential:
    """conv (no bias: BatchNorm's shift replaces it) - BatchNorm - activation - max-pool [- dropout].

    Pools round up (``ceil_mode``): at 128 px nothing changes (every size divides), and a smaller image
    (the quick profile's 64 px) keeps one last row or column instead of pooling it to nothing.
    """
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False),
                               nn.BatchNorm2d(c_out), act, nn.MaxPool2d(pool, ceil_mode=True)]
    if dropout:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class SpectrogramCNN(nn.Module):
    """Conv blocks halving both axes, global average pooling, dropout, linear (module docstring: why)."""

    def __init__(self, channels: Sequence[int], kernel_size: int, dropout: float, n_classes: int):
        super().__init__()
        widths = (3, *channels)
        self.features = nn.Sequential(*(conv_block(a, b, kernel_size, (2, 2), nn.ReLU(inplace=True))
                                        for a, b in zip(widths[:-1], widths[1:])))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(widths[-1], n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(torch.flatten(self.pool(self.features(x)), 1)))


class SpectrogramCRNN(nn.Module):
    """Conv blocks that pool the mel axis (H) away, then a recurrent layer along time (W).

    ``self.rnn`` receives ``(N, T, C)`` with ``T`` = image columns after pooling (16 by default).
    """

    def __init__(self, channels: Sequence[int], pools: Sequence[tuple[int, int]], kernel_size: int,
                 conv_dropout: float, rnn: str, hidden_size: int, rnn_layers: int, bidirectional: bool,
                 readout: str, dropout: float, n_classes: int):
        super().__init__()
        widths = (3, *channels)
        self.convs = nn.Sequential(*(conv_block(a, b, kernel_size, pool, nn.ELU(inplace=True), conv_dropout)
                                     for a, b, pool in zip(widths[:-1], widths[1:], pools)))
        recurrent = nn.LSTM if rnn == "lstm" else nn.GRU
        self.rnn = recurrent(widths[-1], hidden_size, num_layers=rnn_layers, batch_first=True,
                             bidirectional=bidirectional)
        self.readout = readout
        self.directions = 2 if bidirectional else 1
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.directions * hidden_size, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.convs(x)                       # (N, C, H', W'): H' mel rows left, W' time steps
        if maps.shape[2] > 1:
            maps = maps.amax(dim=2, keepdim=True)  # other pools: max over the remaining mel rows
        steps = maps.squeeze(2).transpose(1, 2)    # (N, W', C): one step per time column
        out, state = self.rnn(steps)
        if self.readout == "mean":
            summary = out.mean(dim=1)
        else:  # the final state of each direction: forward after the last step, backward after the first
            h_n = state[0] if isinstance(state, tuple) else state
            summary = torch.cat(list(h_n[-self.directions:]), dim=1)
        return self.fc(self.dropout(summary))


# --------------------------------------------------------------------------------------------------
# The wrapper every caller sees
# --------------------------------------------------------------------------------------------------

class _FrozenTrunk(nn.Sequential):
    """The frozen front of a net: stays in eval mode whatever ``train()`` asks (deterministic, cacheable)."""

    def train(self, mode: bool = True) -> _FrozenTrunk:
        return super().train(False)


class SpectrogramNet(nn.Module):
    """One spectrogram model: ``forward(x)`` maps normalised float (N, 3, H, W) to logits (N, n_classes).

    Attributes: ``name``, ``variant``, ``params`` (resolved), ``weights`` (a description of where the
    weights came from), ``normalization`` (for :func:`to_model_input`), ``net`` (the wrapped module),
    ``head_epochs`` (ResNet18 ``last_then_all``: epochs that train only ``fc``; else None) and
    ``phase_change_epochs`` (epochs at which :meth:`set_epoch` changes what trains).

    Freezing: frozen parameters have ``requires_grad=False``, and frozen submodules are kept in eval
    mode even after ``model.train()``. For ResNet18's first phase this keeps the trunk's BatchNorm
    running statistics fixed at their pretrained values: "train only the last layer" then means the
    features the head learns on do not drift under it (in train mode BatchNorm would re-estimate them
    from 800 spectrograms while no gradient adapts the layers around it). For AlexNet/VGG16 (no
    BatchNorm) it switches off the frozen part's Dropout, so the frozen trunk is a deterministic feature
    extractor whose activations can be computed once (:meth:`frozen_trunk`).

    Build the optimiser over all ``parameters()``: frozen ones get no gradient and torch's optimisers
    skip them. A ``DistributedDataParallel`` wrapper fixes its parameter set when built, so rebuild it at
    each epoch of ``phase_change_epochs``.
    """

    def __init__(self, net: nn.Module, name: str, variant: str, params: dict[str, Any], normalization: str,
                 weights: str = "random", plan: FreezePlan | None = None):
        super().__init__()
        self.net = net
        self.name = name
        self.variant = variant
        self.params = params
        self.normalization = normalization
        self.weights = weights
        self._plan = plan or FreezePlan()
        self.head_epochs = self._plan.head_epochs
        self.phase_change_epochs: tuple[int, ...] = (self.head_epochs,) if self.head_epochs else ()
        self._frozen: tuple[nn.Module, ...] = ()
        self.set_epoch(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def model_input(self, batch: dict[str, torch.Tensor], channels_last: bool = False) -> torch.Tensor:
        """A batch of uint8 ``image`` rows -> this net's normalised float input (:func:`to_model_input`)."""
        return to_model_input(batch["image"], self.normalization, channels_last)

    def frozen_modules(self, epoch: int) -> tuple[nn.Module, ...]:
        """The submodules frozen during ``epoch`` (0-based)."""
        plan = self._plan
        early = plan.early if plan.head_epochs is not None and epoch < plan.head_epochs else ()
        return (*plan.always, *early)

    def set_epoch(self, epoch: int) -> None:
        """Apply the freezing of ``epoch`` (0-based): ``requires_grad`` and the frozen parts' eval mode."""
        self._frozen = self.frozen_modules(epoch)
        self.requires_grad_(True)
        for module in self._frozen:
            module.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> SpectrogramNet:
        """``nn.Module.train``, except that frozen submodules stay in eval mode (see the class docstring)."""
        super().train(mode)
        for module in self._frozen:
            module.eval()
        return self

    def frozen_trunk(self) -> nn.Module | None:
        """The always-frozen front (conv features, pooling, flatten, kept frozen FC layers), or None.

        In eval mode ``head()(frozen_trunk()(x))`` equals ``forward(x)`` exactly, so a trainer may
        compute the trunk once per image (under ``torch.no_grad()``) and train the head on the cached
        activations. Given for AlexNet/VGG16 ``fc6``/``fc7``/``fc8``; with ``train_kept_fc`` the trunk is
        the conv part alone and the kept FC layers move to the head. The returned module stays in eval
        mode whatever ``train()`` asks; it shares its parameters with this model.
        """
        return _FrozenTrunk(*self._plan.trunk) if self._plan.trunk else None

    def head(self) -> nn.Module | None:
        """What :meth:`frozen_trunk` leaves: the trained layers (with any Dropout before the new one)."""
        return nn.Sequential(*self._plan.head) if self._plan.trunk else None

    def extra_repr(self) -> str:
        return f"name={self.name}, variant={self.variant}, weights={self.weights}"


def to_model_input(images_uint8_nhwc: torch.Tensor, normalization: str, channels_last: bool = False) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float32 (N, 3, H, W) on the same device: /255, then ImageNet mean/std if asked.

    Not ``weights.transforms()``: that resizes to 256 and crops 224, trimming the spectrogram's edges.
    The permuted uint8 tensor is already channels-last in memory; ``channels_last=False`` makes it
    ordinary NCHW-contiguous.
    """
    x = images_uint8_nhwc
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected uint8 images of shape (N, H, W, 3), got {x.dtype} {tuple(x.shape)}")
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    x = x.permute(0, 3, 1, 2).float().div_(255.0)
    if normalization == "imagenet":
        mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
        x = x.sub_(mean).div_(std)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    return x.contiguous(memory_format=memory_format)


# --------------------------------------------------------------------------------------------------
# Building and weights
# --------------------------------------------------------------------------------------------------

def _check_name(name: str, variant: str | None = None) -> None:
    if name not in SPECTROGRAM_VARIANTS:
        raise ConfigError(f"unknown spectrogram model '{name}' (known: {', '.join(SPECTROGRAM_VARIANTS)}).")
    if variant is not None and variant not in SPECTROGRAM_VARIANTS[name]:
        raise ConfigError(f"unknown variant '{variant}' for model {name} "
                          f"(known: {', '.join(SPECTROGRAM_VARIANTS[name])}).")


def _resolve_weights(name: str, weights: str, weights_dir: str | None) -> tuple[str, str | None]:
    """(description, file to load or None for random init)."""
    _check_name(name)
    if weights == "random":
        return "random", None
    if weights == "pretrained":
        if name not in IMAGENET_MODELS:
            raise ConfigError(f"weights 'pretrained' has no meaning for {name}, which has no published "
                              f"weights: use 'random' or a path to a state dict of this net.")
        path = imagenet.resolve_pretrained(name, weights_dir)
        return f"pretrained:{imagenet.default_weights(name).name} ({path})", path
    return f"file:{imagenet.check_path(weights)}", weights


def check_weights(name: str, weights: str, weights_dir: str | None = None, params: dict | None = None) -> str:
    """Resolve ``weights`` without building the net (downloading if missing and possible); describe them.

    Returns ``"random"``, ``"pretrained:IMAGENET1K_V1 (<path>)"`` or ``"file:<path>"``. Meant as the
    driver's pre-flight, so a missing file fails in one sentence before any cluster work starts.
    """
    return _resolve_weights(name, weights, weights_dir)[0]


def build_spectrogram_model(name: str, variant: str, *, params: dict[str, Any] | None = None,
                            weights: str = "random", weights_dir: str | None = None,
                            n_classes: int = N_CLASSES) -> SpectrogramNet:
    """Build ``name``/``variant`` with its freezing for epoch 0 applied.

    ``weights``: ``"random"``, ``"pretrained"`` (ImageNet nets: torchvision's ``DEFAULT`` file from
    ``weights_dir`` or ``torch.hub.get_dir()/checkpoints``, downloaded there if possible) or a path to a
    ``.pth`` state dict: torchvision's 1000-class state dict for the ImageNet nets, a state dict of the
    wrapped ``net`` for ``cnn``/``crnn``. The ImageNet weights go into the 1000-class net before its head
    is replaced.
    """
    _check_name(name, variant)
    resolved = resolve_params(name, params)
    description, path = _resolve_weights(name, weights, weights_dir)
    state = imagenet.load_state_dict_file(path) if path else None
    if name in IMAGENET_MODELS:
        net, plan = imagenet.build_imagenet(name, variant, resolved, state, path, n_classes)
        return SpectrogramNet(net, name, variant, resolved, "imagenet", description, plan)
    custom: nn.Module
    if name == "cnn":
        custom = SpectrogramCNN(n_classes=n_classes, **resolved)
    else:
        custom = SpectrogramCRNN(n_classes=n_classes, **resolved)
    if state is not None:
        imagenet.load_into(custom, state, path, f"the {name} built from these params")
    return SpectrogramNet(custom, name, variant, resolved, "unit", description)
