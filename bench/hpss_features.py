"""Kaggle features of one clip: raygenre's ``hpss`` (bottleneck moving medians) against librosa's.

    python bench/hpss_features.py                 # 8 synthetic-noise clips of 30 s, 3 repeats
    python bench/hpss_features.py --seconds 5 --clips 20

Both sides run the same ``extract_features`` on the same clips in the same process; the baseline
swaps ``raygenre.data.features.hpss`` for ``librosa.decompose.hpss``. Each side is warmed up first
(numba JIT), and the harmonic/percussive outputs are checked to be bit-identical before timing.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    import librosa

    from raygenre.data import features

    p = argparse.ArgumentParser()
    p.add_argument("--clips", type=int, default=8)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    clips = [(0.1 * rng.standard_normal(int(args.seconds * 22050))).astype(np.float32) for _ in range(args.clips)]
    stft = librosa.stft(clips[0])
    ours_out, theirs_out = features.hpss(stft), librosa.decompose.hpss(stft)
    assert all(np.array_equal(a, b) for a, b in zip(ours_out, theirs_out)), "hpss differs from librosa's"

    ours = features.hpss

    def timed(hpss_fn) -> float:
        features.hpss = hpss_fn
        try:
            features.extract_features(clips[0])  # warm-up
            best = float("inf")
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                for y in clips:
                    features.extract_features(y)
                best = min(best, time.perf_counter() - t0)
            return best / len(clips)
        finally:
            features.hpss = ours

    baseline = timed(librosa.decompose.hpss)
    fast = timed(ours)
    print(f"extract_features per {args.seconds:.0f} s clip (best of {args.repeats}, {args.clips} clips): "
          f"librosa hpss {baseline * 1000:.0f} ms, raygenre hpss {fast * 1000:.0f} ms -> {baseline / fast:.2f}x")


if __name__ == "__main__":
    main()
