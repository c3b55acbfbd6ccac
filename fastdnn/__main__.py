"""The command line: train the textbook chapter's networks on Fashion-MNIST.

    python -m fastdnn                      # Flatten → Dense(100, relu) → Dense(10, softmax), Adam
    python -m fastdnn --activation sigmoid --optimizer rmsprop
    python -m fastdnn --compare            # the chapter's grid: activations × optimizers
    python -m fastdnn --plot history.png   # loss/accuracy curves (needs matplotlib)
"""

import argparse
import sys
import time

import numpy as np

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
VALIDATION_FRACTION = 0.2  # 60,000 training images: 48,000 train, 12,000 validation


def _positive(kind):
    def parse(text):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value
    return parse


def _rate(text):
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1), got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m fastdnn``."""
    parser = argparse.ArgumentParser(
        prog="fastdnn", description="Train the chapter's dense networks on Fashion-MNIST.")
    parser.add_argument("--version", action="version",
                        version=f"fastdnn {fastdnn.__version__} (SIMD: {fastdnn.config.simd()})")
    parser.add_argument("--activation", choices=ACTIVATIONS, default="relu",
                        help="hidden-layer activation (default: relu)")
    parser.add_argument("--hidden", type=_positive(int), action="append", metavar="UNITS",
                        help="a hidden layer of UNITS units; repeat for more (default: one of 100)")
    parser.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="adam",
                        help="default: adam")
    parser.add_argument("--epochs", type=_positive(int), default=5, help="default: 5")
    parser.add_argument("--batch-size", type=_positive(int), default=32, help="default: 32")
    parser.add_argument("--dropout", type=_rate, default=0.0,
                        help="dropout rate after each hidden layer (default: 0)")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default: 42)")
    parser.add_argument("--engine", choices=("fastdnn", "numpy"), default="fastdnn",
                        help="the compiled kernels or the plain NumPy reference (default: fastdnn)")
    parser.add_argument("--data-dir", metavar="DIR",
                        help="folder holding the four Fashion-MNIST IDX files")
    parser.add_argument("--save", metavar="PATH", help="save the trained model (.fastdnn)")
    parser.add_argument("--plot", metavar="PNG", help="plot loss and accuracy curves to PNG")
    parser.add_argument("--compare", action="store_true",
                        help="run the chapter's grid (sigmoid/relu × six optimizers), print a table")
    return parser


def load_split(data_dir, seed):
    """Fashion-MNIST scaled to [0, 1]: 80% train / 20% validation (48,000 / 12,000, seeded) and
    the test set."""
    (x, y), (x_test, y_test) = fastdnn.datasets.fashion_mnist.load_data(data_dir)
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = int(len(x) * VALIDATION_FRACTION)
    train, val = order[:-n_val], order[-n_val:]
    scale = np.float32(1 / 255)
    return ((x[train] * scale, y[train]), (x[val] * scale, y[val]),
            (x_test * scale, y_test))


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


def compare(args, data) -> None:
    """Train every activation/optimizer pair of the chapter and print one table."""
    print(f"{'activation':<10} {'optimizer':<9} {'train acc':>9} {'val acc':>8} {'val loss':>8} "
          f"{'s/epoch':>8}")
    for activation in ("sigmoid", "relu"):
        for optimizer in OPTIMIZERS:
            _, history, seconds = train(args, data, activation, optimizer, verbose=0)
            h = history.history
            print(f"{activation:<10} {optimizer:<9} {h['accuracy'][-1]:>9.4f} "
                  f"{h['val_accuracy'][-1]:>8.4f} {h['val_loss'][-1]:>8.4f} "
                  f"{seconds / len(history.epoch):>8.3f}", flush=True)


def plot(history, path) -> None:
    """Write loss and accuracy curves, train and validation, per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = np.arange(1, len(history.epoch) + 1)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        ax.plot(epochs, history.history[metric], "o-", label="train")
        ax.plot(epochs, history.history["val_" + metric], "s-", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_xticks(epochs)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("fastdnn on Fashion-MNIST")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error("--plot needs matplotlib: pip install 'fastdnn[plot]'")
    if args.save and not args.save.endswith(".fastdnn"):
        parser.error(f"--save needs a path ending in .fastdnn, got {args.save}")
    started = time.perf_counter()
    try:
        data = load_split(args.data_dir, args.seed)
    except OSError as e:
        print(f"fastdnn: {e}", file=sys.stderr)
        return 1
    if args.compare:
        compare(args, data)
    else:
        model, history, _ = train(args, data, args.activation, args.optimizer, verbose=1)
        x_test, y_test = data[2]
        test_loss, test_accuracy = model.evaluate(x_test, y_test, verbose=0)
        print(f"validation accuracy: {history.history['val_accuracy'][-1]:.4f}")
        print(f"test accuracy: {test_accuracy:.4f} (loss {test_loss:.4f})")
        if args.save:
            model.save(args.save)
            print(f"saved the model to {args.save}")
        if args.plot:
            plot(history, args.plot)
            print(f"wrote the curves to {args.plot}")
    print(f"wall time: {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
