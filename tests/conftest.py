"""One local Ray for the whole test session (2 CPUs, no dashboard), lean settings from RAY_NOTES.

``address="local"`` starts a new Ray even when another one runs on the machine.
"""

import os

import pytest

os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "1")
os.environ.pop("RAY_ADDRESS", None)


@pytest.fixture(scope="session")
def ray_session():
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024**2,
                 log_to_driver=False)
    yield ray
    ray.shutdown()
