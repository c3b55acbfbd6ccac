"""``BatchNormalization`` and ``Normalization`` as Keras 3 users call them: weights (names, order,
trainability), the summary's counts, training and inference modes, ``trainable = False``,
``adapt``, configuration and ``.fastdnn`` round trips. The Keras files made by real Keras are in
test_keras_files.py; the kernels in test_normalization_kernels.py and
test_normalization_network.py.
"""

import io

import numpy as np
import pytest

import fastdnn as keras
from _api_helpers import float64, fresh_names  # noqa: F401

pytestmark = pytest.mark.usefixtures("fresh_names")
layers = keras.layers


def homl_bn_model(**bn):
    """HOML ch. 11: Dense(use_bias=False), BatchNormalization(), Activation("relu")."""
    return keras.Sequential([keras.Input((4,)), layers.Dense(5, use_bias=False),
                             layers.BatchNormalization(**bn), layers.Activation("relu"),
                             layers.Dense(1)])


def data(n=64, features=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(2.0, 3.0, (n, features))
    return x, x[:, :1] * 0.5 - x[:, 1:2] + rng.normal(0, 0.1, (n, 1))


def inference(bn, z):
    """Keras' inference-mode batch normalization of z with the layer's current weights."""
    gamma = bn.gamma.numpy() if bn.scale else 1
    beta = bn.beta.numpy() if bn.center else 0
    return (z - bn.moving_mean.numpy()) / np.sqrt(bn.moving_variance.numpy() + bn.epsilon) \
        * gamma + beta


def test_batch_normalization_weights_are_keras(float64):
    model = homl_bn_model()
    bn = model.layers[1]
    assert [w.path for w in bn.weights] == [
        "sequential/batch_normalization/gamma", "sequential/batch_normalization/beta",
        "sequential/batch_normalization/moving_mean",
        "sequential/batch_normalization/moving_variance"]
    assert [w.trainable for w in bn.weights] == [True, True, False, False]
    assert [w.name for w in bn.trainable_weights] == ["gamma", "beta"]
    assert [w.name for w in bn.non_trainable_weights] == ["moving_mean", "moving_variance"]
    np.testing.assert_array_equal(bn.get_weights(), [[1] * 5, [0] * 5, [0] * 5, [1] * 5])
    assert bn.count_params() == 20
    bn.trainable = False  # Keras: all four non-trainable
    assert bn.trainable_weights == [] and len(bn.non_trainable_weights) == 4
    plain = layers.BatchNormalization(center=False, scale=False)
    keras.Sequential([keras.Input((3,)), plain])
    assert [w.name for w in plain.weights] == ["moving_mean", "moving_variance"]
    assert plain.gamma is None and plain.beta is None


def test_summary_counts_as_keras():
    """The table Keras 3 prints for this model after one fit with Adam (its totals)."""
    model = homl_bn_model()
    model.compile("adam", "mse")
    x, y = data(8)
    model.fit(x, y, verbose=0)
    out = io.StringIO()
    model.summary(print_fn=out.write)
    text = out.getvalue()
    assert "│ batch_normalization             │ (None, 5)              │            20 │" in text
    assert "│ (BatchNormalization)            │" in text
    for line in (" Total params: 120 (480.00 B)", " Trainable params: 36 (144.00 B)",
                 " Non-trainable params: 10 (40.00 B)", " Optimizer params: 74 (296.00 B)"):
        assert line in text.splitlines()


def test_fit_trains_gamma_beta_and_moving_statistics_and_inference_uses_them(float64):
    keras.utils.set_random_seed(0)
    model = homl_bn_model(momentum=0.9)
    model.compile(keras.optimizers.Adam(0.05), "mse")
    x, y = data()
    before = model.get_weights()
    history = model.fit(x, y, epochs=5, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    dense, bn = model.layers[0], model.layers[1]
    for old, w in zip(before[1:5], bn.weights):
        assert not np.allclose(old, w.numpy()), w.name
    # the moving statistics approach the statistics of the dense layer's outputs
    z = x @ dense.kernel.numpy()
    np.testing.assert_allclose(bn.moving_mean.numpy(), z.mean(axis=0), rtol=0.5, atol=0.3)
    # inference: the moving statistics, in predict, evaluate and model(x)
    head = model.layers[3]
    expected = np.maximum(inference(bn, z), 0) @ head.kernel.numpy() + head.bias.numpy()
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-10)
    np.testing.assert_allclose(model(x, training=False), expected, rtol=1e-10)
    assert model.evaluate(x, y, verbose=0) == pytest.approx(np.mean((expected - y) ** 2))


def test_frozen_batch_normalization_runs_in_inference_mode_and_keeps_its_weights(float64):
    model = homl_bn_model()
    bn = model.layers[1]
    bn.set_weights([np.full(5, 2.0), np.full(5, 0.5), np.full(5, 0.1), np.full(5, 4.0)])
    bn.trainable = False
    model.compile("sgd", "mse")
    x, y = data()
    frozen = bn.get_weights()
    dense_before = model.layers[0].kernel.numpy()
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    for a, b in zip(bn.get_weights(), frozen):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(model.layers[0].kernel.numpy(), dense_before)  # the rest trains
    out = io.StringIO()
    model.summary(print_fn=out.write)
    assert " Non-trainable params: 20 (160.00 B)" in out.getvalue().splitlines()


def test_batch_normalization_first_after_flatten(float64):
    """HOML ch. 11 also normalizes the flattened input first."""
    rng = np.random.default_rng(2)
    x, y = rng.normal(5, 2, (48, 3, 2)), rng.integers(0, 3, 48)
    model = keras.Sequential([keras.Input((3, 2)), layers.Flatten(),
                              layers.BatchNormalization(), layers.Dense(8, activation="relu"),
                              layers.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    bn = model.layers[1]
    assert not np.allclose(bn.moving_mean.numpy(), 0)
    assert np.all(bn.moving_mean.numpy() > 0)  # heading for the inputs' mean, 5
    probabilities = model.predict(x, verbose=0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-12)


def test_batch_normalization_config_round_trips_and_refuses_what_it_lacks(tmp_path):
    model = homl_bn_model(momentum=0.9, epsilon=0.01, center=False)
    bn = model.layers[1]
    config = bn.get_config()
    assert (config["momentum"], config["epsilon"], config["center"], config["scale"]) == (
        0.9, 0.01, False, True)
    assert config["gamma_initializer"]["class_name"] == "Ones"
    model.compile("adam", "mse")
    x, y = data(16)
    model.fit(x, y, verbose=0)
    model.save(tmp_path / "m.fastdnn")
    loaded = keras.models.load_model(tmp_path / "m.fastdnn")
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert loaded.layers[1].get_config() == config
    for kwargs in ({"renorm": True}, {"gamma_regularizer": "l2"}, {"synchronized": True}):
        with pytest.raises(NotImplementedError, match=next(iter(kwargs))):
            layers.BatchNormalization(**kwargs)
    for bad in ({"momentum": 1.5}, {"epsilon": 0}, {"epsilon": float("nan")}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            layers.BatchNormalization(**bad)
    with pytest.raises(NotImplementedError, match="Flatten"):
        keras.Sequential([keras.Input((3, 2)), layers.BatchNormalization()])


# --- Normalization


def housing(n=200, seed=3):
    rng = np.random.default_rng(seed)
    x = rng.normal([3.0, -100.0, 0.5], [1.0, 20.0, 0.01], (n, 3))
    return x, (x[:, :1] - 3) - (x[:, 1:2] + 100) / 20 + rng.normal(0, 0.05, (n, 1))


def test_normalization_adapt_then_fit_as_homl_regression_mlp(float64):
    keras.utils.set_random_seed(0)
    x, y = housing()
    norm_layer = layers.Normalization()
    model = keras.Sequential([keras.Input((3,)), norm_layer, layers.Dense(16, activation="relu"),
                              layers.Dense(1)])
    model.compile(keras.optimizers.Adam(0.01), "mse", metrics=["RootMeanSquaredError"])
    norm_layer.adapt(x)
    np.testing.assert_allclose(norm_layer.mean.numpy(), np.mean(x, axis=0), rtol=1e-12)
    np.testing.assert_allclose(norm_layer.variance.numpy(), np.var(x, axis=0), rtol=1e-12)
    assert [(w.name, w.trainable) for w in norm_layer.weights] == [
        ("mean", False), ("variance", False), ("count", False)]
    history = model.fit(x, y, epochs=20, batch_size=32, verbose=0)
    assert history.history["loss"][-1] < 0.1 * history.history["loss"][0]
    np.testing.assert_allclose(norm_layer.mean.numpy(), np.mean(x, axis=0), rtol=1e-12)
    first = model.layers[1]
    standardized = (x - x.mean(axis=0)) / x.std(axis=0)
    hidden = np.maximum(standardized @ first.kernel.numpy() + first.bias.numpy(), 0)
    head = model.layers[2]
    np.testing.assert_allclose(model.predict(x, verbose=0),
                               hidden @ head.kernel.numpy() + head.bias.numpy(), rtol=1e-9)
    out = io.StringIO()
    model.summary(print_fn=out.write)
    assert "│ normalization (Normalization)   │ (None, 3)              │             7 │" \
        in out.getvalue()
    assert " Non-trainable params: 7 (56.00 B)" in out.getvalue().splitlines()


def test_normalization_before_adapt_passes_its_input_through_as_keras_3():
    model = keras.Sequential([keras.Input((3,)), layers.Normalization(),
                              layers.Dense(2, kernel_initializer="identity")])
    x = np.arange(6.0).reshape(2, 3)
    np.testing.assert_allclose(model.predict(x, verbose=0), x[:, :2], rtol=1e-6)


def test_normalization_adapted_before_the_model_exists_and_in_batches(float64):
    x, _ = housing()
    early = layers.Normalization()
    early.adapt(x)
    model = keras.Sequential([keras.Input((3,)), early, layers.Dense(1)])
    np.testing.assert_allclose(early.mean.numpy(), x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(model.get_weights()[1], x.var(axis=0), rtol=1e-12)
    batched = layers.Normalization()
    batched.adapt([x[:70], x[70:150], x[150:]])  # Keras' running combination
    np.testing.assert_allclose(batched.mean.numpy(), x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(batched.variance.numpy(), x.var(axis=0), rtol=1e-10)
    with pytest.raises(ValueError, match="incompatible shape"):
        early.adapt(np.ones((4, 2)))
    with pytest.raises(ValueError, match="finite"):
        early.adapt(np.full((4, 3), np.nan))
    inverse = layers.Normalization(invert=True)
    inverse.adapt(x)
    model = keras.Sequential([keras.Input((3,)), inverse, layers.Dense(3, use_bias=False,
                                                                       kernel_initializer="identity")])
    z = np.random.default_rng(0).normal(size=(5, 3))
    np.testing.assert_allclose(model.predict(z, verbose=0), x.mean(axis=0) + z * x.std(axis=0),
                               rtol=1e-12)


def test_normalization_round_trips_and_refuses_what_it_lacks(tmp_path):
    x, y = housing(40)
    norm_layer = layers.Normalization()
    model = keras.Sequential([keras.Input((3,)), norm_layer, layers.Dense(1)])
    norm_layer.adapt(x)
    model.compile("sgd", "mse")
    model.save(tmp_path / "m.fastdnn")
    loaded = keras.models.load_model(tmp_path / "m.fastdnn")
    np.testing.assert_array_equal(loaded.layers[0].mean.numpy(), norm_layer.mean.numpy())
    assert loaded.layers[0].get_config() == {"name": "normalization", "trainable": True,
                                             "axis": [-1], "invert": False, "mean": None,
                                             "variance": None}
    with pytest.raises(NotImplementedError, match="adapt"):
        layers.Normalization(mean=[0.0], variance=[1.0])
    with pytest.raises(ValueError, match="both `mean` and `variance`"):
        layers.Normalization(mean=[0.0])
    with pytest.raises(NotImplementedError, match="axis"):
        layers.Normalization(axis=(1, 2))


def test_homl_chapter_11_model_counts_as_keras():
    """HOML ch. 11's first batch-normalized model: Keras 3 prints these totals, and the first
    BatchNormalization's variables are gamma and beta (trainable), the moving statistics not."""
    with pytest.warns(UserWarning, match="input_shape"):  # Keras 3 warns about the book's style too
        flatten = layers.Flatten(input_shape=[28, 28])
    model = keras.Sequential([
        flatten, layers.BatchNormalization(),
        layers.Dense(300, activation="relu", kernel_initializer="he_normal"),
        layers.BatchNormalization(),
        layers.Dense(100, activation="relu", kernel_initializer="he_normal"),
        layers.BatchNormalization(), layers.Dense(10, activation="softmax")])
    out = io.StringIO()
    model.summary(print_fn=out.write)
    lines = out.getvalue().splitlines()
    for line in (" Total params: 271,346 (1.04 MB)", " Trainable params: 268,978 (1.03 MB)",
                 " Non-trainable params: 2,368 (9.25 KB)"):
        assert line in lines
    assert [(var.name, var.trainable) for var in model.layers[1].variables] == [
        ("gamma", True), ("beta", True), ("moving_mean", False), ("moving_variance", False)]


def test_the_plan_holds_the_normalization_ops_and_settings():
    from fastdnn import _kernels as K
    from fastdnn import _plan

    norm = layers.Normalization(invert=True)
    model = keras.Sequential([
        keras.Input((3,)), norm, layers.Dense(4, use_bias=False),
        layers.BatchNormalization(momentum=0.9, epsilon=0.01, center=False),
        layers.Activation("relu"),
        layers.Dense(2, activity_regularizer=keras.regularizers.L1L2(0.1, 0.2)),
        layers.Activation("tanh")])
    model.layers[2].trainable = False  # the batch normalization: at inference
    plan = _plan.build(model._flat_layers(), (3,), model._trained_layers())
    assert plan.ops == (_plan.Op(K.OP_NORMALIZATION, 3, 1, 0.0, 0),
                        _plan.Op(K.OP_DENSE, 4, K.LINEAR, 0.0, 7, -1),
                        _plan.Op(K.OP_BATCH_NORMALIZATION, 4, K.BN_SCALE, 0.0, 19),
                        _plan.Op(K.OP_ACTIVATION, 4, K.RELU),
                        # the regularized output is the dense layer's: tanh is not folded in
                        _plan.Op(K.OP_DENSE, 2, K.LINEAR, 0.0, 31, 39),
                        _plan.Op(K.OP_ACTIVATION, 2, K.TANH))
    assert plan.trainable == (True, True, False, True, True, True)
    assert plan.normalizations == ((0.0, keras.config.epsilon()), None, (0.9, 0.01), None, None,
                                   None)
    assert plan.activities == (None, None, None, None, (0.1, 0.2), None)
