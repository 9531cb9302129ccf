"""The six feature models of the study's exp3/exp4 behind one interface (no Ray here).

``build_classifier(name, ...)`` returns an sklearn ``Pipeline(StandardScaler(), model)``: the scaler is
fitted on the rows passed to ``fit`` only, ``fit(X, y)`` takes float32 features and int labels 0..9, and
``predict(X)`` returns int labels.

=================  ==========================================================================
``knn``            ``KNeighborsClassifier()`` with scikit-learn's defaults
``random_forest``  ``RandomForestClassifier()`` defaults, ``random_state=seed``, ``n_jobs=nthread``
``xgboost``        ``xgboost.XGBClassifier()`` defaults, ``random_state=seed``, ``n_jobs=nthread``
``xgboost_tuned``  the same with the study's Appendix C (:data:`TUNED_XGBOOST_PARAMS`)
``mlp``            Appendix B's dense network (207,802 parameters on 58 inputs), in PyTorch
``lstm``           Appendix B's LSTM network (305,994 parameters), in PyTorch
=================  ==========================================================================

The study trained its networks in Keras and states neither optimiser, learning rate, batch size nor
epochs; those come from the config's ``train:`` block (:class:`raygenre.config.TrainConfig`).
Initialisation follows Keras's defaults (Glorot-uniform kernels, zero biases, orthogonal recurrent
kernel, forget-gate bias 1) so the PyTorch networks start where the study's did; BatchNorm keeps
PyTorch's momentum (0.1), because Keras's 0.99 leaves the running statistics near their initial
values after the few hundred steps of a short run.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import RandomForestClassifier
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import LabelEncoder, StandardScaler
from sklearn.utils.validation import check_array, check_is_fitted
from torch import nn
from xgboost import XGBClassifier

from raygenre.config import TrainConfig
from raygenre.errors import ConfigError
from raygenre.genres import N_CLASSES
from raygenre.models.optim import make_optimizer, make_scheduler, step_scheduler

#: Appendix C of the study: the tuned XGBoost hyper-parameters (scikit-learn names).
TUNED_XGBOOST_PARAMS: dict[str, Any] = {
    "subsample": 0.6,
    "reg_lambda": 1.5,
    "reg_alpha": 0.1,
    "n_estimators": 1000,
    "max_depth": 9,
    "learning_rate": 0.05,
    "gamma": 0,
    "colsample_bytree": 0.6,
}

TRAIN_KEYS = ("optimizer", "learning_rate", "weight_decay", "schedule", "epochs", "batch_size")


# --------------------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------------------

def _keras_dense_init(layer: nn.Linear) -> nn.Linear:
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class AppendixBMLP(nn.Module):
    """Appendix B's dense network: ``n_features -> 512 -> 256 -> 128 -> 64 -> 16 -> 10``.

    Each hidden block is Dense (ReLU) -> Dropout -> BatchNorm, as in the study's Keras summary; the last
    Dense layer gives logits (the softmax lives in the cross-entropy loss).

    The study's prose speaks of "two Dense 512 blocks", but its layer table has a single 512 layer
    (30,208 = (58 + 1) x 512 parameters) and totals 207,802 parameters (205,850 trainable, 1,952
    BatchNorm running statistics). We follow the table, which is what the reported counts describe.
    """

    WIDTHS = (512, 256, 128, 64, 16)

    def __init__(self, n_features: int, n_classes: int = N_CLASSES, dropout: float = 0.3):
        super().__init__()
        layers: list[nn.Module] = []
        width_in = n_features
        for width in self.WIDTHS:
            layers += [_keras_dense_init(nn.Linear(width_in, width)), nn.ReLU(), nn.Dropout(dropout),
                       nn.BatchNorm1d(width)]
            width_in = width
        layers.append(_keras_dense_init(nn.Linear(width_in, n_classes)))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SingleBiasLSTM(nn.Module):
    """A one-layer LSTM with Keras's parameterisation: one bias vector per gate, not two.

    PyTorch's ``nn.LSTM`` adds two biases (``b_ih`` and ``b_hh``) to every gate, which only duplicates a
    degree of freedom and costs 4 x hidden extra parameters. Keras has one. We keep the fast ``nn.LSTM``
    kernel with ``bias=False`` and append a constant-1 channel to every time step: the input weights of
    that channel *are* the gate bias, so the layer has exactly
    ``4 * (hidden * (input_size + hidden) + hidden)`` parameters (264,192 for one input and 256 units)
    and computes exactly Keras's LSTM function.

    Initialisation follows Keras: Glorot-uniform input kernel, orthogonal recurrent kernel, zero bias
    with the forget-gate bias set to 1 (``unit_forget_bias``).
    """

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.lstm = nn.LSTM(input_size + 1, hidden_size, bias=False, batch_first=True)
        weight_ih = self.lstm.weight_ih_l0  # (4H, input_size + 1); gate order i, f, g, o
        with torch.no_grad():
            limit = math.sqrt(6.0 / (input_size + 4 * hidden_size))
            weight_ih[:, :input_size].uniform_(-limit, limit)
            weight_ih[:, input_size].zero_()
            weight_ih[hidden_size:2 * hidden_size, input_size] = 1.0
            nn.init.orthogonal_(self.lstm.weight_hh_l0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (batch, steps, input_size) -> the last hidden state, (batch, hidden)."""
        ones = torch.ones(*x.shape[:-1], 1, dtype=x.dtype, device=x.device)
        _, (h_n, _) = self.lstm(torch.cat([x, ones], dim=-1))
        return h_n[-1]


class AppendixBLSTM(nn.Module):
    """Appendix B's LSTM network over the feature vector read as a sequence of one-value steps.

    LSTM(256) -> Dropout -> Dense 128 (ReLU) -> Dropout -> Dense 64 (ReLU) -> Dropout -> Dense 10:
    305,994 parameters whatever the number of features (the sequence length).
    """

    def __init__(self, n_features: int, n_classes: int = N_CLASSES, dropout: float = 0.3):
        super().__init__()
        self.n_features = n_features
        self.lstm = SingleBiasLSTM(1, 256)
        self.head = nn.Sequential(
            nn.Dropout(dropout),
            _keras_dense_init(nn.Linear(256, 128)), nn.ReLU(), nn.Dropout(dropout),
            _keras_dense_init(nn.Linear(128, 64)), nn.ReLU(), nn.Dropout(dropout),
            _keras_dense_init(nn.Linear(64, n_classes)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm(x.unsqueeze(-1)))


ARCHITECTURES = {"mlp": AppendixBMLP, "lstm": AppendixBLSTM}


def build_network(arch: str, n_features: int, n_classes: int = N_CLASSES, dropout: float = 0.3) -> nn.Module:
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown network '{arch}': choose one of {', '.join(ARCHITECTURES)}.")
    return ARCHITECTURES[arch](n_features, n_classes, dropout)


def keras_style_param_count(module: nn.Module) -> tuple[int, int]:
    """``(total, trainable)`` parameters as Keras's ``model.summary()`` counts them.

    Keras counts BatchNorm's moving mean and variance as non-trainable parameters; PyTorch keeps them
    as buffers, so they are added here. Frozen parameters (``requires_grad=False``) count as
    non-trainable.
    """
    total = sum(p.numel() for p in module.parameters())
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    for sub in module.modules():
        if isinstance(sub, nn.modules.batchnorm._BatchNorm) and sub.track_running_stats:
            total += sub.running_mean.numel() + sub.running_var.numel()
    return total, trainable


# --------------------------------------------------------------------------------------------------
# sklearn wrapper for the networks
# --------------------------------------------------------------------------------------------------

class TorchTabularClassifier(ClassifierMixin, BaseEstimator):
    """An sklearn classifier training an Appendix B network with cross-entropy.

    Deterministic per ``seed`` on a given device and thread count: the weights, dropout masks and the
    shuffling (a dedicated ``torch.Generator``) all derive from it, and the caller's global torch RNG
    state is restored afterwards. ``nthread`` caps torch's intra-op threads while fitting and
    predicting. Labels must be ``0 .. n_classes - 1``; the output layer always has ``n_classes`` units,
    so a training set that lacks a class still trains.
    """

    #: called as ``hook(network, epochs_done)`` after each epoch (not a parameter: never saved or cloned)
    epoch_hook = None

    def __init__(self, arch: str = "mlp", epochs: int = 100, learning_rate: float = 1e-3,
                 batch_size: int = 32, optimizer: str = "adam", weight_decay: float = 0.0,
                 schedule: str = "constant", dropout: float = 0.3, n_classes: int = N_CLASSES, seed: int = 0,
                 nthread: int = 1, device: str = "cpu"):
        self.arch = arch
        self.epochs = epochs
        self.schedule = schedule
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.weight_decay = weight_decay
        self.dropout = dropout
        self.n_classes = n_classes
        self.seed = seed
        self.nthread = nthread
        self.device = device

    def fit(self, X, y) -> TorchTabularClassifier:
        X = check_array(X, dtype=np.float32)
        y = np.asarray(y)
        if y.shape != (X.shape[0],):
            raise ValueError(f"y has shape {y.shape}, expected ({X.shape[0]},).")
        y = y.astype(np.int64)
        if y.min() < 0 or y.max() >= self.n_classes:
            raise ValueError(f"labels must be integers in 0..{self.n_classes - 1}, got {y.min()}..{y.max()}.")
        if X.shape[0] < 2:
            raise ValueError("at least 2 training rows are needed (BatchNorm needs a batch of 2).")
        self.n_features_in_ = X.shape[1]
        self.classes_ = np.arange(self.n_classes)
        device = torch.device(self.device)
        previous_threads = torch.get_num_threads()
        torch.set_num_threads(self.nthread)
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                model = build_network(self.arch, X.shape[1], self.n_classes, self.dropout).to(device)
                self.model_ = self._train(model, torch.from_numpy(X), torch.from_numpy(y), device)
        finally:
            torch.set_num_threads(previous_threads)
        return self

    def _train(self, model: nn.Module, X: torch.Tensor, y: torch.Tensor, device: torch.device) -> nn.Module:
        generator = torch.Generator().manual_seed(self.seed)
        optimizer = make_optimizer(model.parameters(), self.optimizer, self.learning_rate, self.weight_decay)
        scheduler = make_scheduler(optimizer, self.schedule, self.epochs)
        loss_fn = nn.CrossEntropyLoss()
        X, y = X.to(device), y.to(device)
        n = X.shape[0]
        model.train()
        for epoch in range(self.epochs):
            order = torch.randperm(n, generator=generator).to(device)
            epoch_loss = 0.0
            for start in range(0, n, self.batch_size):
                idx = order[start:start + self.batch_size]
                if idx.numel() < 2:  # a batch of one breaks BatchNorm; the row is seen in other epochs
                    continue
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(model(X[idx]), y[idx])
                loss.backward()
                optimizer.step()
                epoch_loss += float(loss.detach()) * idx.numel()
            step_scheduler(scheduler, epoch_loss / n)
            if self.epoch_hook is not None:  # e.g. a search's per-epoch validation report
                self.epoch_hook(model, epoch + 1)
        return model.eval()

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "model_")
        X = check_array(X, dtype=np.float32)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, the model was fitted on {self.n_features_in_}.")
        previous_threads = torch.get_num_threads()
        torch.set_num_threads(self.nthread)
        try:
            device = next(self.model_.parameters()).device
            with torch.no_grad():
                parts = [torch.softmax(self.model_(torch.from_numpy(X[i:i + 1024]).to(device)), dim=1)
                         for i in range(0, X.shape[0], 1024)]
        finally:
            torch.set_num_threads(previous_threads)
        return torch.cat(parts).cpu().numpy()

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


# --------------------------------------------------------------------------------------------------
# XGBoost that tolerates a training set without some class
# --------------------------------------------------------------------------------------------------

class LabelSafeXGBClassifier(XGBClassifier):
    """``XGBClassifier`` that accepts any set of integer labels.

    XGBoost's wrapper insists that the training labels be exactly ``0..k-1``; a bootstrap resample or a
    small training fraction can miss a genre. Labels are encoded before fitting and decoded after
    predicting; everything else is the library's own behaviour.
    """

    def fit(self, X, y, **kwargs) -> LabelSafeXGBClassifier:
        self.__dict__.pop("_present_classes", None)  # during fit, classes_ is the library's 0..k-1
        encoder = LabelEncoder().fit(np.asarray(y))
        super().fit(X, encoder.transform(np.asarray(y)), **kwargs)
        self._present_classes = encoder.classes_
        return self

    @property
    def classes_(self) -> np.ndarray:
        present = self.__dict__.get("_present_classes")
        return np.arange(self.n_classes_) if present is None else present

    def predict(self, X, **kwargs) -> np.ndarray:
        encoded = np.asarray(super().predict(X, **kwargs)).astype(np.int64)
        return self.classes_[encoded]


# --------------------------------------------------------------------------------------------------
# The factory
# --------------------------------------------------------------------------------------------------

def _train_settings(train: TrainConfig | dict | None) -> dict:
    if train is None:
        train = TrainConfig()
    elif isinstance(train, dict):
        train = TrainConfig.model_validate(train)
    return {key: getattr(train, key) for key in TRAIN_KEYS}


def network_param_counts(model) -> tuple[int, int] | None:
    """Keras-style (total, trainable) counts of a fitted pipeline's network, or None for trees and KNN."""
    net = getattr(model[-1] if isinstance(model, Pipeline) else model, "model_", None)
    return keras_style_param_count(net) if isinstance(net, nn.Module) else None


def _check_params(name: str, params: dict, allowed: set[str]) -> None:
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ConfigError(f"model '{name}' has no parameter(s) {', '.join(repr(k) for k in unknown)}; "
                         f"valid parameters are {', '.join(sorted(allowed))}.")


def build_classifier(name: str, *, params: dict | None = None, train: TrainConfig | dict | None = None,
                     seed: int = 0, nthread: int = 1, device: str = "cpu") -> Pipeline:
    """``Pipeline(StandardScaler(), model)`` for one of the registry's tabular models.

    ``params`` overrides the model's keyword arguments (scikit-learn / XGBClassifier names, or the
    :class:`TorchTabularClassifier` arguments for ``mlp``/``lstm``) and wins over ``seed``, ``nthread``,
    ``device`` and ``train``; an unknown key raises ``ValueError`` naming the model and the key.
    ``train`` (a TrainConfig or a dict of its keys) sets the networks' training; trees and KNN ignore
    it. ``device`` is used by XGBoost (``"cuda"``) and the networks.
    """
    params = dict(params or {})
    if name == "knn":
        model = KNeighborsClassifier()
    elif name == "random_forest":
        model = RandomForestClassifier(random_state=seed, n_jobs=nthread)
    elif name in ("xgboost", "xgboost_tuned"):
        base = dict(TUNED_XGBOOST_PARAMS) if name == "xgboost_tuned" else {}
        model = LabelSafeXGBClassifier(**base, random_state=seed, n_jobs=nthread, device=device)
    elif name in ("mlp", "lstm"):
        model = TorchTabularClassifier(arch=name, **_train_settings(train), seed=seed, nthread=nthread,
                                       device=device)
        _check_params(name, params, set(model.get_params(deep=False)) - {"arch"})
    else:
        raise ValueError(f"unknown feature model '{name}': choose knn, random_forest, xgboost, xgboost_tuned, "
                         f"mlp or lstm.")
    _check_params(name, params, set(model.get_params(deep=False)))
    model.set_params(**params)
    return Pipeline([("scale", StandardScaler()), ("model", model)])
