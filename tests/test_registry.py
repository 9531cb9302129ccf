"""The model registry is the one list of models: validation, planning, dispatch and resources read it."""

import sys
from pathlib import Path

import pytest

from raygenre.config import load_experiment
from raygenre.errors import ConfigError
from raygenre.models.registry import MODELS, ModelEntry, get_model, model_names, register, unregister
from raygenre.records import validate_record
from raygenre.train.plan import plan_experiment
from raygenre.train.trial import run_trial

sys.path.insert(0, str(Path(__file__).parent))
from feature_tables import make_feature_table  # noqa: E402

TOY = ModelEntry("nearest_centroid", "tabular", ("default", "shrunk"), "toy_model:build_nearest_centroid")


@pytest.fixture
def toy():
    register(TOY)  # the whole "diff" of adding a model, beside tests/toy_model.py
    yield TOY
    unregister(TOY.name)


def test_the_study_models_are_registered_with_family_and_representation():
    assert model_names("tabular") == ("knn", "random_forest", "xgboost", "xgboost_tuned", "mlp", "lstm")
    assert {get_model(n).representation for n in model_names("tabular")} == {"features"}
    assert [n for n in model_names("tabular") if MODELS[n].neural] == ["mlp", "lstm"]
    assert model_names("spectrogram") == ("cnn", "crnn", "alexnet", "vgg16", "resnet18")
    assert get_model("vgg16").pretrained and get_model("vgg16").representation == "mel"
    assert get_model("mlp").gpus == 0 and get_model("knn").gpus == 0 and get_model("cnn").gpus == "auto"
    with pytest.raises(ConfigError, match="unknown model 'svm': choose one of"):
        get_model("svm")
    with pytest.raises(ValueError, match="registered twice"):
        register(get_model("knn"))


def test_a_toy_model_plugs_in_by_one_registry_entry(toy):
    cfg = load_experiment("exp3", "quick", {"models": [{"name": "nearest_centroid"},
                                                       {"name": "nearest_centroid", "variant": "shrunk",
                                                        "params": {"shrink_threshold": 0.2}}]})
    trials = plan_experiment(cfg)
    assert [t["variant"] for t in trials] == ["default", "shrunk"]
    assert trials[1]["trial_key"] == "exp3/exp3-features/nearest_centroid/shrunk/features-kaggle58/original/paper-0"
    table = make_feature_table(20)
    records = [run_trial(t, {"features": table}, {"run": {"source": "test"}}) for t in trials]
    for record in records:
        validate_record(record)
        assert record["model"] == "nearest_centroid" and record["metrics"]["accuracy"] > 0.3
    assert records[0]["test"]["y_pred"] != records[1]["test"]["y_pred"]  # the params reached the model


def test_unregistered_names_and_variants_fail_validation_with_their_path():
    with pytest.raises(ConfigError, match=r"models\.0: .*unknown model 'nearest_centroid'"):
        load_experiment("exp3", "quick", {"models": [{"name": "nearest_centroid"}]})
    with pytest.raises(ConfigError, match="model 'xgboost' has no variant 'fc6'"):
        load_experiment("exp3", "quick", {"models": [{"name": "xgboost", "variant": "fc6"}]})
    with pytest.raises(ConfigError, match=r"models\.0: .*train\.epoch: unknown key"):
        load_experiment("exp3", "quick", {"models": [{"name": "mlp", "train": {"epoch": 3}}]})


def test_per_model_train_overrides_reach_the_spec():
    cfg = load_experiment("exp3", "quick", {"models": [{"name": "mlp", "train": {"learning_rate": 0.01}},
                                                       {"name": "lstm"}]})
    mlp, lstm = plan_experiment(cfg)
    assert mlp["train"]["learning_rate"] == 0.01 and lstm["train"]["learning_rate"] == 0.001
    assert mlp["train"]["epochs"] == lstm["train"]["epochs"] == 30  # the quick profile's train block
