"""Metrics, as in ``keras.metrics``: names, classes and functions.

``compile(metrics=[...])`` takes Keras' strings (``'accuracy'``, ``'mae'``, ``'mse'``,
``'RootMeanSquaredError'``, ...) and metric objects, several per model. The plan
(``fastdnn._plan``) picks each one's kernel code at the first ``fit``/``evaluate``, from the
shapes of the targets and predictions (Keras' rule for ``'accuracy'``); the kernels then add up each metric's two sums (``_kernels._metric_sums``) in the
same pass that computes the loss, and ``_value`` below turns the sums into the number Keras shows.
"""

import math

import numpy as np

from fastdnn import _kernels, _naming

__all__ = ["Metric", "Accuracy", "SparseCategoricalAccuracy", "CategoricalAccuracy",
           "BinaryAccuracy", "MeanAbsoluteError", "MeanSquaredError", "RootMeanSquaredError",
           "SparseTopKCategoricalAccuracy", "Precision", "Recall", "sparse_categorical_accuracy",
           "categorical_accuracy", "binary_accuracy", "serialize", "get"]


class Metric:
    """Base class of the metric objects: a name and the kernel's code.

    Args:
        name: the key in logs and ``history.history``. Defaults to the snake_case class name.
        dtype: accepted for Keras compatibility; sums are kept in float64.
    """

    code = None
    _numbered = False  # Keras numbers the default names of some classes: precision, precision_1

    def __init__(self, name=None, dtype=None):
        default = _naming.to_snake_case(type(self).__name__)
        self.name = _naming.check_name(name, default) if self._numbered else (name or default)
        self.dtype = dtype

    def get_config(self) -> dict:
        """Return the constructor arguments."""
        return {"name": self.name, "dtype": self.dtype or "float32"}

    @classmethod
    def from_config(cls, config: dict) -> "Metric":
        """Create a metric from ``get_config()``'s output."""
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}>"


class Accuracy(Metric):
    """Accuracy in the form Keras picks for ``'accuracy'``: binary for one output unit, sparse
    for integer labels, else categorical.

    Args:
        name: Defaults to ``'accuracy'``.
        dtype: see ``Metric``.
    """


class SparseCategoricalAccuracy(Metric):
    """How often ``argmax(y_pred)`` equals the integer label.

    Args:
        name: Defaults to ``'sparse_categorical_accuracy'``.
        dtype: see ``Metric``.
    """

    code = _kernels.METRIC_SPARSE_ACC


class CategoricalAccuracy(Metric):
    """How often ``argmax(y_pred)`` equals ``argmax(y_true)`` (one-hot targets).

    Args:
        name: Defaults to ``'categorical_accuracy'``.
        dtype: see ``Metric``.
    """

    code = _kernels.METRIC_CATEGORICAL_ACC


class BinaryAccuracy(Metric):
    """How often ``y_pred > threshold`` equals ``y_true``, element by element.

    Args:
        name: Defaults to ``'binary_accuracy'``.
        dtype: see ``Metric``.
        threshold: only 0.5 (the default) is supported.
    """

    code = _kernels.METRIC_BINARY_ACC

    def __init__(self, name=None, dtype=None, threshold=0.5):
        if threshold != 0.5:
            raise NotImplementedError("fastdnn's BinaryAccuracy thresholds at 0.5 only")
        super().__init__(name, dtype)

    def get_config(self):
        return {**super().get_config(), "threshold": 0.5}


class MeanAbsoluteError(Metric):
    """Mean of ``|y_true - y_pred|``.

    Args:
        name: Defaults to ``'mean_absolute_error'``.
        dtype: see ``Metric``.
    """

    code = _kernels.METRIC_MAE


class MeanSquaredError(Metric):
    """Mean of ``(y_true - y_pred)²``.

    Args:
        name: Defaults to ``'mean_squared_error'``.
        dtype: see ``Metric``.
    """

    code = _kernels.METRIC_MSE


class RootMeanSquaredError(Metric):
    """Square root of the mean of ``(y_true - y_pred)²`` over all samples seen.

    Args:
        name: Defaults to ``'root_mean_squared_error'``.
        dtype: see ``Metric``.
    """

    code = _kernels.METRIC_MSE  # the kernels sum squared errors; ``_value`` takes the root


class SparseTopKCategoricalAccuracy(Metric):
    """How often the integer label is among the ``k`` highest predictions.

    Args:
        k: Defaults to 5.
        name: Defaults to ``'sparse_top_k_categorical_accuracy'``.
        dtype: see ``Metric``.
        from_sorted_ids: only False (the default) is supported.
    """

    code = _kernels.METRIC_SPARSE_TOP_K

    def __init__(self, k=5, name="sparse_top_k_categorical_accuracy", dtype=None,
                 from_sorted_ids=False):
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"`k` must be a positive integer. Received: k={k!r}")
        if from_sorted_ids:
            raise NotImplementedError("fastdnn does not support from_sorted_ids")
        super().__init__(name, dtype)
        self.k = int(k)

    def get_config(self):
        return {**super().get_config(), "k": self.k}


class _ThresholdMetric(Metric):
    """Precision and recall at threshold 0.5 over every element (binary or multi-label)."""

    _numbered = True

    def __init__(self, thresholds=None, top_k=None, class_id=None, name=None, dtype=None):
        if thresholds not in (None, 0.5) or top_k is not None or class_id is not None:
            raise NotImplementedError(f"fastdnn's {type(self).__name__} supports the defaults "
                                      "only (threshold 0.5, no top_k, no class_id)")
        super().__init__(name, dtype)

    def get_config(self):
        return {**super().get_config(), "thresholds": None, "top_k": None, "class_id": None}


class Precision(_ThresholdMetric):
    """True positives over predicted positives (``y_pred > 0.5``), over all samples seen.

    Args:
        thresholds, top_k, class_id: only the defaults (None) are supported.
        name: Defaults to ``'precision'``.
        dtype: see ``Metric``.
    """

    code = _kernels.METRIC_PRECISION


class Recall(_ThresholdMetric):
    """True positives over actual positives (``y_true > 0.5``), over all samples seen.

    Args:
        thresholds, top_k, class_id: only the defaults (None) are supported.
        name: Defaults to ``'recall'``.
        dtype: see ``Metric``.
    """

    code = _kernels.METRIC_RECALL


# Keras' strings: each names a class; the metric keeps the string as its name.
_STRINGS = {"accuracy": Accuracy, "acc": Accuracy,
            "sparse_categorical_accuracy": SparseCategoricalAccuracy,
            "categorical_accuracy": CategoricalAccuracy, "binary_accuracy": BinaryAccuracy,
            "mae": MeanAbsoluteError, "mean_absolute_error": MeanAbsoluteError,
            "mse": MeanSquaredError, "mean_squared_error": MeanSquaredError,
            "sparse_top_k_categorical_accuracy": SparseTopKCategoricalAccuracy}
_CLASSES = {cls.__name__: cls for cls in (
    Accuracy, SparseCategoricalAccuracy, CategoricalAccuracy, BinaryAccuracy, MeanAbsoluteError,
    MeanSquaredError, RootMeanSquaredError, SparseTopKCategoricalAccuracy, Precision, Recall)}


def sparse_categorical_accuracy(y_true, y_pred):
    """Per sample 1.0 where ``argmax(y_pred) == y_true``, else 0.0."""
    y_true = np.asarray(y_true).reshape(-1)
    return (np.argmax(y_pred, axis=-1) == y_true).astype(float)


def categorical_accuracy(y_true, y_pred):
    """Per sample 1.0 where ``argmax(y_pred) == argmax(y_true)``, else 0.0."""
    return (np.argmax(y_pred, axis=-1) == np.argmax(y_true, axis=-1)).astype(float)


def binary_accuracy(y_true, y_pred, threshold=0.5):
    """Per sample, the mean over the last axis of ``(y_pred > threshold) == y_true``."""
    hits = (np.asarray(y_pred) > threshold) == np.asarray(y_true)
    return hits.mean(axis=-1)


_FUNCTIONS = {sparse_categorical_accuracy: SparseCategoricalAccuracy,
              categorical_accuracy: CategoricalAccuracy, binary_accuracy: BinaryAccuracy}


def serialize(metric: Metric):
    """The metric as Keras writes it in a config: its string when it is one of Keras' strings,
    else ``{'module', 'class_name', 'config', 'registered_name'}``."""
    if _STRINGS.get(metric.name) is type(metric) and metric.get_config() == type(metric)(
            name=metric.name).get_config():
        return metric.name
    return {"module": "keras.metrics", "class_name": type(metric).__name__,
            "config": metric.get_config(), "registered_name": None}


def get(identifier) -> Metric:
    """Resolve a metric: a ``Metric`` object (used as is), a Keras string (``'accuracy'``,
    ``'acc'``, ``'mae'``, ``'mse'``, a snake_case or class name, which becomes the metric's name
    as in Keras), one of this module's functions, or a config from ``serialize`` (or Keras'
    files).

    Raises:
        ValueError: for anything else, listing what fastdnn computes.
    """
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, dict):
        if identifier.get("class_name") == "function":
            return get(identifier.get("config"))
        if identifier.get("class_name") in _CLASSES:
            return _CLASSES[identifier["class_name"]].from_config(identifier.get("config", {}))
    if isinstance(identifier, str):
        if identifier.lower() in ("accuracy", "acc"):  # any case, keeping the name given
            return Accuracy(name=identifier)
        if identifier in _STRINGS:
            return _STRINGS[identifier](name=identifier)
        if identifier in _CLASSES:
            return _CLASSES[identifier](name=identifier)
    if callable(identifier) and identifier in _FUNCTIONS:
        return _FUNCTIONS[identifier](name=identifier.__name__)
    raise ValueError(f"Could not interpret metric identifier: {identifier} (fastdnn computes "
                     f"{', '.join(sorted(_STRINGS))} and the classes {', '.join(_CLASSES)})")


def _value(metric: Metric, sums) -> float:
    """The metric's value from the kernels' two sums (numerator, denominator: 0 when the
    denominator is, as Keras' ``divide_no_nan``)."""
    mean = float(sums[0] / sums[1]) if sums[1] else 0.0
    if isinstance(metric, RootMeanSquaredError):
        return math.sqrt(mean) if mean >= 0 else math.nan  # negative weights can make it so
    return mean


def _check_list(metrics, weighted_metrics=None) -> list:
    """Validate ``compile(metrics=..., weighted_metrics=...)`` (lists or tuples, or None).

    Returns:
        ``(name in the logs, Metric, weighted)`` for each metric, then each weighted metric
        (which the sample weights weigh); as Keras, a weighted metric named like a metric is
        logged as ``weighted_<name>``.

    Raises:
        ValueError: for a dict or another type, an unknown metric, two metrics of one name, or
            more than the kernels' limit.
    """
    named = []
    for argument, values, weighted in (("metrics", metrics, False),
                                       ("weighted_metrics", weighted_metrics, True)):
        if values is None:
            continue
        if not isinstance(values, (list, tuple)):
            raise ValueError(f"Expected `{argument}` argument to be a list, tuple, or dict. "
                             f"Received instead: {argument}={values} of type {type(values)}")
        resolved = [get(m) for m in values]
        names = [m.name for m in resolved]
        if len(set(names)) != len(names):
            raise ValueError(f"Metrics need distinct names; got {names}")
        taken = {name for name, _, _ in named}
        named += [("weighted_" + m.name if m.name in taken else m.name, m, weighted)
                  for m in resolved]
    if len({name for name, _, _ in named}) != len(named):
        raise ValueError(f"Metrics need distinct names; got {[name for name, _, _ in named]}")
    if len(named) > _kernels.MAX_METRICS:
        raise ValueError(f"fastdnn computes at most {_kernels.MAX_METRICS} metrics per model")
    return named
