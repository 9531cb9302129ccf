"""XGBoost backends: the parameter translation, and distributed training on Ray Train against the in-trial
classifier (the default backend: ``raygenre.models.tabular``'s XGBClassifier pipeline)."""

import numpy as np
import pytest
from sklearn.datasets import make_classification
from xgboost import XGBClassifier

from raygenre.models.tabular import TUNED_XGBOOST_PARAMS, build_classifier
from raygenre.train.xgb import fit_predict_distributed, to_native_params, train_distributed


def fit_predict_in_trial(X_train, y_train, X_test, params, *, seed, nthread):
    """The default backend, as a trial runs it."""
    model = build_classifier("xgboost", params=params, seed=seed, nthread=nthread)
    return model.fit(X_train, y_train).predict(X_test)


@pytest.fixture(scope="module")
def problem():
    X, y = make_classification(n_samples=500, n_features=58, n_informative=20, n_redundant=10, n_classes=10,
                               n_clusters_per_class=1, class_sep=2.0, random_state=0)
    X = X.astype(np.float32)
    return X[:301], y[:301], X[301:], y[301:]  # an odd row count: no worker shard may lose a row


def test_tuned_params_translate_to_native_names():
    native, rounds = to_native_params(TUNED_XGBOOST_PARAMS)
    assert rounds == 1000
    assert native == {"subsample": 0.6, "lambda": 1.5, "alpha": 0.1, "max_depth": 9, "eta": 0.05, "gamma": 0,
                      "colsample_bytree": 0.6, "objective": "multi:softprob", "num_class": 10}


def test_translation_defaults_and_errors():
    assert to_native_params(None) == ({"objective": "multi:softprob", "num_class": 10}, 100)
    native, rounds = to_native_params({"n_estimators": None, "max_depth": None, "random_state": 5, "n_jobs": 2,
                                       "tree_method": "hist", "objective": "multi:softmax"}, num_class=4)
    assert rounds == 100
    assert native == {"seed": 5, "nthread": 2, "tree_method": "hist", "objective": "multi:softmax",
                      "num_class": 4}
    with pytest.raises(ValueError, match="early_stopping_rounds"):
        to_native_params({"early_stopping_rounds": 10})
    with pytest.raises(ValueError, match="given twice"):
        to_native_params({"eta": 0.1, "learning_rate": 0.2})
    with pytest.raises(ValueError, match="multi-class"):
        to_native_params({"objective": "binary:logistic"})


def test_native_training_equals_xgbclassifier(problem):
    """The translation is what XGBClassifier does: the same probabilities, not just similar ones."""
    X_train, y_train, X_test, _ = problem
    params = {**TUNED_XGBOOST_PARAMS, "n_estimators": 40}
    sklearn_model = XGBClassifier(**params, random_state=3, n_jobs=1).fit(X_train, y_train)
    import xgboost

    native, rounds = to_native_params(params)
    booster = xgboost.train({**native, "seed": 3, "nthread": 1}, xgboost.DMatrix(X_train, label=y_train),
                            num_boost_round=rounds)

    np.testing.assert_allclose(booster.predict(xgboost.DMatrix(X_test)), sklearn_model.predict_proba(X_test),
                               rtol=1e-6, atol=1e-7)


def test_in_trial_predicts_labels_well(problem):
    X_train, y_train, X_test, y_test = problem
    predictions = fit_predict_in_trial(X_train, y_train, X_test, {"n_estimators": 50}, seed=0, nthread=1)
    assert predictions.shape == y_test.shape and np.issubdtype(predictions.dtype, np.integer)
    assert np.mean(predictions == y_test) > 0.6
    again = fit_predict_in_trial(X_train, y_train, X_test, {"n_estimators": 50}, seed=0, nthread=1)
    np.testing.assert_array_equal(predictions, again)


def test_labels_out_of_range_are_refused(ray_session, problem):
    X_train, y_train, X_test, _ = problem
    with pytest.raises(ValueError, match="0..9"):
        fit_predict_distributed(X_train, y_train + 1, X_test, {}, num_workers=1, seed=0)


def test_distributed_agrees_with_in_trial(ray_session, problem, tmp_path):
    X_train, y_train, X_test, y_test = problem
    params = {**TUNED_XGBOOST_PARAMS, "max_depth": 4}
    booster = train_distributed(X_train, y_train, params, num_workers=2, seed=0, num_boost_round=50,
                                storage_path=str(tmp_path))
    assert booster.num_boosted_rounds() == 50  # num_boost_round overrides n_estimators (1000)
    import xgboost

    distributed = np.argmax(booster.predict(xgboost.DMatrix(X_test)), axis=1)
    in_trial = fit_predict_in_trial(X_train, y_train, X_test, {**params, "n_estimators": 50}, seed=0, nthread=1)
    assert np.mean(distributed == y_test) > 0.6
    assert np.mean(distributed == in_trial) >= 0.9
    assert any(tmp_path.iterdir())  # the run and its checkpoint went where it was told


def test_distributed_refuses_more_workers_than_cpus(ray_session, problem):
    X_train, y_train, X_test, _ = problem
    with pytest.raises(ValueError, match="needs 3 CPU"):
        fit_predict_distributed(X_train, y_train, X_test, {}, num_workers=3, seed=0)


@pytest.mark.slow
def test_distributed_inside_a_tune_trial(ray_session, problem, tmp_path):
    """Pattern B: a Tune function trial drives the trainer while holding almost no CPU. A trial whose
    workers can never fit beside it (0.01 + 2 CPUs on a 2-CPU cluster) fails at once instead of stalling."""
    from ray import tune

    X_train, y_train, X_test, y_test = problem

    def trial(config):
        predictions = fit_predict_distributed(X_train, y_train, X_test, {"n_estimators": 30},
                                              num_workers=config["workers"], seed=0)
        tune.report({"accuracy": float(np.mean(predictions == y_test))})

    tuner = tune.Tuner(tune.with_resources(trial, {"cpu": 0.01}),
                       param_space={"workers": tune.grid_search([1, 2])},
                       run_config=tune.RunConfig(storage_path=str(tmp_path), name="nested", verbose=0))
    results = {r.config["workers"]: r for r in tuner.fit()}
    assert results[1].error is None and results[1].metrics["accuracy"] > 0.6
    assert "needs 2 CPU(s) for its workers beside the 0.01 CPU(s)" in str(results[2].error)
