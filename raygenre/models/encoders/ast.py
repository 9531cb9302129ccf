"""AST (Audio Spectrogram Transformer, ``ASTModel`` + ``ASTFeatureExtractor``) as a frozen encoder.

The AudioSet model takes 1024 fbank frames of 10 ms = 10.24 s at 16 kHz, so a 30 s clip is three windows
(the last ending at the clip's end). Each layer's tokens (CLS, distillation and patches) are mean-pooled;
the windows are averaged. The probe picks the layer on validation clips.
"""

from __future__ import annotations

from typing import Any

import torch

from raygenre.models.encoders.base import ExtractorEncoder, cache_settings, pool_hidden_states, settle
from raygenre.models.encoders.hf import build_network, feature_extractor
from raygenre.models.wav2vec2_weights import HubModel

HUB = HubModel("AST", "MIT/ast-finetuned-audioset-10-10-0.4593")
SAMPLE_RATE = 16_000
WINDOW_SECONDS = 10.24
#: hidden 32, 2 layers, 16 mel bins, 4x4 patches over 1 s windows (100 tokens): a CPU smoke-test encoder
TINY_CONFIG = dict(patch_size=4, max_length=100, num_mel_bins=16, hidden_size=32, num_hidden_layers=2,
                   num_attention_heads=4, intermediate_size=37, frequency_stride=4, time_stride=4)
TINY_FE = dict(num_mel_bins=16, max_length=100)


class ASTEncoder(ExtractorEncoder):
    def __init__(self, net: Any, fe: Any, window_seconds: float) -> None:
        super().__init__(net, fe, SAMPLE_RATE, window_seconds)

    def embed_windows(self, windows: torch.Tensor) -> torch.Tensor:
        x = self.extracted(windows)["input_values"]
        return pool_hidden_states(self.net(input_values=x, output_hidden_states=True).hidden_states)


def build(params: dict[str, Any] | None, weights: dict[str, Any] | None) -> ASTEncoder:
    from transformers import ASTConfig, ASTFeatureExtractor, ASTModel

    params = dict(params or {})
    net, kind, source, description, revision = build_network(params, weights, HUB, ASTModel, ASTConfig,
                                                             base_config={}, tiny_config=TINY_CONFIG)
    fe = feature_extractor(ASTFeatureExtractor, kind, source, (weights or {}).get("dir"), base={}, tiny=TINY_FE)
    window = params.get("window_seconds") or net.config.max_length / 100.0  # 10 ms fbank frames
    return settle(ASTEncoder(net, fe, float(window)), description, revision)


def settings(params: dict[str, Any], weights: dict[str, Any] | None) -> dict[str, Any]:
    return cache_settings("ast", params, weights, HUB, sample_rate=SAMPLE_RATE,
                          window_seconds=params.get("window_seconds", "config max_length x 10 ms"),
                          hop_seconds=None, pooling="mean over tokens per layer, mean over windows", layers="all")
