"""The shard set on disk: folder names, the manifest, and readers (pyarrow only, no Ray).

``RUN_DIR/shards/<hash>/`` holds one folder per representation with every usable clip's original
row (``features/``, ``mel/``, ``waveform/``) and, when augmentation was asked for, one folder with
the augmented rows of every clip (``mel_augmented/``, ``waveform_augmented/``: ``parent_id`` names
the clip). Shards know nothing of splits: a trial draws its split from the clip ids and uses
augmented rows only for its training clips.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from raygenre.data.audio import ORIGINAL
from raygenre.data.features import AUGMENTED_REPRESENTATIONS, FEATURE_COLUMNS, META_COLUMNS
from raygenre.errors import PrepareError
from raygenre.storage import RunPath

REPRESENTATIONS = ("features", "mel", "waveform")
AUGMENTED_SUFFIX = "_augmented"
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 2


def shard_folders(representations: Sequence[str], augmented: bool = False) -> list[str]:
    """Folder names for ``representations``: each one, plus ``<rep>_augmented`` where augmentation applies."""
    out = list(dict.fromkeys(representations))
    if augmented:
        out += [f"{r}{AUGMENTED_SUFFIX}" for r in out if r in AUGMENTED_REPRESENTATIONS]
    return out


def base_representation(folder: str) -> str:
    return folder.removesuffix(AUGMENTED_SUFFIX)


def payload_columns(representation: str) -> list[str]:
    """Columns stored for a representation (or its augmented folder)."""
    rep = base_representation(representation)
    payload = list(FEATURE_COLUMNS) if rep == "features" else [rep]
    return [*META_COLUMNS, *payload]


def read_manifest(shard_dir: Path | str | RunPath) -> dict:
    """The shard set's ``manifest.json``; a missing one is an error that names the folder."""
    path = RunPath.of(shard_dir) / MANIFEST
    if not path.is_file():
        raise PrepareError(f"no prepared shards at {shard_dir}: run 'python -m raygenre.prepare' first.")
    return path.read_json()


def write_manifest(shard_dir: Path | str | RunPath, manifest: dict) -> None:
    """Atomic: a reader sees the old manifest or the new one, never half of one."""
    (RunPath.of(shard_dir) / MANIFEST).write_json(manifest)


def load_table(shard_dir: Path | str | RunPath, folder: str, columns: Sequence[str] | None = None,
               ids: Sequence[str] | None = None, id_column: str = "clip_id") -> pa.Table:
    """One shard folder's rows, read with a single ``pyarrow.parquet.read_table`` of the folder.

    ``ids`` keeps only rows whose ``id_column`` is in it (a pushed-down filter: other row groups are
    not decoded). The folder may be local or in object storage.
    """
    path = RunPath.of(shard_dir) / folder
    if not path.is_dir():
        raise PrepareError(f"no '{folder}' shards in {shard_dir}: prepare them with 'python -m raygenre.prepare'.")
    cols = list(columns) if columns else payload_columns(folder)
    files = path.files(".parquet")
    if not files:
        return pa.table({c: pa.array([], pa.string()) for c in cols})
    filters = [(id_column, "in", list(ids))] if ids is not None else None
    return pq.read_table([f.path for f in files], filesystem=path.fs, columns=cols, filters=filters)


def load_features(shard_dir: Path | str | RunPath) -> pd.DataFrame:
    """The ``read_features_csv`` frame from audio: index clip_id, ``label``, ``length``, the 57 features."""
    frame = load_table(shard_dir, "features").to_pandas()
    frame = frame[frame["transform"] == ORIGINAL].set_index("clip_id").sort_index()
    return frame[["label", *FEATURE_COLUMNS]]


def usable_clip_ids(shard_dir: Path | str | RunPath) -> list[str]:
    """Every clip the shard set holds (the population any split is drawn from)."""
    return list(read_manifest(shard_dir)["clips"])


def mel_array(table: pa.Table) -> np.ndarray:
    """The ``mel`` column as an (N, size, size, 3) uint8 array."""
    blobs = table.column("mel").to_pylist()
    size = int(round((len(blobs[0]) // 3) ** 0.5)) if blobs else 0
    return np.frombuffer(b"".join(blobs), dtype=np.uint8).reshape(len(blobs), size, size, 3)


def waveform_array(table: pa.Table) -> np.ndarray:
    """The ``waveform`` column as an (N, samples) int16 array (divide by 32767 for float)."""
    blobs = table.column("waveform").to_pylist()
    return np.frombuffer(b"".join(blobs), dtype=np.int16).reshape(len(blobs), -1)
