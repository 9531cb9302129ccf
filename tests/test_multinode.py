"""exp4 on a three-node Ray cluster on this machine (``ray.cluster_utils.Cluster``): trials spread over the
worker nodes, and losing a worker node mid-sweep still ends with exactly one ok record per planned trial.

The head has no CPU, like cluster.yaml's head; the two workers have one CPU each. The sweep runs through
the real CLI entry, ``raygenre.sweep.main``, attached to the cluster through ``RAY_ADDRESS`` as under
``ray job submit``. Features come from a synthetic Kaggle-format CSV (tests/feature_tables.py) so that
trials start at once; the audio path would add prepare's Ray Data stage, not more nodes.
"""

import json
import shutil
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from raygenre.records import read_records
from raygenre.sweep import build_configs, build_parser, main
from raygenre.train.plan import plan_experiment

sys.path.insert(0, str(Path(__file__).parent))
from feature_tables import make_features_csv  # noqa: E402
from ray_head import SessionRayPaused, short_temp_dir  # noqa: E402

pytestmark = pytest.mark.slow

# GCS notices a dead node after ~3 missed health checks of 0.5 s instead of Ray's ~15 s default.
FAST_NODE_DEATH = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500,
                   "health_check_timeout_ms": 5000, "health_check_failure_threshold": 3}


@pytest.fixture
def cluster(monkeypatch):
    """A head (0 CPUs) and two 1-CPU worker nodes, private to this test.

    cluster_utils records its address in /tmp/ray/ray_current_cluster (where a plain ``ray.init()``
    anywhere on the machine would then connect) and deletes that file at shutdown, whoever wrote it:
    both are turned off here. A Ray this process already runs (the test session's) is shut down first
    and started again afterwards with the session's settings.
    """
    import ray._common.utils
    import ray._private.utils
    from ray.cluster_utils import Cluster

    monkeypatch.setattr(ray._private.utils, "write_ray_address", lambda *a, **k: None)
    monkeypatch.setattr(ray._common.utils, "reset_ray_address", lambda *a, **k: None)
    temp_dir = short_temp_dir("mn")
    with SessionRayPaused():
        c = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 0, "include_dashboard": False, "temp_dir": str(temp_dir),
            "_system_config": FAST_NODE_DEATH})
        try:
            for _ in range(2):
                c.add_node(num_cpus=1, temp_dir=str(temp_dir))
            c.wait_for_nodes()
            monkeypatch.setenv("RAY_ADDRESS", c.address)
            yield c
        finally:
            if ray.is_initialized():
                ray.shutdown()
            c.shutdown()
            monkeypatch.delenv("RAY_ADDRESS", raising=False)
            shutil.rmtree(temp_dir, ignore_errors=True)


def _planned_keys(argv: list[str]) -> list[str]:
    configs = build_configs(build_parser().parse_args(argv))
    return [t["trial_key"] for cfg in configs for t in plan_experiment(cfg)]


def _retries(run_dir: Path) -> dict[str, int]:
    """Failures per trial, from Tune's experiment state (each failure of a trial that ended ok was retried)."""
    out: Counter = Counter()
    for state in run_dir.glob("tune/*/experiment_state-*.json"):
        for trial_json, run_metadata in json.loads(state.read_text())["trial_data"]:
            failures = json.loads(run_metadata).get("num_failures", 0)
            if failures:
                trial = json.loads(trial_json)
                key = (trial.get("config") or {}).get("trial", {}).get("trial_key") or trial["trial_id"]
                out[key.rsplit("/", 1)[-1]] += failures
    return dict(out)


def test_exp4_spreads_over_nodes_and_survives_losing_one(cluster, tmp_path):
    csv = make_features_csv(tmp_path / "features.csv")
    argv = ["exp4", "--features-csv", str(csv), "--storage", str(tmp_path), "--name", "mn", "--no-report",
            "--set", "exp4.bootstraps=8", "--set", "exp4.fractions=[0.5,1.0]", "--set", "artifacts=none"]
    planned = _planned_keys(argv)
    assert len(planned) == 10
    run_dir = tmp_path / "mn"
    workers = {n.node_id[:12]: n for n in cluster.worker_nodes}
    head = cluster.head_node.node_id[:12]
    removed: dict = {}

    def lose_a_worker():
        """Once records came from both workers (or 10 s after the first record), kill the worker that did
        not write the latest record: it is the one most likely in the middle of a trial."""
        first_at = None
        deadline = time.time() + 240
        while time.time() < deadline and not stop.is_set():
            records = read_records(run_dir, require=False)
            if records:
                first_at = first_at or time.time()
                nodes = {r["resources"]["node"] for r in records}
                if len(nodes) >= 2 or time.time() - first_at > 10:
                    latest = records[-1]["resources"]["node"]
                    victim = next(k for k in workers if k != latest)
                    removed.update(node=victim, after_records=len(records), at=time.time())
                    cluster.remove_node(workers[victim], allow_graceful=False)
                    return
            time.sleep(0.2)

    stop = threading.Event()
    killer = threading.Thread(target=lose_a_worker, daemon=True)
    t0 = time.time()
    killer.start()
    try:
        code = main(argv)
    finally:
        stop.set()
        killer.join(timeout=30)
    elapsed = time.time() - t0

    records = read_records(run_dir)
    per_node = Counter(r["resources"]["node"] for r in records)
    retries = _retries(run_dir)
    print(f"\nnodes: head {head}, workers {sorted(workers)}; removed {removed.get('node')} after "
          f"{removed.get('after_records')} records, {removed.get('at', t0) - t0:.1f} s into the sweep")
    print(f"trials per node: {dict(per_node)}")
    print(f"retries (Tune trial failures): {sum(retries.values())} {retries or ''}; sweep {elapsed:.1f} s")

    assert code == 0
    assert removed, "no worker node was removed during the sweep"
    assert len(per_node) > 1 and set(per_node) <= set(workers), "trials must run on both workers, not the head"
    # every planned trial ends with exactly one record, and it is ok
    keys = Counter(r["trial_key"] for r in records)
    assert sorted(keys) == sorted(planned) and set(keys.values()) == {1}
    assert all(r["status"] == "ok" for r in records)
    # after the loss, the sweep carried on with the surviving worker only
    late = records[removed["after_records"] + 1:]
    assert late and {r["resources"]["node"] for r in late} == set(workers) - {removed["node"]}
