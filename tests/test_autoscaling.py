"""Autoscaling without hardware: Ray's fake multi-node provider launches a GPU worker node when a trial asks
for a GPU the head lacks, and removes it once it has been idle for the idle timeout.

``ray.cluster_utils.AutoscalingCluster`` cannot be used from the wheel (its base config
``fake_multi_node/example.yaml`` is not shipped, and it runs ``ray stop --force``, which ends every Ray on
the machine), so the head is started by hand with the autoscaling config written below (recipe in
shared/RAY_NOTES.md). The GPU is logical: the worker advertises ``GPU: 1``, the trial gets
``ray.get_gpu_ids() == [0]`` and, with no CUDA here, trains on the CPU.

The work is a real exp3 MLP trial through ``raygenre.sweep.main`` with ``train.gpus_per_worker=1``.
"""

import json
import sys
import threading
import time
from pathlib import Path

import jsonschema
import pytest
import yaml

from raygenre.records import read_records
from raygenre.sweep import main

sys.path.insert(0, str(Path(__file__).parent))
from feature_tables import make_features_csv  # noqa: E402
from ray_head import Head, SessionRayPaused, clean_env, free_ports, node_resources  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
IDLE_TIMEOUT_MIN = 0.2  # 12 s

pytestmark = pytest.mark.slow


def _fake_config(gcs_port: int) -> dict:
    """cluster.yaml's GPU worker type (min_workers 0, its GPU count) shrunk to 1 CPU, on the fake provider."""
    real = yaml.safe_load((ROOT / "cluster.yaml").read_text())["available_node_types"]["gpu_worker"]
    assert real["min_workers"] == 0
    empty = {k: [] for k in ("initialization_commands", "setup_commands", "head_setup_commands",
                             "worker_setup_commands", "head_start_ray_commands", "worker_start_ray_commands",
                             "cluster_synced_files", "rsync_exclude", "rsync_filter")}
    return {
        "cluster_name": "rg-fake", "max_workers": 1, "upscaling_speed": 1.0,
        "idle_timeout_minutes": IDLE_TIMEOUT_MIN,
        "provider": {"type": "fake_multinode", "use_node_id_as_ip": True, "disable_launch_config_check": True,
                     "disable_node_updaters": True, "gcs_address": f"127.0.0.1:{gcs_port}"},
        "auth": {"ssh_user": "nobody"},
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 1}, "node_config": {}, "max_workers": 0},
            "gpu_worker": {"resources": {"CPU": 1, "GPU": real["resources"]["GPU"]}, "node_config": {},
                           "min_workers": 0, "max_workers": 1},
        },
        "head_node_type": "ray.head.default", "file_mounts": {}, "file_mounts_sync_continuously": False,
        **empty,
    }


def test_a_gpu_trial_scales_a_gpu_worker_up_and_idle_scales_it_down(tmp_path, monkeypatch):
    import ray

    env = clean_env(RAY_FAKE_CLUSTER="1", AUTOSCALER_UPDATE_INTERVAL_S="1", RAY_AUTH_MODE="disabled")
    [gcs_port] = free_ports(1)
    config = _fake_config(gcs_port)
    jsonschema.validate(config, json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text()))
    config_file = tmp_path / "autoscaling.json"
    config_file.write_text(json.dumps(config))
    with SessionRayPaused(), Head("as", env, num_cpus=1, gcs_port=gcs_port,
                                  extra_args=("--autoscaling-config", str(config_file))) as head:
        deadline = time.time() + 120
        nodes = None
        while True:   # until the head has registered with its own GCS
            assert head.alive() and time.time() < deadline, "the head did not come up"
            try:
                nodes = nodes or node_resources(head.address)
                if len(nodes()) == 1:
                    break
            except Exception:
                pass
            time.sleep(0.5)

        t0 = time.time()
        timeline: list[tuple[float, int, float]] = []   # (s since start, live nodes, cluster GPUs)
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                try:
                    live = nodes()
                    timeline.append((time.time() - t0, len(live), sum(r.get("GPU", 0) for r in live.values())))
                except Exception:
                    pass
                time.sleep(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            csv = make_features_csv(tmp_path / "features.csv")
            monkeypatch.setenv("RAY_ADDRESS", head.address)
            code = main(["exp3", "--features-csv", str(csv), "--storage", str(tmp_path), "--name", "gpu",
                         "--no-report", "--set", "models=[{name: mlp}]", "--set", "train.gpus_per_worker=1",
                         "--set", "train.epochs=2", "--set", "artifacts=none"])
            monkeypatch.delenv("RAY_ADDRESS")
            swept = time.time() - t0
            # idle timeout (12 s) + the autoscaler's update interval + node shutdown
            while time.time() - t0 < swept + 60 and (not timeline or timeline[-1][1] > 1):
                time.sleep(0.5)
        finally:
            stop.set()
            sampler.join(timeout=10)

    changes = [timeline[0]] + [p for q, p in zip(timeline, timeline[1:]) if p[1:] != q[1:]] if timeline else []
    print("\nnode count over time (s, nodes, GPUs): " + ", ".join(f"{t:.1f}s {n} {g:g}" for t, n, g in changes))
    print(f"sweep finished at {swept:.1f} s")
    assert code == 0
    [record] = read_records(tmp_path / "gpu")
    assert record["status"] == "ok" and record["model"] == "mlp"
    assert record["resources"]["gpu"] == 1, "the trial held the (logical) GPU"
    assert timeline[0][1] == 1, "before the sweep only the head is up"
    up = [t for t, n, g in timeline if n == 2 and g >= 1]
    assert up and up[0] < swept, "a GPU worker node was added while the sweep ran"
    down = [t for t, n, _ in timeline if n == 1 and t > up[-1]]
    assert down and down[0] > swept, "the idle GPU worker was removed after the sweep"
    idle_s = down[0] - swept
    print(f"scale-up after {up[0]:.1f} s; idle worker removed {idle_s:.1f} s after the sweep "
          f"(idle timeout {IDLE_TIMEOUT_MIN * 60:.0f} s)")
    assert idle_s >= IDLE_TIMEOUT_MIN * 60 - 4, "removed before its idle timeout"
