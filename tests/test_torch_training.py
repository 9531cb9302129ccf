"""Spectrogram training on Ray Train: the loop's steps, trunk caching, the validation carve, resume after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
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
from raygenre.records import build_record, validate_record
from raygenre.train.plan import plan_experiment
from raygenre.train.torch_loop import (
    build_model,
    cache_features,
    feature_batches,
    load_fitted,
    load_trained_state,
    run_batches,
    trained_state,
)
from raygenre.train.torch_runner import read_rows, split_rows, train_run_name

SIZE = 64  # the smallest square every net takes (AlexNet needs 63)

ROOT = Path(__file__).resolve().parents[1]



def clip_image(genre: int, rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """A learnable stand-in for a mel image: a bright band whose row depends on the genre, plus noise."""
    image = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
    band = genre * size // len(GENRES)
    image[band:band + size // len(GENRES)] += 150
    return image


def write_mel_shards(root: Path, clips_per_genre: int, augmented: int = 2, seed: int = 0) -> list[str]:
    """``mel/`` and ``mel_augmented/`` folders in the prepare layout, without audio; returns the clip ids."""
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {"mel": [], "mel_augmented": []}
    ids = []
    for k, genre in enumerate(GENRES):
        for i in range(clips_per_genre):
            cid = f"{genre}.{i:05d}"
            ids.append(cid)
            rows["mel"].append((cid, genre, cid, "original", clip_image(k, rng).tobytes()))
            for j in range(augmented):
                rows["mel_augmented"].append((f"{cid}~a{j}", genre, cid, f"aug{j}", clip_image(k, rng).tobytes()))
    for folder, items in rows.items():
        (root / folder).mkdir(parents=True)
        columns = list(zip(*items))
        table = pa.table({"clip_id": columns[0], "label": columns[1], "parent_id": columns[2],
                          "transform": columns[3], "mel": pa.array(columns[4], pa.binary())})
        pq.write_table(table, root / folder / "part-0.parquet")
    return ids


def spectrogram_spec(model: str, variant: str | None = None, *, test_fraction: float = 0.25,
                     augment: bool = False, **train) -> dict:
    """A planned exp1 (or exp2) trial spec for one model with random weights and ``train`` overrides.

    Built from the config classes alone (their defaults are base.yaml's), so no sweep file is needed.
    """
    cfg = ExperimentConfig.model_validate({
        "experiment": "exp2" if augment else "exp1", "prepare": {"representations": ["mel"],
                                                                 "augment": {"enabled": augment}},
        "models": [{"name": model, **({"variant": variant} if variant else {})}],
        "split": {"test_fraction": test_fraction}, "weights": {"source": "random"},
        "train": {"optimizer": "adamw", "schedule": "cosine", "epochs": 1, **train}})
    return plan_experiment(cfg)[0]


# --- pure torch: no Ray ------------------------------------------------------------------------------

def test_cached_trunk_training_equals_training_the_frozen_net():
    """fc6/fc7/fc8 train the head on activations computed once: same weights and predictions as the slow way."""
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (12, SIZE, SIZE, 3), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (12,), generator=g)
    model_cfg = {"name": "alexnet", "variant": "fc7", "params": {}}
    slow, fast = build_model(model_cfg, None, seed=3), build_model(model_cfg, None, seed=3)
    from raygenre.models.spectrogram import to_model_input

    inputs = to_model_input(x, "imagenet")
    batches = [(inputs[i:i + 4], y[i:i + 4]) for i in range(0, 12, 4)]
    order = [2, 0, 1, 0, 2, 1]  # six steps over the three batches, the same in both runs
    torch.manual_seed(7)
    slow.train()
    opt = torch.optim.AdamW(slow.parameters(), lr=1e-3)
    slow_loss = run_batches(slow, [batches[i] for i in order], opt)[0]
    torch.manual_seed(7)
    fast.train()
    trunk, head = fast.frozen_trunk(), fast.head()
    feats, labels = cache_features(trunk, batches)
    cached = [(feats[4 * i:4 * i + 4], labels[4 * i:4 * i + 4]) for i in range(3)]
    opt = torch.optim.AdamW(fast.parameters(), lr=1e-3)
    fast_loss = run_batches(head, [cached[i] for i in order], opt)[0]
    assert fast_loss == pytest.approx(slow_loss, rel=1e-5)
    for (name, a), b in zip(trained_state(slow).items(), trained_state(fast).values()):
        assert torch.allclose(a, b, atol=1e-6), name
    slow.eval(), fast.eval()
    with torch.no_grad():
        assert torch.equal(slow(inputs).argmax(1), fast(inputs).argmax(1))
    shuffled = list(feature_batches(feats, labels, 5, seed=11))
    assert [len(b[1]) for b in shuffled] == [5, 5, 2]
    assert sorted(torch.cat([b[1] for b in shuffled]).tolist()) == sorted(labels.tolist())
    again = list(feature_batches(feats, labels, 5, seed=11))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(shuffled, again))


def test_checkpoint_state_skips_the_frozen_trunk_and_rebuilds_exactly(tmp_path):
    from safetensors.torch import save_file

    model_cfg = {"name": "alexnet", "variant": "fc8", "params": {}}
    model = build_model(model_cfg, None, seed=5)
    with torch.no_grad():
        model.net.classifier[-1].weight.add_(1.0)  # "training" changed the head
    state = trained_state(model)
    assert set(state) == {"net.classifier.6.weight", "net.classifier.6.bias"}  # fc6, fc7 and convs are the trunk
    save_file(state, tmp_path / "model.safetensors")
    fitted = {"state_dict_path": str(tmp_path / "model.safetensors"), "build": model_cfg, "seed": 5,
              "weights_source": "random"}
    again = load_fitted(fitted)
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.equal(again(x), model.eval()(x))
    other = build_model(model_cfg, None, seed=6)
    load_trained_state(other, state)
    with torch.no_grad():
        assert not torch.equal(other.eval()(x), model(x))  # another seed: another (random) trunk
    full = build_model({"name": "cnn", "variant": "default", "params": {}}, None, seed=0)
    assert set(trained_state(full)) == set(full.state_dict())  # nothing frozen: everything is kept


def test_selection_valid_carves_validation_clips_from_training_never_test():
    ids = [f"{g}.{i:05d}" for g in GENRES for i in range(10)]
    last = spectrogram_spec("cnn", test_fraction=0.2)
    train, valid, test = split_rows(last, ids)
    assert valid == [] and len(train) == 80 and len(test) == 20
    spec = spectrogram_spec("cnn", test_fraction=0.2, selection="valid", validation_fraction=0.25)
    train_v, valid_v, test_v = split_rows(spec, ids)
    assert test_v == test                                  # the test clips do not move
    assert set(valid_v).isdisjoint(test) and set(valid_v).isdisjoint(train_v)
    assert sorted(train_v + valid_v) == sorted(train) and len(valid_v) == 20
    assert {v.split(".")[0] for v in valid_v} == set(GENRES)  # stratified: two clips of every genre
    from raygenre.data.splits import fault_filtered_lists

    lists = fault_filtered_lists()
    ff_ids = sorted(lists["train"] + lists["valid"] + lists["test"])
    ff = {**spec, "split": {**spec["split"], "name": "fault_filtered"}}
    train_f, valid_f, test_f = split_rows(ff, ff_ids)
    assert sorted(valid_f) == sorted(lists["valid"]) and sorted(test_f) == sorted(lists["test"])
    assert set(train_f) == set(lists["train"])


def test_read_rows_adds_augmented_rows_of_training_clips_only(tmp_path):
    ids = write_mel_shards(tmp_path, clips_per_genre=2, augmented=3)
    train = [i for i in ids if i.endswith("0")]
    x, y = read_rows(str(tmp_path), train, augmented_parents=train)
    assert x.shape == (10 * 4, SIZE, SIZE, 3) and x.dtype == np.uint8   # each clip and its 3 variants
    assert sorted(y) == sorted(list(range(10)) * 4)
    x_eval, y_eval = read_rows(str(tmp_path), [ids[3], ids[1]])
    assert y_eval == [1, 0] and x_eval.shape[0] == 2                     # order kept, no augmented rows
    boot, _ = read_rows(str(tmp_path), [ids[0], ids[0]], augmented_parents=[ids[0], ids[0]])
    assert boot.shape[0] == 8                                            # a repeated clip repeats its variants


def test_train_run_name_is_stable_path_safe_and_follows_settings():
    spec = spectrogram_spec("vgg16", "fc6")
    name = train_run_name(spec, {"run": {"data_hash": "abc"}})
    assert name == train_run_name(spec, {"run": {"data_hash": "abc"}}) and "/" not in name
    assert name != train_run_name({**spec, "train": {**spec["train"], "epochs": 7}}, {"run": {"data_hash": "abc"}})
    assert name != train_run_name(spec, {"run": {"data_hash": "other"}})


# --- on Ray -----------------------------------------------------------------------------------------

def test_spectrogram_trials_reserve_little_and_cap_concurrency_to_fit_their_workers(ray_session):
    """On the 2-CPU test Ray: two 1-worker trainers fit beside their trials (0.01 + 0.99 CPU each), one 2-worker."""
    from raygenre.train.tune_runner import max_concurrent, resources_for

    def plan(workers: int) -> tuple[ExperimentConfig, list[dict]]:
        cfg = ExperimentConfig.model_validate({
            "experiment": "exp1", "prepare": {"representations": ["mel"]}, "train": {"workers": workers},
            "models": [{"name": "cnn"}, {"name": "vgg16", "variant": "fc6"}], "weights": {"source": "random"}})
        return cfg, plan_experiment(cfg)

    cfg, trials = plan(1)
    assert [resources_for(cfg, trials)({"trial": t}) for t in trials] == [{"cpu": 0.01}] * 2
    assert max_concurrent(cfg, trials) == 2
    assert max_concurrent(*plan(2)) == 1
    capped = cfg.model_copy(update={"resources": cfg.resources.model_copy(update={"max_concurrent_trials": 1})})
    assert max_concurrent(capped, trials) == 1


def _snapshot_reports(folder: Path) -> int:
    snapshot = folder / "checkpoint_manager_snapshot.json"
    try:
        return int(json.loads(snapshot.read_text())["current_report_index"])
    except (OSError, ValueError, KeyError):
        return 0


#: A trial's driver in a process and Ray of its own: killing its process group is a killed sweep.
CHILD = ("import json, sys, ray\n"
         "from raygenre.train.torch_runner import run_spectrogram\n"
         "job = json.loads(open(sys.argv[1]).read())\n"
         "ray.init(address='local', num_cpus=2, include_dashboard=False, log_to_driver=False,\n"
         "         object_store_memory=200 * 1024**2)\n"
         "run_spectrogram(job['spec'], job['inputs'], job['settings'])\n")


@pytest.mark.slow
def test_training_learns_and_a_killed_trial_resumes_from_its_last_epoch(ray_session, tmp_path):
    """SIGKILL a trial (and the Ray it runs in) after >= 2 epochs, launch it again: it continues.

    The kill happens in a separate process group with its own Ray, as when a user kills a sweep: killing
    only the trial inside the shared test Ray would leave Train's placement group behind on a machine
    that runs several Ray instances (Train's cleaner then cannot tell which cluster to ask).
    """
    from raygenre.train.torch_runner import run_spectrogram

    _wait_for_free_cpus(ray_session)
    ids = write_mel_shards(tmp_path / "shards", clips_per_genre=4)
    inputs = {"shard_dir": str(tmp_path / "shards"), "ids": ids}
    settings = {"train_storage": str(tmp_path / "train"), "run": {"data_hash": "test"}}
    spec = spectrogram_spec("cnn", epochs=8, batch_size=8, learning_rate=0.003)
    (tmp_path / "job.json").write_text(json.dumps({"spec": spec, "inputs": inputs, "settings": settings}))
    folder = tmp_path / "train" / train_run_name(spec, settings)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path / "job.json")], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while _snapshot_reports(folder) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the trial, its trainer and the Ray they ran in, at once
    proc.wait(timeout=30)
    killed_after = _snapshot_reports(folder)
    assert killed_after >= 2, "the killed run reported two epochs"
    result = run_spectrogram(spec, inputs, settings)  # the re-launched trial, on the test's Ray
    history = result["history"]
    assert [h["epoch"] for h in history] == list(range(1, 9))       # one entry per epoch
    first = [h["epoch"] for h in history if h["attempt"] == 1]
    assert first == list(range(1, len(first) + 1)) and killed_after <= len(first) < 8
    assert all(h["attempt"] == 2 for h in history[len(first):])     # nothing before the kill trained again
    assert history[-1]["loss"] < history[0]["loss"] and history[-1]["accuracy"] > 0.3
    assert result["metrics"]["n_test"] == 10 and result["n_train"] == 30 and result["selection"] == "last"
    assert result["params"] == {"total": 391_466, "trainable": 391_466} and result["weights"] is None
    assert Path(result["fitted"]["state_dict_path"]).is_file() and result["fitted"]["contains"] == "all"
    validate_record(build_record(spec, settings, result=result))
    _wait_for_free_cpus(ray_session)


def _wait_for_free_cpus(ray, timeout: float = 30.0) -> None:
    """Every CPU is free: nothing leaked from a finished trainer, and the next one will not wait forever."""
    deadline = time.time() + timeout
    while ray.available_resources().get("CPU", 0) < ray.cluster_resources()["CPU"] and time.time() < deadline:
        time.sleep(0.2)
    assert ray.available_resources().get("CPU", 0) == ray.cluster_resources()["CPU"]


@pytest.mark.slow
def test_two_workers_selection_valid_and_phase_change(ray_session, tmp_path):
    """DDP on two CPU workers: ResNet18 last_then_all re-wraps at its phase change, rank 0 validates each
    epoch and its early-stopping decision reaches both ranks; the fitted model is the best epoch's."""
    from raygenre.train.torch_runner import run_spectrogram

    _wait_for_free_cpus(ray_session)
    ids = write_mel_shards(tmp_path / "shards", clips_per_genre=4)
    settings = {"train_storage": str(tmp_path / "train"), "run": {"data_hash": "test"}}
    spec = spectrogram_spec("resnet18", "last_then_all", epochs=4, batch_size=8, workers=2, selection="valid",
                            validation_fraction=0.34, patience=1, learning_rate=0.01)
    spec["params"] = {"head_epochs": 1}
    result = run_spectrogram(spec, {"shard_dir": str(tmp_path / "shards"), "ids": ids}, settings)
    history = result["history"]
    assert result["selection"] == "valid" and result["n_train"] == 19 and result["metrics"]["n_test"] == 10  # 11 valid
    assert all("valid_loss" in h and "valid_accuracy" in h for h in history)
    losses = [h["valid_loss"] for h in history]
    best = min(range(len(losses)), key=losses.__getitem__)
    assert result["selected_epoch"] == best + 1
    record = build_record(spec, settings, result={k: v for k, v in result.items() if k != "fitted"})
    validate_record(record)
    assert record["selection"] == {"rule": "valid", "epoch": best + 1}  # the record says which model was scored
    if len(history) < 4:  # stopped early: the last epoch did not improve on the best one
        assert best < len(history) - 1
    assert result["params"]["trainable"] == (11_181_642 if len(history) > 1 else 5_130)
    _wait_for_free_cpus(ray_session)
