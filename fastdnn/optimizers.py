"""Optimizers, as in ``keras.optimizers``: hyper-parameters, slots, state.

An optimizer here only describes the update; the kernels apply it in place, one fused pass over
the flat parameter buffer, each dense layer stepping its own weights during the backward pass as
soon as it has used them (``fastdnn._kernels``, sections optimizers and dense layer). What the
kernels read is ``settings()``, an ``OptimizerConfig`` checked once per change of a
hyper-parameter. The slots (velocity, moments, ...) live in one ``(n_slots, n_params)`` array, in
Keras' order, as ``fastdnn._kernels.SLOT_LAYOUT`` lays them out.
"""

import sys
import warnings

import numpy as np

from fastdnn import _naming, schedules
from fastdnn._kernels import OptimizerConfig, nadam_u_product

__all__ = ["Optimizer", "SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "Nadam", "Adamax", "get"]

# ``from fastdnn.optimizers.schedules import ExponentialDecay`` works, as with Keras
sys.modules[__name__ + ".schedules"] = schedules

_SHARED = {"weight_decay": None, "clipnorm": None, "clipvalue": None, "global_clipnorm": None,
           "use_ema": False, "ema_momentum": 0.99, "ema_overwrite_frequency": None,
           "loss_scale_factor": None, "gradient_accumulation_steps": None}
# the shared options fastdnn supports (None: off)
_OPTIONS = ("weight_decay", "clipnorm", "clipvalue", "global_clipnorm")


def _rate(name, value):
    """Check a non-negative finite real hyper-parameter (ints and NumPy floats are accepted)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"Argument `{name}` should be float. Received: {name}={value!r} "
                         f"(of type {type(value)})")
    value = float(value)
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"Argument `{name}` must be a finite number >= 0. Received: {value}")
    return value


def _fraction(name, value):
    """Check a decay factor in [0, 1) (Adam's betas, RMSprop's rho): at 1 or beyond, the running
    averages stop averaging or grow without bound."""
    value = _rate(name, value)
    if value >= 1:
        raise ValueError(f"Argument `{name}` must be in [0, 1). Received: {name}={value}")
    return value


def _sgd_momentum(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) \
            or not 0 <= value <= 1:
        raise ValueError("`momentum` must be a float between [0, 1].")
    return float(value)


class Optimizer:
    """Base class: the iteration counter, the learning rate, the slots, and the shared options.

    Hyper-parameters are checked wherever they are set, in the constructor or by assignment
    (``ValueError`` for a value out of range: Keras accepts some that make training diverge).

    Args:
        learning_rate: step size: a non-negative float, a ``fastdnn.optimizers.schedules``
            schedule (evaluated at every step, at ``iterations``), or a callable without
            arguments returning the rate.
        name: Defaults to the snake_case of the class name, made unique (``adam``, ``adam_1``).
        **kwargs: Keras' shared options. Supported: ``weight_decay`` (decoupled: every step
            first does ``w -= w·weight_decay·lr`` on each trainable weight, biases included),
            ``clipvalue`` (each gradient element clipped to [-clipvalue, clipvalue]),
            ``clipnorm`` (each variable's gradient, a kernel or a bias, scaled to an L2 norm of
            at most clipnorm) and ``global_clipnorm`` (all trainable gradients scaled together
            to a global L2 norm of at most global_clipnorm), at most one of the three clips;
            the others only at their defaults. ``decay`` is ignored with a warning as in Keras.
    """

    kind = ""
    # hyper-parameter -> its check, applied wherever it is set (constructor or assignment)
    _checks = {}
    # the hyper-parameters the kernels read besides the shared ones (OptimizerConfig's arguments)
    _settings = ()
    _config = None  # settings(), made again after any assignment

    def __setattr__(self, name, value):
        check = self._checks.get(name)
        super().__setattr__(name, check(name, value) if check is not None else value)
        if name != "slots":
            super().__setattr__("_config", None)

    def __init__(self, learning_rate, name=None, **kwargs):
        if "decay" in kwargs:
            kwargs.pop("decay")
            warnings.warn("Argument `decay` is no longer supported and will be ignored.")
        unknown = {k: v for k, v in kwargs.items() if k not in _SHARED}
        if unknown:
            raise ValueError(f"Argument(s) not recognized: {unknown}")
        clips = {k: kwargs.get(k) for k in ("clipnorm", "clipvalue", "global_clipnorm")}
        if sum(v is not None for v in clips.values()) > 1:
            raise ValueError("Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be "
                             f"set. Received: {', '.join(f'{k}={v}' for k, v in clips.items())}")
        for option in _OPTIONS:
            value = kwargs.pop(option, None)
            setattr(self, option, None if value is None else _rate(option, value))
        unsupported = {k: v for k, v in kwargs.items() if v != _SHARED[k]}
        if unsupported:
            raise NotImplementedError(f"fastdnn optimizers do not support {unsupported}")
        # the step counter, IN/OUT for the kernels: they advance it with the steps they apply
        self.iteration_buffer = np.zeros(1, np.int64)
        self._set_initial_learning_rate(learning_rate)
        self.name = _naming.check_name(name, _naming.to_snake_case(type(self).__name__))
        self.slots = None

    @property
    def iterations(self) -> int:
        """Steps applied so far (settable, e.g. to resume: an int in [0, 2**62])."""
        return int(self.iteration_buffer[0])

    @iterations.setter
    def iterations(self, value):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or \
                not 0 <= value <= 2**62:
            raise ValueError(f"`iterations` must be an integer in [0, 2**62]. Received: {value!r}")
        self.iteration_buffer[0] = value

    @property
    def learning_rate(self) -> float:
        """The learning rate of the next step (settable, e.g. ``opt.learning_rate = 0.5``,
        unless the optimizer was created with a schedule)."""
        return self._current_learning_rate()

    @learning_rate.setter
    def learning_rate(self, value):
        if getattr(self, "_schedule", None) is not None:
            raise TypeError("This optimizer was created with a `LearningRateSchedule` object as "
                            "its `learning_rate` constructor argument, hence its learning rate "
                            "is not settable. If you need the learning rate to be settable, you "
                            "should instantiate the optimizer with a float `learning_rate` "
                            "argument.")
        self._learning_rate = _rate("learning_rate", value)

    def _set_initial_learning_rate(self, value):
        """Take a constructor's ``learning_rate``: a rate, a schedule or a callable."""
        self._schedule = None
        if isinstance(value, dict):
            value = schedules.deserialize(value)
        if isinstance(value, schedules.LearningRateSchedule) or (
                callable(value) and not isinstance(value, (int, float, np.number))):
            self._schedule = value
        else:
            self.learning_rate = value

    def _current_learning_rate(self) -> float:
        if self._schedule is None:
            return self._learning_rate
        if isinstance(self._schedule, schedules.LearningRateSchedule):
            return float(self._schedule(self.iterations))
        return float(self._schedule())

    def steps_in_python(self) -> bool:
        """Whether the learning rate comes from Python code that must run before every step
        (a schedule of your own, a callable), so that ``fit`` calls the kernels batch by batch."""
        schedule = self._schedule
        return schedule is not None and (not isinstance(schedule, schedules.LearningRateSchedule)
                                         or schedule.kernel_spec() is None)

    def serialized_learning_rate(self):
        """The learning rate as saved: the exact float, or the schedule's ``serialize`` dict."""
        if self._schedule is None:
            return self._learning_rate
        if isinstance(self._schedule, schedules.LearningRateSchedule):
            return schedules.serialize(self._schedule)
        raise ValueError(f"Cannot save optimizer {self.name}: its learning rate is a callable")

    def slot_names(self) -> list:
        """Names of the slots Keras creates for these settings, in order."""
        return list(self.settings().slot_names)

    def build(self, n_params: int, dtype) -> None:
        """Create the slots for ``n_params`` parameters (kept if they already fit)."""
        shape = (len(self.slot_names()), n_params)
        if self.slots is None or self.slots.shape != shape or self.slots.dtype != dtype:
            self.slots = np.zeros(shape, dtype)
            self._init_slots()

    def _init_slots(self):
        pass

    @property
    def built(self) -> bool:
        """Whether the slots exist (after the first ``fit``)."""
        return self.slots is not None

    def variable_count(self, trainable: int) -> int:
        """Keras' count of optimizer variables (as ``summary()`` shows them): iteration,
        learning rate, the slots of the ``trainable`` trainable parameters (Keras makes none
        for frozen weights), and any scalar state (Nadam's)."""
        return 2 + len(self.slot_names()) * trainable + len(self.scalar_state())

    def scalar_state(self) -> list:
        """Keras' optimizer variables after the slots, as ``(name, value)`` (Nadam's product
        of momentum caches): fastdnn derives them from ``iterations``."""
        return []

    def settings(self) -> OptimizerConfig:
        """The hyper-parameters as the kernels read them, an ``OptimizerConfig`` made once per
        change (a built-in schedule as its ``kernel_spec()``, evaluated by the kernels at every
        step; a learning rate computed in Python is read anew at every call)."""
        if self._config is not None:
            return self._config
        spec = None
        if isinstance(self._schedule, schedules.LearningRateSchedule):
            spec = self._schedule.kernel_spec()
        config = OptimizerConfig(
            self.kind, learning_rate=self.learning_rate, schedule=spec,
            **{k: getattr(self, k) or 0.0 for k in _OPTIONS},
            **{k: getattr(self, k) for k in self._settings})
        if not self.steps_in_python():
            super().__setattr__("_config", config)
        return config

    def get_config(self) -> dict:
        """Return the constructor arguments (the learning rate rounded to float32, as Keras,
        or the schedule's ``serialize`` dict; weight_decay and the clips when set)."""
        rate = self.serialized_learning_rate()
        options = {k: getattr(self, k) for k in _OPTIONS if getattr(self, k) is not None}
        return {"name": self.name,
                "learning_rate": rate if isinstance(rate, dict) else float(np.float32(rate)),
                **options, **{k: getattr(self, k) for k in self._settings}}

    @classmethod
    def from_config(cls, config: dict) -> "Optimizer":
        """Create an optimizer from ``get_config()``'s output."""
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}>"


class SGD(Optimizer):
    """Gradient descent, with optional (Nesterov) momentum.

    ``w -= lr·g``; with momentum ``v = momentum·v - lr·g``, then ``w += v``, or with Nesterov
    ``w += momentum·v - lr·g``.

    Args:
        learning_rate: Defaults to 0.01.
        momentum: float in [0, 1]. Defaults to 0.0.
        nesterov: Defaults to False.
        name: Defaults to ``'sgd'``.
    """

    kind = "sgd"
    _checks = {"momentum": _sgd_momentum}
    _settings = ("momentum", "nesterov")

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, name=None, **kwargs):
        _sgd_momentum("momentum", momentum)
        super().__init__(learning_rate, name, **kwargs)
        self.momentum = momentum
        self.nesterov = bool(nesterov)


class Adagrad(Optimizer):
    """Adagrad: ``s += g²; w -= lr·g / sqrt(s + ε)``.

    Args:
        learning_rate: Defaults to 0.001.
        initial_accumulator_value: starting value of s, >= 0. Defaults to 0.1.
        epsilon: >= 0. Defaults to 1e-7.
        name: Defaults to ``'adagrad'``.
    """

    kind = "adagrad"
    _checks = {"initial_accumulator_value": _rate, "epsilon": _rate}
    _settings = ("epsilon",)

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7,
                 name=None, **kwargs):
        super().__init__(learning_rate, name, **kwargs)
        self.initial_accumulator_value = initial_accumulator_value
        self.epsilon = epsilon

    def _init_slots(self):
        self.slots[0] = self.initial_accumulator_value

    def get_config(self):
        return {**super().get_config(), "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}


class RMSprop(Optimizer):
    """RMSprop: ``r = rho·r + (1-rho)·g²``; ``u = lr·g / sqrt(r + ε)`` (centered: ``r - c² + ε``
    with ``c`` the running mean gradient); ``w -= u``, or with momentum ``b = momentum·b + u;
    w -= b``.

    Args:
        learning_rate: Defaults to 0.001.
        rho: in [0, 1). Defaults to 0.9.
        momentum: >= 0. Defaults to 0.0.
        epsilon: >= 0. Defaults to 1e-7.
        centered: Defaults to False.
        name: Defaults to ``'rm_sprop'`` (Keras' snake_case of the class name).
    """

    kind = "rmsprop"
    _checks = {"rho": _fraction, "momentum": _rate, "epsilon": _rate}
    _settings = ("rho", "momentum", "epsilon", "centered")

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False,
                 name=None, **kwargs):
        super().__init__(learning_rate, name, **kwargs)
        self.rho = rho
        self.momentum = momentum
        self.epsilon = epsilon
        self.centered = bool(centered)


class _Moments(Optimizer):
    """The Adam family's shared hyper-parameters, with Keras' defaults: beta_1, beta_2 (in
    [0, 1)), epsilon (>= 0)."""

    _checks = {"beta_1": _fraction, "beta_2": _fraction, "epsilon": _rate}
    _settings = ("beta_1", "beta_2", "epsilon")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, name=None,
                 **kwargs):
        super().__init__(learning_rate, name, **kwargs)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon


class Adam(_Moments):
    """Adam: with ``t`` the step number, ``a = lr·sqrt(1 - beta_2^t) / (1 - beta_1^t)``,
    ``m += (1-beta_1)(g - m)``, ``v += (1-beta_2)(g² - v)``, ``w -= a·m / (sqrt(v) + ε)``
    (AMSGrad uses the running maximum of v).

    Args:
        learning_rate: Defaults to 0.001.
        beta_1: in [0, 1). Defaults to 0.9.
        beta_2: in [0, 1). Defaults to 0.999.
        epsilon: >= 0. Defaults to 1e-7.
        amsgrad: Defaults to False.
        name: Defaults to ``'adam'``.
    """

    kind = "adam"
    _settings = ("beta_1", "beta_2", "epsilon", "amsgrad")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, name=None, **kwargs):
        super().__init__(learning_rate, beta_1, beta_2, epsilon, name, **kwargs)
        self.amsgrad = bool(amsgrad)


class AdamW(Adam):
    """Adam with decoupled weight decay: each step first does ``w -= w·weight_decay·lr``, then
    Adam's update (Loshchilov & Hutter).

    Args:
        learning_rate: Defaults to 0.001.
        weight_decay: Defaults to 0.004.
        beta_1: Defaults to 0.9.
        beta_2: Defaults to 0.999.
        epsilon: Defaults to 1e-7.
        amsgrad: Defaults to False.
        name: Defaults to ``'adamw'``.
    """

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-7, amsgrad=False, name=None, **kwargs):
        if weight_decay is None:
            raise ValueError("Argument `weight_decay` must be a float. Received: "
                             "weight_decay=None")
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad, name,
                         weight_decay=weight_decay, **kwargs)


class Nadam(_Moments):
    """Nadam: Adam with Nesterov momentum (Dozat), Keras 3's rule. With the momentum cache
    ``u_k = beta_1·(1 - 0.5·0.96^k)``, ``P_t = u_1···u_t`` and t the step number:
    ``m += (1-beta_1)(g - m)``, ``v += (1-beta_2)(g² - v)``,
    ``m̂ = u_{t+1}·m / (1 - P_{t+1}) + (1 - u_t)·g / (1 - P_t)``, ``v̂ = v / (1 - beta_2^t)``,
    ``w -= lr·m̂ / (sqrt(v̂) + ε)``.

    Args:
        learning_rate: Defaults to 0.001.
        beta_1: in [0, 1). Defaults to 0.9.
        beta_2: in [0, 1). Defaults to 0.999.
        epsilon: >= 0. Defaults to 1e-7.
        name: Defaults to ``'nadam'``.
    """

    kind = "nadam"

    def scalar_state(self):
        dtype = self.slots.dtype if self.slots is not None else np.float32
        return [("u_product", nadam_u_product(self.iterations, self.beta_1, dtype))]


class Adamax(_Moments):
    """Adamax: Adam with the infinity norm, Keras 3's rule. With t the step number:
    ``m += (1-beta_1)(g - m)``, ``u = max(beta_2·u, |g|)``,
    ``w -= lr·m / ((1 - beta_1^t)(u + ε))``.

    Args:
        learning_rate: Defaults to 0.001.
        beta_1: in [0, 1). Defaults to 0.9.
        beta_2: in [0, 1). Defaults to 0.999.
        epsilon: >= 0. Defaults to 1e-7.
        name: Defaults to ``'adamax'``.
    """

    kind = "adamax"


ALL = {cls.__name__.lower(): cls for cls in (SGD, Adagrad, RMSprop, Adam, AdamW, Nadam, Adamax)}


def get(identifier) -> Optimizer:
    """Resolve an optimizer: an instance (used as is) or a name, case-insensitive, which creates
    a new instance with all defaults (``'adam'``, ``'Adam'``, ``'sgd'``, ``'rmsprop'``,
    ``'adagrad'``, ``'adamw'``, ``'nadam'``, ``'adamax'``).

    Raises:
        ValueError: for anything else.
    """
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in ALL:
        return ALL[identifier.lower()]()
    raise ValueError(f"Could not interpret optimizer identifier: {identifier} "
                     f"(fastdnn supports {sorted(ALL)})")
