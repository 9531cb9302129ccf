"""Several trials per GPU (train.gpu_share with logical GPUs) and data once per trial (train.device_data_mb)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from raygenre.train import device_data
from raygenre.train.device_data import DeviceRows, LocalRows, row_batches
from raygenre.train.local_run import PAPER_TRAIN
from raygenre.train.torch_loop import PREDICTIONS_FILE, train_loop
from raygenre.train.train_session import InTrialSession

ROOT = Path(__file__).resolve().parents[1]
CNN = {"name": "cnn", "family": "spectrogram", "variant": "default", "params": {}}


def _rows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 10
    return rng.integers(0, 255, (n, 32, 32, 3), dtype=np.uint8), y


def test_device_batches_are_the_streamed_batches(monkeypatch):
    """Window shuffle over a stream == the same order drawn on the device, across several windows."""
    monkeypatch.setattr(device_data, "SHUFFLE_WINDOW", 16)
    x, y = _rows(45, 0)
    local = LocalRows({"image": x, "label": y})
    once = DeviceRows.load(local, torch.device("cpu"))
    streamed = list(row_batches(local, 8, torch.device("cpu"), seed=7))
    drawn = list(row_batches(once, 8, torch.device("cpu"), seed=7))
    assert [len(b["label"]) for b in streamed] == [8, 8, 8, 8, 8, 5]      # windows of 16: 16 + 16 + 13 rows
    assert all(torch.equal(a[k], b[k]) for a, b in zip(streamed, drawn) for k in ("image", "label"))
    labels = torch.cat([b["label"] for b in drawn])
    assert sorted(labels.tolist()) == sorted(y.tolist()) and labels.tolist() != y.tolist()  # shuffled, all rows
    assert sorted(torch.cat([b["label"] for b in drawn[:2]]).tolist()) == sorted(y[:16].tolist())  # window 1
    other = torch.cat([b["label"] for b in row_batches(once, 8, torch.device("cpu"), seed=8)])
    assert other.tolist() != labels.tolist()                             # another epoch, another order


def _train(datasets: dict, folder: Path, device_data_mb: float, n_train: int, train_mb: float) -> dict:
    session = InTrialSession(datasets, str(folder), torch.device("cpu"))
    train = {**PAPER_TRAIN, "epochs": 3, "batch_size": 8, "device_data_mb": device_data_mb,
             "checkpoint": {"every_s": 0, "max_overhead": 0}}
    config = {"model": CNN, "weights": {"source": "random"}, "train": train, "seed": 3, "has_valid": False,
              "cpus_per_worker": 1, "cache_trunk": True, "report_eval": False, "n_train": n_train,
              "train_mb": train_mb}
    train_loop(config, session)
    return json.loads((Path(session.latest()) / PREDICTIONS_FILE).read_text())


def test_data_once_equals_streaming_from_ray_data(ray_session, tmp_path, monkeypatch):
    """The same trial streamed from Ray Datasets every epoch and moved to the device once: same history
    (losses to the bit) and predictions."""
    from raygenre.train.torch_runner import to_dataset

    monkeypatch.setattr(device_data, "SHUFFLE_WINDOW", 16)  # several windows over 40 rows
    x, y = _rows(40, 1)
    ex, ey = _rows(12, 2)
    datasets = {"train": to_dataset(x, list(y)), "eval": to_dataset(ex, list(ey), with_index=True)}
    mb = x.nbytes / 2**20
    streamed = _train(datasets, tmp_path / "stream", 0.0, 40, mb)
    once = _train(datasets, tmp_path / "once", 1.0, 40, mb)
    assert streamed["data_once_s"] is None and once["data_once_s"] is not None
    assert [h["loss"] for h in once["history"]] == [h["loss"] for h in streamed["history"]]
    assert [h["accuracy"] for h in once["history"]] == [h["accuracy"] for h in streamed["history"]]
    assert once["pred"] == streamed["pred"] and once["index"] == streamed["index"]


#: Four exp1 CNN trials (split seeds 0-3) at gpu_share 0.25 on a Ray with one logical GPU and 6 CPUs, in the
#: GPU lane, while nine feature-model trials (exp3-features) run beside them in the CPU lane.
PACKING = r"""
import json, sys, threading, time
sys.path.insert(0, sys.argv[2])
import ray
from feature_tables import make_feature_table
from test_torch_training import write_mel_shards
from raygenre.config import ExperimentConfig
from raygenre.records import read_records
from raygenre.storage import RunPath
from raygenre.train.experiment import ExperimentRun
from raygenre.train.lanes import plan_lanes, run_lanes
from raygenre.train.plan import plan_experiment
from raygenre.train.tune_runner import resources_for
from pathlib import Path
tmp = Path(sys.argv[1])
ray.init(address="local", num_cpus=6, num_gpus=1, include_dashboard=False, log_to_driver=False,
         object_store_memory=200 * 1024**2)
ids = write_mel_shards(tmp / "shards", clips_per_genre=2, augmented=1)
exp1 = ExperimentConfig.model_validate({
    "experiment": "exp1", "prepare": {"representations": ["mel"]}, "models": [{"name": "cnn"}],
    "split": {"test_fraction": 0.5, "seeds": [0, 1, 2, 3]}, "weights": {"source": "random"},
    "train": {"optimizer": "adamw", "epochs": 2, "batch_size": 5, "workers": 0, "gpu_share": 0.25}})
exp3 = ExperimentConfig.model_validate({
    "experiment": "exp3", "split": {"test_fraction": 0.5, "seeds": [0, 1, 2]},
    "models": [{"name": "knn"}, {"name": "random_forest"}, {"name": "mlp", "train": {"epochs": 3}}]})
run_dir = RunPath.of(str(tmp / "run"))
settings = {"train_storage": str(tmp / "train"), "run": {"data_hash": "t"}, "cpus_per_trial": 1}
runs = [ExperimentRun(cfg, run_dir, plan_experiment(cfg), inputs, settings, {}, False, time.perf_counter())
        for cfg, inputs in ((exp1, {"mel": {"shard_dir": str(tmp / "shards"), "ids": ids}}),
                            (exp3, {"features": make_feature_table(4)}))]
low = [1.0]
def poll():
    while not done.is_set():
        low[0] = min(low[0], ray.available_resources().get("GPU", 0.0))
        time.sleep(0.02)
done = threading.Event()
threading.Thread(target=poll, daemon=True).start()
lanes = plan_lanes(runs)
run_lanes(lanes)
done.set()
planned = [t["trial_key"] for run in runs for t in run.finish()]
records = read_records(run_dir)
print(json.dumps({"request": resources_for(exp1, runs[0].trials)({"trial": runs[0].trials[0]}),
                  "lowest_free_gpu": low[0], "planned": len(planned),
                  "lanes": [[s for _, s, _ in lanes.gpu], [r.cfg.experiment for r, _ in lanes.cpu], lanes.cpus_beside],
                  "records": [{k: r[k] for k in ("study", "model", "status", "timings")}
                              | {"pid": r["resources"]["pid"]} for r in records]}))
"""


def test_quarter_gpu_trials_share_one_gpu_while_cpu_studies_run_beside(tmp_path):
    """Four quarter-GPU trials hold one logical GPU at once (packing), and the CPU-only study runs beside
    them on the CPUs they leave (6 - 4), not after them, with each trial getting its own study's inputs."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run([sys.executable, "-c", PACKING, str(tmp_path), str(ROOT / "tests")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["request"] == {"cpu": 1, "gpu": 0.25}
    assert out["lanes"] == [["exp1-mel"], ["exp3"], 2]
    records = out["records"]
    assert out["planned"] == len(records) == 13 and {r["status"] for r in records} == {"ok"}
    gpu = [r for r in records if r["study"] == "exp1-mel"]
    cpu = [r for r in records if r["study"] == "exp3-features"]
    assert len(gpu) == 4 and sorted(r["model"] for r in cpu) == ["knn"] * 3 + ["mlp"] * 3 + ["random_forest"] * 3
    assert out["lowest_free_gpu"] == 0.0          # four quarter-GPU trials held the one GPU at the same time
    assert len({r["pid"] for r in gpu}) == 4       # in four trial processes (actors are reused when idle)
    for r in gpu:                                  # the records say what checkpoints and data-once cost
        timings = r["timings"]
        # at the end, and after epoch 1 when the small CNN's write costs <= 5 % of its training (max_overhead)
        assert timings["checkpoint_writes"] in (1, 2)
        assert timings["checkpoint_bytes"] > 0 and timings["checkpoint_s"] > 0
        assert timings["data_once_s"] >= 0
    # beside, not after: feature trials started before the last GPU trial ended ...
    gpu_end = max(r["timings"]["finished_unix"] for r in gpu)
    assert min(r["timings"]["started_unix"] for r in cpu) < gpu_end
    # ... and while the GPU lane ran, at most 2 of them (the CPUs it left) ran at once
    for r in cpu:
        t = r["timings"]["started_unix"]
        if t < gpu_end:
            at_once = [c for c in cpu if c["timings"]["started_unix"] <= t < c["timings"]["finished_unix"]]
            assert len(at_once) <= 2


def test_paper_profile_packs_quarter_gpus_and_plans_gpu_work_first():
    """paper: exp1/exp2 rows take a quarter GPU each in the trial itself; every study runs its networks on
    images or waveforms before feature models, the augmented and longest first."""
    from raygenre.config import load_experiment
    from raygenre.train.plan import by_study, plan_experiment

    exp2 = load_experiment("exp2", "paper", {})
    assert {(t["train"]["gpu_share"], t["train"]["workers"]) for t in plan_experiment(exp2)} == {(0.25, 0)}
    studies = by_study(plan_experiment(load_experiment("exp3", "paper", {})))
    assert list(studies) == ["exp3-waveform", "exp3-features"]
    assert studies["exp3-waveform"][0]["variant"] == "progressive"  # 15 epochs end to end: the longest first
    mixed = [{"trial_key": k, "study": "s", "representation": r, "augmented": a, "train": {"epochs": e}}
             for k, r, a, e in (("f", "features", False, 100), ("m1", "mel", False, 5), ("m2", "mel", True, 5),
                                ("m3", "mel", False, 30))]
    assert [t["trial_key"] for t in by_study(mixed)["s"]] == ["m2", "m3", "m1", "f"]


def test_paper_all_runs_cpu_only_studies_beside_the_gpu_studies(monkeypatch, capsys, tmp_path):
    """``all --profile paper`` on one GPU and 16 CPUs: the mel and waveform studies in the GPU lane, the
    feature models (their nets too: the registry keeps them off the GPU) and exp4 beside them on the 12 CPUs
    that four quarter-GPU rows leave; in turn without a GPU, or without room beside the GPU lane."""
    import ray

    from raygenre.config import load_experiment
    from raygenre.storage import RunPath
    from raygenre.train.experiment import ExperimentRun
    from raygenre.train.lanes import plan_lanes
    from raygenre.train.plan import plan_experiment
    from raygenre.train.tune_runner import gpus_for

    def run_of(cfg):
        return ExperimentRun(cfg, RunPath.of(str(tmp_path)), plan_experiment(cfg), {}, {}, {}, False, 0.0)

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 16.0, "GPU": 1.0})
    configs = [load_experiment(e, "paper", {}) for e in ("exp1", "exp2", "exp3", "exp4")]
    runs = [run_of(cfg) for cfg in configs]
    lanes = plan_lanes(runs)
    assert [s for _, s, _ in lanes.gpu] == ["exp1-mel", "exp2-mel", "exp3-waveform"]
    assert [(run.cfg.experiment, sorted(studies)) for run, studies in lanes.cpu] == [
        ("exp3", ["exp3-features"]), ("exp4", ["exp4-bootstrap", "exp4-size"])]
    assert (lanes.cpus_beside, lanes.cpus_gpu_lane) == (12, 4)
    assert "beside it on 12 of 16 CPUs: exp3-features, exp4-bootstrap, exp4-size" in capsys.readouterr().out
    # exp4 choosing its model on validation clips: its studies are known only then, all in the CPU lane
    chosen = run_of(load_experiment("exp4", "paper", {"exp4": {"select_by_validation": True}}))
    assert plan_lanes(runs[:1] + [chosen]).cpu == [(chosen, None)]
    # train.gpus_per_worker: auto is the model's own default; a number is honoured for every model
    exp3 = configs[2]
    mlp = next(t for t in runs[2].trials if t["model"] == "mlp")
    assert gpus_for(exp3, mlp) == 0.0 and gpus_for(exp3, {**mlp, "train": {**mlp["train"], "gpus_per_worker": 1}}) == 1
    assert gpus_for(configs[0], runs[0].trials[0]) == 0.25
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 4.0, "GPU": 1.0})
    assert plan_lanes(runs) is None  # four quarter-GPU rows hold all 4 CPUs: nothing fits beside them
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 16.0})
    assert plan_lanes(runs) is None and gpus_for(configs[0], runs[0].trials[0]) == 0.0


def test_two_lanes_printing_at_once_never_cut_each_others_lines():
    import io
    import threading

    from raygenre.train.lanes import WholeLines

    out = io.StringIO()
    stream = WholeLines(out)

    def talk(tag: str) -> None:
        for i in range(500):
            print(f"[{tag}] {i} " + "x" * 40, file=stream, flush=True)

    threads = [threading.Thread(target=talk, args=(tag,)) for tag in ("gpu", "cpu")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = out.getvalue().splitlines()
    assert len(lines) == 1000
    assert all(line.count("[") == 1 and line.endswith(" " + "x" * 40) for line in lines)


def test_a_failing_lane_stops_the_others_running_study_and_its_error_is_raised():
    import time

    from raygenre.train.lanes import Lanes, run_lanes

    calls = []

    class FakeRun:  # what the lanes ask of an experiment
        def __init__(self, seconds: float, fails: bool):
            self.seconds, self.fails = seconds, fails

        def choose_model(self, share):
            pass

        def studies(self):
            return [("cpu-a", []), ("cpu-b", [])]

        def run_study(self, study, trials, share):
            calls.append((study, share.cpus))
            if share.stop.wait(self.seconds) and not self.fails:
                calls.append((study, "stopped"))  # what the Tune stopper does to a running study
            if self.fails:
                raise RuntimeError(f"{study} broke")

    gpu = [(FakeRun(0.1, True), "gpu-a", []), (FakeRun(0.1, True), "gpu-b", [])]
    lanes = Lanes(gpu=gpu, cpu=[(FakeRun(30, False), None)], cpus_beside=3, cpus_gpu_lane=5)
    started = time.perf_counter()
    with pytest.raises(RuntimeError, match="gpu-a broke"):
        run_lanes(lanes, poll_s=0.05)
    assert time.perf_counter() - started < 10  # the CPU study was stopped, not waited out
    assert len(calls) == 3 and set(calls) == {("cpu-a", 3), ("cpu-a", "stopped"), ("gpu-a", 5)}  # nothing new started
