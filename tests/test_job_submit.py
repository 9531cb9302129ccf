"""`ray job submit -- python -m raygenre.sweep exp4` against a head node on loopback, with token auth."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from raygenre.records import read_records

sys.path.insert(0, str(Path(__file__).parent))
from feature_tables import make_features_csv  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _ray(args: list[str], env: dict, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "ray"), *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_job_submission_runs_exp4_on_a_token_protected_head(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(HOME=str(home), RAY_AUTH_MODE="token", PATH=f"{BIN}:{env.get('PATH', '')}",
               RAY_DATA_DISABLE_PROGRESS_BARS="1")
    assert _ray(["get-auth-token", "--generate"], env).returncode == 0
    assert (home / ".ray" / "auth_token").exists()
    gcs, dash, agent, agent_grpc, runtime_env, metrics, client = _free_ports(7)
    temp_dir = Path("/tmp") / f"rg-job-{os.getpid()}"          # short: Ray's socket paths have a length limit
    head = subprocess.Popen([str(BIN / "ray"), "start", "--head", "--block", "--num-cpus", "2",
                  "--port", str(gcs), "--dashboard-port", str(dash),
                  "--dashboard-agent-listen-port", str(agent), "--dashboard-agent-grpc-port", str(agent_grpc),
                  "--runtime-env-agent-port", str(runtime_env), "--metrics-export-port", str(metrics),
                  "--ray-client-server-port", str(client), "--include-dashboard", "true",
                  "--dashboard-host", "127.0.0.1", "--node-ip-address", "127.0.0.1",
                  "--disable-usage-stats", "--temp-dir", str(temp_dir)], env=env,
                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    # `ray stop` would end every Ray on this machine (the test session's too): this head runs in
    # its own process group, and only that group is stopped at the end.
    try:
        address = f"http://127.0.0.1:{dash}"
        deadline = time.time() + 120
        while _ray(["job", "list", "--address", address], env, 60).returncode != 0:
            assert head.poll() is None and time.time() < deadline, "the head node did not come up"
            time.sleep(1)
        no_token = _ray(["job", "list", "--address", address], {**env, "RAY_AUTH_MODE": "disabled"}, 60)
        assert no_token.returncode != 0, "the job API must refuse a client without the token"
        csv = make_features_csv(tmp_path / "features.csv")
        storage = tmp_path / "runs"
        submit = ["job", "submit", "--address", address, "--working-dir", str(ROOT), "--",
                  "python", "-m", "raygenre.sweep", "exp4", "--profile", "quick", "--features-csv", str(csv),
                  "--storage", str(storage), "--name", "job", "--no-report",
                  "--set", "exp4.bootstraps=4", "--set", "exp4.fractions=[0.5,1.0]"]
        for _ in range(20):  # the job agent can take a few seconds after `ray start`
            result = _ray(submit, env, 420)
            if "No available agent" not in result.stdout + result.stderr:
                break
            time.sleep(2)
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
        assert "succeeded" in result.stdout + result.stderr
        records = read_records(storage / "job")
        assert len(records) == 6 and all(r["status"] == "ok" for r in records)
        assert records[0]["run"]["hardware"]["cluster_cpus"] == 2
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        time.sleep(2)
        leftover = subprocess.run(["pgrep", "-f", str(temp_dir)], capture_output=True, text=True).stdout.split()
        for pid in leftover:
            os.kill(int(pid), signal.SIGKILL)
        shutil.rmtree(temp_dir, ignore_errors=True)
