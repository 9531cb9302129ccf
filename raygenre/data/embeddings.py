"""Frozen-encoder embeddings of the waveform shards, computed once with Ray Data and cached beside them.

Rows that train only a head on what a frozen encoder computes (the registry's ``cached_variants``:
Wav2Vec2 ``frozen``/``layer_probe``, every encoder's ``linear``/``mlp`` probes) need the encoder to run
once per clip, not once per epoch and trial. The pass runs on the driver before the trials start (as
prepare does): the waveform rows -> ``map_batches`` with a pool of actors that each build the encoder
once (GPU actors with bf16 autocast when the cluster has GPUs) -> Parquet in ``<shards>/embeddings/<key>/``.
Which encoder, its sample rate, windows, pooling and layers come from the registry
(:class:`~raygenre.models.registry.EncoderEntry`); nothing here names a model.

Audio reaches each encoder at its own rate: the workers resample the shard's int16 clips with soxr
(:func:`raygenre.data.audio.resample`, librosa's resampler) a batch of ``EMBED_BATCH`` clips at a time,
so 30 s at 48 kHz costs ~6 MB per clip in float32. Each row holds the encoder's per-layer pooled states,
float32 ``(layers, hidden)`` (``(W, layers, hidden)`` when the encoder keeps windows).

The key hashes what the numbers depend on: encoder name, weights id and revision (hub snapshot commit or
a local folder's content hash), sample rate, windowing, pooling, layers, the shard set's data hash and
the representation. A finished cache has ``manifest.json``, written last; a folder without one (a run
killed mid-pass) is deleted and computed again. The cache may be in object storage.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from raygenre.config import config_hash
from raygenre.models.registry import PROBE_ONLY_PARAMS, cached_embedding_of, get_encoder, resolve_builder
from raygenre.storage import RunPath

MANIFEST = "manifest.json"
ACTOR_ROWS = 64
EMBED_BATCH = 8  # clips per actor call: 8 x 30 s of base Wav2Vec2 is ~1 GB of activations in fp32
INT16_SCALE = 32767.0
DEFAULT_SHARD_RATE = 16_000


def is_cached(spec: dict) -> bool:
    """Whether ``spec`` trains a head on cached embeddings (the spec says so, else the registry)."""
    if "embedding" in spec:
        return spec["embedding"] is not None
    return spec.get("family") == "waveform" and cached_embedding_of(spec) is not None


def encoder_of(spec: dict) -> str:
    return (spec.get("embedding") or cached_embedding_of(spec) or {})["encoder"]


def encoder_params(spec: dict) -> dict[str, Any]:
    """The row's params that reach the encoder (the probe head's own are left out)."""
    return {k: v for k, v in (spec.get("params") or {}).items() if k not in PROBE_ONLY_PARAMS}


def embedding_settings(spec: dict) -> dict[str, Any]:
    """What a trial's cached embeddings depend on (besides the shard set), from its encoder's entry."""
    entry = get_encoder(encoder_of(spec))
    settings = resolve_builder(entry.settings)(encoder_params(spec), spec.get("weights"))
    settings["representation"] = "waveform_augmented" if spec.get("augmented") else "waveform"
    return settings


def embedding_key(spec: dict, data_hash: str) -> str:
    settings = {k: v for k, v in embedding_settings(spec).items() if k != "weights"}
    return config_hash({**settings, "data_hash": data_hash}, 12)


class EmbeddingWorker:
    """A Ray Data actor: builds the frozen encoder once, then embeds batches of int16 waveform rows."""

    def __init__(self, builder: Any, params: dict, weights: dict | None, shard_rate: int) -> None:
        import torch

        self.torch = torch
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device.type == "cpu":
            torch.set_num_threads(1)  # one actor per CPU
        self.model = resolve_builder(builder)(params, weights).to(self.device)
        self.shard_rate = int(shard_rate)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self.torch
        wave = torch.from_numpy(np.stack([np.frombuffer(b, dtype=np.int16) for b in batch["waveform"]])).float()
        wave = wave / INT16_SCALE
        rate = self.model.sample_rate
        if rate != self.shard_rate:
            from raygenre.data.audio import resample

            wave = torch.from_numpy(np.stack([resample(w, self.shard_rate, rate) for w in wave.numpy()]))
        with torch.no_grad(), torch.autocast(self.device.type, dtype=torch.bfloat16,
                                             enabled=self.device.type == "cuda"):
            feats = self.model.embed(wave.to(self.device)).float().cpu().numpy()
        out = {k: batch[k] for k in batch if k != "waveform"}
        out["embedding"] = np.array([f.tobytes() for f in feats], dtype=object)
        out["shape"] = np.array([json.dumps(list(f.shape)) for f in feats], dtype=object)
        out["encoder_params"] = np.full(len(feats), int(self.model.facts.get("backbone_params", 0)), dtype=np.int64)
        return out


def shard_rate(shard_dir: RunPath) -> int:
    """The waveform shards' sample rate (their manifest's payload; 16 kHz for a set without one)."""
    path = shard_dir / "manifest.json"
    if not path.is_file():
        return DEFAULT_SHARD_RATE
    reps = path.read_json().get("representations") or {}
    return int(((reps.get("waveform") or {}).get("payload") or {}).get("sample_rate", DEFAULT_SHARD_RATE))


def _embed(spec: dict, shard_dir: RunPath, representation: str, target: RunPath, id_column: str) -> tuple[int, dict]:
    """Run the Ray Data pass into ``target``; returns the rows written and the encoder's facts."""
    import ray
    import ray.data

    from raygenre.data.shards import load_table

    entry = get_encoder(encoder_of(spec))
    params = encoder_params(spec)
    gpus = ray.cluster_resources().get("GPU", 0)
    cpus = int(ray.available_resources().get("CPU", 1)) or 1
    table_rows = load_table(shard_dir, representation, columns=[id_column]).num_rows
    # An actor costs seconds to start (torch, transformers, the weights): no more actors than 64-clip lots.
    actors = max(1, min(int(gpus) if gpus >= 1 else min(cpus, 4), -(-table_rows // ACTOR_ROWS)))
    # The rows are read here with pyarrow and handed over as Arrow blocks of 4 batches (``from_arrow``, no
    # Python copy of the audio): a ``read_parquet`` lists files in a task that needs a free CPU, and the
    # actor pool may hold every CPU (the same reason the write asks for none).
    table = load_table(shard_dir, representation, columns=[id_column, "label", "waveform"]
                       + (["clip_id"] if id_column != "clip_id" else []))
    block = 4 * EMBED_BATCH
    ds = ray.data.from_arrow([table.slice(i, block) for i in range(0, max(table.num_rows, 1), block)])
    ds = ds.map_batches(EmbeddingWorker, fn_constructor_args=(entry.builder, params, spec.get("weights"),
                                                              shard_rate(shard_dir)),
                        batch_size=EMBED_BATCH, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=actors),
                        **({"num_gpus": 1} if gpus >= 1 else {"num_cpus": 1}))
    ds.write_parquet(target.path, filesystem=target.fs, concurrency=actors, ray_remote_args={"num_cpus": 0})
    written = load_table(target.parent, target.name, columns=[id_column, "encoder_params"])
    settings = embedding_settings(spec)
    # where the encoder came from (the records' ``weights``), its revision, and its size as the actors counted it
    params = written.column("encoder_params")[0].as_py() if written.num_rows else 0
    return written.num_rows, {"weights": settings["weights"], "revision": settings["revision"],
                              "backbone_params": int(params)}


def ensure_embeddings(shard_dir: str | Path | RunPath, trials: list[dict], data_hash: str) -> dict[str, str]:
    """The cache folder of every cached-head trial's embeddings, computing the missing ones.

    Returns ``{key: folder}``; prints one line per cache (hit, or computed with its time). The
    manifest is written last, so a folder without one (a run killed mid-write) is recomputed.
    """
    shard_dir = RunPath.of(shard_dir)
    wanted: dict[str, dict] = {}
    for spec in trials:
        if is_cached(spec):
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
        print(f"[embed] computing {representation} embeddings of {settings['encoder']} ({settings['id']}, "
              f"{settings['weights_source']} weights) on Ray Data", flush=True)
        started = time.perf_counter()
        rows, facts = _embed(spec, shard_dir, representation, folder, id_column)
        seconds = time.perf_counter() - started
        (folder / MANIFEST).write_json({"key": key, "settings": settings, "data_hash": data_hash, "rows": rows,
                                        "seconds": round(seconds, 2), **facts})
        print(f"[embed] wrote {rows} rows to {folder} in {seconds:.1f} s", flush=True)
    return out


def read_cache_manifest(folder: str | Path | RunPath) -> dict[str, Any]:
    """A finished cache's manifest: settings, rows, time, the encoder's description, revision and size."""
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
