"""The LAION-CLAP audio tower (``ClapAudioModelWithProjection`` + ``ClapFeatureExtractor``) as a frozen encoder.

48 kHz, 10 s windows (the models' input length; the last window ends at the clip's end), each the
projected audio embedding (what CLAP compares with text, and what EVAR probes); windows averaged. The hub
checkpoints hold the whole CLAP model: the text tower's keys are the only unexpected ones allowed.
"""

from __future__ import annotations

from typing import Any

import torch

from raygenre.models.encoders.base import ExtractorEncoder, cache_settings, settle
from raygenre.models.encoders.hf import build_network, feature_extractor
from raygenre.models.wav2vec2_weights import HubModel

HUB = HubModel("CLAP", "laion/larger_clap_music")
HUB_UNFUSED = HubModel("CLAP", "laion/clap-htsat-unfused")
SAMPLE_RATE = 48_000
WINDOW_SECONDS = 10.0
TEXT_KEYS = ("text_model.", "text_projection.", "logit_scale")
#: 2 Swin stages of hidden 32, 16 mel bins on a 32x32 image, projection 16: a CPU smoke-test tower
TINY_CONFIG = dict(window_size=4, num_mel_bins=16, spec_size=32, patch_size=4, patch_stride=(4, 4), depths=[1, 1],
                   num_heads=[2, 2], hidden_size=32, projection_dim=16, patch_embeds_hidden_size=16,
                   enable_fusion=False)
#: 16 mel bins, 160 ms hops: a 10 s window is 63 frames, within the tiny tower's 64
TINY_FE = dict(feature_size=16, hop_length=7680, fft_window_size=1024, max_length_s=10, truncation="rand_trunc")


class ClapEncoder(ExtractorEncoder):
    def __init__(self, net: Any, fe: Any, window_seconds: float) -> None:
        super().__init__(net, fe, SAMPLE_RATE, window_seconds)

    def embed_windows(self, windows: torch.Tensor) -> torch.Tensor:
        inputs = self.extracted(windows)
        extra = {"is_longer": inputs["is_longer"]} if "is_longer" in inputs else {}
        out = self.net(input_features=inputs["input_features"], **extra)
        return out.audio_embeds.float()[:, None, :]  # (N, 1, projection)


def _build(params: dict[str, Any] | None, weights: dict[str, Any] | None, hub: HubModel) -> ClapEncoder:
    from transformers import ClapAudioConfig, ClapAudioModelWithProjection, ClapFeatureExtractor

    params = dict(params or {})
    net, kind, source, description, revision = build_network(
        params, weights, hub, ClapAudioModelWithProjection, ClapAudioConfig, base_config={},
        tiny_config=TINY_CONFIG, allowed_unexpected=TEXT_KEYS)
    fe = feature_extractor(ClapFeatureExtractor, kind, source, (weights or {}).get("dir"),
                           base={"truncation": "rand_trunc"}, tiny=TINY_FE)
    return settle(ClapEncoder(net, fe, float(params.get("window_seconds") or WINDOW_SECONDS)), description, revision)


def build(params: dict[str, Any] | None, weights: dict[str, Any] | None) -> ClapEncoder:
    return _build(params, weights, HUB)


def build_unfused(params: dict[str, Any] | None, weights: dict[str, Any] | None) -> ClapEncoder:
    return _build(params, weights, HUB_UNFUSED)


def _settings(name: str, hub: HubModel, params: dict[str, Any], weights: dict[str, Any] | None) -> dict[str, Any]:
    return cache_settings(name, params, weights, hub, sample_rate=SAMPLE_RATE, window_seconds=WINDOW_SECONDS,
                          hop_seconds=WINDOW_SECONDS, pooling="projected embedding per window, mean over windows",
                          layers="projection")


def settings(params: dict[str, Any], weights: dict[str, Any] | None) -> dict[str, Any]:
    return _settings("clap", HUB, params, weights)


def settings_unfused(params: dict[str, Any], weights: dict[str, Any] | None) -> dict[str, Any]:
    return _settings("clap_unfused", HUB_UNFUSED, params, weights)
