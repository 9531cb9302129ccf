"""Kaggle-compatible clip features and the study's mel-spectrogram images.

``extract_features`` reproduces the recipe behind GTZAN's ``features_30_sec.csv`` with librosa's
defaults (sr 22050, n_fft 2048, hop 512) over the whole clip: mean and population variance of
chroma_stft, rms, spectral centroid, bandwidth and rolloff, zero-crossing rate, the harmonic and
percussive *waveforms* of ``hpss`` (``harmony``, ``perceptr``), ``tempo`` from ``beat_track`` and
20 MFCCs. One STFT and one mel spectrogram are shared between the features that would each compute
the same ones from ``y``; the values are those of the per-feature ``y=`` calls (a test checks it).

``mel_image`` makes the study's 128x128x3 input: dB mel spectrogram, min-max scaled per image,
resized, then mapped to RGB through a matplotlib colormap (``viridis`` by default; the study does
not name one). Images are uint8; normalisation for a network happens at training time.

``extract_clip`` is the whole per-clip job (decode, augment a training clip, every requested
representation, one row per variant); the Ray Data workers and the benchmark's sequential loop
both call it, so they measure the same work.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa

from raygenre.config import PrepareConfig
from raygenre.data.audio import (
    ORIGINAL,
    AudioError,
    AudioLimits,
    augment,
    describe,
    fit_length,
    load_bytes,
    resample,
    to_int16,
)
from raygenre.data.gtzan import clip_id_from_filename, genre_of
from raygenre.data.kaggle_csv import KAGGLE_FEATURE_COLUMNS

FEATURE_COLUMNS: tuple[str, ...] = ("length", *KAGGLE_FEATURE_COLUMNS)
META_COLUMNS = ("clip_id", "label", "parent_id", "transform")
AUGMENTED_REPRESENTATIONS = ("mel", "waveform")  # features stay one row per clip, like the Kaggle CSV


def _mean_var(name: str, values: np.ndarray) -> dict[str, float]:
    """Kaggle's summary: the mean and the population variance (ddof=0) over every value."""
    return {f"{name}_mean": float(np.mean(values)), f"{name}_var": float(np.var(values))}


HPSS_KERNEL = 31  # librosa.decompose.hpss's default kernel_size, for both filters


def _moving_median(values: np.ndarray, width: int, axis: int) -> np.ndarray:
    """``scipy.ndimage.median_filter`` along one axis with mode 'reflect' (numpy's 'symmetric' pad),
    as bottleneck's moving median: the same numbers, about ten times faster."""
    import bottleneck

    half = width // 2
    pad = [(0, 0)] * values.ndim
    pad[axis] = (half, half)
    medians = bottleneck.move_median(np.pad(values, pad, mode="symmetric"), width, axis=axis)
    keep = [slice(None)] * values.ndim
    keep[axis] = slice(width - 1, None)
    return medians[tuple(keep)]


def hpss(stft: np.ndarray, kernel: int = HPSS_KERNEL) -> tuple[np.ndarray, np.ndarray]:
    """``librosa.decompose.hpss(stft)`` with its defaults (power 2, margin 1), bit for bit.

    Its two median filters are ~85 % of a clip's feature time under ``scipy.ndimage``; here they are
    :func:`_moving_median`. Spectrograms shorter than the kernel go to librosa itself.
    """
    import librosa

    if min(stft.shape[-2:]) < kernel:
        return librosa.decompose.hpss(stft, kernel_size=kernel)
    magnitude, phase = librosa.magphase(stft)
    harmonic = _moving_median(magnitude, kernel, axis=-1)   # along time
    percussive = _moving_median(magnitude, kernel, axis=-2)  # along frequency
    mask_harmonic = librosa.util.softmask(harmonic, percussive, power=2.0, split_zeros=True)
    mask_percussive = librosa.util.softmask(percussive, harmonic, power=2.0, split_zeros=True)
    return (magnitude * mask_harmonic) * phase, (magnitude * mask_percussive) * phase


def extract_features(y: np.ndarray, sr: int = 22050) -> dict[str, float]:
    """``length`` plus the 57 Kaggle features of the whole clip, in Kaggle column order."""
    import librosa

    y = np.asarray(y, dtype=np.float32)
    stft = librosa.stft(y)                      # n_fft 2048, hop 512: librosa's defaults
    magnitude = np.abs(stft)
    power = magnitude ** 2
    mel_db = librosa.power_to_db(librosa.feature.melspectrogram(S=power, sr=sr))
    harmonic_stft, percussive_stft = hpss(stft)
    harmonic = librosa.istft(harmonic_stft, dtype=y.dtype, length=len(y))
    percussive = librosa.istft(percussive_stft, dtype=y.dtype, length=len(y))
    onset_env = librosa.onset.onset_strength(S=mel_db, sr=sr, aggregate=np.median)
    tempo, _ = librosa.beat.beat_track(onset_envelope=onset_env, sr=sr)
    mfcc = librosa.feature.mfcc(S=mel_db, sr=sr, n_mfcc=20)

    out: dict[str, float] = {"length": float(len(y))}
    out |= _mean_var("chroma_stft", librosa.feature.chroma_stft(S=power, sr=sr))
    out |= _mean_var("rms", librosa.feature.rms(y=y))
    out |= _mean_var("spectral_centroid", librosa.feature.spectral_centroid(S=magnitude, sr=sr))
    out |= _mean_var("spectral_bandwidth", librosa.feature.spectral_bandwidth(S=magnitude, sr=sr))
    out |= _mean_var("rolloff", librosa.feature.spectral_rolloff(S=magnitude, sr=sr))
    out |= _mean_var("zero_crossing_rate", librosa.feature.zero_crossing_rate(y))
    out |= _mean_var("harmony", harmonic)
    out |= _mean_var("perceptr", percussive)
    out["tempo"] = float(np.atleast_1d(tempo)[0])
    for k in range(mfcc.shape[0]):
        out |= _mean_var(f"mfcc{k + 1}", mfcc[k])
    return {name: out[name] for name in FEATURE_COLUMNS}


@lru_cache(maxsize=8)
def colormap_lut(name: str) -> np.ndarray:
    """256 x 3 uint8 lookup table of a matplotlib colormap; a bad name fails in one sentence."""
    import matplotlib

    try:
        cmap = matplotlib.colormaps[name]
    except KeyError:
        raise ValueError(f"unknown colormap '{name}' (prepare.mel.colormap): use a matplotlib "
                         f"colormap name such as 'viridis' or 'magma'.") from None
    return np.round(cmap(np.linspace(0.0, 1.0, 256))[:, :3] * 255.0).astype(np.uint8)


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """Bilinear (area-aware when shrinking) resize of a float image to ``size`` x ``size`` with PIL."""
    from PIL import Image

    pil = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32))  # mode F
    return np.asarray(pil.resize((size, size), resample=Image.Resampling.BILINEAR), dtype=np.float32)


def mel_image(y: np.ndarray, sr: int, n_mels: int = 128, n_fft: int = 2048, hop_length: int = 512,
              size: int = 128, colormap: str = "viridis") -> np.ndarray:
    """``size`` x ``size`` x 3 uint8 image; row 0 is the highest mel band (as a plot shows it)."""
    import librosa

    mel = librosa.feature.melspectrogram(y=np.asarray(y, dtype=np.float32), sr=sr, n_fft=n_fft,
                                         hop_length=hop_length, n_mels=n_mels)
    db = librosa.power_to_db(mel, ref=np.max)
    lo, hi = float(db.min()), float(db.max())
    scaled = (db - lo) / (hi - lo) if hi > lo else np.zeros_like(db)
    small = np.clip(resize(scaled[::-1], size), 0.0, 1.0)
    return colormap_lut(colormap)[np.round(small * 255.0).astype(np.intp)]


def mel_from_bytes(data: bytes, size: int = 128) -> np.ndarray:
    """The stored ``mel`` column value back to ``size`` x ``size`` x 3 uint8."""
    return np.frombuffer(data, dtype=np.uint8).reshape(size, size, 3)


WARM_UP_LOCK = "raygenre-numba-warm-up.lock"


def warm_up(sr: int = 22050) -> float:
    """Run every librosa path once on 2 s of noise so numba compiles now, not on the first clip.

    Compiling happens under an exclusive lock file in this machine's temp folder: librosa asks numba
    to cache compiled code beside its sources, and two processes writing that cache at once (two
    fresh actors on a fresh install) left entries that crashed every later process with a
    segmentation fault. Under the lock the first process compiles and writes the cache; the others
    wait, then load it. Returns the seconds it took: the per-process cost an actor pool pays once
    per worker.
    """
    import fcntl
    import tempfile
    import time

    from raygenre.data.audio import resample, time_stretch

    start = time.perf_counter()
    y = (np.random.default_rng(0).standard_normal(2 * sr) * 0.1).astype(np.float32)
    with open(os.path.join(tempfile.gettempdir(), WARM_UP_LOCK), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            extract_features(y, sr)
            mel_image(y, sr)
            time_stretch(y, 1.1)
            resample(y, sr, 16000)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return time.perf_counter() - start


# --- the per-clip function, shared by the Ray Data workers and the sequential benchmark ------

def waveform_samples(cfg: PrepareConfig) -> int:
    return int(round(cfg.clip_seconds * cfg.waveform_rate))


def staging_schema(representations: Sequence[str], cfg: PrepareConfig) -> pa.Schema:
    """Columns of a clip's rows: metadata, then the payload of each requested representation."""
    fields = [pa.field(name, pa.string()) for name in (*META_COLUMNS, "path", "error")]
    if "features" in representations:
        fields += [pa.field(name, pa.float64()) for name in FEATURE_COLUMNS]
    if "mel" in representations:
        size = cfg.mel.size
        fields.append(pa.field("mel", pa.binary(), metadata={
            "shape": f"{size},{size},3", "dtype": "uint8", "colormap": cfg.mel.colormap}))
    if "waveform" in representations:
        fields.append(pa.field("waveform", pa.binary(), metadata={
            "shape": str(waveform_samples(cfg)), "dtype": "int16", "sample_rate": str(cfg.waveform_rate)}))
    return pa.schema(fields)


def audio_limits(cfg: PrepareConfig) -> AudioLimits:
    """The header checks prepare applies to every file before decoding it."""
    return AudioLimits(max_file_mb=cfg.max_file_mb, max_seconds=cfg.max_seconds, min_seconds=cfg.min_seconds)


def _reason(exc: Exception) -> str:
    if isinstance(exc, AudioError):
        return exc.reason
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def probe_file(data: bytes, path: str, cfg: PrepareConfig) -> dict[str, Any]:
    """Decode only (the part ``extract_clip`` uses): is this file a usable clip, and what is it?"""
    row: dict[str, Any] = {"path": path, "error": None, "native_rate": None, "channels": None, "seconds": None}
    try:
        row.update(describe(data, path, audio_limits(cfg), cfg.clip_seconds))
    except Exception as exc:  # whatever libsndfile or numpy raise, it is this file's fault
        row["error"] = _reason(exc)
    return row


def extract_clip(data: bytes, path: str, cfg: PrepareConfig, representations: Sequence[str],
                 augmented: bool = False) -> list[dict[str, Any]]:
    """Rows for one audio file: the original and, with ``augmented``, its augmented variants.

    Shards do not know the split (it is drawn when they are read), so augmented variants are made
    for every clip; readers use them for training clips only.

    Features use the whole clip (as the Kaggle CSV does) and only the original; mel and waveform
    are cropped or padded to ``clip_seconds``. A file of twice ``clip_seconds`` or more is cropped to
    its first ``clip_seconds`` before decoding (``crop_frames``: the first window predict reads).
    Any failure gives a single row with ``error`` set, so one bad file never stops a batch.
    """
    clip_id = clip_id_from_filename(path)
    base = {"clip_id": clip_id, "label": genre_of(clip_id), "parent_id": None,
            "transform": ORIGINAL, "path": path, "error": None}
    try:
        sr = cfg.sample_rate
        y, _ = load_bytes(data, sr, path, audio_limits(cfg), cfg.clip_seconds)
        variants = [(ORIGINAL, y)]
        if augmented and any(r in AUGMENTED_REPRESENTATIONS for r in representations):
            variants += augment(y, sr, cfg.augment.stretch_factors, cfg.augment.shift_seconds)
        rows = []
        for transform, signal in variants:
            row = dict(base)
            if transform != ORIGINAL:
                row.update(clip_id=f"{clip_id}+{transform}", parent_id=clip_id, transform=transform)
            if "features" in representations and transform == ORIGINAL:
                row.update(extract_features(signal, sr))
            if "mel" in representations:
                m = cfg.mel
                row["mel"] = mel_image(fit_length(signal, int(round(cfg.clip_seconds * sr))), sr, m.n_mels,
                                       m.n_fft, m.hop_length, m.size, m.colormap).tobytes()
            if "waveform" in representations:
                wave = fit_length(resample(signal, sr, cfg.waveform_rate), waveform_samples(cfg))
                row["waveform"] = to_int16(wave).tobytes()
            rows.append(row)
        return rows
    except Exception as exc:  # recorded in the manifest by the caller
        return [dict(base, error=_reason(exc))]
