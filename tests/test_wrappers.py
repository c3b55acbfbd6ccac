"""fastdnn.wrappers: scikit-learn's estimator checks, and the wrappers in scikit-learn's tools
(clone, Pipeline, GridSearchCV, cross_val_score, pickling)."""

import pickle
import subprocess
import sys

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.datasets import make_classification, make_regression  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import fastdnn  # noqa: E402
from fastdnn.wrappers import SKLearnClassifier, SKLearnRegressor  # noqa: E402


def build(X, y, loss="categorical_crossentropy", units=10, optimizer="adam"):
    """A one-hidden-layer network with as many outputs as y has columns (classes or targets)."""
    output = "linear" if loss == "mse" else "softmax"
    model = fastdnn.Sequential([fastdnn.Input(X.shape[1:]),
                                fastdnn.layers.Dense(units, activation="relu"),
                                fastdnn.layers.Dense(y.shape[1], activation=output)])
    model.compile(optimizer, loss, metrics=None if loss == "mse" else ["accuracy"])
    return model


def build_binary(X, y):
    """One sigmoid output for two classes."""
    model = fastdnn.Sequential([fastdnn.Input(X.shape[1:]),
                                fastdnn.layers.Dense(1, activation="sigmoid")])
    model.compile("adam", "binary_crossentropy")
    return model


SILENT = {"epochs": 5, "verbose": 0}
_EQUIVALENCE = ("mini-batch training: a zero weight is not removing the sample, nor an integer "
                "weight repeating it (Keras' loss divides by the batch size)")
EXPECTED_FAILED_CHECKS = {
    "SKLearnClassifier": {"check_sample_weight_equivalence_on_dense_data": _EQUIVALENCE},
    "SKLearnRegressor": {"check_sample_weight_equivalence_on_dense_data": _EQUIVALENCE},
}


@parametrize_with_checks(
    [SKLearnClassifier(build, fit_kwargs=SILENT),
     SKLearnClassifier(build, model_kwargs={"loss": "sparse_categorical_crossentropy"},
                       fit_kwargs=SILENT),
     SKLearnRegressor(build, model_kwargs={"loss": "mse"}, fit_kwargs=SILENT)],
    expected_failed_checks=lambda estimator: EXPECTED_FAILED_CHECKS[type(estimator).__name__])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture
def blobs():
    """300 samples of 3 well separated classes, 8 features, float32."""
    x, y = make_classification(n_samples=300, n_features=8, n_informative=6, n_redundant=0,
                               n_classes=3, class_sep=2.0, random_state=0)
    return x.astype(np.float32), y


class EpochCounter(fastdnn.callbacks.Callback):
    """Records how many epochs each fit ran, across the copies that scikit-learn's clone makes."""

    runs = []

    def on_train_end(self, logs=None):
        EpochCounter.runs.append(len(self.model.history.epoch))


def test_clone_keeps_every_parameter():
    est = SKLearnClassifier(build, warm_start=True, model_kwargs={"units": 7},
                            fit_kwargs={"epochs": 3, "verbose": 0}, random_state=4)
    copy = clone(est)
    assert copy.get_params() == est.get_params()
    assert copy.fit_kwargs is not est.fit_kwargs  # a deep copy: fitting one never edits the other


def test_grid_search_fits_run_the_requested_epochs_silently(blobs, capfd):
    x, y = blobs
    EpochCounter.runs = []
    est = SKLearnClassifier(build, fit_kwargs={"epochs": 3, "verbose": 0,
                                               "callbacks": [EpochCounter()]}, random_state=0)
    search = GridSearchCV(est, {"model_kwargs": [{"units": 4}, {"units": 16}]}, cv=3)
    search.fit(x, y)
    assert EpochCounter.runs == [3] * 7  # 2 candidates x 3 folds, then the refit
    assert capfd.readouterr().out == ""
    assert search.cv_results_["mean_test_score"].shape == (2,)
    best = search.best_estimator_
    assert best.model_.layers[0].units == best.model_kwargs["units"]
    assert len(best.history_.history["loss"]) == 3


def test_grid_search_is_repeatable_with_a_random_state(blobs):
    x, y = blobs
    grid = {"model_kwargs": [{"units": 4}, {"units": 16}], "fit_kwargs": [SILENT]}

    def scores():
        search = GridSearchCV(SKLearnClassifier(build, random_state=3), grid, cv=3).fit(x, y)
        return search.cv_results_["split0_test_score"], search.best_estimator_.model_.params

    (scores_a, params_a), (scores_b, params_b) = scores(), scores()
    np.testing.assert_array_equal(scores_a, scores_b)
    np.testing.assert_array_equal(params_a, params_b)


def test_a_seeded_fit_leaves_the_global_generators_alone(blobs):
    x, y = blobs
    np.random.seed(11)
    expected = np.random.random()
    np.random.seed(11)
    SKLearnClassifier(build, fit_kwargs=SILENT, random_state=0).fit(x, y)
    assert np.random.random() == expected


def test_pipeline_and_cross_val_score_learn_the_classes(blobs):
    x, y = blobs
    pipe = make_pipeline(StandardScaler(), SKLearnClassifier(
        build, model_kwargs={"units": 32}, fit_kwargs={"epochs": 20, "verbose": 0},
        random_state=0))
    scores = cross_val_score(pipe, x, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.8


def test_regressor_learns_a_linear_target():
    x, y = make_regression(n_samples=400, n_features=5, noise=1.0, random_state=0)
    reg = SKLearnRegressor(build, model_kwargs={"loss": "mse", "units": 32},
                           fit_kwargs={"epochs": 60, "verbose": 0}, random_state=0)
    reg.fit(x, y / y.std())
    prediction = reg.predict(x)
    assert prediction.shape == (400,) and prediction.dtype == np.float64
    assert reg.score(x, y / y.std()) > 0.9


def test_regressor_predicts_every_output_of_2d_targets():
    x, y = make_regression(n_samples=100, n_features=4, n_targets=3, random_state=0)
    reg = SKLearnRegressor(build, model_kwargs={"loss": "mse"}, fit_kwargs=SILENT).fit(x, y)
    assert reg.predict(x).shape == (100, 3)
    assert reg.model_.output_shape == (None, 3)


def test_a_pickled_fitted_estimator_predicts_the_same(blobs):
    x, y = blobs
    clf = SKLearnClassifier(build, fit_kwargs=SILENT, random_state=0).fit(x, y)
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_proba(x), clf.predict_proba(x))
    assert again.model_.optimizer.iterations == clf.model_.optimizer.iterations > 0


def test_a_compiled_model_is_copied_with_new_weights_and_left_untouched(blobs):
    x, y = blobs
    given = build(x, np.eye(3)[y], loss="categorical_crossentropy")
    before = given.get_weights()
    first = SKLearnClassifier(given, fit_kwargs=SILENT).fit(x, y)
    second = SKLearnClassifier(given, fit_kwargs=SILENT).fit(x, y)
    assert first.model_ is not given and second.model_ is not first.model_
    assert not np.array_equal(first.model_.params, second.model_.params)
    for old, now in zip(before, given.get_weights()):
        np.testing.assert_array_equal(old, now)
    assert given.optimizer.iterations == 0
    assert clone(first).model is not given  # clone copies the model parameter too


def test_a_compiled_model_with_a_random_state_fits_the_same_twice(blobs):
    x, y = blobs
    given = build(x, np.eye(3)[y])
    first = SKLearnClassifier(given, fit_kwargs=SILENT, random_state=5).fit(x, y)
    second = SKLearnClassifier(given, fit_kwargs=SILENT, random_state=5).fit(x, y)
    np.testing.assert_array_equal(first.model_.params, second.model_.params)


def test_warm_start_continues_the_previous_fit(blobs):
    x, y = blobs
    clf = SKLearnClassifier(build, warm_start=True, fit_kwargs={"epochs": 2, "verbose": 0})
    model = clf.fit(x, y).model_
    steps = model.optimizer.iterations
    assert clf.fit(x, y).model_ is model
    assert model.optimizer.iterations == 2 * steps
    with pytest.raises(ValueError, match="warm_start"):
        clf.fit(x[y < 2], y[y < 2])


def test_string_labels_and_one_sigmoid_output():
    x, y = make_classification(n_samples=200, n_features=6, class_sep=2.0, random_state=1)
    labels = np.array(["cat", "dog"])[y]
    clf = SKLearnClassifier(build_binary, fit_kwargs={"epochs": 60, "verbose": 0},
                            random_state=0).fit(x, labels)
    assert list(clf.classes_) == ["cat", "dog"]
    proba = clf.predict_proba(x)
    assert proba.shape == (200, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-6)
    assert set(clf.predict(x)) <= {"cat", "dog"}
    assert clf.score(x, labels) > 0.85


def test_validation_data_labels_are_encoded_as_y(blobs):
    x, y = blobs
    labels = np.array(["a", "b", "c"])[y]
    clf = SKLearnClassifier(build, model_kwargs={"loss": "sparse_categorical_crossentropy"},
                            fit_kwargs={"epochs": 2, "verbose": 0})
    clf.fit(x[:200], labels[:200], validation_data=(x[200:], labels[200:]))
    assert len(clf.history_.history["val_accuracy"]) == 2
    with pytest.raises(ValueError, match="labels outside the classes"):
        clf.fit(x[:200], labels[:200], validation_data=(x[200:], np.full(100, "z")))


def test_fit_kwargs_given_to_fit_take_precedence(blobs):
    x, y = blobs
    clf = SKLearnClassifier(build, fit_kwargs={"epochs": 5, "verbose": 0})
    clf.fit(x, y, epochs=2)
    assert clf.history_.epoch == [0, 1]
    assert clf.fit_kwargs == {"epochs": 5, "verbose": 0}


def test_keras_style_access_through_the_package():
    assert fastdnn.wrappers.SKLearnClassifier is SKLearnClassifier


@pytest.mark.parametrize("model,error,message", [
    (lambda X, y: "not a model", TypeError, "expected a fastdnn Sequential"),
    (lambda X, y: fastdnn.Sequential([fastdnn.layers.Dense(3, "softmax")]), ValueError,
     "must be compiled"),
    (42, TypeError, "must be a compiled fastdnn model or a callable"),
    (lambda X, y: build(X, y[:, :2]), ValueError, "2 outputs for 3 classes"),
])
def test_a_wrong_model_is_refused_clearly(blobs, model, error, message):
    x, y = blobs
    with pytest.raises(error, match=message):
        SKLearnClassifier(model, fit_kwargs=SILENT).fit(x, y)


def test_a_single_class_is_refused(blobs):
    x, _ = blobs
    with pytest.raises(ValueError, match="only one class"):
        SKLearnClassifier(build).fit(x, np.zeros(len(x)))


@pytest.mark.parametrize("make", [
    lambda: SKLearnClassifier(build, fit_kwargs=SILENT, random_state=0),
    lambda: SKLearnRegressor(build, model_kwargs={"loss": "mse"}, fit_kwargs=SILENT,
                             random_state=0),
])
def test_sample_weight_reaches_the_models_fit(blobs, make):
    x, y = blobs
    weights = np.random.default_rng(0).uniform(0.1, 3.0, len(y))

    def fitted(sample_weight):
        return make().fit(x, y, sample_weight=sample_weight).model_.get_weights()

    plain, ones, weighted = fitted(None), fitted(np.ones(len(y))), fitted(weights)
    for a, b in zip(plain, ones):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(plain, weighted))


def test_weights_that_leave_one_class_are_refused(blobs):
    x, y = blobs
    with pytest.raises(ValueError, match="only one class"):
        SKLearnClassifier(build, fit_kwargs=SILENT).fit(x, y, sample_weight=(y == 1) * 1.0)
    with pytest.raises(ValueError, match="at least one non-zero"):
        SKLearnRegressor(build, model_kwargs={"loss": "mse"}).fit(x, y * 1.0,
                                                                  sample_weight=np.zeros(len(y)))


def test_without_scikit_learn_the_import_names_the_extra():
    code = ("import sys; sys.modules['sklearn'] = None\n"
            "try:\n    import fastdnn.wrappers\n"
            "except ImportError as e:\n    print(e)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert "pip install 'fastdnn[sklearn]'" in result.stdout, result.stderr
