"""The plan (``fastdnn._plan``): the ops a model's layers give, the fold of activations into dense
ops, the fusion of the output activation into the loss, the metric codes, and that a model keeps
its network while its plan is unchanged.
"""

import numpy as np
import pytest

import fastdnn as keras
from _api_helpers import fresh_names  # noqa: F401
from fastdnn import _kernels as K
from fastdnn import _plan, losses, metrics

pytestmark = pytest.mark.usefixtures("fresh_names")


def model_of(*layers, inputs=4):
    return keras.Sequential([keras.Input((inputs,))] + list(layers))


def plan_of(model, loss=None, metric_specs=()):
    return _plan.build(model._flat_layers(), model.input_shape[1:], model._trained_layers(),
                       loss, metric_specs, model.name, model.layers[-1].name)


def test_a_plan_lists_named_ops_with_offsets_into_the_parameter_buffer():
    model = model_of(keras.layers.Dense(3, "relu"), keras.layers.Dropout(0.25),
                     keras.layers.Dense(2, "softmax", use_bias=False))
    plan = plan_of(model, losses.SparseCategoricalCrossentropy())
    assert plan.ops == (_plan.Op(K.OP_DENSE, 3, K.RELU, 0.0, 0, 12),
                        _plan.Op(K.OP_DROPOUT, 3, K.LINEAR, 0.25),
                        _plan.Op(K.OP_DENSE, 2, K.SOFTMAX, 0.0, 15, -1))
    assert plan.n_inputs == 4 and plan.loss == K.LOSS_SPARSE_CE and plan.fused
    assert plan.trainable == (True, True, True) and plan.penalties == (None, None, None)
    assert model.count_params() == 15 + 3 * 2


def test_an_activation_layer_folds_into_the_linear_dense_op_before_it_unless_unfusable():
    model = model_of(keras.layers.Dense(3), keras.layers.Activation("tanh"),
                     keras.layers.Dense(3), keras.layers.LeakyReLU(negative_slope=0.5),
                     keras.layers.Activation("sigmoid"))
    kinds = [(op.kind, op.activation, op.param) for op in plan_of(model).ops]
    assert kinds == [(K.OP_DENSE, K.TANH, 0.0), (K.OP_DENSE, K.LINEAR, 0.0),
                     (K.OP_ACTIVATION, K.LEAKY_RELU, 0.5), (K.OP_ACTIVATION, K.SIGMOID, 0.0)]


def test_a_plan_that_only_predicts_has_no_loss_to_fuse():
    plan = plan_of(model_of(keras.layers.Dense(3, "softmax")))
    assert plan.loss == K.LOSS_MSE and not plan.fused


@pytest.mark.parametrize("loss, output, fused", [
    (losses.CategoricalCrossentropy(), "softmax", True),
    (losses.BinaryCrossentropy(), "sigmoid", True),
    (losses.BinaryCrossentropy(from_logits=True), "linear", False),
    (losses.MeanSquaredError(), "softmax", False),
], ids=["ce_softmax", "bce_sigmoid", "bce_from_logits", "mse"])
def test_the_output_activation_folds_into_a_matching_cross_entropy(loss, output, fused):
    assert plan_of(model_of(keras.layers.Dense(3, output)), loss).fused is fused


@pytest.mark.parametrize("layers", [
    [keras.layers.Dense(3, "relu")],
    [keras.layers.Dense(3, "softmax"), keras.layers.Dropout(0.5)],
], ids=["relu_output", "dropout_after_softmax"])
def test_a_cross_entropy_on_probabilities_needs_the_matching_output(layers):
    with pytest.raises(ValueError, match="expects a final softmax activation"):
        plan_of(model_of(*layers), losses.CategoricalCrossentropy())


def test_a_model_without_a_dense_layer_has_nothing_to_compute():
    with pytest.raises(ValueError, match="no Dense layer"):
        plan_of(model_of(keras.layers.Activation("relu")))


def test_frozen_layers_and_regularizers_are_in_the_plan():
    frozen = keras.layers.Dense(3, "relu")
    frozen.trainable = False
    model = model_of(frozen, keras.layers.Dense(
        2, kernel_regularizer=keras.regularizers.L2(0.1)))
    plan = plan_of(model)
    assert plan.trainable == (False, True)
    assert plan.penalties == (None, (0.0, 0.1, 0.0, 0.0))


@pytest.mark.parametrize("y_shape, outputs, sparse, code", [
    ((8,), 3, True, K.METRIC_SPARSE_ACC),
    ((8, 1), 3, True, K.METRIC_SPARSE_ACC),
    ((8, 3), 3, False, K.METRIC_CATEGORICAL_ACC),
    ((8, 1), 1, False, K.METRIC_BINARY_ACC),
], ids=["labels", "labels_column", "one_hot", "one_output"])
def test_accuracy_follows_keras_rule_for_the_targets_shape(y_shape, outputs, sparse, code):
    loss = losses.SparseCategoricalCrossentropy() if sparse else losses.BinaryCrossentropy()
    named = [("accuracy", metrics.get("accuracy"), False)]
    assert _plan.metric_specs(named, np.zeros(y_shape), outputs, loss) == [(code, 0, False)]


def test_a_metric_that_cannot_read_the_targets_is_refused():
    named = [("mae", metrics.get("mae"), True)]
    with pytest.raises(ValueError, match="needs targets shaped like the output"):
        _plan.metric_specs(named, np.zeros(8), 3, losses.SparseCategoricalCrossentropy())


def test_a_model_keeps_its_network_while_its_plan_is_unchanged():
    model = model_of(keras.layers.Dense(3, "relu"), keras.layers.Dense(2, "softmax"))
    model.compile("sgd", "sparse_categorical_crossentropy")
    x, y = np.ones((8, 4)), np.arange(8) % 2
    model.fit(x, y, verbose=0)
    first = model._network
    model.fit(x, y, verbose=0)
    assert model._network is first
    model.layers[0].trainable = False
    model.fit(x, y, verbose=0)
    assert model._network is not first
