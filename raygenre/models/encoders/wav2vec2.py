"""Wav2Vec2 as a frozen encoder: the study's backbone, embedded exactly as experiment 3's cached rows did.

The whole clip is one window (wav2vec2's positional embedding is convolutional, so 30 s runs; ``params.
chunk_seconds`` cuts windows that the cache keeps as a window axis, for heads that average window logits).
Each clip is standardised over its real samples (trailing zero padding excluded) before the backbone.
"""

from __future__ import annotations

from typing import Any

import torch

from raygenre.models.encoders.base import ENCODER_SEED, FrozenEncoder, cache_settings, param_count
from raygenre.models.wav2vec2_weights import DEFAULT_BACKBONE, WAV2VEC2, weights_revision
from raygenre.models.wav2vec2_weights import _plan as plan_backbone

SAMPLE_RATE = 16_000
LONG_CLIP = 10 * SAMPLE_RATE  # longer clips go through the backbone LONG_BATCH at a time
LONG_BATCH = 2


class Wav2Vec2Encoder(FrozenEncoder):
    def __init__(self, classifier: Any) -> None:
        super().__init__(SAMPLE_RATE, None, None)
        self.classifier = classifier  # a WaveformClassifier (layer_probe: every hidden state), eval mode

    def embed_windows(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, T) whole clips (no windows: ``window_seconds`` None) in [-1, 1] -> (B, [W,] L+1, H), as
        ``WaveformClassifier.model_input`` + ``embed``."""
        from raygenre.models.waveform import normalize_clip

        nonzero = wave != 0
        last = wave.shape[1] - torch.flip(nonzero, dims=[1]).float().argmax(dim=1)
        lengths = torch.where(nonzero.any(dim=1), last, torch.full_like(last, wave.shape[1]))
        x = normalize_clip(wave, wave.shape[1], lengths=lengths)
        if x.shape[1] <= LONG_CLIP:
            return self.classifier.embed(x)
        # 30 s clips two at a time: base Wav2Vec2 keeps ~0.6 GB of activations per 30 s clip
        return torch.cat([self.classifier.embed(x[i:i + LONG_BATCH]) for i in range(0, len(x), LONG_BATCH)])


def build(params: dict[str, Any] | None, weights: dict[str, Any] | None) -> Wav2Vec2Encoder:
    from raygenre.models.waveform import build_embedder

    params = {k: v for k, v in (params or {}).items() if k in ("backbone", "chunk_seconds", "sample_rate")}
    torch.manual_seed(ENCODER_SEED)
    encoder = Wav2Vec2Encoder(build_embedder(params, weights)).eval()
    w = weights or {}
    kind, source, description = plan_backbone(w.get("source") or "pretrained", params.get("backbone", DEFAULT_BACKBONE),
                                              w.get("dir"), w.get("offline"))
    encoder.requires_grad_(False)
    encoder.facts = {"weights": description, "revision": weights_revision(kind, source, w.get("dir")),
                     "backbone_params": param_count(encoder.classifier.backbone)}
    return encoder


def settings(params: dict[str, Any], weights: dict[str, Any] | None) -> dict[str, Any]:
    out = cache_settings("wav2vec2", params, weights, WAV2VEC2, sample_rate=int(params.get("sample_rate",
                         SAMPLE_RATE)), window_seconds=None, hop_seconds=None,
                         pooling="mean over frames per layer", layers="all")
    out["chunk_seconds"] = params.get("chunk_seconds")
    return out
