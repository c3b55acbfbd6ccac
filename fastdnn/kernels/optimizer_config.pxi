# An optimizer's settings as the kernels read them, checked once; its slots' layout.
# Included by fastdnn/_kernels.pyx (one module, one compilation unit).

# The slots of each optimizer, in Keras' order: (name, the setting that creates it, or None:
# always). The k-th row of a kind is its update's slot k (s0, s1, s2 in ``simd/update.h``); the
# slots buffer holds only the rows that exist, in this order.
SLOT_LAYOUT = {
    "sgd": (("momentum", "momentum"),),
    "adagrad": (("accumulator", None),),
    "rmsprop": (("velocity", None), ("momentum", "momentum"), ("average_gradient", "centered")),
    "adam": (("momentum", None), ("velocity", None), ("velocity_hat", "amsgrad")),
    "nadam": (("momentum", None), ("velocity", None)),
    "adamax": (("momentum", None), ("norm", None)),
}
_OPT_KINDS = {"sgd": _OPT_SGD, "adagrad": _OPT_ADAGRAD, "rmsprop": _OPT_RMSPROP,
              "adam": _OPT_ADAM, "nadam": _OPT_NADAM, "adamax": _OPT_ADAMAX}
# schedule kind: (code, number of parameters, indices of the parameters that must be > 0)
_SCHEDULES = {"exponential": (_EXPONENTIAL_DECAY, 4, (1,)), "inverse_time": (_INVERSE_TIME_DECAY, 4, (1,)),
              "polynomial": (_POLYNOMIAL_DECAY, 5, (1,)), "cosine": (_COSINE_DECAY, 6, (1,))}
_CLIPS = ("clipnorm", "clipvalue", "global_clipnorm")


cdef class OptimizerConfig:
    """An optimizer's settings as the kernels read them: checked once, here, and read without
    parsing by every ``Network.train`` call (``fastdnn.optimizers.Optimizer.settings()`` builds
    one whenever a hyper-parameter changes); ``fastdnn.reference`` reads the same object.

    Args:
        kind: ``'sgd'``, ``'adagrad'``, ``'rmsprop'``, ``'adam'``, ``'nadam'`` or ``'adamax'``.
        learning_rate: finite, >= 0. Defaults to 0.001.
        momentum: SGD's (in [0, 1]) and RMSprop's (>= 0). Defaults to 0.0.
        rho: RMSprop's, in [0, 1). Defaults to 0.9.
        beta_1: in [0, 1). Defaults to 0.9.
        beta_2: in [0, 1). Defaults to 0.999.
        epsilon: >= 0. Defaults to 1e-7.
        nesterov: SGD's. Defaults to False.
        centered: RMSprop's. Defaults to False.
        amsgrad: Adam's. Defaults to False.
        schedule: None, or a learning-rate schedule's ``kernel_spec()`` (``fastdnn.schedules``),
            evaluated at every step instead of learning_rate. Defaults to None.
        weight_decay: decoupled, ``w -= w·weight_decay·lr`` before each step; 0: none.
        clipvalue: each gradient element clipped to [-clipvalue, clipvalue]; 0: none.
        clipnorm: each variable's gradient (a kernel, a bias) scaled to an L2 norm of at most
            clipnorm; 0: none.
        global_clipnorm: all trainable gradients scaled together to a global L2 norm of at most
            global_clipnorm; 0: none. At most one of the three clips is set.

    Attributes:
        slot_names: the slots these settings keep, in Keras' order (``SLOT_LAYOUT``): the rows
            of the ``slots`` buffer ``Network.train`` takes.
    """
    cdef OptConfig c
    cdef Schedule rate_schedule
    cdef int rows[3]  # the row of the update's slot k in the slots buffer, -1: none
    cdef readonly str kind
    cdef readonly object schedule
    cdef readonly tuple slot_names
    cdef readonly double weight_decay, clipvalue, clipnorm, global_clipnorm
    cdef bint _ready

    def __init__(self, kind, learning_rate=0.001, momentum=0.0, rho=0.9, beta_1=0.9,
                 beta_2=0.999, epsilon=1e-7, nesterov=False, centered=False, amsgrad=False,
                 schedule=None, weight_decay=0.0, clipvalue=0.0, clipnorm=0.0,
                 global_clipnorm=0.0):
        if self._ready:
            raise RuntimeError("an OptimizerConfig is built once: create a new one")
        if kind not in _OPT_KINDS:
            raise ValueError(f"kind must be one of {sorted(_OPT_KINDS)}, got {kind!r}")
        self.kind = kind
        self.c = _checked(_OPT_KINDS[kind], _real("learning_rate", learning_rate),
                          _real("momentum", momentum), _real("rho", rho), _real("beta_1", beta_1),
                          _real("beta_2", beta_2), _real("epsilon", epsilon), nesterov, centered,
                          amsgrad)
        self.rate_schedule = _schedule_config(schedule)
        self.schedule = schedule
        self.weight_decay = _finite_scalar("weight_decay", _real("weight_decay", weight_decay), 0.0)
        clips = {name: _finite_scalar(name, _real(name, value), 0.0) for name, value in
                 zip(_CLIPS, (clipnorm, clipvalue, global_clipnorm))}
        if sum(value > 0 for value in clips.values()) > 1:
            raise ValueError("Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be "
                             "set. Received: " + ", ".join(f"{k}={v or None}"
                                                           for k, v in clips.items()))
        self.clipnorm, self.clipvalue = clips["clipnorm"], clips["clipvalue"]
        self.global_clipnorm = clips["global_clipnorm"]
        made = {None: True, "momentum": self.c.momentum > 0, "centered": bool(centered),
                "amsgrad": bool(amsgrad)}
        names = []
        for k in range(3):
            self.rows[k] = -1
        for k, (name, setting) in enumerate(SLOT_LAYOUT[kind]):
            if made[setting]:
                self.rows[k] = len(names)
                names.append(name)
        self.slot_names = tuple(names)
        self._ready = True

    @property
    def learning_rate(self):
        return self.c.learning_rate

    @property
    def momentum(self):
        return self.c.momentum

    @property
    def rho(self):
        return self.c.rho

    @property
    def beta_1(self):
        return self.c.beta_1

    @property
    def beta_2(self):
        return self.c.beta_2

    @property
    def epsilon(self):
        return self.c.epsilon

    @property
    def nesterov(self):
        return bool(self.c.nesterov)

    @property
    def centered(self):
        return bool(self.c.centered)

    @property
    def amsgrad(self):
        return bool(self.c.amsgrad)

    def __reduce__(self):
        return OptimizerConfig, (self.kind, self.learning_rate, self.momentum, self.rho,
                                 self.beta_1, self.beta_2, self.epsilon, self.nesterov,
                                 self.centered, self.amsgrad, self.schedule, self.weight_decay,
                                 self.clipvalue, self.clipnorm, self.global_clipnorm)

    def __repr__(self):
        return (f"OptimizerConfig({self.kind!r}, learning_rate={self.learning_rate}, "
                f"slots={list(self.slot_names)})")


cdef double _real(str name, value) except? -1:
    """``value`` as a double, or TypeError naming the argument."""
    try:
        return value
    except TypeError:
        raise TypeError(f"{name} must be a real number, got {value!r}") from None


cdef OptConfig _checked(int kind, double learning_rate, double momentum, double rho,
                        double beta_1, double beta_2, double epsilon, bint nesterov,
                        bint centered, bint amsgrad) except *:
    """The optimizer's numbers checked, as the kernels read them: ``OptimizerConfig``'s and the
    public updates' one check (they take no Python object, so a small update stays cheap)."""
    cdef OptConfig c
    c.kind = kind
    c.learning_rate = _finite_scalar("learning_rate", learning_rate, 0.0)
    c.momentum = _finite_scalar("momentum", momentum, 0.0, 1.0 if kind == _OPT_SGD else INFINITY)
    c.rho = _decay("rho", rho)
    c.beta_1 = _decay("beta_1", beta_1)
    c.beta_2 = _decay("beta_2", beta_2)
    c.epsilon = _finite_scalar("epsilon", epsilon, 0.0)
    c.nesterov, c.centered, c.amsgrad = nesterov, centered, amsgrad
    return c


cdef OptimizerConfig _as_config(opt):
    """``opt`` as an OptimizerConfig: one (used as is) or a dict of its arguments."""
    if isinstance(opt, OptimizerConfig):
        return opt
    if isinstance(opt, dict):
        return OptimizerConfig(**opt)
    raise TypeError(f"opt must be an OptimizerConfig or a dict of its arguments, got "
                    f"{type(opt).__name__}")


cdef Schedule _schedule_config(object schedule) except *:
    """Read and check a learning-rate schedule's ``kernel_spec()`` (``fastdnn.schedules``)."""
    cdef Schedule c
    cdef int k
    c.kind, c.n_pieces = _CONSTANT_RATE, 0
    if schedule is None:
        return c
    if not isinstance(schedule, dict):
        raise TypeError(f"schedule must be a dict or None, got {type(schedule).__name__}")
    kind = schedule.get("kind")
    if kind == "piecewise":
        bounds = [_finite_scalar("schedule boundary", b) for b in schedule.get("boundaries", ())]
        values = [_finite_scalar("schedule value", v) for v in schedule.get("values", ())]
        if len(values) != len(bounds) + 1 or len(bounds) > _MAX_PIECES:
            raise ValueError(f"a piecewise schedule needs at most {_MAX_PIECES} boundaries and "
                             "one value more than boundaries")
        c.kind, c.n_pieces = _PIECEWISE_CONSTANT, len(bounds)
        for k in range(len(bounds)):
            c.bounds[k] = bounds[k]
        for k in range(len(values)):
            c.values[k] = values[k]
        return c
    if kind not in _SCHEDULES:
        raise ValueError(f"unknown schedule kind {kind!r}")
    code, count, positive = _SCHEDULES[kind]
    params = list(schedule.get("params", ()))
    if len(params) != count:
        raise ValueError(f"a {kind} schedule has {count} parameters, got {len(params)}")
    for k in range(count):
        c.decay[k] = _finite_scalar("schedule parameter", params[k])
        if k in positive and not c.decay[k] > 0:
            raise ValueError(f"the {kind} schedule's decay_steps must be > 0")
    c.kind = code
    return c
