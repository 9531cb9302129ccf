"""A private `ray start --head` for tests: its own ports, temp dir and process group, stopped alone.

`ray stop` (with or without --force) ends every Ray on the machine, the test session's and other
people's included, so a head started here is never stopped that way: its process group is signalled,
then whatever still names its temp dir on the command line (worker nodes it spawned) is killed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def clean_env(**extra: str) -> dict:
    """This process's environment without any RAY_* setting (the test session sets some), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(PATH=f"{BIN}:{env.get('PATH', '')}", RAY_DATA_DISABLE_PROGRESS_BARS="1", **extra)
    return env


def short_temp_dir(tag: str) -> Path:
    """Ray's socket paths have a length limit: keep the temp dir short."""
    return Path("/tmp") / f"rg-{tag}-{os.getpid()}"


class Head:
    """`ray start --head --block` on 127.0.0.1 with free ports; ``gcs``/``dashboard``/``agent`` are its ports."""

    def __init__(self, tag: str, env: dict, *, num_cpus: int = 1, dashboard: bool = False,
                 gcs_port: int | None = None, extra_args: tuple[str, ...] = ()):
        (self.gcs, self.dashboard, self.agent, agent_grpc, runtime_env, metrics,
         client) = free_ports(7)
        self.gcs = gcs_port or self.gcs
        self.temp_dir = short_temp_dir(tag)
        self.env = env
        args = [str(BIN / "ray"), "start", "--head", "--block", "--num-cpus", str(num_cpus),
                "--port", str(self.gcs), "--dashboard-port", str(self.dashboard),
                "--dashboard-agent-listen-port", str(self.agent), "--dashboard-agent-grpc-port", str(agent_grpc),
                "--runtime-env-agent-port", str(runtime_env), "--metrics-export-port", str(metrics),
                "--ray-client-server-port", str(client), "--include-dashboard", str(dashboard).lower(),
                "--node-ip-address", "127.0.0.1", "--disable-usage-stats", "--temp-dir", str(self.temp_dir),
                *extra_args]
        if dashboard:
            args += ["--dashboard-host", "127.0.0.1"]
        self.proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace_s: float = 10) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        time.sleep(1)
        leftover = subprocess.run(["pgrep", "-f", str(self.temp_dir)], capture_output=True, text=True).stdout.split()
        for pid in leftover:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> Head:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class SessionRayPaused:
    """Shut down a Ray this process already runs (the test session's), so that a test can attach the
    process to another cluster; afterwards start it again with the session's settings (tests/conftest.py)."""

    def __enter__(self) -> SessionRayPaused:
        import ray

        self.was_running = ray.is_initialized()
        if self.was_running:
            ray.shutdown()
        return self

    def __exit__(self, *exc) -> None:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        if self.was_running:
            ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024**2,
                     log_to_driver=False)


def node_resources(gcs_address: str):
    """A function returning {node id: total resources} of the live nodes, read from the GCS directly
    (no driver needed, so it works before, during and after a sweep's own connection)."""
    import ray._private.state
    from ray._raylet import GcsClientOptions

    state = ray._private.state.GlobalState()
    state._initialize_global_state(GcsClientOptions.create(gcs_address, None, allow_cluster_id_nil=True,
                                                           fetch_cluster_id_if_nil=False))
    return state.total_resources_per_node
