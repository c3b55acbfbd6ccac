"""Fuzz targets of the model API: ``model`` (``Sequential.fit``/``evaluate``/``predict``) and
``constructors`` (layer and optimizer constructors, compile, then a short fit).
"""

import math

import numpy as np
from hypothesis import strategies as st

import fastdnn
from fastdnn import reference as R

from .common import STATS, case, fail, quiet
from .strategies import ACTS, ODD_ACTS, mutate


# Target: Sequential.fit / evaluate / predict.

def make_models():
    """Small compiled models, one per loss, with their valid data."""
    keras = fastdnn
    rng = np.random.default_rng(7)
    L = keras.layers
    specs = {
        "sparse": ([keras.Input((6,)), L.Dense(8, "relu"), L.Dense(3, "softmax")],
                   "sparse_categorical_crossentropy", ["accuracy"], "adam"),
        "categorical": ([keras.Input((2, 3)), L.Flatten(), L.Dense(4, "tanh"), L.Dropout(0.3),
                         L.Dense(3, "softmax")], "categorical_crossentropy", ["accuracy"],
                        keras.optimizers.SGD(0.05, momentum=0.9)),
        "binary": ([keras.Input((5,)), L.Dense(4, "relu"), L.Dense(1, "sigmoid")],
                   "binary_crossentropy", ["accuracy"], "rmsprop"),
        "mse": ([keras.Input((5,)), L.Dense(2)], "mse", None, "adagrad"),
        "logits": ([keras.Input((4,)), L.Dense(3)],
                   keras.losses.SparseCategoricalCrossentropy(from_logits=True), None, "adam"),
    }
    models = {}
    for name, (layers, loss, metrics, opt) in specs.items():
        model = keras.Sequential(layers, name=f"fuzz_{name}")
        model.compile(opt, loss, metrics=metrics)
        shape = model.input_shape[1:]
        n = 12
        x = rng.normal(size=(n,) + shape).astype(np.float32)
        out = model.output_shape[-1]
        if name in ("sparse", "logits"):
            y = rng.integers(0, out, n)
        elif name == "categorical":
            y = np.eye(out, dtype=np.float32)[rng.integers(0, out, n)]
        elif name == "binary":
            y = rng.integers(0, 2, (n, 1)).astype(np.float32)
        else:
            y = rng.normal(size=(n, out)).astype(np.float32)
        with quiet():
            model.fit(x, y, epochs=1, batch_size=4, verbose=0)  # builds the optimizer slots
        models[name] = (model, x, y)
    return models


MODELS = None


def numpy_forward(model, x):
    """The model's outputs from its weights in float64 NumPy (inference mode)."""
    h = np.asarray(x, np.float64).reshape(len(x), -1)
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Dense":
            w = layer.get_weights()
            h = h @ w[0].astype(np.float64) + (w[1] if len(w) > 1 else 0)
            act = layer.activation
        elif kind in ("Activation", "ReLU", "Softmax"):
            act = layer.activation
        else:
            continue
        out = np.empty_like(h)
        R.activation_forward(h, out, act)
        h = out
    return h


def state(model):
    opt = model.optimizer
    return (model.get_weights(), opt.iterations if opt else None,
            None if opt is None or opt.slots is None else opt.slots.copy(), model.input_shape,
            model.output_shape)


def same_state(a, b):
    wa, ia, sa, ina, outa = a
    wb, ib, sb, inb, outb = b
    return (len(wa) == len(wb) and all(np.array_equal(x, y, equal_nan=True) for x, y in
                                       zip(wa, wb)) and ia == ib and ina == inb and outa == outb
            and ((sa is None and sb is None) or (sa is not None and sb is not None and
                                                 np.array_equal(sa, sb, equal_nan=True))))


def restore(model, saved):
    weights, iterations, slots, _, _ = saved
    model.set_weights(weights)
    model.optimizer.iterations = iterations
    if slots is not None:
        model.optimizer.slots[...] = slots


BATCH_SIZES = [None, 1, 3, 4, 32, 0, -1, 2.5, True, "32", np.int64(5), 10**6, 2**31, 10**12,
               2**62, 2**63]


def canonical_x(model, x):
    """The documented conversion: np.asarray, the model's float type, C order, flat samples."""
    a = np.asarray(x)
    return np.ascontiguousarray(a.reshape(a.shape[0], -1), dtype=np.float32)


def run_model_example(data):
    global MODELS
    if MODELS is None:
        MODELS = make_models()
    name = data.draw(st.sampled_from(sorted(MODELS)), label="model")
    model, x0, y0 = MODELS[name]
    method = data.draw(st.sampled_from(["fit", "fit", "evaluate", "predict", "call"]),
                       label="method")
    x, x_kind = mutate(data, x0, label="x")
    y, y_kind = mutate(data, y0, label="y")
    kwargs = {}
    if data.draw(st.booleans(), label="batch?"):
        kwargs["batch_size"] = data.draw(st.sampled_from(BATCH_SIZES), label="batch_size")
    if data.draw(st.booleans(), label="verbose?"):
        kwargs["verbose"] = data.draw(st.sampled_from([0, 1, 2, "auto", 3, -1, None, "loud"]))
    if method == "fit":
        if data.draw(st.booleans(), label="epochs?"):
            kwargs["epochs"] = data.draw(st.sampled_from([0, 1, 2, -1, 1.5, None, True, "2",
                                                          np.int32(2), 10**9]))
        extra = data.draw(st.sampled_from([
            {}, {}, {"initial_epoch": -1}, {"initial_epoch": 5}, {"shuffle": False},
            {"shuffle": "batch"}, {"validation_split": 0.25}, {"validation_split": 1.0},
            {"validation_split": math.nan}, {"validation_split": -0.5},
            {"validation_data": (x0, y0)}, {"validation_data": (x, y)},
            {"validation_data": x0}, {"validation_data": (x0,)}, {"validation_freq": 0},
            {"validation_batch_size": 0}, {"class_weight": {0: 1.0}},
            {"sample_weight": np.ones(len(x0))}, {"steps_per_epoch": 2},
            {"validation_steps": 1}, {"callbacks": 5}, {"callbacks": [None]},
            {"callbacks": [fastdnn.callbacks.TerminateOnNaN()]},
            {"callbacks": [fastdnn.callbacks.EarlyStopping(monitor="loss", patience=0)]}]),
            label="extra")
        if "initial_epoch" in kwargs and "initial_epoch" in extra:
            extra = {}
        kwargs.update(extra)
        if "epochs" not in kwargs:
            kwargs["epochs"] = 1
        if kwargs["epochs"] == 10**9:  # a huge epoch count, of which only the last one runs
            kwargs["initial_epoch"] = 10**9 - 1
    elif method == "evaluate":
        kwargs.update(data.draw(st.sampled_from([{}, {}, {"return_dict": True},
                                                 {"sample_weight": np.ones(len(x0))},
                                                 {"steps": 1}, {"callbacks": 5},
                                                 {"callbacks": [None]}])))
    elif method == "predict":
        kwargs.update(data.draw(st.sampled_from([{}, {}, {"steps": 1}, {"callbacks": []},
                                                 {"callbacks": 5}, {"callbacks": ["x"]}])))
    else:
        kwargs = {"training": data.draw(st.sampled_from([False, False, True]))}
    saved = state(model)
    probe = model.predict(x0, verbose=0)
    label = f"{name}.{method}(x={x_kind}, y={y_kind})"
    case(label, x=x, y=y, **kwargs)
    call = {"fit": lambda: model.fit(x, y, **kwargs),
            "evaluate": lambda: model.evaluate(x, y, **kwargs),
            "predict": lambda: model.predict(x, **kwargs),
            "call": lambda: model(x, **kwargs)}[method]
    try:
        with quiet():
            result = call()
    except (ValueError, TypeError, NotImplementedError) as exc:
        if isinstance(exc, NotImplementedError) and not documented_unsupported(kwargs, exc):
            fail(f"{label}: NotImplementedError for a supported option: {exc}")
        STATS.count("refused")
        if not same_state(saved, state(model)):
            fail(f"{label} with {kwargs} raised {type(exc).__name__}: {exc}, but changed the "
                 "model (weights, optimizer state or shapes)")
        if not np.array_equal(model.predict(x0, verbose=0), probe):
            fail(f"{label}: the model predicts differently after a refused call")
        return
    # It worked: check the result.
    n = len(np.asarray(x)) if not isinstance(x, dict) else None
    if method in ("predict", "call"):
        cx = canonical_x(model, x)
        expected = numpy_forward(model, cx)
        if result.shape != expected.shape or result.dtype != np.float32:
            fail(f"{label}: predict returned {result.shape} {result.dtype}")
        finite = np.isfinite(expected)
        if not np.allclose(result[finite], expected[finite], rtol=1e-4, atol=1e-4):
            fail(f"{label}: predict differs from the NumPy forward pass of the converted x")
        STATS.count("worked")
    elif method == "evaluate":
        values = list(result.values()) if isinstance(result, dict) else (
            result if isinstance(result, list) else [result])
        if not all(isinstance(v, float) for v in values):
            fail(f"{label}: evaluate returned {result!r}")
        STATS.count("worked")
    else:
        epochs = kwargs.get("epochs", 1)
        initial = kwargs.get("initial_epoch", 0)
        ran = len(next(iter(result.history.values()), []))
        if ran > max(0, int(epochs) - int(initial)):
            fail(f"{label}: fit ran {ran} epochs for epochs={epochs}, initial_epoch={initial}")
        if ran == 0 and not same_state(saved, state(model)):
            fail(f"{label}: fit ran no epoch but changed the model")
        if not all(np.all(np.isfinite(w)) for w in model.get_weights()):
            fail(f"{label}: fit left non-finite weights")
        STATS.count("worked")
        restore(model, saved)
    assert n is None or n >= 0


def documented_unsupported(kwargs, exc):
    """NotImplementedError is allowed for the Keras options fastdnn documents as unsupported."""
    text = str(exc)
    return any(k in kwargs and kwargs[k] is not None and k in text for k in
               ("class_weight", "sample_weight", "steps_per_epoch", "validation_steps", "steps")) \
        or ("training" in kwargs and "training" in text)


# ---------------------------------------------------------------------------------------------
# Target: layer and optimizer constructors, compile, then a short fit with what was built.

ODD_VALUES = [0, 1, -1, 2, 0.5, 1e-7, 1e30, -1e30, math.nan, math.inf, -math.inf, None, True,
              False, "0.1", "relu", [1], (2,), np.float32(0.1), np.int64(3), 2**63, 2**40,
              complex(1, 1), b"x"]


def odd(data, label):
    return data.draw(st.sampled_from(ODD_VALUES), label=label)


def run_constructor_example(data):
    keras = fastdnn
    L = keras.layers
    what = data.draw(st.sampled_from(["Dense", "Dropout", "Activation", "ReLU", "Softmax",
                                      "Flatten", "Input", "SGD", "Adam", "RMSprop", "Adagrad",
                                      "compile"]), label="what")
    kwargs = {}
    args = ()
    if what == "Dense":
        args = (data.draw(st.sampled_from([1, 3, 0, -2, 2.0, True, None, "4", np.int64(2), 2**40,
                                           2**63])),)
        for key in ("activation", "use_bias", "kernel_initializer", "bias_initializer", "name",
                    "bogus"):
            if data.draw(st.integers(0, 3)) == 0:
                pool = ACTS + ODD_ACTS + ["zeros", "glorot_uniform", "dense/x", "x"]
                kwargs[key] = data.draw(st.sampled_from(pool if key != "use_bias"
                                                        else ODD_VALUES))
    elif what == "Dropout":
        args = (odd(data, "rate"),)
        if data.draw(st.booleans()):
            kwargs["noise_shape"] = data.draw(st.sampled_from([None, (1, 4)]))
        if data.draw(st.booleans()):
            kwargs["seed"] = odd(data, "seed")
    elif what == "Activation":
        args = (data.draw(st.sampled_from(ACTS + ODD_ACTS)),)
    elif what == "ReLU":
        for key in ("max_value", "negative_slope", "threshold"):
            if data.draw(st.booleans()):
                kwargs[key] = odd(data, key)
    elif what == "Softmax":
        if data.draw(st.booleans()):
            kwargs["axis"] = odd(data, "axis")
    elif what == "Flatten":
        if data.draw(st.booleans()):
            kwargs["data_format"] = data.draw(st.sampled_from([None, "channels_last",
                                                               "channels_first", 3]))
    elif what == "Input":
        kwargs["shape"] = data.draw(st.sampled_from([(4,), (2, 2), (), (0,), (-1,), None, 4,
                                                     "4", (4.0,), (None,), (2**40,), [4]]))
    elif what in ("SGD", "Adam", "RMSprop", "Adagrad"):
        names = {"SGD": ["learning_rate", "momentum", "nesterov"],
                 "Adam": ["learning_rate", "beta_1", "beta_2", "epsilon", "amsgrad"],
                 "RMSprop": ["learning_rate", "rho", "momentum", "epsilon", "centered"],
                 "Adagrad": ["learning_rate", "initial_accumulator_value", "epsilon"]}[what]
        for key in names + ["clipnorm", "weight_decay", "decay", "bogus"]:
            if data.draw(st.integers(0, 2)) == 0:
                kwargs[key] = odd(data, key)
    case(f"construct {what}", args=args, **kwargs)
    built = None
    try:
        with quiet():
            if what == "compile":
                built = None
            elif what == "Input":
                built = L.Input(**kwargs)
            elif what in ("SGD", "Adam", "RMSprop", "Adagrad"):
                built = getattr(keras.optimizers, what)(*args, **kwargs)
            else:
                built = getattr(L, what)(*args, **kwargs)
    except (ValueError, TypeError) as exc:
        STATS.count("refused")
        return
    except NotImplementedError:
        STATS.count("refused_unsupported")
        return
    # Use what was built in a tiny model: it must train and predict, or refuse cleanly.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 4)).astype(np.float32)
    y = rng.integers(0, 2, 8)
    optimizer = "adam"
    layers = [L.Input((4,))]
    if what == "Input":
        layers = [built]
        shape = built.shape
        if any(d is None or d > 64 for d in shape):  # no data of that shape to fit on here
            STATS.count("constructed")
            return
        x = rng.normal(size=(8,) + tuple(shape)).astype(np.float32)
        if len(shape) != 1:
            layers.append(L.Flatten())
    elif what in ("SGD", "Adam", "RMSprop", "Adagrad"):
        optimizer = built
    elif what != "compile":
        layers.append(built)
        if what == "Flatten":
            pass
    layers.append(L.Dense(2, "softmax"))
    compile_kwargs = {"optimizer": optimizer, "loss": "sparse_categorical_crossentropy"}
    if what == "compile":
        for key in ("optimizer", "loss", "metrics", "engine"):
            if data.draw(st.booleans(), label=f"compile_{key}?"):
                compile_kwargs[key] = data.draw(st.sampled_from(
                    ["adam", "Adam", "nadam", "sgd", None, 3, "mse", "binary_crossentropy",
                     "categorical_crossentropy", ["accuracy"], ["accuracy", "mse"], "accuracy",
                     {"out": "accuracy"}, ["auc"], "numpy", "fastdnn", "jax",
                     keras.losses.MeanSquaredError()]), label=f"compile_{key}")
    try:
        with quiet():
            model = keras.Sequential(layers)
            model.compile(**compile_kwargs)
    except (ValueError, TypeError, NotImplementedError):
        STATS.count("refused_in_model")
        return
    saved = model.get_weights()
    case(f"fit with {what}", args=args, **kwargs)
    try:
        with quiet():
            model.fit(x, y, epochs=1, batch_size=4, verbose=0)
            out = model.predict(x, verbose=0)
    except (ValueError, TypeError, NotImplementedError):
        STATS.count("refused_in_fit")
        now = model.get_weights()
        if len(now) != len(saved) or not all(np.array_equal(a, b) for a, b in zip(saved, now)):
            fail(f"fit with {what}{args}{kwargs} was refused but changed the weights")
        return
    if out.shape[0] != 8:
        fail(f"predict with {what} returned shape {out.shape}")
    STATS.count("worked")
