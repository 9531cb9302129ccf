"""GTZAN layouts, labels and clip ids.

Three layouts are recognised under a root folder:

* Kaggle: ``<root>/genres_original/<genre>/<genre>.NNNNN.wav``
* original: ``<root>/genres/<genre>/<genre>.NNNNN.au``
* flat: ``<root>/<genre>/<genre>.NNNNN.{wav,au}``

A clip id is ``<genre>.NNNNN``. Files that do not match the pattern, or whose
name disagrees with their folder, are listed as ignored with a reason rather
than dropped silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raygenre.errors import DatasetError
from raygenre.genres import GENRE_INDEX, GENRES

AUDIO_EXTENSIONS = (".wav", ".au")
LAYOUT_SUBDIRS = {"kaggle": "genres_original", "original": "genres", "flat": ""}

_CLIP_NAME = re.compile(r"^(?P<genre>[a-z]+)\.(?P<number>\d{5})\.(?P<ext>wav|au)$")
_CLIP_ID = re.compile(r"^(?P<genre>[a-z]+)\.(?P<number>\d{5})$")




@dataclass(frozen=True)
class Clip:
    clip_id: str
    genre: str
    path: Path


@dataclass
class Discovery:
    root: Path
    layout: str
    clips: list[Clip]
    ignored: list[dict] = field(default_factory=list)  # {"path": str, "reason": str}
    mirror: Any = None  # a RunPath holding a copy of ``root`` that every node reaches (object storage)

    def read_path(self, clip: Clip) -> str:
        """Where Ray Data reads a clip from: the file, or its copy in ``mirror`` (as ``mirror.fs`` names it)."""
        if self.mirror is None:
            return str(clip.path)
        return f"{self.mirror.path}/{clip.path.relative_to(self.root).as_posix()}"

    @property
    def read_filesystem(self):
        """The pyarrow filesystem of :meth:`read_path` (None: the local disk)."""
        return None if self.mirror is None else self.mirror.fs

    @property
    def ids(self) -> list[str]:
        return [c.clip_id for c in self.clips]

    @property
    def labels(self) -> list[str]:
        return [c.genre for c in self.clips]

    def counts(self) -> dict[str, int]:
        return {g: sum(c.genre == g for c in self.clips) for g in GENRES}


def genre_of(clip_id: str) -> str:
    """The genre a clip id names; raises DatasetError for an id not of the form ``<genre>.NNNNN``."""
    m = _CLIP_ID.match(clip_id)
    if not m or m["genre"] not in GENRE_INDEX:
        raise DatasetError(f"'{clip_id}' is not a GTZAN clip id (expected '<genre>.NNNNN' with a GTZAN genre).")
    return m["genre"]


def clip_id_from_filename(name: str) -> str:
    """``'genres_original/jazz/jazz.00054.wav'`` or ``'jazz.00054.au'`` -> ``'jazz.00054'``."""
    base = Path(name).name
    m = _CLIP_NAME.match(base)
    if not m:
        raise DatasetError(f"'{name}' is not a GTZAN file name (expected '<genre>.NNNNN.wav' or '.au').")
    clip_id = f"{m['genre']}.{m['number']}"
    genre_of(clip_id)
    return clip_id


def detect_layout(root: Path) -> tuple[str, Path]:
    """Which layout ``root`` uses, and the folder holding the genre folders."""
    for layout in ("kaggle", "original"):
        sub = root / LAYOUT_SUBDIRS[layout]
        if sub.is_dir():
            return layout, sub
    if any((root / g).is_dir() for g in GENRES):
        return "flat", root
    raise DatasetError(
        f"{root} holds no GTZAN layout: expected 'genres_original/<genre>/', 'genres/<genre>/' "
        f"or the ten genre folders directly."
    )


def discover(root: str | Path) -> Discovery:
    """Find every GTZAN clip under ``root``; unmatched files are listed in ``ignored``."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"GTZAN root {root} does not exist or is not a folder.")
    layout, genre_parent = detect_layout(root)
    clips: list[Clip] = []
    ignored: list[dict] = []
    for folder in sorted(p for p in genre_parent.iterdir() if p.is_dir()):
        if folder.name not in GENRE_INDEX:
            ignored.append({"path": str(folder), "reason": "folder is not a GTZAN genre"})
            continue
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            m = _CLIP_NAME.match(path.name)
            if not m:
                ignored.append({"path": str(path), "reason": "name is not '<genre>.NNNNN.wav|au'"})
            elif m["genre"] != folder.name:
                ignored.append({"path": str(path),
                                "reason": f"file name says '{m['genre']}' but folder is '{folder.name}'"})
            elif path.parent != folder:
                ignored.append({"path": str(path), "reason": "clip is nested below its genre folder"})
            else:
                clips.append(Clip(f"{m['genre']}.{m['number']}", folder.name, path))
    seen: dict[str, Path] = {}
    unique: list[Clip] = []
    for clip in clips:
        if clip.clip_id in seen:
            ignored.append({"path": str(clip.path), "reason": f"duplicate of {seen[clip.clip_id]}"})
        else:
            seen[clip.clip_id] = clip.path
            unique.append(clip)
    if not unique:
        raise DatasetError(f"GTZAN root {root} ({layout} layout) contains no '<genre>.NNNNN.wav|au' clips.")
    return Discovery(root=root, layout=layout, clips=unique, ignored=ignored)
