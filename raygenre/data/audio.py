"""Decoding and waveform transforms: audio in, mono float32 out; time-stretch, shift, crop/pad.

Everything here is a pure function of its arguments so that the Ray Data workers and the
sequential benchmark baseline run exactly the same code. Decoding goes through soundfile
(libsndfile: WAV, AU, FLAC, ...) from bytes or a path, so that a corrupt file becomes one
``AudioError`` with a reason instead of a failed job.

A file's header is checked against ``AudioLimits`` before any sample is decoded: a 200 KB WAV that
declares 1 Hz would otherwise decode as 100,000 s and resample to billions of samples. Samples are
read in blocks and down-mixed block by block, so memory follows the frames asked for, not the file.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from raygenre.errors import RaygenreError

ORIGINAL = "original"
MAX_FILE_MB = 200.0     # defaults of prepare.max_file_mb / predict --max-mb
MAX_SECONDS = 3600.0    # defaults of prepare.max_seconds / predict --max-seconds
BLOCK_VALUES = 1 << 20  # samples (frames x channels) decoded at a time: 4 MB of float32

Source = bytes | str | os.PathLike


class AudioError(RaygenreError, ValueError):
    """A file that cannot be used as a clip: empty, truncated, not audio, too short, over a limit.

    ``reason`` is the message without the file name, for manifests that list the path beside it.
    """

    def __init__(self, name: str, reason: str):
        super().__init__(f"{name}: {reason}")
        self.name, self.reason = name, reason

    def __reduce__(self):  # picklable across Ray workers despite the two-argument constructor
        return type(self), (self.name, self.reason)


@dataclass(frozen=True)
class AudioLimits:
    """What a file may be before it is decoded; the rate range is fixed, the rest are settings."""
    max_file_mb: float = MAX_FILE_MB
    max_seconds: float = MAX_SECONDS
    min_seconds: float = 0.0
    min_rate: int = 8000
    max_rate: int = 192000


DEFAULT_LIMITS = AudioLimits()


def shown(path: str | os.PathLike | bytes) -> str:
    """A path as printable text: bytes that are not UTF-8 become ``\\xNN`` escapes, never an error."""
    raw = path if isinstance(path, bytes) else os.fsencode(path)
    return raw.decode("utf-8", "backslashreplace")


def _open_path(path: str | os.PathLike, name: str) -> io.BufferedReader:
    """The file opened for reading, or why not (missing, a dangling link, no permission, not a file)."""
    if os.path.islink(path) and not os.path.exists(path):
        raise AudioError(name, "dangling link (its target does not exist).")
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # before opening: a FIFO would block the open
            raise AudioError(name, "not a regular file.")
        return open(path, "rb")  # noqa: SIM115 - closed by open_audio
    except OSError as exc:
        raise AudioError(name, f"cannot be opened ({exc.strerror or type(exc).__name__}).") from None


@contextmanager
def open_audio(source: Source, name: str, limits: AudioLimits = DEFAULT_LIMITS) -> Iterator[sf.SoundFile]:
    """An open ``SoundFile`` whose header passed ``limits``; nothing has been decoded yet."""
    handle = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else _open_path(source, name)
    try:
        size = handle.getbuffer().nbytes if isinstance(handle, io.BytesIO) else os.fstat(handle.fileno()).st_size
        if not size:
            raise AudioError(name, "file is empty (0 bytes).")
        if too_large(size, limits):
            raise AudioError(name, too_large(size, limits))
        try:
            audio = sf.SoundFile(handle)
        except Exception as exc:  # libsndfile raises LibsndfileError, RuntimeError or TypeError
            raise AudioError(name, f"not readable audio ({_first_line(exc)}).") from None
        with audio:
            _check_header(audio, name, limits)
            yield audio
    finally:
        handle.close()


def too_large(size: int, limits: AudioLimits) -> str | None:
    """The reason a file of ``size`` bytes is refused, or None."""
    if size > limits.max_file_mb * 2**20:
        return f"{size / 2**20:.1f} MB is above the {limits.max_file_mb:g} MB limit."
    return None


def _check_header(audio: sf.SoundFile, name: str, limits: AudioLimits) -> None:
    rate, frames = int(audio.samplerate), int(audio.frames)
    if not limits.min_rate <= rate <= limits.max_rate:
        raise AudioError(name, f"declares {rate} Hz, outside the {limits.min_rate}-{limits.max_rate} Hz "
                               f"that can be read.")
    if frames <= 0:
        raise AudioError(name, "file holds no samples (truncated or empty data chunk).")
    seconds = frames / rate
    if seconds > limits.max_seconds:
        raise AudioError(name, f"declares {seconds:.0f} s, above the {limits.max_seconds:g} s limit.")
    if seconds < limits.min_seconds:
        raise AudioError(name, f"{seconds:.2f} s is shorter than the {limits.min_seconds:g} s minimum.")


def read_mono(audio: sf.SoundFile, frames: int, name: str) -> np.ndarray:
    """The next ``frames`` frames (fewer at the end) as mono float32; channels are averaged as
    librosa.load does, one block at a time so a many-channel file never sits whole in memory."""
    step = max(1, BLOCK_VALUES // max(1, audio.channels))
    mono = np.empty(max(0, min(frames, audio.frames - audio.tell())), dtype=np.float32)
    done = 0
    try:
        while done < mono.shape[0]:
            block = audio.read(min(step, mono.shape[0] - done), dtype="float32", always_2d=True)
            if block.shape[0] == 0:
                break
            mono[done:done + block.shape[0]] = block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]
            done += block.shape[0]
    except Exception as exc:
        raise AudioError(name, f"not readable audio ({_first_line(exc)}).") from None
    mono = mono[:done]
    if mono.shape[0] == 0:
        raise AudioError(name, "file holds no samples (truncated or empty data chunk).")
    if not np.all(np.isfinite(mono)):
        raise AudioError(name, "decoded samples contain NaN or infinity.")
    return mono


def crop_frames(frames: int, rate: int, clip_seconds: float | None) -> int:
    """How much of a file prepare decodes: all of it below twice the clip length (prepare keeps the
    whole clip, as the Kaggle CSV does), else the first clip, the first window predict would see."""
    if clip_seconds is None:
        return frames
    clip = max(1, int(round(clip_seconds * rate)))
    return frames if frames < 2 * clip else clip


def decode(source: Source, name: str = "<bytes>", limits: AudioLimits = DEFAULT_LIMITS,
           clip_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """Mono float32 samples at the file's own rate (only ``crop_frames`` of them)."""
    return _decode(source, name, limits, clip_seconds)[:2]


def _decode(source: Source, name: str, limits: AudioLimits, clip_seconds: float | None):
    with open_audio(source, name, limits) as audio:
        rate, frames = int(audio.samplerate), int(audio.frames)
        y = read_mono(audio, crop_frames(frames, rate, clip_seconds), name)
        return y, rate, {"native_rate": rate, "channels": int(audio.channels), "native_samples": frames,
                         "seconds": frames / rate}


def describe(source: Source, name: str = "<bytes>", limits: AudioLimits = DEFAULT_LIMITS,
             clip_seconds: float | None = None) -> dict:
    """What a file is (rate, channels, seconds), after decoding the part prepare would use."""
    info = _decode(source, name, limits, clip_seconds)[2]
    return {key: info[key] for key in ("native_rate", "channels", "seconds")}


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


def load_bytes(source: Source, sr: int, name: str = "<bytes>", limits: AudioLimits = DEFAULT_LIMITS,
               clip_seconds: float | None = None) -> tuple[np.ndarray, dict]:
    """Decode (``crop_frames`` of the file) and resample to ``sr``; the info dict keeps what the file
    was (for the manifest): its rate, channels, whole length in native samples and in seconds."""
    y, native, info = _decode(source, name, limits, clip_seconds)
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
