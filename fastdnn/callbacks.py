"""Callbacks, as in ``keras.callbacks``: hooks into ``fit``, ``evaluate`` and ``predict``.

fastdnn runs many batches per call into compiled code. Batch hooks are still honoured: when a
callback overrides one, ``fit`` runs one batch per call and calls it after every batch; otherwise
batch-end hooks (the progress bar's) run after each group of batches, with the running logs.
"""

import collections.abc
import csv
import math
import os
import sys
import warnings

import numpy as np

from fastdnn._progbar import Progbar

__all__ = ["Callback", "CallbackList", "History", "ProgbarLogger", "EarlyStopping",
           "ModelCheckpoint", "TerminateOnNaN", "ReduceLROnPlateau", "LearningRateScheduler",
           "CSVLogger", "LambdaCallback"]

_BATCH_HOOKS = {
    "train": ("on_train_batch_begin", "on_train_batch_end", "on_batch_begin", "on_batch_end"),
    "test": ("on_test_batch_begin", "on_test_batch_end"),
    "predict": ("on_predict_batch_begin", "on_predict_batch_end"),
}


class Callback:
    """Base class: every hook does nothing. ``self.model`` and ``self.params`` are set by ``fit``.

    Hooks (all take ``logs=None``): ``on_{train,test,predict}_begin/_end``,
    ``on_epoch_begin/_end(epoch)``, ``on_{train,test,predict}_batch_begin/_end(batch)``, and the
    older ``on_batch_begin/_end``, which the default ``on_train_batch_*`` call.
    """

    # Whether fit must call the training batch hooks after every batch, not after groups of
    # batches (None: decide from which hooks the class overrides).
    needs_every_batch = None

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        """Attach the model being trained."""
        self.model = model

    def set_params(self, params):
        """Attach fit's parameters: ``{'verbose', 'epochs', 'steps'}``."""
        self.params = params

    def wants_every_batch(self, stage: str = "train") -> bool:
        """Whether this callback overrides a batch hook of ``stage`` ('train', 'test' or
        'predict'), so that the kernels must return to Python after every batch."""
        if stage == "train" and self.needs_every_batch is not None:
            return self.needs_every_batch
        return any(getattr(type(self), h) is not getattr(Callback, h) for h in _BATCH_HOOKS[stage])

    def on_train_begin(self, logs=None): ...
    def on_train_end(self, logs=None): ...
    def on_epoch_begin(self, epoch, logs=None): ...
    def on_epoch_end(self, epoch, logs=None): ...
    def on_test_begin(self, logs=None): ...
    def on_test_end(self, logs=None): ...
    def on_predict_begin(self, logs=None): ...
    def on_predict_end(self, logs=None): ...
    def on_batch_begin(self, batch, logs=None): ...
    def on_batch_end(self, batch, logs=None): ...
    def on_test_batch_begin(self, batch, logs=None): ...
    def on_test_batch_end(self, batch, logs=None): ...
    def on_predict_batch_begin(self, batch, logs=None): ...
    def on_predict_batch_end(self, batch, logs=None): ...

    def on_train_batch_begin(self, batch, logs=None):
        """Called before a training batch; calls ``on_batch_begin`` by default."""
        self.on_batch_begin(batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        """Called after a training batch; calls ``on_batch_end`` by default."""
        self.on_batch_end(batch, logs)


class CallbackList:
    """Calls a list of callbacks in order, one hook at a time."""

    def __init__(self, callbacks, model, params, automatic=()):
        """Args: the user's ``callbacks`` (a list, or None), the model, fit's params, and the
        automatic callbacks (History, ProgbarLogger) that run after the user's."""
        callbacks = [] if callbacks is None else callbacks
        if not isinstance(callbacks, (list, tuple)):
            raise TypeError(f"`callbacks` must be a list of callbacks, got {type(callbacks).__name__}")
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise TypeError("`callbacks` must hold fastdnn.callbacks.Callback instances, got "
                                f"{cb!r} (of type {type(cb).__name__})")
        self.callbacks = list(callbacks) + list(automatic)
        for cb in self.callbacks:
            cb.set_model(model)
            cb.set_params(params)

    def wants_every_batch(self, stage: str = "train") -> bool:
        """Whether any callback needs its ``stage`` batch hooks after every batch."""
        return any(cb.wants_every_batch(stage) for cb in self.callbacks)

    def __getattr__(self, hook):
        if not hook.startswith("on_"):
            raise AttributeError(hook)

        indexed = "epoch" in hook or "batch" in hook

        def call(*args, **kwargs):
            # every hook gets its logs ({} when none), as Keras passes them: function callbacks
            # (LambdaCallback) declare them without a default
            if "logs" not in kwargs and len(args) < 1 + indexed:
                kwargs["logs"] = {}
            for cb in self.callbacks:
                getattr(cb, hook)(*args, **kwargs)
        return call


class History(Callback):
    """Records every epoch's logs: ``history.history`` maps each metric to a list of floats.

    ``fit`` adds one automatically and returns it.
    """

    needs_every_batch = False

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)
        self.model.history = self


class ProgbarLogger(Callback):
    """Prints Keras' progress bar (``verbose=1``) or one line per epoch (``verbose=2``).

    Redraws in place only on a terminal; into a pipe or a file it writes each finished line once,
    as plain text. ``fit`` adds one automatically when ``verbose`` is not 0.
    """

    needs_every_batch = False

    def __init__(self):
        super().__init__()
        self.progbar = None
        self.seen = 0
        self._keys = []

    def _values(self, logs):
        for key in sorted(logs or {}):
            if key not in self._keys:
                self._keys.append(key)
        return [(k, logs[k]) for k in self._keys if k in (logs or {})]

    def on_epoch_begin(self, epoch, logs=None):
        verbose, epochs = self.params.get("verbose", 1), self.params.get("epochs", 1)
        verbose = 1 if verbose == "auto" else verbose
        if epochs > 1:
            print(f"Epoch {epoch + 1}/{epochs}", flush=True)
        self.progbar = Progbar(self.params.get("steps") or 1, verbose=verbose)
        self.seen = 0
        self._keys = []

    def on_train_batch_end(self, batch, logs=None):
        self.seen = batch + 1
        self.progbar.update(self.seen, self._values(logs), finalize=False)

    def on_epoch_end(self, epoch, logs=None):
        self.progbar.update(self.seen, self._values(logs), finalize=True)


def _monitor_direction(monitor, mode):
    """Return +1 when higher is better for ``monitor``, -1 when lower is better."""
    if mode == "max":
        return 1
    if mode == "min":
        return -1
    base = monitor[4:] if monitor.startswith("val_") else monitor
    if base == "loss" or base in ("mse", "mean_squared_error"):
        return -1
    if "acc" in base:
        return 1
    raise ValueError(f"EarlyStopping callback received monitor={monitor}, but it isn't able to "
                     "automatically determine whether that metric should be maximized or "
                     "minimized. Pass `mode='max'` in order to monitor based on the highest "
                     "metric value, or pass `mode='min'` in order to use the lowest value.")


class _Monitor(Callback):
    """Shared by EarlyStopping and ModelCheckpoint: which value, which direction, is it better."""

    def __init__(self, monitor, mode, min_delta=0.0, baseline=None):
        super().__init__()
        if mode not in ("auto", "min", "max"):
            warnings.warn(f"{type(self).__name__} mode {mode} is unknown, fallback to auto mode.")
            mode = "auto"
        self.monitor = monitor
        self.mode = mode
        self.min_delta = abs(min_delta)
        self.baseline = baseline
        self._direction = None

    def _is_better(self, value, reference):
        if self._direction is None:
            self._direction = _monitor_direction(self.monitor, self.mode)
        if reference is None:
            return True
        if self._direction > 0:
            return value - self.min_delta > reference
        return value + self.min_delta < reference


class EarlyStopping(_Monitor):
    """Stops training when a monitored value has stopped improving.

    Args:
        monitor: Defaults to ``'val_loss'``.
        min_delta: smallest change that counts as an improvement. Defaults to 0.
        patience: epochs without improvement before stopping. Defaults to 0.
        verbose: 1 prints a message when stopping. Defaults to 0.
        mode: ``'auto'``, ``'min'`` or ``'max'``. Defaults to ``'auto'``.
        baseline: a value the monitor must beat. Defaults to None.
        restore_best_weights: restore the weights of the best epoch at the end. Defaults to False.
        start_from_epoch: epochs to wait before monitoring. Defaults to 0.
    """

    needs_every_batch = False

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto",
                 baseline=None, restore_best_weights=False, start_from_epoch=0):
        super().__init__(monitor, mode, min_delta, baseline)
        self.patience = patience
        self.verbose = verbose
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = start_from_epoch

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0

    def on_epoch_end(self, epoch, logs=None):
        current = (logs or {}).get(self.monitor)
        if current is None:
            warnings.warn(f"Early stopping conditioned on metric `{self.monitor}` which is not "
                          f"available. Available metrics are: {','.join(logs or {})}")
            return
        if epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        self.wait += 1
        if self._is_better(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._is_better(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print("Restoring model weights from the end of the best epoch: "
                      f"{self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


class ModelCheckpoint(_Monitor):
    """Saves the model (or its weights) during training.

    A whole model goes to a ``.keras`` file (Keras 3's format) or a ``.fastdnn`` file, the
    weights alone to a ``.weights.h5`` or ``.weights.fastdnn`` file. Writes are atomic.

    Args:
        filepath: path, formatted with ``epoch`` (1-based), ``batch`` and the logs, e.g.
            ``'ep{epoch:02d}-{val_loss:.2f}.keras'``. Missing folders are created.
        monitor: Defaults to ``'val_loss'``.
        verbose: 1 prints a message at each save. Defaults to 0.
        save_best_only: save only when the monitor improves. Defaults to False.
        save_weights_only: Defaults to False.
        mode: ``'auto'``, ``'min'`` or ``'max'``. Defaults to ``'auto'``.
        save_freq: ``'epoch'`` or a number of batches. Defaults to ``'epoch'``.
        initial_value_threshold: the value to beat first. Defaults to None.
    """

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False,
                 save_weights_only=False, mode="auto", save_freq="epoch",
                 initial_value_threshold=None):
        super().__init__(monitor, mode)
        filepath = os.fspath(filepath)
        if save_weights_only and not filepath.endswith((".weights.h5", ".weights.fastdnn")):
            raise ValueError("When using `save_weights_only=True` in `ModelCheckpoint`, the "
                             "filepath provided must end in `.weights.h5` (Keras weights "
                             "format) or `.weights.fastdnn`. Received: "
                             f"filepath={filepath}")
        if not save_weights_only and not filepath.endswith((".keras", ".fastdnn")):
            raise ValueError("The filepath provided must end in `.keras` (Keras model format) "
                             f"or `.fastdnn`. Received: filepath={filepath}")
        if save_freq != "epoch" and not (isinstance(save_freq, int) and save_freq > 0):
            raise ValueError(f"Unrecognized save_freq: {save_freq}. Expected save_freq are "
                             "'epoch' or integer values")
        self.filepath = filepath
        self.verbose = verbose
        self.save_best_only = save_best_only
        self.save_weights_only = save_weights_only
        self.save_freq = save_freq
        self.best = initial_value_threshold
        self.needs_every_batch = save_freq != "epoch"
        self._batches = 0
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq != "epoch":
            self._batches += 1
            if self._batches % self.save_freq == 0:
                self._save(self._epoch, logs, batch)

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._save(epoch, logs)

    def _path(self, epoch, logs, batch):
        try:
            extra = {} if batch is None else {"batch": batch + 1}
            return self.filepath.format(epoch=epoch + 1, **extra, **(logs or {}))
        except KeyError as e:
            raise KeyError(f'Failed to format this callback filepath: "{self.filepath}". '
                           f"Reason: {e}") from e

    def _save(self, epoch, logs, batch=None):
        path = self._path(epoch, logs, batch)
        if self.save_best_only:
            current = (logs or {}).get(self.monitor)
            if current is None:
                warnings.warn(f"Can save best model only with {self.monitor} available.")
            elif not self._is_better(current, self.best):
                if self.verbose > 0:
                    print(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from "
                          f"{self.best:.5f}")
                return
            else:
                if self.verbose > 0:
                    best = "None" if self.best is None else f"{self.best:.5f}"
                    print(f"\nEpoch {epoch + 1}: {self.monitor} improved from {best} to "
                          f"{current:.5f}, saving model to {path}")
                self.best = current
        elif self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: saving model to {path}")
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: finished saving model to {path}")


class TerminateOnNaN(Callback):
    """Stops training when the loss becomes NaN or infinite.

    fastdnn stops on a non-finite loss even without this callback, before applying that batch's
    update, so the weights stay those of the last good step; this callback adds Keras' message
    and the ``raise_error`` option.

    Args:
        raise_error: raise ``RuntimeError`` instead of stopping quietly. Defaults to False.
    """

    needs_every_batch = False

    def __init__(self, raise_error=False):
        super().__init__()
        self.raise_error = raise_error

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            if self.raise_error:
                raise RuntimeError(f"NaN or Inf found in loss at batch {batch}: {loss}")
            print(f"Batch {batch}: Invalid loss, terminating training", file=sys.stdout)
            self.model.stop_training = True




def _current_learning_rate(model) -> float:
    """The optimizer's learning rate as Keras reads it back (a float32 variable)."""
    return float(np.float32(model.optimizer.learning_rate))


class ReduceLROnPlateau(Callback):
    """Multiplies the learning rate by ``factor`` when a monitored value has stopped improving
    for ``patience`` epochs; adds ``learning_rate`` to each epoch's logs.

    Args:
        monitor: Defaults to ``'val_loss'``.
        factor: ``new_lr = lr * factor``, below 1. Defaults to 0.1.
        patience: epochs without improvement before reducing. Defaults to 10.
        verbose: 1 prints a message at each reduction. Defaults to 0.
        mode: ``'auto'`` (higher is better if the name contains "acc"), ``'min'`` or ``'max'``.
            Defaults to ``'auto'``.
        min_delta: smallest change that counts as an improvement. Defaults to 1e-4.
        cooldown: epochs to wait after a reduction before counting again. Defaults to 0.
        min_lr: lower bound on the learning rate. Defaults to 0.0.

    Raises:
        ValueError: for ``factor >= 1``.
    """

    needs_every_batch = False

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto",
                 min_delta=1e-4, cooldown=0, min_lr=0.0, **kwargs):
        super().__init__()
        if factor >= 1.0:
            raise ValueError("ReduceLROnPlateau does not support a factor >= 1.0. Received "
                             f"factor={factor}")
        self.monitor, self.factor, self.min_lr, self.min_delta = monitor, factor, min_lr, min_delta
        self.patience, self.verbose, self.cooldown, self.mode = patience, verbose, cooldown, mode
        self._reset()

    def _reset(self):
        if self.mode not in ("auto", "min", "max"):
            warnings.warn(f"Learning rate reduction mode {self.mode} is unknown, fallback to auto "
                          "mode.", stacklevel=2)
            self.mode = "auto"
        self._lower_is_better = self.mode == "min" or (self.mode == "auto"
                                                       and "acc" not in self.monitor)
        self.best = np.inf if self._lower_is_better else -np.inf
        self.cooldown_counter = 0
        self.wait = 0

    def _improved(self, current):
        if self._lower_is_better:
            return current < self.best - self.min_delta
        return current > self.best + self.min_delta

    def in_cooldown(self) -> bool:
        """Whether the callback is waiting after a reduction."""
        return self.cooldown_counter > 0

    def on_train_begin(self, logs=None):
        self._reset()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        logs["learning_rate"] = _current_learning_rate(self.model)
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(f"Learning rate reduction is conditioned on metric `{self.monitor}` "
                          f"which is not available. Available metrics are: {','.join(logs)}.",
                          stacklevel=2)
            return
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improved(current):
            self.best = current
            self.wait = 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience:
                old_lr = _current_learning_rate(self.model)
                if old_lr > np.float32(self.min_lr):
                    new_lr = max(old_lr * self.factor, self.min_lr)
                    self.model.optimizer.learning_rate = new_lr
                    if self.verbose > 0:
                        print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to "
                              f"{new_lr}.")
                    self.cooldown_counter = self.cooldown
                    self.wait = 0


class LearningRateScheduler(Callback):
    """Sets the learning rate at the start of every epoch to ``schedule(epoch, lr)`` (or
    ``schedule(epoch)``, the older form); adds ``learning_rate`` to each epoch's logs.

    Args:
        schedule: function of the epoch index (from 0) and the current learning rate (float),
            returning the new learning rate (float).
        verbose: 1 prints the new learning rate each epoch. Defaults to 0.

    Raises:
        ValueError: (in ``fit``) if the schedule returns something other than a float.
    """

    needs_every_batch = False

    def __init__(self, schedule, verbose=0):
        super().__init__()
        self.schedule = schedule
        self.verbose = verbose

    def on_epoch_begin(self, epoch, logs=None):
        try:
            learning_rate = self.schedule(epoch, _current_learning_rate(self.model))
        except TypeError:
            learning_rate = self.schedule(epoch)
        if not isinstance(learning_rate, (float, np.float32, np.float64)):
            raise ValueError("The output of the `schedule` function should be a float. "
                             f"Got: {learning_rate}")
        self.model.optimizer.learning_rate = float(learning_rate)
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to "
                  f"{learning_rate}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = _current_learning_rate(self.model)


class CSVLogger(Callback):
    """Writes each epoch's logs as a row of a CSV file: ``epoch`` then the log keys, sorted.

    Args:
        filename: path of the CSV file.
        separator: Defaults to ``','``.
        append: append to an existing file (its header is kept) instead of overwriting it.
            Defaults to False.
    """

    needs_every_batch = False

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.filename = os.fspath(filename)
        self.sep = separator
        self.append = append
        self.keys = None
        self.writer = None
        self.csv_file = None
        self.append_header = True

    def on_train_begin(self, logs=None):
        if self.append and os.path.exists(self.filename):
            with open(self.filename) as f:
                self.append_header = not f.readline()
        if self.csv_file is not None and not self.csv_file.closed:
            self.csv_file.close()
        self.csv_file = open(self.filename, "a" if self.append else "w", newline="")
        self.writer = None
        self.keys = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
        if self.writer is None:
            class Dialect(csv.excel):
                delimiter = self.sep

            self.writer = csv.DictWriter(self.csv_file, fieldnames=["epoch"] + self.keys,
                                         dialect=Dialect)
            if self.append_header:
                self.writer.writeheader()
        row = {"epoch": epoch}
        row.update((key, _csv_value(logs.get(key, "NA"))) for key in self.keys)
        self.writer.writerow(row)
        self.csv_file.flush()

    def on_train_end(self, logs=None):
        if self.csv_file is not None and not self.csv_file.closed:
            self.csv_file.close()
        self.writer = None


def _csv_value(value):
    """A log value as CSVLogger writes it: 1-D iterables as ``"[a, b]"``, the rest as is."""
    if isinstance(value, str) or (isinstance(value, np.ndarray) and value.ndim == 0):
        return value
    if isinstance(value, collections.abc.Iterable):
        return f'"[{", ".join(map(str, value))}]"'
    return value


class LambdaCallback(Callback):
    """A callback made of functions, as Keras': ``on_epoch_begin(epoch, logs)``,
    ``on_epoch_end(epoch, logs)``, ``on_train_begin(logs)``, ``on_train_end(logs)``,
    ``on_train_batch_begin(batch, logs)``, ``on_train_batch_end(batch, logs)``, and any other
    hook passed by name (``on_test_end=...``).

    Args:
        on_epoch_begin, on_epoch_end, on_train_begin, on_train_end, on_train_batch_begin,
            on_train_batch_end: functions, or None. Default to None.
        **kwargs: other hooks, ``name=function``.
    """

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_begin=None,
                 on_train_end=None, on_train_batch_begin=None, on_train_batch_end=None, **kwargs):
        super().__init__()
        self.__dict__.update(kwargs)
        hooks = {"on_epoch_begin": on_epoch_begin, "on_epoch_end": on_epoch_end,
                 "on_train_begin": on_train_begin, "on_train_end": on_train_end,
                 "on_train_batch_begin": on_train_batch_begin,
                 "on_train_batch_end": on_train_batch_end}
        self.__dict__.update({k: v for k, v in hooks.items() if v is not None})

    def wants_every_batch(self, stage: str = "train") -> bool:
        return any(h in self.__dict__ for h in _BATCH_HOOKS[stage])
