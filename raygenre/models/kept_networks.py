"""Kept deep models: spectrogram nets, Wav2Vec2 rows and encoder probes as safetensors plus ``model.json``, and
their predict path.

What is stored, by what the trial trained (``network.contains`` in ``model.json``):

=========  ======================================================================================
all        every tensor of the net (CNN, CRNN, nets trained whole, Wav2Vec2 ``progressive``); predict
           builds the architecture from random weights and loads the whole state, so no weights file
           is needed
trained    the tensors outside a frozen trunk (AlexNet/VGG16 ``fc6``/``fc7``/``fc8``); the trunk is
           rebuilt from its weights, which ``model.json`` names by file and sha256 (or ``random`` plus
           the seed), and predict refuses a trunk file with another digest
head       the head of a cached-embedding row (Wav2Vec2 ``frozen``/``layer_probe``, every encoder's
           ``linear``/``mlp`` probe); model.json names the encoder (id, revision, windows, layers) and its
           weights file by sha256, and predict rebuilds it from the registry and embeds each window as the
           embedding stage did (resampled to the encoder's rate)
=========  ======================================================================================

A window of audio becomes the model's input through the functions prepare uses (``mel_image``,
``resample``/``fit_length``/``to_int16``), so a held-out clip gets the prediction its record holds.
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from raygenre.errors import ArtifactError
from raygenre.genres import GENRES

NETWORK_FILE = "model.safetensors"
CONTAINS = ("all", "trained", "head")


def file_sha256(path: str | os.PathLike) -> str:
    """The file's sha256, computed once per process for a file that has not changed (size and mtime)."""
    stat = os.stat(path)
    return _sha256(os.fspath(path), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=32)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def trunk_file(build: dict, weights: dict, network: dict | None = None) -> str | None:
    """The file a frozen trunk or encoder loads from (None for a random init); WeightsError if missing."""
    source = weights.get("source") or "random"
    if build["family"] == "waveform":
        from raygenre.models.encoders import weights_file

        return weights_file(build, {**weights, "source": source}, network)
    if source == "random":
        return None
    from raygenre.models import imagenet

    return imagenet.resolve_pretrained(build["name"], weights.get("dir")) if source == "pretrained" \
        else imagenet.check_path(source)


def trunk_identity(build: dict, weights: dict, network: dict | None = None) -> dict[str, Any]:
    """How ``model.json`` names the frozen part's weights: a file and its sha256, or ``random``."""
    path = trunk_file(build, weights, network)
    if path is None:
        return {"file": "random", "sha256": None}
    return {"file": os.path.basename(path), "sha256": file_sha256(path)}


def save_network(folder: Path, fitted: dict, meta: dict) -> Path:
    """Keep a trained net (``state_dict_path``) or a cached-embedding head (``head_path``) under ``folder``."""
    from raygenre.models.artifacts import ARTIFACT_FORMAT, META, write_json
    from raygenre.storage import RunPath

    folder.mkdir(parents=True, exist_ok=True)
    head = "head_path" in fitted
    state = RunPath.of(fitted["head_path"] if head else fitted["state_dict_path"]).read_bytes()
    (folder / NETWORK_FILE).write_bytes(state)
    weights = fitted.get("weights") or {"source": fitted.get("weights_source") or "random",
                                        "dir": fitted.get("weights_dir")}
    weights = {k: weights.get(k) for k in ("source", "dir", "offline")}
    contains = "head" if head else fitted.get("contains", "all")
    network = {"build": fitted["build"], "seed": int(fitted["seed"]), "contains": contains, "weights": weights}
    if head:  # the encoder (id, revision, windows, layers) the head's embeddings came from
        network.update(feature_shape=[int(d) for d in fitted["feature_shape"]], windows=bool(fitted["windows"]),
                       embedding=fitted.get("embedding") or {})
    network["trunk"] = None if contains == "all" else trunk_identity(fitted["build"], weights, network)
    write_json(folder / META, {**meta, "format": ARTIFACT_FORMAT, "labels": list(GENRES), "kind": "network",
                               "file": NETWORK_FILE, "network": network})
    return folder


def _check_trunk(folder: Path, network: dict) -> None:
    """Refuse to rebuild a frozen part from weights other than those the model was trained on."""
    kept = network.get("trunk") or {}
    now = trunk_identity(network["build"], network["weights"], network)
    if kept.get("sha256") != now["sha256"]:
        raise ArtifactError(f"{folder} was trained on the frozen weights {kept.get('file')} (sha256 "
                            f"{str(kept.get('sha256'))[:12]}), but this machine's are {now['file']} (sha256 "
                            f"{str(now['sha256'])[:12]}); predict refuses a different trunk file.")


class KeptNetwork:
    """A loaded kept net: ``window_probabilities(window, sample_rate)`` gives (10,) genre probabilities."""

    def __init__(self, folder: Path, meta: dict):
        import torch
        from safetensors.torch import load_file

        from raygenre.models.network_state import build_model, load_trained_state

        network = meta["network"]
        if network.get("contains") not in CONTAINS or not isinstance(network.get("build"), dict):
            raise ArtifactError(f"{folder}'s model.json describes a network raygenre never keeps.")
        self.meta, self.network = meta, network
        self.audio = meta.get("audio") or {}
        self.torch = torch
        state = load_file(str(folder / NETWORK_FILE))
        build, contains = dict(network["build"]), network["contains"]
        if contains != "all":
            _check_trunk(folder, network)
        if contains == "head":  # the encoder embeds each window as the embedding stage did, then the head
            from raygenre.models.encoders import build_for_predict
            from raygenre.models.registry import PROBE_HEADS, resolve_builder

            self.embedder = build_for_predict(build, network["weights"], network)
            head_builder = (network.get("embedding") or {}).get("head_builder") or PROBE_HEADS
            self.net = resolve_builder(head_builder)(build["variant"], tuple(network["feature_shape"]),
                                                     network["windows"], build.get("params"))
            self.net.load_state_dict(state)
        else:
            weights = {"source": "random"} if contains == "all" else network["weights"]
            self.embedder = None
            self.net = build_model(build, weights, int(network["seed"]))
            load_trained_state(self.net, state)
        self.net.eval()

    def _model_input(self, window: np.ndarray, sample_rate: int):
        """One window at ``sample_rate`` -> a batch of one, as prepare would have stored the clip."""
        from raygenre.data.audio import fit_length, resample, to_int16

        torch, audio = self.torch, self.audio
        clip_seconds = float(audio.get("clip_seconds", 30.0))
        if self.meta["representation"] == "mel":
            from raygenre.data.features import mel_image

            m = audio.get("mel") or {}
            image = mel_image(fit_length(window, int(round(clip_seconds * sample_rate))), sample_rate,
                              m.get("n_mels", 128), m.get("n_fft", 2048), m.get("hop_length", 512),
                              m.get("size", 128), m.get("colormap", "viridis"))
            return {"image": torch.from_numpy(np.ascontiguousarray(image))[None]}
        rate = int(audio.get("waveform_rate", 16000))
        wave = to_int16(fit_length(resample(window, sample_rate, rate), int(round(clip_seconds * rate))))
        return {"wave": torch.from_numpy(wave)[None]}

    def _encoder_input(self, wave):
        """int16 clip at the shards' rate -> float at the encoder's rate, as the embedding workers make it."""
        from raygenre.data.audio import resample

        torch = self.torch
        x = wave.float() / 32767.0
        rate, encoder_rate = int(self.audio.get("waveform_rate", 16000)), self.embedder.sample_rate
        if rate != encoder_rate:
            x = torch.from_numpy(np.stack([resample(w, rate, encoder_rate) for w in x.numpy()]))
        return x

    def window_probabilities(self, window: np.ndarray, sample_rate: int) -> np.ndarray:
        torch = self.torch
        batch = self._model_input(window, sample_rate)
        with torch.no_grad():
            if self.embedder is not None:
                logits = self.net(self.embedder.embed(self._encoder_input(batch["wave"])).float())
            else:
                logits = self.net(self.net.model_input(batch))
        return torch.softmax(logits.float(), dim=1)[0].numpy().astype(np.float64)
