"""The textbook chapter's experiment: its network, one training run, and that run as a point
of the chapter's grid (a function that joblib and Dask can send to another process)."""

import time

import fastdnn
from fastdnn import optimizers

OPTIMIZERS = {
    "sgd": lambda: optimizers.SGD(),
    "momentum": lambda: optimizers.SGD(momentum=0.9),
    "nesterov": lambda: optimizers.SGD(momentum=0.9, nesterov=True),
    "adagrad": lambda: optimizers.Adagrad(),
    "rmsprop": lambda: optimizers.RMSprop(),
    "adam": lambda: optimizers.Adam(),
}
ACTIVATIONS = ("relu", "sigmoid", "tanh")
# The chapter's grid: each activation with each optimizer.
GRID = [(activation, optimizer) for activation in ("sigmoid", "relu") for optimizer in OPTIMIZERS]


def build_model(activation, hidden, dropout, optimizer, engine):
    """The chapter's network: Flatten(28x28), hidden Dense layers, Dense(10, softmax)."""
    model = fastdnn.Sequential(name="fashion_mnist")
    model.add(fastdnn.Input(shape=(28, 28)))
    model.add(fastdnn.layers.Flatten())
    for units in hidden:
        model.add(fastdnn.layers.Dense(units, activation=activation))
        if dropout:
            model.add(fastdnn.layers.Dropout(dropout))
    model.add(fastdnn.layers.Dense(10, activation="softmax"))
    model.compile(optimizer=OPTIMIZERS[optimizer](), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], engine=engine)
    return model


def train(args, data, activation, optimizer, verbose):
    """Build and fit one model; return (model, history, seconds)."""
    fastdnn.utils.set_random_seed(args.seed)
    (x, y), validation, _ = data
    model = build_model(activation, args.hidden or [100], args.dropout, optimizer, args.engine)
    if verbose:
        model.summary()
    started = time.perf_counter()
    history = model.fit(x, y, epochs=args.epochs, batch_size=args.batch_size,
                        validation_data=validation, verbose=verbose)
    return model, history, time.perf_counter() - started


def fit_point(args, activation, optimizer, x, y, x_val, y_val):
    """Train one grid point silently; return its ``History.history`` and its seconds of
    training (the arrays come one by one, so that joblib's Dask backend scatters each once)."""
    _, history, seconds = train(args, ((x, y), (x_val, y_val), None), activation, optimizer,
                                verbose=0)
    return {"history": history.history, "seconds": seconds}
