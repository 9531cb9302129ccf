"""Seconds per clip of Wav2Vec2 base (random init) on 30 s, 16 kHz clips, plain torch (no Ray).

    python bench/wav2vec2_throughput.py --device cuda --bf16 --batch 8 --steps 10
    python bench/wav2vec2_throughput.py --device cpu --batch 1 --steps 1 --clip-seconds 2   # smoke test

Two costs decide how exp3's waveform rows are run:

* ``frozen``: one embedding pass (eval mode, no autograd) -- what caching the embeddings costs per clip;
* ``progressive``: one full training step after the unfreeze (transformer and feature projection
  trainable, conv feature encoder frozen, SpecAugment/LayerDrop on, AdamW) -- the per-clip cost of each
  end-to-end epoch.

Random weights time the same as pretrained ones; one untimed warm-up step comes first. The estimate to
compare with is ~1.2 TFLOP per 30 s clip for a training step (DEEP_MODELS_NOTES.md, section 4).
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
from transformers import Wav2Vec2Config, Wav2Vec2Model

from raygenre.models.waveform import SAMPLE_RATE, build_waveform_model, normalize_clip, param_counts

BENCH_VARIANTS = ("frozen", "progressive", "layer_probe")
# DEEP_MODELS_NOTES.md section 4: ~1.2 TFLOP for a training step on a 30 s clip (conv encoder frozen);
# an inference-only embedding pass is about a third of that (forward only). Estimates, scaled by length.
TRAIN_STEP_TFLOP_PER_30S = 1.2
EMBED_TFLOP_PER_30S = 0.4


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _build(variant: str, device: torch.device, batch: int) -> torch.nn.Module:
    backbone = Wav2Vec2Model(Wav2Vec2Config())
    params: dict[str, object] = {}
    if variant == "progressive":
        # Unfrozen from the start (the cost after epoch 5); LayerNorm only when BatchNorm cannot train on 1 row.
        params = {"frozen_epochs": 0, "norm": "batch" if batch > 1 else "layer"}
    return build_waveform_model(variant, backbone=backbone, params=params).to(device)


def wav2vec2_seconds_per_clip(variant: str, device: str | torch.device, bf16: bool, batch: int, steps: int,
                              clip_seconds: float = 30.0) -> float:
    """Mean wall seconds per clip over ``steps`` timed batches of ``batch`` clips (after one warm-up)."""
    return _measure(variant, device, bf16, batch, steps, clip_seconds)[0]


def _measure(variant: str, device: str | torch.device, bf16: bool, batch: int, steps: int,
             clip_seconds: float) -> tuple[float, int, int]:
    """(seconds per clip, total params, trainable params) of one timed run."""
    if variant not in BENCH_VARIANTS:
        raise ValueError(f"unknown variant {variant!r}: choose one of {', '.join(BENCH_VARIANTS)}")
    dev = torch.device(device)
    torch.manual_seed(0)
    model = _build(variant, dev, batch)
    samples = int(round(clip_seconds * SAMPLE_RATE))
    wave = normalize_clip(torch.randn(batch, samples, device=dev), samples)
    labels = torch.randint(0, 10, (batch,), device=dev)
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16)

    if variant == "progressive":
        model.train()
        optimizer = torch.optim.AdamW(model.optimizer_parameters(), lr=1e-4)

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                loss = torch.nn.functional.cross_entropy(model(wave), labels)
            loss.backward()
            optimizer.step()
    else:
        model.eval()

        def step() -> None:
            with torch.no_grad(), autocast:
                model.embed(wave)

    step()  # warm-up: kernel selection, allocator, optimizer state
    _sync(dev)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(dev)
    seconds = (time.perf_counter() - start) / (steps * batch)
    return (seconds, *param_counts(model))


def measure_row(variant: str, device: str | torch.device, bf16: bool, batch: int, steps: int,
                clip_seconds: float = 30.0) -> dict[str, object]:
    """One variant's timing as a result row, with the FLOP rate the per-clip estimate implies."""
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    seconds, total, trainable = _measure(variant, dev, bf16, batch, steps, clip_seconds)
    tflop = (TRAIN_STEP_TFLOP_PER_30S if variant == "progressive" else EMBED_TFLOP_PER_30S) * clip_seconds / 30
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or platform.machine()
    return {
        "variant": variant, "device": str(dev), "device_name": name, "threads": torch.get_num_threads(),
        "bf16": bf16, "batch": batch, "steps": steps, "clip_seconds": clip_seconds,
        "seconds_per_clip": round(seconds, 5), "clips_per_second": round(1 / seconds, 2),
        "est_tflop_per_clip": round(tflop, 3), "est_tflop_per_s": round(tflop / seconds, 1),
        "params_total": total, "params_trainable": trainable,
        "peak_gib": round(torch.cuda.max_memory_allocated(dev) / 2**30, 2) if dev.type == "cuda" else None,
        "torch": torch.__version__,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (what the trainer uses on CUDA)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--clip-seconds", type=float, default=30.0)
    parser.add_argument("--variants", nargs="+", default=["frozen", "progressive"], choices=BENCH_VARIANTS)
    args = parser.parse_args(argv)
    dev = torch.device(args.device)
    if dev.type == "cuda":
        torch.set_float32_matmul_precision("high")  # TF32 for whatever bf16 autocast leaves in fp32
    for variant in args.variants:
        print(json.dumps(measure_row(variant, dev, args.bf16, args.batch, args.steps, args.clip_seconds)), flush=True)


if __name__ == "__main__":
    main()
