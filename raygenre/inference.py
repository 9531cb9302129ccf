"""Genre probabilities of audio files from a kept model, with the code prepare uses (no Ray here).

A file is decoded and resampled exactly as prepare does (``raygenre.data.audio.load_bytes``) and its
features come from the same ``extract_features``. A file longer than the model's clip length is cut
into ``k = len // clip`` windows (the last one keeps the remainder, so a file of up to twice the clip
length is one window: the whole file, as prepare would see it); the file's probabilities are the mean
over its windows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from raygenre.data.audio import AudioError, load_bytes
from raygenre.errors import ArtifactError
from raygenre.genres import GENRES
from raygenre.models.artifacts import KeptModel, load_kept_model


def clip_windows(y: np.ndarray, clip_samples: int) -> list[np.ndarray]:
    """``max(1, len // clip_samples)`` consecutive windows; the last absorbs the remainder."""
    k = max(1, len(y) // max(1, clip_samples))
    return [y[i * clip_samples:(i + 1) * clip_samples if i < k - 1 else len(y)] for i in range(k)]


class Predictor:
    """A kept model plus the audio settings it was trained with; one instance per process or actor."""

    def __init__(self, folder: str | Path):
        self.model: KeptModel = load_kept_model(folder)
        audio = self.model.meta.get("audio") or {}
        self.sample_rate = int(audio.get("sample_rate", 22050))
        self.clip_seconds = float(audio.get("clip_seconds", 30.0))
        self.min_seconds = float(audio.get("min_seconds", 0.0))
        if self.model.meta.get("representation") != "features":
            raise ArtifactError(f"{folder} is a {self.model.meta.get('representation')} model; only feature models "
                                f"can predict audio so far.")

    def features(self, data: bytes, name: str) -> np.ndarray:
        """(windows, columns) feature matrix of one file, in the model's column order."""
        from raygenre.data.features import extract_features

        y, info = load_bytes(data, self.sample_rate, name)
        if info["seconds"] < self.min_seconds:
            raise AudioError(name, f"{info['seconds']:.2f} s is shorter than the {self.min_seconds:g} s minimum.")
        rows = [extract_features(w, self.sample_rate)
                for w in clip_windows(y, int(round(self.clip_seconds * self.sample_rate)))]
        return np.array([[row[c] for c in self.model.feature_columns] for row in rows], dtype=np.float64)

    def predict(self, data: bytes, name: str) -> dict:
        """``{"path", "windows", "probabilities": {genre: p}, "error"}``; a bad file gives its error, not a raise."""
        try:
            X = self.features(data, name)
            probs = self.model.predict_proba(X).mean(axis=0)
            return {"path": name, "windows": int(X.shape[0]), "error": None,
                    "probabilities": {g: float(p) for g, p in zip(GENRES, probs)}}
        except Exception as exc:  # whatever the decoder raises, it is this file's fault
            reason = exc.reason if isinstance(exc, AudioError) else f"{type(exc).__name__}: {exc}"
            return {"path": name, "windows": 0, "error": " ".join(str(reason).split()), "probabilities": None}


class PredictWorker:
    """Ray Data actor: loads the kept model once, then predicts each file of a batch."""

    def __init__(self, folder: str):
        self.predictor = Predictor(folder)

    def __call__(self, batch: dict) -> dict:
        import json

        out = [self.predictor.predict(data, str(path)) for data, path in zip(batch["bytes"], batch["path"])]
        return {"path": [o["path"] for o in out], "windows": [o["windows"] for o in out],
                "error": [o["error"] or "" for o in out],
                "probabilities": [json.dumps(o["probabilities"]) if o["probabilities"] else "" for o in out]}
