"""Feature tables and Kaggle-format CSVs with a learnable genre signal, for sweep tests."""

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import make_classification

from raygenre.data.gtzan import GENRES
from raygenre.data.kaggle_csv import KAGGLE_FEATURE_COLUMNS, write_features_csv


def make_feature_table(clips_per_genre: int = 20, seed: int = 0, class_sep: float = 1.5) -> pd.DataFrame:
    """The shape read_features_csv returns: clip id index, label, length, the 57 features."""
    n = clips_per_genre * len(GENRES)
    X, y = make_classification(n_samples=2 * n, n_features=58, n_informative=12, n_redundant=4,
                               n_classes=10, n_clusters_per_class=1, class_sep=class_sep,
                               weights=None, random_state=seed, shuffle=False)
    rows = np.concatenate([np.where(y == k)[0][:clips_per_genre] for k in range(len(GENRES))])
    y = y[rows]
    ids = [f"{GENRES[k]}.{i % clips_per_genre:05d}" for i, k in enumerate(y)]
    table = pd.DataFrame(X[rows, 1:], columns=list(KAGGLE_FEATURE_COLUMNS), index=pd.Index(ids, name="clip_id"))
    table.insert(0, "length", np.round(661_794 + np.abs(X[rows, 0]) * 50))
    table.insert(0, "label", [GENRES[k] for k in y])
    return table


def make_features_csv(path: Path, clips_per_genre: int = 20, seed: int = 0) -> Path:
    return write_features_csv(make_feature_table(clips_per_genre, seed), path)
