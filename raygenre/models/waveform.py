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
from typing import Any

import torch
from torch import nn
from transformers import Wav2Vec2Model

from raygenre.errors import ConfigError
from raygenre.genres import N_CLASSES
from raygenre.models.counting import param_counts
from raygenre.models.wav2vec2_weights import DEFAULT_BACKBONE, TINY_BACKBONE, check_backbone, load_backbone

__all__ = ["DEFAULT_BACKBONE", "TINY_BACKBONE", "check_backbone", "load_backbone", "param_counts"]

WAVEFORM_VARIANTS = ("frozen", "progressive", "layer_probe")
INT16_SCALE = 32767.0  # waveform shards hold int16 samples
SAMPLE_RATE = 16_000
DEFAULT_FROZEN_EPOCHS = 5

#: The study's training settings per variant (sweeps/exp3.yaml sets them; a test checks it). ``plateau`` is
#: ReduceLROnPlateau(factor 0.1) on the epoch's training loss (:func:`raygenre.models.optim.make_scheduler`):
#: the study names "an adaptive learning rate scheduler" and "1e-4/10" without saying which, and it has no
#: validation split to watch. ``layer_probe`` copies ``frozen``.
DEFAULT_TRAINING: dict[str, dict[str, Any]] = {
    "frozen": {"learning_rate": 1e-3, "epochs": 10, "schedule": "constant"},
    "progressive": {"learning_rate": 1e-4, "epochs": 15, "schedule": "plateau"},
    "layer_probe": {"learning_rate": 1e-3, "epochs": 10, "schedule": "constant"},
}

#: ``params`` keys each variant accepts (anything else is a ConfigError naming the key). ``backbone`` is a
#: Hugging Face id, a save_pretrained folder or ``tiny`` (random weights only); ``weights.source`` says
#: whether its pretrained weights load.
_COMMON_PARAMS = ("chunk_seconds", "sample_rate", "backbone")
VARIANT_PARAMS: dict[str, tuple[str, ...]] = {
    "frozen": _COMMON_PARAMS,
    "progressive": (*_COMMON_PARAMS, "frozen_epochs", "train_feature_encoder", "norm"),
    "layer_probe": _COMMON_PARAMS,
}

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
        self.weights = "random"  # what the backbone was loaded from (set by build_from_config)
        self.name = "wav2vec2"
        # the training loop's interface, shared with the spectrogram nets:
        self.phase_change_epochs: tuple[int, ...] = (frozen_epochs,) if frozen_epochs else ()
        self.set_epoch(0)

    def frozen_trunk(self) -> None:
        """None: a frozen backbone's features are cached by the embedding pass, not by the training loop."""
        return None

    @staticmethod
    def model_input(batch: dict[str, torch.Tensor], channels_last: bool = False) -> torch.Tensor:
        """A batch of int16 ``wave`` rows -> normalised float clips (see :func:`normalize_clip`).

        Shard rows are already cropped or zero-padded to the clip length; each clip's real length is
        taken as up to its last non-zero sample, so trailing padding stays out of its statistics.
        """
        wave = batch["wave"]
        nonzero = wave != 0
        last = wave.shape[1] - torch.flip(nonzero, dims=[1]).float().argmax(dim=1)
        lengths = torch.where(nonzero.any(dim=1), last, torch.full_like(last, wave.shape[1]))
        return normalize_clip(wave.float() / INT16_SCALE, wave.shape[1], lengths=lengths)

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
                           "train_feature_encoder": False, "norm": "batch", "backbone": DEFAULT_BACKBONE, **params}
    if not isinstance(out["backbone"], str) or not out["backbone"]:
        raise ConfigError(f"params key 'backbone' must be a Hugging Face id, a folder or '{TINY_BACKBONE}', not "
                          f"{out['backbone']!r}.")
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


def build_from_config(model_cfg: dict[str, Any], weights_cfg: dict[str, Any] | None) -> WaveformClassifier:
    """The trial's classifier from its spec parts: backbone per ``params.backbone`` and ``weights``."""
    params = dict(model_cfg.get("params") or {})
    weights = weights_cfg or {}
    source = weights.get("source", "pretrained")
    name_or_path = params.get("backbone", DEFAULT_BACKBONE)
    backbone = load_backbone(source, name_or_path=name_or_path, cache_dir=weights.get("dir"),
                             offline=weights.get("offline"))
    model = build_waveform_model(model_cfg["variant"], backbone=backbone, params=params)
    model.weights = check_backbone(source, name_or_path, weights.get("dir"), weights.get("offline"))
    return model


def preflight(name: str, source: str, weights_dir: str | None, params: dict[str, Any] | None = None) -> str:
    """The driver's weights check (the registry's ``preflight``): where the backbone will come from."""
    backbone = (params or {}).get("backbone", DEFAULT_BACKBONE)
    return check_backbone(source, backbone, weights_dir)


#: A random backbone (no pretrained weights) is drawn from this seed wherever it is built for embedding,
#: so the embedding cache and ``predict`` see the same random weights.
EMBEDDER_SEED = 0


def build_embedder(params: dict[str, Any] | None, weights_cfg: dict[str, Any] | None) -> WaveformClassifier:
    """The frozen backbone that embeds clips for the cached-head variants (all layers, eval mode)."""
    torch.manual_seed(EMBEDDER_SEED)
    return build_from_config({"variant": "layer_probe", "params": dict(params or {})}, weights_cfg).eval()
