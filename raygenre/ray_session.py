"""The one way raygenre starts or attaches to Ray.

Under ``ray job submit`` (``RAY_ADDRESS`` set) or when a Ray is already initialised in this process
(tests), it attaches; otherwise it starts a local Ray and shuts down only the one it started. With
``CI`` set, Ray's own log lines and progress bars are kept off the console so the output reads as
raygenre's progress.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager


def quiet_console() -> bool:
    return bool(os.environ.get("CI") or os.environ.get("RAYGENRE_QUIET"))


@contextmanager
def ray_session(num_cpus: int | None = None) -> Iterator[bool]:
    """Yield True when this call started Ray (and will shut it down), False when it attached."""
    import ray
    from ray.data import DataContext

    quiet = quiet_console()
    if quiet:  # Tune's legacy console output honours verbose=0 (the new one still prints a box per study)
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    started = not ray.is_initialized()
    if started:
        kwargs = {"log_to_driver": not quiet, "logging_level": logging.ERROR if quiet else logging.INFO}
        if os.environ.get("RAY_ADDRESS"):
            ray.init(**kwargs)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, **kwargs)
    if quiet:  # quiet first: switching the bars off logs a warning of its own
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        DataContext.get_current().enable_progress_bars = False
    try:
        yield started
    finally:
        if started:
            ray.shutdown()


def cluster_hardware() -> dict:
    """CPUs, GPUs and live nodes of the cluster this process is attached to."""
    import ray

    res = ray.cluster_resources()
    return {"cluster_cpus": res.get("CPU", 0), "cluster_gpus": res.get("GPU", 0),
            "nodes": len([n for n in ray.nodes() if n.get("Alive")])}
