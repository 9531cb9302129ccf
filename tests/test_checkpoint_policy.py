"""train.checkpoint: writes by time, at phase changes and at the end; reports every epoch; resume from the last.

The loop runs Ray-free here (raygenre.train.local_run: the in-trial session on local rows), so these are fast.
"""

import numpy as np
import pytest

from raygenre.train.checkpoint_policy import CheckpointPolicy
from raygenre.train.local_run import PAPER_TRAIN, run_local

RESNET = {"name": "resnet18", "family": "spectrogram", "variant": "last_then_all", "params": {"head_epochs": 2}}


def _rows(n: int, seed: int, size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 10
    x = rng.integers(0, 64, (n, size, size, 3), dtype=np.uint8) + (y[:, None, None, None] * 19).astype(np.uint8)
    return x, y


class Kill(Exception):
    pass


def _watch(log: list, kill_at: int | None = None):
    """A session hook recording (epoch, checkpointed?) of every report, raising at epoch ``kill_at``."""
    def hook(session):
        keep = session.report

        def report(metrics, folder):
            if kill_at is not None and metrics["epoch"] == kill_at:
                raise Kill()
            log.append((metrics["epoch"], folder is not None))
            keep(metrics, folder)

        session.report = report
    return hook


def _train(every_s: float, epochs: int = 4) -> dict:
    return {**PAPER_TRAIN, "epochs": epochs, "batch_size": 8, "learning_rate": 1e-3,
            "checkpoint": {"every_s": every_s, "max_overhead": 0.0}}


def test_policy_by_time_overhead_phase_and_end():
    now = [0.0]
    policy = CheckpointPolicy(every_s=60, max_overhead=0.05, phase_changes=(5,), clock=lambda: now[0])
    now[0] = 10.0
    assert not policy.due(1, False, state_bytes=10**9)       # 1 GB at 200 MB/s is 5 s > 5 % of 10 s
    assert policy.due(1, False, state_bytes=10**6)           # 1 MB: 5 ms <= 0.5 s
    assert policy.due(5, False, state_bytes=10**9)           # the next epoch unfreezes
    assert policy.due(2, True, state_bytes=10**9)            # the end
    now[0] = 60.0
    assert policy.due(3, False, state_bytes=10**9)           # a minute since the start
    policy.wrote(10**9, 2.0)                                  # measured: 500 MB/s, clock restarts at 60
    now[0] = 99.0
    assert not policy.due(4, False, state_bytes=10**9)       # 2 s > 5 % of 39 s
    now[0] = 101.0
    assert policy.due(4, False, state_bytes=10**9)           # 2 s <= 5 % of 41 s (written at most ~5 % overhead)
    assert policy.summary() == {"checkpoint_writes": 1, "checkpoint_bytes": 10**9, "checkpoint_s": 2.0}
    assert CheckpointPolicy(every_s=0).due(1, False, 10**12)  # 0: every epoch


def test_large_every_s_writes_only_at_phase_change_and_end_and_reports_every_epoch(tmp_path):
    log: list = []
    final = run_local(RESNET, _train(1e9), _rows(16, 0), _rows(10, 1), str(tmp_path / "ck"),
                      session_hook=_watch(log))
    assert [e for e, _ in log] == [1, 2, 3, 4]                        # a report per epoch
    assert [e for e, wrote in log if wrote] == [2, 4]                 # the unfreeze after epoch 2, the end
    assert final["checkpoint_writes"] == 2 and final["checkpoint_bytes"] > 0 and final["checkpoint_s"] > 0
    every: list = []
    again = run_local(RESNET, _train(0), _rows(16, 0), _rows(10, 1), str(tmp_path / "every"),
                      session_hook=_watch(every))
    assert [e for e, wrote in every if wrote] == [1, 2, 3, 4] and again["checkpoint_writes"] == 4
    # the policy changes when state is written, never what is trained
    assert [h["loss"] for h in again["history"]] == [h["loss"] for h in final["history"]]
    assert again["pred"] == final["pred"]


def test_a_killed_trial_resumes_from_its_last_checkpoint_and_matches_an_uninterrupted_run(tmp_path):
    folder = str(tmp_path / "ck")
    log: list = []
    with pytest.raises(Kill):  # killed while reporting epoch 4: the last checkpoint is the phase change's
        run_local(RESNET, _train(1e9, 5), _rows(16, 0), _rows(10, 1), folder, session_hook=_watch(log, kill_at=4))
    assert log == [(1, False), (2, True), (3, False)]
    resumed = run_local(RESNET, _train(1e9, 5), _rows(16, 0), _rows(10, 1), folder)
    assert resumed["resumed_from_epoch"] == 2
    assert [(h["epoch"], h["attempt"]) for h in resumed["history"]] == [(1, 1), (2, 1), (3, 2), (4, 2), (5, 2)]
    whole = run_local(RESNET, _train(1e9, 5), _rows(16, 0), _rows(10, 1), str(tmp_path / "whole"))
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in whole["history"]]
    assert resumed["pred"] == whole["pred"]
