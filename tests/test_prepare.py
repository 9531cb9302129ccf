"""The prepare stage: per-clip rows, the Ray Data pipeline end to end, the cache and the CLI.

One small GTZAN-shaped folder (10 genres x 3 synthetic 6 s clips) plus the files a real
collection throws at us: a zero-byte file, a truncated header, random bytes, a stereo 44.1 kHz
clip and one clip shorter than the minimum. Mel and waveform are padded to 30 s so the shard
shapes are the study's (128 x 128 x 3 and 480,000 samples).
"""

from __future__ import annotations

import io
import json
import os
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from raygenre.config import PrepareConfig, load_prepare_spec
from raygenre.data import pipeline
from raygenre.data.features import extract_clip, extract_features
from raygenre.data.kaggle_csv import KAGGLE_FEATURE_COLUMNS, read_features_csv, write_features_csv
from raygenre.data.shards import load_features, load_table, mel_array, read_manifest, waveform_array
from raygenre.data.synthetic import generate
from raygenre.prepare import main

SR = 22050
slow = pytest.mark.slow  # these share one Ray Data run of the whole pipeline (~30-60 s on 2 CPUs)
SETTINGS = {"prepare": {"clip_seconds": 30.0, "min_seconds": 3.0}, "split": {"test_fraction": 0.34}}
CLI_SETTINGS = ["--set", "prepare.clip_seconds=30.0", "--set", "prepare.min_seconds=3.0",
                "--set", "split.test_fraction=0.34"]
CORRUPT = {"blues.00003": "empty", "classical.00003": "not readable", "country.00003": "not readable"}


def wav_bytes(y: np.ndarray, sr: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def tone(seconds: float, sr: int = SR, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture(scope="module")
def gtzan(tmp_path_factory) -> Path:
    root = generate(tmp_path_factory.mktemp("gtzan"), clips_per_genre=3, seconds=6.0, seed=1, corrupt=3)
    genres = root / "genres_original"
    stereo = np.stack([tone(6.0, 44100, 330.0), tone(6.0, 44100, 660.0)], axis=1)
    (genres / "rock" / "rock.00050.wav").write_bytes(wav_bytes(stereo, 44100))
    (genres / "pop" / "pop.00051.wav").write_bytes(wav_bytes(tone(1.0), SR))  # shorter than min_seconds
    return root.resolve()


@pytest.fixture(scope="module")
def spec(gtzan):
    return load_prepare_spec("quick", {"data": {"source": str(gtzan)}, **SETTINGS})


@pytest.fixture(scope="module")
def prepared(ray_session, spec, tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    shard_dir = pipeline.ensure_shards(spec, run).local
    assert shard_dir == run / "shards" / spec.hash()
    return run, shard_dir, read_manifest(shard_dir)


# --- the per-clip function, without Ray ------------------------------------------------------

def test_extract_clip_rows_shapes_and_augmentation(gtzan):
    cfg = PrepareConfig(clip_seconds=30.0, min_seconds=3.0, representations=("features", "mel", "waveform"))
    path = str(gtzan / "genres_original" / "jazz" / "jazz.00000.wav")
    rows = extract_clip(Path(path).read_bytes(), path, cfg, cfg.representations, augmented=True)
    assert [r["transform"] for r in rows] == ["original", "stretch_0.81", "stretch_0.93", "stretch_1.07",
                                              "stretch_1.23", "shift_5s"]
    assert rows[0]["clip_id"] == "jazz.00000" and rows[0]["parent_id"] is None
    assert all(r["parent_id"] == "jazz.00000" and r["clip_id"] == f"jazz.00000+{r['transform']}" for r in rows[1:])
    assert all(len(r["mel"]) == 128 * 128 * 3 and len(r["waveform"]) == 2 * 480_000 for r in rows)
    assert rows[0]["length"] == 6 * SR and "length" not in rows[1]  # features: originals only
    assert len(extract_clip(Path(path).read_bytes(), path, cfg, cfg.representations)) == 1  # not augmented
    assert len(extract_clip(Path(path).read_bytes(), path, cfg, ("features",), augmented=True)) == 1


def test_extract_clip_bad_file_is_one_error_row():
    cfg = PrepareConfig()
    rows = extract_clip(b"", "x/blues.00007.wav", cfg, ("features",))
    assert len(rows) == 1 and rows[0]["error"] == "file is empty (0 bytes)." and rows[0]["clip_id"] == "blues.00007"
    short = extract_clip(wav_bytes(tone(1.0), SR), "x/pop.00001.wav", cfg, ("features",))
    assert "shorter than the 20 s minimum" in short[0]["error"]


# --- the Ray Data pipeline end to end --------------------------------------------------------

@slow
def test_counts_per_genre_and_split_check(prepared):
    _, shard_dir, manifest = prepared
    assert manifest["counts"]["clips"] == len(manifest["clips"]) == 31  # 30 + stereo rock; 4 skipped
    assert sum(manifest["counts"]["genres"].values()) == 31 and manifest["counts"]["genres"]["rock"] == 4
    check = manifest["split_check"]  # the configured split was drawn over the usable clips, as a check
    assert check["name"] == "paper" and check["counts"]["train"] + check["counts"]["test"] == 31
    features = load_table(shard_dir, "features")
    assert features.num_rows == 31 and sorted(features.column("clip_id").to_pylist()) == manifest["clips"]
    assert manifest["representations"]["features"]["rows"] == 31
    assert manifest["inputs"]["files"] == 35 and manifest["config_hash"] == shard_dir.name


@slow
def test_skipped_files_are_listed_with_reasons(prepared):
    _, _, manifest = prepared
    skipped = {s["clip_id"]: s for s in manifest["skipped"]}
    assert set(skipped) == {*CORRUPT, "pop.00051"}
    for clip_id, words in CORRUPT.items():
        assert words in skipped[clip_id]["reason"] and skipped[clip_id]["path"].endswith(f"{clip_id}.wav")
    assert "shorter than the 3 s minimum" in skipped["pop.00051"]["reason"]
    assert manifest["audio"]["native_rates"] == {"22050": 30, "44100": 1}
    assert manifest["audio"]["channels"] == {"1": 30, "2": 1}
    assert "rock.00050" in manifest["clips"] and not set(skipped) & set(manifest["clips"])


@slow
def test_augmented_rows_are_their_own_folders(prepared):
    """Shards do not know the split: every clip gets its 5 variants; trials use them for training clips."""
    _, shard_dir, manifest = prepared
    clips = set(manifest["clips"])
    for rep in ("mel", "waveform"):
        originals = load_table(shard_dir, rep).to_pandas()
        assert set(originals["clip_id"]) == clips and (originals["transform"] == "original").all()
        assert originals["parent_id"].isna().all()
        aug = load_table(shard_dir, f"{rep}_augmented").to_pandas()
        assert set(aug["parent_id"]) == clips and (aug.groupby("parent_id").size() == 5).all()
        assert set(aug["transform"]) == {"stretch_0.81", "stretch_0.93", "stretch_1.07", "stretch_1.23", "shift_5s"}
        assert manifest["representations"][f"{rep}_augmented"]["rows"] == 5 * len(clips)
    assert load_table(shard_dir, "features").column("transform").to_pylist() == ["original"] * 31
    assert not (shard_dir / "features_augmented").exists()
    assert manifest["augmentation"]["applies_to"] == ["mel", "waveform"]


@slow
def test_shapes_and_column_metadata(prepared):
    _, shard_dir, manifest = prepared
    test_ids = ["jazz.00001", "rock.00050"]
    mel = load_table(shard_dir, "mel", ids=test_ids)
    assert sorted(mel.column("clip_id").to_pylist()) == test_ids  # the id filter reads only those rows
    images = mel_array(mel)
    assert images.shape == (2, 128, 128, 3) and images.dtype == np.uint8 and images.std() > 0
    wave = load_table(shard_dir, "waveform", ids=test_ids)
    samples = waveform_array(wave)
    assert samples.shape == (2, 480_000) and samples.dtype == np.int16
    assert np.abs(samples[:, : 6 * 16000 - 100]).max() > 0 and not samples[:, 6 * 16000 + 100:].any()  # padded
    files = sorted((shard_dir / "mel").glob("*.parquet"))
    assert pq.read_schema(files[0]).field("mel").metadata[b"shape"] == b"128,128,3"
    assert manifest["representations"]["waveform"]["payload"]["shape"] == [480_000]
    assert pq.read_schema(files[0]).names == ["clip_id", "label", "parent_id", "transform", "mel"]


@slow
def test_features_match_the_kaggle_csv_frame(prepared, gtzan, tmp_path):
    _, shard_dir, _ = prepared
    frame = load_features(shard_dir)
    assert list(frame.columns) == ["label", "length", *KAGGLE_FEATURE_COLUMNS]
    assert frame.index.name == "clip_id" and frame.index.is_monotonic_increasing
    assert frame.loc["rock.00050", "length"] == 6 * SR  # stereo 44.1 kHz: counted after resampling
    csv = write_features_csv(frame, tmp_path / "features_30_sec.csv")
    again = read_features_csv(csv)
    assert list(again.columns) == list(frame.columns)
    assert np.allclose(again[list(KAGGLE_FEATURE_COLUMNS)], frame[list(KAGGLE_FEATURE_COLUMNS)], rtol=1e-9)
    import librosa

    y, _ = librosa.load(gtzan / "genres_original" / "disco" / "disco.00001.wav", sr=SR)
    direct = extract_features(y, SR)
    # float32 DSP in a Ray worker (one thread) and here may differ in the last bits: a near-zero MFCC mean
    # moved by 2e-7 was seen, so an absolute tolerance far below any feature's scale goes with the relative one
    assert np.allclose([frame.loc["disco.00001", c] for c in direct], list(direct.values()), rtol=1e-5, atol=1e-5)


@slow
def test_second_identical_call_computes_nothing(prepared, spec, monkeypatch):
    run, shard_dir, manifest = prepared
    assert [h["computed"] for h in manifest["history"]] == [["features", "mel", "waveform", "mel_augmented",
                                                             "waveform_augmented"]]
    before = (shard_dir / "manifest.json").read_bytes()
    files = {p: p.stat().st_mtime_ns for p in shard_dir.rglob("*.parquet")}

    def forbidden(*args, **kwargs):
        raise AssertionError("a cache hit must not start Ray or compute anything")

    for name in ("ray_session", "_probe", "_compute", "_repack"):
        monkeypatch.setattr(pipeline, name, forbidden)
    assert pipeline.ensure_shards(spec, run).local == shard_dir
    assert pipeline.ensure_shards(spec, run, ["waveform"]).local == shard_dir
    assert pipeline.ensure_shards(spec, run, ["mel"], augmented=False).local == shard_dir
    assert (shard_dir / "manifest.json").read_bytes() == before
    assert {p: p.stat().st_mtime_ns for p in shard_dir.rglob("*.parquet")} == files


@slow
def test_cli_rerun_reports_cache_hit(prepared, gtzan, monkeypatch, capsys):
    run, shard_dir, _ = prepared
    monkeypatch.setattr(pipeline, "_compute", lambda *a, **k: pytest.fail("recomputed"))
    assert main(["--data", str(gtzan), "--out", str(run), *CLI_SETTINGS]) == 0
    out = capsys.readouterr().out
    assert f"shards: {shard_dir} (cache hit: nothing computed)" in out
    assert "blues.00003.wav: file is empty" in out and "skipped: 4 file(s)" in out


# --- the cache logic, with the Ray stages replaced by fakes ------------------------------------

@pytest.fixture
def fake_stages(monkeypatch):
    """Stand-ins for the Ray stages that write just enough Parquet; ``calls`` records what ran."""
    calls: list[tuple[str, ...]] = []

    def probe(paths, cfg, filesystem=None):
        return [{"path": p, "error": None, "native_rate": SR, "channels": 1, "seconds": 6.0} for p in paths]

    def compute(paths, cfg, reps, augmented, staging, filesystem=None):
        calls.append(tuple(reps))
        staging = staging.local
        staging.mkdir(parents=True)
        ids = [Path(p).name.rsplit(".", 1)[0] for p in paths]
        pq.write_table(pa.table({"clip_id": ids, "path": paths, "error": [None] * len(paths),
                                 "transform": ["original"] * len(paths)},
                                schema=pa.schema([("clip_id", pa.string()), ("path", pa.string()),
                                                  ("error", pa.string()), ("transform", pa.string())])),
                       staging / "part.parquet")

    def repack(staging, out, folder):
        pq.write_table(pa.table({"clip_id": ["a"], "label": ["rock"], "transform": ["original"]}),
                       out.local / "part.parquet")

    monkeypatch.setattr(pipeline, "ray_session", nullcontext)
    monkeypatch.setattr(pipeline, "_probe", probe)
    monkeypatch.setattr(pipeline, "_compute", compute)
    monkeypatch.setattr(pipeline, "_repack", repack)
    return calls


def test_changed_inputs_or_config_recompute(fake_stages, tmp_path):
    data = tmp_path / "gtzan"
    for genre in ("blues", "rock"):
        (data / genre).mkdir(parents=True)
        for i in range(5):
            (data / genre / f"{genre}.{i:05d}.wav").write_bytes(wav_bytes(tone(0.1), SR))
    spec = load_prepare_spec("quick", {"data": {"source": str(data)}, "split": {"test_fraction": 0.4},
                                       "prepare": {"augment": {"enabled": False}}})
    run = tmp_path / "run"
    shard_dir = pipeline.ensure_shards(spec, run, ["features"])
    pipeline.ensure_shards(spec, run, ["features"])
    assert fake_stages == [("features",)]  # cache hit
    pipeline.ensure_shards(spec, run, ["features", "mel"])
    assert fake_stages[-1] == ("mel",)  # only the missing representation
    clip = data / "rock" / "rock.00002.wav"
    os.utime(clip, ns=(clip.stat().st_atime_ns, clip.stat().st_mtime_ns + 10**9))
    assert pipeline.ensure_shards(spec, run, ["features"]) == shard_dir
    assert fake_stages[-1] == ("features",) and not (shard_dir / "mel").exists()  # stale set cleared
    other = load_prepare_spec("quick", {"data": {"source": str(data)}, "split": {"test_fraction": 0.4},
                                        "prepare": {"augment": {"enabled": False, "shift_seconds": 4.0}}})
    assert pipeline.ensure_shards(other, run, ["features"]) != shard_dir
    assert len(fake_stages) == 4
    assert json.loads((shard_dir / "manifest.json").read_text())["inputs"]["files"] == 10


def test_representations_split_and_augment_switch_are_not_in_the_hash():
    a = load_prepare_spec("quick", {"prepare": {"representations": ["features"], "augment": {"enabled": False}}})
    b = load_prepare_spec("quick", {"prepare": {"representations": ["mel", "waveform"]},
                                    "split": {"name": "fault_filtered", "seeds": [3, 4]}})
    assert a.hash() == b.hash()


def test_prepare_and_sweep_name_the_same_shard_set():
    """``prepare --profile quick`` then ``sweep exp3 --profile quick`` reuse one shard set (issue: they differed)."""
    from raygenre.config import load_experiment, prepare_spec_of

    for exp in ("exp3", "exp4"):
        assert prepare_spec_of(load_experiment(exp, "quick")).hash() == load_prepare_spec("quick").hash()
    assert prepare_spec_of(load_experiment("exp3", "paper")).hash() == load_prepare_spec("paper").hash()
    assert load_prepare_spec("quick").hash() != load_prepare_spec("paper").hash()


def test_cli_single_clip_genre_is_one_sentence_before_ray(tmp_path, capsys, monkeypatch):
    data = tmp_path / "mine"
    generate(data, clips_per_genre=2, seconds=1.0)
    (data / "genres_original" / "metal" / "metal.00001.wav").unlink()
    monkeypatch.setattr(pipeline, "ray_session", lambda *a, **k: pytest.fail("Ray started"))
    assert main(["--data", str(data), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: genre 'metal' has only 1 usable clip, and a stratified train/test split needs at "
                   "least 2 clips of every genre present.")


# --- command-line errors -------------------------------------------------------------------------

def test_cli_unknown_data_is_one_sentence(tmp_path, capsys):
    assert main(["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --data must be 'synthetic' or an existing GTZAN folder") and "\n" not in err


def test_cli_folder_without_gtzan_layout(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["--data", str(tmp_path / "empty"), "--out", str(tmp_path / "run")]) == 2
    assert "holds no GTZAN layout" in capsys.readouterr().err
