"""Issue 21: a local run starts a Ray of its own; attaching is asked for (``--address``, ``RAY_ADDRESS``).

Every Ray here runs in a subprocess (the test session's own Ray stays out of it) whose ``RAY_TMPDIR`` is
a private folder: Ray looks for ``ray_current_cluster`` (the head the last ``ray start`` recorded) in
``$RAY_TMPDIR/ray/``, so the file these tests write and the head they start are seen by nobody else's
Ray on this machine, and the machine's own ``/tmp/ray`` is never touched.
"""

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import ray_head  # noqa: E402
from feature_tables import make_features_csv  # noqa: E402
from ray_head import Head, clean_env, free_ports, short_temp_dir  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def ray_tmp():
    """A private RAY_TMPDIR (short: Ray's socket paths have a length limit), removed afterwards."""
    path = short_temp_dir("addr")
    (path / "ray").mkdir(parents=True, exist_ok=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run_py(code: str, ray_tmp: Path, timeout: float = 120, **env: str) -> tuple[subprocess.CompletedProcess, float]:
    started = time.time()
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=clean_env(RAY_TMPDIR=str(ray_tmp), RAY_AUTH_MODE="disabled", **env))
    return proc, time.time() - started


def closed_port() -> int:
    return free_ports(1)[0]


SESSION = """
import json, sys, time, ray
from raygenre.ray_session import ray_session
t = time.time()
with ray_session({args}):
    ctx = ray.get_runtime_context()
    out = {{"gcs": ctx.gcs_address, "cpus": ray.cluster_resources().get("CPU"),
            "nodes": len([n for n in ray.nodes() if n["Alive"]]), "s": time.time() - t}}
print("RESULT " + json.dumps(out))
"""


def result(proc: subprocess.CompletedProcess) -> dict:
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout + proc.stderr
    return json.loads(lines[-1][len("RESULT "):])


def test_a_stale_ray_current_cluster_neither_delays_nor_diverts_a_local_session(ray_tmp):
    """Issue 21: a `ray start` head killed without `ray stop` left its address behind; plain ray.init()
    would try it for ~14 min. The session starts its own Ray at once and leaves the file as it was."""
    port = closed_port()
    stale = ray_tmp / "ray" / "ray_current_cluster"
    stale.write_text(f"127.0.0.1:{port}")
    probe = ("from ray._private.services import canonicalize_bootstrap_address as c; "
             "print('RESULT', __import__('json').dumps({'gcs': c(None)}))")
    proc, _ = run_py(probe, ray_tmp)
    assert result(proc)["gcs"].endswith(f":{port}"), "the test's file is not where Ray looks"

    proc, elapsed = run_py(SESSION.format(args="num_cpus=1"), ray_tmp)
    out = result(proc)
    assert not out["gcs"].endswith(f":{port}") and out["cpus"] == 1 and out["nodes"] == 1
    assert out["s"] < 45 and elapsed < 90, (out, elapsed)
    assert "[ray] local Ray, 1 CPU\n" in proc.stderr, proc.stderr
    assert stale.read_text() == f"127.0.0.1:{port}"


UNREACHABLE = """
import json, os, time
from pathlib import Path
from raygenre.ray_session import ray_session
from raygenre.predict import predict_on_ray
out = []
def attempt(label, fn):
    t = time.time()
    try:
        fn()
        out.append([label, "no error", time.time() - t])
    except Exception as exc:
        out.append([label, type(exc).__name__ + ": " + str(exc), time.time() - t])
def session(address=None, env=None):
    if env: os.environ["RAY_ADDRESS"] = env
    try:
        with ray_session(address=address):
            pass
    finally:
        os.environ.pop("RAY_ADDRESS", None)
attempt("env closed", lambda: session(env="127.0.0.1:{closed}"))
attempt("flag silent", lambda: session(address="127.0.0.1:{silent}"))
attempt("env http", lambda: session(env="http://127.0.0.1:{closed}"))
attempt("auto none", lambda: session(address="auto"))
attempt("predict", lambda: predict_on_ray(Path("."), [Path("a.wav")], None, None, address="127.0.0.1:{closed}"))
print("RESULT " + json.dumps(out))
"""


def test_an_unreachable_address_is_one_sentence_within_seconds(ray_tmp):
    """Refused, silent (accepts, never answers), a dashboard URL, `auto` with no head recorded; and the
    flag reaches predict's Ray stage. Each is a RayAddressError naming the address and RAY_ADDRESS."""
    closed = closed_port()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)   # the kernel completes connections; nobody ever reads or writes
    try:
        proc, _ = run_py(UNREACHABLE.format(closed=closed, silent=silent.getsockname()[1]), ray_tmp)
    finally:
        silent.close()
    outcomes = {label: (message, seconds) for label, message, seconds in result(proc)}
    for label, (message, seconds) in outcomes.items():
        assert message.startswith("RayAddressError: ") and seconds < 15, (label, message, seconds)
        assert "RAY_ADDRESS" in message and "\n" not in message, (label, message)
    assert f"127.0.0.1:{closed} (from RAY_ADDRESS: connection refused)" in outcomes["env closed"][0]
    assert f"127.0.0.1:{closed} (from --address: connection refused)" in outcomes["predict"][0]
    assert "no answer within 5 s" in outcomes["flag silent"][0]
    assert "dashboard / job API address" in outcomes["env http"][0]
    assert "auto found no running Ray head" in outcomes["auto none"][0]
    assert str(ray_tmp / "ray" / "ray_current_cluster") in outcomes["auto none"][0]


@pytest.mark.parametrize("cli", ["sweep", "prepare"])
def test_the_clis_refuse_an_unreachable_address_in_one_line_and_exit_2(cli, ray_tmp, tmp_path):
    """Through the real entry points, as a user runs them: exit 2, one `error:` line, no traceback, < 30 s."""
    port = closed_port()
    if cli == "sweep":
        args = ["exp4", "--features-csv", str(make_features_csv(tmp_path / "f.csv")), "--storage", str(tmp_path),
                "--name", "r", "--no-report"]
    else:   # the smallest synthetic set whose split draws, so that prepare reaches its Ray stage
        args = ["--data", "synthetic", "--out", str(tmp_path / "r"), "--representations", "features",
                "--set", "data.synthetic.clips_per_genre=5", "--set", "data.synthetic.seconds=6",
                "--set", "prepare.clip_seconds=6"]
    started = time.time()
    proc = subprocess.run([sys.executable, "-m", f"raygenre.{cli}", *args, "--address", f"127.0.0.1:{port}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=clean_env(RAY_TMPDIR=str(ray_tmp), RAY_AUTH_MODE="disabled"))
    elapsed = time.time() - started
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"no Ray cluster answers at 127.0.0.1:{port} (from --address: connection refused)" in errors[0]
    assert "RAY_ADDRESS" in errors[0] and elapsed < 30, (errors, elapsed)


def test_address_auto_joins_the_running_head_and_a_plain_run_does_not(ray_tmp, monkeypatch):
    """A live `ray start --head` (1 CPU) recorded in ray_current_cluster: `auto` attaches to it and says so;
    without an address the same program starts a Ray of its own (2 CPUs) beside it."""
    monkeypatch.setattr(ray_head, "short_temp_dir", lambda tag: ray_tmp / "ray")
    recorded = ray_tmp / "ray" / "ray_current_cluster"
    with Head("addr", clean_env(RAY_TMPDIR=str(ray_tmp), RAY_AUTH_MODE="disabled"), num_cpus=1) as head:
        deadline = time.time() + 90
        while not (recorded.is_file() and recorded.read_text().strip()):
            assert head.alive() and time.time() < deadline, "the head did not come up"
            time.sleep(0.5)
        proc, _ = run_py(SESSION.format(args="address='auto'") + SESSION.format(args="num_cpus=2"), ray_tmp)
        assert proc.returncode == 0, proc.stderr
        attached, local = (json.loads(line[len("RESULT "):]) for line in proc.stdout.splitlines()
                           if line.startswith("RESULT "))
    assert attached["gcs"].endswith(f":{head.gcs}") and attached["cpus"] == 1 and attached["nodes"] == 1
    assert attached["s"] < 30, attached
    said = [line for line in proc.stderr.splitlines() if line.startswith("[ray] attached to ")]
    assert len(said) == 1 and said[0].endswith(f":{head.gcs} (1 CPU, 1 node; from --address auto, from {recorded})")
    assert not local["gcs"].endswith(f":{head.gcs}") and local["cpus"] == 2 and local["nodes"] == 1
    assert "[ray] local Ray, 2 CPUs\n" in proc.stderr
