"""The record format: the one builder, the JSON Schema, the writer that refuses drift, version-1 records."""

import json
import os

import pytest

from raygenre.errors import RecordsError
from raygenre.records import (
    RECORD_VERSION,
    append_record,
    build_record,
    check_complete,
    read_records,
    read_records_checked,
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


def _bad_lines_run(tmp_path):
    """A run whose JSONL holds two good records between one bad line of each kind."""
    good = build_record(SPEC, {}, result=RESULT)
    other = build_record({**SPEC, "trial_key": "exp3/other"}, {}, result=RESULT)
    off_schema = {**good, "trial_key": "exp3/off", "family": "cnn"}
    lines = [json.dumps(good).encode(), b"[]", b'{"trial_key": "caf\xe9"}', json.dumps(off_schema).encode(),
             json.dumps(other).encode(), json.dumps(good).encode()[:40]]  # the last one cut by a crash
    (tmp_path / "records").mkdir(parents=True)
    (tmp_path / "records" / "exp3-features.jsonl").write_bytes(b"\n".join(lines))
    return tmp_path


def test_bad_lines_of_every_kind_are_skipped_and_counted_with_their_place(tmp_path):
    read = read_records_checked(_bad_lines_run(tmp_path))
    assert [r["trial_key"] for r in read.records] == [SPEC["trial_key"], "exp3/other"]
    assert [(s.file, s.line) for s in read.skipped] == [("records/exp3-features.jsonl", n) for n in (2, 3, 4, 6)]
    reasons = [s.reason for s in read.skipped]
    assert reasons[0] == "a JSON list, not an object" and reasons[1].startswith("not UTF-8")
    assert reasons[2].startswith("off the record schema at family") and reasons[3] == "not JSON (cut short?)"
    summary = read.skipped_summary()
    assert summary.startswith("4 bad record lines skipped: records/exp3-features.jsonl:2 (a JSON list")
    assert summary.endswith("; ….") and ":6" not in summary  # the first three by place
    assert len(read_records(tmp_path)) == 2  # the old call keeps working
    (tmp_path / "records" / "exp3-features.jsonl").write_bytes(b"[]\n")
    with pytest.raises(RecordsError, match=r"hold no valid record; 1 bad record line skipped: .*jsonl:1"):
        read_records(tmp_path)
    assert read_records(tmp_path, require=False) == []


def test_report_and_predict_say_how_many_lines_were_skipped(tmp_path, capsys):
    from raygenre.predict import main as predict
    from raygenre.report import write_report

    run = _bad_lines_run(tmp_path / "run")
    report = write_report(run, tmp_path / "out")
    text = report.read_text()
    assert "**Warning:** 4 bad record lines skipped: records/exp3-features.jsonl:2" in text
    assert capsys.readouterr().err.startswith("warning: 4 bad record lines skipped")
    assert predict([str(tmp_path), "--run", str(run)]) == 2  # no kept model in this run
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("warning: 4 bad record lines skipped: records/exp3-features.jsonl:2")
    assert err[1].startswith("error: ") and "has no kept models" in err[1] and len(err) == 2


def test_a_short_write_still_appends_whole_lines(tmp_path, monkeypatch):
    real_write, calls = os.write, []

    def three_bytes_at_a_time(fd, data):
        calls.append(len(data))
        return real_write(fd, bytes(data[:3]))

    monkeypatch.setattr(os, "write", three_bytes_at_a_time)
    path = tmp_path / "records" / "s.jsonl"
    for key in ("a", "b"):
        append_record(path, build_record({**SPEC, "trial_key": key}, {}, result=RESULT))
    monkeypatch.undo()
    assert len(calls) > 100 and path.read_bytes().endswith(b"\n")
    read = read_records_checked(tmp_path)
    assert [r["trial_key"] for r in read.records] == ["a", "b"] and read.skipped == []


def test_an_append_after_a_cut_line_starts_a_line_of_its_own(tmp_path):
    path = tmp_path / "records" / "s.jsonl"
    append_record(path, build_record(SPEC, {}, result=RESULT))
    whole = path.read_bytes()
    path.write_bytes(whole + whole[:50])  # a crash mid-append: no trailing newline
    append_record(path, build_record({**SPEC, "trial_key": "after"}, {}, result=RESULT))
    lines = path.read_bytes().split(b"\n")
    assert len(lines) == 4 and lines[-1] == b"" and lines[1] == whole[:50]
    assert json.loads(lines[2])["trial_key"] == "after"
    read = read_records_checked(tmp_path)
    assert [r["trial_key"] for r in read.records] == [SPEC["trial_key"], "after"]
    assert [(s.line, s.reason) for s in read.skipped] == [(2, "not JSON (cut short?)")]
