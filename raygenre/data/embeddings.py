"""Frozen-backbone embeddings of the waveform shards, computed once with Ray Data and cached beside them.

Wav2Vec2's ``frozen`` and ``layer_probe`` rows train only a small head on what a frozen backbone
computes, so the backbone runs once per clip (per backbone and input settings), not once per epoch and
trial. The pass is a Ray Data job run by the driver before the study's trials start (as prepare is):
``read_parquet`` over ``<shards>/waveform`` -> ``map_batches`` with a pool of actors that each load the
backbone once (GPU actors when the cluster has GPUs) -> Parquet in
``<shards>/embeddings/<key>/``. Each row holds every layer's mean-pooled hidden state, float32,
shape ``(L+1, H)`` (``(W, L+1, H)`` with chunking), so one cache serves both variants: ``frozen`` reads
the last layer, ``layer_probe`` learns a weighting of all of them.

The key hashes what the numbers depend on: backbone and weights, chunking, the shard set's data hash
and the representation. A finished cache has ``manifest.json``, written last; a folder without one
(a run killed mid-pass) is deleted and computed again. The cache may be in object storage.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from raygenre.config import config_hash
from raygenre.storage import RunPath

CACHED_VARIANTS = ("frozen", "layer_probe")
MANIFEST = "manifest.json"
EMBED_BATCH = 8  # clips per actor call: 8 x 30 s of base Wav2Vec2 is ~1 GB of activations in fp32


def embedding_settings(spec: dict) -> dict[str, Any]:
    """What a trial's cached embeddings depend on (besides the shard set)."""
    params = spec.get("params") or {}
    weights = spec.get("weights") or {}
    return {"backbone": params.get("backbone"), "chunk_seconds": params.get("chunk_seconds"),
            "sample_rate": params.get("sample_rate"), "weights_source": weights.get("source"),
            "weights_dir": weights.get("dir"), "representation": "waveform_augmented" if spec.get("augmented")
            else "waveform", "pooling": "mean-per-layer"}


def embedding_key(spec: dict, data_hash: str) -> str:
    return config_hash({**embedding_settings(spec), "data_hash": data_hash}, 12)


class EmbeddingWorker:
    """A Ray Data actor: loads the frozen backbone once, then embeds batches of int16 waveform rows."""

    def __init__(self, spec: dict) -> None:
        import torch

        from raygenre.models.waveform import build_embedder

        self.torch = torch
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device.type == "cpu":
            torch.set_num_threads(1)  # one actor per CPU
        self.model = build_embedder(spec.get("params"), spec.get("weights")).to(self.device)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self.torch
        wave = np.stack([np.frombuffer(b, dtype=np.int16) for b in batch["waveform"]])
        x = self.model.model_input({"wave": torch.from_numpy(wave).to(self.device)})
        with torch.no_grad(), torch.autocast(self.device.type, dtype=torch.bfloat16,
                                             enabled=self.device.type == "cuda"):
            feats = self.model.embed(x).float().cpu().numpy()
        out = {k: batch[k] for k in batch if k != "waveform"}
        out["embedding"] = np.array([f.tobytes() for f in feats], dtype=object)
        out["shape"] = np.array([json.dumps(list(f.shape)) for f in feats], dtype=object)
        return out


def _embed(spec: dict, shard_dir: RunPath, representation: str, target: RunPath, id_column: str) -> int:
    """Run the Ray Data pass into ``target``; returns the number of rows written."""
    import ray
    import ray.data

    gpus = ray.cluster_resources().get("GPU", 0)
    cpus = int(ray.available_resources().get("CPU", 1)) or 1
    actors = max(1, int(gpus)) if gpus >= 1 else max(1, min(cpus, 4))
    # The rows are read here with pyarrow and handed over as in-process blocks (``from_items``): a
    # ``read_parquet`` lists files in a task that needs a free CPU, and the actor pool may hold every CPU
    # (the same reason the write asks for none).
    from raygenre.data.shards import load_table

    table = load_table(shard_dir, representation, columns=[id_column, "label", "waveform"]
                       + (["clip_id"] if id_column != "clip_id" else []))
    ds = ray.data.from_items(table.to_pylist(), override_num_blocks=max(1, -(-table.num_rows // (4 * EMBED_BATCH))))
    ds = ds.map_batches(EmbeddingWorker, fn_constructor_args=(spec,), batch_size=EMBED_BATCH,
                        batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=actors),
                        **({"num_gpus": 1} if gpus >= 1 else {"num_cpus": 1}))
    ds.write_parquet(target.path, filesystem=target.fs, concurrency=actors, ray_remote_args={"num_cpus": 0})
    return load_table(target.parent, target.name, columns=[id_column]).num_rows


def _backbone_facts(spec: dict) -> dict[str, Any]:
    """Where the backbone came from (the records' ``weights``) and its parameter count."""
    from raygenre.models.wav2vec2_weights import DEFAULT_BACKBONE, backbone_param_count, check_backbone

    weights = spec.get("weights") or {}
    args = (weights.get("source", "pretrained"), (spec.get("params") or {}).get("backbone", DEFAULT_BACKBONE),
            weights.get("dir"), weights.get("offline"))
    return {"weights": check_backbone(*args), "backbone_params": backbone_param_count(*args)}


def ensure_embeddings(shard_dir: str | Path | RunPath, trials: list[dict], data_hash: str) -> dict[str, str]:
    """The cache folder of every cached-head waveform trial's embeddings, computing the missing ones.

    Returns ``{key: folder}``; prints one line per cache (hit, or computed with its time). The
    manifest is written last, so a folder without one (a run killed mid-write) is recomputed.
    """
    shard_dir = RunPath.of(shard_dir)
    wanted: dict[str, dict] = {}
    for spec in trials:
        if spec["family"] == "waveform" and spec["variant"] in CACHED_VARIANTS:
            wanted.setdefault(embedding_key(spec, data_hash), spec)
    out: dict[str, str] = {}
    for key, spec in wanted.items():
        folder = shard_dir / "embeddings" / key
        out[key] = str(folder)
        if (folder / MANIFEST).is_file():
            print(f"[embed] cache hit: reusing {folder}", flush=True)
            continue
        settings = embedding_settings(spec)
        representation = settings["representation"]
        id_column = "parent_id" if representation.endswith("_augmented") else "clip_id"
        folder.delete()
        print(f"[embed] computing {representation} embeddings ({settings['backbone'] or 'default backbone'}, "
              f"{settings['weights_source']} weights) on Ray Data", flush=True)
        started = time.perf_counter()
        rows = _embed(spec, shard_dir, representation, folder, id_column)
        seconds = time.perf_counter() - started
        (folder / MANIFEST).write_json({"key": key, "settings": settings, "data_hash": data_hash, "rows": rows,
                                        "seconds": round(seconds, 2), **_backbone_facts(spec)})
        print(f"[embed] wrote {rows} rows to {folder} in {seconds:.1f} s", flush=True)
    return out


def read_cache_manifest(folder: str | Path | RunPath) -> dict[str, Any]:
    """A finished cache's manifest: settings, rows, time, the backbone's description and parameter count."""
    return (RunPath.of(folder) / MANIFEST).read_json()


def load_embeddings(folder: str | Path | RunPath, ids: list[str], id_column: str = "clip_id"
                    ) -> tuple[np.ndarray, list[str], list[str]]:
    """float32 embeddings (N, ...), ``id_column`` values and labels of the cached rows whose id is in ``ids``."""
    from raygenre.data.shards import load_table

    folder = RunPath.of(folder)
    table = load_table(folder.parent, folder.name, columns=[id_column, "label", "embedding", "shape"],
                       ids=ids, id_column=id_column)
    shapes = table.column("shape").to_pylist()
    shape = json.loads(shapes[0]) if shapes else [0]
    blobs = table.column("embedding").to_pylist()
    feats = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), *shape)
    return feats, table.column(id_column).to_pylist(), table.column("label").to_pylist()
