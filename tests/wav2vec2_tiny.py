"""A tiny Wav2Vec2 (35,120 parameters) saved with ``save_pretrained``, for tests that cannot download the base model.

Same architecture family as ``facebook/wav2vec2-base`` (group-norm conv encoder, post-norm transformer,
SpecAugment and LayerDrop on in train mode), shrunk: hidden 32, 2 layers, 3 conv layers of total stride 80
(so 0.2 s at 16 kHz gives 39 frames, enough for SpecAugment's 10-frame masks).
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

TINY_REPO_ID = "raygenre-tests/wav2vec2-tiny"
TINY_HIDDEN = 32
TINY_LAYERS = 2


def tiny_config(**overrides: object) -> Wav2Vec2Config:
    settings: dict[str, object] = dict(
        hidden_size=TINY_HIDDEN, num_hidden_layers=TINY_LAYERS, num_attention_heads=2, intermediate_size=64,
        conv_dim=(32, 32, 32), conv_stride=(5, 4, 4), conv_kernel=(10, 4, 4), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2, vocab_size=None,
    )
    settings.update(overrides)
    return Wav2Vec2Config(**settings)


def save_tiny(folder: Path, seed: int = 0) -> Path:
    """Write config.json, model.safetensors and preprocessor_config.json into ``folder``."""
    torch.manual_seed(seed)
    Wav2Vec2Model(tiny_config()).save_pretrained(folder)
    Wav2Vec2FeatureExtractor().save_pretrained(folder)
    return folder


def populate_hub_cache(cache_dir: Path, repo_id: str, folder: Path, commit: str = "0" * 40) -> Path:
    """Lay ``folder``'s files out as huggingface_hub's cache holds ``repo_id`` at ``main`` (refs + snapshot)."""
    repo = cache_dir / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    for item in folder.iterdir():
        (snapshot / item.name).write_bytes(item.read_bytes())
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot
