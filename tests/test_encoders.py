"""Experiment 5's encoders on the one embedding stage: tiny AST, MERT, CLAP and Wav2Vec2 saved with
save_pretrained, each embedded once on Ray Data, cached, probed; a toy encoder plugged in from this file."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
import torch

from raygenre.config import ExperimentConfig
from raygenre.errors import WeightsError
from raygenre.models.encoders.base import FrozenEncoder
from raygenre.records import validate_record
from raygenre.train.plan import plan_experiment

sys.path.insert(0, str(Path(__file__).parent))
from encoders_tiny import save_tiny_encoder  # noqa: E402
from test_waveform_training import write_wave_shards  # noqa: E402

ENCODERS = ("wav2vec2", "ast", "mert", "clap")
#: (layers, hidden) each tiny encoder caches per clip: hidden states + embeddings, or CLAP's projection
SHAPES = {"wav2vec2": [3, 32], "ast": [3, 32], "mert": [5, 16], "clap": [1, 16], "toy": [2, 4]}


def exp5_specs(models: list[dict], train: dict | None = None, **weights) -> list[dict]:
    cfg = ExperimentConfig.model_validate({
        "experiment": "exp5", "prepare": {"representations": ["waveform"]}, "models": models,
        "split": {"test_fraction": 0.25}, "weights": {"source": "pretrained", **weights},
        "train": {"epochs": 3, "batch_size": 8, "workers": 0, **(train or {})}})
    return plan_experiment(cfg)


@pytest.fixture(scope="module")
def stage(ray_session, tmp_path_factory):
    """Shards, a tiny save_pretrained folder per encoder class, every cache computed once, then a second call."""
    from raygenre.data.embeddings import ensure_embeddings

    root = tmp_path_factory.mktemp("enc")
    ids = write_wave_shards(root, clips_per_genre=4)
    folders = {n: save_tiny_encoder(n, root / f"tiny-{n}") for n in ENCODERS}
    specs = exp5_specs([{"name": n, "variant": v, "params": {"backbone": str(folders[n])}}
                        for n in ENCODERS for v in ("linear", "mlp")])
    started = time.perf_counter()
    first = ensure_embeddings(root, specs, "h0")
    return {"root": root, "ids": ids, "folders": folders, "specs": specs, "first": first,
            "seconds": time.perf_counter() - started}


def test_each_encoder_class_embeds_once_and_a_second_run_hits_the_cache(stage, capsys):
    from raygenre.data.embeddings import MANIFEST, embedding_key, ensure_embeddings, load_embeddings

    first = stage["first"]
    assert len(first) == len(ENCODERS)  # linear and mlp rows of one encoder share its cache
    for name in ENCODERS:
        spec = next(s for s in stage["specs"] if s["model"] == name)
        folder = Path(first[embedding_key(spec, "h0")])
        manifest = json.loads((folder / MANIFEST).read_text())
        assert manifest["settings"]["encoder"] == name and manifest["rows"] == len(stage["ids"])
        assert manifest["revision"].startswith("sha256:") and manifest["settings"]["revision"] == manifest["revision"]
        assert manifest["weights"] == f"pretrained weights from local folder {stage['folders'][name]}"
        feats, got, _ = load_embeddings(folder, stage["ids"][:4])
        assert list(feats.shape[1:]) == SHAPES[name] and len(got) == 4
        assert torch.isfinite(torch.from_numpy(feats)).all() and feats.std() > 0
    stamps = {k: (Path(f) / MANIFEST).stat().st_mtime_ns for k, f in first.items()}
    capsys.readouterr()
    assert ensure_embeddings(stage["root"], stage["specs"], "h0") == first
    assert capsys.readouterr().out.count("cache hit") == len(ENCODERS)
    assert {k: (Path(f) / MANIFEST).stat().st_mtime_ns for k, f in first.items()} == stamps


def test_two_encoders_never_share_a_cache_key(stage, tmp_path):
    from raygenre.data.embeddings import embedding_key

    tiny = exp5_specs([{"name": n, "params": {"backbone": "tiny"}} for n in (*ENCODERS, "clap_unfused")],
                      source="random")
    keys = [embedding_key(s, "h0") for s in tiny]
    assert len(set(keys)) == len(keys)  # same params and weights, other encoder: another cache
    local = {embedding_key(s, "h0") for s in stage["specs"]}
    assert not local & set(keys)  # a saved folder is not the random config
    # the folder's content is in the key: other weights in the same folder are another cache
    spec = next(s for s in stage["specs"] if s["model"] == "mert")
    save_tiny_encoder("mert", tmp_path / "m", seed=0)
    before = embedding_key({**spec, "params": {"backbone": str(tmp_path / "m")}}, "h0")
    save_tiny_encoder("mert", tmp_path / "m", seed=1)
    assert embedding_key({**spec, "params": {"backbone": str(tmp_path / "m")}}, "h0") != before
    assert embedding_key(spec, "h1") != embedding_key(spec, "h0")  # another shard set


def test_probe_records_for_every_encoder_and_head(stage, tmp_path):
    from raygenre.train.trial import run_trial

    inputs = {"waveform": {"shard_dir": str(stage["root"]), "ids": stage["ids"], "embeddings": stage["first"]}}
    settings = {"run": {"data_hash": "h0", "run_dir": str(tmp_path)}, "train_storage": str(tmp_path / "train")}
    for spec in stage["specs"]:
        record = run_trial({**spec, "keep_artifact": False}, inputs, settings)
        validate_record(record)
        assert record["model"] == spec["model"] and record["variant"] == spec["variant"]
        assert record["weights"].startswith("pretrained weights from local folder")
        assert len(record["test"]["y_pred"]) == 10 and len(record["history"]) == 3
        hidden = SHAPES[spec["model"]][1]
        head = hidden * 10 + 10 if spec["variant"] == "linear" else hidden * 512 + 512 + 512 * 10 + 10
        assert record["params"]["trainable"] == head < record["params"]["total"]


def test_layer_param_picks_the_layer_and_is_checked():
    from raygenre.errors import ConfigError
    from raygenre.models.probes import cached_head

    x = torch.randn(6, 5, 16)
    head = cached_head("linear", (5, 16), False, {"layer": 2})
    head.fit_inputs(x)
    changed = x.clone()
    changed[:, 3] += 100.0  # another layer: no effect on a probe of layer 2
    torch.testing.assert_close(head(x), head(changed))
    with pytest.raises(ConfigError, match="layer' is 5, but this encoder's cache holds 5 layers"):
        cached_head("mlp", (5, 16), False, {"layer": 5})
    with pytest.raises(ConfigError, match="unknown params key 'width'"):
        cached_head("mlp", (5, 16), False, {"width": 3})


@pytest.mark.parametrize("name", ["wav2vec2", "ast", "mert", "clap", "clap_unfused"])
def test_offline_and_missing_weights_are_one_sentence_before_any_work(name, tmp_path, monkeypatch):
    from raygenre.models.encoders import preflight
    from raygenre.models.registry import ENCODERS as TABLE

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    started = time.perf_counter()
    with pytest.raises(WeightsError) as err:
        preflight(name, "pretrained", None, {})
    text = str(err.value)
    assert TABLE[name].default_id in text and str(tmp_path / "hub") in text and "weights.source" in text
    assert text.count(". ") == 0 and text.endswith(".") and time.perf_counter() - started < 5


def test_a_checkpoint_that_does_not_fit_the_config_stops_in_one_sentence(tmp_path):
    """MERT's weights go into HubertModel: a missing or unexpected key must never leave random layers."""
    from raygenre.models.encoders.mert import build

    folder = save_tiny_encoder("mert", tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 3}))
    with pytest.raises(WeightsError, match=r"checkpoint has \d+ unexpected keys .*refuses to run with randomly"):
        build({"backbone": str(folder)}, {"source": "pretrained"})
    (folder / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 5}))
    with pytest.raises(WeightsError, match=r"checkpoint misses \d+ keys \(first encoder\.layers\.4\."):
        build({"backbone": str(folder)}, {"source": "pretrained"})


# --- a toy encoder: the whole "diff" of adding one is this class, its builder and one register call ------

class ToyEncoder(FrozenEncoder):
    """Two 'layers' over 4 quarters of each window: RMS, and zero-crossing rate (a pitch cue); 8 kHz, 0.1 s."""

    def __init__(self) -> None:
        super().__init__(8000, 0.1, 0.05)

    def embed_windows(self, windows: torch.Tensor) -> torch.Tensor:
        parts = windows.reshape(len(windows), 4, -1)
        crossings = (torch.sign(parts[..., 1:]) != torch.sign(parts[..., :-1])).float().mean(-1)
        return torch.stack([parts.pow(2).mean(-1).sqrt(), crossings], dim=1)


def build_toy(params, weights):
    encoder = ToyEncoder()
    encoder.facts = {"weights": "no weights (a toy)", "revision": "toy-1", "backbone_params": 0}
    return encoder


def toy_settings(params, weights):
    return {"encoder": "toy", "id": "toy", "revision": "toy-1", "sample_rate": 8000, "window_seconds": 0.1,
            "hop_seconds": 0.05, "pooling": "RMS and crossings, mean over windows", "layers": "all",
            "weights": "no weights (a toy)", "weights_source": "pretrained"}


def test_a_toy_encoder_plugs_in_with_one_registry_entry(stage, tmp_path):
    import ray

    from raygenre.data.embeddings import ensure_embeddings
    from raygenre.models.registry import EncoderEntry, register_encoder, unregister_encoder
    from raygenre.train.trial import run_trial

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the actors cannot import a test file
    register_encoder(EncoderEntry("toy", build_toy, toy_settings, "toy", 8000, 0.1, 0.05, "RMS and crossings", "all"))
    try:
        specs = exp5_specs([{"name": "toy", "variant": "linear", "params": {"layer": 1}}],
                           train={"epochs": 40, "learning_rate": 0.05})
        caches = ensure_embeddings(stage["root"], specs, "h0")  # resampled 16 -> 8 kHz in the workers
        inputs = {"waveform": {"shard_dir": str(stage["root"]), "ids": stage["ids"], "embeddings": caches}}
        record = run_trial({**specs[0], "keep_artifact": False}, inputs,
                           {"run": {"data_hash": "h0"}, "train_storage": str(tmp_path)})
        validate_record(record)
        assert record["model"] == "toy" and record["weights"] == "no weights (a toy)"
        assert record["params"]["trainable"] == 4 * 10 + 10
        assert record["metrics"]["accuracy"] > 0.3  # each synthetic genre is a tone of its own pitch
    finally:
        unregister_encoder("toy")
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def test_a_kept_probe_answers_in_predict_as_its_record(stage, tmp_path):
    """predict's path (raygenre.models.kept_networks): the encoder rebuilt from the registry embeds each clip
    as the stage did (MERT and CLAP resample 16 kHz shards in both), the kept head gives the record's answers."""
    import numpy as np
    import pyarrow.parquet as pq

    from raygenre.genres import GENRES
    from raygenre.models.kept_networks import KeptNetwork, save_network
    from raygenre.train.waveform_runner import run_waveform

    table = pq.read_table(stage["root"] / "waveform").to_pydict()
    waves = dict(zip(table["clip_id"], table["waveform"]))
    audio = {"waveform_rate": 16000, "clip_seconds": 0.2}
    for name in ("mert", "clap"):
        spec = next(s for s in stage["specs"] if s["model"] == name and s["variant"] == "mlp")
        result = run_waveform(spec, {"shard_dir": str(stage["root"]), "ids": stage["ids"],
                                     "embeddings": stage["first"]}, {"run": {"data_hash": "h0"},
                                                                     "train_storage": str(tmp_path / "train")})
        folder = save_network(tmp_path / name, result["fitted"], {"representation": "waveform", "audio": audio,
                                                                  "model": name, "variant": "mlp"})
        meta = json.loads((folder / "model.json").read_text())
        assert meta["network"]["contains"] == "head" and meta["network"]["embedding"]["encoder"] == name
        assert meta["network"]["embedding"]["revision"].startswith("sha256:")
        assert meta["network"]["trunk"]["file"] == "model.safetensors" and meta["network"]["trunk"]["sha256"]
        kept = KeptNetwork(folder, meta)
        answers = []
        for clip in result["test"]["ids"]:
            wave = np.frombuffer(waves[clip], dtype=np.int16).astype(np.float32) / 32767.0
            answers.append(GENRES[int(np.argmax(kept.window_probabilities(wave, 16000)))])
        assert answers == result["test"]["y_pred"]


def test_exp5_paper_without_weights_stops_in_one_sentence_before_any_work(tmp_path, monkeypatch, capsys):
    import ray

    from raygenre.sweep import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    was_running = ray.is_initialized()
    assert main(["exp5", "--profile", "paper", "--data", "synthetic", "--storage", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "MIT/ast-finetuned-audioset-10-10-0.4593" in err and str(tmp_path / "hub") in err
    assert not (tmp_path / "runs").exists() and ray.is_initialized() == was_running


def _record(model: str, variant: str, ids: list[str], right: int, **extra) -> dict:
    from raygenre.genres import GENRES

    truth = [GENRES[i % 10] for i in range(len(ids))]
    pred = [t if i < right else GENRES[(GENRES.index(t) + 1) % 10] for i, t in enumerate(truth)]
    return {"experiment": "exp5", "status": "ok", "model": model, "variant": variant, "representation": "waveform",
            "split": {"name": "fault_filtered", "seed": 0}, "metrics": {"accuracy": right / len(ids)},
            "test": {"ids": ids, "y_true": truth, "y_pred": pred, "set": "test"}, "weights": "pretrained 'x'",
            "trial_key": f"{model}/{variant}", "finished_at": "2026-12-06T00:00:00", **extra}


def test_report_section_sets_encoders_beside_published_figures_with_paired_tests(tmp_path):
    from raygenre.report.encoders import draw_layers, encoder_section

    ids = [f"c{i:03d}" for i in range(290)]
    records = [
        _record("mert", "mlp", ids, 230, search={"role": "refit", "config": {"params.layer": 7}}),
        _record("wav2vec2", "linear", ids, 160, search={"role": "refit", "config": {"params.layer": 9}}),
        _record("xgboost", "default", ids, 150, experiment="exp3", representation="features", feature_set="kaggle58"),
        *[_record("mert", "mlp", ids[:50], 20 + layer, search={"role": "trial", "config": {"params.layer": layer}},
                  trial_key=f"mert/mlp/trial{layer:03d}") for layer in range(13)],  # validation-scored search trials
    ]
    for r in records[3:]:
        r["test"]["set"] = "valid"
    figure = draw_layers(records, tmp_path)
    text = encoder_section(records, figure)
    row = next(line for line in text.splitlines() if line.startswith("| mert | mlp |"))
    assert "| 79.3 |" in row and "78.6 (layer 7)" in row and "MARBLE MLP probe" in row and "| 7 |" in row
    pair = next(line for line in text.splitlines() if line.startswith("| mert mlp (fault_filtered)"))
    assert "xgboost: +27.6" in pair and "+24.1" in pair and "p <0.001 (n=290)" in pair
    assert figure and (tmp_path / figure).is_file() and "Per-layer" in text


def test_clap_loads_its_audio_tower_from_a_whole_clap_checkpoint(tmp_path):
    """The hub's CLAP repos hold the whole model: the audio tower loads, the text tower's keys are left over."""
    import transformers as tf

    from raygenre.models.encoders import clap

    text = tf.ClapTextConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                             intermediate_size=20, projection_dim=16, max_position_embeddings=40)
    torch.manual_seed(3)
    whole = tf.ClapModel(tf.ClapConfig(text_config=text.to_dict(), audio_config=clap.TINY_CONFIG, projection_dim=16))
    whole.save_pretrained(tmp_path)
    tf.ClapFeatureExtractor(**clap.TINY_FE).save_pretrained(tmp_path)
    encoder = clap.build({"backbone": str(tmp_path)}, {"source": "pretrained"})
    torch.testing.assert_close(encoder.net.audio_projection.linear1.weight, whole.audio_projection.linear1.weight)
    assert encoder.embed(torch.randn(2, 48_000 * 3) * 0.1).shape == (2, 1, 16)


def test_an_unknown_probe_param_stops_the_sweep_before_any_work(tmp_path, capsys):
    from raygenre.sweep import main

    rows = "[{name: mert, variant: mlp, params: {backbone: tiny, width: 3}}]"
    assert main(["exp5", "--storage", str(tmp_path / "runs"), "--set", f"models={rows}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown params key 'width' for the mert probes" in err
    assert not (tmp_path / "runs").exists()
