"""A head started the way cluster.yaml starts it (token auth on, dashboard on 127.0.0.1) refuses clients
without the token: the job API (CVE-2023-48022: whoever reaches it runs code), the node agent's API and
the GCS (what `ray.init` talks to). With the token, the same calls succeed, and
`ray job submit --working-dir . -- python -m raygenre.sweep exp4` runs a reduced exp4 there, and a job
stopped with `ray job stop` leaves a run that `ray job submit ... --resume` completes.
"""

import http.client
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from feature_tables import make_features_csv  # noqa: E402
from ray_head import BIN, Head, clean_env  # noqa: E402

from raygenre.records import latest_by_trial, read_records  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow

NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only, never a proxy
CONNECT = ("import ray; ray.init(address='{address}', log_to_driver=False, logging_level='ERROR'); "
           "print('CPUS', ray.cluster_resources().get('CPU'))")


def _http(url: str, token: str | None = None, body: dict | None = None) -> tuple[int, str]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if body else "GET")
    try:
        with NO_PROXY.open(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except urllib.error.URLError as exc:  # nothing listening (yet)
        return 0, str(exc.reason)
    except (http.client.HTTPException, ConnectionError) as exc:  # not (yet) an HTTP server on that port
        return 0, f"{type(exc).__name__}: {str(exc)[:80]!r}"


def _listen_addresses(port: int) -> set[str]:
    """Local IPv4/IPv6 addresses with a socket LISTENing on ``port`` (from /proc/net, no traffic sent)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                if len(addr) == 8:
                    found.add(".".join(str(int(addr[i:i + 2], 16)) for i in (6, 4, 2, 0)))
                else:
                    found.add(addr)
    return found


def _connect_all(address: str, envs: dict[str, dict], timeout: float = 90) -> dict[str, tuple[int, str, str]]:
    """``ray.init(address)`` in one fresh process per environment, all at once (refusals wait on retries)."""
    procs = {name: subprocess.Popen([sys.executable, "-c", CONNECT.format(address=address)], env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, env in envs.items()}
    out = {}
    for name, proc in procs.items():
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
            out[name] = (proc.returncode, stdout, stderr)
        except subprocess.TimeoutExpired:  # a client left hanging did not get in either
            proc.kill()
            stdout, stderr = proc.communicate()
            out[name] = (124, stdout, stderr)
    return out


def _auth_line(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if re.search(r"auth|token", ln, re.I)]
    return lines[-1] if lines else ""


def test_token_auth_refuses_clients_without_the_token(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = clean_env(HOME=str(home), RAY_AUTH_MODE="token")
    generated = subprocess.run([str(BIN / "ray"), "get-auth-token", "--generate"], env=env, capture_output=True,
                               text=True, timeout=120)
    token = generated.stdout.strip()
    assert generated.returncode == 0 and len(token) >= 32
    assert (home / ".ray" / "auth_token").read_text().strip() == token

    with Head("sec", env, num_cpus=2, dashboard=True) as head:
        jobs = f"http://127.0.0.1:{head.dashboard}/api/jobs/"
        deadline = time.time() + 120
        while _http(jobs, token)[0] != 200:
            assert head.alive() and time.time() < deadline, "the head's job API did not come up"
            time.sleep(1)
        t0 = time.time()

        # The dashboard (job API) listens on loopback only.
        assert _listen_addresses(head.dashboard) == {"127.0.0.1"}

        # Job API: no token -> 401, a wrong one -> 403, the right one -> 200.
        assert _http(jobs)[0] == 401
        assert _http(jobs, "0" * len(token))[0] == 403
        status, listing = _http(jobs, token)
        assert status == 200 and json.loads(listing) == []

        # The attack itself: submitting a job without the token is refused and nothing runs.
        marker = tmp_path / "pwned"
        attack = {"entrypoint": f"touch {marker}"}
        assert _http(jobs, body=attack)[0] == 401
        assert _http(jobs, "0" * len(token), body=attack)[0] == 403
        # The node agent's HTTP API (it starts jobs for the dashboard) is behind the token too.
        agent = f"http://127.0.0.1:{head.agent}/api/job_agent/jobs/"
        while (answer := _http(agent, body=attack))[0] == 0 and time.time() < deadline + 60:
            time.sleep(1)
        print(f"\nagent: {answer}, listening on {_listen_addresses(head.agent)}")
        assert answer[0] == 401, f"the node agent's port {head.agent} answered {answer}"
        time.sleep(2)
        assert not marker.exists() and json.loads(_http(jobs, token)[1]) == []

        # GCS (ray.init): a client that sends no token, or a wrong one, is refused; the token gets in.
        no_home = tmp_path / "stranger"
        no_home.mkdir()
        results = _connect_all(head.address, {
            "no token": clean_env(HOME=str(no_home), RAY_AUTH_MODE="disabled"),
            "wrong token": clean_env(HOME=str(no_home), RAY_AUTH_MODE="token", RAY_AUTH_TOKEN="0" * len(token)),
            "with token": env,
        })
        for name, (rc, stdout, stderr) in results.items():
            print(f"\n{name}: rc {rc}, {stdout.strip() or _auth_line(stderr)[:300]}")
        print(f"checks took {time.time() - t0:.1f} s after the head came up")
        for name in ("no token", "wrong token"):
            rc, stdout, stderr = results[name]
            assert rc != 0 and "CPUS" not in stdout, name
            assert "AuthenticationError" in stderr, f"{name}: refused, but not for authentication: {stderr[-1500:]}"
        rc, stdout, stderr = results["with token"]
        assert rc == 0 and "CPUS 2.0" in stdout, stderr[-2000:]

        # The product path on that head, with the token: `ray job submit --working-dir . -- ... sweep exp4`.
        csv = make_features_csv(tmp_path / "features.csv")
        storage = tmp_path / "runs"
        submit = [str(BIN / "ray"), "job", "submit", "--address", f"http://127.0.0.1:{head.dashboard}",
                  "--working-dir", str(ROOT), "--", "python", "-m", "raygenre.sweep", "exp4", "--profile", "quick",
                  "--features-csv", str(csv), "--storage", str(storage), "--name", "job", "--no-report",
                  "--set", "exp4.bootstraps=6", "--set", "exp4.fractions=[1.0]"]
        # A job stopped with `ray job stop` mid-sweep leaves a run that a `--resume` job completes.
        _stop_then_resume(head, env, token, submit, storage, bootstraps=6)


def _job_info(dashboard: int, token: str, submission_id: str) -> dict:
    status, body = _http(f"http://127.0.0.1:{dashboard}/api/jobs/{submission_id}", token)
    assert status == 200, f"job {submission_id}: HTTP {status} {body[:300]}"
    return json.loads(body)


def _job_logs(dashboard: int, token: str, submission_id: str) -> str:
    status, body = _http(f"http://127.0.0.1:{dashboard}/api/jobs/{submission_id}/logs", token)
    return json.loads(body).get("logs", "") if status == 200 else f"(no logs: HTTP {status} {body[:200]})"


def _stop_then_resume(head: Head, env: dict, token: str, submit: list[str], storage: Path, bootstraps: int) -> None:
    """`ray job submit --no-wait` a longer exp4, `ray job stop` it once it has recorded a trial, then
    `ray job submit ... --resume` the same run: every planned trial ends with exactly one ok record."""
    t0 = time.time()
    address = f"http://127.0.0.1:{head.dashboard}"
    planned = bootstraps + 1  # exp4 with one training fraction: the bootstraps plus one size trial
    run_dir = storage / "stopped"
    args = submit[submit.index("--") + 1:]
    args[args.index("--name") + 1] = "stopped"
    args[args.index("exp4.bootstraps=6")] = f"exp4.bootstraps={bootstraps}"
    ray_job = [str(BIN / "ray"), "job"]
    common = ["--address", address]
    submission_id = f"stopped-{int(time.time())}"
    for _ in range(20):  # the job agent can take a few seconds after the head is up
        started = subprocess.run([*ray_job, "submit", "--no-wait", *common, "--submission-id", submission_id,
                                  "--working-dir", str(ROOT), "--", *args],
                                 env=env, capture_output=True, text=True, timeout=120)
        if "No available agent" not in started.stdout + started.stderr:
            break
        time.sleep(2)
    assert started.returncode == 0, (started.stdout + started.stderr)[-3000:]

    deadline = time.time() + 200
    while len(read_records(run_dir, require=False)) < 1:
        state = _job_info(head.dashboard, token, submission_id)["status"]
        if state in ("SUCCEEDED", "FAILED", "STOPPED") or time.time() > deadline:
            pytest.fail(f"job {submission_id} is {state} with no record yet after {time.time() - t0:.0f} s; "
                        f"its logs:\n{_job_logs(head.dashboard, token, submission_id)[-3000:]}")
        time.sleep(0.5)
    first_seen = time.time() - t0
    t_stop = time.time()

    stop = subprocess.run([*ray_job, "stop", *common, submission_id], env=env, capture_output=True, text=True,
                          timeout=120)
    assert stop.returncode == 0, (stop.stdout + stop.stderr)[-3000:]
    stop_s = time.time() - t_stop
    before = read_records(run_dir, require=False)
    state = _job_info(head.dashboard, token, submission_id)["status"]  # what `ray job status` reads
    assert state == "STOPPED" and "was stopped" in stop.stdout + stop.stderr, (
        f"`ray job stop` returned, but the job is {state}, not STOPPED ({len(before)} of {planned} records; "
        f"if all, it finished before the stop: raise the bootstraps)\n{stop.stdout}{stop.stderr}"
        f"\n{_job_logs(head.dashboard, token, submission_id)[-3000:]}")
    assert 1 <= len(before) < planned, (
        f"the stopped job left {len(before)} of {planned} records: the test needs a partial run "
        f"(raise the bootstraps if it finished before the stop)")

    t_resume = time.time()
    resumed = subprocess.run([*ray_job, "submit", *common, "--working-dir", str(ROOT), "--", *args, "--resume"],
                             env=env, capture_output=True, text=True, timeout=420)
    resume_s = time.time() - t_resume
    out = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0 and "succeeded" in out, out[-3000:]
    already = {m[0]: (int(m[1]), int(m[2]), int(m[3])) for m in  # study: (planned, already recorded, to run)
               re.findall(r"\[(exp4-\w+)\] (\d+) planned, (\d+) already recorded, (\d+) to run", out)}
    ok_before = {r["trial_key"] for r in before if r["status"] == "ok"}  # a record written after the stop fails here
    assert sum(n for n, _, _ in already.values()) == planned, out[-3000:]
    assert sum(k for _, k, _ in already.values()) == len(ok_before) >= 1, out[-3000:]
    assert sum(t for _, _, t in already.values()) == planned - len(ok_before), out[-3000:]

    after = read_records(run_dir)
    per_trial: dict[str, int] = {}
    for r in after:
        per_trial[r["trial_key"]] = per_trial.get(r["trial_key"], 0) + (r["status"] == "ok")
    latest = latest_by_trial(after)
    assert len(latest) == planned and all(r["status"] == "ok" for r in latest.values()), \
        {k: r["status"] for k, r in latest.items()}
    assert per_trial == dict.fromkeys(latest, 1), f"trials recorded ok more than once: {per_trial}"
    assert after[0]["run"]["hardware"]["cluster_cpus"] == 2  # the trials ran on the head's Ray, not a new one
    assert after[:len(before)] == before, "the records kept at the stop are unchanged, in their order"
    print(f"\nstop/resume: first record after {first_seen:.1f} s, stop took {stop_s:.1f} s, {len(before)} of "
          f"{planned} records at the stop, {len(after)} after --resume ({resume_s:.1f} s; {already}), "
          f"{time.time() - t0:.1f} s in all")
