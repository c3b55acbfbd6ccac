"""Activity regularizers, as Keras 3: ``Dense(..., activity_regularizer=r)`` adds ``r(output) /
batch size`` to each batch's loss (and to evaluate's), its gradient to the backward pass. The
kernels against the reference and finite differences (float64); the model's loss against the
formula written out; the configuration through both file formats.
"""

import numpy as np
import pytest

import fastdnn as keras
from _api_helpers import fresh_names  # noqa: F401
from _helpers import assert_gradient_close, init_params, init_slots, network_data, numerical_gradient
from fastdnn import _kernels as kernels
from fastdnn import reference

LAYERS = [("dense", 6, "tanh", True), ("dense", 5, "linear", True), ("activation", "relu"),
          ("dense", 2, "linear", True)]
ACTIVITIES = [(0.01, 0.02), (0.0, 0.05), None, (0.03, 0.0)]  # the last op: the output's


def network(engine, params, n):
    ops = init_params(np.random.default_rng(0), 4, LAYERS, np.float64)[0]
    return engine.Network(4, ops, params, kernels.LOSS_MSE, kernels.METRIC_NONE, False, n, 0,
                          activities=ACTIVITIES)


def test_activity_gradient_matches_finite_differences(engine):
    rng = np.random.default_rng(1)
    params = init_params(rng, 4, LAYERS, np.float64)[1]
    x, y = network_data(rng, kernels.LOSS_MSE, 5, 4, 2)

    def loss():  # the batch's mean loss with its penalties (no dropout: as in training)
        return network(engine, params, 5).evaluate(x, y)[0] / 5

    numeric = numerical_gradient(loss, params)
    trained = params.copy()
    opt = {"kind": "sgd", "learning_rate": 1.0}
    network(engine, trained, 5).train(x, y, None, 5, 0, 1, opt, init_slots(opt, params.size,
                                                                            np.float64), 0,
                                      np.zeros(1), np.zeros(1))
    assert_gradient_close(params - trained, numeric)


def test_activity_penalty_in_the_loss_matches_the_reference():
    rng = np.random.default_rng(2)
    params = init_params(rng, 4, LAYERS, np.float64)[1]
    x, y = network_data(rng, kernels.LOSS_MSE, 40, 4, 2)
    results = []
    for engine in (kernels, reference):
        mine = params.copy()
        net = network(engine, mine, 16)
        opt = {"kind": "adam", "learning_rate": 0.01}
        losses = np.zeros(3)
        net.train(x, y, np.arange(40, dtype=np.int64)[::-1].copy(), 16, 0, 3, opt,
                  init_slots(opt, params.size, np.float64), 0, losses, np.zeros(3))
        results.append((mine, losses, net.evaluate(x, y)[0]))
    for got, want in zip(*results):
        np.testing.assert_allclose(got, want, rtol=1e-10)
    plain = kernels.Network(4, init_params(np.random.default_rng(0), 4, LAYERS, np.float64)[0],
                            params.copy(), kernels.LOSS_MSE, kernels.METRIC_NONE, False, 16, 0)
    assert results[0][2] > plain.evaluate(x, y)[0]  # (it trained, and the penalty is added)


def test_network_refuses_activity_on_dropout_and_on_a_fused_output():
    ops, params = init_params(np.random.default_rng(0), 3, [("dense", 4, "relu", True),
                                                            ("dropout", 0.5),
                                                            ("dense", 3, "softmax", True)],
                              np.float64)
    for activities in ([None, (0.1, 0.0), None], [None, None, (0.0, 0.1)]):
        with pytest.raises(ValueError, match="activity"):
            kernels.Network(3, ops, params, kernels.LOSS_SPARSE_CE, kernels.METRIC_NONE, True, 4,
                            activities=activities)
    with pytest.raises(ValueError, match="activity"):
        kernels.Network(3, ops, params, kernels.LOSS_SPARSE_CE, kernels.METRIC_NONE, True, 4,
                        activities=[(-0.1, 0.0), None, None])


@pytest.mark.usefixtures("fresh_names")
def test_model_loss_adds_the_penalty_divided_by_the_batch_size_as_keras(tmp_path):
    """Keras 3 evaluates this model to mse + (0.01·Σ|a| + 0.001·Σa²) / n (a the hidden layer's
    output), at any batch size."""
    hidden = keras.layers.Dense(2, activity_regularizer=keras.regularizers.L1L2(0.01, 0.001),
                                kernel_regularizer=keras.regularizers.L2(1e-4))
    model = keras.Sequential([keras.Input((3,)), hidden, keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    x = np.random.default_rng(3).normal(size=(8, 3))
    y = np.zeros((8, 1))
    a = x @ hidden.kernel.numpy() + hidden.bias.numpy()
    expected = (np.mean((model.predict(x, verbose=0) - y) ** 2)
                + (0.01 * np.abs(a).sum() + 0.001 * (a ** 2).sum()) / 8
                + 1e-4 * (hidden.kernel.numpy() ** 2).sum())
    assert model.evaluate(x, y, verbose=0) == pytest.approx(expected, rel=1e-5)
    assert model.evaluate(x, y, batch_size=3, verbose=0) == pytest.approx(expected, rel=1e-5)
    history = model.fit(x, y, batch_size=8, shuffle=False, verbose=0)
    assert history.history["loss"][0] == pytest.approx(expected, rel=1e-5)
    for path in (tmp_path / "m.fastdnn", tmp_path / "m.keras"):
        model.save(path)
        loaded = keras.models.load_model(path).layers[0]
        assert repr(loaded.activity_regularizer) == "L1L2(l1=0.01, l2=0.001)"
        assert repr(loaded.kernel_regularizer) == "L2(l2=0.0001)"
    with pytest.raises(ValueError, match="activity"):
        output = keras.Sequential([keras.Input((3,)), keras.layers.Dense(
            2, "softmax", activity_regularizer="l2")])
        output.compile("adam", "sparse_categorical_crossentropy")
        output.fit(x, np.zeros(8, int), verbose=0)
