"""Two lanes for a sweep's studies on a cluster with GPUs: GPU work and CPU-only work at the same time.

The studies whose trials use a GPU (networks on mel images and waveforms) run one after another in the
GPU lane; the CPU-only studies (feature models, exp4's resamples and training sizes) run one after another
beside them in the CPU lane. Run in turn, the GPU would idle through every CPU-only study -- about 2.5 of
the ~11 minutes of ``all --profile paper`` on one GPU node (bench/README.md). The CPUs are split: the GPU
lane's trials may hold what its largest study needs at once (:func:`cpus_held`), the CPU lane the rest
while the GPU lane runs, and every CPU once it is done (decided as each CPU study starts). When the cluster
cannot give the CPU lane a trial's worth of CPUs beside the GPU lane, the studies run in turn instead. On
a cluster of several nodes Ray keeps CPU-only trials off GPU nodes while other nodes have room (its
scheduler's ``scheduler_avoid_gpu_nodes``), so the split holds per node as well as in total.

Each lane is a thread of the driver running one Tune experiment at a time; every Tune run registers its
trainable under a name of its own, one registration at a time (``raygenre.train.tune_runner.registered``).
When a lane fails, or on Ctrl-C, the other lane's running Tune experiment is stopped (``LaneShare.stop``)
and the first error is raised once both have stopped; records already written stay, and ``--resume`` runs
only what is missing.
"""

from __future__ import annotations

import contextlib
import io
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

import ray

from raygenre.records import ok_trial_keys
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
    """The studies of each lane, in the order they run, and how the cluster's CPUs are split between them."""
    gpu: list[tuple[ExperimentRun, str, list[dict]]]
    cpu: list[tuple[ExperimentRun, set[str] | None]]  # a run's CPU-only studies; None: all, after its choice
    cpus_beside: float  # what the CPU lane's trials may hold while the GPU lane runs
    cpus_gpu_lane: float  # what the GPU lane's trials may hold


def plan_lanes(runs: list[ExperimentRun]) -> Lanes | None:
    """The two lanes of these experiments' unrecorded trials (one sweep's runs share a run directory), or
    None when there is nothing to overlap (one lane would be empty) or no room to (the GPU lane needs every
    CPU)."""
    done = ok_trial_keys(runs[0].run_dir) if runs else set()
    gpu, cpu = [], []
    for run in runs:
        if run.chooses_model:  # exp4 choosing its model: its studies are known only then; all CPU-side
            cpu.append((run, None))
            continue
        beside = set()
        for study, trials in run.studies():
            todo = [t for t in trials if t["trial_key"] not in done]
            if todo and uses_gpu(run, todo):
                gpu.append((run, study, todo))
            elif todo:
                beside.add(study)
        if beside:
            cpu.append((run, beside))
    if not gpu or not cpu:
        return None
    total = ray.cluster_resources().get("CPU", 1)
    held = max(cpus_held(run, trials) for run, _, trials in gpu)
    smallest = min(run.cfg.resources.cpus_per_trial for run, _ in cpu)
    if total - held < smallest:
        return None
    lanes = Lanes(gpu, cpu, total - held, held)
    names = [", ".join(sorted(studies)) if studies else f"{run.cfg.experiment} (after its model choice)"
             for run, studies in cpu]
    print(f"[sweep] GPU lane, one study after another: {', '.join(s for _, s, _ in gpu)}; "
          f"beside it on {lanes.cpus_beside:g} of {total:g} CPUs: {', '.join(names)}", flush=True)
    return lanes


class WholeLines(io.TextIOBase):
    """A stream for two lanes printing at once: each thread's text goes out a whole line at a time, so one
    lane's progress line is never cut by the other's (``print`` writes its text and newline separately)."""

    def __init__(self, target):
        self.target = target
        self.lock = threading.Lock()
        self.pending = threading.local()

    @property
    def encoding(self) -> str | None:
        return getattr(self.target, "encoding", None)

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


def run_lanes(lanes: Lanes, poll_s: float = 0.5, stop_wait_s: float = 120.0) -> None:
    """Run the GPU lane and the CPU lane at once, each in a thread; returns when both are done."""
    from raygenre.train.tune_runner import LaneShare

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
        share = LaneShare(lanes.cpus_gpu_lane, stop)
        for run, study, trials in lanes.gpu:
            if stop.is_set():
                return
            run.run_study(study, trials, share)

    def cpu_lane() -> None:
        def share() -> LaneShare:
            return LaneShare(None if gpu_done.is_set() else lanes.cpus_beside, stop)

        for run, studies in lanes.cpu:
            if stop.is_set():
                return
            run.choose_model(share())
            for study, trials in run.studies():
                if stop.is_set():
                    return
                if studies is None or study in studies:
                    run.run_study(study, trials, share())

    threads = [threading.Thread(target=guarded(gpu_lane, gpu_done), name="gpu-lane", daemon=True),
               threading.Thread(target=guarded(cpu_lane), name="cpu-lane", daemon=True)]
    with contextlib.redirect_stdout(WholeLines(sys.stdout)):
        for thread in threads:
            thread.start()
        try:
            for thread in threads:  # a timed join keeps Ctrl-C working in the main thread
                while thread.is_alive():
                    thread.join(poll_s)
        except BaseException:  # Ctrl-C: stop both lanes' Tune runs, give them a moment to end, then go
            stop.set()
            for thread in threads:
                thread.join(stop_wait_s)
            raise
    for extra in errors[1:]:
        print(f"[sweep] the other lane also stopped: {type(extra).__name__}: {extra}", file=sys.stderr, flush=True)
    if errors:
        raise errors[0]
