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
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from raygenre.data.kaggle_csv import KAGGLE_FEATURE_COLUMNS

FEATURE_COLUMNS: tuple[str, ...] = ("length", *KAGGLE_FEATURE_COLUMNS)


def _mean_var(name: str, values: np.ndarray) -> dict[str, float]:
    """Kaggle's summary: the mean and the population variance (ddof=0) over every value."""
    return {f"{name}_mean": float(np.mean(values)), f"{name}_var": float(np.var(values))}


def extract_features(y: np.ndarray, sr: int = 22050) -> dict[str, float]:
    """``length`` plus the 57 Kaggle features of the whole clip, in Kaggle column order."""
    import librosa

    y = np.asarray(y, dtype=np.float32)
    stft = librosa.stft(y)                      # n_fft 2048, hop 512: librosa's defaults
    magnitude = np.abs(stft)
    power = magnitude ** 2
    mel_db = librosa.power_to_db(librosa.feature.melspectrogram(S=power, sr=sr))
    harmonic_stft, percussive_stft = librosa.decompose.hpss(stft)
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


def warm_up(sr: int = 22050) -> float:
    """Run every librosa path once on 2 s of noise so numba compiles now, not on the first clip.

    Returns the seconds it took: the per-process cost that an actor pool pays once per worker.
    """
    import time

    from raygenre.data.audio import resample, time_stretch

    start = time.perf_counter()
    y = (np.random.default_rng(0).standard_normal(2 * sr) * 0.1).astype(np.float32)
    extract_features(y, sr)
    mel_image(y, sr)
    time_stretch(y, 1.1)
    resample(y, sr, 16000)
    return time.perf_counter() - start
