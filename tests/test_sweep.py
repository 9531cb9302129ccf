"""The sweep: planning, one trial without Ray, CLI errors, records, refusing silent reruns, failures."""

import sys
from pathlib import Path

import pytest

from raygenre.config import load_experiment
from raygenre.overrides import parse_overrides
from raygenre.records import latest_by_trial, read_records
from raygenre.sweep import main
from raygenre.train.plan import plan_exp4, plan_experiment
from raygenre.train.trial import run_trial, select_rows

sys.path.insert(0, str(Path(__file__).parent))
from feature_tables import make_feature_table, make_features_csv  # noqa: E402

SMALL_EXP4 = ["--set", "exp4.bootstraps=3", "--set", "exp4.fractions=[0.5,1.0]"]


def _settings():
    cfg = load_experiment("exp3", "quick")
    return {"xgboost": cfg.xgboost.model_dump(mode="json"), "cpus_per_trial": 1, "run": {"source": "test"}}


def test_exp4_plans_109_trials_and_exp3_nine_per_seed():
    exp4 = plan_exp4(load_experiment("exp4", "quick"))
    assert len(exp4) == 109
    assert sum(t["study"] == "exp4-bootstrap" for t in exp4) == 100
    assert sorted(t["train_fraction"] for t in exp4 if t["study"] == "exp4-size")[0] == 0.2
    exp3 = plan_experiment(load_experiment("exp3", "quick", {"split": {"seeds": [0, 1, 2, 3, 4]}}))
    assert len(exp3) == 45 and len({t["trial_key"] for t in exp3}) == 45
    assert {t["family"] for t in exp3} == {"tabular", "waveform"}
    assert {t["study"] for t in exp3} == {"exp3-features", "exp3-waveform"}
    mlp = next(t for t in exp3 if t["model"] == "mlp")
    assert mlp["train"]["epochs"] == 30 and mlp["trial_key"].split("/")[3:6] == ["default", "features-kaggle58",
                                                                                    "original"]
    assert next(t for t in exp3 if t["model"] == "knn")["train"] is None  # not a network


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
    spec = plan_experiment(load_experiment("exp3", "quick"))[1]  # random_forest
    record = run_trial(spec, {"features": table}, _settings())
    assert record["status"] == "ok" and record["model"] == "random_forest"
    assert record["n_train"] == 160 and len(record["test"]["ids"]) == 40
    assert record["metrics"]["accuracy"] > 0.3  # chance is 0.1 on a learnable table
    assert sum(map(sum, record["metrics"]["confusion_matrix"])) == 40
    assert record["versions"]["ray"] and record["config_hash"]
    assert record["params"] is None and record["history"] == [] and record["family"] == "tabular"
    mlp = next(t for t in plan_experiment(load_experiment("exp3", "quick", {"train": {"epochs": 2}}))
               if t["model"] == "mlp")
    assert run_trial(mlp, {"features": table}, _settings())["params"] == {"total": 207_802, "trainable": 205_850}
    content = run_trial({**spec, "feature_set": "content57"}, {"features": table}, _settings())
    assert content["feature_set"] == "content57" and content["config_hash"] != record["config_hash"]


def test_overrides_and_cli_errors_fail_before_ray(tmp_path, capsys):
    """Every error a user can cause is one sentence, exit 2, and costs no Ray start."""
    import ray

    from raygenre.data.synthetic import generate

    one_jazz = tmp_path / "mine"  # a new user's small folder: jazz has a single clip
    generate(one_jazz, clips_per_genre=3, seconds=1.0)
    unlisted = tmp_path / "unlisted" / "genres_original"  # clips none of the fault_filtered lists name
    for wav in sorted((one_jazz / "genres_original").glob("*/*.wav")):
        genre, number = wav.stem.split(".")
        (unlisted / genre).mkdir(parents=True, exist_ok=True)
        (unlisted / genre / f"{genre}.{5000 + int(number):05d}.wav").hardlink_to(wav)
    for extra in sorted((one_jazz / "genres_original" / "jazz").glob("*.wav"))[1:]:
        extra.unlink()
    assert parse_overrides(["exp4.bootstraps=7", "split.seeds=[0,1]"]) == {
        "exp4": {"bootstraps": 7}, "split": {"seeds": [0, 1]}}
    was_running = ray.is_initialized()
    for argv, message in [
        (["exp9"], "unknown experiment"),
        (["exp4", "--data", str(tmp_path / "missing")], "is neither"),
        (["exp4", "--features-csv", str(tmp_path / "none.csv")], "does not exist"),
        (["exp4", "--set", "exp4.bootstrap=3"], "exp4.bootstrap: unknown key"),
        (["exp3", "--set", "models=[{name: svm}]"], "unknown model 'svm'"),
        (["exp3", "--set", "models=[{name: knn, variant: big}]"], "model 'knn' has no variant 'big'"),
        (["exp4", "--set", "exp4.model=vgg16"], "exp4.model"),
        (["exp4", "--data", str(one_jazz)], "genre 'jazz' has only 1 usable clip"),
        (["exp4", "--data", str(tmp_path / "unlisted"), "--split", "fault_filtered"],
         "holds 0 of the fault_filtered split's 443 training clips"),
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
