"""`ray job submit --working-dir .` uploads code only: .rayignore keeps runs, data, reports, venvs and caches out.

The package is built with Ray's own helpers (``ray._private.runtime_env.packaging``), the ones the job
SDK calls for ``--working-dir``: ``get_uri_for_directory`` names the package by a hash of what it holds,
``create_package`` writes the zip that is uploaded to the head.
"""

import os
import shutil
import zipfile
from pathlib import Path

import pytest
from ray._private.runtime_env.packaging import create_package, get_uri_for_directory

ROOT = Path(__file__).resolve().parents[1]
EXCLUDED_TOP = (".git/", ".venv/", "runs/", "reports/", "data/", ".device", ".pytest_cache/", ".ruff_cache/")

pytestmark = pytest.mark.slow


def _package(directory: Path, target: Path, *, include_gitignore: bool) -> tuple[list[str], int]:
    create_package(str(directory), target, include_gitignore=include_gitignore)
    with zipfile.ZipFile(target) as z:
        names = sorted(n for n in z.namelist() if not n.endswith("/"))
    return names, target.stat().st_size


@pytest.mark.parametrize("include_gitignore", [True, False], ids=["as-job-submit", "rayignore-alone"])
def test_the_project_uploads_code_only_and_stays_small(tmp_path, include_gitignore):
    names, size = _package(ROOT, tmp_path / "pkg.zip", include_gitignore=include_gitignore)
    print(f"\nworking-dir package of {ROOT}: {len(names)} files, {size / 1024**2:.2f} MiB "
          f"(include_gitignore={include_gitignore})")
    assert size < 5 * 1024**2
    for needed in ("pyproject.toml", "constraints.txt", "raygenre/sweep.py", "raygenre/record.schema.json",
                   "raygenre/data/splits", "sweeps/base.yaml"):
        assert any(n == needed or n.startswith(needed + "/") for n in names), f"{needed} is missing"
    assert not [n for n in names if n.startswith(EXCLUDED_TOP)]
    assert not [n for n in names if n.endswith((".parquet", ".pyc", ".wav")) or "__pycache__/" in n]


def test_planted_runs_data_and_caches_are_not_uploaded(tmp_path):
    project = tmp_path / "project"
    files = {
        # kept: code and configs, including raygenre/data (source code, not a data folder)
        "pyproject.toml": b"[project]\nname = 'x'\n",
        "raygenre/sweep.py": b"print('sweep')\n",
        "raygenre/data/pipeline.py": b"print('pipeline')\n",
        "raygenre/data/splits/test.txt": b"blues.00000\n",
        "sweeps/base.yaml": b"data: {}\n",
        "tests/data/golden.json": b"{}\n",
        # left out
        "runs/exp4-quick/shards/part-0.parquet": os.urandom(1024),
        "runs/big.bin": os.urandom(8 * 1024**2),
        "data/genres_original/blues/blues.00000.wav": os.urandom(4096),
        "reports/demo/REPORT.md": b"# report\n",
        ".venv/lib/python3.11/site-packages/torch/__init__.py": b"",
        "features.parquet": os.urandom(1024),
        ".device/result.json": b"{}",
        "raygenre/__pycache__/sweep.cpython-311.pyc": b"\0",
        ".pytest_cache/v/cache/nodeids": b"[]",
        ".git/HEAD": b"ref: refs/heads/main\n",
    }
    for rel, content in files.items():
        path = project / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    shutil.copy(ROOT / ".rayignore", project / ".rayignore")

    names, size = _package(project, tmp_path / "planted.zip", include_gitignore=False)
    print(f"\nplanted project: {len(names)} files uploaded, {size} bytes "
          f"(of {sum(len(c) for c in files.values()) / 1024**2:.1f} MiB on disk)")
    assert names == sorted([".rayignore", "pyproject.toml", "raygenre/data/pipeline.py",
                            "raygenre/data/splits/test.txt", "raygenre/sweep.py", "sweeps/base.yaml",
                            "tests/data/golden.json"])
    assert size < 64 * 1024

    # The package's name is a hash of what it holds: a new run's files leave it alone, a code change does not.
    before = get_uri_for_directory(str(project), include_gitignore=False)
    (project / "runs" / "big.bin").write_bytes(os.urandom(1024))
    (project / "runs" / "another-run").mkdir()
    (project / "runs" / "another-run" / "records.jsonl").write_text("{}\n")
    assert get_uri_for_directory(str(project), include_gitignore=False) == before
    (project / "raygenre" / "sweep.py").write_text("print('changed')\n")
    assert get_uri_for_directory(str(project), include_gitignore=False) != before
