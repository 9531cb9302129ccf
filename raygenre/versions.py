"""Installed versions of the packages whose behaviour results depend on, for manifests and records."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from importlib import metadata

RESULT_PACKAGES = ("raygenre", "ray", "numpy", "scipy", "pandas", "pyarrow", "scikit-learn", "xgboost", "torch",
                   "librosa", "soundfile", "soxr", "numba")


def package_versions(names: Iterable[str] = RESULT_PACKAGES) -> dict[str, str]:
    """``{"python": "3.11.7", "ray": "2.60.0", ...}``; a package that is not installed reads "absent"."""
    out = {"python": ".".join(map(str, sys.version_info[:3]))}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out
