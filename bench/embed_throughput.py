"""Embedding cost per encoder, and what the Ray Data stage costs over a plain loop on the same clips.

    python bench/embed_throughput.py                               # base-size encoders, 1 clip each, + stage
    python bench/embed_throughput.py --size tiny --clips 4         # the quick profile's tiny encoders
    python bench/embed_throughput.py --device cuda --bf16          # on a GPU machine

1. **Pure torch** (no Ray): ms per 30 s clip for each registered encoder with random weights (the same
   compute as pretrained ones) at its own sample rate and windows, after one untimed warm-up clip; bf16
   autocast with ``--bf16`` (what the stage uses on GPUs).
2. **Ray Data stage vs plain loop**: ``--stage-clips`` clips of 30 s written as 16 kHz waveform shards, embedded
   by :func:`raygenre.data.embeddings.ensure_embeddings` (actor pool, Parquet out, a fresh cache key each run)
   and by a plain loop over the same batches in this process with the same worker code; the ratio is stage
   time / loop time on this machine (actor start-up and Parquet I/O are the stage's overhead; on several
   CPUs or GPUs the pool's parallelism pays it back).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from raygenre.models.registry import ENCODERS, resolve_builder

CLIP_SECONDS = 30.0


def pure_torch(names: list[str], size: str, clips: int, device: torch.device, bf16: bool) -> dict[str, dict]:
    out = {}
    for name in names:
        entry = ENCODERS[name]
        backbone = "tiny" if size == "tiny" else entry.default_id
        encoder = resolve_builder(entry.builder)({"backbone": backbone}, {"source": "random"}).to(device)
        rng = np.random.default_rng(0)
        wave = torch.from_numpy(rng.standard_normal((1, int(CLIP_SECONDS * encoder.sample_rate)), dtype=np.float32)
                                * 0.1).to(device)
        times = []
        for i in range(clips + 1):
            start = time.perf_counter()
            with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                encoder.embed(wave)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i:  # the first clip warms up
                times.append(time.perf_counter() - start)
        out[name] = {"ms_per_clip": round(1000 * float(np.median(times)), 1),
                     "params": encoder.facts["backbone_params"],
                     "sample_rate": encoder.sample_rate}
        print(f"[torch] {name:13s} {size:4s} {out[name]['params']:>11,d} params  "
              f"{out[name]['ms_per_clip']:>9.1f} ms per 30 s clip", flush=True)
        del encoder
    return out


def write_shards(root: Path, clips: int) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from raygenre.genres import GENRES

    rng = np.random.default_rng(0)
    ids = [f"{GENRES[i % 10]}.{i:05d}" for i in range(clips)]
    blobs = [(rng.standard_normal(int(CLIP_SECONDS * 16000)) * 3000).astype(np.int16).tobytes() for _ in ids]
    (root / "waveform").mkdir(parents=True)
    pq.write_table(pa.table({"clip_id": ids, "label": [i.split(".")[0] for i in ids], "parent_id": ids,
                             "transform": ["original"] * clips, "waveform": pa.array(blobs, pa.binary())}),
                   root / "waveform" / "part-0.parquet")
    return ids


def stage_vs_loop(name: str, size: str, clips: int, cpus: int) -> dict:
    import ray

    from raygenre.config import ExperimentConfig
    from raygenre.data.embeddings import EMBED_BATCH, EmbeddingWorker, encoder_params, ensure_embeddings
    from raygenre.data.shards import load_table
    from raygenre.train.plan import plan_experiment

    root = Path(tempfile.mkdtemp())
    write_shards(root, clips)
    backbone = "tiny" if size == "tiny" else ENCODERS[name].default_id
    spec = plan_experiment(ExperimentConfig.model_validate({
        "experiment": "exp5", "prepare": {"representations": ["waveform"]}, "weights": {"source": "random"},
        "models": [{"name": name, "params": {"backbone": backbone}}]}))[0]
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    start = time.perf_counter()
    ensure_embeddings(root, [spec], f"bench-{time.time()}")
    stage_s = time.perf_counter() - start
    ray.shutdown()
    torch.set_num_threads(cpus)
    start = time.perf_counter()
    worker = EmbeddingWorker(ENCODERS[name].builder, encoder_params(spec), spec["weights"], 16000)
    table = load_table(root, "waveform", columns=["clip_id", "label", "waveform"])
    for i in range(0, table.num_rows, EMBED_BATCH):
        part = table.slice(i, EMBED_BATCH)
        worker({c: np.array(part.column(c).to_pylist(), dtype=object) for c in part.column_names})
    loop_s = time.perf_counter() - start
    print(f"[stage] {name} {size}: {clips} clips of 30 s, Ray Data stage {stage_s:.1f} s, plain loop {loop_s:.1f} s "
          f"(stage / loop = {stage_s / loop_s:.2f}) on {cpus} CPUs", flush=True)
    return {"encoder": name, "size": size, "clips": clips, "cpus": cpus, "stage_s": round(stage_s, 2),
            "loop_s": round(loop_s, 2), "ratio": round(stage_s / loop_s, 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--encoders", default=",".join(n for n in ENCODERS if n != "clap_unfused"))
    p.add_argument("--size", choices=("base", "tiny"), default="base")
    p.add_argument("--clips", type=int, default=1)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--stage-encoder", default="wav2vec2")
    p.add_argument("--stage-size", choices=("base", "tiny"), default="tiny")
    p.add_argument("--stage-clips", type=int, default=32)
    p.add_argument("--cpus", type=int, default=2)
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    device = torch.device(args.device)
    results = {"machine": platform.platform(), "device": str(device), "bf16": args.bf16,
               "torch": pure_torch(args.encoders.split(","), args.size, args.clips, device, args.bf16)}
    if args.stage_clips:
        results["stage"] = stage_vs_loop(args.stage_encoder, args.stage_size, args.stage_clips, args.cpus)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
