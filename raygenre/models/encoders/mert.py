"""MERT-v1-95M as a frozen encoder, loaded into transformers' ``HubertModel`` (never remote code).

MERT's hub repo declares its own model class with remote code; its weights are HuBERT-shaped, so they
load into ``HubertModel`` built from the published sizes (:data:`PUBLISHED_CONFIG`) and the load must
report no missing or unexpected key, else it stops with one sentence. 24 kHz input, 5 s windows (MERT's
training context) standardised each, every one of the 13 hidden states mean-pooled over frames; windows
averaged. The probe chooses the layer on validation clips (MARBLE reports layer 7).
"""

from __future__ import annotations

from typing import Any

import torch

from raygenre.models.encoders.base import FrozenEncoder, cache_settings, pool_hidden_states, settle, standardize
from raygenre.models.encoders.hf import build_network
from raygenre.models.wav2vec2_weights import HubModel

HUB = HubModel("MERT", "m-a-p/MERT-v1-95M")
SAMPLE_RATE = 24_000
WINDOW_SECONDS = 5.0
#: m-a-p/MERT-v1-95M's config.json, as HubertConfig arguments (12 layers of 768, conv stride 320: 75 Hz at 24 kHz)
PUBLISHED_CONFIG = dict(
    hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, hidden_act="gelu",
    conv_dim=(512,) * 7, conv_stride=(5, 2, 2, 2, 2, 2, 2), conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_bias=False,
    feat_extract_norm="group", feat_extract_activation="gelu", num_conv_pos_embeddings=128,
    num_conv_pos_embedding_groups=16, do_stable_layer_norm=False, feat_proj_layer_norm=True, layer_norm_eps=1e-5,
    vocab_size=32,
)
#: hidden 16, 4 layers, 4 conv layers of total stride 320 (75 frames per second as MERT's)
TINY_CONFIG = dict(hidden_size=16, conv_dim=(16, 32, 32, 32), conv_stride=(5, 4, 4, 4), conv_kernel=(10, 4, 4, 4),
                   num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, num_hidden_layers=4,
                   num_attention_heads=2, intermediate_size=20, vocab_size=32)


class MERTEncoder(FrozenEncoder):
    def __init__(self, net: Any, window_seconds: float) -> None:
        super().__init__(SAMPLE_RATE, window_seconds, window_seconds)
        self.net = net

    def embed_windows(self, windows: torch.Tensor) -> torch.Tensor:
        x = standardize(windows.float()).to(next(self.net.parameters()).dtype)
        return pool_hidden_states(self.net(x, output_hidden_states=True).hidden_states)


def build(params: dict[str, Any] | None, weights: dict[str, Any] | None) -> MERTEncoder:
    from transformers import HubertConfig, HubertModel

    params = dict(params or {})
    hub_id = params.get("backbone", HUB.default_id)
    net, kind, _, description, revision = build_network(
        params, weights, HUB, HubertModel, HubertConfig, base_config=PUBLISHED_CONFIG, tiny_config=TINY_CONFIG,
        pretrained_config=PUBLISHED_CONFIG if hub_id == HUB.default_id else None)
    return settle(MERTEncoder(net, float(params.get("window_seconds") or WINDOW_SECONDS)), description, revision)


def settings(params: dict[str, Any], weights: dict[str, Any] | None) -> dict[str, Any]:
    return cache_settings("mert", params, weights, HUB, sample_rate=SAMPLE_RATE, window_seconds=WINDOW_SECONDS,
                          hop_seconds=WINDOW_SECONDS, pooling="mean over frames per layer, mean over windows",
                          layers="all")
