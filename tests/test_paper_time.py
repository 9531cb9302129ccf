"""The training loop without Ray: part (b) of bench/paper_time.py runs the real loop where Ray, pyarrow and
pydantic cannot be imported (a machine with only torch), checked in a subprocess whose imports of them fail."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCKER = '''import sys
BLOCKED = ("ray", "pyarrow", "pydantic", "yaml")
class _Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked: this process stands for a machine with only torch")
sys.meta_path.insert(0, _Blocker())
'''


def _env(tmp_path: Path) -> dict:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT)])
    return env


def test_the_blocker_blocks(tmp_path):
    proc = subprocess.run([sys.executable, "-c", "import ray"], env=_env(tmp_path), capture_output=True, text=True)
    assert proc.returncode != 0 and "blocked" in proc.stderr


def test_real_loop_runs_and_resumes_without_ray(tmp_path):
    """bench part (b) in smoke mode through raygenre.train.local_run; then a kill between checkpoints and a
    resume, all with Ray, pyarrow, pydantic and yaml unimportable."""
    out = tmp_path / "loop.json"
    proc = subprocess.run([sys.executable, "bench/paper_time.py", "loop", "--smoke", "--rows", "cnn", "--threads", "1",
                           "--json", str(out)], cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out.read_text())["results"]
    assert [(r["experiment"], r["model"], r["train_rows"]) for r in rows] == [("exp1", "cnn", 20), ("exp2", "cnn", 120)]
    assert all(r["seconds"] > 0 and 0 < r["busy_fraction"] <= 1 and r["checkpoint_writes"] == 1 for r in rows)
    assert all(r["data_once_s"] is not None for r in rows)  # 20 small images: moved to the device once
    script = '''import sys, numpy as np
from raygenre.train.local_run import PAPER_TRAIN, run_local
class Kill(Exception): pass
def kill_at(epoch):
    def hook(session):
        keep = session.report
        def report(metrics, folder):
            if metrics["epoch"] == epoch: raise Kill()
            keep(metrics, folder)
        session.report = report
    return hook
rng = np.random.default_rng(0)
x, y = rng.integers(0, 255, (16, 32, 32, 3), dtype=np.uint8), np.arange(16) % 10
build = {"name": "cnn", "family": "spectrogram", "variant": "default", "params": {}}
train = {**PAPER_TRAIN, "epochs": 4, "batch_size": 8, "checkpoint": {"every_s": 0, "max_overhead": 0}}
try:
    run_local(build, train, (x, y), (x[:6], y[:6]), sys.argv[1], session_hook=kill_at(3))
except Kill:
    pass
final = run_local(build, train, (x, y), (x[:6], y[:6]), sys.argv[1])
# killed while reporting epoch 3, whose checkpoint was already written: epoch 4 alone trains again
assert [h["attempt"] for h in final["history"]] == [1, 1, 1, 2] and final["resumed_from_epoch"] == 3, final
blocked = [m for m in sys.modules if m.split(".")[0] in ("ray", "pyarrow", "pydantic", "yaml")]
assert not blocked, blocked
print("ok")
'''
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "ck")], cwd=ROOT, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]
