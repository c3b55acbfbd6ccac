"""The model's inputs, converted and checked once before any call into the kernels.

``fit``, ``evaluate`` and ``predict`` accept any numeric array-like; what reaches the kernels is
one C-contiguous array of the model's float type per argument (labels as int32), checked for
shape, range and finiteness here, so that bad data is refused before any weight changes.
"""

import numpy as np

from fastdnn import _kernels

__all__ = ["positive_int", "verbose_level", "as_array", "features", "targets",
           "sample_weights", "validation_tuple", "validation_fraction", "split"]


def positive_int(name, value, allow_zero=False) -> int:
    """``value`` as an int, refused (``ValueError`` naming ``name``) unless it is a positive
    (or, with ``allow_zero``, non-negative) integer."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or \
            value < (0 if allow_zero else 1):
        bound = "a non-negative" if allow_zero else "a positive"
        raise ValueError(f"`{name}` must be {bound} integer. Received: {name}={value!r}")
    return int(value)


def verbose_level(verbose) -> int:
    """Keras' ``verbose`` argument as 0, 1 or 2 ('auto' is 1)."""
    if verbose == "auto":
        return 1
    if verbose not in (0, 1, 2):
        raise ValueError(f"`verbose` must be 'auto', 0, 1 or 2. Received: verbose={verbose!r}")
    return int(verbose)


def as_array(data, name) -> np.ndarray:
    """Convert an array-like to a numeric ndarray once; refuse what is not numbers."""
    if data is None:
        raise ValueError(f"`{name}` is required")
    try:
        array = np.asarray(data)
    except (ValueError, TypeError) as e:
        raise TypeError(f"`{name}` cannot be converted to a numeric array: {e}") from None
    if array.dtype.kind not in "biuf":
        raise TypeError(f"`{name}` must hold numbers; got an array of dtype {array.dtype}")
    if array.ndim == 0:
        raise ValueError(f"`{name}` must be an array of samples, got a scalar")
    if array.shape[0] == 0:
        raise ValueError(f"`{name}` is empty: it needs at least one sample")
    return array


def features(array, sample_shape, dtype, name="x") -> np.ndarray:
    """``array`` (from ``as_array``) as the kernels read inputs: shape (n, features), ``dtype``,
    C order; refuse a sample shape other than ``sample_shape`` or non-finite values."""
    if array.shape[1:] != tuple(sample_shape):
        raise ValueError(f"Input {name} has shape {array.shape}, but the model expects "
                         f"{(None,) + tuple(sample_shape)}: each sample must have shape "
                         f"{sample_shape}")
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is refused just below
        flat = np.ascontiguousarray(array.reshape(array.shape[0], -1), dtype=dtype)
    bad = _kernels.count_nonfinite(flat)
    if bad:
        raise ValueError(f"`{name}` contains {bad} NaN or infinite values; fastdnn refuses to "
                         "train or evaluate on them")
    return flat


def targets(y, n, loss, n_outputs, dtype, name="y") -> np.ndarray:
    """Targets as the loss kernel reads them: int32 labels in [0, n_outputs) for the sparse
    cross-entropy, else (n, n_outputs) of ``dtype`` (``loss.transform_targets`` applied); check
    their count, shape, range and finiteness."""
    array = as_array(y, name)
    if array.shape[0] != n:
        raise ValueError(f"Data cardinality is ambiguous: x has {n} samples but {name} has "
                         f"{array.shape[0]}. Make sure all arrays contain the same number "
                         "of samples.")
    with np.errstate(over="ignore", invalid="ignore"):
        finite = np.all(np.isfinite(array.astype(dtype)))
    if not finite:
        raise ValueError(f"`{name}` contains NaN or infinite values (in {dtype})")
    if loss.kind == _kernels.LOSS_SPARSE_CE:
        labels = array.reshape(n) if array.ndim == 2 and array.shape[1] == 1 else array
        if labels.ndim != 1:
            raise ValueError("Arguments `target` and `output` must have the same shape up "
                             f"until the last dimension: target.shape={array.shape}, "
                             f"output.shape=(None, {n_outputs}). (For one-hot targets use "
                             "'categorical_crossentropy'.)")
        if labels.dtype.kind == "f" and np.any(labels != np.round(labels)):
            raise ValueError(f"`{name}` must hold integer class ids for "
                             "sparse_categorical_crossentropy")
        low, high = labels.min(), labels.max()
        if low < 0 or high >= n_outputs:
            raise ValueError(f"`{name}` holds labels from {low:g} to {high:g}, but the output "
                             f"layer has {n_outputs} units: labels must lie in [0, {n_outputs})")
        return np.ascontiguousarray(labels, dtype=np.int32)
    shaped = array.reshape(n, 1) if array.ndim == 1 and n_outputs == 1 else array
    if shaped.shape != (n, n_outputs):
        raise ValueError("Arguments `target` and `output` must have the same shape. Received: "
                         f"target.shape={array.shape}, output.shape=(None, {n_outputs})")
    shaped = loss.transform_targets(shaped.astype(np.float64), n_outputs)
    return np.ascontiguousarray(shaped, dtype=dtype)


def sample_weights(sample_weight, class_weight, y, n, dtype, name="sample_weight"):
    """Per-sample weights of ``dtype``, from ``sample_weight`` ((n,) or (n, 1)) or from
    ``class_weight`` ({class: weight}, 1 for classes it omits, the class of a one-hot row its
    argmax), as Keras; None when neither is given."""
    if sample_weight is not None and class_weight is not None:
        raise ValueError("You cannot `class_weight` and `sample_weight` at the same time.")
    if class_weight is not None:
        if not isinstance(class_weight, dict):
            raise ValueError("`class_weight` must be a dict {class index: weight}. "
                             f"Received: class_weight={class_weight!r}")
        labels = np.asarray(y)
        if labels.ndim > 1:
            labels = labels.argmax(axis=-1) if labels.shape[-1] != 1 else labels[..., 0]
        labels = np.round(labels).astype(np.int64)
        sample_weight = [class_weight.get(int(label), 1.0) for label in labels]
        name = "class_weight"
    if sample_weight is None:
        return None
    weights = as_array(sample_weight, name)
    if weights.ndim == 2 and weights.shape[1] == 1:
        weights = weights[:, 0]
    if weights.shape != (n,):
        raise ValueError(f"`{name}` must give one weight per sample: expected shape ({n},), "
                         f"got {weights.shape}")
    with np.errstate(over="ignore", invalid="ignore"):
        weights = np.ascontiguousarray(weights, dtype=dtype)
    if not np.all(np.isfinite(weights)):
        raise ValueError(f"`{name}` contains NaN or infinite values (in {dtype})")
    return weights


def validation_tuple(validation_data) -> tuple:
    """``fit``'s ``validation_data`` as ``(x, y, sample_weight or None)``."""
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
        raise ValueError("`validation_data` must be a tuple (x_val, y_val) or "
                         "(x_val, y_val, val_sample_weight)")
    return tuple(validation_data) + (None,) * (3 - len(validation_data))


def validation_fraction(validation_split) -> float:
    """``fit``'s ``validation_split``, refused unless a number in [0, 1)."""
    if isinstance(validation_split, bool) or not isinstance(
            validation_split, (int, float)) or not 0 <= validation_split < 1:
        raise ValueError("`validation_split` must be a float in [0, 1). Received: "
                         f"validation_split={validation_split!r}")
    return validation_split


def split(data, validation_split) -> tuple:
    """``(training, validation)``: the converted ``(x, y, weights or None)`` cut before its last
    ``validation_split`` fraction, as Keras (before shuffling)."""
    n = data[0].shape[0]
    k = int(n * (1.0 - validation_split))
    if k == 0 or k == n:
        raise ValueError(f"Training data contains {n} samples, which is not sufficient to split "
                         "it into a validation and training set as specified by "
                         f"`validation_split={validation_split}`. Either provide more data, or a "
                         "different value for the `validation_split` argument.")
    return (tuple(None if a is None else a[:k] for a in data),
            tuple(None if a is None else a[k:] for a in data))
