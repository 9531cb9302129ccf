"""The six feature models: Appendix B/C fidelity, one interface, learning, determinism, scaling."""

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.neighbors import KNeighborsClassifier
from torch import nn

from raygenre.config import TrainConfig
from raygenre.models.registry import model_names
from raygenre.models.tabular import (
    TUNED_XGBOOST_PARAMS,
    SingleBiasLSTM,
    TorchTabularClassifier,
    build_classifier,
    build_network,
    keras_style_param_count,
)

FAST_NEURAL = {"epochs": 10, "learning_rate": 3e-3, "batch_size": 32}
FAST_PARAMS = {"xgboost_tuned": {"n_estimators": 100}}


@pytest.fixture(scope="module")
def problem():
    """A learnable 10-class problem with the Kaggle table's width: 300 training rows, 200 test rows."""
    X, y = make_classification(n_samples=500, n_features=58, n_informative=20, n_redundant=10, n_classes=10,
                               n_clusters_per_class=1, class_sep=2.0, random_state=0)
    X = (X * 40 + 100).astype(np.float32)  # far from standardised, as raw librosa features are
    return X[:300], y[:300], X[300:], y[300:]


FEATURE_MODELS = model_names("tabular")


@pytest.mark.parametrize("n_features, mlp_counts", [(58, (207_802, 205_850)), (57, (207_290, 205_338))])
def test_parameter_counts_match_appendix_b(n_features, mlp_counts):
    assert keras_style_param_count(build_network("mlp", n_features)) == mlp_counts
    # the LSTM reads one value per step: its size does not depend on the number of features
    assert keras_style_param_count(build_network("lstm", n_features)) == (305_994, 305_994)


def test_mlp_layers_follow_the_appendix_b_table():
    mlp = build_network("mlp", 58)
    linears = [m for m in mlp.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (58, 512), (512, 256), (256, 128), (128, 64), (64, 16), (16, 10)]
    assert sum(p.numel() for p in linears[0].parameters()) == 30_208
    norms = [m for m in mlp.modules() if isinstance(m, nn.BatchNorm1d)]
    assert [m.num_features for m in norms] == [512, 256, 128, 64, 16]


def test_single_bias_lstm_is_a_keras_lstm():
    """The constant-1 channel's input weights act exactly as one bias vector per gate."""
    torch.manual_seed(0)
    ours = SingleBiasLSTM(1, 256)
    assert sum(p.numel() for p in ours.parameters()) == 264_192 == 4 * (256 * (1 + 256) + 256)
    reference = nn.LSTM(1, 256, batch_first=True)
    with torch.no_grad():
        reference.weight_ih_l0.copy_(ours.lstm.weight_ih_l0[:, :1])
        reference.weight_hh_l0.copy_(ours.lstm.weight_hh_l0)
        reference.bias_ih_l0.copy_(ours.lstm.weight_ih_l0[:, 1])
        reference.bias_hh_l0.zero_()
        x = torch.randn(4, 58, 1)
        _, (h_n, _) = reference(x)
        torch.testing.assert_close(ours(x), h_n[-1])
    forget_bias = ours.lstm.weight_ih_l0[256:512, 1]
    assert torch.all(forget_bias == 1) and torch.all(ours.lstm.weight_ih_l0[:256, 1] == 0)


@pytest.mark.parametrize("name", FEATURE_MODELS)
def test_each_model_learns_a_separable_problem(name, problem):
    X_train, y_train, X_test, y_test = problem
    clf = build_classifier(name, params=FAST_PARAMS.get(name), train=FAST_NEURAL)
    predictions = clf.fit(X_train, y_train).predict(X_test)
    assert predictions.shape == y_test.shape and np.issubdtype(predictions.dtype, np.integer)
    accuracy = float(np.mean(predictions == y_test))
    assert accuracy > (0.2 if name == "lstm" else 0.5), f"{name}: accuracy {accuracy:.2f}, chance is 0.10"


@pytest.mark.parametrize("name", FEATURE_MODELS)
def test_same_seed_same_predictions(name, problem):
    X_train, y_train, X_test, _ = problem
    rows = 120 if name == "lstm" else 300
    neural = {"epochs": 2, "batch_size": 16}
    params = {"n_estimators": 30} if name == "xgboost_tuned" else None
    runs = [build_classifier(name, params=params, train=neural, seed=7).fit(X_train[:rows], y_train[:rows])
            .predict(X_test) for _ in range(2)]
    np.testing.assert_array_equal(runs[0], runs[1])


def test_another_seed_gives_another_network(problem):
    X_train, y_train, X_test, _ = problem
    probs = [build_classifier("mlp", train={"epochs": 1}, seed=s).fit(X_train, y_train).predict_proba(X_test)
             for s in (0, 1)]
    assert not np.allclose(probs[0], probs[1])


def test_fitting_leaves_the_global_torch_rng_alone(problem):
    X_train, y_train, _, _ = problem
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_classifier("mlp", train={"epochs": 1}, seed=5).fit(X_train, y_train)
    torch.testing.assert_close(torch.rand(3), expected)


@pytest.mark.parametrize("name", ["knn", "mlp"])
def test_scaler_is_fitted_on_training_rows_only(name, problem):
    X_train, y_train, X_test, _ = problem
    clf = build_classifier(name, train={"epochs": 1}).fit(X_train, y_train)
    scaler = clf.named_steps["scale"]
    np.testing.assert_allclose(scaler.mean_, X_train.mean(axis=0, dtype=np.float64), rtol=1e-5)
    clf.predict(X_test)
    np.testing.assert_allclose(scaler.mean_, X_train.mean(axis=0, dtype=np.float64), rtol=1e-5)
    assert [step for step, _ in clf.steps] == ["scale", "model"]


def test_tuned_params_are_appendix_c_exactly():
    assert TUNED_XGBOOST_PARAMS == {"subsample": 0.6, "reg_lambda": 1.5, "reg_alpha": 0.1, "n_estimators": 1000,
                                    "max_depth": 9, "learning_rate": 0.05, "gamma": 0, "colsample_bytree": 0.6}
    model = build_classifier("xgboost_tuned", seed=3, nthread=2)[-1]
    params = model.get_params()
    assert {k: params[k] for k in TUNED_XGBOOST_PARAMS} == TUNED_XGBOOST_PARAMS
    assert params["random_state"] == 3 and params["n_jobs"] == 2


def test_untuned_models_keep_library_defaults():
    assert build_classifier("knn")[-1].get_params() == KNeighborsClassifier().get_params()
    forest = build_classifier("random_forest", seed=4, nthread=2)[-1].get_params()
    assert forest["random_state"] == 4 and forest["n_jobs"] == 2 and forest["n_estimators"] == 100
    xgb = build_classifier("xgboost", seed=4)[-1].get_params()
    assert all(xgb[k] is None for k in TUNED_XGBOOST_PARAMS)  # None: xgboost's own default


def test_params_override_and_train_config():
    assert build_classifier("knn", params={"n_neighbors": 3})[-1].n_neighbors == 3
    net = build_classifier("lstm", train=TrainConfig(epochs=7, optimizer="sgd", schedule="cosine"),
                           params={"epochs": 2})[-1]
    assert isinstance(net, TorchTabularClassifier)
    assert (net.arch, net.epochs, net.optimizer, net.schedule) == ("lstm", 2, "sgd", "cosine")
    assert build_classifier("mlp", params={"dropout": 0.5})[-1].dropout == 0.5


@pytest.mark.parametrize("name, key", [("random_forest", "learning_rate"), ("xgboost_tuned", "eta_typo"),
                                       ("mlp", "arch"), ("lstm", "hidden")])
def test_unknown_param_names_model_and_key(name, key):
    with pytest.raises(ValueError, match=f"'{name}'.*'{key}'"):
        build_classifier(name, params={key: 1})


def test_unknown_model_and_bad_train_config():
    with pytest.raises(ValueError, match="unknown feature model 'svm'"):
        build_classifier("svm")
    with pytest.raises(ValueError):
        build_classifier("mlp", train={"optimizer": "rmsprop"})


@pytest.mark.parametrize("name", ["xgboost", "mlp"])
def test_training_set_missing_a_genre_still_trains(name, problem):
    X_train, y_train, X_test, _ = problem
    keep = y_train != 3
    clf = build_classifier(name, params={"n_estimators": 20} if name == "xgboost" else None,
                           train={"epochs": 2}).fit(X_train[keep], y_train[keep])
    predictions = clf.predict(X_test)
    assert np.issubdtype(predictions.dtype, np.integer) and set(predictions) <= set(range(10))
    if name == "xgboost":  # trees never predict an unseen label (a barely trained network may)
        assert 3 not in set(predictions) and list(clf.classes_) == [0, 1, 2, 4, 5, 6, 7, 8, 9]
        assert clf.predict_proba(X_test).shape == (len(X_test), 9)


def test_pipelines_clone_as_sklearn_estimators(problem):
    X_train, y_train, X_test, _ = problem
    for name in FEATURE_MODELS:
        clf = build_classifier(name, params={"epochs": 3} if name in ("mlp", "lstm") else None)
        assert clone(clf).get_params()["model"].get_params() == clf.get_params()["model"].get_params()
    fitted = build_classifier("mlp", train={"epochs": 1}).fit(X_train, y_train)
    assert fitted.predict_proba(X_test).shape == (len(X_test), 10)
    np.testing.assert_allclose(fitted.predict_proba(X_test).sum(axis=1), 1, rtol=1e-5)
