"""Keras 3's objects for looking into a model: ``KerasTensor`` and ``Variable``.

fastdnn has no symbolic graph; a ``KerasTensor`` only describes a layer's input or output
(``shape`` with None for the batch axis, ``dtype``), as Keras' does before anything runs. A
``Variable`` is one weight of a layer: it reads and writes the layer's current view into the
model's flat parameter buffer, so ``assign`` changes what the model computes.
"""

import operator

import numpy as np


class KerasTensor:
    """The shape and dtype of a layer's input or output, as ``keras.KerasTensor``.

    Args:
        shape: tuple, None for the batch axis, e.g. ``(None, 100)``.
        dtype: str, e.g. ``'float32'``.
        name: Defaults to ``'keras_tensor'``.
    """

    def __init__(self, shape, dtype="float32", name="keras_tensor"):
        self.shape = tuple(shape)
        self.dtype = str(dtype)
        self.name = name
        self.sparse = False
        self.ragged = False

    @property
    def ndim(self) -> int:
        """The number of axes, batch axis included."""
        return len(self.shape)

    def __repr__(self):
        return (f"<KerasTensor shape={self.shape}, dtype={self.dtype}, sparse=False, "
                f"ragged=False, name={self.name}>")


class Variable:
    """One weight of a layer, as ``keras.Variable``: ``.numpy()``, ``.assign()``, ``.shape``,
    ``.dtype``, ``.name``, ``.path``; NumPy functions and arithmetic read its value.

    Args:
        layer: the layer that owns it.
        index: its position in ``layer.get_weights()``.
    """

    def __init__(self, layer, index):
        self._layer = layer
        self._index = index

    @property
    def value(self) -> np.ndarray:
        """The weight itself: a NumPy view into the model's parameter buffer."""
        return self._layer._weights[self._index]

    @property
    def name(self) -> str:
        """``'kernel'``, ``'bias'``, ..."""
        return self._layer._weight_names[self._index]

    @property
    def path(self) -> str:
        """``'<model>/<layer>/<name>'``, the model being the one that first built the layer."""
        return f"{self._layer._scope}/{self._layer.name}/{self.name}"

    @property
    def shape(self) -> tuple:
        return self.value.shape

    @property
    def dtype(self) -> str:
        return str(self.value.dtype)

    @property
    def ndim(self) -> int:
        return self.value.ndim

    @property
    def trainable(self) -> bool:
        """Whether the optimizer steps it: its layer is trainable and it is not one of the
        layer's statistics (a moving mean, an adapted variance...)."""
        return self._layer.trainable and self.name not in self._layer._untrained_weights

    def numpy(self) -> np.ndarray:
        """Return a copy of the value."""
        return self.value.copy()

    def assign(self, value):
        """Set the value (same shape; cast to the model's float type); return the variable.

        Raises:
            ValueError: for another shape or a non-finite value.
        """
        array = np.asarray(value)
        if array.shape != self.shape:
            raise ValueError("The shape of the target variable and the shape of the target value "
                             "in `variable.assign(value)` must match. "
                             f"variable.shape={self.shape}, Received: value.shape={array.shape}. "
                             f"Target variable: {self!r}")
        if not np.all(np.isfinite(array)):
            raise ValueError(f"variable.assign: the value for {self.path} must be finite")
        self.value[...] = array
        return self

    def assign_add(self, value):
        """Add ``value`` to the variable; return it."""
        return self.assign(self.value + np.asarray(value))

    def assign_sub(self, value):
        """Subtract ``value`` from the variable; return it."""
        return self.assign(self.value - np.asarray(value))

    def __array__(self, dtype=None, copy=None):
        return np.array(self.value, dtype=dtype, copy=True if copy is None else copy)

    def __getitem__(self, key):
        return self.value[key]

    def __len__(self):
        return len(self.value)

    def __repr__(self):
        return (f"<Variable path={self.path}, shape={self.shape}, dtype={self.dtype}, "
                f"value={self.value}>")


def _binary(op, reflected=False):
    if reflected:
        return lambda self, other: op(other, self.value)
    return lambda self, other: op(self.value, other)


for _name, _op in (("add", operator.add), ("sub", operator.sub), ("mul", operator.mul),
                   ("truediv", operator.truediv), ("pow", operator.pow),
                   ("matmul", operator.matmul)):
    setattr(Variable, f"__{_name}__", _binary(_op))
    setattr(Variable, f"__r{_name}__", _binary(_op, reflected=True))
for _name in ("lt", "le", "gt", "ge", "eq", "ne"):
    setattr(Variable, f"__{_name}__", _binary(getattr(operator, _name)))
Variable.__hash__ = object.__hash__
Variable.__neg__ = lambda self: -self.value
Variable.__abs__ = lambda self: abs(self.value)
