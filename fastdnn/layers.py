"""Layers, as in ``keras.layers``: shapes, parameters and configuration only.

A layer computes nothing itself. The model lays every weight out in one flat buffer (a layer's
``kernel`` and ``bias`` are views into it) and turns the layer list into the kernels' plan:
``plan_ops`` says which ops of the plan (``fastdnn._plan``) a layer contributes.
"""

import warnings

import numpy as np

from fastdnn import _naming, _plan, _tensors, activations, initializers, regularizers

__all__ = ["Layer", "InputLayer", "Input", "Dense", "Flatten", "Dropout", "Activation", "ReLU",
           "LeakyReLU", "Softmax", "deserialize", "serialize"]

_BASE_KWARGS = ("name", "dtype", "trainable", "input_shape", "input_dim", "batch_size")


def _shape(shape, name="shape"):
    if isinstance(shape, (tuple, list)) and all(
            d is None or (isinstance(d, (int, np.integer)) and d > 0) for d in shape):
        return tuple(None if d is None else int(d) for d in shape)
    raise ValueError(f"Cannot convert '{shape}' to a shape.")


def _initializer(identifier, name):
    if identifier is None:
        raise ValueError(f"`{name}` must not be None")
    return initializers.get(identifier)


def _serialize_regularizer(regularizer):
    return None if regularizer is None else regularizers.serialize(regularizer)


def _serialize_initializer(init):
    if not isinstance(init, initializers.Initializer):
        raise ValueError(f"Cannot serialize the initializer {init!r}: only fastdnn.initializers "
                         "objects can be saved")
    return initializers.serialize(init)


def _weight_value(value, dtype, name):
    """``value`` converted to the weights' float ``dtype``; refuse what is not real numbers
    (``TypeError``) or is NaN, infinite or beyond ``dtype``'s range (``ValueError``), both
    naming ``name``."""
    value = np.asarray(value)
    if value.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be real numbers; got an array of dtype {value.dtype}")
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is refused just below
        converted = value.astype(dtype)
    if not np.all(np.isfinite(converted)):
        raise ValueError(f"{name} must be finite numbers that fit in {np.dtype(dtype).name}")
    return converted


class Layer:
    """Base class of the layers.

    Args:
        name: the layer's name: any str without '/'. Defaults to the snake_case of the class
            name made unique (``dense``, ``dense_1``, ...).
        dtype: accepted for Keras compatibility; the model's float type applies.
        trainable: Defaults to True.
        input_shape: Keras 2 style: on the first layer of a Sequential, the model's input shape
            (a warning is emitted, as Keras does).
        input_dim: ``input_dim=n`` means ``input_shape=(n,)``.
    """

    def __init__(self, **kwargs):
        unknown = {k: v for k, v in kwargs.items() if k not in _BASE_KWARGS}
        if unknown:
            raise ValueError(f"Unrecognized keyword arguments passed to {type(self).__name__}: "
                             f"{unknown}")
        self.name = _naming.check_name(kwargs.get("name"), _naming.to_snake_case(type(self).__name__))
        self.trainable = bool(kwargs.get("trainable", True))
        self._input_shape = None
        if kwargs.get("input_shape") is not None or kwargs.get("input_dim") is not None:
            warnings.warn("Do not pass an `input_shape`/`input_dim` argument to a layer. When "
                          "using Sequential models, prefer using an `Input(shape)` object as the "
                          "first layer in the model instead.", UserWarning, stacklevel=3)
            dim = kwargs.get("input_dim")
            self._input_shape = _shape(kwargs["input_shape"] if dim is None else (dim,))
        self.built = False
        self.output_shape = None
        self._weights = []
        # Set by the model that lays the weights out: what Variables and KerasTensors report.
        self._weight_names, self._variables = [], []
        self._scope = self._built_input_shape = self._dtype = None
        self._home = None  # the model whose parameter buffer holds the weights (_sharing)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        """Shape of the output, batch axis (None) included, for an input of ``input_shape``."""
        return input_shape

    def weight_shapes(self, input_shape: tuple) -> list:
        """``(name, shape)`` of each weight this layer creates for ``input_shape``."""
        return []

    def initialize(self, weights: list) -> None:
        """Fill freshly laid-out weight views with their initial values."""

    def penalty(self):
        """The regularizers' ``(kernel l1, kernel l2, bias l1, bias l2)``, or None."""
        return None

    def plan_ops(self, width: int, offsets: list) -> list:
        """The ``fastdnn._plan.Op``s of this layer for a flat input of ``width`` features, its
        weights at ``offsets`` in the parameter buffer."""
        return []

    @property
    def weights(self) -> list:
        """The layer's weights as ``Variable`` objects (``.numpy()``, ``.assign()``, ...), which
        read and write the model's parameter buffer."""
        if len(self._variables) != len(self._weights):
            self._variables = [_tensors.Variable(self, i) for i in range(len(self._weights))]
        return list(self._variables)

    @property
    def trainable_weights(self) -> list:
        """The weights, if the layer is trainable."""
        return self.weights if self.trainable else []

    @property
    def non_trainable_weights(self) -> list:
        """The weights, if the layer is not trainable."""
        return [] if self.trainable else self.weights

    @property
    def input(self):
        """A ``KerasTensor`` with the shape (batch axis None) and dtype of the layer's input.

        Raises:
            AttributeError: if no model has built the layer yet.
        """
        return self._tensor(self._built_input_shape, "input")

    @property
    def output(self):
        """A ``KerasTensor`` with the shape (batch axis None) and dtype of the layer's output.

        Raises:
            AttributeError: if no model has built the layer yet.
        """
        return self._tensor(self.output_shape if self.built else None, "output")

    def _tensor(self, shape, what):
        if shape is None:
            raise AttributeError(f"The layer {self.name} has never been called and thus has no "
                                 f"defined {what}.")
        return _tensors.KerasTensor(shape, self._dtype or "float32")

    def get_weights(self) -> list:
        """Return copies of the weights (kernel, then bias)."""
        return [w.copy() for w in self._weights]

    def set_weights(self, weights) -> None:
        """Set the weights from a list of arrays of the right shapes.

        Raises:
            TypeError: for values that are not real numbers (complex, dates, text).
            ValueError: for a wrong count, a wrong shape, or a value that is NaN, infinite or
                beyond the weights' float type.
        """
        weights = list(weights)
        if len(weights) != len(self._weights):
            raise ValueError(f"Layer {self.name} expects {len(self._weights)} weights, "
                             f"but received {len(weights)}")
        arrays = []
        for mine, new in zip(self._weights, weights):
            new = np.asarray(new)
            if mine.shape != new.shape:
                raise ValueError(f"Layer {self.name} weight shape {mine.shape} is not compatible "
                                 f"with provided weight shape {new.shape}")
            arrays.append(_weight_value(new, mine.dtype, f"Layer {self.name}: weights"))
        for mine, new in zip(self._weights, arrays):
            mine[...] = new

    def count_params(self) -> int:
        """Number of weight elements."""
        return sum(w.size for w in self._weights)

    def get_config(self) -> dict:
        """Return the constructor arguments."""
        return {"name": self.name, "trainable": self.trainable}

    @classmethod
    def from_config(cls, config: dict) -> "Layer":
        """Create a layer from ``get_config()``'s output."""
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}, built={self.built}>"


class InputLayer(Layer):
    """The input of a model: its shape, without the batch axis.

    Not listed in ``model.layers`` nor in ``summary()``, as in Keras.

    Args:
        shape: tuple of the input's dimensions, e.g. ``(28, 28)``.
        batch_size: accepted for Keras compatibility.
        dtype: accepted for Keras compatibility.
        batch_shape: ``(batch,) + shape``, as an alternative to ``shape``.
        input_shape: deprecated alias of ``shape`` (warns).
        name: Defaults to ``input_layer``, made unique.
    """

    def __init__(self, shape=None, batch_size=None, dtype=None, batch_shape=None, name=None,
                 input_shape=None, **kwargs):
        if input_shape is not None:
            warnings.warn("Argument `input_shape` is deprecated. Use `shape` instead.",
                          UserWarning, stacklevel=2)
            shape = input_shape
        if shape is None and batch_shape is not None:
            shape = tuple(batch_shape)[1:]
        if shape is None:
            raise ValueError("You must pass a `shape` argument.")
        super().__init__(name=name, **kwargs)
        self.shape = _shape(shape)
        self.output_shape = (None,) + self.shape
        self.built = True

    def get_config(self):
        return {"name": self.name, "shape": list(self.shape)}


def Input(shape=None, batch_size=None, dtype=None, batch_shape=None, name=None):  # noqa: N802
    """Declare a model's input, as ``keras.Input``: put it first in a ``Sequential``.

    Args:
        shape: tuple of the input's dimensions without the batch axis, e.g. ``(784,)``.
        batch_size: accepted for Keras compatibility.
        dtype: accepted for Keras compatibility.
        batch_shape: ``(batch,) + shape``, as an alternative to ``shape``.
        name: Defaults to ``input_layer``, made unique.

    Returns:
        An ``InputLayer`` (fastdnn has no symbolic tensors: only Sequential models).
    """
    return InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, batch_shape=batch_shape,
                      name=name)


class Dense(Layer):
    """A densely-connected layer: ``output = activation(input @ kernel + bias)``.

    Args:
        units: positive int, the output width.
        activation: a name of ``fastdnn.activations.ALL`` ('relu', 'gelu', ...), None
            (linear) or one of that module's functions. Defaults to None.
        use_bias: Defaults to True.
        kernel_initializer: a name (``'he_normal'``, ...), an object of
            ``fastdnn.initializers`` or a callable ``f(shape, dtype)``. Defaults to
            ``'glorot_uniform'``.
        bias_initializer: as kernel_initializer. Defaults to ``'zeros'``.
        kernel_regularizer: None, a ``fastdnn.regularizers`` object or name (``'l2'``, ...):
            its penalty of the kernel joins the loss. Defaults to None.
        bias_regularizer: as kernel_regularizer, for the bias. Defaults to None.
        activity_regularizer, kernel_constraint, bias_constraint: only None.
        **kwargs: base-layer arguments (``name``, ``trainable``, ``input_shape``, ...).
    """

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, bias_constraint=None,
                 **kwargs):
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units < 1:
            raise ValueError("Received an invalid value for `units`, expected a positive "
                             f"integer. Received: units={units}")
        for name, value in (("activity_regularizer", activity_regularizer),
                            ("kernel_constraint", kernel_constraint),
                            ("bias_constraint", bias_constraint)):
            if value is not None:
                raise NotImplementedError(f"fastdnn's Dense does not support `{name}`")
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        super().__init__(**kwargs)
        self.units = int(units)
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        # Created now: an unseeded initializer draws its seed at construction, as in Keras, but
        # from fastdnn's own stream (see _random).
        self.kernel_initializer = _initializer(kernel_initializer, "kernel_initializer")
        self.bias_initializer = _initializer(bias_initializer, "bias_initializer")

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(f"fastdnn's Dense needs a flat input (batch, features); layer "
                             f"{self.name} got shape {input_shape}. Add a Flatten() layer first.")
        return (input_shape[0], self.units)

    def weight_shapes(self, input_shape):
        shapes = [("kernel", (input_shape[-1], self.units))]
        return shapes + [("bias", (self.units,))] if self.use_bias else shapes

    def initialize(self, weights):
        for w, init in zip(weights, (self.kernel_initializer, self.bias_initializer)):
            values = np.asarray(init(w.shape, w.dtype))
            if values.shape != w.shape or not np.all(np.isfinite(values)):
                raise ValueError(f"Layer {self.name}: the initializer {init!r} must return finite "
                                 f"values of shape {w.shape}, got shape {values.shape}")
            w[...] = values

    @property
    def kernel(self):
        """The kernel ``Variable``, shape (input width, units)."""
        return self.weights[0]

    @property
    def bias(self):
        """The bias ``Variable``, shape (units,), or None without bias."""
        return self.weights[1] if self.use_bias else None

    def penalty(self):
        """``(kernel l1, kernel l2, bias l1, bias l2)`` of the regularizers, or None."""
        if self.kernel_regularizer is None and self.bias_regularizer is None:
            return None
        bias = self.bias_regularizer if self.use_bias else None
        return tuple(float(getattr(reg, name, 0.0)) if reg is not None else 0.0
                     for reg in (self.kernel_regularizer, bias) for name in ("l1", "l2"))

    def plan_ops(self, width, offsets):
        return _plan.dense(self.units, self.activation, offsets[0],
                           offsets[1] if self.use_bias else -1)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": self.activation,
                "use_bias": self.use_bias,
                "kernel_initializer": _serialize_initializer(self.kernel_initializer),
                "bias_initializer": _serialize_initializer(self.bias_initializer),
                "kernel_regularizer": _serialize_regularizer(self.kernel_regularizer),
                "bias_regularizer": _serialize_regularizer(self.bias_regularizer)}


class Flatten(Layer):
    """Flattens everything but the batch axis: ``(None, 28, 28)`` → ``(None, 784)``.

    Args:
        data_format: only None or ``'channels_last'`` is supported.
        **kwargs: base-layer arguments.
    """

    def __init__(self, data_format=None, **kwargs):
        if data_format not in (None, "channels_last"):
            raise NotImplementedError("fastdnn's Flatten supports channels_last only")
        super().__init__(**kwargs)

    def compute_output_shape(self, input_shape):
        rest = input_shape[1:]
        size = None if any(d is None for d in rest) else int(np.prod(rest, dtype=np.int64))
        return (input_shape[0], size)


class Dropout(Layer):
    """Inverted dropout, active only in ``fit``: each input is kept with probability
    ``1 - rate`` and scaled by ``1 / (1 - rate)``.

    Args:
        rate: float in [0, 1], the fraction dropped.
        noise_shape: not supported; must be None.
        seed: accepted for Keras compatibility (masks derive from the model's generator).
        **kwargs: base-layer arguments.
    """

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        if isinstance(rate, bool) or not isinstance(rate, (int, float, np.floating)) \
                or not 0 <= rate <= 1:
            raise ValueError("Invalid value received for argument `rate`. Expected a float "
                             f"value between 0 and 1. Received: rate={rate}")
        if noise_shape is not None:
            raise NotImplementedError("fastdnn's Dropout does not support noise_shape")
        super().__init__(**kwargs)
        self.rate = float(rate)
        self.seed = seed

    def plan_ops(self, width, offsets):
        return [_plan.dropout(width, self.rate)] if self.rate > 0 else []

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


class Activation(Layer):
    """Applies an activation function.

    Args:
        activation: a name of ``fastdnn.activations.ALL`` or one of that module's functions.
        **kwargs: base-layer arguments.
    """

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = activations.get(activation)

    def plan_ops(self, width, offsets):
        if self.activation == "linear":
            return []
        return [_plan.activation(width, self.activation)]

    def get_config(self):
        return {**super().get_config(), "activation": self.activation}


class ReLU(Activation):
    """Rectified linear unit ``max(x, 0)``.

    Args:
        max_value: only None is supported.
        negative_slope: only 0.0 is supported.
        threshold: only 0.0 is supported.
        **kwargs: base-layer arguments.
    """

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, **kwargs):
        if max_value is not None and max_value < 0:
            raise ValueError(f"max_value of a ReLU layer cannot be a negative value. Received: "
                             f"{max_value}")
        if negative_slope is None or negative_slope < 0 or threshold is None or threshold < 0:
            raise ValueError("negative_slope and threshold of a ReLU layer must be non-negative "
                             f"numbers. Received: {negative_slope}, {threshold}")
        if max_value is not None or negative_slope != 0 or threshold != 0:
            raise NotImplementedError("fastdnn's ReLU supports the default max(x, 0) only")
        super().__init__("relu", **kwargs)

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable}


class LeakyReLU(Activation):
    """Leaky rectified linear unit: ``x`` if ``x >= 0``, else ``negative_slope * x``.

    Args:
        negative_slope: float >= 0. Defaults to 0.3 (Keras' layer default; the
            ``leaky_relu`` activation's is 0.2).
        **kwargs: base-layer arguments.
    """

    def __init__(self, negative_slope=0.3, **kwargs):
        if "alpha" in kwargs:
            raise ValueError("Argument `alpha` is no longer supported. Use `negative_slope` "
                             "instead.")
        if negative_slope is None or isinstance(negative_slope, bool) or not isinstance(
                negative_slope, (int, float, np.integer, np.floating)) or not negative_slope >= 0 \
                or not np.isfinite(negative_slope):
            raise ValueError("The negative_slope value of a Leaky ReLU layer cannot be None or "
                             "negative value. Expected a float. Received: "
                             f"negative_slope={negative_slope}")
        super().__init__("leaky_relu", **kwargs)
        self.negative_slope = float(negative_slope)

    def plan_ops(self, width, offsets):
        return [_plan.activation(width, "leaky_relu", self.negative_slope)]

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable,
                "negative_slope": self.negative_slope}


class Softmax(Activation):
    """Softmax over the last axis.

    Args:
        axis: only -1 (the default) is supported.
        **kwargs: base-layer arguments.
    """

    def __init__(self, axis=-1, **kwargs):
        if axis != -1:
            raise NotImplementedError("fastdnn's Softmax works on the last axis only")
        super().__init__("softmax", **kwargs)

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable}


ALL = {cls.__name__: cls for cls in (InputLayer, Dense, Flatten, Dropout, Activation, ReLU, LeakyReLU,
                                     Softmax)}


def deserialize(config: dict) -> Layer:
    """Rebuild a layer from ``{'class_name': ..., 'config': ...}``."""
    if config.get("class_name") not in ALL:
        raise ValueError(f"Unknown layer class {config.get('class_name')!r}")
    return ALL[config["class_name"]].from_config(config["config"])


def serialize(layer: Layer) -> dict:
    """Return ``{'class_name': ..., 'config': ...}`` for a layer."""
    return {"class_name": type(layer).__name__, "config": layer.get_config()}
