"""Where a pretrained audio encoder comes from: a Hugging Face id (cache or download), a local folder, or random init.

Written for Wav2Vec2 and shared by every encoder (:class:`HubModel` names the encoder and its default id;
AST, MERT and CLAP plan their weights through :func:`plan_weights`), so each one fails the same way.

Offline and missing, the failure is one sentence naming the model id, the cache folder looked in and the
config key for a local path, and it comes at once: the hub is probed with a 3 s TCP connect instead of
waiting through huggingface_hub's retries. ``check_backbone`` is the driver's pre-flight (it loads no
weights); ``load_backbone`` is what a trial or an embedding actor calls.

``random`` is only for runs that say so (the record and report label it): the base config, a
``save_pretrained`` folder's config, or ``tiny`` -- a 36,976-parameter backbone of the same family
(group-norm conv encoder, post-norm transformer) that the quick profile and the tests use on a CPU.
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from transformers import Wav2Vec2Config, Wav2Vec2Model

from raygenre.errors import WeightsError

DEFAULT_BACKBONE = "facebook/wav2vec2-base"
TINY_BACKBONE = "tiny"
#: The tiny backbone (36,976 parameters): hidden 32, 2 layers, 4 conv layers of total stride 320 like the base
#: model's (50 frames per second: 10 s -> 500 frames; at stride 80 attention over 4x the frames made a CPU
#: training step 18x slower), SpecAugment masks of 2 frames so 0.2 s clips (10 frames) can be masked.
TINY_CONFIG: dict[str, object] = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
    conv_dim=(16, 32, 32, 32), conv_stride=(5, 4, 4, 4), conv_kernel=(10, 4, 4, 4), num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=2, vocab_size=None, mask_time_length=2,
)

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
_OFFLINE_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


@dataclass(frozen=True)
class HubModel:
    """An encoder as the weights planner sees it: its name in sentences and its default hub id."""
    label: str
    default_id: str


WAV2VEC2 = HubModel("Wav2Vec2", DEFAULT_BACKBONE)
_PROBE_TIMEOUT_S = 3.0


# --------------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------------

def _truthy(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def resolve_offline(offline: bool | None) -> bool:
    """``offline`` if given, else whether HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE is set now.

    Read at call time: huggingface_hub reads these once at import, which misses a later ``setenv``.
    """
    if offline is not None:
        return bool(offline)
    return any(_truthy(os.environ.get(name)) for name in _OFFLINE_ENV)


def _hub_cache(cache_dir: str | None) -> str:
    """The folder ``from_pretrained`` looks in: ``cache_dir`` or huggingface_hub's HF_HUB_CACHE."""
    from huggingface_hub import constants

    return str(cache_dir) if cache_dir else constants.HF_HUB_CACHE


def _looks_like_path(name: str) -> bool:
    """A hub id is ``name`` or ``org/name``; anything else path-shaped is meant as a folder."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def _local_weights_file(folder: Path) -> Path | None:
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    return None


def _check_local_folder(folder: Path, *, need_weights: bool, label: str = "Wav2Vec2") -> None:
    if not folder.is_dir():
        raise WeightsError(f"{label} weights folder {folder} does not exist; set weights.source to a folder "
                           "written by save_pretrained (config.json and model.safetensors).")
    if not (folder / "config.json").is_file():
        raise WeightsError(f"{label} weights folder {folder} has no config.json; set weights.source to a folder "
                           "written by save_pretrained.")
    if need_weights and _local_weights_file(folder) is None:
        raise WeightsError(f"{label} weights folder {folder} has config.json but no model.safetensors or "
                           "pytorch_model.bin; set weights.source to a folder written by save_pretrained.")


def _cached_weights(model_id: str, cache_dir: str | None, label: str = "Wav2Vec2") -> str | None:
    """The cached weights file of ``model_id`` (None unless config.json and a weights file are cached)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        config = try_to_load_from_cache(model_id, "config.json", cache_dir=cache_dir)
    except ValueError as exc:  # HFValidationError: not a repo id
        raise WeightsError(f"{label} backbone '{model_id}' is neither an existing folder nor a valid Hugging "
                           "Face model id; set weights.source to a save_pretrained folder.") from exc
    if not isinstance(config, str):
        return None
    for name in WEIGHT_FILES:
        found = try_to_load_from_cache(model_id, name, cache_dir=cache_dir)
        if isinstance(found, str):
            return found
    return None


def _hub_reachable(timeout: float = _PROBE_TIMEOUT_S) -> bool:
    """Whether the hub's host accepts a TCP connection within ``timeout`` s (True behind a proxy).

    Without this, a machine with no network waits through huggingface_hub's retries (~35 s per file)
    before failing; the probe runs in a thread so that a hanging DNS lookup is cut off too.
    """
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    answered: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            answered.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(answered)


def _missing_sentence(model_id: str, cache_dir: str | None, reason: str, label: str = "Wav2Vec2") -> str:
    return (f"{label} weights '{model_id}' are not in the Hugging Face cache {_hub_cache(cache_dir)} and {reason}; "
            f"download them there with `hf download {model_id}` where there is network, or set weights.source "
            "to a local save_pretrained folder.")


def plan_weights(weights: str, name_or_path: str, cache_dir: str | None, offline: bool | None,
                 model: HubModel = WAV2VEC2) -> tuple[str, str, str]:
    """``(kind, source, description)`` with kind in random-base / random-tiny / random-config / local / cache /
    download, for ``model`` (any encoder). Raises WeightsError for anything that cannot load, loading nothing."""
    label = model.label
    if weights == "random":
        if Path(name_or_path).expanduser().is_dir():
            folder = Path(name_or_path).expanduser()
            _check_local_folder(folder, need_weights=False, label=label)
            return "random-config", str(folder), f"random init (untrained), config from {folder}"
        if name_or_path == model.default_id:
            return "random-base", name_or_path, f"random init (untrained), {label} base config"
        if name_or_path == TINY_BACKBONE:
            return "random-tiny", name_or_path, f"random init (untrained), tiny {label} config (a smoke-test backbone)"
        raise WeightsError(f"random {label} weights need the base backbone '{model.default_id}', '{TINY_BACKBONE}' "
                           f"or a local folder with a config.json, not '{name_or_path}'.")
    if name_or_path == TINY_BACKBONE:
        raise WeightsError(f"the '{TINY_BACKBONE}' {label} backbone has no pretrained weights; use it only with "
                           "weights.source: random.")
    if weights != "pretrained":  # a local folder given as the weights themselves
        folder = Path(weights).expanduser()
        _check_local_folder(folder, need_weights=True, label=label)
        return "local", str(folder), f"pretrained weights from local folder {folder}"
    if Path(name_or_path).expanduser().is_dir():
        folder = Path(name_or_path).expanduser()
        _check_local_folder(folder, need_weights=True, label=label)
        return "local", str(folder), f"pretrained weights from local folder {folder}"
    if _looks_like_path(name_or_path):  # raises: it does not exist
        _check_local_folder(Path(name_or_path).expanduser(), need_weights=True, label=label)
    cached = _cached_weights(name_or_path, cache_dir, label)
    if cached is not None:
        return "cache", name_or_path, f"pretrained '{name_or_path}' from the Hugging Face cache ({cached})"
    if resolve_offline(offline):
        why = "offline was requested" if offline else "the hub is offline (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE)"
        raise WeightsError(_missing_sentence(name_or_path, cache_dir, why, label))
    if not _hub_reachable():
        raise WeightsError(_missing_sentence(name_or_path, cache_dir, "huggingface.co cannot be reached", label))
    return "download", name_or_path, f"pretrained '{name_or_path}', downloaded into {_hub_cache(cache_dir)}"


def _plan(weights: str, name_or_path: str, cache_dir: str | None, offline: bool | None) -> tuple[str, str, str]:
    return plan_weights(weights, name_or_path, cache_dir, offline, WAV2VEC2)


def weights_revision(kind: str, source: str, cache_dir: str | None) -> str:
    """What identifies the weights in a cache key: the hub snapshot's commit (for a download, the commit the
    hub serves now), a local folder's content hash, or ``random``."""
    import hashlib

    if kind.startswith("random"):
        return "random"
    if kind == "local":
        digest = hashlib.sha256()
        for item in sorted(Path(source).iterdir()):
            if item.is_file() and item.suffix in (".json", ".safetensors", ".bin"):
                digest.update(item.name.encode())
                digest.update(item.read_bytes())
        return "sha256:" + digest.hexdigest()[:16]
    cached = _cached_weights(source, cache_dir)
    if cached is None:  # to be downloaded: the hub's current commit is what the download will fetch
        try:
            from huggingface_hub import HfApi

            return str(HfApi().model_info(source).sha)
        except Exception:  # noqa: BLE001 -- any hub failure: the download itself will say what went wrong
            return "unresolved"
    parts = Path(cached).parts
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts else "unknown"


def check_backbone(weights: str = "pretrained", name_or_path: str = DEFAULT_BACKBONE, cache_dir: str | None = None,
                   offline: bool | None = None) -> str:
    """Pre-flight for the driver: where the backbone will come from, without loading it into a model.

    Raises WeightsError (one sentence) when it cannot load, so a config problem costs no cluster time.
    """
    return _plan(weights, name_or_path, cache_dir, offline)[2]


def load_backbone(weights: str = "pretrained", *, name_or_path: str = DEFAULT_BACKBONE, cache_dir: str | None = None,
                  offline: bool | None = None) -> Wav2Vec2Model:
    """A float32 ``Wav2Vec2Model``: ``pretrained`` (hub id or folder), a folder path, or ``random``.

    Files found locally are loaded with ``local_files_only=True`` so no hub request (and no retry
    wait) happens; a download is only attempted when the hub is online and reachable.
    """
    kind, source, _ = _plan(weights, name_or_path, cache_dir, offline)
    if kind == "random-base":
        return Wav2Vec2Model(Wav2Vec2Config())
    if kind == "random-tiny":
        return Wav2Vec2Model(Wav2Vec2Config(**TINY_CONFIG))
    if kind == "random-config":
        return Wav2Vec2Model(Wav2Vec2Config.from_pretrained(source, local_files_only=True))
    try:
        return Wav2Vec2Model.from_pretrained(source, cache_dir=cache_dir, local_files_only=kind != "download",
                                             dtype=torch.float32)
    except OSError as exc:
        if kind == "download":
            raise WeightsError(_missing_sentence(source, cache_dir, "the download failed")) from exc
        raise WeightsError(f"Wav2Vec2 weights at {source} could not be loaded ({type(exc).__name__}); set "
                           "weights.source to a folder written by save_pretrained.") from exc


def backbone_param_count(weights: str = "pretrained", name_or_path: str = DEFAULT_BACKBONE,
                         cache_dir: str | None = None, offline: bool | None = None) -> int:
    """Parameters of the backbone ``load_backbone`` would return, counted on the meta device (no weights)."""
    kind, source, _ = _plan(weights, name_or_path, cache_dir, offline)
    if kind == "random-base":
        config = Wav2Vec2Config()
    elif kind == "random-tiny":
        config = Wav2Vec2Config(**TINY_CONFIG)
    else:
        config = Wav2Vec2Config.from_pretrained(source, cache_dir=cache_dir, local_files_only=kind != "download")
    with torch.device("meta"):
        return sum(p.numel() for p in Wav2Vec2Model(config).parameters())


def weights_file(weights: str = "pretrained", name_or_path: str = DEFAULT_BACKBONE, cache_dir: str | None = None,
                 offline: bool | None = None) -> str | None:
    """The file the backbone's weights load from (None for a random init), so a kept head can name it."""
    kind, source, _ = _plan(weights, name_or_path, cache_dir, offline)
    if kind.startswith("random"):
        return None
    if kind == "local":
        return str(_local_weights_file(Path(source)))
    return _cached_weights(source, cache_dir)
