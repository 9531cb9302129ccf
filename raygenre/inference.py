"""Genre probabilities of audio files from a kept model, with the code prepare uses (no Ray here).

A file is decoded and resampled as prepare does (``raygenre.data.audio``) and its features come from
the same ``extract_features``. A file longer than the model's clip length is cut into
``k = frames // clip`` windows (the last one keeps the remainder, so a file of up to twice the clip
length is one window: the whole file, as prepare would see it); the file's probabilities are the mean
over its windows. Windows are read one after the other from the open file and resampled one at a
time, so memory follows one window, not the file; the header is checked against ``AudioLimits``
before anything is decoded.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from raygenre.data.audio import (
    DEFAULT_LIMITS,
    MAX_FILE_MB,
    MAX_SECONDS,
    AudioError,
    AudioLimits,
    Source,
    open_audio,
    read_mono,
    resample,
    shown,
)
from raygenre.errors import ArtifactError
from raygenre.genres import GENRES
from raygenre.models.artifacts import KeptModel, load_kept_model
from raygenre.models.kept_networks import KeptNetwork


def clip_windows(y: np.ndarray, clip_samples: int) -> list[np.ndarray]:
    """``max(1, len // clip_samples)`` consecutive windows; the last absorbs the remainder."""
    k = max(1, len(y) // max(1, clip_samples))
    return [y[i * clip_samples:(i + 1) * clip_samples if i < k - 1 else len(y)] for i in range(k)]


def iter_windows(source: Source, name: str, sample_rate: int, clip_seconds: float,
                 limits: AudioLimits = DEFAULT_LIMITS) -> Iterator[np.ndarray]:
    """The ``clip_windows`` of a file, as mono float32 at ``sample_rate``, read and resampled one at a time.

    Windows are cut at the file's own rate. Each is resampled with one second of its neighbours on
    either side, then trimmed, so its samples are those of a whole-file resample (the resampler's
    filter is far shorter than the margin) while memory holds one window plus two seconds."""
    with open_audio(source, name, limits) as audio:
        rate, frames = int(audio.samplerate), int(audio.frames)
        clip = max(1, int(round(clip_seconds * rate)))
        k = max(1, frames // clip)
        for i in range(k):
            start, end = i * clip, (i + 1) * clip if i < k - 1 else frames
            if rate == sample_rate:
                yield read_mono(audio, end - start, name)
                continue
            lo, hi = max(0, start - rate), min(frames, end + rate)  # one second of context on each side
            audio.seek(lo)
            y = resample(read_mono(audio, hi - lo, name), rate, sample_rate)
            first = int(round((start - lo) * sample_rate / rate))
            yield y[first:] if end == frames else y[first:first + int(round((end - start) * sample_rate / rate))]


def error_result(name: str, exc: BaseException) -> dict:
    """The result of a file that could not be predicted: its reason, on one line."""
    reason = exc.reason if isinstance(exc, AudioError) else f"{type(exc).__name__}: {exc}"
    return {"path": name, "windows": 0, "error": " ".join(str(reason).split()), "probabilities": None}


class Predictor:
    """A kept model plus the audio settings it was trained with; one instance per process or actor."""

    def __init__(self, folder: str | Path):
        self.model: KeptModel | KeptNetwork = load_kept_model(folder)
        audio = self.model.meta.get("audio") or {}
        self.sample_rate = int(audio.get("sample_rate", 22050))
        self.clip_seconds = float(audio.get("clip_seconds", 30.0))
        self.min_seconds = float(audio.get("min_seconds", 0.0))
        self.representation = self.model.meta.get("representation")
        if self.representation not in ("features", "mel", "waveform"):
            raise ArtifactError(f"{folder} reads a {self.representation!r} representation, which predict does not "
                                f"know.")

    def limits(self, max_file_mb: float | None = None, max_seconds: float | None = None) -> AudioLimits:
        """The header checks: the given values, else the kept model's audio settings, else the defaults."""
        audio = self.model.meta.get("audio") or {}
        return AudioLimits(max_file_mb=float(max_file_mb or audio.get("max_file_mb") or MAX_FILE_MB),
                           max_seconds=float(max_seconds or audio.get("max_seconds") or MAX_SECONDS),
                           min_seconds=self.min_seconds)

    def window_probabilities(self, window: np.ndarray) -> np.ndarray:
        """Genre probabilities (10,) of one window at the model's rate."""
        if self.representation != "features":  # a kept network turns the window into its input itself
            return self.model.window_probabilities(window, self.sample_rate)
        from raygenre.data.features import extract_features

        row = extract_features(window, self.sample_rate)
        X = np.array([[row[c] for c in self.model.feature_columns]], dtype=np.float64)
        return self.model.predict_proba(X)[0]

    def predict(self, source: Source, name: str, limits: AudioLimits | None = None) -> dict:
        """``{"path", "windows", "probabilities": {genre: p}, "error"}``; a bad file gives its error, not a raise.

        ``source`` is the file's bytes or its path; ``name`` is how results and errors show it."""
        try:
            windows = iter_windows(source, name, self.sample_rate, self.clip_seconds, limits or self.limits())
            probs = np.array([self.window_probabilities(w) for w in windows])
            return {"path": name, "windows": int(probs.shape[0]), "error": None,
                    "probabilities": {g: float(p) for g, p in zip(GENRES, probs.mean(axis=0))}}
        except Exception as exc:  # whatever the decoder raises, it is this file's fault
            return error_result(name, exc)


class PredictWorker:
    """Ray Data actor: loads the kept model once, then reads and predicts each file of a batch.

    Rows carry paths as bytes (``os.fsencode``: any file name, UTF-8 or not) and the actor opens each
    file itself, so a file that cannot be read is that file's error, not a failed read task."""

    def __init__(self, folder: str, limits: AudioLimits | None = None):
        self.predictor = Predictor(folder)
        self.limits = limits or self.predictor.limits()

    def __call__(self, batch: dict) -> dict:
        import json

        out = [self.predictor.predict(os.fsdecode(bytes(path)), shown(bytes(path)), self.limits)
               for path in batch["path"]]
        return {"index": list(batch["index"]), "path": [o["path"] for o in out],
                "windows": [o["windows"] for o in out],
                "error": [o["error"] or "" for o in out],
                "probabilities": [json.dumps(o["probabilities"]) if o["probabilities"] else "" for o in out]}
