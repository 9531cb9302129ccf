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
``waveform``    ``waveform``      a frozen encoder's embedding cache + head trial, or end-to-end ``TorchTrainer``
==============  ================  =====================================================================

Frozen audio encoders (Wav2Vec2, AST, MERT, CLAP) are :class:`EncoderEntry` rows of :data:`ENCODERS`:
builder, sample rate, windowing, pooling and layers. The embedding stage (``raygenre.data.embeddings``)
asks this table, never a model module by name. :func:`register_encoder` also registers the encoder's
probe model (variants ``linear`` and ``mlp``), so adding an encoder is one call plus its module.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

Family = Literal["tabular", "spectrogram", "waveform"]
Representation = Literal["features", "mel", "waveform"]
FAMILY_REPRESENTATION: dict[str, str] = {"tabular": "features", "spectrogram": "mel", "waveform": "waveform"}


PROBE_HEADS = "raygenre.models.probes:cached_head"
PROBE_VARIANTS = ("linear", "mlp")
PROBE_ONLY_PARAMS = ("layer", "hidden", "dropout")  # a probe head's params: not the encoder's, not in the cache key


@dataclass(frozen=True)
class ModelEntry:
    """One model. ``variants[0]`` is the variant used when a config names none.

    ``neural`` models train with the config's ``train:`` block; with ``gpus: "auto"`` (the networks on
    images and waveforms) they ask for ``train.gpu_share`` of a GPU per worker where the cluster has one.
    ``gpus`` is what ``train.gpus_per_worker: auto`` means for the model; a number there overrides it.
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
    encoder: str | None = None  # an ENCODERS name: these variants train a head on its cached embeddings
    cached_variants: tuple[str, ...] = ()
    head_builder: str = PROBE_HEADS  # "module:function(variant, feature_shape, windows, params) -> nn.Module"

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


def resolve_builder(path: str | Callable[..., Any]) -> Callable[..., Any]:
    if callable(path):
        return path
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
    # The feature nets (58 inputs, <= 1,000 rows, batch 32) train on a CPU core even on a GPU node: their
    # steps are kernel-launch-bound on a GPU, and a share they held would be taken from the networks on
    # images and waveforms, which then run beside them (raygenre.train.lanes). train.gpus_per_worker: 1
    # still puts them on a GPU.
    register(ModelEntry(_name, "tabular", ("default",), _TABULAR, neural=_neural, gpus=0.0, description=_text))

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



# --- frozen audio encoders (experiment 5, and Wav2Vec2's cached rows of experiment 3) -----------

@dataclass(frozen=True)
class EncoderEntry:
    """A frozen encoder the embedding stage can run.

    ``builder(params, weights) -> encoder`` returns an object with ``sample_rate``, ``embed(wave)`` (float
    (B, T) at ``sample_rate`` -> (B, [W,] layers, hidden)) and ``facts`` (weights, revision, parameters);
    ``settings(params, weights) -> dict`` says, without loading weights, what its embeddings depend on
    (id, revision, windowing, pooling, layers): the cache key. ``window_seconds: None`` is the whole clip.
    """

    name: str
    builder: str | Callable[..., Any]
    settings: str | Callable[..., Any]
    default_id: str
    sample_rate: int
    window_seconds: float | None
    hop_seconds: float | None
    pooling: str
    layers: str
    description: str = ""


ENCODERS: dict[str, EncoderEntry] = {}


def register_encoder(entry: EncoderEntry, model: ModelEntry | None = None) -> EncoderEntry:
    """Add an encoder, and its probe model (``linear``/``mlp`` heads on its cached embeddings) unless
    ``model`` is given (Wav2Vec2 keeps the study's variants beside the probes)."""
    if entry.name in ENCODERS:
        raise ValueError(f"encoder '{entry.name}' is registered twice.")
    register(model or ModelEntry(entry.name, "waveform", PROBE_VARIANTS, PROBE_HEADS, neural=True, gpus="auto",
                                 pretrained=True, preflight="raygenre.models.encoders:preflight",
                                 description=entry.description, encoder=entry.name, cached_variants=PROBE_VARIANTS))
    ENCODERS[entry.name] = entry
    return entry


def unregister_encoder(name: str) -> None:
    ENCODERS.pop(name, None)
    unregister(name)


def get_encoder(name: str) -> EncoderEntry:
    from raygenre.errors import ConfigError

    if name not in ENCODERS:
        raise ConfigError(f"unknown encoder '{name}': choose one of {', '.join(sorted(ENCODERS))}.")
    return ENCODERS[name]


def cached_embedding_of(spec: dict) -> dict | None:
    """``{"encoder", "head_builder"}`` when ``spec``'s variant trains a head on cached embeddings, else None."""
    entry = get_model(spec["model"])
    if entry.encoder is None or spec.get("variant") not in entry.cached_variants:
        return None
    return {"encoder": entry.encoder, "head_builder": entry.head_builder}


_ENC = "raygenre.models.encoders"
register_encoder(
    EncoderEntry("wav2vec2", f"{_ENC}.wav2vec2:build", f"{_ENC}.wav2vec2:settings", "facebook/wav2vec2-base",
                 16_000, None, None, "mean over frames per layer (per window with chunk_seconds)", "all",
                 "Wav2Vec2 base (speech), the study's backbone"),
    ModelEntry("wav2vec2", "waveform", ("frozen", "progressive", "layer_probe", *PROBE_VARIANTS),
               "raygenre.models.waveform:build_from_config", neural=True, gpus="auto", pretrained=True,
               preflight="raygenre.models.waveform:preflight", encoder="wav2vec2",
               cached_variants=("frozen", "layer_probe", *PROBE_VARIANTS),
               description="Wav2Vec2 (facebook/wav2vec2-base), the study's heads; layer_probe and probes beyond it"))
register_encoder(EncoderEntry(
    "ast", f"{_ENC}.ast:build", f"{_ENC}.ast:settings", "MIT/ast-finetuned-audioset-10-10-0.4593", 16_000,
    10.24, 10.24, "mean over tokens per layer, mean over windows", "all",
    "Audio Spectrogram Transformer (AudioSet), ASTModel"))
register_encoder(EncoderEntry(
    "mert", f"{_ENC}.mert:build", f"{_ENC}.mert:settings", "m-a-p/MERT-v1-95M", 24_000, 5.0, 5.0,
    "mean over frames per layer, mean over windows", "all",
    "MERT-v1-95M (music), HubertModel with the published config"))
register_encoder(EncoderEntry(
    "clap", f"{_ENC}.clap:build", f"{_ENC}.clap:settings", "laion/larger_clap_music", 48_000, 10.0, 10.0,
    "projected audio embedding per window, mean over windows", "projection",
    "LAION-CLAP audio tower, ClapAudioModelWithProjection"))
register_encoder(EncoderEntry(
    "clap_unfused", f"{_ENC}.clap:build_unfused", f"{_ENC}.clap:settings_unfused", "laion/clap-htsat-unfused",
    48_000, 10.0, 10.0, "projected audio embedding per window, mean over windows", "projection",
    "LAION-CLAP HTSAT unfused audio tower, ClapAudioModelWithProjection"))
