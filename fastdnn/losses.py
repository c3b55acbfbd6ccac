"""Losses, as in ``keras.losses``: classes, functions and string lookup.

A loss object tells the model which fused kernel to run (``kind``) and whether its input is
logits. The functions compute per-sample losses in NumPy with Keras' formulas, for users who call
them directly; training never goes through them.
"""

import numpy as np

from fastdnn import _kernels, config

__all__ = ["Loss", "SparseCategoricalCrossentropy", "CategoricalCrossentropy",
           "BinaryCrossentropy", "MeanSquaredError", "sparse_categorical_crossentropy",
           "categorical_crossentropy", "binary_crossentropy", "mean_squared_error", "get",
           "deserialize", "serialize"]

_REDUCTIONS = ("sum_over_batch_size", "mean", "sum", "none", None)


class Loss:
    """Base class of the losses.

    Args:
        name: the loss's name.
        reduction: ``'sum_over_batch_size'`` (the default; also ``'mean'``), ``'sum'``, or
            ``'none'``/``None`` when the loss object is called directly. Training always uses
            the mean over the batch.
    """

    kind: int = -1

    def __init__(self, name=None, reduction="sum_over_batch_size"):
        if reduction not in _REDUCTIONS:
            raise ValueError(f"Invalid value for argument `reduction`. Expected one of "
                             f"{_REDUCTIONS}. Received: reduction={reduction!r}")
        self.name = name
        self.reduction = reduction
        self.from_logits = False

    def call(self, y_true, y_pred):
        """Return the per-sample losses (NumPy)."""
        raise NotImplementedError

    def __call__(self, y_true, y_pred):
        """Return the reduced loss of ``y_pred`` against ``y_true``."""
        per_sample = self.call(y_true, y_pred)
        if self.reduction in ("none", None):
            return per_sample
        total = float(np.sum(per_sample))
        return total if self.reduction == "sum" else total / max(per_sample.size, 1)

    def transform_targets(self, y, n_outputs):
        """Targets as the kernel reads them (label smoothing is applied here, once per fit)."""
        return y

    def get_config(self):
        """Return the constructor arguments."""
        return {"name": self.name, "reduction": self.reduction}


class SparseCategoricalCrossentropy(Loss):
    """Cross-entropy between integer labels and predicted class probabilities (or logits).

    With a softmax output layer (and ``from_logits=False``) fastdnn computes the loss from the
    layer's logits in one fused, exact pass; Keras clips the probabilities at 1e-7 instead.

    Args:
        from_logits: whether predictions are logits. Defaults to False.
        ignore_class: not supported; must be None.
        reduction: see ``Loss``.
        name: Defaults to ``'sparse_categorical_crossentropy'``.
    """

    kind = _kernels.LOSS_SPARSE_CE

    def __init__(self, from_logits=False, ignore_class=None, reduction="sum_over_batch_size",
                 name="sparse_categorical_crossentropy"):
        super().__init__(name, reduction)
        if ignore_class is not None:
            raise NotImplementedError("fastdnn does not support `ignore_class`")
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        return sparse_categorical_crossentropy(y_true, y_pred, from_logits=self.from_logits)

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits}


class _SmoothedCrossentropy(Loss):
    """Shared by the categorical and binary cross-entropies: from_logits and label smoothing,
    ``y·(1 - s) + s/k`` with k the number of classes (``_smoothing_classes``)."""

    def __init__(self, from_logits, label_smoothing, reduction, name):
        super().__init__(name, reduction)
        self.from_logits = bool(from_logits)
        self.label_smoothing = float(label_smoothing)

    def _smoothing_classes(self, n_outputs):
        raise NotImplementedError

    def transform_targets(self, y, n_outputs):
        s = self.label_smoothing
        return y * (1 - s) + s / self._smoothing_classes(n_outputs) if s else y

    def _targets(self, y_true, y_pred):
        return self.transform_targets(np.asarray(y_true, float), np.shape(y_pred)[-1])

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing}


class CategoricalCrossentropy(_SmoothedCrossentropy):
    """Cross-entropy between one-hot targets and predicted probabilities (or logits).

    Args:
        from_logits: whether predictions are logits. Defaults to False.
        label_smoothing: ``y·(1 - s) + s/classes``. Defaults to 0.
        reduction: see ``Loss``.
        name: Defaults to ``'categorical_crossentropy'``.
    """

    kind = _kernels.LOSS_CE

    def __init__(self, from_logits=False, label_smoothing=0.0, reduction="sum_over_batch_size",
                 name="categorical_crossentropy"):
        super().__init__(from_logits, label_smoothing, reduction, name)

    def _smoothing_classes(self, n_outputs):
        return n_outputs

    def call(self, y_true, y_pred):
        return categorical_crossentropy(self._targets(y_true, y_pred), y_pred,
                                        from_logits=self.from_logits)


class BinaryCrossentropy(_SmoothedCrossentropy):
    """Binary cross-entropy, averaged over the last axis.

    With a sigmoid output layer (and ``from_logits=False``) fastdnn computes it from the logits in
    one fused, exact pass.

    Args:
        from_logits: whether predictions are logits. Defaults to False.
        label_smoothing: ``y·(1 - s) + s/2``. Defaults to 0.
        reduction: see ``Loss``.
        name: Defaults to ``'binary_crossentropy'``.
    """

    kind = _kernels.LOSS_BCE

    def __init__(self, from_logits=False, label_smoothing=0.0, reduction="sum_over_batch_size",
                 name="binary_crossentropy"):
        super().__init__(from_logits, label_smoothing, reduction, name)

    def _smoothing_classes(self, n_outputs):
        return 2

    def call(self, y_true, y_pred):
        return binary_crossentropy(self._targets(y_true, y_pred), y_pred,
                                   from_logits=self.from_logits)


class MeanSquaredError(Loss):
    """Mean over the last axis of ``(y_true - y_pred)²``.

    Args:
        reduction: see ``Loss``.
        name: Defaults to ``'mean_squared_error'``.
    """

    kind = _kernels.LOSS_MSE

    def __init__(self, reduction="sum_over_batch_size", name="mean_squared_error"):
        super().__init__(name, reduction)

    def call(self, y_true, y_pred):
        return mean_squared_error(y_true, y_pred)


def _clip_probabilities(p):
    eps = config.epsilon()
    return np.clip(p, eps, 1 - eps)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False):
    """Per-sample cross-entropy of integer labels (Keras' formula: renormalise, clip at 1e-7)."""
    y_true = np.asarray(y_true).astype(int).reshape(-1)
    onehot = np.eye(np.shape(y_pred)[-1])[y_true]
    return categorical_crossentropy(onehot, y_pred, from_logits)


def categorical_crossentropy(y_true, y_pred, from_logits=False):
    """Per-sample cross-entropy of one-hot targets (Keras' formula: renormalise, clip at 1e-7)."""
    y_pred = np.asarray(y_pred, float)
    if from_logits:
        shifted = y_pred - y_pred.max(axis=-1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    else:
        log_p = np.log(_clip_probabilities(y_pred / y_pred.sum(axis=-1, keepdims=True)))
    return -(np.asarray(y_true, float) * log_p).sum(axis=-1)


def binary_crossentropy(y_true, y_pred, from_logits=False):
    """Per-sample binary cross-entropy, mean over the last axis."""
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    if from_logits:
        per_element = np.maximum(y_pred, 0) - y_pred * y_true + np.log1p(np.exp(-np.abs(y_pred)))
    else:
        p = _clip_probabilities(y_pred)
        per_element = -(y_true * np.log(p) + (1 - y_true) * np.log(1 - p))
    return per_element.mean(axis=-1)


def mean_squared_error(y_true, y_pred):
    """Per-sample mean over the last axis of ``(y_true - y_pred)²``."""
    d = np.asarray(y_true, float) - np.asarray(y_pred, float)
    return (d * d).mean(axis=-1)


_CLASSES = {
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "SparseCategoricalCrossentropy": SparseCategoricalCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "CategoricalCrossentropy": CategoricalCrossentropy,
    "binary_crossentropy": BinaryCrossentropy,
    "BinaryCrossentropy": BinaryCrossentropy,
    "bce": BinaryCrossentropy,
    "BCE": BinaryCrossentropy,
    "mean_squared_error": MeanSquaredError,
    "MeanSquaredError": MeanSquaredError,
    "mse": MeanSquaredError,
    "MSE": MeanSquaredError,
}
_FUNCTIONS = {
    sparse_categorical_crossentropy: SparseCategoricalCrossentropy,
    categorical_crossentropy: CategoricalCrossentropy,
    binary_crossentropy: BinaryCrossentropy,
    mean_squared_error: MeanSquaredError,
}


def get(identifier) -> Loss:
    """Resolve a loss: a ``Loss`` instance, one of this module's functions, or a name (exact,
    case-sensitive, as in Keras: function names, class names, and the aliases mse/MSE/bce/BCE).

    Raises:
        ValueError: for anything else, listing the names fastdnn knows.
    """
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str) and identifier in _CLASSES:
        return _CLASSES[identifier]()
    if callable(identifier) and identifier in _FUNCTIONS:
        return _FUNCTIONS[identifier]()
    raise ValueError(f"Could not interpret loss identifier: {identifier} "
                     f"(fastdnn supports {sorted(_CLASSES)})")


def deserialize(config: dict) -> Loss:
    """Rebuild a loss from ``{'class_name': ..., 'config': ...}``."""
    return _CLASSES[config["class_name"]](**config["config"])


def serialize(loss: Loss) -> dict:
    """Return ``{'class_name': ..., 'config': ...}`` for a loss."""
    return {"class_name": type(loss).__name__, "config": loss.get_config()}
