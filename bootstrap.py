#!/usr/bin/env python3
"""Set-up and entry point for a fresh machine that has only Python 3.

    python3 bootstrap.py demo [sweep args]   # synthetic GTZAN, quick profile, writes a report
    python3 bootstrap.py test [pytest args]  # the test suite (what .ci/run runs)

Each command creates ``.venv`` beside this file on first use (or when ``pyproject.toml`` or
``constraints.txt`` changed), installs raygenre with its pinned dependencies into it, and runs
inside it. Standard library only, so it works before anything is installed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / "raygenre-install.sha256"
PYTEST_NO_TESTS = 5


def _python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _install_fingerprint() -> str:
    digest = hashlib.sha256()
    for name in ("pyproject.toml", "constraints.txt"):
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()


def ensure_venv() -> Path:
    """Create or reuse ``.venv``; reinstall only when the declared dependencies changed."""
    if sys.version_info < (3, 10):  # noqa: UP036 - runs under any python3 before the venv exists
        sys.exit(f"raygenre needs Python >= 3.10; this is {sys.version.split()[0]}.")
    fingerprint = _install_fingerprint()
    if _python().exists() and STAMP.exists() and STAMP.read_text() == fingerprint:
        return _python()
    if not _python().exists():
        print(f"[bootstrap] creating virtual environment {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("[bootstrap] installing raygenre and its pinned dependencies (a few minutes the first time)",
          flush=True)
    pip = [str(_python()), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-c", str(ROOT / "constraints.txt"), "-e", f"{ROOT}[dev]"], check=True)
    # librosa asks numba to cache its compiled kernels beside its sources: compile them once here, so
    # no prepare worker, test or demo process pays the ~20 s of a cold cache.
    subprocess.run([str(_python()), "-c", "from raygenre.data.features import warm_up; "
                    "print(f'[bootstrap] compiled librosa kernels in {warm_up():.0f} s', flush=True)"], check=True)
    STAMP.write_text(fingerprint)
    return _python()


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("demo", "test"):
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    python = str(ensure_venv())
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if command == "demo":
        env.setdefault("RAYGENRE_QUIET", "1")  # raygenre's progress lines, not Ray's own log lines
    if command == "demo":
        args = rest or ["all", "--profile", "quick", "--data", "synthetic", "--storage", "runs",
                        "--name", "demo", "--report-dir", "reports/demo"]
        return subprocess.run([python, "-m", "raygenre.sweep", *args], cwd=ROOT, env=env).returncode
    code = subprocess.run([python, "-m", "pytest", *rest], cwd=ROOT, env=env).returncode
    if code == PYTEST_NO_TESTS:
        print("[bootstrap] pytest collected no tests: treating that as a failure.", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
