"""A toy model that exists only for tests/test_registry.py: adding a model = this module + one register()."""

from sklearn.neighbors import NearestCentroid
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler


def build_nearest_centroid(name, *, params=None, train=None, seed=0, nthread=1, device="cpu"):
    return Pipeline([("scale", StandardScaler()), ("model", NearestCentroid(**(params or {})))])
