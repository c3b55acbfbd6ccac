"""Saving and loading models, as ``keras.saving``.

Two formats: fastdnn's own ``.fastdnn`` (``fastdnn._fastdnn_format``: a JSON header, the raw
arrays and a SHA-256, needing nothing more) and Keras 3's ``.keras`` (``fastdnn._keras_format``,
needing h5py). Both are written atomically and checked whole before anything is loaded.
"""

from fastdnn import _fastdnn_format, models
from fastdnn._fastdnn_format import copy_model, model_to_bytes

__all__ = ["load_model", "save_model", "model_to_bytes", "model_from_bytes", "copy_model"]

load_model = models.load_model


def save_model(model, filepath, overwrite=True) -> None:
    """Save a model as ``model.save`` does.

    Args:
        model: a built ``Sequential``.
        filepath: a path ending in ``.keras`` or ``.fastdnn``.
        overwrite: Defaults to True.
    """
    model.save(filepath, overwrite=overwrite)


def model_from_bytes(data: bytes):
    """The model ``model_to_bytes`` wrote, with its compile settings and optimizer state.

    Returns:
        A ``Sequential``.
    """
    return _fastdnn_format.model_from_bytes(data, models.Sequential)

