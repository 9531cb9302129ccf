"""Experiment 3's raw-waveform models: a Wav2Vec2 backbone with the study's heads (pure torch, no Ray).

The study puts ``facebook/wav2vec2-base`` under two small heads; ``Wav2Vec2ForSequenceClassification``
has a different head (768->256, pooled, one Linear), so the heads are built here on ``Wav2Vec2Model``:

===============  ==============================================================================
``frozen``       backbone frozen; mean-pooled last hidden state -> Linear(H,128), ReLU,
                 Dropout(0.3) -> Linear(128,10). lr 1e-3 held constant, 10 epochs.
``progressive``  head H->256->128->10 with BatchNorm and dropout 0.3 / 0.2; lr 1e-4 with a
                 scheduler, 15 epochs; backbone frozen for ``frozen_epochs`` (5) epochs, then the
                 transformer (and feature projection) train; the CNN feature encoder stays frozen
                 unless ``train_feature_encoder``.
``layer_probe``  beyond the study (SUPERB-style): a learned softmax-weighted sum of all L+1
                 hidden states feeding the ``frozen`` head; backbone frozen. Speech models' last
                 layer is rarely their best for music, so the probe lets the data pick layers.
===============  ==============================================================================

Why the choices:

* **A frozen backbone runs in ``eval()``** even when the classifier is put in ``train()``:
  ``Wav2Vec2Model`` applies SpecAugment time masking (``mask_time_prob=0.05``) and LayerDrop (0.1) in
  train mode whatever ``requires_grad`` says, which would make a "frozen" feature extractor random and
  its embeddings uncacheable. Once unfrozen (``progressive``), it follows the classifier's mode, so
  fine-tuning gets HF's usual SpecAugment/LayerDrop regularisation.
* **BatchNorm in the progressive head**: the study says it "added ... layers of batch normalization";
  BatchNorm1d follows it. It needs batches of at least 2 in ``train()`` (a trainer should drop a
  last batch of one); ``params["norm"] = "layer"`` swaps in LayerNorm, which has no such limit.
* **The CNN feature encoder stays frozen** when the backbone is unfrozen (HF's
  ``freeze_feature_encoder``, the standard wav2vec2 fine-tuning recipe): its low-level filters
  transfer best and are least worth re-learning from 800 clips, and with a frozen encoder no gradient
  or activation for its 7 conv layers over 480,000 samples per clip is kept, which is most of the
  training memory for 30 s inputs.
* **Input**: :func:`normalize_clip` standardises each clip over its real samples only, then crops or
  zero-pads (group-norm ``base`` takes zero padding and no attention mask). Normalising a padded
  batch would put the padding into the statistics.
* **Chunking** (``params["chunk_seconds"]``, off by default) is not in the study: wav2vec2-base was
  pretrained on crops of at most ~15.6 s, so 10-15 s windows are in-distribution for it; clip logits
  are the mean of window logits.

``embed`` is the backbone part (what a frozen backbone computes) and ``head_forward`` the rest, so a
trainer can cache ``embed`` once and train only the head: in ``eval()``
``head_forward(embed(x)) == forward(x)``.
"""

from __future__ import annotations

import math
import os
import socket
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn
from transformers import Wav2Vec2Config, Wav2Vec2Model

from raygenre.errors import ConfigError, WeightsError
from raygenre.genres import N_CLASSES

WAVEFORM_VARIANTS = ("frozen", "progressive", "layer_probe")
DEFAULT_BACKBONE = "facebook/wav2vec2-base"
SAMPLE_RATE = 16_000
DEFAULT_FROZEN_EPOCHS = 5
SCHEDULES = ("constant", "plateau")

#: The study's training settings per variant. ``plateau`` is ReduceLROnPlateau(factor 0.1) on the epoch's
#: training loss (:func:`make_scheduler`): the study names "an adaptive learning rate scheduler" and
#: "1e-4/10" without saying which, and it has no validation split to watch. ``layer_probe`` copies ``frozen``.
DEFAULT_TRAINING: dict[str, dict[str, Any]] = {
    "frozen": {"learning_rate": 1e-3, "epochs": 10, "schedule": "constant"},
    "progressive": {"learning_rate": 1e-4, "epochs": 15, "schedule": "plateau"},
    "layer_probe": {"learning_rate": 1e-3, "epochs": 10, "schedule": "constant"},
}

#: ``params`` keys each variant accepts (anything else is a ConfigError naming the key).
VARIANT_PARAMS: dict[str, tuple[str, ...]] = {
    "frozen": ("chunk_seconds", "sample_rate"),
    "progressive": ("chunk_seconds", "sample_rate", "frozen_epochs", "train_feature_encoder", "norm"),
    "layer_probe": ("chunk_seconds", "sample_rate"),
}

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
_OFFLINE_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
_PROBE_TIMEOUT_S = 3.0


# --------------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------------

def _truthy(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def resolve_offline(offline: bool | None) -> bool:
    """``offline`` if given, else whether HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE is set now.

    Read at call time: huggingface_hub reads these once at import, which misses a later ``setenv``.
    """
    if offline is not None:
        return bool(offline)
    return any(_truthy(os.environ.get(name)) for name in _OFFLINE_ENV)


def _hub_cache(cache_dir: str | None) -> str:
    """The folder ``from_pretrained`` looks in: ``cache_dir`` or huggingface_hub's HF_HUB_CACHE."""
    from huggingface_hub import constants

    return str(cache_dir) if cache_dir else constants.HF_HUB_CACHE


def _looks_like_path(name: str) -> bool:
    """A hub id is ``name`` or ``org/name``; anything else path-shaped is meant as a folder."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def _local_weights_file(folder: Path) -> Path | None:
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    return None


def _check_local_folder(folder: Path, *, need_weights: bool) -> None:
    if not folder.is_dir():
        raise WeightsError(f"Wav2Vec2 weights folder {folder} does not exist; set weights.source to a folder "
                           "written by save_pretrained (config.json and model.safetensors).")
    if not (folder / "config.json").is_file():
        raise WeightsError(f"Wav2Vec2 weights folder {folder} has no config.json; set weights.source to a folder "
                           "written by save_pretrained.")
    if need_weights and _local_weights_file(folder) is None:
        raise WeightsError(f"Wav2Vec2 weights folder {folder} has config.json but no model.safetensors or "
                           "pytorch_model.bin; set weights.source to a folder written by save_pretrained.")


def _cached_weights(model_id: str, cache_dir: str | None) -> str | None:
    """The cached weights file of ``model_id`` (None unless config.json and a weights file are cached)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        config = try_to_load_from_cache(model_id, "config.json", cache_dir=cache_dir)
    except ValueError as exc:  # HFValidationError: not a repo id
        raise WeightsError(f"Wav2Vec2 backbone '{model_id}' is neither an existing folder nor a valid Hugging "
                           "Face model id; set weights.source to a save_pretrained folder.") from exc
    if not isinstance(config, str):
        return None
    for name in WEIGHT_FILES:
        found = try_to_load_from_cache(model_id, name, cache_dir=cache_dir)
        if isinstance(found, str):
            return found
    return None


def _hub_reachable(timeout: float = _PROBE_TIMEOUT_S) -> bool:
    """Whether the hub's host accepts a TCP connection within ``timeout`` s (True behind a proxy).

    Without this, a machine with no network waits through huggingface_hub's retries (~35 s per file)
    before failing; the probe runs in a thread so that a hanging DNS lookup is cut off too.
    """
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    answered: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            answered.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(answered)


def _missing_sentence(model_id: str, cache_dir: str | None, reason: str) -> str:
    return (f"Wav2Vec2 weights '{model_id}' are not in the Hugging Face cache {_hub_cache(cache_dir)} and {reason}; "
            f"download them there with `hf download {model_id}` where there is network, or set weights.source "
            "to a local save_pretrained folder.")


def _plan(weights: str, name_or_path: str, cache_dir: str | None, offline: bool | None) -> tuple[str, str, str]:
    """``(kind, source, description)`` with kind in random-base / random-config / local / cache / download.

    Raises WeightsError for anything that cannot load, without loading weights.
    """
    if weights == "random":
        if Path(name_or_path).expanduser().is_dir():
            folder = Path(name_or_path).expanduser()
            _check_local_folder(folder, need_weights=False)
            return "random-config", str(folder), f"random init (untrained), config from {folder}"
        if name_or_path == DEFAULT_BACKBONE:
            return "random-base", name_or_path, "random init (untrained), Wav2Vec2 base config"
        raise WeightsError(f"random Wav2Vec2 weights need the base backbone '{DEFAULT_BACKBONE}' or a local folder "
                           f"with a config.json, not '{name_or_path}'.")
    if weights != "pretrained":  # a local folder given as the weights themselves
        folder = Path(weights).expanduser()
        _check_local_folder(folder, need_weights=True)
        return "local", str(folder), f"pretrained weights from local folder {folder}"
    if Path(name_or_path).expanduser().is_dir():
        folder = Path(name_or_path).expanduser()
        _check_local_folder(folder, need_weights=True)
        return "local", str(folder), f"pretrained weights from local folder {folder}"
    if _looks_like_path(name_or_path):
        _check_local_folder(Path(name_or_path).expanduser(), need_weights=True)  # raises: it does not exist
    cached = _cached_weights(name_or_path, cache_dir)
    if cached is not None:
        return "cache", name_or_path, f"pretrained '{name_or_path}' from the Hugging Face cache ({cached})"
    if resolve_offline(offline):
        why = "offline was requested" if offline else "the hub is offline (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE)"
        raise WeightsError(_missing_sentence(name_or_path, cache_dir, why))
    if not _hub_reachable():
        raise WeightsError(_missing_sentence(name_or_path, cache_dir, "huggingface.co cannot be reached"))
    return "download", name_or_path, f"pretrained '{name_or_path}', downloaded into {_hub_cache(cache_dir)}"


def check_backbone(weights: str = "pretrained", name_or_path: str = DEFAULT_BACKBONE, cache_dir: str | None = None,
                   offline: bool | None = None) -> str:
    """Pre-flight for the driver: where the backbone will come from, without loading it into a model.

    Raises WeightsError (one sentence) when it cannot load, so a config problem costs no cluster time.
    """
    return _plan(weights, name_or_path, cache_dir, offline)[2]


def load_backbone(weights: str = "pretrained", *, name_or_path: str = DEFAULT_BACKBONE, cache_dir: str | None = None,
                  offline: bool | None = None) -> Wav2Vec2Model:
    """A float32 ``Wav2Vec2Model``: ``pretrained`` (hub id or folder), a folder path, or ``random``.

    Files found locally are loaded with ``local_files_only=True`` so no hub request (and no retry
    wait) happens; a download is only attempted when the hub is online and reachable.
    """
    kind, source, _ = _plan(weights, name_or_path, cache_dir, offline)
    if kind == "random-base":
        return Wav2Vec2Model(Wav2Vec2Config())
    if kind == "random-config":
        return Wav2Vec2Model(Wav2Vec2Config.from_pretrained(source, local_files_only=True))
    try:
        return Wav2Vec2Model.from_pretrained(source, cache_dir=cache_dir, local_files_only=kind != "download",
                                             dtype=torch.float32)
    except OSError as exc:
        if kind == "download":
            raise WeightsError(_missing_sentence(source, cache_dir, "the download failed")) from exc
        raise WeightsError(f"Wav2Vec2 weights at {source} could not be loaded ({type(exc).__name__}); set "
                           "weights.source to a folder written by save_pretrained.") from exc


# --------------------------------------------------------------------------------------------------
# Input
# --------------------------------------------------------------------------------------------------

def normalize_clip(wave: torch.Tensor, clip_samples: int, *, lengths: torch.Tensor | None = None,
                   eps: float = 1e-7) -> torch.Tensor:
    """(N, T) or (T,) float -> per-clip zero mean / unit variance, then crop or zero-pad to ``clip_samples``.

    Statistics use each clip's real samples only (its first ``lengths[i]`` samples, or all of them), after
    cropping, so the model sees exactly 0/1 audio and zeros as padding; a padded batch normalised as a
    whole would not. ``(x - mean) / sqrt(var + eps)`` as ``Wav2Vec2FeatureExtractor`` does.
    """
    single = wave.dim() == 1
    x = wave[None] if single else wave
    if x.dim() != 2:
        raise ValueError(f"normalize_clip expects (N, T) or (T,) waveforms, got shape {tuple(wave.shape)}")
    x = x.float()[:, :clip_samples]
    n, t = x.shape
    if lengths is None:
        real = torch.full((n,), t, device=x.device)
    else:
        real = lengths.to(x.device).clamp(min=1, max=t)
    mask = torch.arange(t, device=x.device)[None, :] < real[:, None]
    count = real.to(x.dtype)[:, None]
    mean = (x * mask).sum(1, keepdim=True) / count
    var = (((x - mean) * mask) ** 2).sum(1, keepdim=True) / count
    out = ((x - mean) / torch.sqrt(var + eps)) * mask
    if t < clip_samples:
        out = nn.functional.pad(out, (0, clip_samples - t))
    return out[0] if single else out


def chunk_windows(wave: torch.Tensor, window_samples: int) -> torch.Tensor:
    """(N, T) -> (N, W, window_samples) non-overlapping windows, W = ceil(T / window_samples).

    The last window is the clip's final ``window_samples`` (overlapping the previous one) rather than
    a zero-padded stub, so every window is real audio; a clip shorter than a window is zero-padded.
    """
    if window_samples <= 0:
        raise ValueError(f"window_samples must be positive, got {window_samples}")
    n, t = wave.shape
    if t <= window_samples:
        return nn.functional.pad(wave, (0, window_samples - t))[:, None, :]
    count = math.ceil(t / window_samples)
    starts = [min(i * window_samples, t - window_samples) for i in range(count)]
    return torch.stack([wave[:, s:s + window_samples] for s in starts], dim=1)


# --------------------------------------------------------------------------------------------------
# Heads and classifier
# --------------------------------------------------------------------------------------------------

class LayerProbeHead(nn.Module):
    """Softmax-weighted sum over the L+1 per-layer features (..., L+1, H), then the ``frozen`` head.

    Weights start equal (zeros before the softmax), so training begins from the layer average.
    """

    def __init__(self, n_layers: int, mlp: nn.Module) -> None:
        super().__init__()
        self.layer_logits = nn.Parameter(torch.zeros(n_layers))
        self.mlp = mlp

    def layer_weights(self) -> torch.Tensor:
        return torch.softmax(self.layer_logits, dim=0)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        weights = self.layer_weights().to(features.dtype)
        return self.mlp(torch.einsum("...lh,l->...h", features, weights))


def build_head(variant: str, hidden_size: int, n_classes: int = N_CLASSES, *, n_layers: int = 13,
               norm: str = "batch") -> nn.Module:
    """The classification head of ``variant`` on ``hidden_size`` features (``n_layers`` = L+1 for the probe)."""
    if variant in ("frozen", "layer_probe"):
        mlp = nn.Sequential(nn.Linear(hidden_size, 128), nn.ReLU(), nn.Dropout(0.3), nn.Linear(128, n_classes))
        return LayerProbeHead(n_layers, mlp) if variant == "layer_probe" else mlp
    if variant == "progressive":
        def normalization(width: int) -> nn.Module:
            return nn.BatchNorm1d(width) if norm == "batch" else nn.LayerNorm(width)

        return nn.Sequential(
            nn.Linear(hidden_size, 256), normalization(256), nn.ReLU(), nn.Dropout(0.3),
            nn.Linear(256, 128), normalization(128), nn.ReLU(), nn.Dropout(0.2),
            nn.Linear(128, n_classes),
        )
    raise ConfigError(f"unknown waveform variant '{variant}': choose one of {', '.join(WAVEFORM_VARIANTS)}.")


class WaveformClassifier(nn.Module):
    """Wav2Vec2 backbone + head: ``forward`` takes normalised (N, T) float waveforms and returns logits."""

    def __init__(self, variant: str, backbone: Wav2Vec2Model, head: nn.Module, *, frozen_epochs: int | None,
                 train_feature_encoder: bool = False, window_samples: int | None = None) -> None:
        super().__init__()
        self.variant = variant
        self.backbone = backbone
        self.head = head
        self.frozen_epochs = frozen_epochs  # None: frozen for good
        self.train_feature_encoder = train_feature_encoder
        self.window_samples = window_samples
        self.hidden_states = variant == "layer_probe"
        self.epoch = 0
        self.backbone_trainable = False
        self.set_epoch(0)

    # ---- freezing ---------------------------------------------------------------------------------

    def _set_backbone_trainable(self, trainable: bool) -> None:
        self.backbone_trainable = trainable
        self.backbone.requires_grad_(trainable)
        encoder = self.backbone.feature_extractor
        encoder_trains = trainable and self.train_feature_encoder
        encoder.requires_grad_(encoder_trains)
        # HF's flag: while True in train mode the encoder marks its input as requiring grad (for gradient
        # checkpointing), which would keep the conv activations for a backward pass nobody needs.
        encoder._requires_grad = encoder_trains
        self.train(self.training)  # re-apply the mode rule below

    def set_epoch(self, epoch: int) -> None:
        """Apply the unfreeze schedule for 0-based ``epoch`` (idempotent, so a resumed run calls it too).

        DistributedDataParallel only syncs parameters that required grad when it was built: with more than
        one worker, wrap (or re-wrap) the model after the epoch that unfreezes the backbone.
        """
        self.epoch = epoch
        self._set_backbone_trainable(self.frozen_epochs is not None and epoch >= self.frozen_epochs)

    def train(self, mode: bool = True) -> WaveformClassifier:
        """As ``nn.Module.train``, but a frozen backbone stays in ``eval()`` (no SpecAugment, no LayerDrop)."""
        super().train(mode)
        if not self.backbone_trainable:
            self.backbone.eval()
        return self

    def optimizer_parameters(self) -> list[nn.Parameter]:
        """Every parameter that trains at some epoch (head, plus the backbone part ``progressive`` unfreezes).

        Build the optimizer from these once: parameters still frozen have no gradient and are skipped by
        torch's optimizers until ``set_epoch`` unfreezes them.
        """
        params = list(self.head.parameters())
        if self.frozen_epochs is not None:
            encoder = {id(p) for p in self.backbone.feature_extractor.parameters()}
            params += [p for p in self.backbone.parameters()
                       if self.train_feature_encoder or id(p) not in encoder]
        return params

    # ---- forward ----------------------------------------------------------------------------------

    def _pooled(self, wave: torch.Tensor) -> torch.Tensor:
        out = self.backbone(wave, output_hidden_states=self.hidden_states)
        if self.hidden_states:
            return torch.stack([h.mean(dim=1) for h in out.hidden_states], dim=1)  # (B, L+1, H)
        return out.last_hidden_state.mean(dim=1)  # (B, H)

    def embed(self, wave: torch.Tensor) -> torch.Tensor:
        """Backbone features: (N, H), or (N, L+1, H) for ``layer_probe``; with chunking a window axis after N.

        Mean pooling over frames is linear, so pooling each layer before the weighted sum equals pooling
        after it, which keeps the probe's features cacheable. Runs without autograd while frozen.
        """
        if self.window_samples is not None:
            windows = chunk_windows(wave, self.window_samples)
            n, w = windows.shape[:2]
            feats = self._embed_flat(windows.reshape(n * w, -1))
            return feats.reshape(n, w, *feats.shape[1:])
        return self._embed_flat(wave)

    def _embed_flat(self, wave: torch.Tensor) -> torch.Tensor:
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.backbone_trainable):
            return self._pooled(wave)

    def head_forward(self, features: torch.Tensor) -> torch.Tensor:
        """Logits from :meth:`embed`'s features; with chunking the mean of the window logits."""
        if self.window_samples is None:
            return self.head(features)
        n, w = features.shape[:2]
        return self.head(features.reshape(n * w, *features.shape[2:])).reshape(n, w, -1).mean(dim=1)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.head_forward(self.embed(wave))


def _validate_params(variant: str, params: dict[str, Any]) -> dict[str, Any]:
    allowed = VARIANT_PARAMS[variant]
    for key in params:
        if key not in allowed:
            raise ConfigError(f"unknown params key '{key}' for waveform variant '{variant}': it takes "
                              f"{', '.join(allowed)}.")
    out: dict[str, Any] = {"chunk_seconds": None, "sample_rate": SAMPLE_RATE, "frozen_epochs": DEFAULT_FROZEN_EPOCHS,
                           "train_feature_encoder": False, "norm": "batch", **params}
    chunk = out["chunk_seconds"]
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int | float) or chunk <= 0):
        raise ConfigError(f"params key 'chunk_seconds' must be a positive number of seconds or null, not {chunk!r}.")
    rate = out["sample_rate"]
    if isinstance(rate, bool) or not isinstance(rate, int) or rate <= 0:
        raise ConfigError(f"params key 'sample_rate' must be a positive integer, not {rate!r}.")
    epochs = out["frozen_epochs"]
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ConfigError(f"params key 'frozen_epochs' must be a non-negative integer, not {epochs!r}.")
    if not isinstance(out["train_feature_encoder"], bool):
        raise ConfigError(f"params key 'train_feature_encoder' must be true or false, not "
                          f"{out['train_feature_encoder']!r}.")
    if out["norm"] not in ("batch", "layer"):
        raise ConfigError(f"params key 'norm' must be 'batch' or 'layer', not {out['norm']!r}.")
    return out


def build_waveform_model(variant: str, *, backbone: Wav2Vec2Model, params: dict[str, Any] | None = None,
                         n_classes: int = N_CLASSES) -> WaveformClassifier:
    """The study's ``variant`` on ``backbone`` (hidden size and layer count come from its config)."""
    if variant not in WAVEFORM_VARIANTS:
        raise ConfigError(f"unknown waveform variant '{variant}': choose one of {', '.join(WAVEFORM_VARIANTS)}.")
    p = _validate_params(variant, dict(params or {}))
    config = backbone.config
    head = build_head(variant, config.hidden_size, n_classes, n_layers=config.num_hidden_layers + 1, norm=p["norm"])
    window = None if p["chunk_seconds"] is None else int(round(p["chunk_seconds"] * p["sample_rate"]))
    return WaveformClassifier(variant, backbone, head,
                              frozen_epochs=p["frozen_epochs"] if variant == "progressive" else None,
                              train_feature_encoder=p["train_feature_encoder"], window_samples=window)


def make_scheduler(optimizer: torch.optim.Optimizer,
                   schedule: str) -> torch.optim.lr_scheduler.ReduceLROnPlateau | None:
    """The scheduler named in :data:`DEFAULT_TRAINING` (None for ``constant``); step it with the epoch's loss."""
    if schedule == "constant":
        return None
    if schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.1, patience=2)
    raise ConfigError(f"unknown schedule '{schedule}': choose one of {', '.join(SCHEDULES)}.")


def param_counts(model: nn.Module) -> tuple[int, int]:
    """``(total, trainable)`` parameters now (``requires_grad``), the order of ``keras_style_param_count``."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable
