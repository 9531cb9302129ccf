"""The record: one JSON line per finished trial, the only thing the reporter reads.

Layout: ``<run_dir>/records/<study>.jsonl``. Each line is a dict with these keys
(``RECORD_KEYS``); deep-model experiments fill the same keys.

=================  ==========================================================
key                meaning
=================  ==========================================================
record_version     int, 1
trial_key          unique, stable name of the planned trial (resume/dedup key)
experiment         "exp1" | "exp2" | "exp3" | "exp4"
study              e.g. "exp3-features", "exp4-bootstrap", "exp4-size"
model              e.g. "knn", "xgboost_tuned", "vgg16"
variant            e.g. "default", "finetune_all", "fc6"
representation     "features" | "mel" | "waveform"
feature_set        "kaggle58" | "content57" | null
augmented          bool
split              {"name": "paper"|"fault_filtered", "seed": int}
train_fraction     float (1.0 unless a training-size trial)
bootstrap_index    int or null
status             "ok" | "failed"
error              null, or the error text of a failed trial
metrics            classification_metrics(...) output, or null when failed
test               {"ids": [...], "y_true": [...], "y_pred": [...]} (labels as genre names)
n_train            int, training rows actually used
timings            {"fit_s": float, "predict_s": float, "total_s": float}
resources          {"cpu": float, "gpu": float, "node": str}
config             the resolved trial config (dict)
config_hash        sha256 prefix of the config
run                {"source": ..., "profile": ..., "data_hash": ..., "hardware": ...}
versions           {"python": ..., "ray": ..., "xgboost": ..., ...}
finished_at        ISO-8601 UTC time
=================  ==========================================================
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

RECORD_VERSION = 1
RECORD_KEYS = (
    "record_version", "trial_key", "experiment", "study", "model", "variant", "representation",
    "feature_set", "augmented", "split", "train_fraction", "bootstrap_index", "status", "error",
    "metrics", "test", "n_train", "timings", "resources", "config", "config_hash", "run",
    "versions", "finished_at",
)


class RecordsError(ValueError):
    """Records that are missing, empty or malformed."""


def records_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "records"


def append_record(path: str | Path, record: dict) -> None:
    """Append one record as a single write of one line, so a crash never leaves half a line."""
    missing = [k for k in RECORD_KEYS if k not in record]
    if missing:
        raise RecordsError(f"record for trial {record.get('trial_key')!r} lacks keys {missing}.")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, sort_keys=True, default=_jsonable) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def _jsonable(value):
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def iter_record_files(run_dir: str | Path) -> list[Path]:
    return sorted(records_dir(run_dir).glob("*.jsonl"))


def read_records(run_dir: str | Path, *, require: bool = True) -> list[dict]:
    """Every record under ``run_dir/records``; a line cut short by a crash is skipped.

    With ``require`` a missing or empty records folder is a one-sentence RecordsError.
    """
    folder = records_dir(run_dir)
    files = iter_record_files(run_dir)
    if require and not files:
        raise RecordsError(f"no records found: {folder} is missing or holds no *.jsonl files.")
    records: list[dict] = []
    for path in files:
        for line in path.read_text().splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # an interrupted write; the trial is re-run on --resume
    if require and not records:
        raise RecordsError(f"no records found: the files in {folder} are empty.")
    return records


def latest_by_trial(records: Iterable[dict]) -> dict[str, dict]:
    """The last record per trial key (a retried trial's final outcome wins)."""
    out: dict[str, dict] = {}
    for rec in records:
        out[rec["trial_key"]] = rec
    return out
