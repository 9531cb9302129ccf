"""Synthetic GTZAN: a deterministic stand-in for the GTZAN audio, which cannot be downloaded here.

Why it exists: every stage (discovery, decoding, features, mel images, waveform models) has to run end
to end on real audio files, on machines that cannot fetch GTZAN. This module writes a data set with
GTZAN's shape -- ten genre folders in the Kaggle layout (``genres_original/<genre>/<genre>.NNNNN.wav``),
22,050 Hz mono 16-bit PCM WAV -- whose content comes from a per-genre probabilistic model, so that
classifiers have something real, but not trivial, to learn. It is the demo's default data set.

Genre model: each clip draws its parameters uniformly from its genre's ranges (``GENRE_MODELS``):
tempo and swing; a one-bar, 16-step drum groove (kick / snare / hat hit probabilities) varied bar to
bar; a chord progression (chord vocabulary, beats per chord, re-strike rhythm) played by a wavetable
voice whose partial count, partial roll-off, attack / decay / sustain and vibrato set its timbre; a
bass line and an optional single-tone lead; a low-pass cut-off (brightness), tanh distortion, noise,
vinyl-like clicks and loudness. Ranges overlap on purpose for rock / country / blues and for
disco / pop / hiphop, so accuracy on librosa features lands well above chance and well below 100 %.

Each clip is seeded by ``SeedSequence([seed, genre_index, clip_index])``: the same arguments give
byte-identical files, and a clip does not depend on how many others are generated.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import numbers
import os
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from raygenre.config import config_hash
from raygenre.data.gtzan import LAYOUT_SUBDIRS
from raygenre.data.synthetic_genres import GENRE_MODELS, SR, synthesize  # noqa: F401 (re-exported)
from raygenre.errors import SyntheticError
from raygenre.genres import GENRES

GENERATOR_VERSION = 1
MANIFEST = "synthetic.json"
_GENERATOR = "raygenre.data.synthetic"
CORRUPT_KINDS = ("zero_bytes", "truncated_header", "random_bytes")



def _wav_bytes(audio: np.ndarray) -> bytes:
    buf = io.BytesIO()
    pcm = np.round(np.asarray(audio, dtype=np.float64) * 32767).astype("<i2")
    sf.write(buf, pcm, SR, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _corrupt_bytes(kind: str, rng: np.random.Generator) -> bytes:
    if kind == "zero_bytes":
        return b""
    if kind == "truncated_header":
        return _wav_bytes(np.zeros(64, dtype=np.float32))[:20]
    return b"\x00JUNK" + rng.bytes(int(rng.integers(512, 4096)))  # the prefix rules out any audio magic


def _check_args(clips_per_genre: int, seconds: float, seed: int, corrupt: int) -> None:
    if isinstance(clips_per_genre, bool) or not isinstance(clips_per_genre, numbers.Integral) or clips_per_genre < 1:
        raise SyntheticError(f"clips per genre must be a whole number >= 1, got {clips_per_genre!r}.")
    if not isinstance(seconds, numbers.Real) or not math.isfinite(seconds) or not 0 < seconds <= 600:
        raise SyntheticError(f"seconds must be a number in (0, 600], got {seconds!r}.")
    if not isinstance(seed, numbers.Integral) or seed < 0:
        raise SyntheticError(f"seed must be a whole number >= 0, got {seed!r}.")
    if not isinstance(corrupt, numbers.Integral) or corrupt < 0:
        raise SyntheticError(f"corrupt must be a whole number >= 0, got {corrupt!r}.")
    if clips_per_genre + -(-corrupt // len(GENRES)) > 100_000:
        raise SyntheticError("clips per genre plus corrupt files per genre must fit GTZAN's 5-digit numbers.")


def _describe(clips_per_genre: int, seconds: float, seed: int, corrupt: int) -> dict[str, Any]:
    files = []
    for i in range(corrupt):
        genre = GENRES[i % len(GENRES)]
        clip_id = f"{genre}.{clips_per_genre + i // len(GENRES):05d}"
        files.append({"path": f"{LAYOUT_SUBDIRS['kaggle']}/{genre}/{clip_id}.wav", "clip_id": clip_id,
                      "kind": CORRUPT_KINDS[i % len(CORRUPT_KINDS)]})
    return {"generator": _GENERATOR, "version": GENERATOR_VERSION, "layout": "kaggle",
            "sample_rate": SR, "genres": list(GENRES), "clips_per_genre": clips_per_genre,
            "seconds": float(seconds), "seed": seed, "corrupt": corrupt,
            "clips": clips_per_genre * len(GENRES), "files": clips_per_genre * len(GENRES) + corrupt,
            "corrupt_files": files}


def generate(out: Path | str, clips_per_genre: int, seconds: float, seed: int = 0, corrupt: int = 0, *,
             workers: int | None = None) -> Path:
    """Write the synthetic GTZAN (plus ``corrupt`` broken files) under ``out``; returns ``out``.

    ``workers`` threads synthesise clips side by side (numpy releases the GIL); the output does not
    depend on it. Default: up to four, one per CPU.
    """
    _check_args(clips_per_genre, seconds, seed, corrupt)
    clips_per_genre, seconds, seed, corrupt = int(clips_per_genre), float(seconds), int(seed), int(corrupt)
    root = Path(out).expanduser()
    if root.exists() and not root.is_dir():
        raise SyntheticError(f"output {root} exists and is not a folder.")
    base = root / LAYOUT_SUBDIRS["kaggle"]
    if base.exists():
        if (read_manifest(root) or {}).get("generator") != _GENERATOR:
            raise SyntheticError(f"{base} exists and was not written by this generator; choose another folder.")
        shutil.rmtree(base)
    root.mkdir(parents=True, exist_ok=True)
    (root / MANIFEST).write_text(json.dumps({"generator": _GENERATOR, "status": "incomplete"}) + "\n")
    for genre in GENRES:
        (base / genre).mkdir(parents=True, exist_ok=True)

    def write(job: tuple[str, int]) -> None:
        genre, i = job
        (base / genre / f"{genre}.{i:05d}.wav").write_bytes(_wav_bytes(synthesize(genre, seconds, seed, i)))

    jobs = [(genre, i) for genre in GENRES for i in range(clips_per_genre)]
    with ThreadPoolExecutor(max_workers=workers or min(4, os.cpu_count() or 1)) as pool:
        list(pool.map(write, jobs))
    desc = _describe(clips_per_genre, seconds, seed, corrupt)
    for i, item in enumerate(desc["corrupt_files"]):
        rng = np.random.default_rng(np.random.SeedSequence([seed, len(GENRES), i]))
        (root / item["path"]).write_bytes(_corrupt_bytes(item["kind"], rng))
    (root / MANIFEST).write_text(json.dumps(desc, indent=2, sort_keys=True) + "\n")
    return root


def read_manifest(root: Path | str) -> dict[str, Any] | None:
    """The ``synthetic.json`` of a generated folder, or None when absent or unreadable."""
    try:
        return json.loads((Path(root) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def is_complete(root: Path | str, clips_per_genre: int, seconds: float, seed: int = 0, corrupt: int = 0) -> bool:
    """Whether ``root`` holds a finished generation with exactly these arguments."""
    root = Path(root)
    want = _describe(clips_per_genre, seconds, seed, corrupt)
    if read_manifest(root) != want:
        return False
    base = root / LAYOUT_SUBDIRS["kaggle"]
    found = sum(1 for g in GENRES if (base / g).is_dir() for p in (base / g).iterdir() if p.is_file())
    return found == want["files"]


def ensure_synthetic(cache_root: Path | str, cfg: Any) -> Path:
    """``cache_root/synthetic-<hash>`` for ``cfg`` (a SyntheticConfig), generated atomically unless complete."""
    args = (cfg.clips_per_genre, cfg.seconds, cfg.seed, cfg.corrupt)
    cache_root = Path(cache_root).expanduser()
    final = cache_root / f"synthetic-{config_hash(cfg.model_dump(mode='json'))}"
    if is_complete(final, *args):
        return final
    cache_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=cache_root))
    try:
        generate(tmp, *args)
        if final.exists() and not is_complete(final, *args):
            shutil.rmtree(final)  # stale (older generator) or tampered with
        try:
            os.rename(tmp, final)
        except OSError:
            if not is_complete(final, *args):  # a concurrent run may have just finished the same set
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def main(argv: list[str] | None = None) -> int:
    """Command line: write a synthetic GTZAN and list its corrupt files."""
    parser = argparse.ArgumentParser(prog="python -m raygenre.data.synthetic", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="folder to write (Kaggle layout)")
    parser.add_argument("--clips-per-genre", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--corrupt", type=int, default=0, help="broken files to add (decode must skip them)")
    args = parser.parse_args(argv)
    try:
        root = generate(args.out, args.clips_per_genre, args.seconds, args.seed, args.corrupt)
    except SyntheticError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    desc = read_manifest(root) or {}
    print(f"wrote {desc.get('clips')} clips of {args.seconds:g} s under {root}")
    for item in desc.get("corrupt_files", []):
        print(f"corrupt\t{item['kind']}\t{root / item['path']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
