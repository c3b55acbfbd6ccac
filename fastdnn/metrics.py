"""Metrics, as in ``keras.metrics``: accuracy in its three forms.

``compile(metrics=['accuracy'])`` is resolved at the first ``fit``/``evaluate`` from the shapes of
the targets and the predictions, with Keras' rule; the kernels then count hits in the same pass
that computes the loss.
"""

import numpy as np

from fastdnn import _kernels

SPARSE, CATEGORICAL, BINARY = (_kernels.METRIC_SPARSE_ACC, _kernels.METRIC_CATEGORICAL_ACC,
                               _kernels.METRIC_BINARY_ACC)
_NAMES = {"sparse_categorical_accuracy": SPARSE, "categorical_accuracy": CATEGORICAL,
          "binary_accuracy": BINARY}


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


def resolve(identifier, y_ndim: int, y_last: int, n_outputs: int):
    """Return ``(name, kernel_code)`` for one metric, given the target shape.

    Keras' rule for ``'accuracy'``/``'acc'``: a one-unit output → binary; targets of lower rank
    than the predictions, or with last dimension 1 against more outputs → sparse; else
    categorical. The metric keeps the name it was given.

    Raises:
        ValueError: for a metric fastdnn does not compute.
    """
    if not isinstance(identifier, str):
        identifier = getattr(identifier, "__name__", identifier)
    if isinstance(identifier, str) and identifier.lower() in ("accuracy", "acc"):
        if n_outputs == 1:
            return identifier, BINARY
        if y_ndim < 2 or (y_last == 1 and n_outputs > 1):
            return identifier, SPARSE
        return identifier, CATEGORICAL
    if identifier in _NAMES:
        return identifier, _NAMES[identifier]
    raise ValueError(f"Could not interpret metric identifier: {identifier} (fastdnn computes "
                     f"'accuracy', {', '.join(repr(n) for n in _NAMES)})")


def check_list(metrics) -> list:
    """Validate ``compile(metrics=...)``: a list or tuple (dict is not supported) or None."""
    if metrics is None:
        return []
    if not isinstance(metrics, (list, tuple)):
        raise ValueError("Expected `metrics` argument to be a list, tuple, or dict. "
                         f"Received instead: metrics={metrics} of type {type(metrics)}")
    if len(metrics) > 1:
        raise NotImplementedError("fastdnn computes one metric per model (accuracy)")
    return list(metrics)
