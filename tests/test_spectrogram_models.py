"""Spectrogram models (pure torch): variants, exact parameter counts, weights offline, freezing, caching, axes."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from raygenre.errors import ConfigError, RaygenreError, WeightsError
from raygenre.models.spectrogram import (
    IMAGENET_MODELS,
    SPECTROGRAM_VARIANTS,
    WEIGHT_FILES,
    build_spectrogram_model,
    check_weights,
    param_counts,
    to_model_input,
)

REPO = Path(__file__).resolve().parents[1]

#: (total, trainable) for every model/variant with default params, worked out by hand:
#: AlexNet conv trunk 2,469,696; fc6 9216x4096+4096 = 37,752,832; fc7 4096x4096+4096 = 16,781,312.
#: VGG16 conv trunk 14,714,688; fc6 25088x4096+4096 = 102,764,544. New heads: Linear(9216,10) = 92,170,
#: Linear(25088,10) = 250,890, Linear(4096,10) = 40,970. ResNet18 11,689,512 - 513,000 + 5,130.
EXPECTED_COUNTS = {
    ("cnn", "default"): (391_466, 391_466),
    ("crnn", "default"): (571_210, 571_210),
    ("alexnet", "fc6"): (2_561_866, 92_170),
    ("alexnet", "fc7"): (40_263_498, 40_970),
    ("alexnet", "fc8"): (57_044_810, 40_970),
    ("alexnet", "finetune_all"): (57_044_810, 57_044_810),
    ("vgg16", "fc6"): (14_965_578, 250_890),
    ("vgg16", "fc7"): (117_520_202, 40_970),
    ("vgg16", "fc8"): (134_301_514, 40_970),
    ("vgg16", "finetune_all"): (134_301_514, 134_301_514),
    ("resnet18", "last_then_all"): (11_181_642, 5_130),
    ("resnet18", "finetune_all"): (11_181_642, 11_181_642),
}
ALL_VARIANTS = [(n, v) for n, vs in SPECTROGRAM_VARIANTS.items() for v in vs]
CACHED_VARIANTS = [(n, v) for n in ("alexnet", "vgg16") for v in ("fc6", "fc7", "fc8")]


def images(n: int = 2, size: int = 128, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, size, size, 3), dtype=torch.uint8, generator=g)


def model_input(model, n: int = 2, seed: int = 0, size: int = 128) -> torch.Tensor:
    return to_model_input(images(n, size, seed), model.normalization)


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """A fresh, empty TORCH_HOME; torch.hub.get_dir() follows it. Downloads fail as offline ones do."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # in case something called torch.hub.set_dir
    calls = []

    def offline(url, dst, hash_prefix=None, progress=True):
        calls.append((url, dst, hash_prefix))
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    assert torch.hub.get_dir() == str(tmp_path / "torch" / "hub")
    return checkpoints, calls


def save_torchvision_state(name: str, path: Path) -> dict[str, torch.Tensor]:
    """A random 1000-class torchvision state dict of ``name`` saved at ``path`` (stands in for ImageNet)."""
    from torchvision.models import get_model

    state = get_model(name, weights=None).state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


# --- API and counts ---------------------------------------------------------------------------------

def test_variant_table_and_weight_files_match_torchvision():
    from torchvision.models import get_model_weights

    assert SPECTROGRAM_VARIANTS == {
        "cnn": ("default",), "crnn": ("default",),
        "alexnet": ("fc6", "fc7", "fc8", "finetune_all"),
        "vgg16": ("fc6", "fc7", "fc8", "finetune_all"),
        "resnet18": ("last_then_all", "finetune_all")}
    assert IMAGENET_MODELS == ("alexnet", "vgg16", "resnet18")
    for name in IMAGENET_MODELS:
        default = get_model_weights(name).DEFAULT
        assert default.name == "IMAGENET1K_V1"
        assert os.path.basename(default.url) == WEIGHT_FILES[name]


@pytest.mark.parametrize(("name", "variant"), ALL_VARIANTS)
def test_parameter_counts_of_every_variant(name, variant):
    with torch.device("meta"):  # no memory, no init cost: the counts are structural
        model = build_spectrogram_model(name, variant)
    assert param_counts(model) == EXPECTED_COUNTS[name, variant]
    assert model.normalization == ("imagenet" if name in IMAGENET_MODELS else "unit")


@pytest.mark.parametrize(("name", "variant", "trainable"), [
    ("alexnet", "fc6", 92_170),                          # nothing kept: the flag changes nothing
    ("alexnet", "fc7", 37_752_832 + 40_970),
    ("alexnet", "fc8", 37_752_832 + 16_781_312 + 40_970),
    ("vgg16", "fc7", 102_764_544 + 40_970),
    ("vgg16", "fc8", 102_764_544 + 16_781_312 + 40_970),
])
def test_train_kept_fc_trains_the_kept_pretrained_layers(name, variant, trainable):
    with torch.device("meta"):
        model = build_spectrogram_model(name, variant, params={"train_kept_fc": True})
    assert param_counts(model) == (EXPECTED_COUNTS[name, variant][0], trainable)


@pytest.mark.parametrize(("name", "params", "total"), [
    ("crnn", {"rnn": "gru"}, 521_546),                  # 3 gates instead of 4: 4 x 37,248 recurrent params
    ("crnn", {"bidirectional": False}, 454_858),        # 49,664 + 33,280 recurrent, Linear(64, 10)
    ("crnn", {"readout": "last"}, 571_210),
    ("crnn", {"channels": [16, 32], "pools": [[2, 2], [2, 2]]}, 155_930),
    ("cnn", {"channels": [16, 32], "dropout": 0.5}, 5_466),
])
def test_custom_net_params(name, params, total):
    model = build_spectrogram_model(name, "default", params=params)
    assert param_counts(model) == (total, total)
    assert model(model_input(model)).shape == (2, 10)


def test_resnet_phases_of_last_then_all():
    model = build_spectrogram_model("resnet18", "last_then_all")
    assert model.head_epochs == 5 and model.phase_change_epochs == (5,)
    for epoch in range(5):
        model.set_epoch(epoch)
        assert param_counts(model) == (11_181_642, 5_130)
    model.set_epoch(5)
    assert param_counts(model) == (11_181_642, 11_181_642)
    model.set_epoch(0)  # going back re-freezes (a restarted trainer)
    assert param_counts(model)[1] == 5_130

    now = build_spectrogram_model("resnet18", "last_then_all", params={"head_epochs": 0})
    assert param_counts(now)[1] == 11_181_642 and now.phase_change_epochs == ()
    full = build_spectrogram_model("resnet18", "finetune_all")
    assert full.head_epochs is None and full.phase_change_epochs == ()


# --- forward and backward ---------------------------------------------------------------------------

def check_step(model, size: int = 128) -> None:
    """Forward + backward in train mode: logits (2, 10), gradients on exactly the trainable parameters."""
    model.train()
    model.zero_grad(set_to_none=True)
    logits = model(model_input(model, size=size))
    assert logits.shape == (2, 10) and logits.dtype == torch.float32
    nn.functional.cross_entropy(logits, torch.tensor([0, 9])).backward()
    for pname, p in model.named_parameters():
        assert (p.grad is not None) == p.requires_grad, pname
        if p.grad is not None:
            assert torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize(("name", "variant"), [nv for nv in ALL_VARIANTS if nv[0] != "vgg16"])
def test_forward_backward(name, variant):
    check_step(build_spectrogram_model(name, variant))


@pytest.mark.slow
def test_vgg16_forward_backward_and_cached_head():
    """One test for the heavy net: full fine-tune step, then fc7's frozen trunk and head."""
    torch.manual_seed(0)
    check_step(build_spectrogram_model("vgg16", "finetune_all"))
    model = build_spectrogram_model("vgg16", "fc7")
    check_step(model)
    assert_trunk_head_exact(model)


# --- trunk / head caching ---------------------------------------------------------------------------

def assert_trunk_head_exact(model) -> None:
    trunk, head = model.frozen_trunk(), model.head()
    assert trunk is not None and head is not None
    x = model_input(model, seed=1)
    model.eval()
    with torch.no_grad():
        features = trunk(x)
        assert torch.equal(head(features), model(x))
        model.train()  # the frozen trunk stays deterministic in train mode: cached activations stay exact
        trunk.train()
        assert torch.equal(trunk(x), features)
    assert all(not p.requires_grad for p in trunk.parameters())
    assert all(p.requires_grad for p in head.parameters())
    total, trainable = param_counts(model)
    assert sum(p.numel() for p in head.parameters()) == trainable
    assert sum(p.numel() for p in trunk.parameters()) == total - trainable


@pytest.mark.parametrize(("name", "variant"), [nv for nv in CACHED_VARIANTS if nv[0] == "alexnet"])
def test_trunk_head_caching_is_exact(name, variant):
    torch.manual_seed(0)
    assert_trunk_head_exact(build_spectrogram_model(name, variant))


def test_trunk_head_split_layers():
    """The split puts a Dropout right before the new layer in the head, kept frozen FC (+ReLU) in the trunk."""
    def layers(module):
        return [type(m).__name__ for m in module]

    with torch.device("meta"):
        build = build_spectrogram_model
        a6, a7, a8 = (build("alexnet", v) for v in ("fc6", "fc7", "fc8"))
        v6, v7, v8 = (build("vgg16", v) for v in ("fc6", "fc7", "fc8"))
        kept = build("vgg16", "fc8", params={"train_kept_fc": True})
    stem = ["Sequential", "AdaptiveAvgPool2d", "Flatten"]
    assert layers(a6.frozen_trunk()) == stem and layers(a6.head()) == ["Dropout", "Linear"]
    assert layers(a7.frozen_trunk()) == [*stem, "Dropout", "Linear", "ReLU"]
    assert layers(a7.head()) == ["Dropout", "Linear"]
    assert layers(a8.frozen_trunk()) == [*stem, "Dropout", "Linear", "ReLU", "Dropout", "Linear", "ReLU"]
    assert layers(a8.head()) == ["Linear"]
    assert layers(v6.frozen_trunk()) == stem and layers(v6.head()) == ["Linear"]
    assert layers(v7.frozen_trunk()) == [*stem, "Linear", "ReLU"] and layers(v7.head()) == ["Dropout", "Linear"]
    assert layers(v8.head()) == ["Dropout", "Linear"]
    assert layers(kept.frozen_trunk()) == stem and len(kept.head()) == 7
    assert a8.head()[0].out_features == 10 and a8.head()[0].in_features == 4096


def test_no_trunk_where_nothing_is_always_frozen():
    with torch.device("meta"):
        for name, variant in [("cnn", "default"), ("crnn", "default"), ("alexnet", "finetune_all"),
                              ("vgg16", "finetune_all"), ("resnet18", "last_then_all"), ("resnet18", "finetune_all")]:
            model = build_spectrogram_model(name, variant)
            assert model.frozen_trunk() is None and model.head() is None, (name, variant)


def test_train_kept_fc_trunk_is_exact_too():
    torch.manual_seed(0)
    assert_trunk_head_exact(build_spectrogram_model("alexnet", "fc8", params={"train_kept_fc": True}))


def test_frozen_trunk_stays_in_eval_after_train():
    model = build_spectrogram_model("alexnet", "fc7")
    model.train()
    assert model.training and model.net.classifier[-1].training and model.net.classifier[-2].training  # head
    assert not model.net.features.training and not model.net.classifier[0].training  # frozen Dropout
    model.eval()
    assert not any(m.training for m in model.modules())


# --- ResNet18 phase 1: BatchNorm kept in eval -------------------------------------------------------

def test_resnet_phase1_keeps_trunk_batchnorm_in_eval():
    torch.manual_seed(0)
    model = build_spectrogram_model("resnet18", "last_then_all", params={"head_epochs": 2})
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    before = [bn.running_mean.clone() for bn in bns]
    model.train()
    assert model.training and model.net.fc.training
    assert not any(bn.training for bn in bns)
    check_step(model, size=64)  # gradients only on fc (64 px: BatchNorm's behaviour does not need 128)
    assert all(torch.equal(bn.running_mean, b) for bn, b in zip(bns, before))
    assert [n for n, p in model.named_parameters() if p.grad is not None] == ["net.fc.weight", "net.fc.bias"]

    model.set_epoch(1)
    assert not any(bn.training for bn in bns)
    model.set_epoch(2)  # phase 2: everything trains, BatchNorm follows train()
    assert all(bn.training for bn in bns)
    check_step(model, size=64)
    assert not all(torch.equal(bn.running_mean, b) for bn, b in zip(bns, before))
    model.eval()
    model.set_epoch(0)  # set_epoch keeps the model's own mode
    assert not model.training and not any(m.training for m in model.modules())


# --- input ------------------------------------------------------------------------------------------

def test_to_model_input_values_layout_and_device():
    x = torch.zeros(1, 2, 4, 3, dtype=torch.uint8)
    x[0, 0, 0] = torch.tensor([0, 128, 255], dtype=torch.uint8)
    x[0, 1, 3] = torch.tensor([255, 255, 255], dtype=torch.uint8)
    unit = to_model_input(x, "unit")
    assert unit.shape == (1, 3, 2, 4) and unit.dtype == torch.float32 and unit.device == x.device
    assert unit.is_contiguous()
    assert torch.allclose(unit[0, :, 0, 0], torch.tensor([0.0, 128 / 255, 1.0]))
    assert torch.allclose(unit[0, :, 1, 3], torch.ones(3))
    assert unit.sum().item() == pytest.approx(128 / 255 + 4.0)

    net = to_model_input(x, "imagenet", channels_last=True)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(net[0, :, 0, 0], (torch.tensor([0.0, 128 / 255, 1.0]) - mean) / std)
    assert torch.allclose(net[0, :, 1, 1], -mean / std)
    assert net.is_contiguous(memory_format=torch.channels_last)
    assert x[0, 0, 0, 1].item() == 128  # the input is not modified

    with pytest.raises(ValueError):
        to_model_input(x.float(), "unit")
    with pytest.raises(ValueError):
        to_model_input(x, "per_image")


# --- weights ----------------------------------------------------------------------------------------

def test_pretrained_loads_offline_from_torch_home(torch_home):
    checkpoints, calls = torch_home
    saved = save_torchvision_state("resnet18", checkpoints / "resnet18-f37072fd.pth")
    path = str(checkpoints / "resnet18-f37072fd.pth")
    assert check_weights("resnet18", "pretrained", None) == f"pretrained:IMAGENET1K_V1 ({path})"
    model = build_spectrogram_model("resnet18", "last_then_all", weights="pretrained")
    state = model.net.state_dict()
    for key in ("conv1.weight", "layer4.1.conv2.weight", "bn1.running_var", "layer2.0.downsample.1.weight"):
        assert torch.equal(state[key], saved[key]), key
    assert model.net.fc.weight.shape == (10, 512)  # the 1000-class fc was loaded, then replaced
    assert model.weights == f"pretrained:IMAGENET1K_V1 ({path})"
    assert calls == []


def test_pretrained_alexnet_keeps_the_loaded_fc_layers(torch_home):
    checkpoints, _ = torch_home
    saved = save_torchvision_state("alexnet", checkpoints / WEIGHT_FILES["alexnet"])
    model = build_spectrogram_model("alexnet", "fc8", weights="pretrained")
    state = model.net.state_dict()
    for key in ("features.0.weight", "features.10.bias", "classifier.1.weight", "classifier.4.weight"):
        assert torch.equal(state[key], saved[key]), key
    assert state["classifier.6.weight"].shape == (10, 4096)
    assert param_counts(model) == EXPECTED_COUNTS["alexnet", "fc8"]


def test_weights_dir_is_looked_in_first(torch_home, tmp_path):
    checkpoints, _ = torch_home
    save_torchvision_state("resnet18", checkpoints / WEIGHT_FILES["resnet18"])
    mine = save_torchvision_state("resnet18", tmp_path / "mine" / WEIGHT_FILES["resnet18"])
    model = build_spectrogram_model("resnet18", "finetune_all", weights="pretrained",
                                    weights_dir=str(tmp_path / "mine"))
    assert torch.equal(model.net.conv1.weight, mine["conv1.weight"])
    assert str(tmp_path / "mine") in model.weights


@pytest.mark.parametrize("name", IMAGENET_MODELS)
def test_missing_weights_is_one_sentence_naming_file_folder_and_key(torch_home, name):
    checkpoints, calls = torch_home
    with pytest.raises(WeightsError) as info:
        check_weights(name, "pretrained", None)
    message = str(info.value)
    assert isinstance(info.value, RaygenreError)
    assert WEIGHT_FILES[name] in message and str(checkpoints) in message and "weights.source" in message
    assert "\n" not in message and message.endswith(".") and ". " not in message
    assert "URLError" in message
    assert calls and calls[0][0].endswith(WEIGHT_FILES[name]) and calls[0][1] == str(checkpoints / WEIGHT_FILES[name])
    assert not any(checkpoints.iterdir())  # nothing half-written left behind


def test_missing_weights_with_weights_dir_names_it(torch_home, tmp_path):
    with pytest.raises(WeightsError) as info:
        build_spectrogram_model("vgg16", "fc6", weights="pretrained", weights_dir=str(tmp_path / "nowhere"))
    message = str(info.value)
    assert "vgg16-397923af.pth" in message and str(tmp_path / "nowhere") in message and "weights.dir" in message


def test_download_goes_to_the_hub_folder_with_its_hash_prefix(torch_home, monkeypatch):
    checkpoints, _ = torch_home
    seen = {}

    def fake_download(url, dst, hash_prefix=None, progress=True):
        seen.update(url=url, dst=dst, hash_prefix=hash_prefix)
        save_torchvision_state("resnet18", Path(dst))

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    target = checkpoints / WEIGHT_FILES["resnet18"]
    assert check_weights("resnet18", "pretrained", None) == f"pretrained:IMAGENET1K_V1 ({target})"
    assert seen == {"url": "https://download.pytorch.org/models/resnet18-f37072fd.pth", "dst": str(target),
                    "hash_prefix": "f37072fd"}


def test_weights_from_a_path(torch_home, tmp_path):
    saved = save_torchvision_state("resnet18", tmp_path / "local" / "r18.pth")
    path = str(tmp_path / "local" / "r18.pth")
    assert check_weights("resnet18", path, None) == f"file:{path}"
    model = build_spectrogram_model("resnet18", "finetune_all", weights=path)
    assert torch.equal(model.net.layer1[0].conv1.weight, saved["layer1.0.conv1.weight"])
    assert model.weights == f"file:{path}"

    missing = str(tmp_path / "absent.pth")
    with pytest.raises(WeightsError, match="weights.source") as info:
        build_spectrogram_model("resnet18", "finetune_all", weights=missing)
    assert missing in str(info.value) and "\n" not in str(info.value)

    with pytest.raises(WeightsError, match="does not fit") as info:  # an AlexNet file given for ResNet18
        build_spectrogram_model("alexnet", "fc6", weights=path)
    assert "\n" not in str(info.value)

    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(WeightsError, match="could not be read"):
        build_spectrogram_model("resnet18", "finetune_all", weights=str(junk))


def test_custom_net_from_a_path_and_pretrained_refused(tmp_path):
    torch.manual_seed(0)
    first = build_spectrogram_model("cnn", "default").eval()
    torch.save(first.net.state_dict(), tmp_path / "cnn.pth")
    second = build_spectrogram_model("cnn", "default", weights=str(tmp_path / "cnn.pth")).eval()
    x = model_input(first)
    assert torch.equal(first(x), second(x))
    for name in ("cnn", "crnn"):
        with pytest.raises(ConfigError, match="pretrained"):
            build_spectrogram_model(name, "default", weights="pretrained")
        with pytest.raises(ConfigError):
            check_weights(name, "pretrained", None)
    assert check_weights("cnn", "random", None) == "random"


# --- config errors ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "variant", "params", "needle"), [
    ("cnn", "default", {"widht": 3}, "widht"),
    ("crnn", "default", {"lstm_units": 64}, "lstm_units"),
    ("alexnet", "fc7", {"head_epochs": 2}, "head_epochs"),
    ("resnet18", "last_then_all", {"train_kept_fc": True}, "train_kept_fc"),
    ("cnn", "default", {"dropout": 1.5}, "params.dropout"),
    ("crnn", "default", {"rnn": "transformer"}, "params.rnn"),
    ("crnn", "default", {"pools": [[2, 2]]}, "params.pools"),
    ("crnn", "default", {"hidden_size": True}, "params.hidden_size"),
    ("cnn", "default", {"kernel_size": 4}, "params.kernel_size"),
    ("resnet18", "last_then_all", {"head_epochs": -1}, "params.head_epochs"),
    ("inception", "default", None, "inception"),
    ("vgg16", "fc9", None, "fc9"),
    ("cnn", "fc6", None, "fc6"),
])
def test_config_errors_name_the_key(name, variant, params, needle):
    with pytest.raises(ConfigError) as info:
        build_spectrogram_model(name, variant, params=params)
    assert needle in str(info.value) and "\n" not in str(info.value)


# --- the CRNN's axes --------------------------------------------------------------------------------

def rnn_inputs(model, x: torch.Tensor) -> torch.Tensor:
    seen = []
    handle = model.net.rnn.register_forward_hook(lambda _m, args, _out: seen.append(args[0].detach()))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return seen[0]


def test_crnn_runs_its_recurrent_layer_along_time_columns():
    model = build_spectrogram_model("crnn", "default").eval()
    x = model_input(model)
    with torch.no_grad():
        maps = model.net.convs(x)
    assert maps.shape == (2, 128, 1, 16)  # mel (H) pooled 128 -> 1, time (W) 128 -> 16
    steps = rnn_inputs(model, x)
    assert steps.shape == (2, 16, 128)    # batch_first: 16 time steps of 128 features
    assert model.net.rnn.batch_first and model.net.rnn.bidirectional and isinstance(model.net.rnn, nn.LSTM)

    # Time locality: changing the last 32 columns (the end of the clip) leaves the first time steps alone,
    # because each step only sees the columns under its receptive field; changing rows (mel bands) alone
    # reaches every step.
    later = x.clone()
    later[..., 96:] = -later[..., 96:]
    moved = rnn_inputs(model, later)
    assert torch.allclose(moved[:, :8], steps[:, :8], rtol=0, atol=1e-6)
    assert not torch.allclose(moved[:, 12:], steps[:, 12:])
    higher = x.clone()
    higher[:, :, :32, :] = 3.0
    assert not torch.allclose(rnn_inputs(model, higher)[:, 0], steps[:, 0])


def test_crnn_pools_leftover_mel_rows_away():
    model = build_spectrogram_model("crnn", "default", params={
        "channels": [8, 16], "pools": [[2, 2], [2, 4]], "rnn": "gru", "bidirectional": False,
        "readout": "last"}).eval()
    x = model_input(model)
    assert rnn_inputs(model, x).shape == (2, 16, 16)  # 32 mel rows left, max-pooled; 128 / 8 time steps
    assert model(x).shape == (2, 10)


@pytest.mark.slow  # librosa's first mel spectrogram JIT-compiles (~20 s on a cold numba cache)
def test_mel_image_rows_run_from_high_to_low_frequency():
    """Where the CRNN's axes come from: a pure tone lands in the row of its mel band, highest band in row 0."""
    import librosa

    from raygenre.data.features import colormap_lut, mel_image

    sr = 22050
    lut = colormap_lut("viridis").astype(np.int64)
    centres = librosa.mel_frequencies(n_mels=130, fmin=0.0, fmax=sr / 2)[1:-1]  # the 128 bands' centres
    rows = {}
    for freq in (200.0, 1000.0, 8000.0):
        y = (0.5 * np.sin(2 * np.pi * freq * np.arange(3 * sr) / sr)).astype(np.float32)
        image = mel_image(y, sr)
        assert image.shape == (128, 128, 3) and image.dtype == np.uint8
        level = np.abs(image.astype(np.int64)[:, :, None, :] - lut[None, None]).sum(-1).argmin(-1)
        rows[freq] = int(level.mean(axis=1).argmax())  # the brightest row over time
        assert rows[freq] == 127 - int(np.abs(centres - freq).argmin())
    assert rows[8000.0] < rows[1000.0] < rows[200.0]
    assert rows[8000.0] < 16 and rows[200.0] > 112


# --- no Ray -----------------------------------------------------------------------------------------

def test_models_and_bench_import_without_ray():
    code = (
        "import importlib.util, sys\n"
        "import raygenre.models.spectrogram\n"
        "spec = importlib.util.spec_from_file_location('tt', 'bench/train_throughput.py')\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "bad = sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120)
