"""Frozen audio encoders for the embedding stage: one module each (Wav2Vec2, AST, MERT, CLAP), shared parts in
:mod:`raygenre.models.encoders.base`. Each module offers ``build(params, weights)`` and ``settings(params,
weights)``; the registry's :class:`~raygenre.models.registry.EncoderEntry` names them. Pure torch, no Ray."""

from __future__ import annotations

from typing import Any


def preflight(name: str, source: str, weights_dir: str | None, params: dict[str, Any] | None = None) -> str:
    """The driver's weights check of an encoder's probe model: where its weights will come from (loads none)."""
    from raygenre.errors import ConfigError
    from raygenre.models.registry import PROBE_ONLY_PARAMS, get_encoder, get_model, resolve_builder

    params = dict(params or {})
    known = (*PROBE_ONLY_PARAMS, "backbone", "window_seconds")
    unknown = sorted(set(params) - set(known))
    if unknown:  # before any work, not in every trial
        raise ConfigError(f"unknown params key '{unknown[0]}' for the {name} probes: they take {', '.join(known)}.")
    encoder = get_encoder(get_model(name).encoder or name)
    return resolve_builder(encoder.settings)(params, {"source": source, "dir": weights_dir})["weights"]


def entry_for(build: dict, network: dict | None = None) -> Any:
    """The encoder entry a kept head's embeddings came from (its model.json, else the registry's model)."""
    from raygenre.models.registry import get_encoder, get_model

    name = ((network or {}).get("embedding") or {}).get("encoder") or get_model(build["name"]).encoder
    return get_encoder(name)


def weights_file(build: dict, weights: dict, network: dict | None = None) -> str | None:
    """The file an encoder's weights load from (None for a random init), so a kept probe can name it."""
    from pathlib import Path

    from raygenre.models.wav2vec2_weights import HubModel, _cached_weights, _local_weights_file, plan_weights

    entry = entry_for(build, network)
    hub = HubModel(entry.name, entry.default_id)
    kind, source, _ = plan_weights(weights.get("source") or "random",
                                   (build.get("params") or {}).get("backbone", entry.default_id),
                                   weights.get("dir"), weights.get("offline"), hub)
    if kind.startswith("random"):
        return None
    if kind == "local":
        return str(_local_weights_file(Path(source)))
    return _cached_weights(source, weights.get("dir"), entry.name)


def build_for_predict(build: dict, weights: dict, network: dict | None = None) -> Any:
    """The frozen encoder a kept head was trained on, built as the embedding stage built it."""
    from raygenre.models.registry import PROBE_ONLY_PARAMS, resolve_builder

    params = {k: v for k, v in (build.get("params") or {}).items() if k not in PROBE_ONLY_PARAMS}
    return resolve_builder(entry_for(build, network).builder)(params, weights)
