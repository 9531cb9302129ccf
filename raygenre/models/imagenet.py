"""The study's three ImageNet networks (AlexNet, VGG16, ResNet18): weights, head surgery, freezing plan.

Weights come from torchvision's enums (``DEFAULT`` is ``IMAGENET1K_V1`` for all three) and live where
torchvision keeps them, ``torch.hub.get_dir()/checkpoints/<file>`` (``$TORCH_HOME/hub/checkpoints``).
The file is looked for in ``weights.dir`` first, then there, and only then downloaded (with torch.hub's
hash check), so a machine without network works once the file is copied in. Files are read with
``torch.load(..., weights_only=True)``: plain tensor state dicts only, never arbitrary pickles.

Appendix A's variants ("layer k is made the output"): the named fully connected layer is replaced by a
new, randomly initialised ``Linear(in, n_classes)`` and the classifier is cut after it. The net is always
built with 1000 classes and its weights loaded first, then the head is swapped (torchvision refuses
``num_classes=10`` together with weights).

=================  ================================================  ==================================
variant            AlexNet / VGG16                                   trained
=================  ================================================  ==================================
``fc6``            classifier -> [Dropout,] Linear(9216|25088, 10)   the new layer
``fc7``            keep fc6, replace fc7                             the new layer (+ fc6 if
                                                                     ``train_kept_fc``)
``fc8``            keep fc6, fc7, replace fc8                        as fc7
``finetune_all``   as fc8                                            everything
=================  ================================================  ==================================

ResNet18 replaces ``fc`` (512 -> 10); ``last_then_all`` trains only ``fc`` for ``head_epochs`` epochs
(default 5), then everything (Appendix A's "fine-tune only last layer for some epochs, then unfreeze");
``finetune_all`` trains everything from the start. The study does not say whether the kept pretrained
FC layers of fc7/fc8 were trained; "using some subset of the original models as a feature extractor"
suggests not, so ``train_kept_fc`` defaults to False.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from raygenre.errors import WeightsError

IMAGENET_MODELS = ("alexnet", "vgg16", "resnet18")
IMAGENET_VARIANTS: dict[str, tuple[str, ...]] = {
    "alexnet": ("fc6", "fc7", "fc8", "finetune_all"),
    "vgg16": ("fc6", "fc7", "fc8", "finetune_all"),
    "resnet18": ("last_then_all", "finetune_all"),
}
#: torchvision's file names for ``IMAGENET1K_V1`` (= ``DEFAULT``); a test checks them against the enums.
WEIGHT_FILES = {
    "alexnet": "alexnet-owt-7be5be79.pth",
    "vgg16": "vgg16-397923af.pth",
    "resnet18": "resnet18-f37072fd.pth",
}
WEIGHTS_PATH_KEY = "weights.source"
WEIGHTS_DIR_KEY = "weights.dir"
#: Index in torchvision's ``classifier`` of the layer each variant makes the output layer.
_OUTPUT_INDEX = {
    "alexnet": {"fc6": 1, "fc7": 4, "fc8": 6, "finetune_all": 6},
    "vgg16": {"fc6": 0, "fc7": 3, "fc8": 6, "finetune_all": 6},
}
_HASH_PREFIX = re.compile(r"-([a-f0-9]+)\.")  # torch.hub's convention: <name>-<sha256 prefix>.<ext>


# --------------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------------

def default_weights(name: str) -> Any:
    """torchvision's ``DEFAULT`` weights enum member of ``name`` (``IMAGENET1K_V1``)."""
    from torchvision.models import get_model_weights

    return get_model_weights(name).DEFAULT


def checkpoint_dir() -> str:
    """Where torchvision keeps downloaded weights: ``torch.hub.get_dir()/checkpoints``."""
    return os.path.join(torch.hub.get_dir(), "checkpoints")


def _missing(name: str, weights_dir: str | None, reason: str) -> WeightsError:
    file = WEIGHT_FILES[name]
    also = f" or {weights_dir} ({WEIGHTS_DIR_KEY})" if weights_dir else ""
    return WeightsError(
        f"the ImageNet weights of {name} are not available ({reason}): copy {file} into {checkpoint_dir()}"
        f"{also}, or set {WEIGHTS_PATH_KEY} to a local copy of {file} or {WEIGHTS_DIR_KEY} to the folder "
        f"that holds it.")


def resolve_pretrained(name: str, weights_dir: str | None = None) -> str:
    """Path of ``name``'s ImageNet weights: ``weights_dir``, then the hub folder, then a download there.

    A download is torch.hub's (temporary file, sha256-prefix check, then a rename), so a failed one leaves
    nothing behind; any ``OSError`` (``URLError`` included) becomes a one-sentence :class:`WeightsError`.
    """
    file = WEIGHT_FILES[name]
    for folder in (weights_dir, checkpoint_dir()):
        if folder and os.path.isfile(os.path.join(folder, file)):
            return os.path.join(folder, file)
    target = os.path.join(checkpoint_dir(), file)
    url = default_weights(name).url
    match = _HASH_PREFIX.search(file)
    try:
        os.makedirs(checkpoint_dir(), exist_ok=True)
        torch.hub.download_url_to_file(url, target, match.group(1) if match else None, progress=False)
    except OSError as exc:
        raise _missing(name, weights_dir, f"not found, and the download failed with {type(exc).__name__}") from exc
    except RuntimeError as exc:  # torch.hub's hash mismatch
        raise _missing(name, weights_dir, "the downloaded file failed its hash check") from exc
    return target


def check_path(path: str) -> str:
    """``path`` itself when it is a file; else a one-sentence :class:`WeightsError`."""
    if not os.path.isfile(path):
        raise WeightsError(f"the weights file {path} given as {WEIGHTS_PATH_KEY} does not exist or is not a file.")
    return path


def load_state_dict_file(path: str) -> dict[str, torch.Tensor]:
    """A plain tensor state dict from ``path`` (``weights_only=True``); anything else is a WeightsError."""
    try:
        state = torch.load(check_path(path), map_location="cpu", weights_only=True)
    except WeightsError:
        raise
    except Exception as exc:  # truncated zip, a pickle of custom classes, not a torch file at all
        raise WeightsError(f"the weights file {path} could not be read as a tensor state dict "
                           f"({type(exc).__name__}).") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(f"the weights file {path} holds a {type(state).__name__}, not a state dict.")
    return state


def load_into(module: nn.Module, state: dict[str, torch.Tensor], path: str, what: str) -> None:
    """``module.load_state_dict(state)`` (strict); a key or shape mismatch is a one-sentence WeightsError."""
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        lines = str(exc).strip().splitlines()  # "Error(s) in loading ...:" then one line per problem
        detail = lines[1].split(":")[0].strip() if len(lines) > 1 else "keys or shapes differ"
        raise WeightsError(f"the weights file {path} does not fit {what} ({detail}).") from exc


# --------------------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------------------

@dataclass
class FreezePlan:
    """Which submodules are frozen when, and how the net splits for cached-activation training.

    ``always``: frozen in every epoch; ``early``: frozen too while ``epoch < head_epochs``. ``trunk`` and
    ``head``: modules with ``head(trunk(x)) == net(x)`` where the trunk is exactly the always-frozen part
    (empty when nothing is always frozen).
    """

    always: tuple[nn.Module, ...] = ()
    early: tuple[nn.Module, ...] = ()
    head_epochs: int | None = None
    trunk: tuple[nn.Module, ...] = ()
    head: tuple[nn.Module, ...] = ()


def build_imagenet(name: str, variant: str, params: dict[str, Any], state: dict[str, torch.Tensor] | None,
                   state_path: str | None, n_classes: int) -> tuple[nn.Module, FreezePlan]:
    """torchvision's 1000-class ``name``, ``state`` loaded into it, then the variant's head and freezing."""
    from torchvision.models import get_model

    net = get_model(name, weights=None)
    if state is not None:
        load_into(net, state, state_path or "?", f"torchvision's 1000-class {name}")
    if name == "resnet18":
        return net, _resnet_plan(net, variant, params, n_classes)
    return net, _classifier_plan(net, name, variant, params, n_classes)


def _resnet_plan(net: nn.Module, variant: str, params: dict[str, Any], n_classes: int) -> FreezePlan:
    net.fc = nn.Linear(net.fc.in_features, n_classes)
    if variant == "finetune_all":
        return FreezePlan()
    early = tuple(module for child_name, module in net.named_children() if child_name != "fc")
    return FreezePlan(early=early, head_epochs=int(params["head_epochs"]))


def _classifier_plan(net: nn.Module, name: str, variant: str, params: dict[str, Any],
                     n_classes: int) -> FreezePlan:
    """Cut AlexNet's / VGG16's classifier after the new output layer and decide what is frozen."""
    index = _OUTPUT_INDEX[name][variant]
    old = list(net.classifier)
    kept = old[:index]
    net.classifier = nn.Sequential(*kept, nn.Linear(old[index].in_features, n_classes))
    if variant == "finetune_all":
        return FreezePlan()
    split = len(kept)
    while split > 0 and isinstance(kept[split - 1], nn.Dropout):
        split -= 1  # a Dropout right before the new layer belongs to the trained head
    if params["train_kept_fc"]:
        split = 0
    stem = (net.features, net.avgpool, nn.Flatten(1))
    cls = net.classifier
    return FreezePlan(always=(net.features, *cls[:split]), trunk=(*stem, *cls[:split]), head=tuple(cls[split:]))
