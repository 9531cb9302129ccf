"""The waveform family's runner: heads on a frozen encoder's cached embeddings, or end-to-end training.

* Variants the registry marks as cached (Wav2Vec2 ``frozen``/``layer_probe``, every encoder's ``linear``
  and ``mlp`` probes) train only their head, in the trial, on the embeddings the driver cached before the
  study started (:mod:`raygenre.data.embeddings`): seconds per trial on a CPU, so these trials hold one CPU
  and no trainer. The head comes from the spec's ``embedding.head_builder`` (the registry's), which also
  picks the layer(s) it reads; a head with ``fit_inputs`` standardises on the training rows first.
* Other variants (Wav2Vec2 ``progressive``) train end to end in the torch loop of the spectrogram nets
  (:func:`raygenre.train.torch_runner.run_torch_trial`: a ``TorchTrainer``, or the same loop in the
  trial with ``train.workers: 0``; bf16 on CUDA, a checkpoint per epoch, resume, per-epoch history).
"""

from __future__ import annotations

import os
import time

import numpy as np

from raygenre.genres import GENRE_INDEX, GENRES
from raygenre.stats import classification_metrics
from raygenre.storage import RunPath


def run_waveform(spec: dict, wave_inputs: dict, settings: dict, *, device: str = "cpu") -> dict:
    from raygenre.data.embeddings import is_cached

    if is_cached(spec):
        return run_cached_head(spec, wave_inputs, settings, device=device)
    from raygenre.train.torch_runner import run_torch_trial

    return run_torch_trial(spec, wave_inputs, settings, device=device)


def _features(folder: str, ids: list[str]) -> tuple[np.ndarray, list[int]]:
    """Cached embeddings of ``ids`` in that order (repeats allowed), every layer."""
    from raygenre.data.embeddings import load_embeddings

    feats, got, labels = load_embeddings(folder, ids)
    where = {cid: i for i, cid in enumerate(got)}
    missing = [cid for cid in ids if cid not in where]
    if missing:
        raise KeyError(f"embedding cache {folder} lacks clip {missing[0]}")
    rows = [where[cid] for cid in ids]
    feats = feats[rows]
    return np.ascontiguousarray(feats), [GENRE_INDEX[labels[r]] for r in rows]


def run_cached_head(spec: dict, wave_inputs: dict, settings: dict, *, device: str = "cpu") -> dict:
    """Train the head on cached embeddings, as numbered steps; returns what the record is built from."""
    import torch
    from safetensors.torch import save_file

    from raygenre.data.embeddings import embedding_key, read_cache_manifest
    from raygenre.models.counting import param_counts
    from raygenre.models.optim import make_optimizer, make_scheduler, step_scheduler
    from raygenre.models.registry import PROBE_HEADS, cached_embedding_of, resolve_builder
    from raygenre.train.torch_loop import epoch_seed, feature_batches, run_batches
    from raygenre.train.torch_runner import split_rows, train_run_name, train_storage

    train, seed = spec["train"], int(spec["split"]["seed"])
    timings: dict[str, float] = {}
    # 1. Rows, as every torch trial draws them (validation carve only with selection: valid).
    train_ids, valid_ids, eval_ids = split_rows(spec, list(wave_inputs["ids"]))
    # 2. The cached embeddings of those rows (the driver computed them before the study).
    t0 = time.perf_counter()
    data_hash = (settings.get("run") or {}).get("data_hash", "")
    cache = wave_inputs["embeddings"][embedding_key(spec, data_hash)]
    dev = torch.device(device)
    tensors = {}
    for name, ids in (("train", train_ids), ("valid", valid_ids), ("eval", eval_ids)):
        if ids:
            x, y = _features(cache, ids)
            tensors[name] = (torch.from_numpy(x).to(dev), torch.tensor(y, device=dev))
    timings["read_s"] = time.perf_counter() - t0
    windows = (spec.get("params") or {}).get("chunk_seconds") is not None
    # 3. Head, optimiser and schedule from the train block.
    torch.manual_seed(seed)
    embedding = spec.get("embedding") or cached_embedding_of(spec) or {}
    build_head = resolve_builder(embedding.get("head_builder") or PROBE_HEADS)
    feature_shape = tuple(tensors["train"][0].shape[1:])
    head = build_head(spec["variant"], feature_shape, windows, spec.get("params")).to(dev)
    if hasattr(head, "fit_inputs"):
        head.fit_inputs(tensors["train"][0])
    optimizer = make_optimizer(head.parameters(), train["optimizer"], train["learning_rate"], train["weight_decay"])
    scheduler = make_scheduler(optimizer, train["schedule"], int(train["epochs"]))
    # 4. Epochs; with selection: valid the best validation epoch is kept (never the test set's).
    history, best = [], None
    bs = int(train["batch_size"])
    t0 = time.perf_counter()
    for epoch in range(int(train["epochs"])):
        started = time.perf_counter()
        torch.manual_seed(epoch_seed(seed, epoch))
        head.train()
        loss_sum, correct, rows, _ = run_batches(head, feature_batches(*tensors["train"], bs, epoch_seed(seed, epoch)),
                                                 optimizer)
        item = {"epoch": epoch + 1, "loss": loss_sum / max(rows, 1), "accuracy": correct / max(rows, 1),
                "lr": optimizer.param_groups[0]["lr"], "attempt": 1}
        step_scheduler(scheduler, item["loss"])
        if "valid" in tensors:
            head.eval()
            with torch.no_grad():
                v_loss, v_correct, v_rows, _ = run_batches(head, feature_batches(*tensors["valid"], bs, None))
            item["valid_loss"], item["valid_accuracy"] = v_loss / max(v_rows, 1), v_correct / max(v_rows, 1)
            if best is None or item["valid_loss"] < best["loss"]:
                best = {"epoch": epoch + 1, "loss": item["valid_loss"],
                        "state": {k: v.detach().clone() for k, v in head.state_dict().items()}}
        item["seconds"] = round(time.perf_counter() - started, 4)
        history.append(item)
        if settings.get("progress") is not None:  # a search trial: this epoch scored on its (validation) clips
            head.eval()
            with torch.no_grad():
                e_loss, e_correct, e_rows, e_preds = run_batches(head, feature_batches(*tensors["eval"], bs, None))
            head.train()
            settings["progress"]({"step": epoch + 1, "budget": int(train["epochs"]),
                                  "valid_accuracy": e_correct / max(e_rows, 1), "valid_loss": e_loss / max(e_rows, 1),
                                  "pred": torch.cat(e_preds).tolist(), "n_train": len(train_ids)})
    timings["fit_s"] = time.perf_counter() - t0
    if best is not None:
        head.load_state_dict(best["state"])
    # 5. Predictions on the evaluation clips, and the fitted head kept beside the run's other models.
    head.eval()
    with torch.no_grad():
        _, _, _, preds = run_batches(head, feature_batches(*tensors["eval"], bs, None))
    y_pred = [GENRES[i] for i in torch.cat(preds).tolist()]
    y_true = [GENRES[i] for i in tensors["eval"][1].cpu().tolist()]
    folder = RunPath.of(train_storage(settings)) / train_run_name(spec, settings)
    with folder.written_locally() as local:
        save_file({k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()},
                  os.path.join(local, "head.safetensors"))
    manifest = read_cache_manifest(cache)
    head_params = param_counts(head)[0]
    backbone_params = int(manifest.get("backbone_params") or 0)
    return {
        "metrics": classification_metrics(y_true, y_pred),
        "test": {"ids": list(eval_ids), "y_true": y_true, "y_pred": y_pred, "set": spec.get("evaluate_on", "test")},
        "n_train": len(train_ids),
        "params": {"total": backbone_params + head_params, "trainable": head_params},
        "history": history,
        "weights": manifest.get("weights"),
        "selection": train["selection"],
        "selected_epoch": best["epoch"] if best else history[-1]["epoch"],
        "fitted": {"head_path": str(folder / "head.safetensors"), "embedding_cache": cache,
                   "build": {"name": spec["model"], "family": spec["family"], "variant": spec["variant"],
                             "params": dict(spec.get("params") or {})},
                   "weights": dict(spec.get("weights") or {}), "seed": seed, "windows": windows,
                   "feature_shape": list(feature_shape), "embedding": {**embedding, **_cache_identity(manifest)}},
        "timings": {k: round(v, 4) for k, v in timings.items()},
    }


def _cache_identity(manifest: dict) -> dict:
    """How a kept head names the embeddings it was trained on: encoder settings (id, revision, windows)."""
    return {"settings": manifest.get("settings") or {}, "revision": manifest.get("revision")}
