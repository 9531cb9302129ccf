"""Runs on object storage, against a real S3-compatible server on 127.0.0.1 (moto's standalone server).

What a run writes to a local folder it writes to ``s3://bucket/prefix`` too: records (one object per
finished trial), shards (Ray Data writes and reads them there), Tune's storage, the manifest, the
synthetic set the workers read, the report. A kill and ``--resume`` work the same as on disk, a shard
object over 16 MB (a multipart upload) round-trips, and the keys never reach an object or a log.
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raygenre.errors import ConfigError
from raygenre.records import build_record, latest_by_trial, read_records, write_record
from raygenre.storage import RunPath, check_reachable

sys.path.insert(0, str(Path(__file__).parent))
from ray_head import clean_env  # noqa: E402
from s3_server import ACCESS_KEY, SECRET_KEY, S3Server, use_in_this_process  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "raygenre-test"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = S3Server(tmp_path_factory.mktemp("moto") / "moto.log")
    server.make_bucket(BUCKET)
    yield server
    server.stop()


@pytest.fixture
def on_s3(s3, monkeypatch):
    use_in_this_process(s3, monkeypatch)
    return s3


def test_run_path_reads_writes_lists_and_moves_folders(on_s3, tmp_path):
    root = RunPath.of(f"s3://{BUCKET}/unit/")
    assert root.uri == f"s3://{BUCKET}/unit" and root.remote and root.local is None and root.path == f"{BUCKET}/unit"
    (root / "a" / "x.json").write_json({"n": 1})
    (root / "a" / "b" / "y.json").write_text("{}")
    assert (root / "a" / "x.json").read_json() == {"n": 1} and (root / "a").is_dir()
    assert [p.uri for p in (root / "a").files(".json")] == [f"{root.uri}/a/b/y.json", f"{root.uri}/a/x.json"]
    assert [p.name for p in (root / "a").files(".json", recursive=False)] == ["x.json"]
    assert (root / "missing").files() == [] and not (root / "missing").exists()
    with pytest.raises(TypeError, match="object storage"):
        os.fspath(root)
    # written_locally: whole folder replaced, never merged with what was there
    with (root / "model").written_locally() as folder:
        (folder / "old.txt").write_text("old")
    with (root / "model").written_locally() as folder:
        (folder / "new.txt").write_text("new")
    assert [p.name for p in (root / "model").files()] == ["new.txt"]
    out = (root / "model").download(tmp_path / "copy")
    assert (out / "new.txt").read_text() == "new"
    (root / "a").delete()
    assert not (root / "a").exists()


def test_unreachable_or_credentialed_storage_fails_in_one_sentence(on_s3, monkeypatch, capsys):
    check_reachable(RunPath.of(f"s3://{BUCKET}/runs"))  # reachable: no error
    import ray

    from raygenre.sweep import main

    was_running = ray.is_initialized()
    assert main(["exp4", "--storage", "s3://no-such-bucket/runs", "--set", "exp4.bootstraps=1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bucket 'no-such-bucket' does not exist" in err
    assert ray.is_initialized() == was_running, "it failed before Ray started"
    with pytest.raises(ConfigError, match="bucket 'no-such-bucket' does not exist"):
        check_reachable(RunPath.of("s3://no-such-bucket/runs"))
    with pytest.raises(ConfigError, match="not in the URI") as err:
        RunPath.of(f"s3://{ACCESS_KEY}:{SECRET_KEY}@{BUCKET}/runs")
    assert SECRET_KEY not in str(err.value)
    from ray_head import free_ports

    from raygenre import storage

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_ports(1)[0]}")  # nothing listens there
    storage._filesystem.cache_clear()
    with pytest.raises(ConfigError, match="is not reachable") as err:
        check_reachable(RunPath.of(f"s3://{BUCKET}/runs"))
    assert "\n" not in str(err.value)
    storage._filesystem.cache_clear()


def test_records_are_one_object_each_and_read_back_in_order(on_s3):
    run = RunPath.of(f"s3://{BUCKET}/records-unit")
    spec = {"trial_key": "exp4/knn/0", "experiment": "exp4", "study": "exp4-bootstrap", "model": "knn",
            "family": "tabular", "variant": "default", "representation": "features", "feature_set": "kaggle58",
            "augmented": False, "split": {"name": "paper", "seed": 0, "test_fraction": 0.2},
            "train_fraction": 1.0, "bootstrap_index": 0, "params": {}}
    write_record(run, "exp4-bootstrap", build_record(spec, {}, status="failed", error="first try"))
    write_record(run, "exp4-bootstrap", build_record(spec, {}, status="failed", error="second try"))
    keys = on_s3.objects(BUCKET, "records-unit/")
    assert len(keys) == 2 and all(k.startswith("records-unit/records/exp4-bootstrap/") and k.endswith(".json")
                                  for k in keys)
    records = read_records(run)
    assert [r["error"] for r in records] == ["first try", "second try"]
    assert latest_by_trial(records)["exp4/knn/0"]["error"] == "second try"  # written later, read later


def round_trip_big_shard(bucket: str) -> None:
    """In a process whose Ray was started with the server's environment (Ray Data's workers need it):
    a ~32 MB staging object written with pyarrow, repacked by the prepare path (Ray Data) into a
    waveform shard, read back by the trials' readers."""
    import ray

    from raygenre.data.pipeline import _repack
    from raygenre.data.shards import load_table, waveform_array
    from raygenre.train.torch_runner import read_rows

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    rng = np.random.default_rng(0)
    n, samples = 24, 30 * 22050  # 24 clips of 30 s int16: ~32 MB that does not compress
    waves = rng.integers(-32768, 32767, size=(n, samples), dtype=np.int16)
    ids = [f"{'rock' if i % 2 else 'jazz'}.{i:05d}" for i in range(n)]
    staging = pa.table({"clip_id": ids, "label": [i.split(".")[0] for i in ids], "parent_id": [None] * n,
                        "transform": ["original"] * n, "error": pa.array([None] * n, pa.string()),
                        "waveform": [w.tobytes() for w in waves]})
    shards = RunPath.of(f"s3://{bucket}/big/shards/h")
    with shards.fs.open_output_stream(f"{shards.path}/_work/staging/part-0.parquet") as f:
        pq.write_table(staging, f, row_group_size=4)
    _repack(shards / "_work" / "staging", shards / "waveform", "waveform")  # the prepare write path: Ray Data
    table = load_table(shards, "waveform", ids=ids[5:9])
    assert sorted(table.column("clip_id").to_pylist()) == sorted(ids[5:9])
    got = dict(zip(table.column("clip_id").to_pylist(), waveform_array(table)))
    assert all(np.array_equal(got[i], waves[int(i.split(".")[1])]) for i in ids[5:9])
    rows, labels = read_rows(shards.uri, [ids[3], ids[0], ids[3]], representation="waveform")
    assert rows.shape == (3, samples) and np.array_equal(rows[0], waves[3]) and np.array_equal(rows[1], waves[0])
    assert labels[0] == labels[2] != labels[1]  # rock, jazz, rock
    print("ROUND TRIP OK")


@pytest.mark.slow
def test_a_shard_over_16_mb_round_trips_through_ray_data(s3):
    code = ("import sys; sys.path.insert(0, 'tests'); import test_object_storage as t; "
            f"t.round_trip_big_shard('{BUCKET}')")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=clean_env(**s3.env, RAY_AUTH_MODE="disabled"),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "ROUND TRIP OK" in done.stdout, (done.stdout + done.stderr)[-3000:]
    objects = s3.objects(BUCKET, "big/shards/h/")
    big = {k: o for k, o in objects.items() if o["size"] > 16 * 1024**2}
    print(f"\nobjects: {[(k.rsplit('/', 1)[-1], o['size'], o['etag'][-3:]) for k, o in objects.items()]}")
    assert any(k.startswith("big/shards/h/waveform/") for k in big), "the shard Ray Data wrote is over 16 MB"
    assert all("-" in o["etag"] for o in big.values()), "a >16 MB object is a multipart upload (ETag '<md5>-<parts>')"


def _sweep(args: list[str], env: dict, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "raygenre.sweep", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, **kw)


@pytest.mark.slow
def test_exp4_on_s3_writes_objects_reports_and_resumes_after_a_kill(s3, tmp_path, monkeypatch):
    bootstraps = 6
    env = clean_env(**s3.env, RAYGENRE_CACHE=str(tmp_path / "cache"), RAYGENRE_QUIET="1", RAY_AUTH_MODE="disabled")
    args = ["exp4", "--storage", f"s3://{BUCKET}/runs", "--name", "e2e", "--num-cpus", "2",
            "--set", "data.synthetic.clips_per_genre=5", "--set", "data.synthetic.seconds=6",
            "--set", "prepare.clip_seconds=6", "--set", "prepare.min_seconds=3",
            "--set", f"exp4.bootstraps={bootstraps}", "--set", "exp4.fractions=[1.0]"]
    planned = bootstraps + 1
    started = time.time()
    first = _sweep(args, env)
    records_prefix = "runs/e2e/records/"
    while len(s3.objects(BUCKET, records_prefix)) < 2:
        assert first.poll() is None, f"the sweep ended before it was killed:\n{first.stdout.read()[-3000:]}"
        assert time.time() - started < 300, "no records within 300 s"
        time.sleep(0.5)
    os.killpg(first.pid, signal.SIGKILL)  # the driver and its Ray, at once
    out_first = first.communicate(timeout=30)[0]
    at_kill = len(s3.objects(BUCKET, records_prefix))
    assert 2 <= at_kill < planned, "killed mid-way"

    second = _sweep([*args, "--resume"], env)
    out_second = second.communicate(timeout=400)[0]
    assert second.returncode == 0, out_second[-3000:]
    print(f"\nkilled with {at_kill} of {planned} records; resumed in {time.time() - started:.0f} s in all")

    objects = s3.objects(BUCKET, "runs/e2e/")
    records = {k: o for k, o in objects.items() if k.startswith(records_prefix)}
    assert records and all(k.endswith(".json") for k in records), "one object per record, no JSONL on S3"
    assert len(records) == planned
    use_in_this_process(s3, monkeypatch)
    keys = [r["trial_key"] for r in read_records(f"s3://{BUCKET}/runs/e2e")]
    assert len(keys) == planned and len(set(keys)) == planned, "every planned trial recorded exactly once"
    already = [int(n) for n in re.findall(r"\[exp4-\w+\] \d+ planned, (\d+) already recorded", out_second)]
    assert sum(already) == at_kill, out_second[-2000:]
    assert any(k.startswith("runs/e2e/shards/") and k.endswith("manifest.json") for k in objects)
    assert any(k.startswith("runs/e2e/shards/") and "/features/" in k and k.endswith(".parquet") for k in objects)
    assert any(k.startswith("runs/e2e/data/synthetic-") and k.endswith(".wav") for k in objects), \
        "the synthetic set the workers read is in the bucket"
    assert any(k.startswith("runs/e2e/tune/") for k in objects), "Tune's storage is in the bucket"
    assert any(k.startswith("runs/e2e/config/") for k in objects)
    assert "runs/e2e/report/REPORT.md" in objects and "report: s3://" in out_second
    report = s3.read(BUCKET, "runs/e2e/report/REPORT.md").decode()
    assert "exp4" in report.lower()
    # The keys reach no object and no line the sweep printed.
    for key in objects:
        body = s3.read(BUCKET, key)
        assert SECRET_KEY.encode() not in body and ACCESS_KEY.encode() not in body, key
    assert SECRET_KEY not in out_first + out_second and ACCESS_KEY not in out_first + out_second
    # Nothing was written to the local disk's default storage.
    assert not (ROOT / "runs" / "e2e").exists()


def test_in_trial_checkpoints_resume_from_the_bucket_on_any_node(on_s3, tmp_path, monkeypatch):
    """``train.workers: 0`` with the run in S3: each finished checkpoint is uploaded and ``latest`` names it;
    a session on another machine (here: an empty temp dir) continues from it, and older uploads go."""
    import tempfile

    import torch

    from raygenre.train.train_session import LATEST, STATE_FILE, InTrialSession

    target = f"s3://{BUCKET}/ckpt/run/train/trial-abc/checkpoint"
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "node-a"))
    first = InTrialSession({}, target)
    assert first.latest() is None
    for epoch in (1, 2):
        with first.new_checkpoint() as (folder, publish):
            torch.save({"epoch": epoch}, os.path.join(folder, STATE_FILE))
            publish()
    pointer = on_s3.read(BUCKET, f"ckpt/run/train/trial-abc/checkpoint/{LATEST}").decode().strip()
    kept = {k.split("/")[-2] for k in on_s3.objects(BUCKET, "ckpt/run/train/trial-abc/checkpoint/") if
            k.endswith(STATE_FILE)}
    assert kept == {pointer}, "only the newest upload is kept"
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "node-b"))  # a re-launch elsewhere
    second = InTrialSession({}, target)
    assert second.latest() is not None and str(tmp_path / "node-b") in second.latest()
    with second.checkpoint_dir() as folder:
        assert torch.load(os.path.join(folder, STATE_FILE))["epoch"] == 2
