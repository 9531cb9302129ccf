"""Where a spectrogram (or waveform) training loop runs: in Ray Train workers, or in the Tune trial itself.

The loop (:func:`raygenre.train.torch_loop.train_loop`) asks its session for five things: its rank and
world size, its dataset shards, the latest checkpoint, a folder to write the next one into, and a place to
report an epoch. Two sessions answer:

* :class:`RayTrainSession` -- inside a ``TorchTrainer`` worker (``train.workers >= 1``): Ray Train's own
  API; Train persists each reported checkpoint to the run's storage and hands the latest back on restart.
* :class:`InTrialSession` -- ``train.workers: 0``: the loop runs in the Tune trial's own process, with no
  worker group. Starting a worker group costs ~15 s per trial on a small CPU machine (actor start, torch
  import, process group), more than a quick-profile trial trains. Ray Train's own local mode
  (``ScalingConfig(num_workers=0)``) cannot serve here: its ``ray.train.*`` calls raise inside a Tune
  trial (Ray 2.60, ``requires_train_worker(raise_in_tune_session=True)``). This session keeps the latest
  checkpoint in a folder of the run itself, swapped in whole, so a killed trial resumes from its last
  finished epoch exactly as with workers.

The in-trial session with a local folder needs only torch: nothing on that path imports Ray, pyarrow or
the config layer (object storage and Ray Train import theirs when used), so the real loop can be measured
on a bare GPU machine (``bench/paper_time.py``; ``tests/test_paper_time.py`` blocks those imports).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

STATE_FILE = "state.pt"
LATEST = "latest"  # in object storage: the name of the newest fully uploaded checkpoint


class RayTrainSession:
    """The loop inside a Ray Train worker."""

    def __init__(self) -> None:
        import ray.train

        self._context = ray.train.get_context()

    @property
    def rank(self) -> int:
        return self._context.get_world_rank()

    @property
    def world_size(self) -> int:
        return self._context.get_world_size()

    def device(self) -> torch.device:
        """CUDA only where torch can use it (a node may advertise a logical GPU it lacks)."""
        import ray.train.torch

        return ray.train.torch.get_device() if torch.cuda.is_available() else torch.device("cpu")

    def shard(self, name: str) -> Any:
        import ray.train

        return ray.train.get_dataset_shard(name)

    def checkpoint_dir(self) -> Any:
        """A context manager giving the latest checkpoint's folder, or None."""
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        return checkpoint.as_directory() if checkpoint is not None else _value(None)

    def prepare_model(self, module: nn.Module, device: torch.device | bool) -> nn.Module:
        import ray.train.torch

        return ray.train.torch.prepare_model(module, move_to_device=device)

    @contextmanager
    def new_checkpoint(self) -> Iterator[tuple[str, Callable[[], str]]]:
        with tempfile.TemporaryDirectory() as folder:
            yield folder, lambda: folder

    def report(self, metrics: dict[str, Any], folder: str | None) -> None:
        import ray.train

        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder) if folder else None)


class InTrialSession:
    """The loop in the Tune trial's own process (``train.workers: 0``): one rank, datasets as given, and
    the latest checkpoint kept in ``persist_to``.

    ``persist_to`` may be in object storage: the checkpoint is then written on this machine and each
    finished one uploaded beside the previous one before a small ``latest`` object points at it, so a
    trial re-launched on any node resumes from the last epoch that was fully uploaded.
    """

    rank, world_size = 0, 1

    def __init__(self, datasets: dict[str, Any], persist_to: str, device: torch.device | None = None) -> None:
        self.datasets = datasets
        self.remote = None
        self.persist_to = persist_to
        if "://" in str(persist_to) and not str(persist_to).startswith("file://"):  # storage.is_remote, sans pyarrow
            from raygenre.config import config_hash
            from raygenre.storage import RunPath

            self.remote = RunPath.of(persist_to)
            self.persist_to = os.path.join(tempfile.gettempdir(), "raygenre-train-mirror", config_hash(persist_to, 16))
        self._device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.last_metrics: dict[str, Any] | None = None
        if self.remote:  # the object store is the truth: what this node kept from before may be stale
            self._download_latest()

    def device(self) -> torch.device:
        return self._device

    def shard(self, name: str) -> Any:
        return self.datasets[name]

    def latest(self) -> str | None:
        """The latest checkpoint folder (``.old`` is the previous one, kept only while the next is swapped in)."""
        for folder in (self.persist_to, f"{self.persist_to}.old"):
            if os.path.isfile(os.path.join(folder, STATE_FILE)):
                return folder
        return None

    def checkpoint_dir(self) -> Any:
        return _value(self.latest())

    def prepare_model(self, module: nn.Module, device: torch.device | bool) -> nn.Module:
        return module.to(device) if isinstance(device, torch.device) else module

    @contextmanager
    def new_checkpoint(self) -> Iterator[tuple[str, Callable[[], str]]]:
        """Written to ``<persist_to>.partial``, then swapped in whole: a kill at any moment leaves the
        previous epoch's checkpoint readable."""
        staging, old = f"{self.persist_to}.partial", f"{self.persist_to}.old"
        shutil.rmtree(staging, ignore_errors=True)
        os.makedirs(staging)

        def publish() -> str:
            shutil.rmtree(old, ignore_errors=True)
            if os.path.isdir(self.persist_to):
                os.replace(self.persist_to, old)
            os.replace(staging, self.persist_to)
            shutil.rmtree(old, ignore_errors=True)
            if self.remote:
                self._upload(self.persist_to)
            return self.persist_to

        yield staging, publish

    def _upload(self, folder: str) -> None:
        """The checkpoint to ``<remote>/<new id>/``, then ``latest`` names it, then older ones go."""
        previous = self._remote_pointer()
        name = uuid.uuid4().hex[:12]
        (self.remote / name).upload(folder)
        (self.remote / LATEST).write_text(name)
        if previous:
            (self.remote / previous).delete()

    def _remote_pointer(self) -> str | None:
        pointer = self.remote / LATEST
        return pointer.read_text().strip() if pointer.is_file() else None

    def _download_latest(self) -> None:
        for folder in (self.persist_to, f"{self.persist_to}.old", f"{self.persist_to}.partial"):
            shutil.rmtree(folder, ignore_errors=True)
        name = self._remote_pointer()
        if name:
            (self.remote / name).download(self.persist_to)

    def report(self, metrics: dict[str, Any], folder: str | None) -> None:
        self.last_metrics = metrics


@contextmanager
def _value(folder: str | None) -> Iterator[str | None]:
    yield folder
