"""Where a paper-settings trial's time goes: fixed per-trial costs (a), and the real loop on a GPU (b).

**(a) ``overhead``** (any machine, Ray): the same small spectrogram trials run through the real path
(:func:`raygenre.train.tune_runner.run_trials`: a Tune trial per row, rows read from mel shards, a Ray
Train worker group or the in-trial loop, checkpoints, the record written on the driver) with the compute
made small (ResNet18 trained whole on 32 px images of a few clips: a real 134 MB AdamW checkpoint, a
fraction of a second of arithmetic per epoch), five ways in one run, each against the first:

1. before this change: a worker group per trial, a checkpoint every epoch, rows streamed from Ray Data,
   one trial at a time (a whole GPU per trial: ``max_concurrent_trials: 1`` stands for it on a CPU);
2. + the checkpoint policy (``train.checkpoint.every_s: 60``: only at the end here);
3. + data once (``train.device_data_mb``: the rows move to the device once);
4. + the loop in the trial (``train.workers: 0``: no worker group);
5. + packing (``train.gpu_share: 0.25`` on one logical GPU: four trials at once).

**(b) ``loop``** (no Ray; a GPU machine): the real loop (:func:`raygenre.train.local_run.run_local`, the
in-trial session on in-memory rows) for the 17 exp1/exp2 rows at paper settings: 30 epochs of batch 32,
128 px, 800 training clips (x6 for exp2), 200 evaluation clips, random weights, synthetic uint8 mel images.
Per row: seconds, the GPU busy fraction (the same row's training steps back to back on device-resident
batches, timed with CUDA events, over the loop's wall time) and peak GPU memory (which sets
``train.gpu_share``). ``--smoke`` shrinks everything so it runs on a CPU (tests run it there, with Ray,
pyarrow and pydantic unimportable)::

    .venv/bin/python bench/paper_time.py overhead --trials 4 --epochs 3
    python bench/paper_time.py loop --device cuda --json out.json      # on a GPU machine with only torch
    .venv/bin/python bench/paper_time.py loop --smoke
    .venv/bin/python bench/paper_time.py memory        # per-row GPU memory, counted on a CPU

**``memory``** counts, without a GPU, what each row holds at paper settings (see :func:`memory_rows`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from raygenre.train.local_run import PAPER_TRAIN, run_local  # noqa: E402

#: exp1's 12 rows and exp2's 5 (x6 training rows): (experiment, model, variant, learning rate, params)
ROWS = [("exp1", m, v, lr, p) for m, v, lr, p in (
    ("cnn", "default", 1e-3, {}), ("crnn", "default", 1e-3, {}),
    *(("alexnet", v, 1e-3, {}) for v in ("fc6", "fc7", "fc8")), ("alexnet", "finetune_all", 1e-4, {}),
    *(("vgg16", v, 1e-3, {}) for v in ("fc6", "fc7", "fc8")), ("vgg16", "finetune_all", 1e-4, {}),
    ("resnet18", "last_then_all", 1e-4, {"head_epochs": 5}), ("resnet18", "finetune_all", 1e-4, {}))] + \
    [("exp2", m, v, lr, p) for m, v, lr, p in (
        ("cnn", "default", 1e-3, {}), ("crnn", "default", 1e-3, {}), ("alexnet", "finetune_all", 1e-4, {}),
        ("vgg16", "finetune_all", 1e-4, {}), ("resnet18", "last_then_all", 1e-4, {"head_epochs": 5}))]


# --------------------------------------------------------------------------------------------------
# (b) the real loop, Ray-free
# --------------------------------------------------------------------------------------------------

def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _images(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), np.arange(n) % 10


def busy_seconds(build: dict, train: dict, x: np.ndarray, y: np.ndarray, device: torch.device) -> float:
    """Seconds the device needs for the row's training steps run back to back on device-resident batches
    (the last phase of the model, trunk activations cached as the loop caches them): CUDA events on a GPU,
    the wall clock on a CPU. The loop's wall time over this is its overhead."""
    from raygenre.models.network_state import build_model
    from raygenre.models.optim import make_optimizer
    from raygenre.train.torch_loop import amp_dtype, cache_features, run_batches

    model = build_model(build, {"source": "random"}, 0).to(device)
    channels_last = device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.set_epoch(int(train["epochs"]) - 1)
    dtype = amp_dtype(train["precision"], device)
    bs = int(train["batch_size"])
    xs = torch.as_tensor(x).to(device)
    ys = torch.as_tensor(y, dtype=torch.long).to(device)
    batches = [(model.model_input({"image": xs[i:i + bs]}, channels_last), ys[i:i + bs]) for i in range(0, len(ys), bs)]
    trunk = model.frozen_trunk()
    module = model
    if trunk is not None:
        feats, labels = cache_features(trunk, batches, dtype)
        batches = [(feats[i:i + bs], labels[i:i + bs]) for i in range(0, len(labels), bs)]
        module = model.head()
    optimizer = make_optimizer(model.parameters(), train["optimizer"], train["learning_rate"], train["weight_decay"])
    run_batches(module, batches[:2], optimizer, dtype)  # warm-up (cuDNN choices, allocator)
    _sync(device)
    epochs = int(train["epochs"])
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run_batches(module, batches, optimizer, dtype)
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end) / 1000 * epochs
    t0 = time.perf_counter()
    run_batches(module, batches, optimizer, dtype)
    return (time.perf_counter() - t0) * epochs


def run_loop(args: argparse.Namespace) -> list[dict]:
    device = torch.device(args.device)
    size, clips, evals, epochs = ((64, 20, 10, 1) if args.smoke else (args.size, args.clips, 200, args.epochs))
    batch = 8 if args.smoke else args.batch
    wanted = set(args.rows.split(",")) if args.rows else None
    rows = [r for r in ROWS if wanted is None or f"{r[1]}:{r[2]}" in wanted or r[1] in wanted]
    out = []
    for exp, name, variant, lr, params in rows:
        factor = 6 if exp == "exp2" else 1
        side = 64 if args.smoke and name == "alexnet" else 32 if args.smoke else size  # AlexNet needs >= 63 px
        x, y = _images(clips * factor, side, 0)
        ex, ey = _images(evals, side, 1)
        build = {"name": name, "family": "spectrogram", "variant": variant, "params": dict(params)}
        if args.smoke and name == "resnet18":
            build["params"] = {**params, "head_epochs": 0 if variant == "finetune_all" else 1}
        train = {**PAPER_TRAIN, "epochs": epochs, "batch_size": batch, "learning_rate": lr}
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        with tempfile.TemporaryDirectory() as folder:
            _sync(device)
            t0 = time.perf_counter()
            final = run_local(build, train, (x, y), (ex, ey), os.path.join(folder, "ck"), device=device,
                              threads=args.threads)
            _sync(device)
            wall = time.perf_counter() - t0
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
        busy = busy_seconds(build, train, x, y, device)
        item = {"experiment": exp, "model": name, "variant": variant, "train_rows": len(y), "epochs": epochs,
                "seconds": round(wall, 3), "busy_s": round(busy, 3), "busy_fraction": round(min(busy / wall, 1), 3),
                "peak_gib": round(peak, 2) if peak is not None else None,
                "checkpoint_writes": final.get("checkpoint_writes"), "checkpoint_mb": round(
                    (final.get("checkpoint_bytes") or 0) / 2**20, 1), "data_once_s": final.get("data_once_s")}
        out.append(item)
        print(f"{exp} {name:8s} {variant:13s} rows {len(y):5d}: {wall:8.2f} s, device busy {busy:7.2f} s "
              f"({item['busy_fraction']:.0%}), peak {item['peak_gib']} GiB, checkpoints "
              f"{item['checkpoint_writes']} ({item['checkpoint_mb']} MB)", flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    total, busy = sum(r["seconds"] for r in out), sum(r["busy_s"] for r in out)
    print(f"all {len(out)} rows: {total:.1f} s, device busy {busy:.1f} s ({busy / max(total, 1e-9):.0%})")
    return out


def memory_rows(args: argparse.Namespace) -> list[dict]:
    """Per row, without a GPU: the trained state (fp32 weights, gradients and Adam's two moments of what trains,
    fp32 weights of a frozen trunk), the tensors autograd keeps for backward in one bf16-autocast training step
    of ``--batch`` images (counted by a saved-tensors hook on the CPU), and the training set held on the
    device. Their sum plus ~1 GiB of CUDA context and cuDNN workspace is the estimate ``gpu_share`` rests on."""
    from raygenre.models.network_state import build_model

    out = []
    saved = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[0] += t.numel() * t.element_size()
        return t

    for exp, name, variant, _, params in ROWS:
        model = build_model({"name": name, "family": "spectrogram", "variant": variant, "params": dict(params)},
                            {"source": "random"}, 0)
        model.set_epoch(10**6)  # the last phase: everything that ever trains does
        total = sum(p.numel() for p in model.parameters())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        state = 4 * total + (3 * 4 + 2) * trainable  # + autocast's bf16 copies of the trained weights
        saved[0] = 0
        x = torch.as_tensor(_images(args.batch, args.size, 0)[0])
        trunk = model.frozen_trunk()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast("cpu", torch.bfloat16):
            inputs = model.model_input({"image": x})
            if trunk is not None:  # the loop trains the head on cached trunk activations
                with torch.no_grad():
                    inputs = trunk(inputs).float()
            (model.head() if trunk is not None else model)(inputs).float().sum().backward()
        rows = args.clips * (6 if exp == "exp2" else 1)
        data = rows * args.size * args.size * 3  # uint8 images held on the device (data once)
        if trunk is not None:  # and the trunk's float32 activations of every training row, cached once
            data += rows * inputs[0].numel() * 4
        gib = (state + saved[0] + data) / 2**30
        item = {"experiment": exp, "model": name, "variant": variant, "params": total, "trainable": trainable,
                "state_gib": round(state / 2**30, 2), "activations_gib": round(saved[0] / 2**30, 2),
                "data_gib": round(data / 2**30, 2), "estimate_gib": round(gib + 1.0, 2)}
        out.append(item)
        print(f"{exp} {name:8s} {variant:13s} params {total / 1e6:6.1f} M (trainable {trainable / 1e6:6.1f} M): "
              f"state {item['state_gib']:5.2f} + saved activations {item['activations_gib']:5.2f} + data "
              f"{item['data_gib']:4.2f} + ~1 GiB context -> {item['estimate_gib']:5.2f} GiB", flush=True)
    return out


# --------------------------------------------------------------------------------------------------
# (a) per-trial fixed costs through the real path (Ray)
# --------------------------------------------------------------------------------------------------

VARIANTS = [  # (label, train overrides, resources overrides)
    ("before: worker group, checkpoint every epoch, streamed, 1 trial per GPU",
     {"workers": 1, "gpus_per_worker": 0, "checkpoint": {"every_s": 0}, "device_data_mb": 0},
     {"max_concurrent_trials": 1}),
    ("+ checkpoint policy (every_s 60)", {"workers": 1, "gpus_per_worker": 0, "device_data_mb": 0},
     {"max_concurrent_trials": 1}),
    ("+ data once on the device", {"workers": 1, "gpus_per_worker": 0}, {"max_concurrent_trials": 1}),
    ("+ loop in the trial (workers 0)", {"workers": 0, "gpu_share": 1.0}, {}),
    ("+ packing (gpu_share 0.25)", {"workers": 0, "gpu_share": 0.25}, {}),
]
#: the first way once more at the end: how far the same run moves between repeats on this machine
AGAIN = ("before, again (the noise of this machine)", *VARIANTS[0][1:])


def _write_shards(root: Path, clips_per_genre: int, size: int) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from raygenre.genres import GENRES

    rng = np.random.default_rng(0)
    for folder in ("mel", "mel_augmented"):
        items = [(f"{g}.{i:05d}" + ("~a0" if folder != "mel" else ""), g, f"{g}.{i:05d}",
                  rng.integers(0, 256, (size, size, 3), dtype=np.uint8).tobytes())
                 for g in GENRES for i in range(clips_per_genre)]
        cols = list(zip(*items))
        (root / folder).mkdir(parents=True)
        pq.write_table(pa.table({"clip_id": cols[0], "label": cols[1], "parent_id": cols[2],
                                 "transform": ["original"] * len(items), "mel": pa.array(cols[3], pa.binary())}),
                       root / folder / "part-0.parquet")
    return [f"{g}.{i:05d}" for g in GENRES for i in range(clips_per_genre)]


def run_overhead(args: argparse.Namespace) -> list[dict]:
    import ray

    from raygenre.config import ExperimentConfig
    from raygenre.records import read_records
    from raygenre.storage import RunPath
    from raygenre.train.plan import plan_experiment
    from raygenre.train.tune_runner import run_trials

    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    ray.init(address="local", num_cpus=args.cpus, num_gpus=1, include_dashboard=False, log_to_driver=False)
    root = Path(tempfile.mkdtemp(prefix="paper_time_"))
    ids = _write_shards(root / "shards", args.clips, args.size)
    inputs = {"mel": {"shard_dir": str(root / "shards"), "ids": ids}}
    out = []
    print(f"{args.trials} trials x {args.epochs} epochs of {args.model}, {len(ids)} clips of {args.size} px; "
          f"Ray with {args.cpus} CPUs and 1 logical GPU on {os.cpu_count()} cores ({platform.machine()})")
    for k, (label, train, resources) in enumerate(VARIANTS + [AGAIN]):
        name, variant = args.model.split(":")
        cfg = ExperimentConfig.model_validate({
            "experiment": "exp1", "prepare": {"representations": ["mel"]},
            "models": [{"name": name, "variant": variant}], "weights": {"source": "random"},
            "split": {"test_fraction": 0.5, "seeds": list(range(args.trials))},
            "train": {"optimizer": "adamw", "epochs": args.epochs, "batch_size": 8, **train},
            "resources": resources})
        run_dir = RunPath.of(str(root / f"run{k}"))
        settings = {"train_storage": str(root / f"train{k}"), "run": {"data_hash": f"v{k}"}, "cpus_per_trial": 1}
        t0 = time.perf_counter()
        run_trials(cfg, "exp1-mel", plan_experiment(cfg), inputs, settings, run_dir)
        wall = time.perf_counter() - t0
        records = [r for r in read_records(run_dir) if r["status"] == "ok"]
        mean = {key: sum(r["timings"].get(key, 0.0) for r in records) / max(len(records), 1)
                for key in ("total_s", "fit_s", "checkpoint_s", "checkpoint_bytes", "checkpoint_writes")}
        item = {"variant": label, "wall_s": round(wall, 2), "ok": len(records),
                **{k: round(v, 3) for k, v in mean.items()}}
        item["ratio"] = round(wall / out[0]["wall_s"], 3) if out else 1.0
        out.append(item)
        print(f"{label:75s} wall {wall:6.1f} s ({item['ratio']:.2f} x before); per trial: total "
              f"{mean['total_s']:.1f} s, fit {mean['fit_s']:.1f} s, {mean['checkpoint_writes']:.0f} checkpoints "
              f"{mean['checkpoint_bytes'] / 2**20:.0f} MB in {mean['checkpoint_s']:.2f} s", flush=True)
    ray.shutdown()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="part", required=True)
    a = sub.add_parser("overhead", help="(a) per-trial fixed costs through the real path, five ways")
    a.add_argument("--trials", type=int, default=4)
    a.add_argument("--epochs", type=int, default=3)
    a.add_argument("--clips", type=int, default=2, help="clips per genre (half train, half test)")
    a.add_argument("--size", type=int, default=32)
    a.add_argument("--model", default="resnet18:finetune_all")
    a.add_argument("--cpus", type=int, default=4, help="logical CPUs of the local Ray (4 trials need 4)")
    b = sub.add_parser("loop", help="(b) the real loop for the 17 exp1/exp2 rows, Ray-free")
    b.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    b.add_argument("--smoke", action="store_true", help="32 px (AlexNet 64), 20 clips, 1 epoch, batch 8: a CPU")
    b.add_argument("--rows", default="", help="comma-separated model or model:variant (default: all 17)")
    b.add_argument("--epochs", type=int, default=30)
    b.add_argument("--batch", type=int, default=32)
    b.add_argument("--size", type=int, default=128)
    b.add_argument("--clips", type=int, default=800)
    b.add_argument("--threads", type=int, default=max(1, min(16, os.cpu_count() or 1)))
    m = sub.add_parser("memory", help="per-row GPU memory estimate from parameters and saved activations (CPU)")
    m.add_argument("--batch", type=int, default=32)
    m.add_argument("--size", type=int, default=128)
    m.add_argument("--clips", type=int, default=800)
    for q in (a, b, m):
        q.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    started = time.perf_counter()
    results = {"overhead": run_overhead, "loop": run_loop, "memory": memory_rows}[args.part](args)
    if args.json:
        machine = {"cpus": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
                   "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
        Path(args.json).write_text(json.dumps({"benchmark": "paper_time", "part": args.part, "machine": machine,
                                               "settings": vars(args), "results": results,
                                               "seconds": round(time.perf_counter() - started, 1)}, indent=1))
    return 0 if results and math.isfinite(sum(r.get("seconds", r.get("wall_s", 0)) for r in results)) else 1


if __name__ == "__main__":
    sys.exit(main())
