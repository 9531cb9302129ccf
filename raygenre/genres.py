"""The ten GTZAN genres in GTZAN's order: label index k is ``GENRES[k]`` everywhere (records, models, report)."""

from __future__ import annotations

GENRES: tuple[str, ...] = (
    "blues", "classical", "country", "disco", "hiphop",
    "jazz", "metal", "pop", "reggae", "rock",
)
GENRE_INDEX: dict[str, int] = {g: i for i, g in enumerate(GENRES)}
N_CLASSES = len(GENRES)
