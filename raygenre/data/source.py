"""Where a run's audio comes from: resolved once, scanned once.

``--data`` becomes ``"synthetic"`` or an absolute folder when the config is built
(:func:`absolute_source`); :func:`find_clips` then generates the synthetic set if needed and
discovers the clips a single time; prepare and the sweep pass that ``Discovery`` on.
"""

from __future__ import annotations

from pathlib import Path

from raygenre.config import DataConfig
from raygenre.data.gtzan import Discovery, discover
from raygenre.errors import DatasetError


def absolute_source(text: str) -> str:
    """``synthetic`` or an existing folder as an absolute path; anything else is one sentence."""
    if text == "synthetic":
        return text
    folder = Path(text).expanduser()
    if not folder.is_dir():
        raise DatasetError(f"--data must be 'synthetic' or an existing GTZAN folder; {text!r} is neither.")
    return str(folder.resolve())


def find_clips(data: DataConfig, run_dir: Path | str) -> Discovery:
    """The clips of the configured source (the synthetic set is generated once under ``RUN_DIR/data``)."""
    if data.source == "synthetic":
        from raygenre.data.synthetic import ensure_synthetic

        return discover(ensure_synthetic(Path(run_dir) / "data", data.synthetic))
    return discover(data.source)
