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
import os
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from raygenre.config import ConfigError, PrepareConfig, PrepareSpec
from raygenre.data.audio import ORIGINAL, transform_names
from raygenre.data.features import (
    AUGMENTED_REPRESENTATIONS,
    FEATURE_COLUMNS,
    META_COLUMNS,
    colormap_lut,
    extract_clip,
    probe_file,
    staging_schema,
    warm_up,
    waveform_samples,
)
from raygenre.data.gtzan import GENRES, Discovery, clip_id_from_filename, discover, genre_of
from raygenre.versions import package_versions

log = logging.getLogger("raygenre.prepare")

REPRESENTATIONS = ("features", "mel", "waveform")
SPLITS = ("train", "valid", "test")
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
VERSIONED = ("numpy", "scipy", "librosa", "soundfile", "soxr", "numba", "pyarrow", "pandas", "ray",
             "matplotlib", "pillow")


class PrepareError(RuntimeError):
    """The prepare stage cannot go on (no usable clips, a failed Ray Data job)."""


# --- Ray Data callables ----------------------------------------------------------------------

PROBE_SCHEMA = pa.schema([("path", pa.string()), ("error", pa.string()), ("native_rate", pa.int64()),
                          ("channels", pa.int64()), ("seconds", pa.float64())])


def _probe_batch(batch: dict[str, np.ndarray], min_seconds: float) -> pa.Table:
    rows = [probe_file(data, path, min_seconds) for data, path in zip(batch["bytes"], batch["path"])]
    return pa.Table.from_pylist(rows, schema=PROBE_SCHEMA)


class ClipWorker:
    """A Ray Data actor: warms librosa once in ``__init__``, then runs ``extract_clip`` per file."""

    def __init__(self, cfg: PrepareConfig, representations: Sequence[str], assignment: dict[str, str]):
        self.cfg, self.representations, self.assignment = cfg, tuple(representations), assignment
        self.schema = staging_schema(self.representations, cfg)
        self.warm_up_s = warm_up(cfg.sample_rate)

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        rows = []
        for data, path in zip(batch["bytes"], batch["path"]):
            split = self.assignment[clip_id_from_filename(path)]
            rows.extend(extract_clip(data, path, split, self.cfg, self.representations))
        return pa.Table.from_pylist(rows, schema=self.schema)


# --- inputs, fingerprint, manifest ------------------------------------------------------------

def resolve_source(spec: PrepareSpec, run_dir: Path) -> Path:
    """The audio folder: the synthetic set (generated once under ``RUN_DIR/data``) or the given one."""
    if spec.data.source == "synthetic":
        from raygenre.data.synthetic import ensure_synthetic

        return ensure_synthetic(run_dir / "data", spec.data.synthetic)
    return Path(spec.data.source).expanduser()


def fingerprint(found: Discovery) -> str:
    """Content key of the inputs: every clip's path relative to the root, size and modification time."""
    items = []
    for clip in found.clips:
        st = clip.path.stat()
        items.append([str(clip.path.relative_to(found.root)), st.st_size, st.st_mtime_ns])
    return hashlib.sha256(json.dumps(items, separators=(",", ":")).encode()).hexdigest()[:16]


def read_manifest(shard_dir: Path | str) -> dict:
    """The shard set's ``manifest.json``; a missing one is an error that names the folder."""
    path = Path(shard_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"no prepared shards at {shard_dir}: run 'python -m raygenre.prepare' first.")
    return json.loads(path.read_text())


def _write_manifest(shard_dir: Path, manifest: dict) -> None:
    tmp = shard_dir / f".{MANIFEST}.{uuid.uuid4().hex}"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, shard_dir / MANIFEST)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --- Ray session and the stages ---------------------------------------------------------------

@contextmanager
def using_ray() -> Iterator[None]:
    """The running Ray if there is one; else start one here and shut down only that one."""
    import ray
    from ray.data import DataContext

    quiet = bool(os.environ.get("CI"))
    started = not ray.is_initialized()
    if started:
        ray.init(include_dashboard=False, log_to_driver=not quiet,
                 logging_level=logging.WARNING if quiet else logging.INFO)
    if quiet:  # quiet first: switching the bars off logs a warning of its own
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        DataContext.get_current().enable_progress_bars = False
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def _n_workers(cfg: PrepareConfig) -> int:
    import ray

    return cfg.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))


def _probe(paths: list[str], cfg: PrepareConfig) -> list[dict]:
    import ray

    ds = ray.data.read_binary_files(paths, include_paths=True, num_cpus=0, concurrency=_n_workers(cfg))
    return ds.map_batches(_probe_batch, fn_kwargs={"min_seconds": cfg.min_seconds},
                          batch_size=16, batch_format="numpy").take_all()


def clip_dataset(paths: list[str], assignment: dict[str, str], cfg: PrepareConfig,
                 representations: Sequence[str], worker: type = ClipWorker, workers: int | None = None):
    """The heavy pass as a lazy Ray Dataset: bytes -> warm actor pool -> rows (the benchmark runs this too)."""
    import ray

    n = workers or _n_workers(cfg)
    ds = ray.data.read_binary_files(paths, include_paths=True, num_cpus=0, concurrency=n,
                                    override_num_blocks=min(len(paths), 8 * n))
    return ds.map_batches(worker, fn_constructor_args=(cfg, tuple(representations), assignment),
                          batch_size=cfg.batch_size, batch_format="numpy", num_cpus=1,
                          compute=ray.data.ActorPoolStrategy(min_size=n, max_size=n))


def _compute(paths: list[str], assignment: dict[str, str], cfg: PrepareConfig,
             representations: Sequence[str], staging: Path) -> None:
    n = _n_workers(cfg)
    ds = clip_dataset(paths, assignment, cfg, representations, workers=n)
    ds.write_parquet(str(staging), partition_cols=["split"], concurrency=n, ray_remote_args={"num_cpus": 0})


def _columns(representation: str) -> list[str]:
    payload = list(FEATURE_COLUMNS) if representation == "features" else [representation]
    return [*META_COLUMNS, *payload]


def _repack(staging: Path, out: Path, representation: str, splits: Sequence[str]) -> None:
    """Copy one representation of each split out of the staging table, with only its own columns."""
    import ray
    from ray.data.datasource.partitioning import PathPartitionFilter
    from ray.data.expressions import col

    for split in splits:
        if not (staging / f"split={split}").is_dir():
            continue
        only = PathPartitionFilter.of(lambda parts, s=split: parts.get("split") == s, style="hive",
                                      base_dir=str(staging))
        ds = ray.data.read_parquet(str(staging), partition_filter=only)
        keep = col("error").is_null()
        if representation == "features":
            keep = keep & (col("transform") == ORIGINAL)
        ds.filter(expr=keep).select_columns(_columns(representation)).write_parquet(str(out / split))


def _shard_rows(rep_dir: Path) -> pd.DataFrame:
    """clip_id / label / split / transform of a written representation (for counts)."""
    parts = [pq.read_table(p, columns=["clip_id", "label", "split", "transform"])
             for p in sorted(rep_dir.rglob("*.parquet"))]
    if not parts:
        return pd.DataFrame(columns=["clip_id", "label", "split", "transform"])
    return pa.concat_tables(parts).to_pandas()


def _rep_entry(rep_dir: Path, representation: str, cfg: PrepareConfig) -> dict:
    rows = _shard_rows(rep_dir)
    aug = rows[rows["transform"] != ORIGINAL]
    entry: dict[str, Any] = {
        "path": representation,
        "rows": {s: int((rows["split"] == s).sum()) for s in SPLITS},
        "augmented_rows": {s: int((aug["split"] == s).sum()) for s in SPLITS},
        "transforms": {t: int(n) for t, n in rows["transform"].value_counts().sort_index().items()},
        "columns": _columns(representation),
        "computed_at": _now(),
    }
    if representation == "mel":
        entry["payload"] = {"column": "mel", "dtype": "uint8", "shape": [cfg.mel.size, cfg.mel.size, 3],
                            "colormap": cfg.mel.colormap, "scaling": "dB (ref=max), min-max per image"}
    elif representation == "waveform":
        entry["payload"] = {"column": "waveform", "dtype": "int16", "shape": [waveform_samples(cfg)],
                            "sample_rate": cfg.waveform_rate, "scale": 32767}
    return entry


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


def _reusable(shard_dir: Path, spec: PrepareSpec, inputs: dict) -> dict | None:
    """The existing manifest if it was made from these inputs and this config; else clear the set."""
    try:
        manifest = read_manifest(shard_dir)
    except (FileNotFoundError, ValueError):
        return None
    if (manifest.get("format") == MANIFEST_FORMAT and manifest.get("config_hash") == spec.hash()
            and manifest.get("inputs", {}).get("fingerprint") == inputs["fingerprint"]):
        return manifest
    log.info("prepare: inputs or config changed since %s was written; recomputing", shard_dir)
    for name in REPRESENTATIONS:
        shutil.rmtree(shard_dir / name, ignore_errors=True)
    return None


def _new_manifest(spec: PrepareSpec, found: Discovery, inputs: dict, timings: dict) -> dict:
    """Probe every file, draw the split over the usable clips, and start the manifest."""
    t = time.perf_counter()
    probed = _probe([str(c.path) for c in found.clips], spec.prepare)
    timings["probe"] = round(time.perf_counter() - t, 3)
    bad = {clip_id_from_filename(r["path"]): r for r in probed if r["error"]}
    skipped = [{"clip_id": c.clip_id, "path": str(c.path), "reason": bad[c.clip_id]["error"], "stage": "probe"}
               for c in found.clips if c.clip_id in bad]
    good = sorted(c.clip_id for c in found.clips if c.clip_id not in bad)
    log.info("prepare: probed %d files in %.1f s: %d usable, %d skipped",
             len(probed), timings["probe"], len(good), len(skipped))
    if len(good) < 2:
        first = skipped[0]["reason"] if skipped else "no clips"
        raise PrepareError(f"only {len(good)} of {len(found.clips)} clips under {found.root} are usable "
                           f"(first problem: {first}).")
    from raygenre.data.splits import make_split  # sklearn: kept out of the Ray workers' imports

    split = make_split(good, spec.split.name, spec.split.seeds[0], spec.split.test_fraction)
    ok = [r for r in probed if not r["error"]]
    aug = spec.prepare.augment
    return {
        "format": MANIFEST_FORMAT, "config_hash": spec.hash(), "config": spec.model_dump(mode="json"),
        "inputs": inputs,
        "split": {"name": split.name, "seed": split.seed, "test_fraction": spec.split.test_fraction,
                  **{s: getattr(split, s) for s in SPLITS}, "missing": split.missing, "excluded": split.excluded},
        "counts": {"clips": {s: len(getattr(split, s)) for s in SPLITS},
                   "genres": {s: {g: sum(genre_of(i) == g for i in getattr(split, s)) for g in GENRES}
                              for s in SPLITS},
                   "skipped": len(skipped), "representations": {}},
        "skipped": skipped, "ignored": found.ignored,
        "audio": {"native_rates": _tally(r["native_rate"] for r in ok), "channels": _tally(r["channels"] for r in ok),
                  "seconds_min": min(r["seconds"] for r in ok), "seconds_max": max(r["seconds"] for r in ok)},
        "augmentation": {"enabled": aug.enabled, "splits": ["train"], "applies_to": list(AUGMENTED_REPRESENTATIONS),
                         "transforms": transform_names(aug.stretch_factors, aug.shift_seconds)},
        "representations": {}, "versions": package_versions(VERSIONED), "timings_s": {}, "history": [],
    }


def _tally(values: Any) -> dict[str, int]:
    return dict(sorted(Counter(str(v) for v in values).items()))


def ensure_shards(spec: PrepareSpec, run_dir: Path | str,
                  representations: Sequence[str] | None = None) -> Path:
    """``RUN_DIR/shards/<spec.hash()>`` with every requested representation, computing only what is missing.

    A shard set is reused when its manifest was made from the same config and the same input
    files (path, size, modification time); otherwise it is recomputed.
    """
    wanted = _check(spec.prepare.representations if representations is None else representations, spec.prepare)
    run_dir = Path(run_dir).expanduser()
    shard_dir = run_dir / "shards" / spec.hash()
    start = time.perf_counter()
    timings: dict[str, float] = {}
    root = resolve_source(spec, run_dir)
    found = discover(root)
    inputs = {"source": spec.data.source, "root": str(root), "layout": found.layout,
              "files": len(found.clips), "fingerprint": fingerprint(found)}
    timings["inputs"] = round(time.perf_counter() - start, 3)  # discovery (and synthetic generation)
    manifest = _reusable(shard_dir, spec, inputs)
    have = (manifest or {}).get("representations", {})
    missing = [r for r in wanted if not (r in have and (shard_dir / r).is_dir())]
    if not missing:
        log.info("prepare: cache hit, reusing %s (%s)", shard_dir, ", ".join(wanted))
        return shard_dir
    shard_dir.mkdir(parents=True, exist_ok=True)
    cfg = spec.prepare
    with using_ray():
        if manifest is None:
            manifest = _new_manifest(spec, found, inputs, timings)
        assignment = {cid: s for s in SPLITS for cid in manifest["split"][s]}
        by_id = {c.clip_id: str(c.path) for c in found.clips}
        paths = sorted(by_id[cid] for cid in assignment)
        work = shard_dir / f"_work-{uuid.uuid4().hex[:8]}"
        try:
            t = time.perf_counter()
            log.info("prepare: computing %s for %d clips on Ray Data", ", ".join(missing), len(paths))
            _compute(paths, assignment, cfg, missing, work / "staging")
            timings["compute"] = round(time.perf_counter() - t, 3)
            failed = pq.read_table(work / "staging", columns=["clip_id", "path", "error"]).to_pylist()
            t = time.perf_counter()
            for rep in missing:
                (work / rep).mkdir(parents=True)
                _repack(work / "staging", work / rep, rep, SPLITS)
                shutil.rmtree(shard_dir / rep, ignore_errors=True)
                os.replace(work / rep, shard_dir / rep)
                manifest["representations"][rep] = _rep_entry(shard_dir / rep, rep, cfg)
            timings["write"] = round(time.perf_counter() - t, 3)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    known = {(s["path"], s["stage"]) for s in manifest["skipped"]}
    manifest["skipped"] += [{"clip_id": r["clip_id"], "path": r["path"], "reason": r["error"], "stage": "compute"}
                            for r in failed if r["error"] and (r["path"], "compute") not in known]
    manifest["counts"]["skipped"] = len(manifest["skipped"])
    manifest["counts"]["representations"] = {r: e["rows"] for r, e in manifest["representations"].items()}
    timings["total"] = round(time.perf_counter() - start, 3)
    manifest["timings_s"] = timings
    manifest["history"].append({"at": _now(), "computed": missing, "timings_s": timings})
    _write_manifest(shard_dir, manifest)
    log.info("prepare: wrote %s to %s in %.1f s", ", ".join(missing), shard_dir, timings["total"])
    return shard_dir


# --- readers ----------------------------------------------------------------------------------

def load_table(shard_dir: Path | str, representation: str, split: str | None = None,
               columns: Sequence[str] | None = None) -> pa.Table:
    """One representation's rows (of one split, or all), read with pyarrow."""
    folder = Path(shard_dir) / representation
    if not folder.is_dir():
        raise FileNotFoundError(f"no '{representation}' shards in {shard_dir}: prepare them with "
                                f"'python -m raygenre.prepare'.")
    files = sorted((folder / split if split else folder).rglob("*.parquet"))
    cols = list(columns) if columns else _columns(representation)
    if not files:
        return pa.table({c: pa.array([], pa.string()) for c in cols})
    return pa.concat_tables([pq.read_table(f, columns=cols) for f in files])


def load_features(shard_dir: Path | str) -> pd.DataFrame:
    """The ``read_features_csv`` frame from audio: index clip_id, ``label``, ``length``, the 57 features."""
    frame = load_table(shard_dir, "features").to_pandas()
    frame = frame[frame["transform"] == ORIGINAL].set_index("clip_id").sort_index()
    return frame[["label", *FEATURE_COLUMNS]]


def mel_array(table: pa.Table) -> np.ndarray:
    """The ``mel`` column as an (N, size, size, 3) uint8 array."""
    blobs = table.column("mel").to_pylist()
    size = int(round((len(blobs[0]) // 3) ** 0.5)) if blobs else 0
    return np.frombuffer(b"".join(blobs), dtype=np.uint8).reshape(len(blobs), size, size, 3)


def waveform_array(table: pa.Table) -> np.ndarray:
    """The ``waveform`` column as an (N, samples) int16 array (divide by 32767 for float)."""
    blobs = table.column("waveform").to_pylist()
    return np.frombuffer(b"".join(blobs), dtype=np.int16).reshape(len(blobs), -1)
