"""Every model raygenre can run, in one table: what it reads, its variants, its resources, its builder.

Config validation, planning, trial dispatch and resource requests all read :data:`MODELS`; no other
list of model names exists. Adding a model is one :func:`register` call plus the module that builds
it. Nothing here imports Ray, torch or scikit-learn: builders are ``"module:function"`` strings
imported on first use, so the config layer can validate names without loading any framework.

Families and what their runner does with them:

==============  ================  =====================================================================
family          representation    runner
==============  ================  =====================================================================
``tabular``     ``features``      one Tune function trial: fit a scikit-learn style classifier on rows
``spectrogram`` ``mel``           a Tune trial that drives a Ray Train ``TorchTrainer`` (deep models)
``waveform``    ``waveform``      Wav2Vec2: embedding cache + head trial, or end-to-end ``TorchTrainer``
==============  ================  =====================================================================
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

Family = Literal["tabular", "spectrogram", "waveform"]
Representation = Literal["features", "mel", "waveform"]
FAMILY_REPRESENTATION: dict[str, str] = {"tabular": "features", "spectrogram": "mel", "waveform": "waveform"}


@dataclass(frozen=True)
class ModelEntry:
    """One model. ``variants[0]`` is the variant used when a config names none.

    ``neural`` models train with the config's ``train:`` block and ask for a GPU per worker where
    the cluster has one (``gpus: "auto"``); the others use CPUs only.
    """

    name: str
    family: Family
    variants: tuple[str, ...]
    builder: str  # "package.module:function"
    neural: bool = False
    cpus: float = 1.0
    gpus: float | Literal["auto"] = 0.0
    pretrained: bool = False  # reads the config's ``weights:`` block
    preflight: str | None = None  # "module:function(name, source, dir) -> str": weights checked on the driver
    description: str = ""

    @property
    def representation(self) -> str:
        return FAMILY_REPRESENTATION[self.family]

    @property
    def default_variant(self) -> str:
        return self.variants[0]

    def build(self, *args: Any, **kwargs: Any) -> Any:
        """Import the builder on first use and call it."""
        return resolve_builder(self.builder)(*args, **kwargs)


MODELS: dict[str, ModelEntry] = {}


def register(entry: ModelEntry) -> ModelEntry:
    """Add a model to the table (a second entry under one name is a programming error)."""
    if entry.name in MODELS:
        raise ValueError(f"model '{entry.name}' is registered twice.")
    if not entry.variants:
        raise ValueError(f"model '{entry.name}' needs at least one variant.")
    if entry.family not in FAMILY_REPRESENTATION:
        raise ValueError(f"model '{entry.name}' has unknown family '{entry.family}'.")
    MODELS[entry.name] = entry
    return entry


def unregister(name: str) -> None:
    """Remove a model (tests that register a toy model clean up with this)."""
    MODELS.pop(name, None)


def resolve_builder(path: str) -> Callable[..., Any]:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def get_model(name: str) -> ModelEntry:
    """The entry for ``name``; an unknown name is one sentence listing the known ones."""
    from raygenre.errors import ConfigError

    if name not in MODELS:
        raise ConfigError(f"unknown model '{name}': choose one of {', '.join(sorted(MODELS))}.")
    return MODELS[name]


def model_names(family: str | None = None) -> tuple[str, ...]:
    return tuple(n for n, e in MODELS.items() if family is None or e.family == family)


def resolve_variant(name: str, variant: str | None) -> str:
    """``variant`` checked against the model's list (``None``: the model's default)."""
    from raygenre.errors import ConfigError

    entry = get_model(name)
    if variant is None:
        return entry.default_variant
    if variant not in entry.variants:
        raise ConfigError(f"model '{name}' has no variant '{variant}': choose one of {', '.join(entry.variants)}.")
    return variant


# --- the study's models ------------------------------------------------------------------------

_TABULAR = "raygenre.models.tabular:build_classifier"
for _name, _neural, _text in (
    ("knn", False, "k-nearest neighbours, scikit-learn defaults"),
    ("random_forest", False, "random forest, scikit-learn defaults"),
    ("xgboost", False, "XGBoost, library defaults"),
    ("xgboost_tuned", False, "XGBoost with the study's Appendix C parameters"),
    ("mlp", True, "Appendix B dense network (207,802 parameters)"),
    ("lstm", True, "Appendix B LSTM network (305,994 parameters)"),
):
    register(ModelEntry(_name, "tabular", ("default",), _TABULAR, neural=_neural,
                        gpus="auto" if _neural else 0.0, description=_text))

_SPECTROGRAM = "raygenre.models.spectrogram:build_spectrogram_model"
_WEIGHTS_CHECK = "raygenre.models.spectrogram:check_weights"
for _name, _variants, _pretrained, _text in (
    ("cnn", ("default",), False, "custom CNN on mel images (our layers; the study names only the ingredients)"),
    ("crnn", ("default",), False, "CNN pooling away the mel axis, LSTM along time"),
    ("alexnet", ("finetune_all", "fc6", "fc7", "fc8"), True, "torchvision AlexNet, Appendix A variants"),
    ("vgg16", ("finetune_all", "fc6", "fc7", "fc8"), True, "torchvision VGG16, Appendix A variants"),
    ("resnet18", ("finetune_all", "last_then_all"), True, "torchvision ResNet18, Appendix A variants"),
):
    register(ModelEntry(_name, "spectrogram", _variants, _SPECTROGRAM, neural=True, gpus="auto",
                        pretrained=_pretrained, preflight=_WEIGHTS_CHECK if _pretrained else None,
                        description=_text))

register(ModelEntry("wav2vec2", "waveform", ("frozen", "progressive", "layer_probe"),
                    "raygenre.models.waveform:build_from_config", neural=True, gpus="auto", pretrained=True,
                    preflight="raygenre.models.waveform:preflight",
                    description="Wav2Vec2 (facebook/wav2vec2-base) with the study's heads; layer_probe beyond it"))
