"""The per-genre sound models of the synthetic GTZAN and the synthesiser that renders one clip.

Each genre is a :class:`GenreModel` of parameter ranges (tempo, groove, chords, timbre, noise); a clip
draws uniformly inside its genre's ranges. See ``raygenre.data.synthetic`` for why the data set exists
and how clips are seeded and written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import signal

from raygenre.errors import SyntheticError
from raygenre.genres import GENRE_INDEX, GENRES

SR = 22050
Range = tuple[float, float]
_TABLE = 4096  # wavetable length (power of two)
_CHORDS = {"maj": (0, 4, 7), "min": (0, 3, 7), "sus": (0, 5, 7), "power": (0, 7, 12),
           "dom7": (0, 4, 7, 10), "maj7": (0, 4, 7, 11), "min7": (0, 3, 7, 10)}
_DEGREES = np.array([0, 5, 7, 0, 5, 7, 9, 2])  # I IV V weighted over vi ii, in semitones above the key
_PENTATONIC = np.array([0, 2, 4, 7, 9])
_BACKBEAT = "0000900000009000"
_EIGHTHS = "9090909090909090"


@dataclass(frozen=True)
class GenreModel:
    """Parameter ranges of one genre; each clip draws uniformly inside them."""

    bpm: Range
    kick: str = "0" * 16  # hit probability per 16th step of a bar, digits 0-9 (9 = always)
    snare: str = "0" * 16
    hat: str = "0" * 16
    swing: Range = (0.0, 0.0)  # delay of the off-beat 8th, in 16ths (0.67 = triplet shuffle)
    drums: Range = (0.5, 0.8)  # drum level relative to the music
    chords: tuple[str, ...] = ("maj", "min")
    beats_per_chord: tuple[int, ...] = (4, 8)
    strike: tuple[Range, ...] = ((1.0, 0.0),)  # chord (period, offset) in beats; period 0 = once per chord
    partials: tuple[int, int] = (3, 8)
    rolloff: Range = (1.0, 2.0)  # partial k has amplitude k ** -rolloff
    attack: Range = (0.003, 0.02)  # seconds
    decay: Range = (0.2, 0.8)  # seconds
    sustain: Range = (0.1, 0.4)  # level the decay settles to
    vibrato: Range = (0.0, 0.0)  # relative frequency depth
    key: tuple[int, int] = (48, 60)  # MIDI range of the key's root
    bass: Range = (0.3, 0.6)
    bass_rate: tuple[float, ...] = (1.0,)  # bass notes per beat (2 alternates octaves)
    lead: Range = (0.0, 0.0)  # lead notes per beat; under 0.25 means no lead
    cutoff: Range = (3000.0, 8000.0)  # low-pass cut-off, Hz
    drive: Range = (0.0, 0.0)  # tanh distortion gain of the chords and lead
    noise: Range = (0.002, 0.01)  # white noise relative to the music
    clicks: Range = (0.0, 0.0)  # crackle clicks per second
    rms: Range = (0.08, 0.15)


GENRE_MODELS: dict[str, GenreModel] = {
    "blues": GenreModel(
        bpm=(70, 130), kick="9000000090000000", snare=_BACKBEAT, hat=_EIGHTHS, swing=(0.25, 0.6),
        drums=(0.3, 0.7), chords=("dom7", "dom7", "maj"), strike=((1, 0), (0.5, 0)), partials=(4, 12),
        rolloff=(0.7, 1.5), attack=(0.002, 0.01), decay=(0.15, 0.5), sustain=(0.1, 0.4), vibrato=(0, 0.004),
        key=(45, 57), lead=(0.5, 2.0), cutoff=(3000, 7500), drive=(0, 3.5), noise=(0.01, 0.03),
        clicks=(0, 2), rms=(0.06, 0.16)),
    "classical": GenreModel(
        bpm=(50, 120), drums=(0, 0), chords=("maj", "min", "sus"), beats_per_chord=(2, 4, 8),
        strike=((0, 0),), partials=(3, 8), rolloff=(1.4, 2.4), attack=(0.05, 0.3), decay=(0.5, 2.0),
        sustain=(0.5, 0.9), vibrato=(0.003, 0.008), key=(48, 64), bass=(0.1, 0.4), bass_rate=(0.5, 1),
        lead=(0.5, 2.0), cutoff=(1800, 5000), noise=(0.002, 0.01), rms=(0.03, 0.09)),
    "country": GenreModel(
        bpm=(80, 145), kick="9000000090000000", snare=_BACKBEAT, hat=_EIGHTHS, swing=(0, 0.3),
        drums=(0.3, 0.8), chords=("maj", "maj", "min", "dom7"), strike=((1, 0), (0.5, 0)), partials=(5, 12),
        rolloff=(0.7, 1.4), attack=(0.002, 0.008), decay=(0.1, 0.45), sustain=(0.05, 0.35),
        vibrato=(0, 0.003), key=(45, 60), lead=(0.5, 2.0), cutoff=(3000, 8000), drive=(0, 2),
        noise=(0.005, 0.025), clicks=(0, 1), rms=(0.07, 0.16)),
    "disco": GenreModel(
        bpm=(105, 130), kick="9000800090008000", snare=_BACKBEAT, hat="2070207020702070", swing=(0, 0.05),
        drums=(0.5, 0.9), chords=("maj7", "min7", "min"), strike=((0, 0), (1, 0.5)), partials=(5, 11),
        rolloff=(0.8, 1.5), attack=(0.02, 0.1), decay=(0.4, 1.5), sustain=(0.5, 0.85),
        vibrato=(0.003, 0.007), key=(50, 62), bass=(0.5, 0.8), bass_rate=(2, 2, 1), lead=(0, 1),
        cutoff=(4000, 8500), drive=(0, 1), noise=(0.003, 0.012), rms=(0.1, 0.18)),
    "hiphop": GenreModel(
        bpm=(85, 115), kick="9000404090600000", snare=_BACKBEAT, hat="7575757575757575", swing=(0, 0.3),
        drums=(0.7, 1.0), chords=("min", "min7", "maj"), beats_per_chord=(4, 8), strike=((0, 0), (2, 0)),
        partials=(3, 9), rolloff=(0.9, 1.7), attack=(0.005, 0.04), decay=(0.4, 1.5), sustain=(0.2, 0.6),
        vibrato=(0, 0.004), bass=(0.7, 1.0), bass_rate=(0.5, 1), lead=(0, 1.0), cutoff=(3000, 7500),
        drive=(0, 1), noise=(0.003, 0.012), clicks=(0, 0.5), rms=(0.1, 0.18)),
    "jazz": GenreModel(
        bpm=(90, 200), kick="3000000000000000", snare="0000003000000030", hat="9000903090009030",
        swing=(0.4, 0.67), drums=(0.15, 0.45), chords=("min7", "maj7", "dom7"), beats_per_chord=(2, 4),
        strike=((1, 0.5), (2, 0), (1.5, 0)), partials=(3, 8), rolloff=(1.3, 2.2), attack=(0.002, 0.01),
        decay=(0.2, 0.8), sustain=(0.05, 0.3), vibrato=(0, 0.006), bass=(0.4, 0.7), lead=(1, 3),
        cutoff=(2500, 6000), noise=(0.005, 0.02), clicks=(0, 2), rms=(0.05, 0.12)),
    "metal": GenreModel(
        bpm=(130, 200), kick="8888888888888888", snare=_BACKBEAT, hat="9999999999999999", drums=(0.6, 1.0),
        chords=("power",), beats_per_chord=(1, 2, 4), strike=((0.25, 0), (0.5, 0)), partials=(10, 16),
        rolloff=(0.4, 0.9), attack=(0.001, 0.004), decay=(0.1, 0.4), sustain=(0.5, 0.8), key=(38, 48),
        bass_rate=(2, 4), lead=(0, 2), cutoff=(6000, 10000), drive=(6, 20), noise=(0.02, 0.06),
        rms=(0.15, 0.25)),
    "pop": GenreModel(
        bpm=(90, 130), kick="9000400090400000", snare=_BACKBEAT, hat="7050705070507050", swing=(0, 0.15),
        drums=(0.5, 0.9), chords=("maj", "min", "sus", "min7"), strike=((1, 0), (0.5, 0), (0, 0)),
        partials=(4, 10), rolloff=(0.8, 1.6), attack=(0.005, 0.04), decay=(0.3, 1.2), sustain=(0.3, 0.7),
        vibrato=(0.002, 0.006), key=(50, 62), bass=(0.4, 0.8), bass_rate=(1, 2), lead=(1, 2.5),
        cutoff=(3500, 8500), drive=(0, 1), noise=(0.002, 0.012), rms=(0.1, 0.18)),
    "reggae": GenreModel(
        bpm=(60, 95), kick="0000000090000000", snare="0000000090000000", hat=_EIGHTHS, swing=(0, 0.2),
        drums=(0.4, 0.7), strike=((1, 0.5),), partials=(4, 9), rolloff=(0.9, 1.6), attack=(0.001, 0.004),
        decay=(0.05, 0.15), sustain=(0, 0.05), key=(52, 64), bass=(0.7, 1.0), bass_rate=(1, 2),
        lead=(0, 1), cutoff=(2500, 6000), drive=(0, 1), noise=(0.005, 0.02), clicks=(0, 1),
        rms=(0.08, 0.15)),
    "rock": GenreModel(
        bpm=(90, 155), kick="9000009090000000", snare=_BACKBEAT, hat=_EIGHTHS, swing=(0, 0.2),
        drums=(0.4, 0.9), chords=("power", "maj", "min"), beats_per_chord=(2, 4, 8),
        strike=((0.5, 0), (1, 0)), partials=(5, 14), rolloff=(0.6, 1.3), attack=(0.002, 0.008),
        decay=(0.15, 0.6), sustain=(0.2, 0.6), key=(40, 55), bass=(0.4, 0.7), bass_rate=(1, 2),
        lead=(0, 1.5), cutoff=(3500, 8500), drive=(1.5, 5.5), noise=(0.005, 0.02), rms=(0.08, 0.18)),
}


def _u(rng: np.random.Generator, r: Range) -> float:
    return float(rng.uniform(r[0], r[1])) if r[1] > r[0] else float(r[0])


def _wavetable(partials: int, rolloff: float) -> np.ndarray:
    k = np.arange(1, partials + 1)
    x = np.arange(_TABLE) / _TABLE
    table = (k ** -rolloff) @ np.sin(2 * np.pi * np.outer(k, x))
    return table / np.abs(table).max()


def _oscillator(freq: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Wavetable oscillator following a per-sample frequency (Hz)."""
    phase = np.cumsum(freq)
    phase *= _TABLE / SR
    idx = phase.astype(np.int64)
    idx &= _TABLE - 1
    return table.take(idx)


def _envelope(n: int, period: float, offset: float, attack: float, decay: float,
              sustain: float) -> np.ndarray:
    """Attack / decay / sustain envelope re-struck every ``period`` seconds, with a 5 ms release."""
    per = max(2, round(period * SR))
    s = np.arange(per) / SR  # one period, looked up per sample
    env = (1 - np.exp(-s / attack)) * (sustain + (1 - sustain) * np.exp(-s / decay))
    env *= np.clip((per / SR - s) / 0.005, 0.0, 1.0)
    return env[(np.arange(n) - round(offset * SR)) % per]


def _midi_hz(m: np.ndarray) -> np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(m, dtype=np.float64) - 69) / 12)


def _unit(x: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(x * x)))
    return x / rms if rms > 1e-12 else x


def _drums(rng: np.random.Generator, m: GenreModel, n: int, beat: float) -> np.ndarray:
    """Kick, snare and hat one-shots placed on the clip's 16-step groove (per-bar variations)."""
    step = beat / 4
    steps = np.arange(int(n / SR / step) + 1)
    pos = steps % 16
    swing = _u(rng, m.swing)
    times = steps * step + step * swing * ((pos % 4 == 2) + 0.5 * (pos % 2 == 1))
    idx = np.round(times * SR).astype(np.int64)
    tt = np.arange(int(0.4 * SR)) / SR
    f0, tau = rng.uniform(45, 70), 0.03
    kick = np.sin(2 * np.pi * (f0 * tt + rng.uniform(80, 160) * tau * (1 - np.exp(-tt / tau))))
    kick *= np.exp(-tt / rng.uniform(0.08, 0.25))
    snare = 0.7 * rng.standard_normal(tt.size) + 0.5 * np.sin(2 * np.pi * rng.uniform(160, 240) * tt)
    snare *= np.exp(-tt / rng.uniform(0.05, 0.15))
    hat = np.diff(rng.standard_normal(tt.size + 1)) * np.exp(-tt / rng.uniform(0.01, 0.06))
    out = np.zeros(n)
    for pattern, sound, level in ((m.kick, kick, 1.0), (m.snare, snare, 0.5), (m.hat, hat, 0.25)):
        p = np.array([int(c) for c in pattern]) / 9
        groove = rng.random(16) < p
        hit = np.where(rng.random(steps.size) < 0.1, rng.random(steps.size) < p[pos], groove[pos])
        hit &= idx < n
        if not hit.any():
            continue
        vel = level * rng.uniform(0.6, 1.0, int(hit.sum())) * np.where(pos[hit] % 4 == 0, 1, 0.8)
        for i, v in zip(idx[hit].tolist(), vel.tolist()):
            end = min(n, i + sound.size)
            out[i:end] += v * sound[: end - i]
    return out


def synthesize(genre: str, seconds: float, seed: int = 0, index: int = 0) -> np.ndarray:
    """One clip of ``genre`` as float32 samples in [-1, 1] at 22,050 Hz."""
    if genre not in GENRE_INDEX:
        raise SyntheticError(f"'{genre}' is not a GTZAN genre (expected one of {', '.join(GENRES)}).")
    m = GENRE_MODELS[genre]
    rng = np.random.default_rng(np.random.SeedSequence([seed, GENRE_INDEX[genre], index]))
    n = max(1, round(seconds * SR))
    t = np.arange(n) / SR
    beat = 60.0 / _u(rng, m.bpm)
    # Chords: a progression of (root degree, quality) per segment, up to four voices.
    seg_len = beat * int(rng.choice(m.beats_per_chord))
    n_seg = int(n / SR / seg_len) + 1
    key = int(rng.integers(m.key[0], m.key[1] + 1))
    roots = key + rng.choice(_DEGREES, n_seg)
    roots[0] = key
    shapes = [_CHORDS[str(q)] for q in rng.choice(m.chords, n_seg)]
    notes = np.full((4, n_seg), np.nan)
    for j, shape in enumerate(shapes):
        notes[: len(shape), j] = roots[j] + np.array(shape)
    seg = np.minimum((t / seg_len).astype(np.int64), n_seg - 1)
    vib_depth = _u(rng, m.vibrato)
    vib = 1 + vib_depth * np.sin(2 * np.pi * rng.uniform(4.5, 6.5) * t)
    table = _wavetable(int(rng.integers(m.partials[0], m.partials[1] + 1)), _u(rng, m.rolloff))
    period, offset = m.strike[int(rng.integers(len(m.strike)))]
    adsr = (_u(rng, m.attack), _u(rng, m.decay), _u(rng, m.sustain))
    env = _envelope(n, period * beat if period else seg_len, offset * beat, *adsr)
    chords = np.zeros(n)
    for v in range(4):
        on = ~np.isnan(notes[v])
        if on.any():
            freq = _midi_hz(np.where(on, notes[v], 0))
            voice = _oscillator(freq[seg] * vib, table)
            chords += voice if on.all() else on[seg] * voice
    tonal = _unit(chords * env)
    # Lead: a random walk reflected inside two octaves of the key's pentatonic scale.
    rate = _u(rng, m.lead)
    if rate >= 0.25:
        note_len = beat / rate
        walk = 9 - np.abs(np.cumsum(rng.integers(-2, 3, int(n / SR / note_len) + 1)) % 18 - 9)
        pitch = key + 12 * (walk // 5) + _PENTATONIC[walk % 5]
        lead = _oscillator(_midi_hz(pitch)[np.minimum((t / note_len).astype(np.int64), pitch.size - 1)] * vib,
                           table) * _envelope(n, note_len, 0.0, *adsr)
        tonal = tonal + 0.6 * _unit(lead)
    drive = _u(rng, m.drive)
    if drive > 0.1:
        tonal = np.tanh(drive * tonal / np.abs(tonal).max()) / math.tanh(drive)
    # Bass: the chord root, low, struck ``bass_rate`` times a beat (octave jumps at 2 and above).
    bass_rate = float(rng.choice(m.bass_rate))
    strike_no = (t / (beat / bass_rate)).astype(np.int64)
    bass_hz = _midi_hz(np.maximum(roots - 24, 28))[seg] * (1 + (strike_no % 2) if bass_rate >= 2 else 1)
    bass = _oscillator(bass_hz, _wavetable(3, 2.0))
    bass *= _envelope(n, beat / bass_rate, 0.0, 0.005, 0.3, 0.3)
    music = _unit(tonal) + _u(rng, m.bass) * _unit(bass)
    drum_level = _u(rng, m.drums)
    if drum_level > 0:
        music = music + drum_level * _unit(_drums(rng, m, n, beat))
    cutoff = min(_u(rng, m.cutoff), 0.45 * SR)
    music = _unit(signal.sosfilt(signal.butter(2, cutoff, fs=SR, output="sos"), music))
    music += _u(rng, m.noise) * rng.standard_normal(n)
    n_clicks = rng.poisson(_u(rng, m.clicks) * n / SR)
    music[rng.integers(0, n, n_clicks)] += rng.uniform(-3, 3, n_clicks)
    return np.clip(_unit(music) * _u(rng, m.rms), -1.0, 1.0).astype(np.float32)
