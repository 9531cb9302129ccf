"""Where a run's audio comes from: resolved once, scanned once.

``--data`` becomes ``"synthetic"`` or an absolute folder when the config is built
(:func:`absolute_source`); :func:`find_clips` then generates the synthetic set if needed and
discovers the clips a single time; prepare and the sweep pass that ``Discovery`` on.
"""

from __future__ import annotations

import os
from pathlib import Path

from raygenre.config import DataConfig
from raygenre.data.gtzan import Discovery, discover
from raygenre.errors import DatasetError
from raygenre.storage import RunPath


def absolute_source(text: str) -> str:
    """``synthetic`` or an existing folder as an absolute path; anything else is one sentence."""
    if text == "synthetic":
        return text
    folder = Path(text).expanduser()
    if not folder.is_dir():
        raise DatasetError(f"--data must be 'synthetic' or an existing GTZAN folder; {text!r} is neither.")
    return str(folder.resolve())


def local_cache() -> Path:
    """This machine's cache for data a remote run needs locally (``RAYGENRE_CACHE``, else ~/.cache/raygenre)."""
    return Path(os.environ.get("RAYGENRE_CACHE") or Path.home() / ".cache" / "raygenre").expanduser()


def find_clips(data: DataConfig, run_dir: Path | str | RunPath) -> Discovery:
    """The clips of the configured source (the synthetic set is generated once under ``RUN_DIR/data``).

    With a run directory in object storage the synthetic set is generated in :func:`local_cache` and
    copied to ``RUN_DIR/data/`` once, so Ray Data tasks on any node read the same files from there.
    """
    run_dir = RunPath.of(run_dir)
    if data.source != "synthetic":
        return discover(data.source)
    from raygenre.data.synthetic import ensure_synthetic

    if not run_dir.remote:
        return discover(ensure_synthetic(run_dir / "data", data.synthetic))
    found = discover(ensure_synthetic(local_cache() / "data", data.synthetic))
    mirror = run_dir / "data" / found.root.name
    complete = mirror / ".complete"
    if not complete.is_file():
        mirror.delete()
        mirror.upload(found.root)
        complete.write_text(f"{len(found.clips)} clips\n")
    found.mirror = mirror
    return found
