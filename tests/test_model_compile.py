"""Sequential.compile: defaults, optimizer strings and objects, unknown names refused.

Expected behaviour is Keras 3's (docs/keras-reference.md section 8).
"""

import re

import pytest
from _api_helpers import fresh_names, tiny_model  # noqa: F401

import fastdnn as keras

pytestmark = pytest.mark.usefixtures("fresh_names")


# --- compile


def test_compile_defaults_to_rmsprop_and_accepts_optimizer_strings_in_any_case():
    model = tiny_model()
    model.compile(loss="sparse_categorical_crossentropy")
    assert isinstance(model.optimizer, keras.optimizers.RMSprop)
    for name, cls in (("Adam", keras.optimizers.Adam), ("SGD", keras.optimizers.SGD),
                      ("adagrad", keras.optimizers.Adagrad), ("RMSPROP", keras.optimizers.RMSprop)):
        model.compile(name, "sparse_categorical_crossentropy")
        assert type(model.optimizer) is cls


def test_compile_uses_an_optimizer_object_as_given():
    opt = keras.optimizers.SGD(learning_rate=0.1, momentum=0.9, nesterov=True)
    model = tiny_model()
    model.compile(optimizer=opt, loss="sparse_categorical_crossentropy")
    assert model.optimizer is opt


@pytest.mark.parametrize("kwargs, message", [
    ({"optimizer": "foo", "loss": "mse"}, "Could not interpret optimizer identifier: foo"),
    ({"optimizer": "nesterov", "loss": "mse"}, "Could not interpret optimizer identifier: nesterov"),
    ({"optimizer": "adam", "loss": "foo"}, "Could not interpret loss identifier: foo"),
    ({"optimizer": "adam", "loss": "Mse"}, "Could not interpret loss identifier: Mse"),
    ({"optimizer": "adam", "loss": "mse", "metrics": ["foo"]},
     "Could not interpret metric identifier: foo"),
    ({"optimizer": "adam", "loss": "mse", "metrics": "accuracy"},
     "Expected `metrics` argument to be a list, tuple, or dict"),
    ({"optimizer": "adam", "loss": "mse", "engine": "torch"}, "`engine` must be one of"),
])
def test_compile_refuses_unknown_names(kwargs, message):
    model = tiny_model()
    with pytest.raises(ValueError, match=re.escape(message)):
        model.compile(**kwargs)


def test_unknown_activation_string_is_refused_at_construction():
    with pytest.raises(ValueError, match="Could not interpret activation function identifier: "
                                         "ReLU"):
        keras.layers.Dense(3, activation="ReLU")
