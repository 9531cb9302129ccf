"""Decoding and waveform transforms: bytes in, mono float32 out; time-stretch, shift, crop/pad.

Everything here is a pure function of its arguments so that the Ray Data workers and the
sequential benchmark baseline run exactly the same code. Decoding goes through soundfile
(libsndfile: WAV, AU, FLAC, ...) from bytes, so that Ray Data can read files as bytes and a
corrupt file becomes one ``AudioError`` with a reason instead of a failed job.
"""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf

from raygenre.errors import RaygenreError

ORIGINAL = "original"


class AudioError(RaygenreError, ValueError):
    """A file that cannot be used as a clip: empty, truncated, not audio, too short.

    ``reason`` is the message without the file name, for manifests that list the path beside it.
    """

    def __init__(self, name: str, reason: str):
        super().__init__(f"{name}: {reason}")
        self.name, self.reason = name, reason

    def __reduce__(self):  # picklable across Ray workers despite the two-argument constructor
        return type(self), (self.name, self.reason)


def _read(data: bytes, name: str) -> tuple[np.ndarray, int]:
    """(frames, channels) float32 and the rate, or an AudioError that says what is wrong."""
    if not data:
        raise AudioError(name, "file is empty (0 bytes).")
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile raises LibsndfileError, RuntimeError or TypeError
        raise AudioError(name, f"not readable audio ({_first_line(exc)}).") from None
    if samples.shape[0] == 0:
        raise AudioError(name, "file holds no samples (truncated or empty data chunk).")
    if not np.all(np.isfinite(samples)):
        raise AudioError(name, "decoded samples contain NaN or infinity.")
    return samples, int(rate)


def decode(data: bytes, name: str = "<bytes>") -> tuple[np.ndarray, int]:
    """Mono float32 samples at the file's own rate; channels are averaged (as librosa.load does)."""
    samples, rate = _read(data, name)
    mono = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    return np.ascontiguousarray(mono, dtype=np.float32), rate


def describe(data: bytes, name: str = "<bytes>") -> dict:
    """What a file is (rate, channels, seconds) after a full decode, so truncation shows up too."""
    samples, rate = _read(data, name)
    return {"native_rate": rate, "channels": int(samples.shape[1]), "seconds": samples.shape[0] / rate}


def _first_line(exc: BaseException) -> str:
    """libsndfile's message without its 'Error opening <_io.BytesIO object at 0x...>: ' prefix."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    if text.startswith("Error opening <") and ">: " in text:
        text = text.split(">: ", 1)[1]
    return text.rstrip(".")


def resample(y: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """librosa's default resampler (soxr_hq), the same one ``librosa.load`` uses."""
    if orig_sr == target_sr:
        return y
    import librosa

    return librosa.resample(y, orig_sr=orig_sr, target_sr=target_sr).astype(np.float32, copy=False)


def load_bytes(data: bytes, sr: int, name: str = "<bytes>") -> tuple[np.ndarray, dict]:
    """Decode and resample to ``sr``; the info dict keeps what the file was (for the manifest)."""
    y, native = decode(data, name)
    info = {"native_rate": native, "native_samples": int(y.shape[0]),
            "seconds": y.shape[0] / native}
    return resample(y, native, sr), info


def fit_length(y: np.ndarray, n: int) -> np.ndarray:
    """Crop to the first ``n`` samples, or pad with trailing silence."""
    if y.shape[0] >= n:
        return y[:n]
    return np.pad(y, (0, n - y.shape[0]))


def time_stretch(y: np.ndarray, rate: float) -> np.ndarray:
    """Phase-vocoder stretch (librosa.effects.time_stretch): rate < 1 is slower and longer."""
    import librosa

    return librosa.effects.time_stretch(y, rate=rate).astype(np.float32, copy=False)


def time_shift(y: np.ndarray, seconds: float, sr: int) -> np.ndarray:
    """Circular shift by ``seconds`` (later in time); nothing is lost, the tail wraps to the start."""
    return np.roll(y, int(round(seconds * sr)))


def transform_names(stretch_factors: tuple[float, ...], shift_seconds: float) -> list[str]:
    """The names carried by augmented rows, e.g. ``stretch_0.81`` and ``shift_5s``."""
    names = [f"stretch_{f:g}" for f in stretch_factors]
    if shift_seconds:
        names.append(f"shift_{shift_seconds:g}s")
    return names


def augment(y: np.ndarray, sr: int, stretch_factors: tuple[float, ...],
            shift_seconds: float) -> list[tuple[str, np.ndarray]]:
    """The augmented variants of one clip (the original is not included), named as in ``transform_names``."""
    variants = [time_stretch(y, f) for f in stretch_factors]
    if shift_seconds:
        variants.append(time_shift(y, shift_seconds, sr))
    return list(zip(transform_names(stretch_factors, shift_seconds), variants))


def to_int16(y: np.ndarray) -> np.ndarray:
    """PCM16 for compact storage; stretched audio can overshoot +-1 slightly, so clip first."""
    return np.round(np.clip(y, -1.0, 1.0) * 32767.0).astype(np.int16)


def from_int16(data: bytes | np.ndarray) -> np.ndarray:
    """Inverse of ``to_int16`` (float32 in [-1, 1])."""
    pcm = np.frombuffer(data, dtype=np.int16) if isinstance(data, (bytes, bytearray, memoryview)) else data
    return pcm.astype(np.float32) / 32767.0
