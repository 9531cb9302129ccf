"""Decoding, transforms, Kaggle-recipe features and mel images on signals with known answers."""

from __future__ import annotations

import io

import librosa
import numpy as np
import pytest
import soundfile as sf

from raygenre.data.audio import (
    AudioError,
    augment,
    decode,
    fit_length,
    from_int16,
    load_bytes,
    time_shift,
    to_int16,
    transform_names,
)
from raygenre.data.features import FEATURE_COLUMNS, extract_features, mel_from_bytes, mel_image
from raygenre.data.kaggle_csv import KAGGLE_FEATURE_COLUMNS

SR = 22050


def tone(freq: float, seconds: float, amplitude: float = 0.5, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def encode(y: np.ndarray, sr: int, fmt: str = "WAV", subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


# --- decoding --------------------------------------------------------------------------------

def test_decode_stereo_44k_to_mono_22k():
    left, right = tone(440, 2.0, 0.4, 44100), tone(440, 2.0, 0.2, 44100)
    data = encode(np.stack([left, right], axis=1), 44100)
    y, info = load_bytes(data, SR, "stereo.wav")
    assert info["native_rate"] == 44100 and info["native_samples"] == 88200
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - 44100) <= 1
    # channel average: amplitude (0.4 + 0.2) / 2
    assert np.max(np.abs(y[1000:-1000])) == pytest.approx(0.3, abs=0.01)


def test_decode_au_file():
    data = encode(tone(220, 1.0), SR, fmt="AU")
    y, rate = decode(data, "blues.00000.au")
    assert rate == SR and len(y) == SR


@pytest.mark.parametrize("data, reason", [
    (b"", "empty"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt ", "not readable"),
    (np.random.default_rng(0).bytes(5000), "not readable"),
])
def test_decode_corrupt_raises_one_sentence(data, reason):
    with pytest.raises(AudioError, match=reason) as info:
        decode(data, "jazz.00054.wav")
    assert "jazz.00054.wav" in str(info.value) and "\n" not in str(info.value)


def test_truncated_header_wav_is_rejected():
    data = encode(tone(440, 1.0), SR)[:30]
    with pytest.raises(AudioError):
        decode(data, "x.wav")


# --- transforms ------------------------------------------------------------------------------

def test_fit_length_crops_and_pads():
    y = np.arange(10, dtype=np.float32)
    assert fit_length(y, 4).tolist() == [0, 1, 2, 3]
    assert fit_length(y, 12).tolist() == list(range(10)) + [0, 0]


def test_augment_names_lengths_and_shift():
    y = tone(440, 6.0)
    variants = augment(y, SR, (0.81, 0.93, 1.07, 1.23), 5.0)
    names = [n for n, _ in variants]
    assert names == ["stretch_0.81", "stretch_0.93", "stretch_1.07", "stretch_1.23", "shift_5s"]
    assert names == transform_names((0.81, 0.93, 1.07, 1.23), 5.0)
    for (name, v), rate in zip(variants[:4], (0.81, 0.93, 1.07, 1.23)):
        assert abs(len(v) - len(y) / rate) < 0.01 * len(y), name
    shifted = variants[4][1]
    assert np.array_equal(shifted, np.roll(y, 5 * SR)) and np.array_equal(time_shift(y, 5, SR), shifted)


def test_int16_round_trip_and_clipping():
    y = np.array([0.0, 0.5, -0.5, 1.5, -1.5], dtype=np.float32)
    pcm = to_int16(y)
    assert pcm.dtype == np.int16 and pcm[3] == 32767 and pcm[4] == -32767
    assert np.allclose(from_int16(pcm.tobytes()), np.clip(y, -1, 1), atol=1e-4)


# --- features: known answers -----------------------------------------------------------------

def test_feature_columns_are_length_then_kaggle_order():
    feats = extract_features(tone(440, 2.0), SR)
    assert list(feats) == list(FEATURE_COLUMNS) == ["length", *KAGGLE_FEATURE_COLUMNS]
    assert len(feats) == 58 and feats["length"] == 2 * SR


def test_pure_tone_centroid_and_zero_crossings():
    f = 1000.0
    feats = extract_features(tone(f, 5.0), SR)
    assert feats["spectral_centroid_mean"] == pytest.approx(f, rel=0.05)
    assert feats["zero_crossing_rate_mean"] == pytest.approx(2 * f / SR, rel=0.03)
    assert feats["rolloff_mean"] == pytest.approx(f, rel=0.1)


def test_constant_amplitude_rms():
    feats = extract_features(tone(440, 5.0, amplitude=0.5), SR)
    assert feats["rms_mean"] == pytest.approx(0.5 / np.sqrt(2), rel=0.02)
    assert feats["rms_var"] < 1e-3


def test_click_track_tempo_near_120():
    seconds = 12.0
    clicks = librosa.clicks(times=np.arange(0, seconds, 0.5), sr=SR, length=int(seconds * SR))
    feats = extract_features(clicks.astype(np.float32), SR)
    assert abs(feats["tempo"] - 120.0) <= 4.0  # librosa's tempo grid at hop 512: 117.5 / 123.0


def test_harmony_perceptr_are_hpss_waveforms():
    y = tone(440, 3.0)
    feats = extract_features(y, SR)
    harmonic, percussive = librosa.effects.hpss(y)
    assert feats["harmony_var"] == pytest.approx(np.var(harmonic), rel=1e-4)
    assert feats["perceptr_var"] == pytest.approx(np.var(percussive), rel=1e-4)
    assert feats["harmony_var"] > 10 * feats["perceptr_var"]  # a steady tone is harmonic


@pytest.mark.parametrize("seconds", [5.0, 0.5])  # 0.5 s: fewer frames than the kernel (librosa's own path)
def test_hpss_is_librosas_bit_for_bit(seconds):
    from raygenre.data.features import hpss

    rng = np.random.default_rng(3)
    t = np.arange(int(seconds * SR)) / SR
    y = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
    y[:: SR // 4] += 0.8  # clicks: something percussive
    stft = librosa.stft(y)
    ours, theirs = hpss(stft), librosa.decompose.hpss(stft)
    for a, b in zip(ours, theirs):
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    assert not np.array_equal(ours[0], ours[1])


def test_shared_stft_equals_per_feature_librosa_calls():
    """The extractor shares one STFT; the values must equal the plain ``y=`` recipe."""
    rng = np.random.default_rng(3)
    y = (tone(330, 4.0, 0.3) + 0.05 * rng.standard_normal(4 * SR)).astype(np.float32)
    got = extract_features(y, SR)
    ref: dict[str, float] = {}
    for name, values in [
        ("chroma_stft", librosa.feature.chroma_stft(y=y, sr=SR)),
        ("rms", librosa.feature.rms(y=y)),
        ("spectral_centroid", librosa.feature.spectral_centroid(y=y, sr=SR)),
        ("spectral_bandwidth", librosa.feature.spectral_bandwidth(y=y, sr=SR)),
        ("rolloff", librosa.feature.spectral_rolloff(y=y, sr=SR)),
        ("zero_crossing_rate", librosa.feature.zero_crossing_rate(y)),
        *zip(("harmony", "perceptr"), librosa.effects.hpss(y)),
        *((f"mfcc{k + 1}", row) for k, row in enumerate(librosa.feature.mfcc(y=y, sr=SR, n_mfcc=20))),
    ]:
        ref[f"{name}_mean"], ref[f"{name}_var"] = float(np.mean(values)), float(np.var(values))
    ref["tempo"] = float(np.atleast_1d(librosa.beat.beat_track(y=y, sr=SR)[0])[0])
    for key, value in ref.items():
        assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-9), key


# --- mel images ------------------------------------------------------------------------------

def test_mel_image_shape_dtype_and_tone_row():
    img = mel_image(tone(1000, 6.0), SR, colormap="gray")
    assert img.shape == (128, 128, 3) and img.dtype == np.uint8
    assert np.array_equal(img[..., 0], img[..., 1])  # gray: R == G == B
    brightest = int(np.argmax(img[..., 0].astype(float).mean(axis=1)))
    expected = 127 - int(np.argmin(np.abs(librosa.mel_frequencies(128, fmax=SR / 2) - 1000)))
    assert abs(brightest - expected) <= 3  # row 0 is the top (highest) mel band
    assert np.array_equal(mel_from_bytes(img.tobytes()), img)


def test_mel_image_silence_and_colormap():
    img = mel_image(np.zeros(SR, dtype=np.float32), SR, size=32)
    assert img.shape == (32, 32, 3)
    viridis_low = np.array([68, 1, 84])  # viridis(0)
    assert np.all(np.abs(img.reshape(-1, 3).astype(int) - viridis_low) <= 1)
    with pytest.raises(ValueError, match="unknown colormap 'nope'"):
        mel_image(tone(440, 1.0), SR, colormap="nope")
