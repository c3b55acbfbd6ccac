"""scikit-learn estimators around fastdnn models, as ``keras.wrappers``.

``SKLearnClassifier`` and ``SKLearnRegressor`` take a compiled model, or a function building
one, and behave as scikit-learn estimators: ``Pipeline``, ``GridSearchCV``,
``cross_val_score``, ``clone`` and pickling (a model pickles through its saved bytes) work, so
joblib can send the fits to other processes or to a Dask cluster::

    from sklearn.model_selection import GridSearchCV

    search = GridSearchCV(SKLearnClassifier(build, fit_kwargs={"epochs": 5, "verbose": 0},
                                            random_state=0),
                          {"model_kwargs": [{"units": 50}, {"units": 100}]}, cv=3)
    search.fit(x, y)

Needs scikit-learn (``pip install 'fastdnn[sklearn]'``).
"""

import contextlib

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as e:
    raise ImportError("fastdnn.wrappers needs scikit-learn (1.6 or newer): "
                      "pip install 'fastdnn[sklearn]'") from e

from fastdnn import _random, losses, saving
from fastdnn.models import Sequential

__all__ = ["SKLearnClassifier", "SKLearnRegressor"]


def _seeded_fit(random_state):
    """Seed every generator fastdnn draws from for one fit (nothing for None), putting their
    states back after it: the fit is repeatable in any process, the caller's streams untouched."""
    if random_state is None:
        return contextlib.nullcontext()
    seed = random_state
    if not isinstance(random_state, (int, np.integer)) or isinstance(random_state, bool):
        seed = check_random_state(random_state).randint(np.iinfo(np.int32).max)
    return _random.seeded(int(seed))


def _sample_weights(sample_weight, n):
    """``sample_weight`` as an array of ``n`` numbers not all zero (scikit-learn's rules), or
    None."""
    if sample_weight is None:
        return None
    weights = np.asarray(sample_weight)
    if weights.dtype.kind not in "biuf":
        raise TypeError(f"sample_weight must hold numbers; got an array of dtype {weights.dtype}")
    if weights.shape != (n,):
        raise ValueError(f"sample_weight.shape == {weights.shape}, expected ({n},)")
    if not np.any(weights):
        raise ValueError("Sample weights must contain at least one non-zero number.")
    return weights


class _SKLearnWrapper(BaseEstimator):
    """What the classifier and the regressor share: building the model, fitting, predicting."""

    def __init__(self, model, warm_start=False, model_kwargs=None, fit_kwargs=None,
                 random_state=None):
        self.model = model
        self.warm_start = warm_start
        self.model_kwargs = model_kwargs
        self.fit_kwargs = fit_kwargs
        self.random_state = random_state

    def _new_model(self, X, y):
        """The model to fit: the last fit's (warm start), a copy of ``model``, or ``model``'s
        result when it is a function."""
        if self.warm_start and hasattr(self, "model_"):
            return self.model_
        if isinstance(self.model, Sequential):
            model = saving.copy_model(self.model, weights=self.warm_start)
        elif callable(self.model):
            model = self.model(X=X, y=y, **(self.model_kwargs or {}))
        else:
            raise TypeError("`model` must be a compiled fastdnn model or a callable returning "
                            f"one. Received: model={self.model!r}")
        if not isinstance(model, Sequential):
            raise TypeError(f"`model` returned {model!r}; expected a fastdnn Sequential model")
        if not model.compiled or model.loss is None:
            raise ValueError("The model must be compiled with a loss and an optimizer before "
                             "the wrapper fits it: call model.compile(optimizer, loss)")
        if not model.built:
            model.build((None,) + X.shape[1:])
        return model

    def _fit(self, X, y, model_targets):
        """Build (or reuse) the model from X and y and fit it; ``model_targets(model)`` gives
        the targets as that model learns them and the arguments of its ``fit``."""
        with _seeded_fit(self.random_state):
            model = self._new_model(X, y)
            targets, fit_kwargs = model_targets(model)
            self.history_ = model.fit(X, targets, **fit_kwargs)
        self.model_ = model
        return self

    def _fit_kwargs(self, kwargs, sample_weight):
        """The model's ``fit`` arguments: ``fit_kwargs``, then ``kwargs``, then the weights."""
        fit_kwargs = {**(self.fit_kwargs or {}), **kwargs}
        if sample_weight is not None:
            fit_kwargs["sample_weight"] = sample_weight
        return fit_kwargs

    def _predict_raw(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, allow_nd=True)
        return self.model_.predict(X, verbose=0)


class SKLearnClassifier(ClassifierMixin, _SKLearnWrapper):
    """A scikit-learn classifier around a fastdnn model, as ``keras.wrappers.SKLearnClassifier``.

    Labels of any kind (ints, strings) are encoded as ``classes_`` (sorted); the model learns
    them as its loss wants them: class indices for ``sparse_categorical_crossentropy``, 0/1 for a
    model with one output unit and two classes, otherwise one-hot rows (as Keras does).

    Args:
        model: a compiled ``Sequential`` (copied with new weights before each fit unless
            ``warm_start``), or a callable returning a compiled one, called as
            ``model(X=X, y=y_one_hot, **model_kwargs)``.
        warm_start: reuse the weights of the previous fit (or, for a first fit, of the given
            model) instead of starting anew. Defaults to False.
        model_kwargs: dict of keyword arguments for ``model`` when it is a callable. Defaults to
            None.
        fit_kwargs: dict of keyword arguments for the model's ``fit`` (``epochs``,
            ``batch_size``, ``verbose``, ...); those given to ``fit`` itself take precedence.
            Defaults to None.
        random_state: None (the global generators as they stand, as Keras), an int, or a
            ``numpy.random.RandomState``: fit seeds fastdnn with it (``set_random_seed``) for the
            model's initial weights, shuffling and dropout, so that fits are repeatable in any
            process, and restores the generators after. A fastdnn extension. Defaults to None.

    Attributes:
        model_: the fitted model.
        history_: the ``History`` that the model's ``fit`` returned.
        classes_: the class labels.
        n_features_in_: number of features seen in fit.

    Example:
        >>> def build(X, y, units=100):
        ...     model = fastdnn.Sequential([fastdnn.Input(X.shape[1:]),
        ...                                 fastdnn.layers.Dense(units, activation="relu"),
        ...                                 fastdnn.layers.Dense(y.shape[1], activation="softmax")])
        ...     model.compile("adam", "categorical_crossentropy")
        ...     return model
        >>> clf = SKLearnClassifier(build, fit_kwargs={"epochs": 5, "verbose": 0})
        >>> clf.fit(x_train, y_train).score(x_test, y_test)
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.poor_score = True  # the score is the given model's, not the wrapper's
        return tags

    def fit(self, X, y, sample_weight=None, **kwargs):
        """Fit the model to X and the labels y.

        Args:
            X: array-like of shape (n_samples, n_features) (or the model's input shape).
            y: labels, array-like of shape (n_samples,).
            sample_weight: None, or one weight per sample, for the model's ``fit``. Defaults to
                None.
            **kwargs: arguments for the model's ``fit``, over ``fit_kwargs``. Labels in a
                ``validation_data=(X_val, y_val)`` (or ``(X_val, y_val, weights)``) are encoded
                as y's.

        Returns:
            self.

        Raises:
            ValueError: for targets that are not class labels, or a single class (once the
                samples of weight 0 are left out).
        """
        X, y = validate_data(self, X, y, allow_nd=True)
        check_classification_targets(y)
        classes, codes = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError("Classifier can't train when only one class is present: y holds "
                             f"only {classes[0]!r}")
        sample_weight = _sample_weights(sample_weight, len(codes))
        if sample_weight is not None:
            weighted = np.unique(codes[sample_weight != 0])
            if len(weighted) < 2:
                raise ValueError("Classifier can't train when only one class is present: the "
                                 "samples of nonzero sample_weight hold only "
                                 f"{classes[weighted].tolist()}")
        if self.warm_start and hasattr(self, "model_") and not np.array_equal(classes,
                                                                              self.classes_):
            raise ValueError(f"warm_start: y holds the classes {classes}, the previous fit had "
                             f"{self.classes_}")
        self.classes_ = classes
        fit_kwargs = self._fit_kwargs(kwargs, sample_weight)
        validation = fit_kwargs.get("validation_data")
        if isinstance(validation, (tuple, list)) and len(validation) in (2, 3):
            validation = (validation[0], self._codes(validation[1]), *validation[2:])
        one_hot = np.eye(len(classes), dtype=np.float32)[codes]

        def model_targets(model):
            if isinstance(validation, tuple):
                fit_kwargs["validation_data"] = (validation[0],
                                                 self._encode(model, validation[1]),
                                                 *validation[2:])
            return self._encode(model, codes), fit_kwargs

        return self._fit(X, one_hot, model_targets)

    def _codes(self, y):
        """The class indices of labels y; refuse a label that fit did not see."""
        y = np.asarray(y).reshape(-1)
        codes = np.searchsorted(self.classes_, y)
        if np.any(codes >= len(self.classes_)) or np.any(self.classes_[np.minimum(
                codes, len(self.classes_) - 1)] != y):
            raise ValueError(f"y holds labels outside the classes seen in fit: {self.classes_}")
        return codes

    def _encode(self, model, codes):
        """Class indices as the model's loss reads them."""
        units, n = model.output_shape[-1], len(self.classes_)
        if isinstance(model.loss, losses.SparseCategoricalCrossentropy):
            return codes
        if units == 1 and n == 2:
            return codes.astype(np.float32).reshape(-1, 1)
        if units != n:
            raise ValueError(f"The model has {units} outputs for {n} classes: give it {n} (one "
                             "per class), or 1 for two classes")
        return np.eye(n, dtype=np.float32)[codes]

    def predict_proba(self, X):
        """Return the probability of each class, shape (n_samples, n_classes), in the order of
        ``classes_``."""
        p = self._predict_raw(X)
        if p.shape[1] == 1:
            p = np.hstack([1 - p, p])
        return p

    def predict(self, X):
        """Return the most probable class of each sample, shape (n_samples,)."""
        p = self.predict_proba(X)
        return self.classes_[np.argmax(p, axis=1)]


class SKLearnRegressor(RegressorMixin, _SKLearnWrapper):
    """A scikit-learn regressor around a fastdnn model, as ``keras.wrappers.SKLearnRegressor``.

    Targets of shape (n_samples,) are learnt as one column; predictions come back in the
    targets' shape, as float64.

    Args:
        model: a compiled ``Sequential`` (copied with new weights before each fit unless
            ``warm_start``), or a callable returning a compiled one, called as
            ``model(X=X, y=y_2d, **model_kwargs)``.
        warm_start: reuse the weights of the previous fit (or, for a first fit, of the given
            model) instead of starting anew. Defaults to False.
        model_kwargs: dict of keyword arguments for ``model`` when it is a callable. Defaults to
            None.
        fit_kwargs: dict of keyword arguments for the model's ``fit``; those given to ``fit``
            itself take precedence. Defaults to None.
        random_state: None, an int or a ``numpy.random.RandomState``: seeds each fit, as in
            ``SKLearnClassifier``. A fastdnn extension. Defaults to None.

    Attributes:
        model_: the fitted model.
        history_: the ``History`` that the model's ``fit`` returned.
        n_features_in_: number of features seen in fit.
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.regressor_tags.poor_score = True  # the score is the given model's, not the wrapper's
        tags.target_tags.multi_output = True
        return tags

    def fit(self, X, y, sample_weight=None, **kwargs):
        """Fit the model to X and the targets y.

        Args:
            X: array-like of shape (n_samples, n_features) (or the model's input shape).
            y: array-like of shape (n_samples,) or (n_samples, n_outputs).
            sample_weight: None, or one weight per sample, for the model's ``fit``. Defaults to
                None.
            **kwargs: arguments for the model's ``fit``, over ``fit_kwargs``.

        Returns:
            self.
        """
        X, y = validate_data(self, X, y, allow_nd=True, multi_output=True, y_numeric=True)
        self._y_was_1d = y.ndim == 1
        y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        fit_kwargs = self._fit_kwargs(kwargs, _sample_weights(sample_weight, len(y)))
        return self._fit(X, y, lambda model: (y, fit_kwargs))

    def predict(self, X):
        """Return the predictions, shape (n_samples,) or (n_samples, n_outputs) as y in fit."""
        p = self._predict_raw(X).astype(np.float64)
        return p[:, 0] if self._y_was_1d and p.shape[1] == 1 else p
