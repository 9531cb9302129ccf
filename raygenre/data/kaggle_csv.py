"""The Kaggle ``features_30_sec.csv``: exact schema, validation and named feature sets.

Columns (60): ``filename, length``, mean and population variance of eight frame features,
``tempo``, mean and variance of 20 MFCCs, ``label``. The 57 audio columns are the content
features; ``length`` is a sample count that varies with the source file and partly predicts
the genre, so it is a leak: ``kaggle58`` (the study's 58 inputs) keeps it, ``content57`` drops it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from raygenre.data.gtzan import GENRE_INDEX, DatasetError, clip_id_from_filename

FRAME_FEATURES = ("chroma_stft", "rms", "spectral_centroid", "spectral_bandwidth", "rolloff",
                  "zero_crossing_rate", "harmony", "perceptr")
KAGGLE_FEATURE_COLUMNS: tuple[str, ...] = (
    *(f"{name}_{stat}" for name in FRAME_FEATURES for stat in ("mean", "var")),
    "tempo",
    *(f"mfcc{k}_{stat}" for k in range(1, 21) for stat in ("mean", "var")),
)
KAGGLE_COLUMNS: tuple[str, ...] = ("filename", "length", *KAGGLE_FEATURE_COLUMNS, "label")
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "content57": KAGGLE_FEATURE_COLUMNS,
    "kaggle58": ("length", *KAGGLE_FEATURE_COLUMNS),
}
assert len(KAGGLE_FEATURE_COLUMNS) == 57 and len(KAGGLE_COLUMNS) == 60


def feature_columns(feature_set: str) -> tuple[str, ...]:
    try:
        return FEATURE_SETS[feature_set]
    except KeyError:
        raise DatasetError(f"unknown feature set '{feature_set}': choose one of "
                           f"{', '.join(FEATURE_SETS)}.") from None


def _check_header(columns: list[str], path: Path) -> None:
    if len(columns) != len(set(columns)):
        dup = next(c for c in columns if columns.count(c) > 1)
        raise DatasetError(f"{path}: column '{dup}' appears more than once.")
    for position, expected in enumerate(KAGGLE_COLUMNS):
        if position >= len(columns):
            raise DatasetError(f"{path}: missing column '{expected}' (expected at position {position + 1}).")
        found = columns[position]
        if found != expected:
            if expected not in columns:
                what = f"missing column '{expected}'"
            else:
                what = f"column '{expected}' is out of order"
            raise DatasetError(f"{path}: {what}; position {position + 1} holds '{found}'.")
    if len(columns) > len(KAGGLE_COLUMNS):
        raise DatasetError(f"{path}: unexpected extra column '{columns[len(KAGGLE_COLUMNS)]}'.")


def read_features_csv(path: str | Path) -> pd.DataFrame:
    """Validated table keyed by clip id: ``label``, ``length`` and the 57 features, in Kaggle order.

    The error names the first bad column or row (row numbers count the header as row 1).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetError(f"features CSV {path} does not exist.")
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    _check_header(list(raw.columns), path)
    if raw.empty:
        raise DatasetError(f"{path} has a header but no rows.")
    ids = []
    for row, (name, label) in enumerate(zip(raw["filename"], raw["label"]), start=2):
        try:
            clip_id = clip_id_from_filename(name)
        except DatasetError:
            raise DatasetError(f"{path}: row {row}: filename '{name}' is not '<genre>.NNNNN.wav' or '.au'.") from None
        if label not in GENRE_INDEX:
            raise DatasetError(f"{path}: row {row}: label '{label}' is not a GTZAN genre.")
        if not clip_id.startswith(label + "."):
            raise DatasetError(f"{path}: row {row}: label '{label}' disagrees with filename '{name}'.")
        ids.append(clip_id)
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise DatasetError(f"{path}: clip '{dup}' appears in more than one row.")
    numeric = ("length", *KAGGLE_FEATURE_COLUMNS)
    values = {}
    for column in numeric:
        converted = pd.to_numeric(raw[column], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(converted)
        if bad.any():
            row = int(np.argmax(bad))
            raise DatasetError(f"{path}: column '{column}', row {row + 2}: value '{raw[column].iloc[row]}' "
                               f"is not a finite number.")
        values[column] = converted
    table = pd.DataFrame(values, index=pd.Index(ids, name="clip_id"))
    table.insert(0, "label", raw["label"].to_numpy())
    return table


def write_features_csv(table: pd.DataFrame, path: str | Path, extension: str = ".wav") -> Path:
    """Write a table of the ``read_features_csv`` shape back out in the Kaggle format."""
    path = Path(path)
    out = pd.DataFrame({"filename": [f"{i}{extension}" for i in table.index],
                        "length": table["length"].astype(np.int64).to_numpy()})
    for column in KAGGLE_FEATURE_COLUMNS:
        out[column] = table[column].to_numpy()
    out["label"] = table["label"].to_numpy()
    out.to_csv(path, index=False)
    return path
