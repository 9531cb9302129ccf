"""Wav2Vec2 rows of exp3: the embedding cache (Ray Data), head trials on it, and progressive training in the loop."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from raygenre.config import ExperimentConfig
from raygenre.genres import GENRES
from raygenre.models.waveform import DEFAULT_TRAINING
from raygenre.records import build_record, validate_record
from raygenre.train.plan import plan_experiment

sys.path.insert(0, str(Path(__file__).parent))
from predict_checks import assert_predictions_match_records  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = 3200  # 0.2 s at 16 kHz: 10 frames of the package's tiny backbone


def write_wave_shards(root: Path, clips_per_genre: int, seed: int = 0) -> list[str]:
    """A ``waveform/`` folder in the prepare layout: each genre a tone of its own pitch plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(SAMPLES) / 16_000
    rows = []
    for k, genre in enumerate(GENRES):
        for i in range(clips_per_genre):
            wave = 0.5 * np.sin(2 * np.pi * (200 + 150 * k) * t) + 0.05 * rng.standard_normal(SAMPLES)
            rows.append((f"{genre}.{i:05d}", genre, (wave * 32767 * 0.5).astype(np.int16).tobytes()))
    (root / "waveform").mkdir(parents=True)
    ids, labels, blobs = zip(*rows)
    pq.write_table(pa.table({"clip_id": ids, "label": labels, "parent_id": ids,
                             "transform": ["original"] * len(ids), "waveform": pa.array(blobs, pa.binary())}),
                   root / "waveform" / "part-0.parquet")
    return list(ids)


def waveform_specs(*variants: str, epochs: int = 3, **train) -> list[dict]:
    """Planned exp3 trial specs for wav2vec2 ``variants`` on the tiny random backbone."""
    models = [{"name": "wav2vec2", "variant": v, "params": {"backbone": "tiny", **({"frozen_epochs": 1}
                                                                                  if v == "progressive" else {})}}
              for v in variants]
    cfg = ExperimentConfig.model_validate({
        "experiment": "exp3", "prepare": {"representations": ["waveform"]}, "models": models,
        "split": {"test_fraction": 0.25}, "weights": {"source": "random"},
        "train": {"epochs": epochs, "batch_size": 8, "workers": 0, **train}})
    return plan_experiment(cfg)


def test_exp3_rows_use_the_studys_wav2vec2_settings():
    """sweeps/exp3.yaml's paper rows carry the study's learning rates, epochs and schedules."""
    import yaml

    rows = {m["variant"]: m for m in yaml.safe_load((ROOT / "sweeps" / "exp3.yaml").read_text())["models"]
            if m["name"] == "wav2vec2"}
    assert set(rows) == {"frozen", "progressive", "layer_probe"}
    for variant, expected in DEFAULT_TRAINING.items():
        assert {k: rows[variant]["train"][k] for k in expected} == expected


@pytest.fixture(scope="module")
def cached(ray_session, tmp_path_factory):
    """A shard set, its embedding cache computed once, and the stdout of a second (cached) call."""
    from raygenre.data.embeddings import ensure_embeddings

    root = tmp_path_factory.mktemp("wave")
    ids = write_wave_shards(root, clips_per_genre=4)
    specs = waveform_specs("frozen", "layer_probe", "progressive")
    first = ensure_embeddings(root, specs, "hash0")
    return root, ids, specs, first


def test_embedding_cache_is_computed_once_and_serves_both_head_variants(cached, capsys):
    from raygenre.data.embeddings import MANIFEST, embedding_key, ensure_embeddings, load_embeddings

    root, ids, specs, first = cached
    assert len(first) == 1  # frozen and layer_probe share one cache; progressive needs none
    folder = Path(next(iter(first.values())))
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["rows"] == len(ids) and manifest["backbone_params"] == 36_976
    assert "random init" in manifest["weights"]
    stamp = (folder / MANIFEST).stat().st_mtime_ns
    assert ensure_embeddings(root, specs, "hash0") == first
    assert "cache hit" in capsys.readouterr().out
    assert (folder / MANIFEST).stat().st_mtime_ns == stamp
    feats, got, labels = load_embeddings(folder, ids[:5])
    assert feats.shape == (5, 3, 32)  # every layer (embeddings + 2 transformer layers) x hidden 32
    assert sorted(got) == sorted(ids[:5])
    # another data hash (other shards or settings) or backbone is another cache
    assert embedding_key(specs[0], "hash1") not in first
    assert embedding_key({**specs[0], "params": {"backbone": "facebook/wav2vec2-base"}}, "hash0") not in first


@pytest.mark.parametrize("variant", ["frozen", "layer_probe"])
def test_head_trials_train_on_the_cache_and_record_it(cached, tmp_path, variant):
    from raygenre.train.waveform_runner import run_waveform

    root, ids, specs, first = cached
    spec = next(s for s in specs if s["variant"] == variant)
    settings = {"run": {"data_hash": "hash0"}, "train_storage": str(tmp_path)}
    result = run_waveform(spec, {"shard_dir": str(root), "ids": ids, "embeddings": first}, settings)
    assert [h["epoch"] for h in result["history"]] == [1, 2, 3]
    head = 32 * 128 + 128 + 128 * 10 + 10 + (3 if variant == "layer_probe" else 0)
    assert result["params"] == {"total": 36_976 + head, "trainable": head}
    assert len(result["test"]["y_pred"]) == len(result["test"]["ids"]) == 10
    assert Path(result["fitted"]["head_path"]).is_file()
    record = build_record(spec, settings, result={k: v for k, v in result.items() if k != "fitted"})
    validate_record(record)
    assert record["weights"].startswith("random init")


def test_progressive_unfreezes_at_its_epoch_and_resumes_after_a_kill(cached, tmp_path):
    """In the trial (workers: 0): the backbone trains from epoch 2; a run killed after epoch 1 resumes there."""
    from raygenre.train.torch_loop import train_loop
    from raygenre.train.torch_runner import ROW_FORMATS, read_rows, split_rows, to_dataset
    from raygenre.train.train_session import InTrialSession

    root, ids, specs, _ = cached
    spec = next(s for s in specs if s["variant"] == "progressive")
    train_ids, _, eval_ids = split_rows(spec, ids)
    column = ROW_FORMATS["waveform"][2]
    datasets = {"train": to_dataset(*read_rows(str(root), train_ids, representation="waveform"), column=column),
                "eval": to_dataset(*read_rows(str(root), eval_ids, representation="waveform"), with_index=True,
                                   column=column)}
    config = {"model": {"name": "wav2vec2", "family": "waveform", "variant": "progressive",
                        "params": spec["params"]}, "weights": {"source": "random"}, "train": spec["train"],
              "seed": 0, "has_valid": False}

    class Killed(Exception):
        pass

    class KilledAfterFirstEpoch(InTrialSession):
        def report(self, metrics, folder):
            raise Killed  # the checkpoint of epoch 1 is already published, as when a kill lands here

    persist = tmp_path / "checkpoint"
    with pytest.raises(Killed):
        train_loop(config, KilledAfterFirstEpoch(datasets, str(persist), torch.device("cpu")))
    session = InTrialSession(datasets, str(persist), torch.device("cpu"))
    train_loop(config, session)
    final = json.loads((Path(session.latest()) / "predictions.json").read_text())
    history = final["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert [h["attempt"] for h in history] == [1, 2, 2]
    assert final["resumed_from_epoch"] == 1
    head_only, unfrozen = history[0]["trainable"], history[1]["trainable"]
    assert head_only < 50_000 < unfrozen  # epoch 1: the head; from epoch 2 the transformer too
    assert history[2]["trainable"] == unfrozen
    assert len(final["pred"]) == len(eval_ids)


def test_exp3_paper_profile_without_wav2vec2_weights_fails_in_one_sentence_before_any_work(tmp_path, monkeypatch,
                                                                                          capsys):
    """HF_HUB_OFFLINE and an empty cache: one sentence naming the model id, the cache and the config key."""
    import ray

    from raygenre.sweep import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    was_running = ray.is_initialized()
    started = time.perf_counter()
    assert main(["exp3", "--profile", "paper", "--data", "synthetic", "--storage", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "facebook/wav2vec2-base" in err and "weights.source" in err
    assert str(tmp_path / "hf" / "hub") in err
    assert time.perf_counter() - started < 20  # no retry wait
    assert not (tmp_path / "runs").exists() and ray.is_initialized() == was_running


@pytest.mark.slow
def test_exp3_waveform_rows_end_to_end_through_the_sweep(ray_session, tmp_path, capsys):
    """The sweep CLI on small synthetic data: every Wav2Vec2 row ends with an ok record and a filled report row,
    the two head rows from one embedding cache (its reuse across runs: the cache test above)."""
    from raygenre.records import read_records
    from raygenre.sweep import main

    small = ["--data", "synthetic", "--storage", str(tmp_path), "--set", "data.synthetic.clips_per_genre=4",
             "--set", "data.synthetic.seconds=4.0", "--set", "prepare.clip_seconds=4.0",
             "--set", "prepare.min_seconds=2.0", "--set", "split.test_fraction=0.25"]
    rows = ("[{name: wav2vec2, variant: progressive, params: {backbone: tiny, frozen_epochs: 1},"
            " train: {epochs: 2, batch_size: 4, workers: 0, schedule: plateau}},"
            " {name: wav2vec2, variant: frozen, params: {backbone: tiny}, train: {epochs: 2}},"
            " {name: wav2vec2, variant: layer_probe, params: {backbone: tiny}, train: {epochs: 2}}]")
    assert main(["exp3", *small, "--name", "w", "--report-dir", str(tmp_path / "rep"), "--set", f"models={rows}"]) == 0
    records = read_records(tmp_path / "w")
    assert sorted(r["variant"] for r in records) == ["frozen", "layer_probe", "progressive"]
    assert all(r["status"] == "ok" and r["study"] == "exp3-waveform" and r["weights"].startswith("random init")
               for r in records)
    assert all(len(r["history"]) == 2 and r["params"]["trainable"] < r["params"]["total"] for r in records)
    assert all(r["selection"] == {"rule": "last", "epoch": 2} for r in records)
    report = (tmp_path / "rep" / "REPORT.md").read_text()
    table3 = report.split("## Table 3")[1].split("\n## ")[0]
    assert sum(line.startswith("| Raw waveform") and "not run" not in line for line in table3.splitlines()) == 3
    assert len(list((tmp_path / "w" / "shards").glob("*/embeddings/*/manifest.json"))) == 1
    # predict answers with each row's kept model: progressive (whole net) and both cached-embedding heads
    kinds = {r["variant"]: json.loads((tmp_path / "w" / r["artifact"] / "model.json").read_text())["network"]
             for r in records}
    assert {v: k["contains"] for v, k in kinds.items()} == {"progressive": "all", "frozen": "head",
                                                            "layer_probe": "head"}
    assert_predictions_match_records(tmp_path / "w", records, capsys)


def test_wav2vec2_cached_rows_give_the_results_recorded_before_the_encoder_stage(cached, tmp_path):
    """Golden: embeddings, per-epoch losses and predictions of ``frozen``/``layer_probe`` equal those the
    Wav2Vec2-only embedding code gave (tests/data/make_wav2vec2_probe_golden.py, run before the move)."""
    from raygenre.data.embeddings import load_embeddings
    from raygenre.train.waveform_runner import run_waveform

    golden = json.loads((ROOT / "tests" / "data" / "wav2vec2_probe_golden.json").read_text())
    root, ids, specs, first = cached
    assert ids == golden["ids"]
    feats, got, _ = load_embeddings(next(iter(first.values())), ids)
    feats = feats[[got.index(i) for i in ids]]
    np.testing.assert_allclose(feats, np.array(golden["embeddings"], dtype=np.float32), rtol=0, atol=2e-6)
    for variant in ("frozen", "layer_probe"):
        spec = next(s for s in specs if s["variant"] == variant)
        result = run_waveform(spec, {"shard_dir": str(root), "ids": ids, "embeddings": first},
                              {"run": {"data_hash": "hash0"}, "train_storage": str(tmp_path)})
        expected = golden["trials"][variant]
        assert result["test"]["ids"] == expected["test_ids"]
        assert result["test"]["y_pred"] == expected["y_pred"]
        assert [h["loss"] for h in result["history"]] == pytest.approx(expected["losses"], rel=1e-6)
