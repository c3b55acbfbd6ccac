"""The loops of ``fit``, ``evaluate`` and ``predict`` over a model's ``Network``.

Each call into the kernels runs many batches without the GIL; these loops size the calls, keep
the running logs, drive the callbacks and the progress bar, and stop training at a batch whose
loss or step the kernels refused as non-finite. The model has checked the arguments, converted
the data (``fastdnn._inputs``) and made the network (``fastdnn._plan``) before.
"""

import math
import time

import numpy as np

from fastdnn import _inputs, _threads, callbacks as callbacks_module, metrics as metrics_module
from fastdnn._progbar import Progbar

__all__ = ["fit", "evaluate", "predict"]

# A call into the kernels runs about this long before fit returns to Python for progress
# (and for signals: Ctrl-C). The first call's batches are estimated from their flops (about 6
# per weight and sample: forward, backward, update) before a measured call can set the pace.
_SECONDS_PER_CALL = 0.05
_FIRST_CALL_FLOPS = 2e9


def _logs(loss_sum, sums, seen, named_metrics):
    """Running logs, in Keras' alphabetical order: the mean loss over ``seen`` samples and each
    metric's value from its sums (``sums``: (n_metrics, 2); ``named_metrics``: ``(name,
    Metric, weighted)`` each)."""
    logs = {"loss": loss_sum / seen}
    for (name, metric, _), metric_sums in zip(named_metrics, sums):
        logs[name] = metrics_module._value(metric, metric_sums)
    return dict(sorted(logs.items()))


def fit(model, network, data, val, batch_size, epochs, initial_epoch, shuffle, validation_freq,
        validation_batch_size, callbacks, verbose):
    """Train ``model`` through ``network`` on ``data`` (x, y, sample weights or None), validating
    on ``val`` (the same, or None); return its ``History``. The other arguments are ``fit``'s,
    checked."""
    steps = math.ceil(data[0].shape[0] / batch_size)
    batch_size = min(batch_size, data[0].shape[0])  # one batch of everything: same steps
    history = callbacks_module.History()
    progbar = [callbacks_module.ProgbarLogger()] if _inputs.verbose_level(verbose) else []
    automatic = [history] + progbar
    cb = callbacks_module.CallbackList(callbacks, model, {"verbose": verbose, "epochs": epochs,
                                                          "steps": steps}, automatic)
    model.stop_training = False
    fitting, model._fitting = model._fitting, True
    try:
        cb.on_train_begin()
        with _threads.single_threaded_blas():
            logs = _run_epochs(model, network, data, val, batch_size, steps, initial_epoch,
                               epochs, shuffle, validation_freq, validation_batch_size, cb)
        cb.on_train_end(logs)
    finally:
        model._fitting = fitting
    return history


def _run_epochs(model, network, data, val, batch_size, steps, initial_epoch, epochs, shuffle,
                validation_freq, validation_batch_size, cb):
    """The epoch loop of ``fit``; return the last epoch's logs."""
    n = data[0].shape[0]
    every_batch = cb.wants_every_batch()
    loss_out = np.zeros(steps)
    metric_out = np.zeros((steps, len(model._named_metrics), 2))
    logs = {}
    for epoch in range(initial_epoch, epochs):
        cb.on_epoch_begin(epoch)
        order = np.random.permutation(n).astype(np.int64) if shuffle else None
        logs = _train_epoch(model, network, data, order, batch_size, steps, cb, every_batch,
                            loss_out, metric_out)
        if val is not None and (epoch + 1) % validation_freq == 0:
            val_logs = _evaluate_arrays(model, network, *val, cb, validation_batch_size)
            logs.update({"val_" + k: v for k, v in val_logs.items()})
        logs = dict(sorted(logs.items()))
        cb.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    return logs


def _train_epoch(model, network, data, order, batch_size, steps, cb, every_batch, loss_out,
                 metric_out):
    """Run one epoch in calls of many batches; return the epoch's logs (running means)."""
    x, y, weights = data
    n = x.shape[0]
    optimizer = model.optimizer
    batch, seen, loss_sum = 0, 0, 0.0
    sums = np.zeros(metric_out.shape[1:])
    # batch by batch for batch hooks, or a learning rate computed in Python per step
    one_at_a_time = every_batch or optimizer.steps_in_python()
    chunk = 1 if one_at_a_time else max(1, min(8, int(
        _FIRST_CALL_FLOPS / (6 * batch_size * model.params.size))))
    logs = {}
    while batch < steps and not model.stop_training:
        count = min(chunk, steps - batch)
        if every_batch:
            cb.on_train_batch_begin(batch)
        started = time.perf_counter()
        # read at every call: a callback may have changed the learning rate
        done, _ = network.train(x, y, order, batch_size, batch, count, optimizer.settings(),
                                optimizer.slots, optimizer.iteration_buffer,
                                loss_out[batch:batch + count], metric_out[batch:batch + count],
                                weights)
        elapsed = time.perf_counter() - started
        ran = min(count, done + 1)  # a stopped call still reports its bad batch
        loss_sum += float(loss_out[batch:batch + ran].sum())
        sums += metric_out[batch:batch + ran].sum(axis=0)
        seen += min(n, (batch + ran) * batch_size) - batch * batch_size
        batch += ran
        logs = _logs(loss_sum, sums, seen, model._named_metrics)
        cb.on_train_batch_end(batch - 1, logs)
        if done < count and not model.stop_training:
            what = ("loss" if not np.isfinite(loss_out[batch - 1]) else
                    "step (it would make weights or optimizer slots NaN or infinite)")
            print(f"Batch {batch - 1}: Invalid {what}, terminating training", flush=True)
            model.stop_training = True
        if not one_at_a_time:
            per_batch = max(elapsed / count, 1e-7)
            chunk = max(1, min(steps, int(_SECONDS_PER_CALL / per_batch)))
    return logs


def _evaluate_arrays(model, network, x, y, weights, cb, batch_size):
    """Loss and metrics over x, y (weighted unless ``weights`` is None) in inference mode,
    with the test hooks: one call into the kernels, or one per batch when a callback has
    test batch hooks (they see running logs)."""
    n = x.shape[0]
    step = batch_size if cb.wants_every_batch("test") else n
    loss_sum, sums = 0.0, np.zeros((len(model._named_metrics), 2))
    cb.on_test_begin()
    for start in range(0, n, step):
        if step < n:
            cb.on_test_batch_begin(start // step)
        part = slice(start, start + step)
        batch_loss, batch_sums = network.evaluate(
            x[part], y[part], None if weights is None else weights[part])
        loss_sum, sums = loss_sum + batch_loss, sums + batch_sums
        logs = _logs(loss_sum, sums, min(n, start + step), model._named_metrics)
        if step < n:
            cb.on_test_batch_end(start // step, logs)
    cb.on_test_end(logs)
    return logs


def evaluate(model, network, data, batch_size, callbacks, verbose):
    """The logs of ``model`` on ``data`` (x, y, sample weights or None) through ``network``, in
    inference mode, with the test hooks and a progress bar."""
    n_steps = math.ceil(data[0].shape[0] / batch_size)
    cb = callbacks_module.CallbackList(callbacks, model,
                                       {"verbose": verbose, "epochs": 1, "steps": n_steps})
    bar = Progbar(n_steps, _inputs.verbose_level(verbose))
    with _threads.single_threaded_blas():
        logs = _evaluate_arrays(model, network, *data, cb, batch_size)
    bar.update(n_steps, list(logs.items()), finalize=True)
    return logs


def predict(model, network, x, batch_size, callbacks, verbose):
    """The outputs of ``model`` for ``x`` through ``network``, with the predict hooks (one call
    into the kernels, or one per batch when a callback has predict batch hooks) and a progress
    bar."""
    n = x.shape[0]
    out = np.empty((n, network.n_outputs), x.dtype)
    n_steps = math.ceil(n / batch_size)
    cb = callbacks_module.CallbackList(callbacks, model,
                                       {"verbose": verbose, "epochs": 1, "steps": n_steps})
    step = batch_size if cb.wants_every_batch("predict") else n
    bar = Progbar(n_steps, _inputs.verbose_level(verbose))
    cb.on_predict_begin()
    with _threads.single_threaded_blas():
        for start in range(0, n, step):
            if step < n:
                cb.on_predict_batch_begin(start // step)
            network.predict(x[start:start + step], out[start:start + step])
            if step < n:
                cb.on_predict_batch_end(start // step, {"outputs": out[start:start + step]})
    cb.on_predict_end()
    bar.update(n_steps, [], finalize=True)
    return out
