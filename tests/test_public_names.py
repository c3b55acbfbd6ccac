"""Each public submodule lists its public names in ``__all__``: every listed name exists and
carries a docstring, and every function or class the module defines without a leading
underscore is listed (internals are underscored).
"""

import importlib
import inspect

import pytest

MODULES = ["activations", "backend", "callbacks", "config", "initializers", "layers", "losses",
           "metrics", "models", "optimizers", "regularizers", "saving", "schedules", "utils",
           "reference", "wrappers", "datasets", "datasets.mnist", "datasets.fashion_mnist",
           "datasets.idx"]


def _module(name):
    if name == "wrappers":
        pytest.importorskip("sklearn")  # the `sklearn` extra
    return importlib.import_module("fastdnn." + name)


@pytest.mark.parametrize("name", MODULES)
def test_every_name_in_all_exists_and_has_a_docstring(name):
    module = _module(name)
    assert module.__all__, f"fastdnn.{name}.__all__ is empty"
    assert len(set(module.__all__)) == len(module.__all__)
    for public in module.__all__:
        assert hasattr(module, public), f"fastdnn.{name}.{public} is listed but missing"
        value = getattr(module, public)
        if callable(value) or inspect.ismodule(value):
            assert inspect.getdoc(value), f"fastdnn.{name}.{public} has no docstring"


@pytest.mark.parametrize("name", MODULES)
def test_every_public_function_and_class_defined_here_is_in_all(name):
    module = _module(name)
    defined = [attr for attr, value in vars(module).items()
               if not attr.startswith("_") and (inspect.isfunction(value) or inspect.isclass(value))
               and value.__module__ == module.__name__]
    assert sorted(set(defined) - set(module.__all__)) == []

