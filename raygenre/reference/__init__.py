"""The study's published numbers, shipped as package data (``study.json``) so every report prints them."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources


@lru_cache(maxsize=1)
def load_study() -> dict:
    """The study's tables, Appendix A, experiment 4 and the mapping of its rows to our records."""
    return json.loads(resources.files(__name__).joinpath("study.json").read_text())
