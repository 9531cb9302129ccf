"""When the torch loop writes a checkpoint, and what its checkpoints cost.

A checkpoint per epoch is what resume needs on a slow CPU, and what wastes a GPU: VGG16 trained whole
holds 134 M parameters plus AdamW's two moments, ~1.6 GB per write, against ~0.1 s of GPU time per
800-clip epoch. The policy (``train.checkpoint``) writes

* at the end (the final checkpoint holds the fitted model and predictions);
* when the next epoch starts a new phase (``model.phase_change_epochs``: ResNet18's or Wav2Vec2's
  unfreeze), so a resume never repeats the frozen phase;
* in between when ``every_s`` seconds passed since the last write (0: every epoch), or when the write
  is cheap against the training it protects (estimated write seconds <= ``max_overhead`` x training
  seconds since the last write): a small CPU model still checkpoints every epoch, VGG16 on a GPU not.

Epoch reports do not depend on it: the loop reports every epoch, with or without a checkpoint, so
schedulers that stop trials by epoch (ASHA) see every epoch. Pure Python: no Ray, no torch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

#: bytes per second assumed for a write before one has been measured (a local disk, conservatively)
ASSUMED_WRITE_RATE = 200e6


class CheckpointPolicy:
    """Decides per finished epoch whether to write, and sums the writes' bytes and seconds."""

    def __init__(self, every_s: float = 60.0, max_overhead: float = 0.05, phase_changes: Iterable[int] = (),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s = float(every_s)
        self.max_overhead = float(max_overhead)
        self.phase_changes = {int(e) for e in phase_changes}
        self.clock = clock
        self.since = clock()          # training time is counted from the last write (or the start)
        self.rate: float | None = None  # measured bytes per second of the writes so far
        self.writes, self.bytes, self.seconds = 0, 0, 0.0

    @classmethod
    def from_config(cls, train: dict, phase_changes: Iterable[int] = ()) -> CheckpointPolicy:
        """From a spec's ``train`` block (older specs without ``checkpoint`` write every epoch)."""
        block = train.get("checkpoint") or {"every_s": 0.0}
        return cls(float(block.get("every_s", 60.0)), float(block.get("max_overhead", 0.05)), phase_changes)

    def due(self, epochs_done: int, done: bool, state_bytes: int = 0) -> bool:
        """Whether to write after ``epochs_done`` epochs; ``state_bytes`` sizes the write for the overhead rule."""
        if done or epochs_done in self.phase_changes or self.every_s <= 0:
            return True
        elapsed = self.clock() - self.since
        if elapsed >= self.every_s:
            return True
        estimate = state_bytes / (self.rate or ASSUMED_WRITE_RATE)
        return estimate <= self.max_overhead * elapsed

    def wrote(self, nbytes: int, seconds: float) -> None:
        """Account one write and restart the clock of the work it protects."""
        self.writes += 1
        self.bytes += int(nbytes)
        self.seconds += float(seconds)
        if seconds > 0 and nbytes > 0:
            self.rate = self.bytes / max(self.seconds, 1e-9)
        self.since = self.clock()

    def summary(self) -> dict[str, float]:
        return {"checkpoint_writes": self.writes, "checkpoint_bytes": self.bytes,
                "checkpoint_s": round(self.seconds, 4)}


def state_nbytes(model: Any, optimizer: Any) -> int:
    """Bytes a resumable checkpoint would hold: the model's state outside a frozen trunk (never written)
    plus the optimizer's state, counted without copying anything."""
    trunk = model.frozen_trunk() if hasattr(model, "frozen_trunk") else None
    skip = {id(v) for v in trunk.state_dict(keep_vars=True).values()} if trunk is not None else set()
    total = sum(v.numel() * v.element_size() for v in model.state_dict(keep_vars=True).values() if id(v) not in skip)
    for state in optimizer.state.values():
        total += sum(v.numel() * v.element_size() for v in state.values() if hasattr(v, "element_size"))
    return total
