"""Tiny AST, MERT (HubertModel), CLAP audio tower and Wav2Vec2 saved with ``save_pretrained``, for tests that
cannot download the real encoders (the same configs as the package's ``tiny`` random backbones)."""

from __future__ import annotations

from pathlib import Path

import torch


def save_tiny_encoder(name: str, folder: Path, seed: int = 0) -> Path:
    """Write ``name``'s tiny model (config.json + model.safetensors) and feature extractor into ``folder``."""
    import transformers as tf

    from raygenre.models.encoders import ast, clap, mert
    from raygenre.models.wav2vec2_weights import TINY_CONFIG as W2V_TINY

    torch.manual_seed(seed)
    if name == "ast":
        tf.ASTModel(tf.ASTConfig(**ast.TINY_CONFIG)).save_pretrained(folder)
        tf.ASTFeatureExtractor(**ast.TINY_FE).save_pretrained(folder)
    elif name == "mert":
        tf.HubertModel(tf.HubertConfig(**mert.TINY_CONFIG)).save_pretrained(folder)
    elif name in ("clap", "clap_unfused"):
        tf.ClapAudioModelWithProjection(tf.ClapAudioConfig(**clap.TINY_CONFIG)).save_pretrained(folder)
        tf.ClapFeatureExtractor(**clap.TINY_FE).save_pretrained(folder)
    elif name == "wav2vec2":
        tf.Wav2Vec2Model(tf.Wav2Vec2Config(**W2V_TINY)).save_pretrained(folder)
    else:
        raise ValueError(name)
    return folder
