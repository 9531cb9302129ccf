"""Audio limits: headers are checked before decoding, long files are read window by window, prepare
decodes only what it keeps, and secret files stay out of what Ray uploads."""

from __future__ import annotations

import io
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from raygenre.config import PrepareConfig
from raygenre.data.audio import AudioError, AudioLimits, decode, load_bytes, shown
from raygenre.data.features import FEATURE_COLUMNS, extract_clip, extract_features, probe_file
from raygenre.data.gtzan import Clip, Discovery
from raygenre.data.pipeline import _unreadable
from raygenre.inference import Predictor, clip_windows, iter_windows

ROOT = Path(__file__).resolve().parents[1]


def signal(seconds: float, sr: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """Chirps and noise: content that changes over time, so every window has different features."""
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(seed)
    voices = [0.3 * np.sin(2 * np.pi * (220 + 40 * c + 3 * t) * t) + 0.05 * rng.standard_normal(len(t))
              for c in range(channels)]
    return np.stack(voices, axis=1).astype(np.float32) if channels > 1 else voices[0].astype(np.float32)


def wav(y: np.ndarray, sr: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


@pytest.fixture
def no_decoding(monkeypatch):
    """Any sample read fails the test: the checks must come from the header alone."""
    def refuse(*args, **kwargs):
        raise AssertionError("samples were decoded")
    monkeypatch.setattr(sf.SoundFile, "read", refuse)


# --- header checks before decoding ------------------------------------------------------------

@pytest.mark.parametrize("rate, shown_rate", [(1, "1 Hz"), (4000, "4000 Hz"), (384000, "384000 Hz")])
def test_rates_outside_8_to_192_khz_are_refused_before_decoding(no_decoding, rate, shown_rate):
    data = wav(np.zeros(100_000, dtype=np.float32), rate)  # 200 KB; at 1 Hz it declares 100,000 s
    for call in (lambda: decode(data, "x.wav"), lambda: load_bytes(data, 22050, "x.wav"),
                 lambda: list(iter_windows(data, "x.wav", 22050, 30.0))):
        with pytest.raises(AudioError, match=f"declares {shown_rate}, outside the 8000-192000 Hz") as err:
            call()
        assert str(err.value).startswith("x.wav: ") and "\n" not in str(err.value)


def test_a_1_hz_file_is_one_error_row_in_prepare_and_in_its_probe(no_decoding):
    data = wav(np.zeros(100_000, dtype=np.float32), 1)
    cfg = PrepareConfig()
    assert probe_file(data, "g/blues.00001.wav", cfg)["error"].startswith("declares 1 Hz")
    rows = extract_clip(data, "g/blues.00001.wav", cfg, ("features", "mel"))
    assert len(rows) == 1 and rows[0]["error"].startswith("declares 1 Hz")


def test_duration_and_size_limits_are_settings(no_decoding):
    data = wav(np.zeros(22050 * 4, dtype=np.float32), 22050)  # 4 s, 176 KB
    with pytest.raises(AudioError, match=r"declares 4 s, above the 3 s limit\."):
        decode(data, "long.wav", AudioLimits(max_seconds=3))
    with pytest.raises(AudioError, match=r"0\.2 MB is above the 0\.1 MB limit\."):
        decode(data, "big.wav", AudioLimits(max_file_mb=0.1))
    cfg = PrepareConfig(max_seconds=3, min_seconds=1)
    assert extract_clip(data, "g/rock.00002.wav", cfg, ("features",))[0]["error"] == \
        "declares 4 s, above the 3 s limit."
    assert PrepareConfig().max_seconds == 3600 and PrepareConfig().max_file_mb == 200  # generous defaults


def test_prepare_skips_oversize_and_unreadable_files_before_ray_reads_them(tmp_path):
    big, small, locked = (tmp_path / f"blues.0000{i}.wav" for i in range(3))
    big.write_bytes(b"\0" * 300_000)
    small.write_bytes(b"\0" * 1000)
    locked.write_bytes(b"\0" * 1000)
    locked.chmod(0)
    found = Discovery(tmp_path, "flat", [Clip(p.stem, "blues", p) for p in (big, small, locked)])
    rows = _unreadable(found, PrepareConfig(max_file_mb=0.25))
    assert rows[str(big)]["error"] == "0.3 MB is above the 0.25 MB limit." and str(small) not in rows
    if os.geteuid() != 0:  # root opens a mode-000 file
        assert rows[str(locked)]["error"] == "cannot be opened (Permission denied)."


def test_unreadable_sources_are_one_sentence(tmp_path):
    link = tmp_path / "gone.wav"
    link.symlink_to(tmp_path / "missing.wav")
    with pytest.raises(AudioError, match=r"gone\.wav: dangling link"):
        decode(link, "gone.wav")
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    for special in (tmp_path, fifo):  # opening the FIFO would wait for a writer forever
        with pytest.raises(AudioError, match="not a regular file"):
            decode(special, "special")
    locked = tmp_path / "locked.wav"
    locked.write_bytes(wav(np.zeros(100, dtype=np.float32), 22050))
    locked.chmod(0)
    if os.geteuid() != 0:  # root reads it anyway
        with pytest.raises(AudioError, match=r"cannot be opened \(Permission denied\)"):
            decode(locked, "locked.wav")
    assert shown(b"caf\xe9.wav") == "caf\\xe9.wav" and shown("ok.wav") == "ok.wav"


# --- predict: window by window ----------------------------------------------------------------

class FakeModel:
    """A deterministic stand-in for a kept model: probabilities from ten feature values."""
    feature_columns = FEATURE_COLUMNS
    meta: dict = {}

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        picked = np.abs(X[:, 1:11]) + 1e-6
        return picked / picked.sum(axis=1, keepdims=True)


def fake_predictor(clip_seconds: float, sr: int = 22050) -> Predictor:
    predictor = object.__new__(Predictor)  # no kept model on disk: only the windowing is under test
    predictor.model, predictor.representation, predictor.sample_rate, predictor.clip_seconds = \
        FakeModel(), "features", sr, clip_seconds
    predictor.min_seconds = 0.0
    return predictor


def whole_file_probabilities(data: bytes, sr: int, clip_seconds: float) -> tuple[int, np.ndarray]:
    """The algorithm predict used before windows were streamed: decode and resample all, then cut."""
    samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    y = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    if rate != sr:
        import librosa
        y = librosa.resample(y, orig_sr=rate, target_sr=sr).astype(np.float32)
    rows = [extract_features(w, sr) for w in clip_windows(y, int(round(clip_seconds * sr)))]
    X = np.array([[r[c] for c in FEATURE_COLUMNS] for r in rows])
    return len(rows), FakeModel().predict_proba(X).mean(axis=0)


def test_a_long_file_streamed_by_window_gives_the_whole_file_answer():
    data = wav(signal(110.0, 22050), 22050)
    n, expected = whole_file_probabilities(data, 22050, 20.0)
    result = fake_predictor(20.0).predict(data, "long.wav")
    assert result["error"] is None and result["windows"] == n == 5
    assert np.array_equal(list(result["probabilities"].values()), expected)  # same numbers, bit for bit


def test_a_resampled_long_file_keeps_its_windows_and_nearly_its_answer():
    data = wav(signal(65.0, 48000, channels=2), 48000)
    n, expected = whole_file_probabilities(data, 22050, 10.0)
    result = fake_predictor(10.0).predict(data, "stereo.wav")
    assert result["windows"] == n == 6  # the last window holds 15 s
    got = np.array(list(result["probabilities"].values()))
    assert np.allclose(got, expected, rtol=1e-5, atol=0)  # each window resampled with 1 s of context


def test_streaming_memory_follows_one_window_not_the_file(tmp_path):
    path = tmp_path / "five_minutes.wav"
    sf.write(path, signal(300.0, 44100, channels=2), 44100, subtype="PCM_16")
    whole = 300 * 44100 * 2 * 4  # what decoding the file at once takes (float32, two channels): 106 MB
    list(iter_windows(wav(signal(1.0, 44100), 44100), "warm.wav", 22050, 30.0))  # imports librosa first
    tracemalloc.start()
    try:
        count = sum(1 for _ in iter_windows(path, "five_minutes.wav", 22050, 30.0))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == 10 and peak < whole / 4, peak  # about 16 MB: one window, its context and resampling


# --- prepare: decode only what is kept --------------------------------------------------------

def test_prepare_of_a_long_file_equals_prepare_of_its_first_clip():
    cfg = PrepareConfig(clip_seconds=6.0, min_seconds=3.0, representations=("features", "mel", "waveform"))
    y = signal(15.0, 44100, channels=2)  # 2.5 clips: prepare reads the first 6 s only
    long_rows = extract_clip(wav(y, 44100), "g/jazz.00003.wav", cfg, cfg.representations)
    crop_rows = extract_clip(wav(y[:6 * 44100], 44100), "g/jazz.00003.wav", cfg, cfg.representations)
    assert long_rows[0]["error"] is None and long_rows[0]["length"] == 6 * 22050
    assert long_rows == crop_rows


def test_prepare_keeps_a_clip_below_twice_the_length_whole():
    cfg = PrepareConfig(clip_seconds=6.0, min_seconds=3.0)
    y = signal(9.0, 22050)
    row = extract_clip(wav(y, 22050), "g/pop.00004.wav", cfg, ("features",))[0]
    assert row["length"] == 9 * 22050  # the Kaggle recipe: features of the whole clip
    assert row["tempo"] == extract_features(load_bytes(wav(y, 22050), 22050)[0])["tempo"]


# --- what Ray uploads -------------------------------------------------------------------------

def test_rayignore_leaves_out_secret_files_and_keeps_the_code():
    from ray._private.runtime_env.packaging import get_excludes_from_ignore_files

    excludes = get_excludes_from_ignore_files(ROOT, include_gitignore=False)
    assert len(excludes) == 1
    excluded = excludes[0]
    for secret in (".env", ".env.local", "x.pem", "certs/server.key", ".aws/credentials", "sub/.aws/config",
                   ".ssh/id_rsa", ".netrc", ".pypirc", ".git-credentials", "raygenre/.env"):
        assert excluded(ROOT / secret), secret
    for kept in ("raygenre/predict.py", "raygenre/data/audio.py", "sweeps/base.yaml", "constraints.txt"):
        assert not excluded(ROOT / kept), kept
