"""fastdnn: a small, fast CPU deep-learning library with the Keras API.

Write the Keras code you know and change one import::

    import fastdnn as keras

    model = keras.Sequential([
        keras.Input(shape=(28, 28)),
        keras.layers.Flatten(),
        keras.layers.Dense(100, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train / 255.0, y_train, epochs=5)

The hot paths are Cython kernels calling BLAS without the GIL (``fastdnn._kernels``); their
plain-NumPy twins are in ``fastdnn.reference``.
"""

from fastdnn import (activations, backend, callbacks, config, datasets, initializers, layers,
                     losses, metrics, models, optimizers, regularizers, saving, utils)
from fastdnn.config import get_num_threads, set_num_threads
from fastdnn.layers import Input
from fastdnn.models import Sequential

__version__ = "0.1.0"

__all__ = ["Sequential", "Input", "activations", "backend", "callbacks", "config", "datasets",
           "initializers", "layers", "losses", "metrics", "models", "optimizers", "regularizers",
           "saving", "utils", "set_num_threads", "get_num_threads"]


def __getattr__(name):
    # ``fastdnn.wrappers`` needs scikit-learn: imported when first named, as ``keras.wrappers``.
    if name == "wrappers":
        import importlib

        return importlib.import_module("fastdnn.wrappers")
    raise AttributeError(f"module 'fastdnn' has no attribute {name!r}")
