"""What every frozen encoder shares: windows over a clip, per-layer pooling, weights planning and loading.

An encoder embeds float waveforms at its own sample rate: the clip is cut into windows of the registry's
length and hop (the last window ends at the clip's end, so every window is real audio; a clip shorter than
a window is zero-padded), each window is embedded as (layers, hidden), and the windows are averaged.
Windows go through the network ``WINDOW_BATCH`` at a time, so memory is bounded whatever the clip length
(30 s at 48 kHz is 1.44 M samples, three 10 s windows).

Weights come through :func:`raygenre.models.wav2vec2_weights.plan_weights` for every encoder (hub cache,
download, local ``save_pretrained`` folder, or a random/tiny config labelled "random init"); a load that
reports missing or unexpected keys stops with one sentence (:func:`load_pretrained`), so a mismatch never
silently gives random layers.
"""

from __future__ import annotations

import abc
from typing import Any

import torch
from torch import nn

from raygenre.errors import ConfigError, WeightsError
from raygenre.models.wav2vec2_weights import TINY_BACKBONE, HubModel, plan_weights, weights_revision

WINDOW_BATCH = 8
#: Random encoders are drawn from this seed wherever they are built (stage, predict), so both see the same.
ENCODER_SEED = 0


def sliding_windows(wave: torch.Tensor, window: int, hop: int) -> torch.Tensor:
    """(B, T) -> (B, W, window): windows every ``hop`` samples, the last one ending at the clip's end."""
    b, t = wave.shape
    if t <= window:
        return nn.functional.pad(wave, (0, window - t))[:, None, :]
    starts = list(range(0, t - window + 1, hop))
    if starts[-1] + window < t:
        starts.append(t - window)
    return torch.stack([wave[:, s:s + window] for s in starts], dim=1)


def standardize(wave: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Per-row zero mean, unit variance, as the Wav2Vec2/MERT feature extractors' ``do_normalize``."""
    mean = wave.mean(dim=-1, keepdim=True)
    return (wave - mean) / torch.sqrt(wave.var(dim=-1, unbiased=False, keepdim=True) + eps)


class FrozenEncoder(nn.Module, abc.ABC):
    """Windows a clip, embeds the windows (``embed_windows``: (N, S) -> (N, layers, hidden)), averages them."""

    def __init__(self, sample_rate: int, window_seconds: float | None, hop_seconds: float | None) -> None:
        super().__init__()
        self.sample_rate = int(sample_rate)
        self.window = None if window_seconds is None else int(round(window_seconds * sample_rate))
        self.hop = self.window if hop_seconds is None or self.window is None else int(round(hop_seconds * sample_rate))
        self.facts: dict[str, Any] = {}

    @abc.abstractmethod
    def embed_windows(self, windows: torch.Tensor) -> torch.Tensor:
        """(N, samples) windows -> (N, layers, hidden): what each encoder module defines."""

    @torch.no_grad()
    def embed(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, T) float at ``sample_rate`` -> (B, layers, hidden), float32."""
        windows = wave[:, None, :] if self.window is None else sliding_windows(wave, self.window, self.hop)
        b, w = windows.shape[:2]
        flat = windows.reshape(b * w, -1)
        out = torch.cat([self.embed_windows(flat[i:i + WINDOW_BATCH]).float()
                         for i in range(0, len(flat), WINDOW_BATCH)])
        return out.reshape(b, w, *out.shape[1:]).mean(dim=1)


class ExtractorEncoder(FrozenEncoder):
    """A network whose input comes from a transformers feature extractor (spectrogram frontends: AST, CLAP)."""

    def __init__(self, net: Any, fe: Any, sample_rate: int, window_seconds: float) -> None:
        super().__init__(sample_rate, window_seconds, window_seconds)
        self.net, self.fe = net, fe

    def extracted(self, windows: torch.Tensor) -> dict[str, torch.Tensor]:
        """The extractor's tensors for a batch of windows, on the windows' device (floats in the net's dtype)."""
        inputs = self.fe([w.cpu().numpy() for w in windows], sampling_rate=self.sample_rate, return_tensors="pt")
        dtype = next(self.net.parameters()).dtype
        return {k: v.to(windows.device, dtype if v.is_floating_point() else v.dtype) for k, v in inputs.items()}


def pool_hidden_states(hidden_states: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Every layer's (N, frames, H) state mean-pooled over frames -> (N, layers, H)."""
    return torch.stack([h.float().mean(dim=1) for h in hidden_states], dim=1)


def backbone_of(params: dict[str, Any], hub: HubModel) -> str:
    name = (params or {}).get("backbone", hub.default_id)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"params key 'backbone' must be a Hugging Face id, a folder or '{TINY_BACKBONE}', "
                          f"not {name!r}.")
    return name


def plan(params: dict[str, Any], weights: dict[str, Any] | None, hub: HubModel) -> tuple[str, str, str]:
    w = weights or {}
    return plan_weights(w.get("source") or "pretrained", backbone_of(params, hub), w.get("dir"), w.get("offline"),
                        hub)


def cache_settings(name: str, params: dict[str, Any], weights: dict[str, Any] | None, hub: HubModel, *,
                   sample_rate: int, window_seconds: float | None, hop_seconds: float | None, pooling: str,
                   layers: str) -> dict[str, Any]:
    """What an encoder's embeddings depend on, resolved on the driver without loading weights (the cache key)."""
    kind, source, description = plan(params, weights, hub)
    w = weights or {}
    window = params.get("window_seconds", window_seconds)
    return {"encoder": name, "id": backbone_of(params, hub), "weights_source": w.get("source") or "pretrained",
            "revision": weights_revision(kind, source, w.get("dir")), "sample_rate": sample_rate,
            "window_seconds": window, "hop_seconds": params.get("hop_seconds", hop_seconds if window is not None
                                                                else None),
            "pooling": pooling, "layers": layers, "weights": description}


def load_pretrained(model_cls: Any, source: str, kind: str, cache_dir: str | None, label: str, *,
                    config: Any = None, allowed_unexpected: tuple[str, ...] = ()) -> nn.Module:
    """``from_pretrained`` that refuses missing or unexpected keys (one sentence naming the first of them)."""
    from raygenre.models.wav2vec2_weights import _missing_sentence

    try:
        model, info = model_cls.from_pretrained(source, cache_dir=cache_dir, local_files_only=kind != "download",
                                                dtype=torch.float32, output_loading_info=True,
                                                **({"config": config} if config is not None else {}))
    except OSError as exc:
        if kind == "download":
            raise WeightsError(_missing_sentence(source, cache_dir, "the download failed", label)) from exc
        raise WeightsError(f"{label} weights at {source} could not be loaded ({type(exc).__name__}); set "
                           "weights.source to a folder written by save_pretrained.") from exc
    missing = list(info.get("missing_keys") or [])
    unexpected = [k for k in info.get("unexpected_keys") or [] if not k.startswith(allowed_unexpected)]
    mismatched = list(info.get("mismatched_keys") or [])
    if missing or unexpected or mismatched:
        what = (f"misses {len(missing)} keys (first {sorted(missing)[0]})" if missing else
                f"has {len(unexpected)} unexpected keys (first {sorted(unexpected)[0]})" if unexpected else
                f"has {len(mismatched)} keys of another shape (first {mismatched[0][0]})")
        raise WeightsError(f"{label} weights at {source} do not fit {model_cls.__name__} with this config: the "
                           f"checkpoint {what}, so raygenre refuses to run with randomly initialised layers.")
    return model.eval()


def param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def settle(encoder: FrozenEncoder, description: str, revision: str) -> FrozenEncoder:
    """Freeze, eval mode, and the facts the cache manifest and records keep."""
    encoder.requires_grad_(False)
    encoder.eval()
    encoder.facts = {"weights": description, "revision": revision, "backbone_params": param_count(encoder)}
    return encoder

