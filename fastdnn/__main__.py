"""The command line: train the textbook chapter's networks on Fashion-MNIST.

    python -m fastdnn                      # Flatten → Dense(100, relu) → Dense(10, softmax), Adam
    python -m fastdnn --activation sigmoid --optimizer rmsprop
    python -m fastdnn --compare            # the chapter's grid: activations × optimizers
    python -m fastdnn --compare --scheduler dask   # ... on a local Dask cluster
    python -m fastdnn --plot history.png   # loss/accuracy curves (needs matplotlib)
"""

import argparse
import sys
import time

import numpy as np

import fastdnn
from fastdnn import _grid
from fastdnn._chapter import ACTIVATIONS, GRID, OPTIMIZERS, fit_point, train

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


def _scheduler(text):
    try:
        return _grid.check_scheduler(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


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
    parser.add_argument("--plot", metavar="PNG",
                        help="plot loss and accuracy curves to PNG (with --compare: the grid's "
                             "validation curves)")
    parser.add_argument("--compare", action="store_true",
                        help="run the chapter's grid (sigmoid/relu × six optimizers), print a table")
    parser.add_argument("--scheduler", type=_scheduler, default=_grid.IN_PROCESS,
                        metavar="WHERE",
                        help="where --compare trains: in-process (default), processes (a local "
                             "pool), dask (a new local Dask cluster) or tcp://HOST:PORT (a Dask "
                             "cluster's scheduler); the same numbers everywhere")
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


def compare(args, data, say=None) -> list:
    """Train the chapter's grid where ``args.scheduler`` says and print one table (in grid order;
    in-process its rows come as the points finish, elsewhere one progress line per finished
    point goes to stderr first).

    Args:
        args: the command line's arguments (epochs, batch size, seed, ... and the scheduler).
        data: ``((x, y), (x_val, y_val), test)``, as ``load_split`` returns.
        say: called with each progress line. Defaults to printing on stderr.

    Returns:
        One dict per grid point, in grid order: activation, optimizer, history (the
        ``History.history`` dict) and seconds of training.
    """
    say = say or (lambda text: print(text, file=sys.stderr, flush=True))
    (x, y), (x_val, y_val), _ = data
    in_process = args.scheduler == _grid.IN_PROCESS
    results = [None] * len(GRID)
    if in_process:
        _print_header()
    with _grid.scheduler(args.scheduler, say) as run:
        points = [(args, activation, optimizer) for activation, optimizer in GRID]
        for done, (index, result) in enumerate(run(fit_point, points, x, y, x_val, y_val), 1):
            activation, optimizer = GRID[index]
            results[index] = {"activation": activation, "optimizer": optimizer, **result}
            if in_process:
                _print_row(results[index])
            else:
                say(f"[{done:>2}/{len(GRID)}] {activation} {optimizer}: val acc "
                    f"{result['history']['val_accuracy'][-1]:.4f} in {result['seconds']:.2f} s")
    if not in_process:
        _print_header()
        for result in results:
            _print_row(result)
    return results


def _print_header():
    print(f"{'activation':<10} {'optimizer':<9} {'train acc':>9} {'val acc':>8} {'val loss':>8} "
          f"{'s/epoch':>8}", flush=True)


def _print_row(result):
    h = result["history"]
    print(f"{result['activation']:<10} {result['optimizer']:<9} {h['accuracy'][-1]:>9.4f} "
          f"{h['val_accuracy'][-1]:>8.4f} {h['val_loss'][-1]:>8.4f} "
          f"{result['seconds'] / len(h['loss']):>8.3f}", flush=True)


def plot_grid(results, path) -> None:
    """Write the grid's validation loss and accuracy per epoch, one curve per point (a colour per
    optimizer, a line style per activation), in one figure."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 5), layout="constrained")
    colours = dict(zip(OPTIMIZERS, plt.get_cmap("tab10").colors))
    styles = {"sigmoid": "--", "relu": "-"}
    for result in results:
        h = result["history"]
        epochs = np.arange(1, len(h["val_loss"]) + 1)
        for ax, metric in zip(axes, ("val_loss", "val_accuracy")):
            ax.plot(epochs, h[metric], styles.get(result["activation"], ":"), marker="o",
                    markersize=3, color=colours[result["optimizer"]],
                    label=f"{result['activation']} {result['optimizer']}")
    for ax, metric in zip(axes, ("validation loss", "validation accuracy")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_xticks(epochs)
        ax.grid(alpha=0.3)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=6,
               fontsize=8)
    fig.suptitle("fastdnn on Fashion-MNIST: the chapter's grid")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot(history, path) -> None:
    """Write loss and accuracy curves, train and validation, per epoch."""
    plt = _pyplot()
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
    if args.scheduler != _grid.IN_PROCESS and not args.compare:
        parser.error("--scheduler applies to --compare")
    try:
        _grid.check_installed(args.scheduler)
    except ImportError as e:
        parser.error(str(e))
    started = time.perf_counter()
    try:
        data = load_split(args.data_dir, args.seed)
    except OSError as e:
        print(f"fastdnn: {e}", file=sys.stderr)
        return 1
    if args.compare:
        try:
            results = compare(args, data)
        except OSError as e:  # a Dask scheduler that cannot be reached
            print(f"fastdnn: {e}", file=sys.stderr)
            return 1
        if args.plot:
            plot_grid(results, args.plot)
            print(f"wrote the grid's validation curves to {args.plot}")
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
