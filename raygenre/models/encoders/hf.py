"""Building a transformers encoder and its feature extractor from a weights plan (shared by AST, MERT, CLAP)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from raygenre.models.encoders.base import ENCODER_SEED, load_pretrained, plan
from raygenre.models.wav2vec2_weights import HubModel, weights_revision


def build_network(params: dict[str, Any], weights: dict[str, Any] | None, hub: HubModel, model_cls: Any,
                  config_cls: Any, *, base_config: dict, tiny_config: dict, pretrained_config: dict | None = None,
                  allowed_unexpected: tuple[str, ...] = ()) -> tuple[Any, str, str, str, str]:
    """``(network, kind, source, description, revision)``: random configs seeded with ``ENCODER_SEED``;
    pretrained loads refuse missing or unexpected keys. ``pretrained_config`` (MERT) replaces the hub's
    config.json, which may name remote code raygenre never runs."""
    w = weights or {}
    kind, source, description = plan(params, weights, hub)
    torch.manual_seed(ENCODER_SEED)
    if kind == "random-base":
        net = model_cls(config_cls(**base_config))
    elif kind == "random-tiny":
        net = model_cls(config_cls(**tiny_config))
    elif kind == "random-config":
        net = model_cls(config_cls.from_pretrained(source, local_files_only=True))
    else:
        config = config_cls(**pretrained_config) if pretrained_config is not None else None
        net = load_pretrained(model_cls, source, kind, w.get("dir"), hub.label, config=config,
                              allowed_unexpected=allowed_unexpected)
    return net.eval(), kind, source, description, weights_revision(kind, source, w.get("dir"))


def feature_extractor(fe_cls: Any, kind: str, source: str, cache_dir: str | None, *, base: dict, tiny: dict) -> Any:
    """The encoder's own preprocessing: from the weights' folder or snapshot when it has one, else defaults."""
    if kind in ("local", "random-config") and (Path(source) / "preprocessor_config.json").is_file():
        return fe_cls.from_pretrained(source, local_files_only=True)
    if kind in ("cache", "download"):
        try:
            return fe_cls.from_pretrained(source, cache_dir=cache_dir, local_files_only=kind == "cache")
        except OSError:
            pass
    return fe_cls(**(tiny if kind == "random-tiny" else base))
