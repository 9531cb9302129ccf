"""Training rows for the torch loop: streamed from a dataset each epoch, or moved to the device once.

At paper settings a whole GTZAN training set is small (800 x 128 x 128 x 3 uint8 is 39 MB, x6 augmented
236 MB) while a GPU epoch over it takes ~0.1 s: reading it again from Ray Data every epoch costs more
than the epoch. A trial whose training rows fit under ``train.device_data_mb`` loads them once
(:meth:`DeviceRows.load`) and draws each epoch's batches on the device; larger sets stream as before.

Both paths shuffle the same way, so a fixed seed gives the same batches either way: rows are taken in
the dataset's order, in windows of ``window_size`` rows (a multiple of the batch size), and each window
is permuted by one ``torch.Generator`` seeded for the epoch. :func:`window_order` is that order as
indices, :func:`shuffle_windows` the same applied to a stream of batches.

:class:`LocalRows` stands in for a materialized Ray Dataset on a machine without Ray, so the loop itself
(not a copy) runs and can be measured with only torch installed. Nothing here imports Ray.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch

SHUFFLE_WINDOW = 1024  # rows; the training rows were also shuffled once before they became blocks


def window_size(batch_size: int, rows: int | None = None) -> int:
    """``rows`` (``SHUFFLE_WINDOW``) rounded up to whole batches, so no batch spans two windows."""
    return -(-max(rows or SHUFFLE_WINDOW, batch_size) // batch_size) * batch_size


def window_order(n: int, window: int, seed: int) -> torch.Tensor:
    """The row order of an epoch: each consecutive window of ``window`` rows permuted by one generator."""
    gen = torch.Generator().manual_seed(seed)
    parts = [start + torch.randperm(min(window, n - start), generator=gen) for start in range(0, n, window)]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)


def shuffle_windows(batches: Iterable[dict[str, torch.Tensor]], batch_size: int, window: int,
                    seed: int) -> Iterator[dict[str, torch.Tensor]]:
    """In-order batches regrouped into batches of ``batch_size`` in :func:`window_order`'s order."""
    gen = torch.Generator().manual_seed(seed)
    pending: list[dict[str, torch.Tensor]] = []
    held = 0

    def flush(parts: list[dict[str, torch.Tensor]]) -> Iterator[dict[str, torch.Tensor]]:
        rows = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        n = len(next(iter(rows.values())))
        perm = torch.randperm(n, generator=gen).to(next(iter(rows.values())).device)
        for start in range(0, n, batch_size):
            idx = perm[start:start + batch_size]
            yield {k: v[idx] for k, v in rows.items()}

    for batch in batches:
        pending.append(batch)
        held += len(next(iter(batch.values())))
        while held >= window:  # cut exactly one window off the front
            rows = {k: torch.cat([p[k] for p in pending]) for k in pending[0]}
            yield from flush([{k: v[:window] for k, v in rows.items()}])
            rest = {k: v[window:] for k, v in rows.items()}
            held -= window
            pending = [rest] if held else []
    if held:
        yield from flush(pending)


class DeviceRows:
    """A dataset's columns as tensors on one device, loaded once, batched there every epoch."""

    def __init__(self, columns: dict[str, torch.Tensor]) -> None:
        self.columns = columns
        self.rows = len(next(iter(columns.values()))) if columns else 0

    @classmethod
    def load(cls, dataset: Any, device: torch.device, batch_size: int = 4096) -> DeviceRows:
        """Every row of ``dataset`` (anything with ``iter_torch_batches``), in its order, on ``device``."""
        parts: dict[str, list[torch.Tensor]] = {}
        for batch in dataset.iter_torch_batches(batch_size=batch_size, device="cpu", prefetch_batches=2):
            for key, value in batch.items():
                parts.setdefault(key, []).append(value)
        return cls({k: torch.cat(v).to(device, non_blocking=True) for k, v in parts.items()})

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.columns.values())

    def batches(self, batch_size: int, seed: int | None) -> Iterator[dict[str, torch.Tensor]]:
        """In order (``seed`` None) or in :func:`window_order` of ``seed``; indexing happens on the device."""
        first = next(iter(self.columns.values()))
        order = (torch.arange(self.rows) if seed is None else
                 window_order(self.rows, window_size(batch_size), seed)).to(first.device)
        for start in range(0, self.rows, batch_size):
            idx = order[start:start + batch_size]
            yield {k: v[idx] for k, v in self.columns.items()}


def row_batches(rows: Any, batch_size: int, device: torch.device, seed: int | None,
                ) -> Iterator[dict[str, torch.Tensor]]:
    """Batches of a dataset (streamed in its order, window-shuffled when ``seed`` is given) or of
    :class:`DeviceRows` (drawn on the device): the same batches either way."""
    if isinstance(rows, DeviceRows):
        yield from rows.batches(batch_size, seed)
        return
    cuda = device.type == "cuda"
    stream = rows.iter_torch_batches(batch_size=batch_size, device="auto" if cuda else "cpu", pin_memory=cuda,
                                     prefetch_batches=2)
    # "auto" is the worker's device inside Ray Train only: in the Tune trial itself (workers: 0) it is the CPU
    stream = ({k: v.to(device, non_blocking=True) for k, v in batch.items()} for batch in stream)
    yield from (stream if seed is None else shuffle_windows(stream, batch_size, window_size(batch_size), seed))


class LocalRows:
    """A materialized dataset without Ray: numpy or torch columns, ``iter_torch_batches`` in order."""

    def __init__(self, columns: dict[str, Any]) -> None:
        self.columns = {k: torch.as_tensor(v) for k, v in columns.items()}

    def count(self) -> int:
        return len(next(iter(self.columns.values())))

    def iter_torch_batches(self, *, batch_size: int = 256, device: str = "cpu", **_: Any,
                           ) -> Iterator[dict[str, torch.Tensor]]:
        target = "cuda" if device == "auto" and torch.cuda.is_available() else "cpu" if device == "auto" else device
        for start in range(0, self.count(), batch_size):
            yield {k: v[start:start + batch_size].to(target) for k, v in self.columns.items()}
