"""Typed, validated experiment specs composed from ``sweeps/*.yaml``.

Resolution order (later wins), each a deep merge of mappings:
``sweeps/base.yaml`` <- ``sweeps/<exp>.yaml`` <- ``profiles/<profile>.yaml: all`` <-
``profiles/<profile>.yaml: <exp>`` <- command-line overrides.
Unknown keys and bad values are rejected with their YAML path in the message.
The content hash of the resolved config names run directories and shard sets.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from raygenre.errors import ConfigError
from raygenre.search_config import SearchConfig, apply_search_overlay

STUDY_EXPERIMENTS = ("exp1", "exp2", "exp3", "exp4")  # what `sweep all` runs
SEARCH_EXPERIMENTS = ("search-xgboost", "search-cnn", "search-finetune")  # hyperparameter searches: search-*.yaml
BEYOND_EXPERIMENTS = ("exp5",)  # beyond the study, not in `sweep all`: pretrained encoders (sweeps/exp5.yaml)
EXPERIMENTS = STUDY_EXPERIMENTS + SEARCH_EXPERIMENTS + BEYOND_EXPERIMENTS
PROFILES = ("quick", "paper")




class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SyntheticConfig(Strict):
    clips_per_genre: int = Field(100, ge=1, le=10_000)
    seconds: float = Field(30.0, gt=0.5, le=120)
    seed: int = 0
    corrupt: int = Field(0, ge=0)


class DataConfig(Strict):
    source: str = "synthetic"  # "synthetic" or a GTZAN folder
    features_csv: str | None = None  # a Kaggle features_30_sec.csv: used instead of audio features
    synthetic: SyntheticConfig = SyntheticConfig()


class MelConfig(Strict):
    n_mels: int = Field(128, ge=8)
    n_fft: int = Field(2048, ge=64)
    hop_length: int = Field(512, ge=16)
    size: int = Field(128, ge=8)
    colormap: str = "viridis"


class AugmentConfig(Strict):
    enabled: bool = False
    stretch_factors: tuple[float, ...] = (0.81, 0.93, 1.07, 1.23)
    shift_seconds: float = 5.0

    @field_validator("stretch_factors")
    @classmethod
    def _positive(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if any(f <= 0 for f in v):
            raise ValueError("stretch factors must be positive")
        return v


class PrepareConfig(Strict):
    sample_rate: int = Field(22050, ge=8000)
    waveform_rate: int = Field(16000, ge=8000)
    clip_seconds: float = Field(30.0, gt=0)
    min_seconds: float = Field(20.0, ge=0)
    max_seconds: float = Field(3600.0, gt=0)  # longer files are skipped before decoding (raygenre.data.audio)
    max_file_mb: float = Field(200.0, gt=0)   # larger files are skipped before reading
    representations: tuple[Literal["features", "mel", "waveform"], ...] = ("features",)
    augment: AugmentConfig = AugmentConfig()
    mel: MelConfig = MelConfig()
    batch_size: int = Field(4, ge=1)
    workers: int | None = Field(None, ge=1)  # None: one per CPU of the cluster


class SplitConfig(Strict):
    name: Literal["paper", "fault_filtered"] = "paper"
    test_fraction: float = Field(0.2, gt=0, lt=1)
    seeds: tuple[int, ...] = (0,)

    @field_validator("seeds")
    @classmethod
    def _non_empty(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v:
            raise ValueError("at least one split seed is needed")
        return v


class FeaturesConfig(Strict):
    set: Literal["kaggle58", "content57"] = "kaggle58"


class CheckpointConfig(Strict):
    """When the torch loop writes a checkpoint (``raygenre.train.checkpoint_policy``): at the end, at a phase
    change, and in between when ``every_s`` seconds passed since the last one (0: every epoch) or when the
    write costs at most ``max_overhead`` of the training it protects. Every epoch still reports."""
    every_s: float = Field(60.0, ge=0)
    max_overhead: float = Field(0.05, ge=0, le=1)


class TrainConfig(Strict):
    """How every neural model trains (MLP/LSTM today, the deep models too).

    The study states none of these for MLP/LSTM; ours are in the README. ``precision: auto`` is bf16
    autocast on CUDA and fp32 on CPU. ``selection: last`` evaluates the final epoch (the study's
    practice); ``valid`` keeps the best epoch on a validation carve of the training clips.
    """
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    learning_rate: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    schedule: Literal["constant", "cosine", "step", "plateau"] = "constant"
    epochs: int = Field(100, ge=1)
    batch_size: int = Field(32, ge=1)
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    # Ray Train workers per trial; 0 is Train's local mode: the training function runs in the Tune trial's own
    # process (no worker group to start: ~15 s per trial on a small CPU machine, more than a quick run trains).
    workers: int = Field(1, ge=0)
    gpus_per_worker: float | Literal["auto"] = "auto"  # auto: gpu_share when the cluster has GPUs, else 0
    gpu_share: float = Field(1.0, gt=0, le=1)  # what `auto` takes of one GPU: < 1 packs trials onto a GPU
    checkpoint: CheckpointConfig = CheckpointConfig()
    device_data_mb: float = Field(1024.0, ge=0)  # a training set up to this size moves to the device once
    selection: Literal["last", "valid"] = "last"
    validation_fraction: float = Field(0.2, gt=0, lt=1)
    patience: int | None = Field(None, ge=1)  # early stopping on the validation set (selection: valid)


class WeightsConfig(Strict):
    """Pretrained weights: ``pretrained`` (the library's published weights, looked up in ``dir`` and the
    library cache, downloaded when online), ``random`` (only when chosen: not the study's condition),
    or a path to a local file or folder."""
    source: str = "pretrained"
    dir: str | None = None       # extra folder searched for weight files (before $TORCH_HOME / HF cache)
    offline: bool | None = None  # None: offline when HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE say so


class ModelSpec(Strict):
    """One row of an experiment: a registered model, one of its variants, parameter overrides, and
    optional per-model ``train`` / ``weights`` overrides (e.g. a learning rate for one network)."""
    name: str
    variant: str | None = None
    params: dict[str, Any] = {}
    train: dict[str, Any] = {}
    weights: dict[str, Any] = {}
    search: SearchConfig | None = None  # a Tune search over this row's params/train keys (raygenre.search_config)

    @model_validator(mode="after")
    def _known(self) -> ModelSpec:
        from raygenre.models.registry import get_model, resolve_variant

        try:
            variant = resolve_variant(self.name, self.variant)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        object.__setattr__(self, "variant", variant)
        if self.search is not None and self.search.validation == "kfold" and \
                get_model(self.name).family != "tabular":
            raise ValueError("search.validation: kfold is for feature models (a deep net would train once per fold)")
        for block, model in (("train", TrainConfig), ("weights", WeightsConfig)):
            overlay = getattr(self, block)
            unknown = sorted(set(overlay) - set(model.model_fields))
            if unknown:
                raise ValueError(f"{block}.{unknown[0]}: unknown key")
        return self

    def train_config(self, base: TrainConfig) -> TrainConfig:
        return TrainConfig.model_validate({**base.model_dump(), **self.train})

    def weights_config(self, base: WeightsConfig) -> WeightsConfig:
        return WeightsConfig.model_validate({**base.model_dump(), **self.weights})


class XGBoostConfig(Strict):
    backend: Literal["in_trial", "distributed"] = "in_trial"
    workers: int = Field(2, ge=1)
    nthread: int | None = Field(None, ge=1)  # None: the trial's CPUs


class Exp4Config(Strict):
    model: str = "xgboost_tuned"  # a tabular model of the registry
    select_by_validation: bool = False
    validation_fraction: float = Field(0.2, gt=0, lt=1)
    bootstraps: int = Field(100, ge=1)
    fractions: tuple[float, ...] = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)

    @field_validator("fractions")
    @classmethod
    def _fractions(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not v or any(not 0 < f <= 1 for f in v) or list(v) != sorted(set(v)):
            raise ValueError("fractions must be increasing values in (0, 1]")
        return v

    @field_validator("model")
    @classmethod
    def _tabular(cls, v: str) -> str:
        from raygenre.models.registry import MODELS

        if v not in MODELS or MODELS[v].family != "tabular":
            raise ValueError(f"exp4 resamples a feature model; '{v}' is not one")
        return v


class ResourcesConfig(Strict):
    cpus_per_trial: float = Field(1, gt=0)
    max_failures: int = Field(1, ge=0)
    max_concurrent_trials: int | None = Field(None, ge=1)


class ExperimentConfig(Strict):
    experiment: Literal["exp1", "exp2", "exp3", "exp4", "search-xgboost", "search-cnn", "search-finetune", "exp5"]
    description: str = ""
    profile: str = "quick"
    data: DataConfig = DataConfig()
    prepare: PrepareConfig = PrepareConfig()
    split: SplitConfig = SplitConfig()
    features: FeaturesConfig = FeaturesConfig()
    models: tuple[ModelSpec, ...] = ()
    train: TrainConfig = TrainConfig()
    weights: WeightsConfig = WeightsConfig()
    xgboost: XGBoostConfig = XGBoostConfig()
    exp4: Exp4Config | None = None
    resources: ResourcesConfig = ResourcesConfig()
    # which fitted models are kept under RUN_DIR/artifacts for `python -m raygenre.predict`:
    # table_rows (the models behind the report's tables, not exp4's resamples) | all | none
    artifacts: Literal["table_rows", "all", "none"] = "table_rows"
    # train settings for every row of a model, by model name, beneath each row's own `train:` block: how a
    # profile trains some networks longer (quick: the CNN and CRNN) without restating the experiment's rows
    model_train: dict[str, dict[str, Any]] = {}

    @model_validator(mode="before")
    @classmethod
    def _search_overlay(cls, data: Any) -> Any:
        return apply_search_overlay(data)  # a top-level `search:` mapping goes into each searched row

    @model_validator(mode="before")
    @classmethod
    def _model_train_overlay(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("model_train"), dict):
            return data
        rows = []
        for row in data.get("models") or ():
            extra = data["model_train"].get(row.get("name")) if isinstance(row, dict) else None
            if isinstance(extra, dict):
                row = {**row, "train": deep_merge(extra, row.get("train") or {})}
            rows.append(row)
        return {**data, "models": rows}

    @field_validator("model_train")
    @classmethod
    def _model_train_names(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        from raygenre.models.registry import model_names

        unknown = sorted(set(value) - set(model_names()))
        if unknown:
            raise ValueError(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(model_names())}")
        return value

    def hash(self) -> str:
        return config_hash(self.model_dump(mode="json"))


class PrepareSpec(Strict):
    """What the prepare stage depends on; its hash names the shard set.

    Shards hold every usable clip with its id; which clips train and test is decided when shards
    are read (any split, any seed), so the split does not enter the hash. Neither do the
    representations (each is its own folder inside one shard set), whether augmented rows are
    wanted (they are their own folders too), or worker settings.
    """
    data: DataConfig = DataConfig()
    prepare: PrepareConfig = PrepareConfig()
    split: SplitConfig = SplitConfig()  # checked against the usable clips, not part of the hash

    def hash(self) -> str:
        body = {"data": self.data.model_dump(mode="json"), "prepare": self.prepare.model_dump(mode="json")}
        for key in ("representations", "workers", "batch_size"):
            body["prepare"].pop(key)
        body["prepare"]["augment"].pop("enabled")
        if body["data"]["source"] != "synthetic":
            body["data"].pop("synthetic")  # the generator settings mean nothing for real audio
        body["data"].pop("features_csv")
        return config_hash(body)


def config_hash(obj: Any, length: int = 12) -> str:
    """Stable content hash: sha256 of canonical JSON (sorted keys, no whitespace)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def sweeps_dir() -> Path:
    """``sweeps/`` beside the package (a checkout, or the working dir of a Ray job)."""
    for candidate in (Path(__file__).resolve().parents[1] / "sweeps", Path.cwd() / "sweeps"):
        if candidate.is_dir():
            return candidate
    raise ConfigError("cannot find the sweeps/ folder beside the raygenre package or in the working directory.")


def deep_merge(base: dict, overlay: dict) -> dict:
    """A new dict: ``overlay`` merged into ``base``; mappings merge, everything else replaces."""
    out = copy.deepcopy(base)
    for key, value in (overlay or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist.")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level.")
    return data


def _profile_overlay(profile: str, section: str, root: Path) -> dict:
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile '{profile}': choose one of {', '.join(PROFILES)}.")
    overlay = _read_yaml(root / "profiles" / f"{profile}.yaml")
    unknown = set(overlay) - {"all", *EXPERIMENTS, "prepare_only"}
    if unknown:
        raise ConfigError(f"profiles/{profile}.yaml: unknown section(s) {sorted(unknown)}.")
    return deep_merge(overlay.get("all") or {}, overlay.get(section) or {})


def resolve_dict(experiment: str, profile: str = "quick", overrides: dict | None = None,
                 root: Path | None = None) -> dict:
    """The merged (not yet validated) mapping for one experiment."""
    if experiment not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment '{experiment}': choose one of {', '.join(EXPERIMENTS)}.")
    root = root or sweeps_dir()
    merged = deep_merge(_read_yaml(root / "base.yaml"), _read_yaml(root / f"{experiment}.yaml"))
    merged = deep_merge(merged, _profile_overlay(profile, experiment, root))
    merged = deep_merge(merged, overrides or {})
    merged["profile"] = profile
    merged["experiment"] = experiment
    return merged


def validate(model: type[Strict], data: dict, source: str) -> Any:
    """Validate into ``model``; the error names the YAML path of each bad key or value."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            path = ".".join(str(p) for p in err["loc"]) or "(top level)"
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
            problems.append(f"{path}: {msg}")
        raise ConfigError(f"{source}: " + "; ".join(problems)) from None


def load_experiment(experiment: str, profile: str = "quick", overrides: dict | None = None,
                    root: Path | None = None) -> ExperimentConfig:
    data = resolve_dict(experiment, profile, overrides, root)
    return validate(ExperimentConfig, data, f"{experiment} ({profile} profile)")


def load_prepare_spec(profile: str = "quick", overrides: dict | None = None,
                      root: Path | None = None) -> PrepareSpec:
    """The prepare stage's spec on its own: base.yaml <- the profile's ``all`` <- its ``prepare_only``.

    The same layers an experiment resolves through (minus the experiment file), so ``prepare`` and a
    later ``sweep`` with the same profile name the same shard set.
    """
    root = root or sweeps_dir()
    keys = ("data", "prepare", "split")
    merged = deep_merge(_read_yaml(root / "base.yaml"), _profile_overlay(profile, "prepare_only", root))
    merged = {k: v for k, v in merged.items() if k in keys}
    merged = deep_merge(merged, {k: v for k, v in (overrides or {}).items() if k in keys})
    unknown = sorted(set(overrides or {}) - set(keys))
    if unknown:
        raise ConfigError(f"prepare ({profile} profile): {unknown[0]}: unknown key for the prepare stage")
    return validate(PrepareSpec, merged, f"prepare ({profile} profile)")


def prepare_spec_of(cfg: ExperimentConfig) -> PrepareSpec:
    return PrepareSpec(data=cfg.data, prepare=cfg.prepare, split=cfg.split)
