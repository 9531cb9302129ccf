"""Shared check: a run's kept models answer its held-out clips exactly as their records say."""

from __future__ import annotations

import json
from pathlib import Path

from raygenre.predict import main as predict


def clip_file(run: Path, clip_id: str) -> Path:
    genre = clip_id.split(".")[0]
    return next((run / "data").rglob(f"{genre}/{clip_id}.wav"))


def assert_predictions_match_records(run: Path, records: list[dict], capsys) -> None:
    """Every record's kept model, through the predict CLI, gives the record's test predictions."""
    for record in records:
        assert record["artifact"], f"{record['trial_key']} kept no model"
        files = [str(clip_file(run, c)) for c in record["test"]["ids"]]
        wanted = record["trial_key"]
        capsys.readouterr()
        code = predict([*files, "--run", str(run), "--model", wanted, "--format", "json", "--top", "1"])
        out = capsys.readouterr()
        assert code == 0, out.err
        predicted = [r["top"][0]["genre"] for r in json.loads(out.out)]
        assert predicted == record["test"]["y_pred"], wanted
