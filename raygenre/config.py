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
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

EXPERIMENTS = ("exp1", "exp2", "exp3", "exp4")
PROFILES = ("quick", "paper")
TABULAR_MODELS = ("knn", "random_forest", "xgboost", "xgboost_tuned", "mlp", "lstm")


class ConfigError(ValueError):
    """A config that cannot be used: unknown key, bad value, missing file."""


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


class ModelSpec(Strict):
    name: Literal["knn", "random_forest", "xgboost", "xgboost_tuned", "mlp", "lstm"]
    params: dict[str, Any] = {}


class NeuralConfig(Strict):
    """MLP / LSTM training; the study does not state these, so they are ours (README)."""
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    learning_rate: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    epochs: int = Field(100, ge=1)
    batch_size: int = Field(32, ge=1)
    dropout: float = Field(0.3, ge=0, lt=1)


class XGBoostConfig(Strict):
    backend: Literal["in_trial", "distributed"] = "in_trial"
    workers: int = Field(2, ge=1)
    nthread: int | None = Field(None, ge=1)  # None: the trial's CPUs


class Exp4Config(Strict):
    model: Literal["knn", "random_forest", "xgboost", "xgboost_tuned", "mlp", "lstm"] = "xgboost_tuned"
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


class ResourcesConfig(Strict):
    cpus_per_trial: float = Field(1, gt=0)
    gpus_per_neural_trial: float | Literal["auto"] = "auto"  # auto: 1 when the cluster has GPUs
    max_failures: int = Field(1, ge=0)
    max_concurrent_trials: int | None = Field(None, ge=1)


class ExperimentConfig(Strict):
    experiment: Literal["exp1", "exp2", "exp3", "exp4"]
    description: str = ""
    profile: str = "quick"
    data: DataConfig = DataConfig()
    prepare: PrepareConfig = PrepareConfig()
    split: SplitConfig = SplitConfig()
    features: FeaturesConfig = FeaturesConfig()
    models: tuple[ModelSpec, ...] = ()
    neural: NeuralConfig = NeuralConfig()
    xgboost: XGBoostConfig = XGBoostConfig()
    exp4: Exp4Config | None = None
    resources: ResourcesConfig = ResourcesConfig()

    def hash(self) -> str:
        return config_hash(self.model_dump(mode="json"))


class PrepareSpec(Strict):
    """What the prepare stage depends on; its hash names the shard set."""
    data: DataConfig = DataConfig()
    prepare: PrepareConfig = PrepareConfig()
    split: SplitConfig = SplitConfig()

    def hash(self) -> str:
        """Representations are separate shard sets inside one hash, so they do not enter it."""
        body = self.model_dump(mode="json")
        body["prepare"].pop("representations")
        body["prepare"].pop("workers")
        body["prepare"].pop("batch_size")
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
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            problems.append(f"{path}: {msg}")
        raise ConfigError(f"{source}: " + "; ".join(problems)) from None


def load_experiment(experiment: str, profile: str = "quick", overrides: dict | None = None,
                    root: Path | None = None) -> ExperimentConfig:
    data = resolve_dict(experiment, profile, overrides, root)
    return validate(ExperimentConfig, data, f"{experiment} ({profile} profile)")


def load_prepare_spec(profile: str = "quick", overrides: dict | None = None,
                      root: Path | None = None) -> PrepareSpec:
    """The prepare stage's spec on its own: base.yaml, the profile's ``all`` and ``prepare_only``."""
    root = root or sweeps_dir()
    base = _read_yaml(root / "base.yaml")
    merged = {k: base[k] for k in ("data", "prepare", "split") if k in base}
    merged = deep_merge(merged, _profile_overlay(profile, "prepare_only", root))
    merged = {k: v for k, v in merged.items() if k in ("data", "prepare", "split")}
    merged = deep_merge(merged, overrides or {})
    return validate(PrepareSpec, merged, f"prepare ({profile} profile)")


def prepare_spec_of(cfg: ExperimentConfig) -> PrepareSpec:
    return PrepareSpec(data=cfg.data, prepare=cfg.prepare, split=cfg.split)
