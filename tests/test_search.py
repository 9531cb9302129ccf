"""Hyperparameter search (issue 18): validation before Ray, records of every search trial and one refit,
no test clip in any search trial's scores, ASHA stopping CNN trials early, resume, the refit's choice."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from raygenre.config import load_experiment
from raygenre.data.splits import make_split
from raygenre.errors import ConfigError
from raygenre.records import read_records
from raygenre.sweep import main

sys.path.insert(0, str(Path(__file__).parent))
from feature_tables import make_feature_table, make_features_csv  # noqa: E402

#: search-xgboost shrunk: 4 Optuna trials of 20-60 rounds, reports every 10 rounds, ASHA from round 20; KNN
#: stands in for the shipped Appendix C row (1000 rounds) as the plain row beside the search.
XGB = ["--no-report", "--set", "search.num_samples=4", "--set", "search.report_every=10",
       "--set", "search.space={params.n_estimators: {quniform: [20, 60, 20]}, params.max_depth: {randint: [2, 5]}}",
       "--set", "search.scheduler={name: asha, grace_period: 20, reduction_factor: 3}",
       "--set", "models=[{name: xgboost, search: {space: {params.learning_rate: {loguniform: [0.05, 0.5]}}}}, "
                "{name: knn}]"]  # the refit and KNN run in one Tune run after the search


def _search_records(records: list[dict]) -> tuple[list[dict], list[dict]]:
    trials = [r for r in records if (r.get("search") or {}).get("role") == "trial"]
    refits = [r for r in records if (r.get("search") or {}).get("role") == "refit"]
    return trials, refits


@pytest.mark.parametrize("override, where", [
    ({"search": {"budget": 3}}, "models.0.search.budget: unknown key"),
    ({"search": {"space": {"params.max_depth": {"gaussian": [1, 2]}}}}, "unknown distribution 'gaussian'"),
    ({"search": {"space": {"params.gamma": {"uniform": ["low", 1.0]}}}}, "bound 'low' is not a number"),
    ({"search": {"space": {"train.warmup": {"uniform": [0, 1]}}}}, "train.warmup: unknown key"),
    ({"search": {"space": {"params.max_depth": {"grid": [3, 6]}}}}, "grid values need algorithm: random"),
    ({"search": {"validation": "kfold"}}, "no scheduler can stop it"),
])
def test_a_bad_search_block_is_one_sentence_naming_the_yaml_path(override, where):
    with pytest.raises(ConfigError) as err:
        load_experiment("search-xgboost", "quick", override)
    assert where in str(err.value) and "\n" not in str(err.value)
    assert "search-xgboost (quick profile): models.0.search" in str(err.value)


def test_the_cli_refuses_a_bad_search_before_ray(tmp_path, capsys):
    import ray

    was_running = ray.is_initialized()
    argv = ["search-xgboost", "--storage", str(tmp_path), "--set", "search.num_samples=zero"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "models.0.search.num_samples" in err
    assert ray.is_initialized() == was_running and not any(tmp_path.iterdir())


def test_search_records_every_trial_on_validation_clips_refits_the_best_and_resumes(ray_session, tmp_path):
    csv = make_features_csv(tmp_path / "features.csv", clips_per_genre=20)
    argv = ["search-xgboost", "--features-csv", str(csv), "--storage", str(tmp_path), "--name", "s", *XGB]
    assert main(argv) == 0
    records = read_records(tmp_path / "s")
    trials, refits = _search_records(records)
    assert len(trials) == 4 and len(refits) == 1
    assert sorted(r["search"]["index"] for r in trials) == [0, 1, 2, 3]
    refit = refits[0]
    # Selection never sees test clips: the search trials are scored on a carve of the training clips.
    test_ids = set(make_split(_all_ids(csv), "paper", 0, 0.2).test)
    assert set(refit["test"]["ids"]) == test_ids and refit["test"]["set"] == "test"
    for rec in trials:
        assert rec["test"]["set"] == "valid" and not set(rec["test"]["ids"]) & test_ids
        assert rec["artifact"] is None and rec["n_train"] + len(rec["test"]["ids"]) == 160
        ended = rec["search"]["ended"]
        steps = [rep["step"] for rep in rec["search"]["reports"]]
        assert steps == sorted(steps) and steps[-1] == ended["step"] and ended["unit"] == "round"
        assert ended["budget"] == rec["config"]["params"]["n_estimators"] in (20, 40, 60)
        assert (ended["reason"] == "finished") == (ended["step"] == ended["budget"])
        assert rec["search"]["score"] == pytest.approx(rec["metrics"]["accuracy"])
    # The refit's configuration is the best validation one (among trials that ran their whole budget).
    finished = [r for r in trials if r["search"]["ended"]["reason"] == "finished"] or trials
    best = max(r["search"]["score"] for r in finished)
    chosen = next(r for r in trials if r["search"]["index"] == refit["search"]["index"])
    assert chosen["search"]["score"] == best and refit["search"]["config"] == chosen["search"]["config"]
    assert {k.split(".", 1)[1]: v for k, v in chosen["search"]["config"].items()}.items() <= \
        refit["config"]["params"].items()
    assert refit["search"]["id"] == refit["trial_key"] and refit["search"]["trials"] == 4
    # The report: a Searches section with the refit's interval and the paired test against the plain row.
    from raygenre.report import write_report

    text = write_report(tmp_path / "s", tmp_path / "report").read_text()
    section = text.split("## Searches", 1)[1].split("\n## ", 1)[0]
    assert "Trials run / stopped early | 4 / " in section and "Appendix C" in section
    assert "| knn |" in section and "fig-search-" in section
    assert "searched" not in text.split("## Searches", 1)[0]   # searched rows stay out of the study's tables

    # Resume: as if the driver died after two trials had finished (records are what a kill leaves behind).
    path = tmp_path / "s" / "records" / f"{refit['study']}.jsonl"
    kept = [line for line in path.read_text().splitlines()
            if json.loads(line).get("search", {}).get("role") == "trial"][:2]
    others = [line for line in path.read_text().splitlines() if "search" not in json.loads(line)]
    path.write_text("\n".join(others + kept) + "\n")
    assert main(argv) == 2                                   # a partial search is not rerun silently
    assert main([*argv, "--resume"]) == 0
    trials2, refits2 = _search_records(read_records(tmp_path / "s"))
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(trials2) == 4 and len(refits2) == 1
    assert sorted(r["search"]["index"] for r in trials2) == [0, 1, 2, 3]
    for line in kept:                                         # finished trials were kept, not rerun
        old = json.loads(line)
        assert sum(r["trial_key"] == old["trial_key"] for r in lines) == 1
    assert len([r for r in lines if (r.get("search") or {}).get("role") == "trial"]) == 4
    kept_configs = [json.loads(line)["search"]["config"] for line in kept]
    assert not [r for r in trials2 if r["trial_key"] not in {json.loads(k)["trial_key"] for k in kept}
                and r["search"]["config"] in kept_configs]     # Optuna did not replay the kept configurations


def _all_ids(csv: Path) -> list[str]:
    from raygenre.data.kaggle_csv import read_features_csv

    return sorted(read_features_csv(csv).index)


#: search-cnn shrunk: 6 clips of 2 s per genre, 32 px mel, 5 random configurations of 3 epochs, one at a time.
CNN = ["--data", "synthetic", "--no-report",
       "--set", "data.synthetic.clips_per_genre=6", "--set", "data.synthetic.seconds=2",
       "--set", "prepare.clip_seconds=2", "--set", "prepare.min_seconds=1", "--set", "prepare.mel.size=32",
       "--set", "train.epochs=3", "--set", "train.batch_size=16", "--set", "search.num_samples=5",
       "--set", "models=[{name: cnn, params: {channels: [8, 16, 16, 16]}, search: {space: "
                "{train.learning_rate: {loguniform: [0.0003, 0.1]}, params.dropout: {uniform: [0.0, 0.5]}}, "
                "metric: valid_loss, algorithm: random, max_concurrent: 1, seed: 1, "
                "scheduler: {name: asha, grace_period: 1, reduction_factor: 2}}}]"]


@pytest.mark.slow
def test_asha_stops_a_cnn_trial_early_and_its_record_says_when(ray_session, tmp_path):
    assert main(["search-cnn", "--storage", str(tmp_path), "--name", "c", *CNN]) == 0
    trials, refits = _search_records(read_records(tmp_path / "c"))
    assert len(trials) == 5 and len(refits) == 1
    stopped = [r for r in trials if r["search"]["ended"]["reason"] == "stopped"]
    assert stopped, "ASHA stopped no trial"
    for rec in stopped:
        ended = rec["search"]["ended"]
        assert ended["unit"] == "epoch" and 1 <= ended["step"] < ended["budget"] == 3
        assert [rep["step"] for rep in rec["search"]["reports"]] == list(range(1, ended["step"] + 1))
    assert refits[0]["test"]["set"] == "test" and refits[0]["history"][-1]["epoch"] == 3


def test_the_reports_appendix_c_is_the_models():
    from raygenre.models.tabular import TUNED_XGBOOST_PARAMS
    from raygenre.report.searches import APPENDIX_C

    assert APPENDIX_C == TUNED_XGBOOST_PARAMS


def test_random_search_samples_are_fixed_by_the_seed_and_cover_the_grid():
    from raygenre.search_config import SearchConfig
    from raygenre.train.search_space import planned_count, sample_configs

    search = SearchConfig.model_validate({
        "space": {"params.max_depth": {"grid": [3, 6]}, "params.n_estimators": {"quniform": [50, 300, 50]},
                  "train.optimizer": {"choice": ["adam", "sgd"]}},
        "num_samples": 3, "algorithm": "random", "seed": 7})
    configs = sample_configs(search)
    assert len(configs) == planned_count(search) == 6 and configs == sample_configs(search)
    assert [c["params.max_depth"] for c in configs] == [3, 6] * 3
    assert all(isinstance(c["params.n_estimators"], int) and c["params.n_estimators"] % 50 == 0 for c in configs)


def test_the_refit_is_the_best_trial_that_ran_its_whole_budget():
    from raygenre.search_config import SearchConfig
    from raygenre.train.search import choose

    search = SearchConfig.model_validate({"space": {"params.max_depth": {"randint": [2, 9]}}})

    def trial(score, reason, loss):
        return {"search": {"id": "s", "score": score, "ended": {"reason": reason},
                           "reports": [{"step": 1, "valid_accuracy": score, "valid_loss": loss}]}}

    trials = {0: trial(0.6, "finished", 1.0), 1: trial(0.9, "stopped", 0.5), 2: trial(0.7, "finished", 0.9),
              3: trial(0.7, "finished", 0.8)}
    assert choose(trials, search)[0] == 3          # a stopped trial's early score does not compete; ties: lower loss
    assert choose({1: trials[1]}, search)[0] == 1  # unless no trial ran its whole budget


@pytest.mark.parametrize("model, train, every, steps", [
    ("xgboost", None, 10, [10, 20, 25]),
    ("mlp", {"epochs": 3, "batch_size": 32}, 1, [1, 2, 3]),
])
def test_tabular_models_report_validation_scores_while_they_fit(model, train, every, steps):
    """XGBoost per `report_every` rounds (and its last), networks per epoch; the last report is the fitted model."""
    import numpy as np

    from raygenre.data.kaggle_csv import feature_columns
    from raygenre.genres import GENRE_INDEX
    from raygenre.models.tabular import build_classifier
    from raygenre.train.search_progress import attach_progress

    table = make_feature_table(clips_per_genre=10)
    X = table[list(feature_columns("kaggle58"))].to_numpy(np.float32)
    y = np.array([GENRE_INDEX[g] for g in table["label"]])
    fit, held = np.arange(len(y)) % 4 != 0, np.arange(len(y)) % 4 == 0
    params = {"n_estimators": 25, "max_depth": 2} if model == "xgboost" else {}
    pipe = build_classifier(model, params=params, train=train, seed=0)
    reports = []
    attach_progress(pipe, X[held], y[held], y[fit], reports.append, every)
    pipe.fit(X[fit], y[fit])
    assert [r["step"] for r in reports] == steps and {r["budget"] for r in reports} == {steps[-1]}
    assert all(len(r["pred"]) == held.sum() and r["valid_loss"] > 0 and r["n_train"] == fit.sum() for r in reports)
    last = reports[-1]
    assert last["pred"] == pipe.predict(X[held]).tolist()
    assert last["valid_accuracy"] == pytest.approx(float(np.mean(pipe.predict(X[held]) == y[held])))


def test_asha_over_ray_train_workers_without_the_state_api_is_refused(monkeypatch, tmp_path):
    """Train V2 frees a stopped trial's workers through the state API; without it the next trainer would hang."""
    from raygenre.search_config import SearchConfig
    from raygenre.train import search as search_module
    from raygenre.train.plan import plan_experiment

    monkeypatch.setattr(search_module, "state_api_available", lambda: False)
    cfg = load_experiment("search-cnn", "quick", {"train": {"workers": 1}})
    spec = plan_experiment(cfg)[0]
    with pytest.raises(ConfigError, match="train.workers: 0"):
        search_module.tune_search(cfg, "s", spec, SearchConfig.model_validate(spec["search"]), {}, {}, {}, tmp_path)


def test_kfold_validation_folds_only_the_training_clips():
    from raygenre.search_config import SearchConfig
    from raygenre.train.plan import plan_experiment
    from raygenre.train.search_space import evaluation_ids, kfold_rows

    cfg = load_experiment("search-xgboost", "quick", {"search": {"validation": "kfold", "folds": 4,
                                                                 "scheduler": {"name": "none"}}})
    spec = plan_experiment(cfg)[0]
    search = SearchConfig.model_validate(spec["search"])
    ids = sorted(make_feature_table(clips_per_genre=10).index)
    split = make_split(ids, "paper", 0, 0.2)
    folds = kfold_rows(spec, ids, search)
    held = [i for _, h in folds for i in h]
    assert len(folds) == 4 and sorted(held) == sorted(split.train) and not set(held) & set(split.test)
    assert all(not set(fit) & set(h) and len(fit) + len(h) == len(split.train) for fit, h in folds)
    assert evaluation_ids(spec, ids, search) == held
    with pytest.raises(ConfigError, match="kfold is for feature models"):
        load_experiment("search-cnn", "quick", {"search": {"validation": "kfold", "scheduler": {"name": "none"},
                                                           "metric": "valid_accuracy"}})
