"""Build a trial's net from its spec and move the trained part of its state in and out.

The same calls serve training (``raygenre.train.torch_loop``) and ``predict`` (kept models), so a kept
state always fits the net it is loaded into. Pure torch, no Ray.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from raygenre.models.spectrogram import SpectrogramNet, build_spectrogram_model


def build_model(model_cfg: dict[str, Any], weights_cfg: dict[str, Any] | None, seed: int) -> nn.Module:
    """The trial's net, initialised from ``seed``: the same call rebuilds the same frozen trunk.

    A spectrogram net, or (``family: waveform``) a Wav2Vec2 classifier; both offer the loop's interface:
    ``set_epoch``, ``phase_change_epochs``, ``frozen_trunk``/``head``, ``model_input``, ``weights``.
    """
    weights = weights_cfg or {}
    torch.manual_seed(seed)
    if model_cfg.get("family") == "waveform":  # the registry's builder, as the spec names it
        from raygenre.models.registry import get_model, resolve_builder

        return resolve_builder(model_cfg.get("builder") or get_model(model_cfg["name"]).builder)(model_cfg, weights)
    return build_spectrogram_model(model_cfg["name"], model_cfg["variant"], params=model_cfg.get("params") or {},
                                   weights=weights.get("source", "random"), weights_dir=weights.get("dir"))


def _trunk_tensors(model: SpectrogramNet) -> set[int]:
    trunk = model.frozen_trunk()
    if trunk is None:
        return set()
    return {id(t) for t in (*trunk.parameters(), *trunk.buffers())}


def trained_state(model: SpectrogramNet) -> dict[str, torch.Tensor]:
    """The model's state minus its always-frozen trunk (everything when there is none), on the CPU."""
    skip = _trunk_tensors(model)
    return {k: v.detach().to("cpu", copy=True).contiguous()
            for k, v in model.state_dict(keep_vars=True).items() if id(v) not in skip}


def load_trained_state(model: SpectrogramNet, state: dict[str, torch.Tensor]) -> None:
    """Inverse of :func:`trained_state`: only trunk tensors may be missing, nothing may be unexpected."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    trunk_keys = {k for k, v in model.state_dict(keep_vars=True).items() if id(v) in _trunk_tensors(model)}
    if unexpected or set(missing) - trunk_keys:
        raise RuntimeError(f"state does not fit {model.name}/{model.variant}: missing "
                           f"{sorted(set(missing) - trunk_keys)[:3]}, unexpected {sorted(unexpected)[:3]}")
