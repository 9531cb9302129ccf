"""The prepare stage on Ray Data: audio files in, one Parquet shard set per representation out.

Why it is shaped this way:

* Files are read as bytes (``read_binary_files``) and decoded inside ``map_batches`` with a
  try/except per file: ``read_audio`` fails the whole job on one corrupt file and
  ``max_errored_blocks`` drops good files with it. A failure becomes a row with an ``error``.
* A cheap probe pass (decode only) runs first, so the split is drawn over the clips that can
  actually be used and corrupt or too-short files are listed before any heavy work.
* The heavy pass runs once, in a pool of warm actors (``ClipWorker``: librosa's numba JIT is paid
  once per worker), and computes every requested representation of a clip and of its augmented
  variants from one decode. It writes one staging table; small Ray Data jobs then copy each
  representation and split into ``<shard_dir>/<representation>/<split>/`` with its own columns.
* The heavy pass's reads and writes ask for no CPU (and run at most one per actor): the actor
  pool holds every CPU, and a read task waiting for a CPU held by an idle actor stalls for good.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from raygenre.config import PrepareConfig, PrepareSpec
from raygenre.data.audio import ORIGINAL, too_large, transform_names
from raygenre.data.features import (
    AUGMENTED_REPRESENTATIONS,
    audio_limits,
    colormap_lut,
    extract_clip,
    probe_file,
    staging_schema,
    warm_up,
    waveform_samples,
)
from raygenre.data.gtzan import Discovery, clip_id_from_filename
from raygenre.data.shards import (
    AUGMENTED_SUFFIX,
    MANIFEST_FORMAT,
    REPRESENTATIONS,
    base_representation,
    load_table,
    payload_columns,
    read_manifest,
    shard_folders,
    write_manifest,
)
from raygenre.data.source import find_clips
from raygenre.errors import ConfigError, PrepareError, RaygenreError
from raygenre.genres import GENRES
from raygenre.ray_session import ray_session
from raygenre.storage import RunPath
from raygenre.versions import package_versions

log = logging.getLogger("raygenre.prepare")

VERSIONED = ("numpy", "scipy", "librosa", "soundfile", "soxr", "numba", "pyarrow", "pandas", "ray",
             "matplotlib", "pillow")


# --- Ray Data callables ----------------------------------------------------------------------

PROBE_SCHEMA = pa.schema([("path", pa.string()), ("error", pa.string()), ("native_rate", pa.int64()),
                          ("channels", pa.int64()), ("seconds", pa.float64())])


def _probe_batch(batch: dict[str, np.ndarray], cfg: PrepareConfig) -> pa.Table:
    rows = [probe_file(data, path, cfg) for data, path in zip(batch["bytes"], batch["path"])]
    return pa.Table.from_pylist(rows, schema=PROBE_SCHEMA)


class ClipWorker:
    """A Ray Data actor: warms librosa once in ``__init__``, then runs ``extract_clip`` per file."""

    def __init__(self, cfg: PrepareConfig, representations: Sequence[str], augmented: bool):
        self.cfg, self.representations, self.augmented = cfg, tuple(representations), augmented
        self.schema = staging_schema(self.representations, cfg)
        self.warm_up_s = warm_up(cfg.sample_rate)

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        rows = []
        for data, path in zip(batch["bytes"], batch["path"]):
            rows.extend(extract_clip(data, path, self.cfg, self.representations, self.augmented))
        return pa.Table.from_pylist(rows, schema=self.schema)


# --- inputs, fingerprint, manifest ------------------------------------------------------------

def fingerprint(found: Discovery) -> str:
    """Content key of the inputs: every clip's path relative to the root, size and modification time."""
    items = []
    for clip in found.clips:
        st = clip.path.stat()
        items.append([str(clip.path.relative_to(found.root)), st.st_size, st.st_mtime_ns])
    return hashlib.sha256(json.dumps(items, separators=(",", ":")).encode()).hexdigest()[:16]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --- Ray session and the stages ---------------------------------------------------------------

def _n_workers(cfg: PrepareConfig) -> int:
    import ray

    return cfg.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))


def _probe(paths: list[str], cfg: PrepareConfig, filesystem=None) -> list[dict]:
    import ray

    ds = ray.data.read_binary_files(paths, include_paths=True, num_cpus=0, concurrency=_n_workers(cfg),
                                    filesystem=filesystem)
    return ds.map_batches(_probe_batch, fn_kwargs={"cfg": cfg},
                          batch_size=16, batch_format="numpy").take_all()


def clip_dataset(paths: list[str], cfg: PrepareConfig, representations: Sequence[str], augmented: bool = False,
                 worker: type = ClipWorker, workers: int | None = None, filesystem=None):
    """The heavy pass as a lazy Ray Dataset: bytes -> warm actor pool -> rows (the benchmark runs this too).

    ``filesystem`` (pyarrow) reads ``paths`` from object storage; None reads the local disk."""
    import ray

    n = workers or _n_workers(cfg)
    ds = ray.data.read_binary_files(paths, include_paths=True, num_cpus=0, concurrency=n,
                                    override_num_blocks=min(len(paths), 8 * n), filesystem=filesystem)
    return ds.map_batches(worker, fn_constructor_args=(cfg, tuple(representations), augmented),
                          batch_size=cfg.batch_size, batch_format="numpy", num_cpus=1,
                          compute=ray.data.ActorPoolStrategy(min_size=n, max_size=n))


def _compute(paths: list[str], cfg: PrepareConfig, representations: Sequence[str], augmented: bool,
             staging: RunPath, filesystem=None) -> None:
    n = _n_workers(cfg)
    ds = clip_dataset(paths, cfg, representations, augmented, workers=n, filesystem=filesystem)
    ds.write_parquet(staging.path, filesystem=staging.fs, concurrency=n, ray_remote_args={"num_cpus": 0})


def _repack(staging: RunPath, out: RunPath, folder: str) -> None:
    """Copy one shard folder out of the staging table: its rows (originals, or augmented variants)
    and only its own columns."""
    import ray
    from ray.data.expressions import col

    keep = col("error").is_null()
    keep = keep & ((col("transform") != ORIGINAL) if folder.endswith(AUGMENTED_SUFFIX)
                   else (col("transform") == ORIGINAL))
    ray.data.read_parquet(staging.path, filesystem=staging.fs).filter(expr=keep) \
        .select_columns(payload_columns(folder)).write_parquet(out.path, filesystem=out.fs)


def _rep_entry(shard_dir: RunPath, folder: str, cfg: PrepareConfig) -> dict:
    rows = load_table(shard_dir, folder, columns=["clip_id", "label", "transform"]).to_pandas()
    entry: dict[str, Any] = {
        "path": folder,
        "rows": int(len(rows)),
        "genres": {g: int((rows["label"] == g).sum()) for g in GENRES},
        "transforms": {t: int(n) for t, n in rows["transform"].value_counts().sort_index().items()},
        "columns": payload_columns(folder),
        "computed_at": _now(),
    }
    representation = base_representation(folder)
    if representation == "mel":
        entry["payload"] = {"column": "mel", "dtype": "uint8", "shape": [cfg.mel.size, cfg.mel.size, 3],
                            "colormap": cfg.mel.colormap, "scaling": "dB (ref=max), min-max per image"}
    elif representation == "waveform":
        entry["payload"] = {"column": "waveform", "dtype": "int16", "shape": [waveform_samples(cfg)],
                            "sample_rate": cfg.waveform_rate, "scale": 32767}
    return entry


def _publish_folder(staging: RunPath, shard_dir: RunPath, folder: str) -> None:
    """Write one shard folder from the staging rows in place of any older one (``RunPath.replacing``:
    renamed in locally; in object storage it counts once the manifest names it)."""
    with (shard_dir / folder).replacing() as dest:
        _repack(staging, dest, folder)


# --- the entry point --------------------------------------------------------------------------

def _check(names: Sequence[str], cfg: PrepareConfig) -> tuple[str, ...]:
    """Requested representations and the mel colormap, checked before any Ray work."""
    unknown = [n for n in names if n not in REPRESENTATIONS]
    if unknown or not names:
        raise ConfigError(f"unknown representation(s) {unknown or '(none given)'}: choose from "
                          f"{', '.join(REPRESENTATIONS)}.")
    if "mel" in names:
        try:
            colormap_lut(cfg.mel.colormap)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    return tuple(dict.fromkeys(names))


def _reusable(shard_dir: RunPath, spec: PrepareSpec, inputs: dict) -> dict | None:
    """The existing manifest if it was made from these inputs and this config; else clear the set."""
    try:
        manifest = read_manifest(shard_dir)
    except (RaygenreError, ValueError):
        return None
    if (manifest.get("format") == MANIFEST_FORMAT and manifest.get("config_hash") == spec.hash()
            and manifest.get("inputs", {}).get("fingerprint") == inputs["fingerprint"]):
        return manifest
    log.info("inputs or config changed since %s was written; recomputing", shard_dir)
    for name in shard_folders(REPRESENTATIONS, augmented=True):
        (shard_dir / name).delete()
    return None


def _new_manifest(spec: PrepareSpec, found: Discovery, inputs: dict, timings: dict) -> dict:
    """Probe every file, check the configured split can be drawn over the usable clips, start the manifest."""
    t = time.perf_counter()
    refused = _unreadable(found, spec.prepare)
    probed = _probe([found.read_path(c) for c in found.clips if found.read_path(c) not in refused], spec.prepare,
                    found.read_filesystem) + list(refused.values())
    timings["probe"] = round(time.perf_counter() - t, 3)
    bad = {clip_id_from_filename(r["path"]): r for r in probed if r["error"]}
    skipped = [{"clip_id": c.clip_id, "path": str(c.path), "reason": bad[c.clip_id]["error"], "stage": "probe"}
               for c in found.clips if c.clip_id in bad]
    good = sorted(c.clip_id for c in found.clips if c.clip_id not in bad)
    log.info("probed %d files in %.1f s: %d usable, %d skipped",
             len(probed), timings["probe"], len(good), len(skipped))
    if len(good) < 2:
        first = skipped[0]["reason"] if skipped else "no clips"
        raise PrepareError(f"only {len(good)} of {len(found.clips)} clips under {found.root} are usable "
                           f"(first problem: {first}).")
    from raygenre.data.splits import check_splits  # sklearn: kept out of the Ray workers' imports

    split_counts = check_splits(good, spec.split.name, spec.split.seeds, spec.split.test_fraction)
    ok = [r for r in probed if not r["error"]]
    aug = spec.prepare.augment
    return {
        "format": MANIFEST_FORMAT, "config_hash": spec.hash(), "config": spec.model_dump(mode="json"),
        "inputs": inputs,
        "clips": good,
        "split_check": {"name": spec.split.name, "seeds": list(spec.split.seeds), "counts": split_counts},
        "counts": {"clips": len(good), "genres": {g: sum(i.split(".")[0] == g for i in good) for g in GENRES},
                   "skipped": len(skipped), "representations": {}},
        "skipped": skipped, "ignored": found.ignored,
        "audio": {"native_rates": _tally(r["native_rate"] for r in ok), "channels": _tally(r["channels"] for r in ok),
                  "seconds_min": min(r["seconds"] for r in ok), "seconds_max": max(r["seconds"] for r in ok)},
        "augmentation": {"folders": [f"{r}{AUGMENTED_SUFFIX}" for r in AUGMENTED_REPRESENTATIONS],
                         "applies_to": list(AUGMENTED_REPRESENTATIONS), "used_for": "training clips only",
                         "transforms": transform_names(aug.stretch_factors, aug.shift_seconds)},
        "representations": {}, "versions": package_versions(VERSIONED), "timings_s": {}, "history": [],
    }


def _unreadable(found: Discovery, cfg: PrepareConfig) -> dict[str, dict]:
    """Probe rows of files Ray Data must not read: above ``max_file_mb`` (it would read them whole)
    or not openable (one such file would fail its read task, and the job with it)."""
    rows = {}
    for clip in found.clips:
        reason = None
        try:
            reason = too_large(clip.path.stat().st_size, audio_limits(cfg))
            open(clip.path, "rb").close()
        except OSError as exc:
            reason = reason or f"cannot be opened ({exc.strerror or type(exc).__name__})."
        if reason:
            rows[found.read_path(clip)] = {"path": found.read_path(clip), "error": reason, "native_rate": None,
                                           "channels": None, "seconds": None}
    return rows


def _tally(values: Any) -> dict[str, int]:
    return dict(sorted(Counter(str(v) for v in values).items()))


def shard_dir_of(spec: PrepareSpec, run_dir: Path | str | RunPath) -> RunPath:
    return RunPath.of(run_dir) / "shards" / spec.hash()


def ensure_shards(spec: PrepareSpec, run_dir: Path | str | RunPath, representations: Sequence[str] | None = None,
                  *, augmented: bool | None = None, found: Discovery | None = None) -> RunPath:
    """``RUN_DIR/shards/<spec.hash()>`` with every requested folder, computing only what is missing.

    ``augmented`` (default: ``prepare.augment.enabled``) adds the augmented folders of mel and
    waveform. ``found`` is the already-scanned source (the sweep scans it once); without it the
    source is resolved and scanned here. A shard set is reused when its manifest was made from the
    same config and the same input files (path, size, modification time); otherwise it is recomputed.
    """
    wanted = _check(spec.prepare.representations if representations is None else representations, spec.prepare)
    augmented = spec.prepare.augment.enabled if augmented is None else augmented
    folders = shard_folders(wanted, augmented)
    shard_dir = shard_dir_of(spec, run_dir)
    start = time.perf_counter()
    timings: dict[str, float] = {}
    found = found or find_clips(spec.data, run_dir)
    inputs = {"source": spec.data.source, "root": str(found.root), "layout": found.layout,
              "files": len(found.clips), "fingerprint": fingerprint(found)}
    timings["inputs"] = round(time.perf_counter() - start, 3)  # discovery (and synthetic generation)
    manifest = _reusable(shard_dir, spec, inputs)
    have = (manifest or {}).get("representations", {})
    missing = [f for f in folders if not (f in have and (shard_dir / f).is_dir())]
    if not missing:
        log.info("cache hit: nothing computed, reusing %s (%s)", shard_dir, ", ".join(folders))
        return shard_dir
    if manifest is None:  # most unusable splits show on the files found, before Ray starts
        from raygenre.data.splits import check_splits

        check_splits(found.ids, spec.split.name, spec.split.seeds, spec.split.test_fraction)
    shard_dir.mkdir()
    cfg = spec.prepare
    need_reps = list(dict.fromkeys(base_representation(f) for f in missing))
    need_augmented = any(f.endswith(AUGMENTED_SUFFIX) for f in missing)
    with ray_session():
        if manifest is None:
            manifest = _new_manifest(spec, found, inputs, timings)
        by_id = {c.clip_id: found.read_path(c) for c in found.clips}
        paths = sorted(by_id[cid] for cid in manifest["clips"])
        work = shard_dir / f"_work-{uuid.uuid4().hex[:8]}"
        staging = work / "staging"
        try:
            t = time.perf_counter()
            log.info("computing %s for %d clips on Ray Data", ", ".join(missing), len(paths))
            _compute(paths, cfg, need_reps, need_augmented, staging, found.read_filesystem)
            timings["compute"] = round(time.perf_counter() - t, 3)
            failed = load_table(work, "staging", columns=["clip_id", "path", "error", "transform"]).to_pylist()
            t = time.perf_counter()
            for folder in missing:  # a folder counts once the manifest names it, so a half-written one is redone
                _publish_folder(staging, shard_dir, folder)
                manifest["representations"][folder] = _rep_entry(shard_dir, folder, cfg)
            timings["write"] = round(time.perf_counter() - t, 3)
        finally:
            work.delete()
    known = {(s["path"], s["stage"]) for s in manifest["skipped"]}
    manifest["skipped"] += [{"clip_id": r["clip_id"], "path": r["path"], "reason": r["error"], "stage": "compute"}
                            for r in failed if r["error"] and (r["path"], "compute") not in known]
    lost = {r["clip_id"] for r in failed if r["error"]}
    manifest["clips"] = [c for c in manifest["clips"] if c not in lost]
    manifest["counts"]["clips"] = len(manifest["clips"])
    manifest["counts"]["skipped"] = len(manifest["skipped"])
    manifest["counts"]["representations"] = {r: e["rows"] for r, e in manifest["representations"].items()}
    timings["total"] = round(time.perf_counter() - start, 3)
    manifest["timings_s"] = timings
    manifest["history"].append({"at": _now(), "computed": missing, "timings_s": timings})
    write_manifest(shard_dir, manifest)
    log.info("wrote %s to %s in %.1f s", ", ".join(missing), shard_dir, timings["total"])
    return shard_dir
