"""Kept deep models without Ray: a frozen ImageNet trunk is named by file and sha256 and never swapped."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torchvision
from safetensors.torch import save_file

from raygenre.errors import ArtifactError, WeightsError
from raygenre.inference import Predictor
from raygenre.models.imagenet import WEIGHT_FILES
from raygenre.models.kept_networks import file_sha256, save_network
from raygenre.models.network_state import build_model, trained_state

AUDIO = {"sample_rate": 8000, "clip_seconds": 2.0, "waveform_rate": 8000,
         "mel": {"n_mels": 64, "n_fft": 512, "hop_length": 128, "size": 64, "colormap": "viridis"}}


def _weights_dir(tmp_path, seed: int):
    folder = tmp_path / f"weights-{seed}"
    folder.mkdir()
    torch.manual_seed(seed)
    torch.save(torchvision.models.alexnet().state_dict(), folder / WEIGHT_FILES["alexnet"])
    return folder


def _keep_fc8(tmp_path, weights_dir):
    build = {"name": "alexnet", "family": "spectrogram", "variant": "fc8", "params": {}}
    weights = {"source": "pretrained", "dir": str(weights_dir)}
    model = build_model(build, weights, seed=3).eval()
    state = tmp_path / "trained.safetensors"
    save_file(trained_state(model), str(state))
    fitted = {"state_dict_path": str(state), "build": build, "seed": 3, "weights_source": "pretrained",
              "weights_dir": str(weights_dir), "contains": "trained"}
    meta = {"model": "alexnet", "variant": "fc8", "family": "spectrogram", "representation": "mel", "audio": AUDIO}
    return model, save_network(tmp_path / "run" / "artifacts" / "alexnet-fc8", fitted, meta)


def test_a_frozen_trunk_is_named_by_sha256_and_predicts_as_the_trained_net(tmp_path):
    weights_dir = _weights_dir(tmp_path, seed=1)
    model, folder = _keep_fc8(tmp_path, weights_dir)
    meta = json.loads((folder / "model.json").read_text())
    assert meta["network"]["trunk"] == {"file": WEIGHT_FILES["alexnet"],
                                        "sha256": file_sha256(weights_dir / WEIGHT_FILES["alexnet"])}
    kept_tensors = len(trained_state(model))
    assert kept_tensors < len(model.state_dict())  # the trunk is not stored
    window = np.random.default_rng(0).normal(scale=0.1, size=16000).astype(np.float32)
    predictor = Predictor(folder)
    probabilities = predictor.window_probabilities(window)
    from raygenre.data.features import mel_image

    image = mel_image(window, 8000, 64, 512, 128, 64, "viridis")
    with torch.no_grad():
        direct = torch.softmax(model(model.model_input({"image": torch.from_numpy(image)[None]})), dim=1)[0]
    assert probabilities.shape == (10,) and np.allclose(probabilities, direct.numpy(), atol=1e-6)


def test_another_trunk_file_under_the_same_name_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no real ImageNet file to fall back on
    weights_dir = _weights_dir(tmp_path, seed=1)
    _, folder = _keep_fc8(tmp_path, weights_dir)
    torch.manual_seed(2)
    torch.save(torchvision.models.alexnet().state_dict(), weights_dir / WEIGHT_FILES["alexnet"])
    with pytest.raises(ArtifactError, match="predict refuses a different trunk file"):
        Predictor(folder)
    (weights_dir / WEIGHT_FILES["alexnet"]).unlink()
    with pytest.raises(WeightsError, match=WEIGHT_FILES["alexnet"]):  # missing: where to put it, one sentence
        Predictor(folder)
