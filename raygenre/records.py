"""The record: one JSON line per finished trial, the only thing the reporter reads.

Layout: ``<run_dir>/records/<study>.jsonl`` on a local disk. Objects cannot be appended to, so in
object storage each record is an object of its own, ``<run_dir>/records/<study>/<UTC time>-<id>.json``
(names sort in the order they were written); :func:`read_records` reads either. The format is the JSON Schema in
``raygenre/record.schema.json`` (version 2); :func:`append_record` refuses a record that does not
validate, so nothing the pipeline writes can drift from it, and every line is checked again when read
(:func:`read_records_checked`): a line that is not a valid record (cut short by a crash, not UTF-8, not an
object, off the schema) is skipped and counted, never a traceback, and the CLIs say how many and where.
:func:`build_record` is the one place a record is made, for finished and failed trials alike. Version-1
records (before the model registry) are read and upgraded in memory by :func:`upgrade`.

=================  ==========================================================
key                meaning
=================  ==========================================================
record_version     int, 2
trial_key          unique, stable name of the planned trial (resume/dedup key)
experiment         "exp1" | "exp2" | "exp3" | "exp4"
study              e.g. "exp3-features", "exp1-mel", "exp4-bootstrap", "exp4-size"
model, family      registry name and family ("tabular" | "spectrogram" | "waveform")
variant            e.g. "default", "finetune_all", "fc6"
representation     "features" | "mel" | "waveform"
feature_set        "kaggle58" | "content57" | null (non-feature models)
augmented          bool: the training rows included the x6 augmented variants
split              {"name": "paper"|"fault_filtered", "seed": int}
train_fraction     float (1.0 unless a training-size trial)
bootstrap_index    int or null
status             "ok" | "failed"
error              null, or the error text of a failed trial
metrics            ``raygenre.stats.classification_metrics`` output, or null when failed
test               {"ids", "y_true", "y_pred", "set"} (labels as genre names; set: test | valid)
n_train            int, training rows actually used (null when failed)
params             {"total", "trainable"} parameter counts of a network, or null
artifact           where the fitted model was saved, or null
history            per-epoch metrics [{"epoch": 1, "loss": ...}, ...]; empty for one-shot models
weights            where pretrained weights came from ("random", "pretrained:...", a path), or null
timings            seconds: {"fit_predict_s", "total_s", ...}; "started_unix"/"finished_unix": Unix times
resources          {"cpu", "gpu", "device", "node", ...}
config             the resolved trial spec plus the run-wide settings it used
config_hash        sha256 prefix of the config
run                {"source", "profile", "data_hash", "hardware", ...}
versions           {"python", "ray", "xgboost", ...}
finished_at        ISO-8601 UTC time
=================  ==========================================================
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from importlib import resources
from pathlib import Path

from raygenre.errors import RecordsError
from raygenre.storage import RunPath

try:
    import fcntl
except ImportError:  # not on Windows: appends are then only as safe as O_APPEND
    fcntl = None

RECORD_VERSION = 2
SCHEMA_FILE = "record.schema.json"


@lru_cache(maxsize=1)
def record_schema() -> dict:
    return json.loads((resources.files("raygenre") / SCHEMA_FILE).read_text())


@lru_cache(maxsize=1)
def _validator():
    from jsonschema import Draft202012Validator

    return Draft202012Validator(record_schema())


def validate_record(record: dict) -> None:
    """Raise RecordsError naming the first schema violation of ``record``."""
    problem = _first_violation(_plain(record))
    if problem:
        raise RecordsError(f"record for trial {record.get('trial_key')!r} does not match the record schema "
                           f"{problem}.")


def _first_violation(record: dict) -> str:
    """'at <where>: <what>' for the first schema violation of a plain record, '' when it validates."""
    validator = _validator()
    if validator.is_valid(record):
        return ""
    err = sorted(validator.iter_errors(record), key=lambda e: list(e.absolute_path))[0]
    where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
    return f"at {where}: {err.message}"


def _plain(record: dict) -> dict:
    """The record as JSON would read it back (numpy scalars and tuples made plain)."""
    return json.loads(json.dumps(record, default=_jsonable))


def build_record(spec: dict, settings: dict, *, status: str = "ok", result: dict | None = None,
                 error: str | None = None, resources: dict | None = None) -> dict:
    """The one record builder: a finished trial (``result`` from a family runner) or a failed one.

    ``result`` keys: ``metrics``, ``test``, ``n_train``, ``timings`` and optionally ``params``,
    ``artifact``, ``history``, ``weights``, ``selection`` and ``selected_epoch`` (neural models: the rule
    and the epoch whose model was evaluated).
    """
    from raygenre.config import config_hash
    from raygenre.versions import package_versions

    result = result or {}
    config = {**spec, "settings": {k: settings[k] for k in ("xgboost", "cpus_per_trial") if k in settings}}
    return {
        "record_version": RECORD_VERSION,
        "trial_key": spec["trial_key"],
        "experiment": spec["experiment"],
        "study": spec["study"],
        "model": spec["model"],
        "family": spec["family"],
        "variant": spec["variant"],
        "representation": spec["representation"],
        "feature_set": spec.get("feature_set"),
        "augmented": bool(spec.get("augmented", False)),
        "split": {"name": spec["split"]["name"], "seed": spec["split"]["seed"]},
        "train_fraction": spec["train_fraction"],
        "bootstrap_index": spec["bootstrap_index"],
        "status": status,
        "error": error if status != "ok" else None,
        "metrics": result.get("metrics") if status == "ok" else None,
        "test": result.get("test") if status == "ok" else None,
        "n_train": result.get("n_train") if status == "ok" else None,
        "params": result.get("params"),
        "artifact": result.get("artifact"),
        "history": list(result.get("history") or []),
        "weights": result.get("weights"),
        "selection": ({"rule": result["selection"], "epoch": result.get("selected_epoch")}
                      if result.get("selection") else None),
        "timings": dict(result.get("timings") or {}),
        "resources": dict(resources or {}),
        "config": config,
        "config_hash": config_hash(config),
        "run": settings.get("run", {}),
        "versions": package_versions(),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def upgrade(record: dict) -> dict:
    """A record of any known version in the current shape (version 1 lacked family, params,
    artifact, history and weights; all its models were feature models)."""
    version = record.get("record_version", 1)
    if version == RECORD_VERSION:
        return record
    if version != 1:
        raise RecordsError(f"record for trial {record.get('trial_key')!r} has unknown version {version}.")
    out = dict(record)
    out.update(record_version=RECORD_VERSION, family="tabular", params=None, artifact=None, history=[],
               weights=None)
    return out


def records_dir(run_dir: str | Path | RunPath) -> RunPath:
    return RunPath.of(run_dir) / "records"


def append_record(path: str | Path, record: dict) -> None:
    """Append one record as one whole line of its own.

    ``os.write`` may write fewer bytes than asked, so the write loops; when the file does not end
    with a newline (a line cut short by a crash) a newline goes first, so the cut line stays a bad line of
    its own that readers skip and count instead of swallowing this record. An exclusive ``flock`` keeps
    the last-byte check and the write together against other appenders.
    """
    validate_record(record)
    data = _encode(record) + b"\n"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)  # also releases the flock


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(f"could not append a record: the write returned {written}")
        view = view[written:]


def write_record(run_dir: str | Path | RunPath, study: str, record: dict) -> RunPath:
    """Keep one record of ``study``: a line appended to its JSONL file locally, an object of its own remotely."""
    folder = records_dir(run_dir)
    if not folder.remote:
        append_record(folder / f"{study}.jsonl", record)
        return folder / f"{study}.jsonl"
    validate_record(record)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    target = folder / study / f"{stamp}-{uuid.uuid4().hex[:8]}.json"
    target.write_bytes(_encode(record))
    return target


def _encode(record: dict) -> bytes:
    return json.dumps(record, sort_keys=True, default=_jsonable).encode()


def _jsonable(value):
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def iter_record_files(run_dir: str | Path | RunPath) -> list[RunPath]:
    """The JSONL files and one-record objects under ``run_dir/records``, each sorted by name."""
    folder = records_dir(run_dir)
    return folder.files(".jsonl", recursive=False) + [p for p in folder.files(".json") if p.name[:1].isdigit()]


@dataclass(frozen=True)
class SkippedLine:
    """A record line that was not a valid record: where it is (``line`` counts from 1) and why."""
    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line} ({self.reason})"


@dataclass
class RecordsRead:
    """What :func:`read_records_checked` found: the valid records and the lines it skipped."""
    records: list[dict] = field(default_factory=list)
    skipped: list[SkippedLine] = field(default_factory=list)

    def skipped_summary(self, first: int = 3) -> str:
        """One sentence on the skipped lines (the first few by place), or '' when none were."""
        if not self.skipped:
            return ""
        n = len(self.skipped)
        where = "; ".join(str(s) for s in self.skipped[:first]) + ("; …" if n > first else "")
        return f"{n} bad record line{'s' * (n != 1)} skipped: {where}."


def _check_line(raw: bytes) -> tuple[dict | None, str]:
    """(the record, '') for a valid record line, else (None, why not)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 at byte {exc.start}"
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError; so is an over-long integer
        return None, "not JSON (cut short?)"
    if not isinstance(value, dict):
        return None, f"a JSON {type(value).__name__}, not an object"
    if value.get("record_version", 1) not in (1, RECORD_VERSION):
        return None, f"unknown record_version {str(value.get('record_version'))[:20]}"
    record = upgrade(value)
    digest = hashlib.sha1(raw).digest()
    if digest in _VALID_LINES:
        return record, ""
    problem = _first_violation(record)
    if problem:
        return None, "off the record schema " + (problem if len(problem) <= 120 else problem[:119] + "…")
    _VALID_LINES.add(digest)
    return record, ""


# Digests of lines already found valid: the sweep rereads its records after every study, and schema
# validation (~3 ms a record) would otherwise dominate those reads.
_VALID_LINES: set[bytes] = set()


def read_records_checked(run_dir: str | Path | RunPath, *, require: bool = True) -> RecordsRead:
    """Every valid record under ``run_dir/records`` (upgraded to this version) and the lines skipped.

    With ``require`` a missing or empty records folder (or one with no valid record) is a one-sentence
    RecordsError.
    """
    folder = records_dir(run_dir)
    files = iter_record_files(run_dir)
    if require and not files:
        raise RecordsError(f"no records found: {folder} is missing or holds no records.")
    with ThreadPoolExecutor(max_workers=16 if folder.remote else 1) as pool:  # one GET per object remotely
        blobs = list(pool.map(lambda p: p.read_bytes(), files))
    out = RecordsRead()
    for path, blob in zip(files, blobs):
        for number, raw in enumerate(blob.split(b"\n"), 1):
            if not raw.strip():
                continue
            record, why = _check_line(raw.strip())
            if record is None:
                out.skipped.append(SkippedLine(_relative(path, folder), number, why))
            else:
                out.records.append(record)
    if require and not out.records:
        why = f"; {out.skipped_summary()}" if out.skipped else "."
        raise RecordsError(f"no records found: the files in {folder} hold no valid record{why}")
    return out


def read_records(run_dir: str | Path | RunPath, *, require: bool = True) -> list[dict]:
    """Every valid record under ``run_dir/records``; bad lines are skipped (see :func:`read_records_checked`)."""
    return read_records_checked(run_dir, require=require).records


def _relative(path: RunPath, folder: RunPath) -> str:
    return "records/" + path.uri[len(folder.uri):].lstrip("/")


def latest_by_trial(records: Iterable[dict]) -> dict[str, dict]:
    """The last record per trial key (a retried trial's final outcome wins)."""
    out: dict[str, dict] = {}
    for rec in records:
        out[rec["trial_key"]] = rec
    return out


def ok_trial_keys(run_dir: str | Path | RunPath) -> set[str]:
    """The trial keys whose latest record is ok: what a ``--resume`` need not run again."""
    return {k for k, r in latest_by_trial(read_records(run_dir, require=False)).items() if r["status"] == "ok"}


def check_complete(run_dir: str | Path | RunPath, planned: list[dict]) -> list[str]:
    """Records must match the plan: every planned trial has a record and none failed.

    Returns the failed trial keys' one-line errors (empty when all are ok); raises RecordsError
    when a planned trial has no record at all (an interrupted run: ``--resume`` finishes it).
    """
    latest = latest_by_trial(read_records(run_dir, require=False))
    missing = [t["trial_key"] for t in planned if t["trial_key"] not in latest]
    if missing:
        raise RecordsError(f"{len(missing)} of {len(planned)} planned trials have no record (interrupted?): "
                           f"{', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}; rerun with --resume.")
    failed = []
    for t in planned:
        record = latest[t["trial_key"]]
        if record["status"] != "ok":
            lines = (record.get("error") or "no error text").strip().splitlines() or ["?"]
            failed.append(f"{t['trial_key']}: {lines[-1]}")
    return failed
