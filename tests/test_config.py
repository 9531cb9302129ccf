"""Configs: composition, profiles, validation errors with YAML paths, stable hashes."""

import pytest

from raygenre.config import (
    ConfigError,
    config_hash,
    deep_merge,
    load_experiment,
    load_prepare_spec,
    prepare_spec_of,
)


def test_exp4_quick_composes_base_exp_and_profile():
    cfg = load_experiment("exp4", "quick")
    assert cfg.experiment == "exp4" and cfg.profile == "quick"
    assert cfg.exp4.model == "xgboost_tuned" and cfg.exp4.bootstraps == 100
    assert len(cfg.exp4.fractions) == 9
    assert cfg.data.synthetic.clips_per_genre == 20          # quick overlay
    assert load_experiment("exp4", "paper").data.synthetic.clips_per_genre == 100


def test_exp3_lists_the_six_feature_models_and_the_wav2vec2_rows():
    for profile in ("quick", "paper"):
        models = load_experiment("exp3", profile).models
        assert [m.name for m in models[:6]] == ["knn", "random_forest", "xgboost", "xgboost_tuned", "mlp", "lstm"]
        assert [(m.name, m.variant) for m in models[6:]] == [
            ("wav2vec2", "progressive"), ("wav2vec2", "frozen"), ("wav2vec2", "layer_probe")]
    quick = load_experiment("exp3", "quick")
    assert quick.weights.source == "random" and all(m.params["backbone"] == "tiny" for m in quick.models[6:])


def test_unknown_key_and_bad_value_name_their_path():
    with pytest.raises(ConfigError, match=r"split\.nmae: unknown key"):
        load_experiment("exp4", "quick", {"split": {"nmae": "paper"}})
    with pytest.raises(ConfigError, match=r"exp4\.bootstraps"):
        load_experiment("exp4", "quick", {"exp4": {"bootstraps": 0}})
    with pytest.raises(ConfigError, match=r"split\.name"):
        load_experiment("exp3", "quick", {"split": {"name": "random"}})
    with pytest.raises(ConfigError, match="unknown experiment"):
        load_experiment("exp9")
    with pytest.raises(ConfigError, match="unknown profile"):
        load_experiment("exp3", "huge")


def test_hash_is_stable_and_content_based():
    a = load_experiment("exp4", "quick")
    assert a.hash() == load_experiment("exp4", "quick").hash()
    assert a.hash() != load_experiment("exp4", "quick", {"split": {"seeds": [1]}}).hash()
    assert config_hash({"a": 1, "b": 2}) == config_hash({"b": 2, "a": 1})


def test_prepare_hash_ignores_representations_but_not_audio_settings():
    base = load_prepare_spec("quick")
    assert set(base.prepare.representations) == {"features", "mel", "waveform"}
    only_features = load_prepare_spec("quick", {"prepare": {"representations": ["features"]}})
    assert only_features.hash() == base.hash()
    assert load_prepare_spec("quick", {"prepare": {"clip_seconds": 20}}).hash() != base.hash()
    assert prepare_spec_of(load_experiment("exp3", "quick")).data == base.data


def test_deep_merge_does_not_mutate():
    base = {"a": {"b": 1, "c": 2}}
    merged = deep_merge(base, {"a": {"b": 5}})
    assert merged == {"a": {"b": 5, "c": 2}} and base == {"a": {"b": 1, "c": 2}}


def test_configs_for_yaml_files_on_disk(tmp_path):
    (tmp_path / "profiles").mkdir()
    (tmp_path / "base.yaml").write_text("split: {name: paper}\n")
    (tmp_path / "exp3.yaml").write_text("models: [{name: knn}]\n")
    (tmp_path / "profiles" / "quick.yaml").write_text("all: {}\nbogus: {}\n")
    with pytest.raises(ConfigError, match="unknown section"):
        load_experiment("exp3", "quick", root=tmp_path)
    (tmp_path / "profiles" / "quick.yaml").write_text("all: {}\n")
    assert load_experiment("exp3", "quick", root=tmp_path).models[0].name == "knn"
    (tmp_path / "exp3.yaml").write_text("models: [{name: knn\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_experiment("exp3", "quick", root=tmp_path)


def test_model_train_trains_named_models_longer_beneath_each_rows_own_settings():
    cfg = load_experiment("exp1", "quick")
    epochs = {(m.name, m.variant): m.train.get("epochs") for m in cfg.models}
    assert epochs[("cnn", "default")] == 15 and epochs[("crnn", "default")] == 15
    assert epochs[("vgg16", "fc6")] is None and cfg.train.epochs == 1  # the other rows keep the profile's epoch
    row = next(m for m in cfg.models if (m.name, m.variant) == ("vgg16", "finetune_all"))
    assert row.train == {"learning_rate": 0.0001}
    own = load_experiment("exp1", "quick", {"models": [{"name": "cnn", "train": {"epochs": 3}}]})
    assert own.models[0].train == {"epochs": 3}  # a row's own train block wins
    assert load_experiment("exp2", "quick").models[-1].train["epochs"] == 5
    with pytest.raises(ConfigError, match=r"model_train: unknown model\(s\) cnnn"):
        load_experiment("exp1", "quick", {"model_train": {"cnnn": {"epochs": 2}}})
