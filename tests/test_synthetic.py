"""The synthetic GTZAN: determinism, WAV format, Kaggle layout, corrupt files, caching, CLI, realism."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from raygenre.config import SyntheticConfig, config_hash
from raygenre.data import synthetic
from raygenre.data.gtzan import GENRES, discover
from raygenre.data.synthetic import SR, SyntheticError, ensure_synthetic, generate, read_manifest


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _corrupt(root: Path) -> dict[str, str]:
    return {item["path"]: item["kind"] for item in read_manifest(root)["corrupt_files"]}


def test_same_arguments_give_byte_identical_files(tmp_path):
    a = _files(generate(tmp_path / "a", 2, 1.0, seed=3, corrupt=4))
    b = _files(generate(tmp_path / "b", 2, 1.0, seed=3, corrupt=4, workers=1))
    assert a == b
    assert len(a) == 10 * 2 + 4 + 1  # clips, corrupt files, synthetic.json
    c = _files(generate(tmp_path / "c", 2, 1.0, seed=4))
    clips = [k for k in c if k.endswith(".wav")]
    assert all(a[k] != c[k] for k in clips)


def test_a_clip_does_not_depend_on_how_many_are_generated(tmp_path):
    one = generate(tmp_path / "one", 1, 1.0, seed=7)
    three = generate(tmp_path / "three", 3, 1.0, seed=7)
    for genre in GENRES:
        name = f"genres_original/{genre}/{genre}.00000.wav"
        assert (one / name).read_bytes() == (three / name).read_bytes()


def test_wav_format_and_duration(tmp_path):
    root = generate(tmp_path, 1, 1.5, seed=0)
    for genre in GENRES:
        info = sf.info(root / "genres_original" / genre / f"{genre}.00000.wav")
        assert (info.samplerate, info.channels, info.subtype, info.format) == (SR, 1, "PCM_16", "WAV")
        assert info.frames == round(1.5 * SR)
        assert info.duration == pytest.approx(1.5)
        audio, _ = sf.read(root / "genres_original" / genre / f"{genre}.00000.wav")
        assert 0.005 < np.sqrt(np.mean(audio**2)) < 0.5  # audible, not clipped flat


def test_layout_and_counts_with_and_without_corrupt_files(tmp_path):
    found = discover(generate(tmp_path / "clean", 3, 1.0))
    assert found.layout == "kaggle"
    assert found.counts() == {g: 3 for g in GENRES}
    assert not found.ignored
    root = generate(tmp_path / "broken", 3, 1.0, corrupt=12)
    found = discover(root)
    assert len(found.clips) == 10 * 3 + 12
    corrupt = _corrupt(root)
    assert sorted(corrupt)[:2] == ["genres_original/blues/blues.00003.wav", "genres_original/blues/blues.00004.wav"]
    assert {Path(p).name.split(".")[0] for p in corrupt} == set(GENRES)  # spread over the genres
    assert {c.path.relative_to(root).as_posix() for c in found.clips} >= set(corrupt)


def test_corrupt_files_are_of_the_promised_kinds(tmp_path):
    root = generate(tmp_path, 1, 1.0, corrupt=6)
    corrupt = _corrupt(root)
    assert sorted(corrupt.values()) == sorted(synthetic.CORRUPT_KINDS * 2)
    for rel, kind in corrupt.items():
        data = (root / rel).read_bytes()
        if kind == "zero_bytes":
            assert data == b""
        elif kind == "truncated_header":
            assert 0 < len(data) < 44 and data.startswith(b"RIFF")
        else:
            assert len(data) >= 512
        with pytest.raises(sf.LibsndfileError):
            sf.read(root / rel)


def test_manifest_describes_the_set(tmp_path):
    root = generate(tmp_path, 2, 1.0, seed=5, corrupt=1)
    desc = read_manifest(root)
    assert desc["clips_per_genre"] == 2 and desc["seconds"] == 1.0 and desc["seed"] == 5
    assert desc["genres"] == list(GENRES) and desc["sample_rate"] == SR
    assert desc["files"] == 21
    assert desc["corrupt_files"] == [{"path": "genres_original/blues/blues.00002.wav",
                                      "clip_id": "blues.00002", "kind": "zero_bytes"}]
    assert json.loads((root / "synthetic.json").read_text()) == desc


def test_regenerating_into_the_same_folder_replaces_the_old_set(tmp_path):
    generate(tmp_path, 2, 1.0, corrupt=3)
    generate(tmp_path, 1, 1.0)
    assert len(discover(tmp_path).clips) == 10


def test_an_interrupted_generation_is_incomplete_and_can_be_rerun(tmp_path, monkeypatch):
    def boom(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic, "synthesize", boom)
    with pytest.raises(KeyboardInterrupt):
        generate(tmp_path, 1, 1.0)
    assert not synthetic.is_complete(tmp_path, 1, 1.0)
    monkeypatch.undo()
    generate(tmp_path, 1, 1.0)
    assert synthetic.is_complete(tmp_path, 1, 1.0)


def test_refuses_a_gtzan_tree_it_did_not_write(tmp_path):
    (tmp_path / "genres_original" / "jazz").mkdir(parents=True)
    with pytest.raises(SyntheticError, match="not written by this generator"):
        generate(tmp_path, 1, 1.0)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"clips_per_genre": 0}, "clips per genre"),
    ({"seconds": 0.0}, "seconds"),
    ({"seconds": float("nan")}, "seconds"),
    ({"seed": -1}, "seed"),
    ({"corrupt": -2}, "corrupt"),
])
def test_bad_arguments_raise_one_clear_sentence(tmp_path, kwargs, message):
    args = {"clips_per_genre": 1, "seconds": 1.0, "seed": 0, "corrupt": 0} | kwargs
    with pytest.raises(SyntheticError, match=message):
        generate(tmp_path, **args)
    assert not (tmp_path / "genres_original").exists()


def test_ensure_synthetic_generates_once_then_reuses(tmp_path):
    cfg = SyntheticConfig(clips_per_genre=1, seconds=1.0, seed=0, corrupt=2)
    root = ensure_synthetic(tmp_path, cfg)
    assert root == tmp_path / f"synthetic-{config_hash(cfg.model_dump(mode='json'))}"
    assert [p.name for p in tmp_path.iterdir()] == [root.name]  # no temp folder left behind
    stamps = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    assert len(discover(root).clips) == 12
    assert ensure_synthetic(tmp_path, cfg) == root
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == stamps
    other = ensure_synthetic(tmp_path, SyntheticConfig(clips_per_genre=1, seconds=1.0, seed=1))
    assert other != root


def test_ensure_synthetic_replaces_an_incomplete_set(tmp_path):
    cfg = SyntheticConfig(clips_per_genre=1, seconds=1.0)
    root = ensure_synthetic(tmp_path, cfg)
    victim = root / "genres_original" / "jazz" / "jazz.00000.wav"
    victim.unlink()
    assert ensure_synthetic(tmp_path, cfg) == root
    assert victim.is_file()


def test_cli_writes_the_set_and_lists_corrupt_files(tmp_path):
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "raygenre.data.synthetic", "--out", str(out), "--clips-per-genre", "1",
           "--seconds", "1", "--seed", "2", "--corrupt", "3"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    lines = [line.split("\t") for line in proc.stdout.splitlines() if line.startswith("corrupt\t")]
    assert [kind for _, kind, _ in lines] == list(synthetic.CORRUPT_KINDS)
    assert all(Path(path).is_file() for _, _, path in lines)
    assert len(discover(out).clips) == 13
    bad = subprocess.run(cmd[:6] + ["0"], capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "clips per genre" in bad.stderr


@functools.cache
def _mel_filters() -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=SR, n_fft=2048)


def _features(audio: np.ndarray) -> np.ndarray:
    """MFCC, spectral shape, loudness, chroma and rhythm summaries from one STFT (librosa defaults)."""
    import librosa

    mag = np.abs(librosa.stft(audio))
    db = librosa.power_to_db(_mel_filters() @ mag**2)
    mfcc = librosa.feature.mfcc(S=db, n_mfcc=20)
    shape = np.vstack([librosa.feature.spectral_centroid(S=mag, sr=SR), librosa.feature.spectral_rolloff(S=mag, sr=SR),
                       librosa.feature.rms(S=mag), librosa.feature.zero_crossing_rate(audio)])
    chroma = librosa.feature.chroma_stft(S=mag**2, sr=SR)
    onset = librosa.onset.onset_strength(S=db, sr=SR)
    tempo = librosa.feature.tempo(onset_envelope=onset, sr=SR)[0]
    return np.concatenate([mfcc.mean(1), mfcc.std(1), shape.mean(1), shape.std(1), chroma.mean(1),
                           [chroma.std(), onset.mean(), onset.std(), tempo]])


@pytest.mark.slow
def test_genres_are_learnable_but_not_trivially(tmp_path):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import train_test_split

    found = discover(generate(tmp_path, 20, 10.0, seed=0))
    x = np.stack([_features(sf.read(c.path, dtype="float32")[0]) for c in found.clips])
    y = np.array(found.labels)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)
    model = RandomForestClassifier(n_estimators=200, random_state=0, n_jobs=1).fit(x_train, y_train)
    accuracy = float(np.mean(model.predict(x_test) == y_test))
    assert 0.4 <= accuracy <= 0.97, accuracy
