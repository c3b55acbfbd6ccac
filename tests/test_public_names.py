"""Each public submodule lists its public names in ``__all__``: every listed name exists and
carries a docstring, and every function or class the module defines without a leading
underscore is listed (internals are underscored); and no import cycle: each module imports
first in a fresh interpreter.
"""

import ast
import importlib
import inspect
import subprocess
import sys
from pathlib import Path

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



@pytest.mark.parametrize("name", ["saving", "models", "_fastdnn_format", "_keras_format",
                                  "reference", "_plan", "_training", "layers"])
def test_each_module_imports_first_in_a_fresh_interpreter(name):
    # an import cycle shows as an ImportError or AttributeError when the wrong module comes first
    code = f"import fastdnn.{name}, fastdnn; print(fastdnn.saving.load_model.__name__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, cwd=Path(__file__).parent.parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "load_model"


def test_no_module_imports_fastdnn_inside_a_function():
    # an import inside a function is how a cycle hides; the package's lazy ``wrappers`` (which
    # needs scikit-learn) is the one exception
    package = Path(__file__).parent.parent / "fastdnn"
    late = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    names = ([inner.module or ""] if isinstance(inner, ast.ImportFrom) else
                             [a.name for a in inner.names] if isinstance(inner, ast.Import) else [])
                    if any(n == "fastdnn" or n.startswith("fastdnn.") for n in names):
                        late.append(f"{path.relative_to(package)}:{inner.lineno}")
    assert late == [], late
