"""The plan: what the kernels compute for a model, decided in one place.

Each layer contributes ops (``Layer.plan_ops``, made with ``dense``, ``activation``,
``dropout``, ``batch_normalization`` and ``normalization`` below); ``build`` lists them for the
model's layers, folds an activation into the dense op before it where the kernels can, picks the
loss and metric codes and decides whether the output activation folds into the cross-entropy
(``fuses_output``). The result, a ``Plan``, is all
``_kernels.Network`` (and its twin ``reference.Network``) is built from.

A new op kind: its code in the ``Op`` enum of ``_kernels.pyx``, a constructor here, its checks in
``_checked_ops`` (``kernels/network.pxi``), its forward and backward passes in the driver and in
``reference.Network``. A field an op kind needs goes at the end of ``Op`` with a default, which
``_checked_ops`` also gives shorter tuples, so that plans written as 6-tuples keep their meaning.
"""

from typing import NamedTuple

import numpy as np

from fastdnn import _kernels, metrics as metrics_module

__all__ = ["Op", "Plan", "dense", "activation", "dropout", "batch_normalization",
           "normalization", "build", "fuses_output", "metric_specs"]


class Op(NamedTuple):
    """One op of the plan, as the kernels read it (a plain tuple in this field order is read
    alike).

    Attributes:
        kind: ``OP_DENSE``, ``OP_ACTIVATION``, ``OP_DROPOUT``, ``OP_BATCH_NORMALIZATION`` or
            ``OP_NORMALIZATION``.
        units: the op's output width (any op's but a dense one's is its input's).
        activation: the activation code a dense or activation op applies (``LINEAR`` for none);
            a batch normalization's flags (``BN_SCALE | BN_CENTER``), a normalization's 1 to
            invert.
        param: an activation op's parameter (leaky_relu's negative slope) or a dropout op's rate;
            0.0 otherwise.
        kernel_offset: a dense op's kernel offset in the flat parameter buffer; a (batch)
            normalization's first weight; -1 otherwise.
        bias_offset: a dense op's bias offset, or -1 without bias.
    """

    kind: int
    units: int
    activation: int = _kernels.LINEAR
    param: float = 0.0
    kernel_offset: int = -1
    bias_offset: int = -1


def dense(units, activation_name, kernel_offset, bias_offset=-1) -> list:
    """The ops of a dense layer: one op, or two when the kernels cannot fuse its activation
    (gelu, silu, leaky_relu: a linear dense op then an activation op)."""
    code = _kernels.ACTIVATIONS[activation_name]
    if code not in _kernels.UNFUSED_ACTIVATIONS:
        return [Op(_kernels.OP_DENSE, units, code, 0.0, kernel_offset, bias_offset)]
    return [Op(_kernels.OP_DENSE, units, _kernels.LINEAR, 0.0, kernel_offset, bias_offset),
            activation(units, activation_name)]


def activation(width, activation_name, negative_slope=0.2) -> Op:
    """The op applying ``activation_name`` to ``width`` features (``negative_slope``:
    leaky_relu's)."""
    code = _kernels.ACTIVATIONS[activation_name]
    param = float(negative_slope) if code == _kernels.LEAKY_RELU else 0.0
    return Op(_kernels.OP_ACTIVATION, width, code, param)


def dropout(width, rate) -> Op:
    """The op dropping a ``rate`` fraction of ``width`` features (in training only)."""
    return Op(_kernels.OP_DROPOUT, width, _kernels.LINEAR, float(rate))


def batch_normalization(width, scale, center, offset) -> Op:
    """The op batch-normalizing ``width`` features, its weights from ``offset``: gamma (with
    ``scale``), beta (with ``center``), moving mean, moving variance."""
    flags = (_kernels.BN_SCALE if scale else 0) | (_kernels.BN_CENTER if center else 0)
    return Op(_kernels.OP_BATCH_NORMALIZATION, width, flags, 0.0, offset)


def normalization(width, invert, offset) -> Op:
    """The op standardizing ``width`` features (or, with ``invert``, undoing that) by the
    mean and variance from ``offset`` (then the count)."""
    return Op(_kernels.OP_NORMALIZATION, width, int(invert), 0.0, offset)


class Plan(NamedTuple):
    """Everything ``Network`` is built from but the parameters (hashable: a model keeps its
    network while its plan is unchanged).

    Attributes:
        n_inputs: features per sample.
        ops: the ``Op``s, input to output.
        trainable: per op, whether it takes optimizer steps.
        penalties: per op, a dense op's regularizer coefficients ``(kernel l1, kernel l2, bias
            l1, bias l2)`` or None.
        normalizations: per op, a (batch) normalization's ``(momentum, epsilon)`` or None.
        activities: per op, the activity regularizer's ``(l1, l2)`` on its output or None.
        loss: the loss code (``LOSS_MSE`` for a plan that only predicts).
        metrics: ``(code, k, weighted)`` per metric.
        fused: whether the last op's softmax or sigmoid folds into the loss.
    """

    n_inputs: int
    ops: tuple
    trainable: tuple
    penalties: tuple
    normalizations: tuple
    activities: tuple
    loss: int
    metrics: tuple
    fused: bool

    def network(self, engine, params, capacity, seed):
        """A new ``engine.Network`` (``fastdnn._kernels`` or ``fastdnn.reference``) for this
        plan on the flat buffer ``params``, its workspace sized for ``capacity`` rows."""
        return engine.Network(self.n_inputs, list(self.ops), params, self.loss,
                              list(self.metrics), self.fused, capacity, seed,
                              list(self.trainable), list(self.penalties),
                              normalizations=list(self.normalizations),
                              activities=list(self.activities))


def _ops(layers, n_inputs, trained):
    """The ops of ``layers`` (flat, built; ``plan_ops`` may give ``Op``s or tuples in its field
    order), an activation folded into the linear dense op before it when the kernels can (not
    when that op's output is regularized); per op whether it trains (a batch normalization:
    whether it runs in training mode), its penalty, its normalization settings, and the
    activity regularizer on a layer's last op."""
    ops, trains, penalties, norms, activities, width = [], [], [], [], [], n_inputs
    for layer in layers:
        for op in map(Op._make, layer.plan_ops(width, getattr(layer, "_offsets", []))):
            previous = ops[-1] if ops else None
            if (op.kind == _kernels.OP_ACTIVATION and previous is not None
                    and previous.kind == _kernels.OP_DENSE
                    and previous.activation == _kernels.LINEAR
                    and op.activation not in _kernels.UNFUSED_ACTIVATIONS
                    and activities[-1] is None):
                ops[-1] = previous._replace(activation=op.activation)
            else:
                ops.append(op)
                trains.append(id(layer) in trained)
                penalties.append(layer.penalty() if op.kind == _kernels.OP_DENSE else None)
                norms.append(layer.normalization())
                activities.append(None)
        if layer.activity() is not None:
            activities[-1] = layer.activity()
        width = layer.output_shape[-1]
    return ops, trains, penalties, norms, activities


def fuses_output(loss, last_op, output_name) -> bool:
    """Whether the output activation folds into ``loss`` (an exact cross-entropy from logits).

    Raises:
        ValueError: for a cross-entropy that expects probabilities from a model whose output
            is not the matching softmax or sigmoid (``output_name``: its last layer).
    """
    if loss.kind == _kernels.LOSS_MSE or loss.from_logits:
        return False
    ce = loss.kind in (_kernels.LOSS_SPARSE_CE, _kernels.LOSS_CE)
    matching = _kernels.SOFTMAX if ce else _kernels.SIGMOID
    if last_op.kind in (_kernels.OP_DENSE, _kernels.OP_ACTIVATION) and \
            last_op.activation == matching:
        return True
    raise ValueError(f"Loss {loss.name} with from_logits=False expects a final "
                     f"{'softmax' if ce else 'sigmoid'} activation; the model ends in "
                     f"'{output_name}'. Add that activation, or pass from_logits=True if the "
                     "output is logits.")


def _metric_code(metric, y_ndim, y_last, n_outputs, sparse_labels) -> int:
    """The kernels' code of ``metric`` for targets of rank ``y_ndim`` and last dimension
    ``y_last``. Keras' rule for ``'accuracy'``: a one-unit output → binary; targets of lower
    rank than the predictions, or with last dimension 1 against more outputs → sparse; else
    categorical.

    Raises:
        ValueError: for a metric that cannot read these targets (e.g. MAE against integer
            labels).
    """
    code = metric.code
    if isinstance(metric, metrics_module.Accuracy):
        if n_outputs == 1:
            code = _kernels.METRIC_BINARY_ACC
        elif y_ndim < 2 or (y_last == 1 and n_outputs > 1):
            code = _kernels.METRIC_SPARSE_ACC
        else:
            code = _kernels.METRIC_CATEGORICAL_ACC
    needs_labels = code in (_kernels.METRIC_SPARSE_ACC, _kernels.METRIC_SPARSE_TOP_K)
    # binary accuracy on one output reads a label as that output's target, as Keras
    if needs_labels != sparse_labels and not (code == _kernels.METRIC_BINARY_ACC
                                              and n_outputs == 1):
        kinds = {True: "integer labels", False: "targets shaped like the output"}
        raise ValueError(f"Metric {metric.name!r} needs {kinds[needs_labels]}; with this loss "
                         f"fastdnn reads {kinds[sparse_labels]}")
    return code


def metric_specs(named_metrics, y, n_outputs, loss) -> list:
    """``(code, k, weighted)`` of each of compile's metrics (``(name, Metric, weighted)``) for
    targets shaped like ``y`` and ``loss``."""
    shape = np.shape(y)
    sparse = loss.kind == _kernels.LOSS_SPARSE_CE
    return [(_metric_code(metric, len(shape), shape[-1], n_outputs, sparse),
             getattr(metric, "k", 0), weighted)
            for _, metric, weighted in named_metrics]


def build(layers, input_shape, trained, loss=None, metrics=(), model_name="model",
          output_name="output") -> Plan:
    """The plan of a model.

    Args:
        layers: the model's layers, flat (nested models' in their place), laid out.
        input_shape: one sample's shape.
        trained: the layers that take optimizer steps.
        loss: the compiled loss, or None for a plan that only predicts.
        metrics: ``(code, k, weighted)`` per metric (see ``metric_specs``).
        model_name, output_name: the model's and its last layer's names, for errors.

    Raises:
        ValueError: for a model without a dense layer, or an output that does not suit the
            loss (see ``fuses_output``).
    """
    n_inputs = int(np.prod(input_shape))
    ops, trains, penalties, norms, activities = _ops(layers, n_inputs,
                                                     {id(layer) for layer in trained})
    if not any(op.kind == _kernels.OP_DENSE for op in ops):
        raise ValueError(f"Model {model_name} has no Dense layer: nothing to compute")
    if loss is None:
        code, fused = _kernels.LOSS_MSE, False
    else:
        code, fused = loss.kind, fuses_output(loss, ops[-1], output_name)
    return Plan(n_inputs, tuple(ops), tuple(trains), tuple(penalties), tuple(norms),
                tuple(activities), code, tuple(tuple(spec) for spec in metrics), fused)
