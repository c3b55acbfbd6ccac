"""``fit(sample_weight=, class_weight=)`` and ``evaluate(sample_weight=)``.

Keras 3 (keras/src/losses/loss.py, reduction 'sum_over_batch_size'; the compiled metrics take
the sample weights): a batch's loss is ``Σ w_i·loss_i / batch size``, so the gradient is the
weighted per-sample gradient over the batch size; the reported loss is the mean over samples of
``w_i·loss_i``; the ``weighted_metrics`` are weighted means (accuracy ``Σ w_i·hit_i / Σ w_i``,
logged as ``weighted_accuracy`` beside the same metric in ``metrics``), the ``metrics`` are not
weighted (keras/src/trainers/compile_utils.py, CompileMetrics.update_state). ``class_weight`` gives
each sample its class's weight (1 for classes not listed; a one-hot row's class is its argmax).
The expected values below are computed here in NumPy from those formulas.
"""

import numpy as np
import pytest

import fastdnn as keras
from _api_helpers import float64, fresh_names  # noqa: F401

pytestmark = pytest.mark.usefixtures("fresh_names", "float64")


def data(n=12, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4)), rng.integers(0, 3, n), rng.uniform(0, 2, n)


def softmax_model(loss="sparse_categorical_crossentropy", engine="fastdnn"):
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(keras.optimizers.SGD(0.5), loss, metrics=["accuracy"],
                  weighted_metrics=["accuracy"], engine=engine)
    return model


def per_sample(model, x, y):
    p = model.predict(x, verbose=0)
    return -np.log(p[np.arange(len(y)), y]), p.argmax(axis=1) == y, p


def test_evaluate_weighs_the_loss_and_the_weighted_metrics_only():
    x, y, w = data()
    model = softmax_model()
    assert model.metrics_names == ["loss", "accuracy", "weighted_accuracy"]
    losses, hits, _ = per_sample(model, x, y)
    loss, accuracy, weighted = model.evaluate(x, y, sample_weight=w, batch_size=5, verbose=0)
    assert loss == pytest.approx((w * losses).sum() / len(y), rel=1e-12)
    assert accuracy == pytest.approx(hits.mean(), rel=1e-12)
    assert weighted == pytest.approx((w * hits).sum() / w.sum(), rel=1e-12)
    plain = model.evaluate(x, y, verbose=0)
    assert plain[0] == pytest.approx(losses.mean(), rel=1e-12)


def test_one_weighted_sgd_step_follows_the_formula():
    x, y, w = data()
    model = softmax_model()
    kernel, bias = model.get_weights()
    losses, hits, p = per_sample(model, x, y)
    onehot = np.eye(3)[y]
    g = w[:, None] * (p - onehot) / len(y)  # d(Σ w_i loss_i / n) / d logits
    history = model.fit(x, y, sample_weight=w, batch_size=len(y), shuffle=False, verbose=0)
    new_kernel, new_bias = model.get_weights()
    np.testing.assert_allclose(new_kernel, kernel - 0.5 * x.T @ g, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(new_bias, bias - 0.5 * g.sum(axis=0), rtol=1e-12, atol=1e-14)
    assert history.history["loss"][0] == pytest.approx((w * losses).sum() / len(y), rel=1e-12)
    assert history.history["accuracy"][0] == pytest.approx(hits.mean(), rel=1e-12)
    assert history.history["weighted_accuracy"][0] == pytest.approx((w * hits).sum() / w.sum(),
                                                                    rel=1e-12)


def test_class_weight_is_the_sample_weight_of_each_class():
    x, y, _ = data(30)
    class_weight = {0: 0.5, 2: 4.0}  # class 1 not listed: weight 1
    as_samples = np.array([class_weight.get(int(c), 1.0) for c in y])
    a, b = softmax_model(), softmax_model()
    ha = a.fit(x, y, class_weight=class_weight, batch_size=7, shuffle=False, epochs=2, verbose=0)
    hb = b.fit(x, y, sample_weight=as_samples, batch_size=7, shuffle=False, epochs=2, verbose=0)
    assert ha.history == hb.history
    assert all(np.array_equal(u, v) for u, v in zip(a.get_weights(), b.get_weights()))
    onehot = softmax_model("categorical_crossentropy")
    hc = onehot.fit(x, np.eye(3)[y], class_weight=class_weight, batch_size=7, shuffle=False,
                    epochs=2, verbose=0)
    np.testing.assert_allclose(hc.history["loss"], ha.history["loss"], rtol=1e-12)


def test_shuffled_weighted_training_matches_the_reference_engine():
    x, y, w = data(50)

    def run(engine):
        model = softmax_model(engine=engine)
        keras.utils.set_random_seed(9)  # the same shuffles
        history = model.fit(x, y, sample_weight=w, batch_size=8, epochs=3, verbose=0)
        return model.get_weights(), history.history

    (wa, ha), (wb, hb) = run("fastdnn"), run("numpy")
    for u, v in zip(wa, wb):
        np.testing.assert_allclose(u, v, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ha["loss"], hb["loss"], rtol=1e-10)
    np.testing.assert_allclose(ha["accuracy"], hb["accuracy"], rtol=1e-12)
    np.testing.assert_allclose(ha["weighted_accuracy"], hb["weighted_accuracy"], rtol=1e-12)


def test_validation_weights_from_data_and_from_the_split():
    x, y, w = data(40)
    model = softmax_model()
    history = model.fit(x[:30], y[:30], validation_data=(x[30:], y[30:], w[30:]), verbose=0)
    assert history.history["val_loss"][0] == pytest.approx(
        model.evaluate(x[30:], y[30:], sample_weight=w[30:], verbose=0)[0], rel=1e-12)
    model = softmax_model()
    history = model.fit(x, y, sample_weight=w, validation_split=0.25, shuffle=False, verbose=0)
    assert history.history["val_weighted_accuracy"][0] == pytest.approx(
        model.evaluate(x[30:], y[30:], sample_weight=w[30:], verbose=0)[2], rel=1e-12)


def test_bad_weights_are_refused_before_training():
    x, y, w = data()
    model = softmax_model()
    before = model.get_weights()
    for kwargs, error in [({"sample_weight": w, "class_weight": {0: 1.0}}, "at the same time"),
                          ({"sample_weight": w[:5]}, "one weight per sample"),
                          ({"sample_weight": np.where(w > 1, np.nan, w)}, "NaN"),
                          ({"class_weight": [1.0, 2.0]}, "must be a dict")]:
        with pytest.raises(ValueError, match=error):
            model.fit(x, y, verbose=0, **kwargs)
    with pytest.raises(ValueError, match="one weight per sample"):
        model.evaluate(x, y, sample_weight=np.ones((len(y), 2)), verbose=0)
    assert all(np.array_equal(u, v) for u, v in zip(before, model.get_weights()))
    zero = model.evaluate(x, y, sample_weight=np.zeros(len(y)), verbose=0)
    assert zero == [0.0, model.evaluate(x, y, verbose=0)[1], 0.0]


def test_the_network_checks_its_weights():
    from fastdnn import _kernels

    x, y, _ = data()
    model = softmax_model()
    model.fit(x, y, verbose=0)
    network = model._network
    labels = y.astype(np.int32)
    for bad, error in [(np.ones(len(y), np.float32), "dtype"), (np.ones(len(y) + 1), "shape"),
                       (np.full(len(y), np.inf), "finite"), (np.ones((len(y), 1)), "sample_weight")]:
        with pytest.raises((ValueError, TypeError), match=error):
            network.evaluate(x, labels, bad)
        with pytest.raises((ValueError, TypeError), match=error):
            network.train(x, labels, None, 4, 0, 1, model.optimizer.settings(),
                          model.optimizer.slots, 0, np.zeros(1),
                          np.zeros((1, network.n_metrics, 2)), bad)
    assert isinstance(network, _kernels.Network)


@pytest.mark.parametrize("engine", ["fastdnn", "numpy"])
def test_every_weighted_metric_is_weighted_in_training_and_evaluation(engine):
    # A weighted mean is Σ w·value / Σ w; precision and recall count each element of a sample w
    # times. A zero learning rate keeps fit's metrics those of the starting weights.
    M = keras.metrics
    rng = np.random.default_rng(3)
    x, w = rng.normal(size=(40, 4)), rng.uniform(0, 2, 40)
    targets = rng.integers(0, 2, (40, 3)).astype(float)
    labels = rng.integers(0, 3, 40)
    multi = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="sigmoid")])
    multi.compile(keras.optimizers.SGD(0.0), "binary_crossentropy", engine=engine,
                  weighted_metrics=["binary_accuracy", "mae", "mse", M.RootMeanSquaredError(),
                           M.Precision(), M.Recall()])
    ranked = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    ranked.compile(keras.optimizers.SGD(0.0), "sparse_categorical_crossentropy", engine=engine,
                   weighted_metrics=[M.SparseTopKCategoricalAccuracy(k=2)])

    p = multi.predict(x, verbose=0)
    d = targets - p
    predicted, actual = p > 0.5, targets > 0.5
    mse = (w * (d ** 2).mean(axis=1)).sum() / w.sum()
    expected = {"binary_accuracy": (w * (predicted == actual).mean(axis=1)).sum() / w.sum(),
                "mae": (w * np.abs(d).mean(axis=1)).sum() / w.sum(), "mse": mse,
                "root_mean_squared_error": np.sqrt(mse),
                "precision": (w @ (predicted & actual).sum(axis=1)) / (w @ predicted.sum(axis=1)),
                "recall": (w @ (predicted & actual).sum(axis=1)) / (w @ actual.sum(axis=1))}
    scores = ranked.predict(x, verbose=0)
    rank = (scores > scores[np.arange(40), labels][:, None]).sum(axis=1)
    top_k = (w * (rank < 2)).sum() / w.sum()

    for run in (lambda m, y: m.evaluate(x, y, sample_weight=w, batch_size=7, verbose=0,
                                        return_dict=True),
                lambda m, y: {k: v[0] for k, v in m.fit(x, y, sample_weight=w, batch_size=7,
                                                         verbose=0).history.items()}):
        got = run(multi, targets)
        for name, value in expected.items():
            assert got[name] == pytest.approx(value, rel=1e-9), name
        assert run(ranked, labels)["sparse_top_k_categorical_accuracy"] == pytest.approx(
            top_k, rel=1e-9)


@pytest.mark.parametrize("suffix", [".fastdnn", ".keras"])
def test_weighted_metrics_survive_saving(tmp_path, suffix):
    x, y, w = data()
    model = softmax_model()
    model.fit(x, y, verbose=0)
    path = tmp_path / f"model{suffix}"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.metrics_names == ["loss", "accuracy", "weighted_accuracy"]
    np.testing.assert_allclose(loaded.evaluate(x, y, sample_weight=w, verbose=0),
                               model.evaluate(x, y, sample_weight=w, verbose=0), rtol=1e-6)
