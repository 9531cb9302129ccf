"""Training images/s of every spectrogram network and variant: plain torch (a), and in Ray Train (b).

Part (a): the ceiling a Ray Train worker can reach. Random weights, random uint8 128x128x3 images
held in memory on the device (four batches, cycled), the same per-batch input path as training
(:func:`to_model_input`: permute, /255, normalisation), cross-entropy, AdamW over all parameters
(frozen ones get no gradient and are skipped, as in the trainer). Each (model, variant) is timed over
``--steps`` steps after ``--warmup`` untimed ones, with the device synchronised at both ends.

Frozen-trunk variants (AlexNet/VGG16 ``fc6``/``fc7``/``fc8``) also report the **cached-head** speed:
the trunk's activations for the four batches are computed once, then only the head trains on them,
which is what a trainer that caches activations pays per epoch after the first. ResNet18
``last_then_all`` is timed in its first phase (only ``fc`` trains, full forward); its second phase
costs what ``finetune_all`` does.

Part (b), ``--ray``: the same step inside a Ray Train ``TorchTrainer`` worker, fed by Ray Data the way
the spectrogram trials are (:mod:`raygenre.train.torch_runner`: mel shard rows read with pyarrow, a
materialized dataset of uint8 images, ``iter_torch_batches`` with prefetching, conversion on the device).
The rows come from ``--shards`` (a prepared shard set) or from a temporary shard set of random images
of ``--size``. One trainer times every network in turn, on one worker holding as many CPUs as part (a)
had threads, and the ratio b/a says what the ingest and Ray cost (goal >= 0.9). Ray is imported only
on this path, so part (a) runs where Ray is not installed.

Importing this file imports no Ray (a test checks it); ``plain_torch_images_per_s`` and
``cached_head_images_per_s`` are meant to be imported by other benchmarks::

    .venv/bin/python bench/train_throughput.py --device cpu --batch 8 --steps 3 --warmup 1 --models cnn,crnn
    .venv/bin/python bench/train_throughput.py --device cuda --bf16 --channels-last --batch 128 --json out.json
    .venv/bin/python bench/train_throughput.py --device cpu --batch 16 --steps 4 --warmup 1 --ray

``--bf16`` autocasts to bfloat16 on CUDA only (no GradScaler needed); on a CPU it is ignored.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from raygenre.models.spectrogram import SPECTROGRAM_VARIANTS, build_spectrogram_model, to_model_input

POOL_BATCHES = 4  # distinct in-memory batches, so no step reuses the previous step's exact tensors
IMAGE_SIZE = 128  # default --size


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, bf16: bool) -> torch.autocast:
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda")


def _data(batch: int, device: torch.device, seed: int = 0, size: int = IMAGE_SIZE
          ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """POOL_BATCHES batches of random uint8 NHWC images and labels, already on ``device``."""
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8, generator=g).to(device)
          for _ in range(POOL_BATCHES)]
    ys = [torch.randint(0, 10, (batch,), generator=g).to(device) for _ in range(POOL_BATCHES)]
    return xs, ys


def _timed(step: Callable[[int], None], device: torch.device, batch: int, steps: int, warmup: int,
           min_seconds: float = 0.0) -> float:
    """images/s over ``steps`` calls of ``step(i)`` after ``warmup`` untimed ones (more rounds to ``min_seconds``)."""
    for i in range(warmup):
        step(i)
    _sync(device)
    done, start = 0, time.perf_counter()
    while True:  # rounds of ``steps``, synchronised only between rounds
        for _ in range(steps):
            step(warmup + done)
            done += 1
        _sync(device)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return batch * done / elapsed


def training_step(name: str, variant: str, dev: torch.device, bf16: bool, channels_last: bool
                  ) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """One training step of a fresh random-weight model on a uint8 NHWC batch: the step parts (a) and (b) time."""
    model = build_spectrogram_model(name, variant).to(dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step(images: torch.Tensor, labels: torch.Tensor) -> None:
        x = to_model_input(images, model.normalization, channels_last)
        with _autocast(dev, bf16):
            loss = nn.functional.cross_entropy(model(x), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def plain_torch_images_per_s(name: str, variant: str, device: str, batch: int, steps: int, warmup: int,
                             bf16: bool, channels_last: bool, size: int = IMAGE_SIZE) -> float:
    """Training images/s of the whole model (forward, backward, AdamW step) from uint8 batches on ``device``."""
    dev = torch.device(device)
    step = training_step(name, variant, dev, bf16, channels_last)
    xs, ys = _data(batch, dev, size=size)
    return _timed(lambda i: step(xs[i % POOL_BATCHES], ys[i % POOL_BATCHES]), dev, batch, steps, warmup)


def cached_head_images_per_s(name: str, variant: str, device: str, batch: int, steps: int, warmup: int,
                             bf16: bool, channels_last: bool, size: int = IMAGE_SIZE, min_seconds: float = 0.5
                             ) -> float | None:
    """Training images/s of the head alone on precomputed trunk activations; None without a frozen trunk.

    A head step takes about a millisecond, so it repeats past ``steps`` until ``min_seconds`` have passed:
    a few steps alone would time the scheduler's noise.
    """
    dev = torch.device(device)
    model = build_spectrogram_model(name, variant).to(dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    trunk, head = model.frozen_trunk(), model.head()
    if trunk is None or head is None:
        return None
    model.train()
    xs, ys = _data(batch, dev, size=size)
    with torch.no_grad(), _autocast(dev, bf16):
        features = [trunk(to_model_input(x, model.normalization, channels_last)).float() for x in xs]
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-4)

    def step(i: int) -> None:
        with _autocast(dev, bf16):
            loss = nn.functional.cross_entropy(head(features[i % POOL_BATCHES]), ys[i % POOL_BATCHES])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return _timed(step, dev, batch, steps, warmup, min_seconds)


def machine(device: str) -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    info: dict[str, Any] = {"cpu": cpu, "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                            "python": platform.python_version(), "torch": torch.__version__}
    try:
        import torchvision

        info["torchvision"] = torchvision.__version__
    except ImportError:
        pass
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cudnn_tf32"] = torch.backends.cudnn.allow_tf32
        info["matmul_precision"] = torch.get_float32_matmul_precision()
    return info


def selected(models: str, variants: str | None) -> list[tuple[str, str]]:
    names = [m.strip() for m in models.split(",") if m.strip()]
    unknown = [m for m in names if m not in SPECTROGRAM_VARIANTS]
    if unknown:
        raise SystemExit(f"error: unknown model(s) {', '.join(unknown)}; known: {', '.join(SPECTROGRAM_VARIANTS)}")
    wanted = {v.strip() for v in variants.split(",")} if variants else None
    return [(m, v) for m in names for v in SPECTROGRAM_VARIANTS[m] if wanted is None or v in wanted]


def _random_shards(root: str, rows: int, size: int, seed: int = 0) -> str:
    """A shard set of random mel-sized images in the prepare layout (``mel/``), for part (b) without data."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from raygenre.genres import GENRES

    rng = np.random.default_rng(seed)
    ids = [f"{GENRES[i % len(GENRES)]}.{i:05d}" for i in range(rows)]
    images = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8).tobytes() for _ in ids]
    table = pa.table({"clip_id": ids, "label": [i.split(".")[0] for i in ids], "parent_id": ids,
                      "transform": ["original"] * rows, "mel": pa.array(images, pa.binary())})
    os.makedirs(os.path.join(root, "mel"), exist_ok=True)
    pq.write_table(table, os.path.join(root, "mel", "part-0.parquet"))
    return root


def _ray_worker(config: dict[str, Any]) -> None:
    """Part (b) inside the Train worker: every network's step on batches from the Ray Data shard."""
    import tempfile

    import ray.train

    torch.set_num_threads(config["threads"])
    dev = torch.device("cuda" if config["device"] == "cuda" and torch.cuda.is_available() else "cpu")
    shard = ray.train.get_dataset_shard("train")
    batch = config["batch"]

    def endless():  # epochs of the shard, as a trainer iterates them
        cuda = dev.type == "cuda"
        while True:
            for b in shard.iter_torch_batches(batch_size=batch, device="auto" if cuda else "cpu", pin_memory=cuda,
                                              prefetch_batches=2, drop_last=True):
                yield b["image"], b["label"]

    out: dict[str, Any] = {}
    for name, variant in config["pairs"]:
        torch.manual_seed(0)
        try:
            step = training_step(name, variant, dev, config["bf16"], config["channels_last"])
            batches = endless()
            out[f"{name}/{variant}"] = _timed(lambda i, step=step, batches=batches: step(*next(batches)), dev,
                                              batch, config["steps"], config["warmup"])
        except torch.cuda.OutOfMemoryError as exc:
            out[f"{name}/{variant}"] = f"OutOfMemoryError: {str(exc).splitlines()[0]}"
        finally:
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    with tempfile.TemporaryDirectory() as folder:
        with open(os.path.join(folder, "results.json"), "w") as f:
            json.dump(out, f)
        ray.train.report({"networks": len(out)}, checkpoint=ray.train.Checkpoint.from_directory(folder))


def ray_train_images_per_s(pairs: list[tuple[str, str]], args: argparse.Namespace, threads: int
                           ) -> dict[str, Any]:
    """Part (b): images/s per network inside one Ray Train worker fed by Ray Data (Ray imported only here)."""
    import tempfile

    import ray
    import ray.train
    from ray.train.torch import TorchTrainer

    from raygenre.data.shards import load_table
    from raygenre.train.torch_runner import read_rows, to_dataset

    cuda = args.device == "cuda"
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=max(threads, os.cpu_count() or 1), include_dashboard=False, log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            shard_dir = args.shards or _random_shards(tmp, args.rows, args.size)
            ids = load_table(shard_dir, "mel", columns=["clip_id"]).column("clip_id").to_pylist()
            images, labels = read_rows(shard_dir, ids)
            config = {"pairs": pairs, "threads": threads, **{k: getattr(args, k) for k in (
                "device", "batch", "steps", "warmup", "bf16", "channels_last")}}
            trainer = TorchTrainer(
                _ray_worker, train_loop_config=config,
                scaling_config=ray.train.ScalingConfig(num_workers=1, use_gpu=cuda, resources_per_worker={
                    "CPU": threads, **({"GPU": 1} if cuda else {})}),
                run_config=ray.train.RunConfig(storage_path=os.path.join(tmp, "train"), name="bench"),
                datasets={"train": to_dataset(images, labels)},
                dataset_config=ray.train.DataConfig(datasets_to_split=[]))
            with trainer.fit().checkpoint.as_directory() as folder:
                with open(os.path.join(folder, "results.json")) as f:
                    return json.load(f)
    finally:
        if started:
            ray.shutdown()


def _image_size(args: argparse.Namespace) -> int:
    """--size, or the side of the images in --shards (parts a and b must time the same input)."""
    if not args.shards:
        return args.size
    from raygenre.data.shards import load_table, mel_array

    table = load_table(args.shards, "mel", columns=["clip_id", "mel"])
    return int(mel_array(table.slice(0, 1)).shape[1])


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but torch sees no CUDA device")
    args.size = _image_size(args)
    keys = ("device", "bf16", "channels_last", "batch", "steps", "warmup", "threads", "size", "ray")
    settings = {k: getattr(args, k, None) for k in keys}
    info = machine(args.device)
    print(f"# {json.dumps(info)}")
    print(f"# {json.dumps(settings)}" + ("  (bf16 ignored on cpu)" if args.bf16 and args.device == "cpu" else ""))
    results = []
    pairs = selected(args.models, args.variants)
    for name, variant in pairs:
        torch.manual_seed(0)
        row: dict[str, Any] = {"model": name, "variant": variant}
        common = (name, variant, args.device, args.batch, args.steps, args.warmup, args.bf16, args.channels_last,
                  args.size)
        try:
            row["images_per_s"] = plain_torch_images_per_s(*common)
            row["cached_head_images_per_s"] = cached_head_images_per_s(*common)
        except torch.cuda.OutOfMemoryError as exc:
            row["error"] = f"OutOfMemoryError: {str(exc).splitlines()[0]}"
        finally:
            if args.device == "cuda":
                torch.cuda.empty_cache()
        results.append(row)
        if "error" in row:
            print(f"{name:>8} {variant:<13} {row['error']}", flush=True)
            continue
        cached = row["cached_head_images_per_s"]
        extra = f"   cached head {cached:10.1f} img/s" if cached is not None else ""
        print(f"{name:>8} {variant:<13} {row['images_per_s']:10.1f} img/s{extra}", flush=True)
    report = {"benchmark": "train_throughput", "part": "a_plain_torch", "machine": info, "settings": settings,
              "results": results}
    if args.compare_fp32 and args.bf16 and args.device == "cuda":
        print("# (a) baseline: the same steps in fp32, NCHW; speed-up = bf16(+channels_last) / fp32")
        for row in results:
            if "error" in row:
                continue
            torch.manual_seed(0)
            fp32 = plain_torch_images_per_s(row["model"], row["variant"], args.device, args.batch, args.steps,
                                             args.warmup, False, False, args.size)
            row["fp32_images_per_s"], row["speedup_vs_fp32"] = fp32, row["images_per_s"] / fp32
            print(f"{row['model']:>8} {row['variant']:<13} fp32 {fp32:10.1f} img/s   speed-up "
                  f"{row['speedup_vs_fp32']:.2f}x", flush=True)
    if args.wav2vec2:
        report["wav2vec2"] = wav2vec2_rows(args)
    if args.ray:
        ray_results = ray_train_images_per_s(pairs, args, torch.get_num_threads())
        print("# (b) Ray Train + Ray Data, and b/a")
        for row in results:
            b = ray_results.get(f"{row['model']}/{row['variant']}")
            row["ray_images_per_s"] = b
            if isinstance(b, float) and isinstance(row.get("images_per_s"), float):
                row["ratio_b_a"] = b / row["images_per_s"]
                print(f"{row['model']:>8} {row['variant']:<13} a {row['images_per_s']:10.1f}  b {b:10.1f} img/s"
                      f"   b/a {row['ratio_b_a']:.2f}", flush=True)
            else:
                print(f"{row['model']:>8} {row['variant']:<13} b: {b}", flush=True)
        report["part"] = "a_plain_torch+b_ray_train"
    return report


def wav2vec2_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Wav2Vec2 base (random init, 30 s clips): seconds per clip, and the FLOP rate that implies."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from wav2vec2_throughput import measure_row  # a sibling benchmark; it imports transformers

    print(f"# Wav2Vec2 base, {args.w2v_seconds:g} s clips, batch {args.w2v_batch}"
          f"{', bf16' if args.bf16 and args.device == 'cuda' else ', fp32'}")
    rows = []
    for variant in ("frozen", "progressive", "layer_probe"):
        row = measure_row(variant, args.device, args.bf16 and args.device == "cuda", args.w2v_batch,
                          max(2, args.steps // 2), args.w2v_seconds)
        rows.append(row)
        print(f"{'wav2vec2':>8} {variant:<13} {row['seconds_per_clip'] * 1e3:10.2f} ms/clip   "
              f"~{row['est_tflop_per_s']:.0f} TFLOP/s (estimate {row['est_tflop_per_clip']:.2f} TFLOP/clip)",
              flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast (CUDA only)")
    parser.add_argument("--channels-last", action="store_true", help="channels_last model and inputs")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--models", default=",".join(SPECTROGRAM_VARIANTS), help="comma-separated model names")
    parser.add_argument("--variants", default=None, help="comma-separated variants to keep (default: all)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's). On a CPU shared with other jobs use 1: tiny ops "
                             "wait at every thread barrier for a descheduled sibling")
    parser.add_argument("--size", type=int, default=IMAGE_SIZE, help="image side in pixels (default 128)")
    parser.add_argument("--ray", action="store_true", help="also part (b): the step in Ray Train fed by Ray Data")
    parser.add_argument("--shards", default=None, metavar="DIR",
                        help="(b) a prepared shard set (its mel/ rows; sets --size); default: random images")
    parser.add_argument("--rows", type=int, default=800, help="(b) rows of the random shard set (default 800)")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--compare-fp32", action="store_true",
                        help="(a, CUDA with --bf16) also time each step in fp32 NCHW and print the speed-up")
    parser.add_argument("--wav2vec2", action="store_true",
                        help="also time Wav2Vec2 base (frozen embedding pass, progressive training step)")
    parser.add_argument("--w2v-batch", type=int, default=8, help="Wav2Vec2 clips per batch (default 8)")
    parser.add_argument("--w2v-seconds", type=float, default=30.0, help="Wav2Vec2 clip length (default 30 s)")
    args = parser.parse_args(argv)
    if min(args.batch, args.steps, args.size, args.rows) < 1 or args.warmup < 0:
        parser.error("--batch, --steps, --size and --rows must be >= 1 and --warmup >= 0")
    if args.ray and args.rows < args.batch and not args.shards:
        parser.error("--rows must hold at least one --batch")
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be >= 1")
        torch.set_num_threads(args.threads)
    report = run(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
