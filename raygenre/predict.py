"""``python -m raygenre.predict AUDIO_OR_DIR... --run RUN_DIR``: the genre of new recordings.

    python -m raygenre.sweep exp3 --profile quick --name demo
    python -m raygenre.predict my_song.flac more_songs/ --run runs/demo --top 3

By default the best kept model of the run (highest test accuracy among records with a kept model)
answers; ``--model NAME[:VARIANT]`` picks another. Files are decoded and turned into the model's
inputs by the same code prepare uses. A directory is predicted on Ray Data (an actor pool that loads
the model once per actor); single files are predicted here. A file that cannot be used gets its own
error line and the others are still predicted (exit 1 if any failed).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from pathlib import Path

from raygenre.data.audio import MAX_FILE_MB, MAX_SECONDS, AudioLimits, shown
from raygenre.errors import ArtifactError, RaygenreError, one_line
from raygenre.models.artifacts import artifact_folder
from raygenre.ray_session import ADDRESS_HELP
from raygenre.records import latest_by_trial, read_records_checked
from raygenre.stats import wilson_interval
from raygenre.storage import RunPath

FORMATS = ("table", "json", "csv")


def kept_models(run_dir: RunPath) -> list[dict]:
    """Ok, test-scored records of ``run_dir`` whose model was kept, best test accuracy first (bad record
    lines are skipped and counted on stderr)."""
    read = read_records_checked(run_dir)
    if read.skipped:
        print(f"warning: {read.skipped_summary()}", file=sys.stderr)
    records = [r for r in latest_by_trial(read.records).values()
               if r["status"] == "ok" and r.get("artifact") and (r.get("test") or {}).get("set", "test") == "test"]
    return sorted(records, key=lambda r: (-r["metrics"]["accuracy"], r["trial_key"]))


def choose_model(run_dir: RunPath, wanted: str | None) -> dict:
    """The record whose kept model answers: the best, or the best of ``NAME[:VARIANT]``."""
    kept = kept_models(run_dir)
    if not kept:
        raise ArtifactError(f"{run_dir} has no kept models: run the sweep with artifacts: table_rows or all "
                            f"(the default keeps the models behind the report's tables).")
    if wanted and "/" in wanted:  # a trial key names one record exactly
        chosen = [r for r in kept if r["trial_key"] == wanted]
        if not chosen:
            raise ArtifactError(f"{run_dir} has no kept model of trial '{wanted}'.")
        kept = chosen
    elif wanted:
        name, _, variant = wanted.partition(":")
        chosen = [r for r in kept if r["model"] == name and (not variant or r["variant"] == variant)]
        if not chosen:
            available = sorted({f"{r['model']}:{r['variant']}" for r in kept})
            raise ArtifactError(f"{run_dir} has no kept model '{wanted}': choose one of {', '.join(available)}.")
        kept = chosen
    return kept[0]


def describe_choice(record: dict) -> str:
    m = record["metrics"]
    lo, hi = wilson_interval(m["n_correct"], m["n_test"])
    return (f"model: {record['model']} ({record['variant']}), test accuracy {m['accuracy']:.3f} "
            f"[95 % CI {lo:.3f}-{hi:.3f}] on {m['n_test']} clips, split {record['split']['name']} "
            f"seed {record['split']['seed']} (trial {record['trial_key']})")


def audio_files(targets: list[str]) -> tuple[list[Path], list[Path], list[dict]]:
    """(files given directly, files found in directories, errors for paths that do not exist)."""
    import soundfile as sf

    extensions = {f".{ext.lower()}" for ext in sf.available_formats()} | {".au", ".oga", ".mp3"}
    direct, found, errors = [], [], []
    for target in targets:
        path = Path(target).expanduser()
        if path.is_dir():
            found += sorted(p for p in path.rglob("*")  # links too: a dangling one gets its error line
                            if (p.is_file() or p.is_symlink()) and p.suffix.lower() in extensions)
        elif path.is_file():
            direct.append(path)
        else:
            errors.append({"path": shown(path), "windows": 0, "probabilities": None,
                           "error": "dangling link" if path.is_symlink() else "no such file or folder"})
    return direct, found, errors


def predict_here(predictor, files: list[Path], limits: AudioLimits) -> list[dict]:
    """Files given one by one are predicted in this process, with the model already loaded."""
    return [predictor.predict(p, shown(p), limits) for p in files]


def node_cpus() -> int:
    """CPUs this process may use (its affinity mask where the OS has one, as containers set it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def predict_on_ray(folder: Path, files: list[Path], workers: int | None, limits: AudioLimits,
                   address: str | None = None) -> list[dict]:
    """Every file through Ray Data: paths -> an actor pool that loads the kept model once per actor and
    reads each file itself; at most one actor per CPU, and no worker or raylet lines on this console."""
    import ray

    from raygenre.inference import PredictWorker
    from raygenre.ray_session import ray_session

    with ray_session(num_cpus=min(node_cpus(), len(files)), log_to_driver=False, address=address):
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        n = max(1, min(workers or cpus, cpus, len(files)))
        ds = ray.data.from_items([{"index": i, "path": os.fsencode(f)} for i, f in enumerate(files)])
        rows = ds.map_batches(PredictWorker, fn_constructor_args=(str(folder), limits), batch_size=4,
                              batch_format="numpy", num_cpus=1,
                              compute=ray.data.ActorPoolStrategy(min_size=n, max_size=n)).take_all()
    rows.sort(key=lambda r: int(r["index"]))
    return [{"path": str(r["path"]), "windows": int(r["windows"]), "error": str(r["error"]) or None,
             "probabilities": json.loads(r["probabilities"]) if r["probabilities"] else None} for r in rows]


def render(results: list[dict], fmt: str, top: int) -> str:
    ok = [r for r in results if not r["error"]]
    ranked = {r["path"]: sorted(r["probabilities"].items(), key=lambda kv: -kv[1])[:top] for r in ok}
    if fmt == "json":
        return json.dumps([{"path": r["path"], "windows": r["windows"],
                            "top": [{"genre": g, "probability": round(p, 4)} for g, p in ranked[r["path"]]]}
                           for r in ok], indent=2)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["path", "rank", "genre", "probability", "windows"])
        for r in ok:
            for rank, (g, p) in enumerate(ranked[r["path"]], 1):
                writer.writerow([r["path"], rank, g, f"{p:.4f}", r["windows"]])
        return buf.getvalue().rstrip("\n")
    width = max([len(r["path"]) for r in ok] + [4])
    lines = [f"{'file'.ljust(width)}  top {top} (probability; windows)"]
    for r in ok:
        picks = "  ".join(f"{g} {p:.2f}" for g, p in ranked[r["path"]])
        lines.append(f"{r['path'].ljust(width)}  {picks}  ({r['windows']})")
    return "\n".join(lines)


def local_copy(folder: RunPath) -> Path:
    """The kept model's folder on this machine: itself, or a download from object storage."""
    if folder.local is not None:
        return folder.local
    if not folder.is_dir():
        raise ArtifactError(f"{folder} does not exist: the record names a kept model that is not there.")
    import tempfile

    return folder.download(Path(tempfile.mkdtemp(prefix="raygenre-model-")) / folder.name)


def positive(text: str) -> float:
    """An argparse type for limits: a number above 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not a number above 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m raygenre.predict", description=__doc__.splitlines()[0])
    p.add_argument("inputs", nargs="+", metavar="AUDIO_OR_DIR", help="audio files and/or folders of audio files")
    p.add_argument("--run", required=True, type=RunPath.of,
                   help="a run directory written by python -m raygenre.sweep (a folder or an s3:// URI)")
    p.add_argument("--model", help="NAME or NAME:VARIANT of a kept model, or a record's trial key "
                                   "(default: the best on the test clips)")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.add_argument("--top", type=int, default=3, help="genres shown per file (default 3)")
    p.add_argument("--workers", type=int, help="actors for folders (default and most: one per CPU, one per file)")
    p.add_argument("--max-mb", type=positive, help=f"larger files are refused unread (default: the model's, else "
                                                f"{MAX_FILE_MB:g})")
    p.add_argument("--max-seconds", type=positive, help=f"longer files are refused before decoding (default: the "
                                                     f"model's, else {MAX_SECONDS:g})")
    p.add_argument("--address", help=ADDRESS_HELP)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        record = choose_model(args.run, args.model)
        folder = local_copy(artifact_folder(args.run, record["artifact"]))
        print(describe_choice(record), file=sys.stderr)
        if record.get("feature_set") == "kaggle58":
            print("warning: this model reads the Kaggle 'length' input, a property of the source file (its sample "
                  "count), not of the music; prefer a content57 model for audio from elsewhere.", file=sys.stderr)
        from raygenre.inference import Predictor

        predictor = Predictor(folder)  # an unusable kept model fails here, once, in one sentence
        limits = predictor.limits(args.max_mb, args.max_seconds)
        direct, found, results = audio_files(args.inputs)
        results += predict_here(predictor, direct, limits) if direct else []
        results += predict_on_ray(folder, found, args.workers, limits, args.address) if found else []
    except RaygenreError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    for r in results:
        if r["error"]:
            print(f"error: {r['path']}: {r['error']}", file=sys.stderr)
    if any(not r["error"] for r in results):
        print(render(results, args.format, max(1, args.top)))
    return 1 if any(r["error"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
