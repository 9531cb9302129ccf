"""The Wav2Vec2 waveform models on a tiny saved backbone: weights, heads, freezing, input, chunking."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from transformers import Wav2Vec2Model

from raygenre.errors import ConfigError, WeightsError
from raygenre.models import wav2vec2_weights
from raygenre.models.optim import make_scheduler, step_scheduler
from raygenre.models.waveform import (
    DEFAULT_BACKBONE,
    DEFAULT_TRAINING,
    WAVEFORM_VARIANTS,
    WaveformClassifier,
    build_head,
    build_waveform_model,
    check_backbone,
    chunk_windows,
    load_backbone,
    normalize_clip,
    param_counts,
)

sys.path.insert(0, str(Path(__file__).parent))
from wav2vec2_tiny import TINY_HIDDEN, TINY_LAYERS, TINY_REPO_ID, populate_hub_cache, save_tiny  # noqa: E402

N, T = 4, 3200  # 0.2 s at 16 kHz: 39 frames of the tiny backbone
TINY_BACKBONE_PARAMS = 35_120
TINY_FROZEN_HEAD = TINY_HIDDEN * 128 + 128 + 128 * 10 + 10  # 5,514


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("wav2vec2-tiny"))


@pytest.fixture
def backbone(tiny_dir: Path) -> Wav2Vec2Model:
    return load_backbone(str(tiny_dir))


@pytest.fixture
def offline_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def batch(seed: int = 0, n: int = N, t: int = T) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    wave = normalize_clip(torch.randn(n, t, generator=gen), t)
    return wave, torch.arange(n) % 10


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> set[str]:
    return {k for k, v in module.named_parameters() if not torch.equal(before[k], v)}


def train_step(model: WaveformClassifier, optimizer: torch.optim.Optimizer, seed: int = 0) -> float:
    wave, labels = batch(seed)
    model.train()
    optimizer.zero_grad()
    loss = torch.nn.functional.cross_entropy(model(wave), labels)
    loss.backward()
    optimizer.step()
    return loss.item()


def assert_one_sentence(message: str) -> None:
    assert message.endswith(".") and ". " not in message and "\n" not in message, message


# --------------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------------

def test_load_from_folder_as_weights_or_name(tiny_dir: Path) -> None:
    reference = Wav2Vec2Model.from_pretrained(tiny_dir)
    wave, _ = batch()
    expected = reference.eval()(wave).last_hidden_state
    for model in (load_backbone(str(tiny_dir)), load_backbone("pretrained", name_or_path=str(tiny_dir))):
        assert model.dtype == torch.float32
        assert torch.equal(model.eval()(wave).last_hidden_state, expected)
    assert str(tiny_dir) in check_backbone(str(tiny_dir), DEFAULT_BACKBONE, None, None)


def test_load_by_name_from_hub_cache(tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "hub"
    populate_hub_cache(cache, TINY_REPO_ID, tiny_dir)
    for name in wav2vec2_weights._OFFLINE_ENV:
        monkeypatch.delenv(name, raising=False)
    # cached files are loaded with local_files_only, so even "online" makes no hub request
    monkeypatch.setattr(wav2vec2_weights, "_hub_reachable", lambda *a: pytest.fail("probed the hub for a cached model"))
    for offline in (True, None):
        model = load_backbone(name_or_path=TINY_REPO_ID, cache_dir=str(cache), offline=offline)
        assert model.config.hidden_size == TINY_HIDDEN
    description = check_backbone("pretrained", TINY_REPO_ID, str(cache), None)
    assert "Hugging Face cache" in description and TINY_REPO_ID in description


def test_random_weights_are_explicit(tiny_dir: Path) -> None:
    model = load_backbone("random", name_or_path=str(tiny_dir))
    saved = Wav2Vec2Model.from_pretrained(tiny_dir)
    assert model.config.hidden_size == TINY_HIDDEN
    assert not torch.equal(model.encoder.layers[0].attention.q_proj.weight,
                           saved.encoder.layers[0].attention.q_proj.weight)
    assert "random init" in check_backbone("random", DEFAULT_BACKBONE, None, None)
    with pytest.raises(WeightsError, match="random Wav2Vec2 weights"):
        check_backbone("random", "someone/other-model", None, None)


def test_missing_weights_offline_is_one_fast_sentence(tmp_path: Path, offline_env: None) -> None:
    cache = tmp_path / "empty-hub"
    start = time.perf_counter()
    with pytest.raises(WeightsError) as info:
        load_backbone(cache_dir=str(cache))
    assert time.perf_counter() - start < 3
    message = str(info.value)
    assert_one_sentence(message)
    assert DEFAULT_BACKBONE in message and str(cache) in message and "weights.source" in message
    with pytest.raises(WeightsError, match="weights.source"):
        check_backbone("pretrained", DEFAULT_BACKBONE, str(cache), None)


def test_unreachable_hub_fails_without_retries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wav2vec2_weights, "_hub_reachable", lambda *a: False)
    with pytest.raises(WeightsError, match="cannot be reached") as info:
        load_backbone(cache_dir=str(tmp_path), offline=False)
    assert_one_sentence(str(info.value))


@pytest.mark.slow
def test_offline_sentence_in_fresh_process_with_empty_hf_home(tmp_path: Path) -> None:
    """HF_HOME and HF_HUB_OFFLINE as a user sets them, before anything is imported; no Ray imported either."""
    script = (
        "import json, sys, time\n"
        "from raygenre.models.waveform import load_backbone\n"
        "from raygenre.errors import WeightsError\n"
        "start = time.perf_counter()\n"
        "try:\n"
        "    load_backbone()\n"
        "except WeightsError as exc:\n"
        "    message = str(exc)\n"
        "print(json.dumps({'seconds': time.perf_counter() - start, 'message': message,\n"
        "                  'ray': any(m == 'ray' or m.startswith('ray.') for m in sys.modules)}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["seconds"] < 3 and not result["ray"]
    assert_one_sentence(result["message"])
    assert DEFAULT_BACKBONE in result["message"] and "weights.source" in result["message"]
    assert str(tmp_path / "hf" / "hub") in result["message"]


def test_bad_local_folders(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="does not exist") as info:
        load_backbone(str(tmp_path / "nowhere"))
    assert_one_sentence(str(info.value))
    (tmp_path / "config-only").mkdir()
    (tmp_path / "config-only" / "config.json").write_text("{}")
    with pytest.raises(WeightsError, match="no model.safetensors"):
        check_backbone(str(tmp_path / "config-only"), DEFAULT_BACKBONE, None, None)
    with pytest.raises(WeightsError, match="does not exist"):
        load_backbone(name_or_path="./not/a/folder", offline=True)


# --------------------------------------------------------------------------------------------------
# Heads and parameters
# --------------------------------------------------------------------------------------------------

def test_head_param_counts_for_base() -> None:
    frozen = 768 * 128 + 128 + 128 * 10 + 10
    assert frozen == 99_722
    assert param_counts(build_head("frozen", 768)) == (99_722, 99_722)
    # 768->256 (196,864) + BN 512 + 256->128 (32,896) + BN 256 + 128->10 (1,290)
    assert param_counts(build_head("progressive", 768)) == (231_818, 231_818)
    assert param_counts(build_head("progressive", 768, norm="layer")) == (231_818, 231_818)
    assert param_counts(build_head("layer_probe", 768, n_layers=13)) == (99_735, 99_735)
    assert [m.p for m in build_head("progressive", 768) if isinstance(m, torch.nn.Dropout)] == [0.3, 0.2]
    assert [m.p for m in build_head("frozen", 768) if isinstance(m, torch.nn.Dropout)] == [0.3]


@pytest.mark.parametrize("variant,head", [("frozen", TINY_FROZEN_HEAD), ("layer_probe", TINY_FROZEN_HEAD + 3),
                                          ("progressive", TINY_HIDDEN * 256 + 256 + 512 + 32_896 + 256 + 1290)])
def test_model_counts_only_head_trainable_while_frozen(backbone: Wav2Vec2Model, variant: str, head: int) -> None:
    model = build_waveform_model(variant, backbone=backbone)
    assert param_counts(model) == (TINY_BACKBONE_PARAMS + head, head)


def test_params_and_variants_are_checked(backbone: Wav2Vec2Model) -> None:
    with pytest.raises(ConfigError, match="'frozen_epoch'"):
        build_waveform_model("progressive", backbone=backbone, params={"frozen_epoch": 3})
    with pytest.raises(ConfigError, match="'frozen_epochs'"):
        build_waveform_model("frozen", backbone=backbone, params={"frozen_epochs": 3})
    with pytest.raises(ConfigError, match="'chunk_seconds'"):
        build_waveform_model("frozen", backbone=backbone, params={"chunk_seconds": 0})
    with pytest.raises(ConfigError, match="unknown waveform variant 'finetuned'") as info:
        build_waveform_model("finetuned", backbone=backbone)
    assert_one_sentence(str(info.value))


def test_training_defaults_follow_the_study() -> None:
    assert set(DEFAULT_TRAINING) == set(WAVEFORM_VARIANTS)
    assert DEFAULT_TRAINING["frozen"] == {"learning_rate": 1e-3, "epochs": 10, "schedule": "constant"}
    assert DEFAULT_TRAINING["progressive"]["learning_rate"] == 1e-4
    assert DEFAULT_TRAINING["progressive"]["epochs"] == 15
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-4)
    scheduler = make_scheduler(optimizer, DEFAULT_TRAINING["progressive"]["schedule"], 15)
    for _ in range(4):
        step_scheduler(scheduler, 1.0)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-5)


# --------------------------------------------------------------------------------------------------
# Training behaviour
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", WAVEFORM_VARIANTS)
def test_each_variant_trains_a_step(backbone: Wav2Vec2Model, variant: str) -> None:
    model = build_waveform_model(variant, backbone=backbone, params={"frozen_epochs": 0} if variant == "progressive"
                                 else None)
    optimizer = torch.optim.AdamW(model.optimizer_parameters(), lr=1e-3)
    head_before, backbone_before = snapshot(model.head), snapshot(model.backbone)
    loss = train_step(model, optimizer)
    assert loss == loss  # not NaN
    assert changed(head_before, model.head) == set(head_before)
    moved = changed(backbone_before, model.backbone)
    if variant == "progressive":  # unfrozen from epoch 0: transformer trains, conv encoder does not
        assert any(k.startswith("encoder.") for k in moved)
        assert not any(k.startswith("feature_extractor.") for k in moved)
    else:
        assert moved == set()


@pytest.mark.parametrize("variant", WAVEFORM_VARIANTS)
def test_frozen_backbone_stays_in_eval_mode(backbone: Wav2Vec2Model, variant: str) -> None:
    model = build_waveform_model(variant, backbone=backbone)
    wave, _ = batch()
    model.eval()
    reference = model.embed(wave)
    model.train()
    assert model.head.training
    assert not any(m.training for m in model.backbone.modules())
    # train mode would apply SpecAugment (>= 2 ten-frame masks here) and LayerDrop if the backbone followed
    assert torch.equal(model.embed(wave), reference)
    assert not model.embed(wave).requires_grad


def test_unfreeze_happens_at_the_configured_epoch(backbone: Wav2Vec2Model) -> None:
    model = build_waveform_model("progressive", backbone=backbone, params={"frozen_epochs": 2})
    optimizer = torch.optim.AdamW(model.optimizer_parameters(), lr=1e-3)  # built once, before the unfreeze
    encoder_ids = {id(p) for p in model.backbone.feature_extractor.parameters()}
    assert not any(id(p) in encoder_ids for p in model.optimizer_parameters())
    for epoch in (0, 1):
        model.set_epoch(epoch)
        before = snapshot(model.backbone)
        train_step(model, optimizer, seed=epoch)
        assert not any(p.requires_grad for p in model.backbone.parameters())
        assert not model.backbone.training
        assert changed(before, model.backbone) == set()
    model.set_epoch(2)
    assert all(p.requires_grad for p in model.backbone.encoder.parameters())
    assert all(p.requires_grad for p in model.backbone.feature_projection.parameters())
    assert not any(p.requires_grad for p in model.backbone.feature_extractor.parameters())
    assert model.backbone.feature_extractor._requires_grad is False
    model.train()
    assert model.backbone.training  # unfrozen: SpecAugment / LayerDrop regularise fine-tuning
    before = snapshot(model.backbone)
    train_step(model, optimizer, seed=2)
    moved = changed(before, model.backbone)
    assert any(k.startswith("encoder.") for k in moved) and not any(k.startswith("feature_extractor.") for k in moved)
    model.set_epoch(1)  # a resumed run re-applies the schedule
    assert not any(p.requires_grad for p in model.backbone.parameters())


def test_feature_encoder_trains_when_configured(backbone: Wav2Vec2Model) -> None:
    model = build_waveform_model("progressive", backbone=backbone,
                                 params={"frozen_epochs": 1, "train_feature_encoder": True})
    assert not any(p.requires_grad for p in model.backbone.parameters())
    model.set_epoch(1)
    assert all(p.requires_grad for p in model.backbone.parameters())
    before = snapshot(model.backbone)
    train_step(model, torch.optim.AdamW(model.optimizer_parameters(), lr=1e-3))
    assert any(k.startswith("feature_extractor.") for k in changed(before, model.backbone))


@pytest.mark.parametrize("chunk", [None, 0.1])
@pytest.mark.parametrize("variant", WAVEFORM_VARIANTS)
def test_head_on_cached_embedding_equals_forward(backbone: Wav2Vec2Model, variant: str, chunk: float | None) -> None:
    model = build_waveform_model(variant, backbone=backbone, params={"chunk_seconds": chunk}).eval()
    wave, _ = batch(t=4000)
    features = model.embed(wave)
    windows = () if chunk is None else (3,)  # 4000 samples in 1600-sample windows
    layers = (TINY_LAYERS + 1,) if variant == "layer_probe" else ()
    assert features.shape == (N, *windows, *layers, TINY_HIDDEN)
    with torch.no_grad():
        assert torch.equal(model.head_forward(features), model(wave))
    assert model(wave).shape == (N, 10)


def test_chunked_logits_are_the_mean_of_window_logits(backbone: Wav2Vec2Model) -> None:
    model = build_waveform_model("frozen", backbone=backbone, params={"chunk_seconds": 0.1}).eval()
    plain = build_waveform_model("frozen", backbone=backbone).eval()
    plain.head.load_state_dict(model.head.state_dict())
    wave, _ = batch(t=3200)
    windows = chunk_windows(wave, 1600)
    expected = torch.stack([plain(windows[:, i]) for i in range(2)], dim=1).mean(dim=1)
    with torch.no_grad():
        assert torch.allclose(model(wave), expected, atol=1e-5)


# --------------------------------------------------------------------------------------------------
# Input
# --------------------------------------------------------------------------------------------------

def test_normalize_pads_after_standardising() -> None:
    wave = 3.0 + 0.5 * torch.randn(2, 1000, generator=torch.Generator().manual_seed(1))
    out = normalize_clip(wave, 1600)
    assert out.shape == (2, 1600)
    real = out[:, :1000]
    assert torch.allclose(real.mean(1), torch.zeros(2), atol=1e-5)
    assert torch.allclose(real.std(1, unbiased=False), torch.ones(2), atol=1e-4)
    assert torch.equal(out[:, 1000:], torch.zeros(2, 600))


def test_normalize_crops_long_clips_and_honours_lengths() -> None:
    gen = torch.Generator().manual_seed(2)
    long = torch.cat([torch.randn(1, 800, generator=gen), 10 + torch.randn(1, 400, generator=gen)], dim=1)
    cropped = normalize_clip(long, 800)
    assert cropped.shape == (1, 800)
    assert float(cropped.mean()) == pytest.approx(0, abs=1e-5)
    assert float(cropped.std(unbiased=False)) == pytest.approx(1, abs=1e-4)
    # a shard row already zero-padded to 1200: stats from its 700 real samples only
    padded = torch.cat([5 + 2 * torch.randn(1, 700, generator=gen), torch.zeros(1, 500)], dim=1)
    out = normalize_clip(padded, 1200, lengths=torch.tensor([700]))
    assert float(out[:, :700].mean()) == pytest.approx(0, abs=1e-5)
    assert float(out[:, :700].std(unbiased=False)) == pytest.approx(1, abs=1e-4)
    assert torch.equal(out[:, 700:], torch.zeros(1, 500))
    assert normalize_clip(padded[0], 900).shape == (900,)


def test_chunk_window_shapes() -> None:
    wave = torch.arange(20.0).reshape(2, 10)
    windows = chunk_windows(wave, 4)
    assert windows.shape == (2, 3, 4)
    assert torch.equal(windows[:, 2], wave[:, 6:10])  # last window is the clip's tail, not padding
    assert chunk_windows(wave, 5).shape == (2, 2, 5)
    short = chunk_windows(wave[:, :3], 4)
    assert short.shape == (2, 1, 4) and torch.equal(short[:, 0, 3], torch.zeros(2))
    assert chunk_windows(torch.zeros(1, 480_000), 160_000).shape == (1, 3, 160_000)


def test_no_ray_in_model_or_bench() -> None:
    root = Path(__file__).parents[1]
    for path in (root / "raygenre/models/waveform.py", root / "raygenre/models/wav2vec2_weights.py",
                 root / "bench/wav2vec2_throughput.py"):
        tree = ast.parse(path.read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not [m for m in names if m == "ray" or m.startswith("ray.")], path
