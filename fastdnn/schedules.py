"""Learning-rate schedules, as in ``keras.optimizers.schedules`` (also reachable there).

Pass one as any optimizer's ``learning_rate``. As in Keras, the rate of a training step is
``schedule(step)`` with ``step`` the optimizer's ``iterations`` before that step. The built-in
schedules run inside the compiled training loop, evaluated at every step
(``fastdnn._kernels``, ``_learning_rate_at``; twin: ``fastdnn.reference.learning_rate_at``);
a schedule of your own (a subclass with ``__call__``) is evaluated in Python before every batch.
"""

import math

import numpy as np

from fastdnn import reference

__all__ = ["LearningRateSchedule", "ExponentialDecay", "InverseTimeDecay", "PolynomialDecay",
           "CosineDecay", "PiecewiseConstantDecay", "serialize", "deserialize"]

# Longest PiecewiseConstantDecay the compiled loop evaluates (longer ones run in Python).
MAX_PIECES = 32


def _positive_steps(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not value > 0 or not math.isfinite(value):
        raise ValueError(f"Argument `{name}` must be > 0. Received: {name}={value}")
    return value


def _number(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value):
        raise ValueError(f"Argument `{name}` must be a finite number. Received: {name}={value!r}")
    return value


class LearningRateSchedule:
    """Base class: ``schedule(step)`` returns the learning rate of step ``step`` (from 0).

    Subclass it and define ``__call__(self, step)`` (and ``get_config`` to save it) for a
    schedule of your own.
    """

    def __call__(self, step):
        raise NotImplementedError(f"Learning rate schedule '{type(self).__name__}' must override "
                                  "`__call__(self, step)`.")

    def kernel_spec(self):
        """The schedule as the compiled loop reads it (a dict), or None if it runs in Python."""
        return None

    def get_config(self) -> dict:
        """Return the constructor arguments."""
        raise NotImplementedError(f"Learning rate schedule '{type(self).__name__}' must override "
                                  "`get_config()` in order to be serializable.")

    @classmethod
    def from_config(cls, config: dict) -> "LearningRateSchedule":
        """Create a schedule from ``get_config()``'s output."""
        return cls(**config)


class _BuiltIn(LearningRateSchedule):
    """A schedule the kernels evaluate: ``__call__`` is the NumPy twin of the same formula."""

    def __call__(self, step):
        return reference.learning_rate_at(self._spec(), float(step))

    def _spec(self) -> dict:
        raise NotImplementedError

    def kernel_spec(self):
        return self._spec()


class ExponentialDecay(_BuiltIn):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)``; with ``staircase``, the
    exponent is ``floor(step / decay_steps)``.

    Args:
        initial_learning_rate: float.
        decay_steps: positive number.
        decay_rate: float.
        staircase: Defaults to False.
        name: Defaults to ``'ExponentialDecay'``.
    """

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False,
                 name="ExponentialDecay"):
        self.initial_learning_rate = _number("initial_learning_rate", initial_learning_rate)
        self.decay_steps = _positive_steps("decay_steps", decay_steps)
        self.decay_rate = _number("decay_rate", decay_rate)
        self.staircase = bool(staircase)
        self.name = name

    def _spec(self):
        return {"kind": "exponential", "params": [self.initial_learning_rate, self.decay_steps,
                                                  self.decay_rate, float(self.staircase)]}

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "decay_rate": self.decay_rate,
                "staircase": self.staircase, "name": self.name}


class InverseTimeDecay(ExponentialDecay):
    """``initial_learning_rate / (1 + decay_rate * step / decay_steps)``; with ``staircase``,
    ``step / decay_steps`` is floored.

    Args:
        initial_learning_rate: float.
        decay_steps: positive number.
        decay_rate: float.
        staircase: Defaults to False.
        name: Defaults to ``'InverseTimeDecay'``.
    """

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False,
                 name="InverseTimeDecay"):
        super().__init__(initial_learning_rate, decay_steps, decay_rate, staircase, name)

    def _spec(self):
        return {**super()._spec(), "kind": "inverse_time"}


class PolynomialDecay(_BuiltIn):
    """``(initial - end) * (1 - step / decay_steps) ** power + end`` with step capped at
    decay_steps; with ``cycle``, decay_steps is instead multiplied by ``ceil(step /
    decay_steps)`` (1 at step 0).

    Args:
        initial_learning_rate: float.
        decay_steps: positive number.
        end_learning_rate: Defaults to 0.0001.
        power: Defaults to 1.0.
        cycle: Defaults to False.
        name: Defaults to ``'PolynomialDecay'``.
    """

    def __init__(self, initial_learning_rate, decay_steps, end_learning_rate=0.0001, power=1.0,
                 cycle=False, name="PolynomialDecay"):
        self.initial_learning_rate = _number("initial_learning_rate", initial_learning_rate)
        self.decay_steps = _positive_steps("decay_steps", decay_steps)
        self.end_learning_rate = _number("end_learning_rate", end_learning_rate)
        self.power = _number("power", power)
        self.cycle = bool(cycle)
        self.name = name

    def _spec(self):
        return {"kind": "polynomial", "params": [self.initial_learning_rate, self.decay_steps,
                                                 self.end_learning_rate, self.power,
                                                 float(self.cycle)]}

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "end_learning_rate": self.end_learning_rate,
                "power": self.power, "cycle": self.cycle, "name": self.name}


class CosineDecay(_BuiltIn):
    """Cosine decay, after an optional linear warmup.

    Without warmup (``warmup_target=None``): with ``s = min(step, decay_steps)``,
    ``initial_learning_rate * ((1 - alpha) * 0.5 * (1 + cos(pi * s / decay_steps)) + alpha)``.
    With warmup: for ``step < warmup_steps`` the rate goes linearly from initial_learning_rate
    to warmup_target, ``(warmup_target - initial) * step / warmup_steps + initial``; then the
    cosine decay above runs from warmup_target over ``step - warmup_steps``.

    Args:
        initial_learning_rate: float.
        decay_steps: positive number.
        alpha: the final rate as a fraction of the decay's start. Defaults to 0.0.
        name: Defaults to ``'CosineDecay'``.
        warmup_target: float or None. Defaults to None.
        warmup_steps: Defaults to 0.
    """

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, name="CosineDecay",
                 warmup_target=None, warmup_steps=0):
        self.initial_learning_rate = _number("initial_learning_rate", initial_learning_rate)
        self.decay_steps = _positive_steps("decay_steps", decay_steps)
        self.alpha = _number("alpha", alpha)
        self.name = name
        self.warmup_target = None if warmup_target is None else _number("warmup_target",
                                                                        warmup_target)
        self.warmup_steps = _number("warmup_steps", warmup_steps)

    def _spec(self):
        warm = self.warmup_target is not None
        return {"kind": "cosine", "params": [
            self.initial_learning_rate, self.decay_steps, self.alpha,
            self.warmup_target if warm else 0.0, self.warmup_steps, float(warm)]}

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "alpha": self.alpha, "name": self.name,
                "warmup_target": self.warmup_target, "warmup_steps": self.warmup_steps}


class PiecewiseConstantDecay(_BuiltIn):
    """``values[0]`` while ``step <= boundaries[0]``, ``values[1]`` while ``step <=
    boundaries[1]``, ..., ``values[-1]`` after the last boundary.

    Args:
        boundaries: increasing numbers.
        values: one more number than boundaries.
        name: Defaults to ``'PiecewiseConstant'``.

    Raises:
        ValueError: if ``len(values) != len(boundaries) + 1``.
    """

    def __init__(self, boundaries, values, name="PiecewiseConstant"):
        if len(boundaries) != len(values) - 1:
            raise ValueError("The length of boundaries should be 1 less than the length of "
                             f"values. Received: boundaries={boundaries} of length "
                             f"{len(boundaries)}, and values={values} of length {len(values)}.")
        self.boundaries = [_number("boundaries", b) for b in boundaries]
        self.values = [_number("values", v) for v in values]
        self.name = name

    def _spec(self):
        return {"kind": "piecewise", "boundaries": list(self.boundaries),
                "values": list(self.values)}

    def kernel_spec(self):
        return self._spec() if len(self.boundaries) <= MAX_PIECES else None

    def get_config(self):
        return {"boundaries": self.boundaries, "values": self.values, "name": self.name}


ALL = {cls.__name__: cls for cls in (ExponentialDecay, InverseTimeDecay, PolynomialDecay,
                                     CosineDecay, PiecewiseConstantDecay)}


def serialize(schedule) -> dict:
    """Return Keras' ``{'module', 'class_name', 'config', 'registered_name'}`` for a schedule."""
    return {"module": "keras.optimizers.schedules", "class_name": type(schedule).__name__,
            "config": schedule.get_config(), "registered_name": None}


def deserialize(config) -> LearningRateSchedule:
    """Create a schedule from ``serialize``'s output.

    Raises:
        ValueError: for an unknown class.
    """
    if not isinstance(config, dict) or config.get("class_name") not in ALL:
        raise ValueError(f"Could not interpret learning rate schedule: {config} (fastdnn knows "
                         f"{sorted(ALL)})")
    return ALL[config["class_name"]].from_config(config["config"])
