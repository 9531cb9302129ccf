"""Kept models and ``python -m raygenre.predict``: same code path as the sweep, so the same answers."""

from __future__ import annotations

import io
import json
import pickle
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from raygenre.data.synthetic import synthesize
from raygenre.inference import clip_windows
from raygenre.predict import main
from raygenre.records import read_records
from raygenre.sweep import main as sweep

sys.path.insert(0, str(Path(__file__).parent))
from feature_tables import make_features_csv  # noqa: E402

SMALL = ["--set", "data.synthetic.clips_per_genre=5", "--set", "data.synthetic.seconds=6.0",
         "--set", "prepare.clip_seconds=6.0", "--set", "prepare.min_seconds=3.0", "--set", "train.epochs=3",
         "--set", "models=[{name: xgboost, params: {n_estimators: 30}}, {name: knn}, {name: mlp}]"]


@pytest.fixture(scope="module")
def run(ray_session, tmp_path_factory) -> Path:
    storage = tmp_path_factory.mktemp("runs")
    assert sweep(["exp3", "--data", "synthetic", "--storage", str(storage), "--name", "r", "--no-report",
                  *SMALL]) == 0
    return storage / "r"


def clip_path(run: Path, clip_id: str) -> Path:
    genre = clip_id.split(".")[0]
    return next((run / "data").rglob(f"{genre}/{clip_id}.wav"))


def predict_json(capsys, argv: list[str]) -> tuple[int, list[dict], str]:
    code = main([*argv, "--format", "json", "--top", "10"])
    out = capsys.readouterr()
    return code, (json.loads(out.out) if out.out.strip() else []), out.err


@pytest.mark.slow
@pytest.mark.parametrize("model", ["xgboost", "knn", "mlp"])
def test_predictions_on_held_out_clips_equal_the_record(run, capsys, model):
    record = next(r for r in read_records(run) if r["model"] == model)
    assert record["artifact"] == f"artifacts/{record['trial_key'].replace('/', '__')}"
    files = [str(clip_path(run, c)) for c in record["test"]["ids"]]
    code, results, err = predict_json(capsys, [*files, "--run", str(run), "--model", model])
    assert code == 0 and f"model: {model} (default), test accuracy {record['metrics']['accuracy']:.3f}" in err
    assert "warning: this model reads the Kaggle 'length' input" in err
    predicted = [r["top"][0]["genre"] for r in results]
    assert predicted == record["test"]["y_pred"]  # same code path, same answers
    accuracy = np.mean([p == t for p, t in zip(predicted, record["test"]["y_true"])])
    assert accuracy == pytest.approx(record["metrics"]["accuracy"])
    assert all(abs(sum(g["probability"] for g in r["top"]) - 1) < 1e-3 for r in results)


@pytest.mark.slow
def test_default_is_the_best_kept_model_and_a_folder_runs_on_ray_data(run, capsys, tmp_path):
    best = min(read_records(run), key=lambda r: (-r["metrics"]["accuracy"], r["trial_key"]))  # ties: by key
    folder = tmp_path / "incoming"
    folder.mkdir()
    for clip_id in best["test"]["ids"][:3]:
        (folder / f"{clip_id}.wav").write_bytes(clip_path(run, clip_id).read_bytes())
    (folder / "broken.wav").write_bytes(b"")
    (folder / "notes.wav").write_bytes(b"these are not samples" * 40)
    stereo = np.stack([synthesize("metal", 75.0 * 44100 / 22050, seed=3)[: 75 * 44100]] * 2, axis=1)
    buf = io.BytesIO()
    sf.write(buf, stereo, 44100, format="FLAC")
    (folder / "long_stereo.flac").write_bytes(buf.getvalue())
    code, results, err = predict_json(capsys, [str(folder), "--run", str(run)])
    assert code == 1  # two files failed; the others are still predicted
    assert f"model: {best['model']}" in err
    assert re.search(r"error: .*broken\.wav: file is empty", err)
    assert re.search(r"error: .*notes\.wav: not readable", err)
    by_name = {Path(r["path"]).name: r for r in results}
    assert set(by_name) == {*(f"{c}.wav" for c in best["test"]["ids"][:3]), "long_stereo.flac"}
    assert by_name["long_stereo.flac"]["windows"] == 75 // 6  # 6 s clips: windowed, mean over windows
    assert all(r["windows"] == 1 for n, r in by_name.items() if n.endswith(".wav"))


def test_windows_cover_the_file_and_keep_short_files_whole():
    y = np.arange(75)
    windows = clip_windows(y, 10)
    assert [len(w) for w in windows] == [10] * 6 + [15] and np.concatenate(windows).tolist() == y.tolist()
    assert [len(w) for w in clip_windows(np.arange(19), 10)] == [19]  # prepare sees the whole clip too
    assert [len(w) for w in clip_windows(np.arange(4), 10)] == [4]


@pytest.mark.slow
def test_bad_runs_models_and_planted_pickles_are_one_sentence(run, capsys, tmp_path):
    wav = str(clip_path(run, read_records(run)[0]["test"]["ids"][0]))
    assert main([wav, "--run", str(run), "--model", "svm"]) == 2
    assert re.fullmatch(r"error: .* has no kept model 'svm': choose one of knn:default, mlp:default, "
                        r"xgboost:default\.\n", capsys.readouterr().err)
    empty = tmp_path / "empty-run"
    (empty / "records").mkdir(parents=True)
    for line in (run / "records" / "exp3-features.jsonl").read_text().splitlines():
        rec = json.loads(line)
        rec["artifact"] = None
        (empty / "records" / "exp3-features.jsonl").open("a").write(json.dumps(rec) + "\n")
    assert main([wav, "--run", str(empty)]) == 2
    assert "has no kept models" in capsys.readouterr().err
    record = next(r for r in read_records(run) if r["model"] == "knn")
    model_file = run / record["artifact"] / "model.skops"
    original = model_file.read_bytes()
    try:
        model_file.write_bytes(pickle.dumps({"not": "a model"}))  # planted in place of the artifact
        assert main([wav, "--run", str(run), "--model", "knn"]) == 2
        err = capsys.readouterr().err
        assert "cannot be read as a skops model" in err and err.count("error:") == 1
        meta = run / record["artifact"] / "model.json"
        body = meta.read_text()
        meta.write_text(body.replace('"format": 1', '"format": 99'))
        model_file.write_bytes(original)
        assert main([wav, "--run", str(run), "--model", "knn"]) == 2
        assert "kept-model format 99" in capsys.readouterr().err
        meta.write_text(body)
    finally:
        model_file.write_bytes(original)


@pytest.mark.slow
def test_a_csv_trained_model_predicts_audio_through_our_extractor(ray_session, tmp_path, capsys):
    csv = make_features_csv(tmp_path / "features_30_sec.csv")
    assert sweep(["exp3", "--features-csv", str(csv), "--storage", str(tmp_path), "--name", "csv", "--no-report",
                  "--set", "models=[{name: xgboost, params: {n_estimators: 20}}]",
                  "--set", "prepare.max_seconds=90"]) == 0
    audio = tmp_path / "song.wav"
    sf.write(audio, synthesize("jazz", 31.0, seed=1), 22050, subtype="PCM_16")
    capsys.readouterr()  # the sweep's own progress lines
    code, results, err = predict_json(capsys, [str(audio), "--run", str(tmp_path / "csv")])
    assert code == 0 and results[0]["windows"] == 1  # the Kaggle features are of whole 30 s clips
    meta = json.loads(next((tmp_path / "csv" / "artifacts").glob("*/model.json")).read_text())
    assert meta["audio"]["clip_seconds"] == 30.0 and meta["audio"]["sample_rate"] == 22050
    # the run's file limits travel with the model: predict refuses what prepare would have skipped
    assert (meta["audio"]["max_seconds"], meta["audio"]["max_file_mb"]) == (90.0, 200.0)
    long_file = tmp_path / "long.wav"
    sf.write(long_file, np.zeros(22050 * 91, dtype=np.float32), 22050, subtype="PCM_16")
    code, refused, err = predict_json(capsys, [str(long_file), "--run", str(tmp_path / "csv")])
    assert code == 1 and "declares 91 s, above the 90 s limit" in err and not refused
    assert len(results[0]["top"]) == 10 and abs(sum(g["probability"] for g in results[0]["top"]) - 1) < 1e-3


def test_no_artifact_is_loaded_through_pickle_anywhere_in_the_package():
    package = Path(__file__).resolve().parents[1] / "raygenre"
    for path in package.rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*import (pickle|joblib|cloudpickle)|pickle\.load|joblib\.load", text, re.M), path
        for match in re.finditer(r"torch\.load\(", text):
            call = text[match.start():match.start() + 300].split("\n\n")[0]
            assert "weights_only=True" in call, (path, call)


@pytest.mark.slow
def test_unreadable_links_and_odd_names_in_a_folder_are_error_lines_and_the_rest_is_predicted(run, capsys, tmp_path):
    import os

    best = min(read_records(run), key=lambda r: (-r["metrics"]["accuracy"], r["trial_key"]))
    good = [clip_path(run, c) for c in best["test"]["ids"][:2]]
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / good[0].name).write_bytes(good[0].read_bytes())
    odd = os.fsencode(folder) + b"/caf\xe9.wav"  # not UTF-8: printed escaped, never a traceback
    with open(odd, "wb") as f:
        f.write(good[1].read_bytes())
    (folder / "gone.wav").symlink_to(folder / "missing.wav")
    (folder / "one_hertz.wav").write_bytes(b"")
    sf.write(folder / "one_hertz.wav", np.zeros(100_000, dtype=np.float32), 1)  # declares 100,000 s
    locked = folder / "locked.wav"
    locked.write_bytes(good[0].read_bytes())
    locked.chmod(0)
    code, results, err = predict_json(capsys, [str(folder), "--run", str(run)])
    assert code == 1
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert any(re.fullmatch(r"error: .*gone\.wav: dangling link \(its target does not exist\)\.", x) for x in lines)
    assert any(re.fullmatch(r"error: .*one_hertz\.wav: declares 1 Hz, outside the 8000-192000 Hz .*", x)
               for x in lines)
    by_name = {Path(r["path"]).name: r for r in results}
    if os.geteuid() != 0:  # root reads a mode-000 file
        assert any(re.fullmatch(r"error: .*locked\.wav: cannot be opened \(Permission denied\)\.", x) for x in lines)
    else:
        assert "locked.wav" in by_name
    assert len(lines) == 2 + (os.geteuid() != 0)  # one line per bad file
    assert {good[0].name, "caf\\xe9.wav"} <= set(by_name) and all(r["windows"] == 1 for r in results)
    assert by_name["caf\\xe9.wav"]["top"][0]["genre"] == best["test"]["y_pred"][1]  # the clip behind the odd name


@pytest.mark.slow
def test_csv_on_stdout_is_only_the_csv_when_ray_runs_in_a_subprocess(run, tmp_path):
    import csv
    import os
    import subprocess

    folder = tmp_path / "songs"
    folder.mkdir()
    ids = read_records(run)[0]["test"]["ids"][:3]
    for clip_id in ids:
        (folder / f"{clip_id}.wav").write_bytes(clip_path(run, clip_id).read_bytes())
    (folder / "broken.wav").write_bytes(b"not audio" * 20)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"PYTHONPATH": str(Path(__file__).parents[1])}
    done = subprocess.run([sys.executable, "-m", "raygenre.predict", str(folder), "--run", str(run),
                           "--format", "csv", "--workers", "64"],  # more actors than CPUs: capped
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 1, done.stderr  # the broken file
    rows = list(csv.reader(io.StringIO(done.stdout)))
    assert rows[0] == ["path", "rank", "genre", "probability", "windows"]
    assert len(rows) == 1 + 3 * 3 and all(len(r) == 5 and r[0].endswith(".wav") for r in rows[1:])
    assert {Path(r[0]).stem for r in rows[1:]} == set(ids)
    assert re.search(r"error: .*broken\.wav: not readable audio", done.stderr)
