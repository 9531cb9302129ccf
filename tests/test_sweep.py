"""The sweep: planning, one trial without Ray, CLI errors, records, resume after a kill, failures."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from raygenre.config import load_experiment
from raygenre.records import latest_by_trial, read_records
from raygenre.sweep import main, parse_overrides
from raygenre.train.feature_trial import run_feature_trial, select_rows
from raygenre.train.plan import plan_exp3, plan_exp4

sys.path.insert(0, str(Path(__file__).parent))
from feature_tables import make_feature_table, make_features_csv  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SMALL_EXP4 = ["--set", "exp4.bootstraps=3", "--set", "exp4.fractions=[0.5,1.0]"]


def _settings():
    cfg = load_experiment("exp3", "quick", {"neural": {"epochs": 3}})
    return {"neural": cfg.neural.model_dump(mode="json"), "xgboost": cfg.xgboost.model_dump(mode="json"),
            "cpus_per_trial": 1, "run": {"source": "test"}}


def test_exp4_plans_109_trials_and_exp3_six_per_seed():
    exp4 = plan_exp4(load_experiment("exp4", "quick"))
    assert len(exp4) == 109
    assert sum(t["study"] == "exp4-bootstrap" for t in exp4) == 100
    assert sorted(t["train_fraction"] for t in exp4 if t["study"] == "exp4-size")[0] == 0.2
    exp3 = plan_exp3(load_experiment("exp3", "quick", {"split": {"seeds": [0, 1, 2, 3, 4]}}))
    assert len(exp3) == 30 and len({t["trial_key"] for t in exp3}) == 30


def test_select_rows_bootstrap_fraction_and_validation():
    table = make_feature_table(clips_per_genre=10)
    cfg = load_experiment("exp4", "quick", {"exp4": {"bootstraps": 2, "fractions": [0.5, 1.0]}})
    boot, half, full = plan_exp4(cfg)[0], plan_exp4(cfg)[2], plan_exp4(cfg)[3]
    ids = sorted(table.index)
    train_b, test_b = select_rows(boot, ids)
    assert len(train_b) == 80 and len(set(train_b)) < 80 and len(test_b) == 20
    assert len(select_rows(half, ids)[0]) == 40 and len(select_rows(full, ids)[0]) == 80
    assert set(select_rows(half, ids)[0]) < set(select_rows(full, ids)[0])
    valid_spec = {**full, "evaluate_on": "valid", "train_fraction": 1.0}
    train_v, valid = select_rows(valid_spec, ids)
    assert len(train_v) + len(valid) == 80 and set(valid).isdisjoint(test_b)


def test_run_feature_trial_builds_a_full_record_without_ray():
    table = make_feature_table(clips_per_genre=20)
    spec = plan_exp3(load_experiment("exp3", "quick"))[1]  # random_forest
    record = run_feature_trial(spec, table, _settings())
    assert record["status"] == "ok" and record["model"] == "random_forest"
    assert record["n_train"] == 160 and len(record["test"]["ids"]) == 40
    assert record["metrics"]["accuracy"] > 0.3  # chance is 0.1 on a learnable table
    assert sum(map(sum, record["metrics"]["confusion_matrix"])) == 40
    assert record["versions"]["ray"] and record["config_hash"]
    content = run_feature_trial({**spec, "feature_set": "content57"}, table, _settings())
    assert content["feature_set"] == "content57" and content["config_hash"] != record["config_hash"]


def test_overrides_and_cli_errors_fail_before_ray(tmp_path, capsys):
    import ray
    assert parse_overrides(["exp4.bootstraps=7", "split.seeds=[0,1]"]) == {
        "exp4": {"bootstraps": 7}, "split": {"seeds": [0, 1]}}
    was_running = ray.is_initialized()
    for argv, message in [
        (["exp9"], "unknown experiment"),
        (["exp1"], "not part of this release"),
        (["exp4", "--data", str(tmp_path / "missing")], "does not exist"),
        (["exp4", "--features-csv", str(tmp_path / "none.csv")], "does not exist"),
        (["exp4", "--set", "exp4.bootstrap=3"], "exp4.bootstrap: unknown key"),
    ]:
        assert main([*argv, "--storage", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    assert ray.is_initialized() == was_running


def test_exp4_on_a_kaggle_csv_records_every_trial_and_refuses_silent_reruns(ray_session, tmp_path):
    csv = make_features_csv(tmp_path / "features.csv")
    argv = ["exp4", "--features-csv", str(csv), "--storage", str(tmp_path), "--name", "r", "--no-report",
            *SMALL_EXP4]
    assert main(argv) == 0
    records = read_records(tmp_path / "r")
    assert len(records) == 5 and all(r["status"] == "ok" for r in records)
    assert {r["study"] for r in records} == {"exp4-bootstrap", "exp4-size"}
    boot = [r for r in records if r["study"] == "exp4-bootstrap"]
    assert all(r["n_train"] == 160 and r["test"]["ids"] == boot[0]["test"]["ids"] for r in boot)
    assert main(argv) == 2                         # existing records, no --resume: refuse
    assert main([*argv, "--resume"]) == 0          # nothing left to run
    assert len(read_records(tmp_path / "r")) == 5


def test_failing_trial_is_retried_recorded_and_named(ray_session, tmp_path, capsys):
    csv = make_features_csv(tmp_path / "features.csv")
    models = "models=[{name: knn, params: {n_neighbors: 100000}}, {name: random_forest}]"
    code = main(["exp3", "--features-csv", str(csv), "--storage", str(tmp_path), "--name", "f",
                 "--no-report", "--set", models, "--set", "resources.max_failures=1"])
    assert code == 1
    assert "knn" in capsys.readouterr().err
    latest = latest_by_trial(read_records(tmp_path / "f"))
    knn = next(r for k, r in latest.items() if "/knn/" in k)
    rf = next(r for k, r in latest.items() if "/random_forest/" in k)
    assert knn["status"] == "failed" and "n_neighbors" in knn["error"] and knn["metrics"] is None
    assert rf["status"] == "ok"
    tune_dirs = list((tmp_path / "f" / "tune").glob("exp3-features-*/exp3_exp3-features_knn*"))
    assert tune_dirs, "the failing trial ran under Tune"


@pytest.mark.slow
def test_sweep_killed_midway_resumes_with_every_trial_once(ray_session, tmp_path):
    csv = make_features_csv(tmp_path / "features.csv")
    argv = ["exp4", "--features-csv", str(csv), "--storage", str(tmp_path), "--name", "k", "--no-report",
            "--set", "exp4.bootstraps=12", "--set", "exp4.fractions=[0.5,1.0]"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.Popen([sys.executable, "-m", "raygenre.sweep", *argv, "--num-cpus", "1"], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    records = tmp_path / "k" / "records" / "exp4-bootstrap.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and (not records.exists() or len(records.read_text().splitlines()) < 3):
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)            # the driver and the Ray it started, at once
    proc.wait(timeout=30)
    before = read_records(tmp_path / "k")
    assert 3 <= len(before) < 14, "killed mid-way"
    assert main([*argv, "--resume"]) == 0
    keys = [r["trial_key"] for r in read_records(tmp_path / "k")]
    assert len(keys) == 14 and len(set(keys)) == 14
    assert json.loads(records.read_text().splitlines()[0])["trial_key"] == before[0]["trial_key"]


@pytest.mark.slow
def test_distributed_xgboost_backend_runs_through_the_sweep(ray_session, tmp_path):
    csv = make_features_csv(tmp_path / "features.csv")
    code = main(["exp3", "--features-csv", str(csv), "--storage", str(tmp_path), "--name", "d", "--no-report",
                 "--xgboost-backend", "distributed", "--set", "xgboost.workers=1",
                 "--set", "models=[{name: xgboost}]", "--split-seeds", "0-1"])
    assert code == 0
    records = read_records(tmp_path / "d")
    assert len(records) == 2 and all(r["status"] == "ok" for r in records)
    assert all(r["config"]["settings"]["xgboost"]["backend"] == "distributed" for r in records)
    assert all(r["metrics"]["accuracy"] > 0.25 for r in records)
