"""Sequential.evaluate and predict: return forms, batch-size independence, output dtype.
"""

import numpy as np
import pytest
from _api_helpers import (  # noqa: F401
    chapter_model,
    compiled_tiny,
    float64,
    fresh_names,
    image_data,
    same_weights,
    tiny_data,
    tiny_model,
)

pytestmark = pytest.mark.usefixtures("fresh_names")


# --- evaluate and predict


def test_evaluate_return_forms():
    x, y = tiny_data(6, dtype=np.float32)
    model = compiled_tiny()
    result = model.evaluate(x, y, verbose=0)
    assert isinstance(result, list) and len(result) == 2
    assert all(type(v) is float for v in result)
    as_dict = model.evaluate(x, y, verbose=0, return_dict=True)
    assert list(as_dict) == ["accuracy", "loss"]
    assert as_dict == {"accuracy": result[1], "loss": result[0]}
    bare = compiled_tiny(metrics=None)
    loss = bare.evaluate(x, y, verbose=0)
    assert type(loss) is float and loss == pytest.approx(result[0])
    assert bare.evaluate(x, y, verbose=0, return_dict=True) == {"loss": loss}


def test_evaluate_is_independent_of_batch_size():
    x, y = tiny_data(11, dtype=np.float32)
    model = compiled_tiny()
    a = model.evaluate(x, y, batch_size=32, verbose=0)
    b = model.evaluate(x, y, batch_size=3, verbose=0)
    assert a == pytest.approx(b, rel=1e-6)


def test_evaluate_builds_the_optimizer_but_changes_no_weight():
    model = compiled_tiny("adam")
    before = model.get_weights()
    x, y = tiny_data(6, dtype=np.float32)
    model.evaluate(x, y, verbose=0)
    assert model.optimizer.built and model.optimizer.iterations == 0
    assert same_weights(model.get_weights(), before)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.uint8, np.int64])
def test_predict_returns_float32_probabilities_of_shape_n_by_units(dtype):
    model = chapter_model()
    x, _ = image_data(37)
    out = model.predict(x.astype(dtype), verbose=0)
    assert out.dtype == np.float32
    assert out.shape == (37, 10)
    assert np.allclose(out.sum(axis=1), 1, atol=1e-5)
    assert np.all(out >= 0)


def test_predict_does_not_need_compile_and_equals_calling_the_model():
    model = tiny_model()
    x, _ = tiny_data(5, dtype=np.float32)
    out = model.predict(x, batch_size=2, verbose=0)
    assert np.array_equal(out, model(x))
    assert np.array_equal(out, model.predict(x, batch_size=32, verbose=0))


def test_predict_in_float64_returns_the_model_float_type(float64):
    model = tiny_model()
    assert model.params.dtype == np.float64
    assert model.predict(tiny_data(3)[0], verbose=0).dtype == np.float64
