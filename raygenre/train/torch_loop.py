"""The Ray Train worker function of a spectrogram trial, and the pure-torch steps it is made of.

:func:`train_loop` is the numbered recipe of the issue (dataset shard -> model -> ``prepare_model`` ->
optimiser and schedule -> epochs -> report); :func:`train_func` runs it inside each ``TorchTrainer`` worker,
and with ``train.workers: 0`` the torch runner runs it in the Tune trial itself
(:mod:`raygenre.train.train_session`). The
helpers above it take plain tensors and iterables, so tests drive them without Ray.

Choices and why:

* **Determinism per epoch.** Dropout and shuffling are seeded from ``(seed, epoch)``, never from
  where a process happens to be, so a run resumed after epoch *k* trains epoch *k+1* exactly like an
  uninterrupted run would (on the same device).
* **Frozen trunks are computed once.** AlexNet/VGG16 ``fc6``/``fc7``/``fc8`` train only their head and
  the trunk has no BatchNorm (and stays in eval mode), so its activations are fixed: they are computed
  in one pass over the shard and the head trains on them, shuffled with ``randperm``. The result equals
  training the whole net with the trunk frozen (a test checks it).
* **Checkpoints hold what training changed.** For frozen-trunk variants the checkpoint and the fitted
  file keep only the tensors outside the frozen trunk; the trunk is rebuilt exactly by building the model
  with the same seed and weights (:func:`build_model`). This keeps a VGG16 ``fc8`` checkpoint at
  ~160 kB instead of ~540 MB.
* **Rank 0 alone evaluates, with the unwrapped model** (a DDP forward on one rank would wait for the
  others' buffer broadcast); decisions it makes (early stopping) are broadcast to the other ranks.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import nn

from raygenre.models.counting import param_counts
from raygenre.models.network_state import build_model, load_trained_state, trained_state
from raygenre.models.optim import make_optimizer, make_scheduler, step_scheduler
from raygenre.models.spectrogram import SpectrogramNet
from raygenre.train.checkpoint_policy import CheckpointPolicy, state_nbytes
from raygenre.train.device_data import DeviceRows, row_batches
from raygenre.train.train_session import STATE_FILE

FITTED_FILE = "model.safetensors"
PREDICTIONS_FILE = "predictions.json"


# --------------------------------------------------------------------------------------------------
# Pure torch helpers (no Ray)
# --------------------------------------------------------------------------------------------------

def epoch_seed(seed: int, epoch: int) -> int:
    return seed * 100_003 + epoch


def amp_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA for ``auto``, on any device for ``bf16``; None (fp32) otherwise."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def load_fitted(fitted: dict[str, Any]) -> SpectrogramNet:
    """The fitted model of a trial from its ``fitted`` description (see the torch runner), in eval mode."""
    from safetensors.torch import load_file

    build = fitted["build"]
    model = build_model(build, {"source": fitted.get("weights_source", "random"), "dir": fitted.get("weights_dir")},
                        int(fitted["seed"]))
    load_trained_state(model, load_file(fitted["state_dict_path"]))
    return model.eval()


def run_batches(module: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                optimizer: torch.optim.Optimizer | None = None, dtype: torch.dtype | None = None,
                ) -> tuple[float, int, int, list[torch.Tensor]]:
    """One pass: train when ``optimizer`` is given, else evaluate. Returns (loss sum, correct, rows, predictions)."""
    loss_sum, correct, rows, preds = 0.0, 0, 0, []
    for x, y in batches:
        if optimizer is not None and len(y) < 2:  # a batch of one breaks BatchNorm; other epochs see the row
            continue
        with torch.autocast(x.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            logits = module(x)
        loss = nn.functional.cross_entropy(logits.float(), y)
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        pred = logits.detach().argmax(dim=1)
        loss_sum += float(loss.detach()) * len(y)
        correct += int((pred == y).sum())
        rows += len(y)
        preds.append(pred.cpu())
    return loss_sum, correct, rows, preds


def cache_features(trunk: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                   dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The frozen trunk's activations (float32) and labels of every batch, computed once."""
    feats, labels = [], []
    with torch.no_grad():
        for x, y in batches:
            with torch.autocast(x.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                feats.append(trunk(x).float())
            labels.append(y)
    if not feats:
        raise ValueError("no rows to cache trunk activations for")
    return torch.cat(feats), torch.cat(labels)


def feature_batches(features: torch.Tensor, labels: torch.Tensor, batch_size: int,
                    seed: int | None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Cached rows in batches: shuffled by ``seed`` (training) or in order (``None``)."""
    n = len(labels)
    order = (torch.randperm(n, generator=torch.Generator().manual_seed(seed)) if seed is not None
             else torch.arange(n)).to(features.device)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        yield features[idx], labels[idx]


# --------------------------------------------------------------------------------------------------
# Ray Train pieces
# --------------------------------------------------------------------------------------------------

def _input_batches(shard: Any, batch_size: int, device: torch.device, model: nn.Module, channels_last: bool,
                   shuffle_seed: int | None, keep_index: list | None = None,
                   ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Compact rows (uint8 images, int16 waves) from a Ray Data shard or :class:`DeviceRows`, made model input on
    the device (:func:`~raygenre.train.device_data.row_batches`: the same batches from either)."""
    for batch in row_batches(shard, batch_size, device, shuffle_seed):
        if keep_index is not None:
            keep_index.append(batch["index"].cpu())
        yield model.model_input(batch, channels_last), batch["label"]


def _all_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum across workers (a no-op for one)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def _broadcast_flag(flag: bool, device: torch.device) -> bool:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return flag
    t = torch.tensor([int(flag)], device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def _load_checkpoint(session: Any, device: torch.device) -> dict[str, Any] | None:
    with session.checkpoint_dir() as folder:
        if folder is None:
            return None
        return torch.load(os.path.join(folder, STATE_FILE), map_location=device, weights_only=True)


def _evaluate(model: SpectrogramNet, batches_fn, dtype: torch.dtype | None) -> tuple[float, float, list[int]]:
    """(mean loss, accuracy, predictions) of the unwrapped model in eval mode."""
    model.eval()
    with torch.no_grad():
        loss_sum, correct, rows, preds = run_batches(model, batches_fn(), dtype=dtype)
    model.train()
    return loss_sum / max(rows, 1), correct / max(rows, 1), torch.cat(preds).tolist() if preds else []


def train_func(config: dict[str, Any]) -> None:
    """One Ray Train worker of a spectrogram trial (``config`` from the torch runner)."""
    from raygenre.train.train_session import RayTrainSession

    train_loop(config, RayTrainSession())


def train_loop(config: dict[str, Any], session: Any) -> None:
    """The training recipe in a Ray Train worker or in the trial itself (:mod:`raygenre.train.train_session`)."""
    train, seed = config["train"], int(config["seed"])
    rank = session.rank
    # 1. Device and precision: CUDA only where torch can use it (a node may advertise a logical GPU it lacks).
    device = session.device()
    dtype = amp_dtype(train["precision"], device)
    channels_last = device.type == "cuda"
    torch.set_num_threads(max(1, int(config.get("cpus_per_worker", 1))))
    # 2. Dataset shards: training rows split across workers, validation/evaluation rows whole (rank 0 reads them).
    bs = int(train["batch_size"])
    # 2b. Data once: a training set under train.device_data_mb moves to the device once (eval/valid rows too).
    once = float(config.get("train_mb", float("inf"))) <= float(train.get("device_data_mb", 0))
    loaded: dict[str, Any] = {}

    def data_of(name: str) -> Any:
        if not once:
            return session.shard(name)
        if name not in loaded:
            loaded[name] = DeviceRows.load(session.shard(name), device)
        return loaded[name]

    t0 = time.perf_counter()
    train_shard = data_of("train")
    data_once_s = time.perf_counter() - t0 if once else None
    # 3. Model from the registry's builder, seeded; restored from the latest checkpoint when resuming.
    state = _load_checkpoint(session, device)
    if state and state.get("done"):
        return  # a finished run launched again: its last checkpoint already holds the predictions
    start = int(state["epoch"]) if state else 0
    model = build_model(config["model"], config.get("weights"), seed).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if state:
        load_trained_state(model, state["model"])
    model.set_epoch(start)
    trunk = model.frozen_trunk() if config.get("cache_trunk", True) else None
    head = model.head() if trunk is not None else None
    # 4. prepare_model: DDP when there is more than one worker (only the head when the trunk is cached).
    wrapped = session.prepare_model(head if head is not None else model, device)
    # 5. Optimiser and schedule from the train block; frozen parameters get no gradient and are skipped.
    optimizer = make_optimizer(model.parameters(), train["optimizer"], train["learning_rate"], train["weight_decay"])
    scheduler = make_scheduler(optimizer, train["schedule"], int(train["epochs"]))
    if state:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
    history: list[dict] = list(state["history"]) if state else []
    best = state.get("best") if state else None
    stale = int(state.get("stale", 0)) if state else 0
    attempt = int(state.get("attempt", 0)) + 1 if state else 1
    def eval_batches(name: str, index: list | None = None):
        return lambda: _input_batches(data_of(name), bs, device, model, channels_last, None, index)

    cache_s = 0.0
    if trunk is not None:  # frozen trunk: its activations once, then only the head trains
        t0 = time.perf_counter()
        rows = _input_batches(train_shard, bs, device, model, channels_last, None)
        feats, labels = cache_features(trunk, rows, dtype)
        cache_s = time.perf_counter() - t0
    valid = config.get("has_valid", False)
    policy = CheckpointPolicy.from_config(train, model.phase_change_epochs)
    # 6. Epochs: freezing for the epoch, one pass, validation on rank 0, one report with a checkpoint.
    for epoch in range(start, int(train["epochs"])):
        t0 = time.perf_counter()
        torch.manual_seed(epoch_seed(seed, epoch))
        model.set_epoch(epoch)
        if epoch in model.phase_change_epochs and session.world_size > 1:
            wrapped = session.prepare_model(model, False)  # DDP fixes its parameter set
        model.train()
        batches = (feature_batches(feats, labels, bs, epoch_seed(seed, epoch)) if trunk is not None else
                   _input_batches(train_shard, bs, device, model, channels_last, epoch_seed(seed, epoch)))
        loss_sum, correct, rows, _ = run_batches(wrapped, batches, optimizer, dtype)
        loss_sum, correct, rows = _all_sum([loss_sum, correct, rows], device)
        item = {"epoch": epoch + 1, "loss": loss_sum / max(rows, 1), "accuracy": correct / max(rows, 1),
                "lr": optimizer.param_groups[0]["lr"], "attempt": attempt, "trainable": param_counts(model)[1]}
        step_scheduler(scheduler, item["loss"])
        stop = False
        if valid and rank == 0:
            item["valid_loss"], item["valid_accuracy"], _ = _evaluate(model, eval_batches("valid"), dtype)
            if best is None or item["valid_loss"] < best["loss"]:
                best, stale = {"epoch": epoch + 1, "loss": item["valid_loss"], "state": trained_state(model)}, 0
            else:
                stale += 1
            stop = bool(train.get("patience")) and stale >= int(train["patience"])
        done = _broadcast_flag(stop, device) or epoch + 1 == int(train["epochs"])
        item["seconds"] = round(time.perf_counter() - t0, 4)
        history.append(item)
        scores = _search_scores(model, eval_batches, dtype, epoch + 1, config) if config.get("report_eval") and \
            rank == 0 else {}
        # 7. Report every epoch; rank 0 adds a checkpoint when the policy says (train.checkpoint): by time, at a
        #    phase change and at the end, where it also holds the fitted model and predictions.
        if rank != 0 or not policy.due(epoch + 1, done, state_nbytes(model, optimizer)):
            session.report({**item, "done": done, **scores}, None)
        else:
            with session.new_checkpoint() as (folder, publish):
                t_write = time.perf_counter()
                saved = {"epoch": epoch + 1, "history": history, "done": done, "attempt": attempt}
                if not done:  # a finished run never trains again: its checkpoint keeps only the fitted model
                    saved.update(model=trained_state(model), optimizer=optimizer.state_dict(),
                                 scheduler=scheduler.state_dict(), best=best, stale=stale)
                torch.save(saved, os.path.join(folder, STATE_FILE))
                nbytes = os.path.getsize(os.path.join(folder, STATE_FILE))
                if done:  # the last write's own hand-over is not in its figures (they are written inside it)
                    policy.wrote(nbytes, time.perf_counter() - t_write)
                    _write_final(folder, model, best if valid else None, eval_batches, dtype,
                                 {"history": history, "cache_s": cache_s, "attempt": attempt,
                                  "resumed_from_epoch": start, "data_once_s": data_once_s, **policy.summary()})
                session.report({**item, "done": done, **scores}, publish())
                if not done:
                    policy.wrote(nbytes, time.perf_counter() - t_write)
        if done:
            break


def _search_scores(model: SpectrogramNet, eval_batches, dtype: torch.dtype | None, epoch: int,
                   config: dict[str, Any]) -> dict[str, Any]:
    """A search trial's per-epoch report (``raygenre.train.search_progress``): scores and predictions on
    its evaluation clips (validation clips, never test), in clip order, so a scheduler can stop it."""
    index: list[torch.Tensor] = []
    loss, accuracy, preds = _evaluate(model, eval_batches("eval", index), dtype)
    order = torch.cat(index).tolist() if index else []
    return {"step": epoch, "budget": int(config["train"]["epochs"]), "valid_accuracy": accuracy,
            "valid_loss": loss, "pred": [p for _, p in sorted(zip(order, preds))],
            "n_train": int(config.get("n_train", 0))}


def _write_final(folder: str, model: SpectrogramNet, best: dict | None, eval_batches, dtype: torch.dtype | None,
                 extra: dict[str, Any]) -> None:
    """The selected model (best epoch on validation, else the last) as safetensors, and its predictions."""
    from safetensors.torch import save_file

    if best is not None:
        load_trained_state(model, best["state"])
    index: list[torch.Tensor] = []
    _, _, preds = _evaluate(model, eval_batches("eval", index), dtype)
    save_file(trained_state(model), os.path.join(folder, FITTED_FILE))
    total, trainable = param_counts(model)
    payload = {"index": torch.cat(index).tolist() if index else [], "pred": preds,
               "selected_epoch": best["epoch"] if best else None, "weights": model.weights,
               "params": {"total": total, "trainable": trainable},
               "contains": "trained" if model.frozen_trunk() is not None else "all", **extra}
    with open(os.path.join(folder, PREDICTIONS_FILE), "w") as f:
        json.dump(payload, f)
