"""Shared helpers of the model-API test files (test_model_*.py, test_layers.py, ...).

Three things live here:

* fixtures (import them by name into a test module to use them): ``fresh_names`` resets the
  automatic names before every test, ``float64`` switches ``fastdnn.config.floatx`` for one test;
* small builders: the chapter's model, a tiny 3-4-2 network with fixed weights, synthetic data;
* ``formula_fit``: Keras' training arithmetic written out in plain NumPy from the reference
  document (docs/keras-reference.md sections 1.3, 1.4, 4.3, 4.5, 5.2, 8.3), independent of
  fastdnn's kernels and of ``fastdnn.reference``, to compare ``fit`` with.
"""

import numpy as np
import pytest

import fastdnn as keras

# --- fixtures


@pytest.fixture(autouse=False)
def fresh_names():
    """Reset the automatic names (``dense``, ``dense_1``, ...) so that each test sees the same."""
    keras.utils.clear_session()
    yield
    keras.utils.clear_session()


@pytest.fixture
def float64():
    """Build models in float64 for one test; the previous default is restored afterwards."""
    saved = keras.config.floatx()
    keras.config.set_floatx("float64")
    yield
    keras.config.set_floatx(saved)


# --- data and models


def image_data(n=64, seed=0, classes=10):
    """Synthetic 28x28 uint8 'images' whose class is learnable (a bright stripe per class)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
    for i, label in enumerate(y):
        x[i, 2 * label + 2, :] = 250
    return x, y.astype(np.uint8)


def chapter_model(how="list", activation="relu", name=None):
    """The chapter's Fashion-MNIST network built one of the three ways the chapter shows.

    Args:
        how: ``'list'`` (a list starting with ``keras.Input``), ``'add'`` (``model.add`` calls
            after ``keras.Input``) or ``'input_shape'`` (``Flatten(input_shape=(28, 28))`` first,
            Keras 2 style, which warns).
        activation: the hidden layer's activation.
    """
    if how == "list":
        return keras.Sequential([
            keras.Input(shape=(28, 28)),
            keras.layers.Flatten(),
            keras.layers.Dense(100, activation=activation),
            keras.layers.Dense(10, activation="softmax"),
        ], name=name)
    model = keras.Sequential(name=name)
    if how == "add":
        model.add(keras.Input(shape=(28, 28)))
        model.add(keras.layers.Flatten())
    elif how == "input_shape":
        with pytest.warns(UserWarning, match="Do not pass an `input_shape`"):
            model.add(keras.layers.Flatten(input_shape=(28, 28)))
    else:
        raise ValueError(how)
    model.add(keras.layers.Dense(100, activation=activation))
    model.add(keras.layers.Dense(10, activation="softmax"))
    return model


def tiny_data(n=6, seed=1, dtype=np.float64):
    """Inputs (n, 3) and integer labels in {0, 1} for the tiny 3-4-2 network."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(dtype)
    y = np.array([i % 2 for i in range(n)])
    return x, y


def tiny_weights(dtype=np.float64):
    """Fixed initial weights of the 3-4-2 network: kernel1, bias1, kernel2, bias2."""
    w1 = np.array([[0.2, -0.3, 0.5, 0.1],
                   [-0.4, 0.25, 0.15, -0.2],
                   [0.3, 0.1, -0.35, 0.45]], dtype)
    b1 = np.array([0.01, -0.02, 0.03, 0.0], dtype)
    w2 = np.array([[0.3, -0.2], [-0.1, 0.4], [0.25, 0.15], [-0.3, 0.2]], dtype)
    b2 = np.array([0.05, -0.05], dtype)
    return [w1, b1, w2, b2]


def tiny_model(hidden="tanh", weights=None, dropout=None):
    """Input(3) -> Dense(4, hidden) [-> Dropout] -> Dense(2, softmax), with ``tiny_weights``."""
    layers = [keras.Input(shape=(3,)), keras.layers.Dense(4, activation=hidden)]
    if dropout is not None:
        layers.append(keras.layers.Dropout(dropout))
    layers.append(keras.layers.Dense(2, activation="softmax"))
    model = keras.Sequential(layers)
    dtype = model.params.dtype
    model.set_weights(weights if weights is not None else tiny_weights(dtype))
    return model


def same_weights(a, b):
    """Whether two lists of arrays are equal bit for bit (shapes and dtypes included)."""
    return len(a) == len(b) and all(
        x.shape == y.shape and x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(a, b))


def compiled_tiny(optimizer="sgd", metrics=("accuracy",), **kwargs):
    """``tiny_model(**kwargs)`` compiled with sparse categorical cross-entropy and ``metrics``."""
    model = tiny_model(**kwargs)
    model.compile(optimizer, "sparse_categorical_crossentropy",
                  metrics=list(metrics) if metrics else None)
    return model


def fmt(v):
    """A metric value as the verbose=1 line prints it (8.6)."""
    return f"{v:.4f}" if abs(v) > 1e-3 else f"{v:.4e}"


class Recorder(keras.callbacks.Callback):
    """Records every hook call as ``(hook, argument)`` (``argument`` is the epoch/batch or None).

    Overriding the batch hooks makes ``fit`` call them after every batch.
    """

    def __init__(self, keep_logs=False):
        super().__init__()
        self.calls = []
        self.logs = []
        self.keep_logs = keep_logs

    def _record(self, hook, arg, logs):
        self.calls.append((hook, arg))
        if self.keep_logs:
            self.logs.append((hook, arg, dict(logs) if logs is not None else None))


def _hook(name, with_arg):
    if with_arg:
        def hook(self, arg, logs=None):
            self._record(name, arg, logs)
    else:
        def hook(self, logs=None):
            self._record(name, None, logs)
    hook.__name__ = name
    return hook


for _name in ("on_train_begin", "on_train_end", "on_test_begin", "on_test_end",
              "on_predict_begin", "on_predict_end"):
    setattr(Recorder, _name, _hook(_name, False))
for _name in ("on_epoch_begin", "on_epoch_end", "on_train_batch_begin", "on_train_batch_end",
              "on_test_batch_begin", "on_test_batch_end", "on_predict_batch_begin",
              "on_predict_batch_end"):
    setattr(Recorder, _name, _hook(_name, True))


# --- Keras' arithmetic in plain NumPy (the reference document's formulas)

EPSILON = 1e-7


def _activate(z, name):
    if name == "relu":
        return np.maximum(z, 0)
    if name == "tanh":
        return np.tanh(z)
    if name == "sigmoid":
        return 1 / (1 + np.exp(-z))
    if name == "linear":
        return z
    raise ValueError(name)


def _activation_derivative(z, a, name):
    if name == "relu":
        return (z > 0).astype(z.dtype)
    if name == "tanh":
        return 1 - a * a
    if name == "sigmoid":
        return a * (1 - a)
    return np.ones_like(z)


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def formula_predict(weights, x, hidden):
    """Softmax probabilities of the two-layer network ``weights`` for inputs ``x``."""
    w1, b1, w2, b2 = weights
    return softmax(_activate(x @ w1 + b1, hidden) @ w2 + b2)


def sparse_ce(labels, p):
    """Keras' per-sample sparse cross-entropy from probabilities (4.3: renormalise, clip)."""
    p = p / p.sum(axis=1, keepdims=True)
    p = np.clip(p, EPSILON, 1 - EPSILON)
    return -np.log(p[np.arange(len(labels)), labels])


class FormulaOptimizer:
    """The update rules of section 1.4, on a list of weight arrays, with the iteration counter."""

    def __init__(self, kind, learning_rate, **settings):
        self.kind, self.lr, self.s = kind, learning_rate, settings
        self.iterations = 0
        self.slots = None

    def apply(self, weights, grads):
        if self.slots is None:
            start = self.s.get("initial_accumulator_value", 0.1) if self.kind == "adagrad" else 0
            self.slots = [[np.full_like(w, start) for w in weights] for _ in range(3)]
        lr = self.lr
        for i, (w, g) in enumerate(zip(weights, grads)):
            if self.kind == "sgd":
                momentum = self.s.get("momentum", 0.0)
                if momentum == 0:
                    w -= lr * g
                else:
                    v = self.slots[0][i]
                    v[...] = momentum * v - lr * g
                    if self.s.get("nesterov", False):
                        w += momentum * v - lr * g
                    else:
                        w += v
            elif self.kind == "adam":
                b1, b2 = self.s.get("beta_1", 0.9), self.s.get("beta_2", 0.999)
                eps = self.s.get("epsilon", 1e-7)
                t = self.iterations + 1
                a = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
                m, v = self.slots[0][i], self.slots[1][i]
                m += (1 - b1) * (g - m)
                v += (1 - b2) * (g * g - v)
                w -= a * m / (np.sqrt(v) + eps)
            elif self.kind == "adagrad":
                eps = self.s.get("epsilon", 1e-7)
                acc = self.slots[0][i]
                acc += g * g
                w -= lr * g / np.sqrt(acc + eps)
            elif self.kind == "rmsprop":
                rho, eps = self.s.get("rho", 0.9), self.s.get("epsilon", 1e-7)
                momentum = self.s.get("momentum", 0.0)
                r = self.slots[0][i]
                r[...] = rho * r + (1 - rho) * g * g
                if self.s.get("centered", False):
                    c = self.slots[2][i]
                    c[...] = rho * c + (1 - rho) * g
                    d = r - c * c + eps
                else:
                    d = r + eps
                u = lr * g / np.sqrt(d)
                if momentum > 0:
                    b = self.slots[1][i]
                    b[...] = momentum * b + u
                    w -= b
                else:
                    w -= u
            else:
                raise ValueError(self.kind)
        self.iterations += 1


def formula_fit(weights, x, y, optimizer, hidden, batch_size, epochs):
    """Train the two-layer softmax network as Keras does, with ``shuffle=False``.

    Per batch (8.3): forward in training mode, mean sparse cross-entropy, gradients, one
    optimizer apply. The epoch's loss and accuracy are sample-weighted running means of the
    pre-update values (4.5, 5.2).

    Returns:
        ``(weights, history)`` with ``history = {'accuracy': [...], 'loss': [...]}``.
    """
    weights = [np.array(w, np.float64) for w in weights]
    x = np.asarray(x, np.float64)
    history = {"accuracy": [], "loss": []}
    n = len(x)
    for _ in range(epochs):
        loss_total = hits = 0.0
        for start in range(0, n, batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            w1, b1, w2, b2 = weights
            z1 = xb @ w1 + b1
            a1 = _activate(z1, hidden)
            p = softmax(a1 @ w2 + b2)
            per_sample = sparse_ce(yb, p)
            loss_total += per_sample.sum()
            hits += np.sum(np.argmax(p, axis=1) == yb)
            dz2 = (p - np.eye(2)[yb]) / len(xb)
            da1 = dz2 @ w2.T
            dz1 = da1 * _activation_derivative(z1, a1, hidden)
            grads = [xb.T @ dz1, dz1.sum(axis=0), a1.T @ dz2, dz2.sum(axis=0)]
            optimizer.apply(weights, grads)
        history["loss"].append(loss_total / n)
        history["accuracy"].append(hits / n)
    return weights, history
