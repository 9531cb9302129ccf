"""One run stays one run: --resume refuses other settings, and a run directory has one writer at a time.

All of it is decided before Ray starts, so none of these tests starts Ray; the lease test talks to the
local moto S3 server of ``s3_server.py``.
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from raygenre import run_guard
from raygenre.errors import RunLockedError, RunMismatchError
from raygenre.records import append_record, build_record
from raygenre.run_guard import LEASE_NAME, LOCK_NAME, RunLock, check_resume, config_changes
from raygenre.storage import RunPath
from raygenre.sweep import build_configs, build_parser, main

sys.path.insert(0, str(Path(__file__).parent))
from feature_tables import make_features_csv  # noqa: E402


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _started_run(tmp_path, *extra):
    """A run directory as the sweep leaves it after starting with ``extra`` settings (its stored config)."""
    csv = make_features_csv(tmp_path / "features.csv")
    argv = ["exp3", "--features-csv", str(csv), "--storage", str(tmp_path), "--name", "r", "--no-report"]
    [cfg] = build_configs(build_parser().parse_args([*argv, *extra]))
    run = RunPath.of(tmp_path / "r")
    (run / "config" / "exp3.json").write_json(cfg.model_dump(mode="json"))
    return run, argv


def test_config_changes_name_dotted_keys():
    old = {"train": {"epochs": 1, "lr": 0.001}, "models": [{"name": "mlp", "params": {"dropout": 0.3}}], "x": 1}
    new = {"train": {"epochs": 15, "lr": 0.001}, "models": [{"name": "mlp", "params": {"dropout": 0.5}}], "y": "a"}
    assert config_changes(old, new) == ["models[0].params.dropout: 0.3 -> 0.5", "train.epochs: 1 -> 15",
                                        "x: 1 -> (absent)", 'y: (absent) -> "a"']
    assert config_changes(old, json.loads(json.dumps(old))) == []


def test_resume_with_other_settings_is_refused_before_ray(tmp_path, capsys):
    import ray

    run, argv = _started_run(tmp_path, "--set", "train.epochs=1")
    was_running = ray.is_initialized()
    assert main([*argv, "--resume", "--set", "train.epochs=15"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: --resume refused: ")
    assert "train.epochs: 1 -> 15" in err and "pass a new --name" in err
    assert ray.is_initialized() == was_running
    assert not (Path(run.uri) / LOCK_NAME).exists()  # released on the error


def test_resume_with_the_same_settings_passes_and_counts_records(tmp_path, capsys):
    run, argv = _started_run(tmp_path)
    [cfg] = build_configs(build_parser().parse_args(argv))
    check_resume(run, [cfg], resume=True)
    assert "[sweep] resume: 0 records found, 0 bad record lines skipped" in capsys.readouterr().out
    (Path(run.uri) / "records").mkdir()
    (Path(run.uri) / "records" / "exp3-features.jsonl").write_bytes(b"[]\n")
    check_resume(run, [cfg], resume=True)
    out, err = capsys.readouterr()
    assert "0 records found, 1 bad record lines skipped" in out
    assert err.startswith("warning: 1 bad record line skipped: records/exp3-features.jsonl:1 (a JSON list")


def test_a_run_without_stored_config_is_compared_by_its_records_hash(tmp_path):
    run, argv = _started_run(tmp_path)
    (Path(run.uri) / "config" / "exp3.json").unlink()
    [cfg] = build_configs(build_parser().parse_args(argv))
    spec = {"trial_key": "exp3/k", "experiment": "exp3", "study": "exp3-features", "model": "knn", "family": "tabular",
            "variant": "default", "representation": "features", "split": {"name": "paper", "seed": 0},
            "train_fraction": 1.0, "bootstrap_index": None}
    failed = build_record(spec, {"run": {"experiment_config_hash": "0123456789ab"}}, status="failed", error="x")
    append_record(Path(run.uri) / "records" / "exp3-features.jsonl", failed)
    with pytest.raises(RunMismatchError, match=rf"config hash: 0123456789ab -> {cfg.hash()}"):
        check_resume(run, [cfg], resume=True)
    check_resume(run, [cfg], resume=False)  # without --resume the existing-records check decides


def test_a_locked_run_is_refused_naming_its_holder_and_released_after(tmp_path, capsys):
    lock = RunLock.acquire(tmp_path / "r")
    holder = json.loads((tmp_path / "r" / LOCK_NAME).read_text())
    assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
    with pytest.raises(RunLockedError, match=rf"in use by another sweep \(pid {os.getpid()} on "):
        RunLock.acquire(tmp_path / "r")
    csv = make_features_csv(tmp_path / "features.csv")
    assert main(["exp3", "--features-csv", str(csv), "--storage", str(tmp_path), "--name", "r"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "is in use by another sweep" in err
    assert f"delete {tmp_path / 'r' / LOCK_NAME} if that sweep is gone" in err
    lock.release()
    lock.release()  # twice is harmless
    assert not (tmp_path / "r" / LOCK_NAME).exists()
    with RunLock.acquire(tmp_path / "r"):
        assert (tmp_path / "r" / LOCK_NAME).exists()
    assert not (tmp_path / "r" / LOCK_NAME).exists() and os.listdir(tmp_path / "r") == []


def test_a_stale_lock_is_taken_over_and_a_foreign_one_is_not(tmp_path, capsys):
    path = tmp_path / "r" / LOCK_NAME
    path.parent.mkdir()
    dead = _dead_pid()
    path.write_text(json.dumps({"pid": dead, "host": socket.gethostname(), "started": "then", "token": "old"}))
    with RunLock.acquire(tmp_path / "r"):
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert f"taking over the lock of {tmp_path / 'r'}: its holder (pid {dead} on" in capsys.readouterr().err
    path.write_text(json.dumps({"pid": dead, "host": "elsewhere", "started": "then", "token": "other"}))
    with pytest.raises(RunLockedError, match=f"pid {dead} on elsewhere since then"):
        RunLock.acquire(tmp_path / "r")
    assert json.loads(path.read_text())["token"] == "other"  # left alone
    # Two sweeps saw the same stale lock and one already replaced it: the other puts the fresh one back.
    fresh = {"pid": os.getpid(), "host": socket.gethostname(), "started": "now", "token": "fresh"}
    path.write_text(json.dumps(fresh))
    RunLock(RunPath.of(tmp_path / "r"))._take_over_file(path, {"pid": dead, "token": "old"})
    assert json.loads(path.read_text()) == fresh and sorted(os.listdir(path.parent)) == [LOCK_NAME]
    assert "taking over" not in capsys.readouterr().err


def test_the_lock_is_released_on_keyboard_interrupt(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        assert (tmp_path / "r" / LOCK_NAME).exists()
        raise KeyboardInterrupt

    monkeypatch.setattr(run_guard, "check_resume", interrupted)
    csv = make_features_csv(tmp_path / "features.csv")
    with pytest.raises(KeyboardInterrupt):
        main(["exp3", "--features-csv", str(csv), "--storage", str(tmp_path), "--name", "r"])
    assert not (tmp_path / "r" / LOCK_NAME).exists()


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    from s3_server import S3Server

    server = S3Server(tmp_path_factory.mktemp("moto") / "moto.log")
    server.make_bucket("lease-test")
    yield server
    server.stop()


def test_an_s3_run_is_held_by_a_refreshed_lease(s3, monkeypatch, capsys):
    from s3_server import use_in_this_process

    use_in_this_process(s3, monkeypatch)
    monkeypatch.setattr(run_guard, "LEASE_SETTLE_SECONDS", 0.05)
    run = RunPath.of("s3://lease-test/runs/r")
    lease = run / LEASE_NAME
    lock = RunLock.acquire(run, lease_seconds=2.0)
    first = lease.read_json()
    assert first["pid"] == os.getpid() and first["expires"] > time.time()
    time.sleep(2.5)  # longer than the lease: only the refresher keeps it
    assert lease.read_json()["expires"] > first["expires"]
    with pytest.raises(RunLockedError, match=r"in use by another sweep \(pid \d+ on .*lease until"):
        RunLock.acquire(run)
    lock.release()
    assert not lease.exists()
    # An expired lease of another host, and a live one whose holder died on this host, may be taken.
    for holder in ({"pid": 1, "host": "elsewhere", "expires": time.time() - 1},
                   {"pid": _dead_pid(), "host": socket.gethostname(), "expires": time.time() + 600}):
        lease.write_json({**holder, "started": "then", "token": "old"})
        with RunLock.acquire(run):
            assert lease.read_json()["token"] != "old"
        assert not lease.exists()
    err = capsys.readouterr().err
    assert "its lease has expired" in err and "its holder (pid" in err
    lease.write_json({"pid": 1, "host": "elsewhere", "started": "then", "token": "live", "expires": time.time() + 600})
    with pytest.raises(RunLockedError, match="pid 1 on elsewhere since then, lease until"):
        RunLock.acquire(run)
    assert lease.read_json()["token"] == "live"
