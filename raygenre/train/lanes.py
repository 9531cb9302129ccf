"""Two lanes for a sweep's studies on a cluster with GPUs: GPU work and CPU-only work at the same time.

The studies whose trials use a GPU (networks on mel images and waveforms) run one after another in the
GPU lane; the CPU-only studies (feature models, exp4's resamples and training sizes) run one after another
beside them in the CPU lane. Run in turn, the GPU would idle through every CPU-only study -- about 2.5 of
the ~11 minutes of ``all --profile paper`` on one GPU node (bench/README.md). While the GPU lane runs, the
CPU lane holds at most the CPUs the GPU lane's trials leave free (:func:`cpus_beside`), so a GPU trial never
waits for a core behind a feature model; once the GPU lane is done, each further CPU study may use them all.

Each lane is a thread of the driver running one Tune experiment at a time; every Tune run registers its
trainable under a name of its own, one registration at a time (``raygenre.train.tune_runner.registered``).
A lane that fails stops the other before its next study; the first error is raised once both have
stopped. Records already written stay, and ``--resume`` runs only what is missing.
"""

from __future__ import annotations

import contextlib
import io
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

import ray

from raygenre.train.experiment import ExperimentRun
from raygenre.train.tune_runner import DISTRIBUTED_TRIAL_CPU, drives_trainer, gpus_for, max_concurrent


def uses_gpu(run: ExperimentRun, trials: list[dict]) -> bool:
    """True when any of a study's trials asks for a GPU on this cluster."""
    return any(gpus_for(run.cfg, t) > 0 for t in trials)


def cpus_held(run: ExperimentRun, trials: list[dict]) -> float:
    """The most CPUs a GPU study's trials hold at once: as many trials as the cluster's GPUs (and the study's
    cap) let run together, each holding its own CPUs or its trainer workers' CPUs."""
    from raygenre.train.torch_runner import WORKER_CPUS

    cpus, gpus = [], []
    for t in trials:
        share = gpus_for(run.cfg, t)
        if drives_trainer(t):
            workers = int(t["train"].get("workers", 1))
            cpus.append(workers * WORKER_CPUS + DISTRIBUTED_TRIAL_CPU)
            gpus.append(workers * share)
        else:
            cpus.append(run.cfg.resources.cpus_per_trial)
            gpus.append(share)
    at_once = len(trials)
    smallest = min((g for g in gpus if g > 0), default=0)
    if smallest:
        at_once = min(at_once, max(1, int(ray.cluster_resources().get("GPU", 0) / smallest + 1e-9)))
    cap = max_concurrent(run.cfg, trials)
    if cap:
        at_once = min(at_once, cap)
    return at_once * max(cpus)


@dataclass
class Lanes:
    """The studies of each lane, in the order they run, and the CPUs the CPU lane holds beside the GPU lane."""
    gpu: list[tuple[ExperimentRun, str, list[dict]]]
    cpu: list[ExperimentRun]  # runs with CPU-only studies (all of them while exp4's model is unchosen)
    cpus_beside: float

    @staticmethod
    def is_cpu_study(run: ExperimentRun, trials: list[dict]) -> bool:
        return run.choice_pending or not uses_gpu(run, trials)


def plan_lanes(runs: list[ExperimentRun]) -> Lanes | None:
    """The two lanes of these experiments, or None when one lane would be empty (nothing to overlap)."""
    gpu = [(run, study, trials) for run in runs if not run.choice_pending
           for study, trials in run.studies() if uses_gpu(run, trials)]
    beside = [study for run in runs for study, trials in run.studies() if Lanes.is_cpu_study(run, trials)]
    if not gpu or not beside:
        return None
    total = ray.cluster_resources().get("CPU", 1)
    held = max(cpus_held(run, trials) for run, _, trials in gpu)
    smallest = min(run.cfg.resources.cpus_per_trial for run in runs)
    cpu_runs = [run for run in runs if any(Lanes.is_cpu_study(run, t) for _, t in run.studies())]
    lanes = Lanes(gpu, cpu_runs, max(smallest, total - held))
    print(f"[sweep] GPU lane, one study after another: {', '.join(s for _, s, _ in gpu)}; "
          f"beside it on {lanes.cpus_beside:g} of {total:g} CPUs: {', '.join(beside)}", flush=True)
    return lanes


class WholeLines(io.TextIOBase):
    """A stream for two lanes printing at once: each thread's text goes out a whole line at a time, so one
    lane's progress line is never cut by the other's (``print`` writes its text and newline separately)."""

    def __init__(self, target):
        self.target = target
        self.lock = threading.Lock()
        self.pending = threading.local()

    def write(self, text: str) -> int:
        lines, newline, rest = (getattr(self.pending, "text", "") + text).rpartition("\n")
        self.pending.text = rest
        if newline:
            with self.lock:
                self.target.write(lines + newline)
                self.target.flush()
        return len(text)

    def flush(self) -> None:  # a partial line waits for its end
        self.target.flush()


def run_lanes(lanes: Lanes, poll_s: float = 0.5) -> None:
    """Run the GPU lane and the CPU lane at once, each in a thread; returns when both are done."""
    stop = threading.Event()
    gpu_done = threading.Event()
    errors: list[BaseException] = []

    def guarded(body: Callable[[], None], done: threading.Event | None = None) -> Callable[[], None]:
        def lane() -> None:
            try:
                body()
            except BaseException as exc:  # noqa: BLE001 -- handed to the main thread, which raises it
                errors.append(exc)
                stop.set()
            finally:
                if done is not None:
                    done.set()
        return lane

    def gpu_lane() -> None:
        for run, study, trials in lanes.gpu:
            if stop.is_set():
                return
            run.run_study(study, trials)

    def cpu_lane() -> None:
        for run in lanes.cpu:
            if stop.is_set():
                return
            run.choose_model()
            for study, trials in run.studies():
                if stop.is_set():
                    return
                if lanes.is_cpu_study(run, trials):
                    run.run_study(study, trials, cpu_limit=None if gpu_done.is_set() else lanes.cpus_beside)

    threads = [threading.Thread(target=guarded(gpu_lane, gpu_done), name="gpu-lane", daemon=True),
               threading.Thread(target=guarded(cpu_lane), name="cpu-lane", daemon=True)]
    with contextlib.redirect_stdout(WholeLines(sys.stdout)):
        for thread in threads:
            thread.start()
        for thread in threads:  # a timed join keeps Ctrl-C working in the main thread
            while thread.is_alive():
                thread.join(poll_s)
    if errors:
        raise errors[0]
