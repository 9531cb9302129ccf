"""The record format: the one builder, the JSON Schema, the writer that refuses drift, version-1 records."""

import json

import pytest

from raygenre.errors import RecordsError
from raygenre.records import (
    RECORD_VERSION,
    append_record,
    build_record,
    check_complete,
    read_records,
    record_schema,
    validate_record,
)
from raygenre.stats import classification_metrics

SPEC = {"trial_key": "exp3/exp3-features/knn/default/features-kaggle58/original/paper-0", "experiment": "exp3",
        "study": "exp3-features", "model": "knn", "family": "tabular", "variant": "default",
        "representation": "features", "feature_set": "kaggle58", "augmented": False,
        "split": {"name": "paper", "seed": 0, "test_fraction": 0.2}, "train_fraction": 1.0, "bootstrap_index": None,
        "params": {}}
RESULT = {"metrics": classification_metrics(["rock", "jazz"], ["rock", "rock"]),
          "test": {"ids": ["rock.00001", "jazz.00002"], "y_true": ["rock", "jazz"], "y_pred": ["rock", "rock"],
                   "set": "test"},
          "n_train": 8, "timings": {"fit_predict_s": 0.1}, "params": {"total": 10, "trainable": 7},
          "history": [{"epoch": 1, "loss": 2.3}]}


def test_ok_and_failed_records_from_the_one_builder_validate():
    ok = build_record(SPEC, {"run": {"source": "test"}}, result=RESULT)
    validate_record(ok)
    assert ok["record_version"] == RECORD_VERSION == 2
    assert ok["params"] == {"total": 10, "trainable": 7} and ok["history"][0]["epoch"] == 1
    assert ok["artifact"] is None and ok["augmented"] is False and ok["metrics"]["accuracy"] == 0.5
    failed = build_record(SPEC, {}, status="failed", error="ValueError: boom")
    validate_record(failed)
    assert failed["metrics"] is None and failed["test"] is None and failed["error"] == "ValueError: boom"
    assert set(ok) == set(failed) == {*record_schema()["required"], "selection"}  # selection: neural models only


@pytest.mark.parametrize("mutate, where", [
    (lambda r: r.pop("history"), "(top level)"),
    (lambda r: r.pop("augmented"), "(top level)"),
    (lambda r: r.update(family="cnn"), "family"),
    (lambda r: r["metrics"].update(accuracy=1.5), "metrics"),
    (lambda r: r.update(extra_key=1), "(top level)"),
    (lambda r: r.update(status="failed"), ""),  # a failed record needs an error text and no metrics
])
def test_a_record_that_drifts_from_the_schema_is_refused(tmp_path, mutate, where):
    record = build_record(SPEC, {}, result=json.loads(json.dumps(RESULT)))
    mutate(record)
    with pytest.raises(RecordsError, match="does not match the record schema"):
        validate_record(record)
    with pytest.raises(RecordsError):
        append_record(tmp_path / "records" / "x.jsonl", record)
    assert not (tmp_path / "records" / "x.jsonl").exists()  # nothing half-valid reaches the file


def test_version_1_records_are_read_and_upgraded(tmp_path):
    v1 = build_record(SPEC, {}, result=RESULT)
    for key in ("family", "params", "artifact", "history", "weights"):
        v1.pop(key)
    v1["record_version"] = 1
    (tmp_path / "records").mkdir()
    (tmp_path / "records" / "exp3-features.jsonl").write_text(json.dumps(v1) + "\n" + '{"cut sho')
    [record] = read_records(tmp_path)  # the line cut by a crash is skipped
    validate_record(record)
    assert record["family"] == "tabular" and record["history"] == [] and record["params"] is None


def test_check_complete_names_missing_and_failed_trials(tmp_path):
    other = {**SPEC, "trial_key": "exp3/other"}
    append_record(tmp_path / "records" / "s.jsonl", build_record(SPEC, {}, result=RESULT))
    with pytest.raises(RecordsError, match="1 of 2 planned trials have no record"):
        check_complete(tmp_path, [SPEC, other])
    append_record(tmp_path / "records" / "s.jsonl", build_record(other, {}, status="failed", error="x\nValueError: k"))
    assert check_complete(tmp_path, [SPEC, other]) == ["exp3/other: ValueError: k"]
