"""Layers, as in ``keras.layers``: shapes, parameters and configuration only.

A layer computes nothing itself. The model lays every weight out in one flat buffer (a layer's
``kernel`` and ``bias`` are views into it) and turns the layer list into the kernels' plan:
``plan_ops`` says which ops of the plan (``fastdnn._plan``) a layer contributes.
"""

import numbers
import warnings

import numpy as np

from fastdnn import _naming, _plan, _tensors, activations, config, initializers, regularizers

__all__ = ["Layer", "InputLayer", "Input", "Dense", "Flatten", "Dropout", "Activation", "ReLU",
           "LeakyReLU", "Softmax", "BatchNormalization", "Normalization", "deserialize",
           "serialize"]

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


def _initialize(layer, weights, inits):
    """Fill each of ``weights`` with its initializer's values, refusing a wrong shape or a
    non-finite value."""
    for w, init in zip(weights, inits):
        values = np.asarray(init(w.shape, w.dtype))
        if values.shape != w.shape or not np.all(np.isfinite(values)):
            raise ValueError(f"Layer {layer.name}: the initializer {init!r} must return finite "
                             f"values of shape {w.shape}, got shape {values.shape}")
        w[...] = values


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

    A subclass lists in ``_untrained_weights`` the names of the weights no optimizer steps
    (moving statistics, adapted means): they are never in ``trainable_weights``.

    Args:
        name: the layer's name: any str without '/'. Defaults to the snake_case of the class
            name made unique (``dense``, ``dense_1``, ...).
        dtype: accepted for Keras compatibility; the model's float type applies.
        trainable: Defaults to True.
        input_shape: Keras 2 style: on the first layer of a Sequential, the model's input shape
            (a warning is emitted, as Keras does).
        input_dim: ``input_dim=n`` means ``input_shape=(n,)``.
    """

    _untrained_weights = ()

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

    def normalization(self):
        """A (batch) normalization's ``(momentum, epsilon)`` for its kernel op, or None."""
        return None

    def activity(self):
        """The activity regularizer's ``(l1, l2)`` on the layer's output, or None."""
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
    def variables(self) -> list:
        """The layer's state, as Keras 3's ``variables``: its weights (fastdnn's layers hold
        no other variables)."""
        return self.weights

    @property
    def trainable_weights(self) -> list:
        """The weights the optimizer steps: none if the layer is not trainable."""
        return [w for w in self.weights if w.trainable]

    @property
    def non_trainable_weights(self) -> list:
        """The other weights (all of them if the layer is not trainable)."""
        return [w for w in self.weights if not w.trainable]

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
        activity_regularizer: as kernel_regularizer, on the layer's output: each batch's loss
            gets its penalty divided by the batch size, as Keras 3. Not on an output layer
            whose softmax or sigmoid folds into a cross-entropy. Defaults to None.
        kernel_constraint, bias_constraint: only None.
        **kwargs: base-layer arguments (``name``, ``trainable``, ``input_shape``, ...).
    """

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, bias_constraint=None,
                 **kwargs):
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units < 1:
            raise ValueError("Received an invalid value for `units`, expected a positive "
                             f"integer. Received: units={units}")
        for name, value in (("kernel_constraint", kernel_constraint),
                            ("bias_constraint", bias_constraint)):
            if value is not None:
                raise NotImplementedError(f"fastdnn's Dense does not support `{name}`")
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.activity_regularizer = regularizers.get(activity_regularizer)
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
        _initialize(self, weights, (self.kernel_initializer, self.bias_initializer))

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

    def activity(self):
        """``(l1, l2)`` of the activity regularizer, or None."""
        reg = self.activity_regularizer
        return None if reg is None else (float(reg.l1), float(reg.l2))

    def plan_ops(self, width, offsets):
        return _plan.dense(self.units, self.activation, offsets[0],
                           offsets[1] if self.use_bias else -1)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": self.activation,
                "use_bias": self.use_bias,
                "kernel_initializer": _serialize_initializer(self.kernel_initializer),
                "bias_initializer": _serialize_initializer(self.bias_initializer),
                "kernel_regularizer": _serialize_regularizer(self.kernel_regularizer),
                "bias_regularizer": _serialize_regularizer(self.bias_regularizer),
                **({"activity_regularizer": _serialize_regularizer(self.activity_regularizer)}
                   if self.activity_regularizer is not None else {})}


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


def _flat_features(layer, input_shape, axis):
    """The feature count of a flat input (batch, features), normalized along ``axis`` (-1 or
    1); refuse anything else."""
    if len(input_shape) != 2 or axis not in (-1, 1):
        raise NotImplementedError(f"fastdnn's {type(layer).__name__} normalizes the features of "
                                  f"a flat input (batch, features) along axis -1; layer "
                                  f"{layer.name} got shape {input_shape} and axis {axis}. Add a "
                                  "Flatten() layer first.")
    if input_shape[1] is None:
        raise ValueError(f"Layer {layer.name} needs a known number of features, got shape "
                         f"{input_shape}")
    return input_shape[1]


class BatchNormalization(Layer):
    """Normalizes its inputs, as ``keras.layers.BatchNormalization``, on flat inputs (batch,
    features).

    In ``fit`` it normalizes each feature with the batch's mean and (biased) variance,
    ``gamma * (x - mean) / sqrt(var + epsilon) + beta``, trains gamma and beta like any weight,
    and updates ``moving = moving * momentum + batch statistic * (1 - momentum)``. In
    ``evaluate``, ``predict`` and ``model(x)``, and when the layer is not trainable (as in
    Keras 3), it uses moving_mean and moving_variance instead.

    Args:
        axis: the features' axis: only -1 (or 1). Defaults to -1.
        momentum: float in [0, 1] for the moving averages. Defaults to 0.99.
        epsilon: float > 0 added to the variance. Defaults to 1e-3.
        center: learn an offset beta. Defaults to True.
        scale: learn a scale gamma. Defaults to True.
        beta_initializer: Defaults to ``'zeros'``.
        gamma_initializer: Defaults to ``'ones'``.
        moving_mean_initializer: Defaults to ``'zeros'``.
        moving_variance_initializer: Defaults to ``'ones'``.
        beta_regularizer, gamma_regularizer, beta_constraint, gamma_constraint: only None.
        renorm: only False. renorm_clipping: only None. renorm_momentum: accepted.
        synchronized: only False.
        **kwargs: base-layer arguments (``name``, ``trainable``, ...).
    """

    _untrained_weights = ("moving_mean", "moving_variance")

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones",
                 moving_mean_initializer="zeros", moving_variance_initializer="ones",
                 beta_regularizer=None, gamma_regularizer=None, beta_constraint=None,
                 gamma_constraint=None, renorm=False, renorm_clipping=None, renorm_momentum=0.99,
                 synchronized=False, **kwargs):
        for name, value, default in (("beta_regularizer", beta_regularizer, None),
                                     ("gamma_regularizer", gamma_regularizer, None),
                                     ("beta_constraint", beta_constraint, None),
                                     ("gamma_constraint", gamma_constraint, None),
                                     ("renorm", renorm, False),
                                     ("renorm_clipping", renorm_clipping, None),
                                     ("synchronized", synchronized, False)):
            if value != default:
                raise NotImplementedError(f"fastdnn's BatchNormalization does not support "
                                          f"`{name}`")
        if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real) or not \
                0 <= momentum <= 1:
            raise ValueError(f"`momentum` must be a number in [0, 1]. Received: "
                             f"momentum={momentum!r}")
        if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real) or not \
                0 < epsilon < float("inf"):
            raise ValueError(f"`epsilon` must be a positive number. Received: epsilon={epsilon!r}")
        super().__init__(**kwargs)
        self.axis = int(axis)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.renorm_momentum = renorm_momentum
        self.beta_initializer = _initializer(beta_initializer, "beta_initializer")
        self.gamma_initializer = _initializer(gamma_initializer, "gamma_initializer")
        self.moving_mean_initializer = _initializer(moving_mean_initializer,
                                                    "moving_mean_initializer")
        self.moving_variance_initializer = _initializer(moving_variance_initializer,
                                                        "moving_variance_initializer")

    def compute_output_shape(self, input_shape):
        _flat_features(self, input_shape, self.axis)
        return input_shape

    def _initializers(self):
        """``(name, initializer)`` of each weight, in Keras' order."""
        named = [("gamma", self.gamma_initializer)] if self.scale else []
        named += [("beta", self.beta_initializer)] if self.center else []
        return named + [("moving_mean", self.moving_mean_initializer),
                        ("moving_variance", self.moving_variance_initializer)]

    def weight_shapes(self, input_shape):
        features = _flat_features(self, input_shape, self.axis)
        return [(name, (features,)) for name, _ in self._initializers()]

    def initialize(self, weights):
        _initialize(self, weights, [init for _, init in self._initializers()])

    def _weight(self, name):
        names = [n for n, _ in self._initializers()]
        return self.weights[names.index(name)] if name in names else None

    gamma = property(lambda self: self._weight("gamma"),
                     doc="The scale ``Variable`` (None with ``scale=False``).")
    beta = property(lambda self: self._weight("beta"),
                    doc="The offset ``Variable`` (None with ``center=False``).")
    moving_mean = property(lambda self: self._weight("moving_mean"),
                           doc="The moving mean ``Variable``, used at inference.")
    moving_variance = property(lambda self: self._weight("moving_variance"),
                               doc="The moving variance ``Variable``, used at inference.")

    def normalization(self):
        return (self.momentum, self.epsilon)

    def plan_ops(self, width, offsets):
        return [_plan.batch_normalization(width, self.scale, self.center, offsets[0])]

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "momentum": self.momentum,
                "epsilon": self.epsilon, "center": self.center, "scale": self.scale,
                "beta_initializer": _serialize_initializer(self.beta_initializer),
                "gamma_initializer": _serialize_initializer(self.gamma_initializer),
                "moving_mean_initializer": _serialize_initializer(self.moving_mean_initializer),
                "moving_variance_initializer": _serialize_initializer(
                    self.moving_variance_initializer),
                "beta_regularizer": None, "gamma_regularizer": None, "beta_constraint": None,
                "gamma_constraint": None, "synchronized": False, "renorm": False,
                "renorm_clipping": None, "renorm_momentum": self.renorm_momentum}


class Normalization(Layer):
    """Standardizes features with a mean and variance computed by ``adapt``, as
    ``keras.layers.Normalization``, on flat inputs (batch, features):
    ``(x - mean) / max(sqrt(variance), epsilon)``, epsilon being ``fastdnn.config.epsilon()``.

    Its weights ``mean``, ``variance`` and ``count`` are non-trainable; before ``adapt`` they
    are zeros, ones and 0, so the layer passes its input through (as Keras 3's does).

    Args:
        axis: the features' axis: only -1 (or 1, or ``(-1,)``). Defaults to -1.
        mean, variance: only None (use ``adapt``).
        invert: apply the inverse, ``mean + x * max(sqrt(variance), epsilon)``. Defaults to
            False.
        **kwargs: base-layer arguments (``name``, ``input_shape``, ...).

    Example:
        >>> norm_layer = keras.layers.Normalization()
        >>> model = keras.Sequential([keras.Input((8,)), norm_layer, keras.layers.Dense(1)])
        >>> norm_layer.adapt(X_train)
    """

    _untrained_weights = ("mean", "variance", "count")
    _integer_weights = ("count",)

    def __init__(self, axis=-1, mean=None, variance=None, invert=False, **kwargs):
        if mean is not None or variance is not None:
            if (mean is None) != (variance is None):
                raise ValueError("When setting values directly, both `mean` and `variance` "
                                 f"must be set. Received: mean={mean} and variance={variance}")
            raise NotImplementedError("fastdnn's Normalization takes its mean and variance from "
                                      "adapt(data), not from arguments")
        axes = tuple(axis) if isinstance(axis, (tuple, list)) else (axis,)
        if len(axes) != 1 or isinstance(axes[0], bool) or not isinstance(axes[0], (int, np.integer)):
            raise NotImplementedError(f"fastdnn's Normalization normalizes along one axis, -1; "
                                      f"got axis={axis!r}")
        super().__init__(**kwargs)
        self.axis = (int(axes[0]),)
        self.invert = bool(invert)

    def compute_output_shape(self, input_shape):
        _flat_features(self, input_shape, self.axis[0])
        return input_shape

    def weight_shapes(self, input_shape):
        features = _flat_features(self, input_shape, self.axis[0])
        return [("mean", (features,)), ("variance", (features,)), ("count", ())]

    def initialize(self, weights):
        weights[0][...], weights[1][...], weights[2][...] = 0, 1, 0

    @property
    def mean(self):
        """The mean ``Variable`` (None before the layer is built or adapted)."""
        return self.weights[0] if self._weights else None

    @property
    def variance(self):
        """The variance ``Variable`` (None before the layer is built or adapted)."""
        return self.weights[1] if self._weights else None

    def adapt(self, data) -> None:
        """Set ``mean`` and ``variance`` to each feature's mean and (biased) variance over
        ``data``, as Keras: ``np.mean(data, axis=0)``, ``np.var(data, axis=0)``.

        Args:
            data: an array (samples, features) (or anything with ``__array__``, such as a
                DataFrame), or an iterable of such batches (combined as Keras does: a running
                mean and a lack-of-fit variance).

        Raises:
            ValueError: for data of another feature count than the layer was built for, empty,
                not numbers, or not finite.
        """
        one = hasattr(data, "__array__") or hasattr(data, "shape") or not hasattr(data, "__iter__")
        batches = [data] if one else list(data)  # an array (or DataFrame), or its batches
        if not batches:
            raise ValueError("adapt() received an empty iterable (no batches). Expected at "
                             "least one batch.")
        arrays = []
        for batch in batches:
            batch = np.asarray(batch)
            if batch.dtype.kind not in "biuf":
                raise ValueError(f"adapt() needs real numbers; got an array of dtype {batch.dtype}")
            if batch.ndim != 2 or batch.shape[0] == 0:
                raise NotImplementedError(f"fastdnn's Normalization adapts to flat data (samples, "
                                          f"features); got shape {batch.shape}")
            if not np.all(np.isfinite(batch)):
                raise ValueError("adapt() needs finite data: it holds NaN or infinite values")
            arrays.append(batch)
        features = self._weights[0].shape[0] if self._weights else arrays[0].shape[1]
        bad = [a.shape for a in arrays if a.shape[1] != features]
        if bad:
            raise ValueError(f"The layer was built with input_shape=(None, {features}), but "
                             "adapt() is being called with data with an incompatible shape, "
                             f"data.shape={bad[0]}")
        if len(arrays) == 1:
            mean, var = np.mean(arrays[0], axis=0), np.var(arrays[0], axis=0)
        else:
            mean, var, count = np.zeros(features), np.zeros(features), 0
            for batch in arrays:
                count += batch.shape[0]
                weight = batch.shape[0] / count
                new_mean = mean * (1 - weight) + batch.mean(axis=0) * weight
                var = ((var + (mean - new_mean) ** 2) * (1 - weight)
                       + (batch.var(axis=0) + (batch.mean(axis=0) - new_mean) ** 2) * weight)
                mean = new_mean
        if not self._weights:  # not in a model yet: the model copies these when it lays out
            dtype = config._dtype()
            self._weights = [np.zeros(features, dtype), np.ones(features, dtype),
                             np.zeros((), dtype)]
            self._weight_names = ["mean", "variance", "count"]
            self._built_input_shape = (None, features)
            self.output_shape = (None, features)
            self.built = True
        dtype = self._weights[0].dtype
        values = [_weight_value(v, dtype, f"Layer {self.name}: adapt") for v in (mean, var)]
        self._weights[0][...], self._weights[1][...] = values

    def normalization(self):
        return (0.0, config.epsilon())

    def plan_ops(self, width, offsets):
        return [_plan.normalization(width, self.invert, offsets[0])]

    def get_config(self):
        return {**super().get_config(), "axis": list(self.axis), "invert": self.invert,
                "mean": None, "variance": None}


ALL = {cls.__name__: cls for cls in (InputLayer, Dense, Flatten, Dropout, Activation, ReLU, LeakyReLU,
                                     Softmax, BatchNormalization, Normalization)}


def deserialize(config: dict) -> Layer:
    """Rebuild a layer from ``{'class_name': ..., 'config': ...}``."""
    if config.get("class_name") not in ALL:
        raise ValueError(f"Unknown layer class {config.get('class_name')!r}")
    return ALL[config["class_name"]].from_config(config["config"])


def serialize(layer: Layer) -> dict:
    """Return ``{'class_name': ..., 'config': ...}`` for a layer."""
    return {"class_name": type(layer).__name__, "config": layer.get_config()}
