"""Optimizer objects as users see them, and fit's numbers against Keras' formulas.

Expected behaviour: docs/keras-reference.md section 1 (constructors 1.1, validation 1.2, the
iteration counter 1.3, update rules 1.4, lookup 1.5) and sections 4.5, 5.2 and 8.3 for what fit
reports. The parity tests train a tiny 3-4-2 softmax network from fixed weights in float64 and
compare with ``formula_fit`` of ``_api_helpers``: the reference document's formulas in NumPy,
written independently of fastdnn's kernels and of ``fastdnn.reference``.
"""

import re
import warnings

import numpy as np
import pytest

import fastdnn as keras
from _api_helpers import (FormulaOptimizer, float64, formula_fit, fresh_names,  # noqa: F401
                          same_weights, tiny_data, tiny_model, tiny_weights)

pytestmark = pytest.mark.usefixtures("fresh_names")

opts = keras.optimizers


# --- constructors and defaults (1.1)


@pytest.mark.parametrize("cls, defaults", [
    (opts.SGD, {"learning_rate": 0.01, "momentum": 0.0, "nesterov": False}),
    (opts.Adam, {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7,
                 "amsgrad": False}),
    (opts.Adagrad, {"learning_rate": 0.001, "initial_accumulator_value": 0.1,
                    "epsilon": 1e-7}),
    (opts.RMSprop, {"learning_rate": 0.001, "rho": 0.9, "momentum": 0.0, "epsilon": 1e-7,
                    "centered": False}),
])
def test_constructor_defaults(cls, defaults):
    opt = cls()
    for name, value in defaults.items():
        assert getattr(opt, name) == pytest.approx(value), name
    assert opt.iterations == 0
    assert not opt.built


def test_auto_names_follow_keras():
    assert [opts.SGD().name, opts.Adam().name, opts.Adagrad().name, opts.RMSprop().name] == \
        ["sgd", "adam", "adagrad", "rm_sprop"]
    assert [opts.Adam().name, opts.Adam(name="mine").name, opts.Adam().name] == \
        ["adam_1", "mine", "adam_2"]


@pytest.mark.parametrize("cls", [opts.SGD, opts.Adam, opts.Adagrad, opts.RMSprop])
def test_get_config_rounds_the_learning_rate_to_float32_and_round_trips(cls):
    opt = cls(learning_rate=0.01)
    config = opt.get_config()
    assert config["learning_rate"] == 0.009999999776482582
    assert config["name"] == opt.name
    clone = cls.from_config(config)
    assert type(clone) is cls
    assert clone.get_config() == config


def test_sgd_get_config_lists_its_arguments():
    config = opts.SGD(learning_rate=0.1, momentum=0.9, nesterov=True).get_config()
    assert config == {"name": "sgd", "learning_rate": pytest.approx(0.1, rel=1e-7),
                      "momentum": 0.9, "nesterov": True}


def test_adam_get_config_lists_its_arguments():
    config = opts.Adam(beta_1=0.8, amsgrad=True).get_config()
    assert {k: config[k] for k in ("beta_1", "beta_2", "epsilon", "amsgrad")} == \
        {"beta_1": 0.8, "beta_2": 0.999, "epsilon": 1e-7, "amsgrad": True}


# --- validation (1.2) and fastdnn's documented choices


@pytest.mark.parametrize("cls", [opts.SGD, opts.Adam, opts.Adagrad, opts.RMSprop])
def test_unknown_keyword_arguments_are_refused(cls):
    with pytest.raises(ValueError, match=re.escape("Argument(s) not recognized: {'lr': 0.1}")):
        cls(lr=0.1)


@pytest.mark.parametrize("momentum", [-0.1, 1.5, "0.9", None])
def test_sgd_momentum_must_lie_in_0_1(momentum):
    with pytest.raises(ValueError, match=re.escape("`momentum` must be a float between [0, 1].")):
        opts.SGD(momentum=momentum)


@pytest.mark.parametrize("momentum", [0.0, 0.5, 1.0])
def test_sgd_momentum_bounds_are_accepted(momentum):
    assert opts.SGD(momentum=momentum).momentum == momentum


def test_decay_is_ignored_with_a_warning():
    with pytest.warns(UserWarning, match="Argument `decay` is no longer supported"):
        opt = opts.Adam(decay=0.1)
    assert not hasattr(opt, "decay")


@pytest.mark.parametrize("value", [1, np.float32(0.1), np.float64(0.1), 0.5])
def test_learning_rate_accepts_ints_and_numpy_floats(value):
    assert opts.SGD(learning_rate=value).learning_rate == float(value)


@pytest.mark.parametrize("value", ["0.1", None, -0.1, float("nan"), float("inf"), True])
def test_learning_rate_must_be_a_finite_non_negative_number(value):
    with pytest.raises(ValueError, match="Argument `learning_rate`"):
        opts.Adam(learning_rate=value)


@pytest.mark.parametrize("option", [{"use_ema": True}, {"loss_scale_factor": 2.0}])
def test_shared_options_other_than_defaults_are_not_supported(option):
    with pytest.raises(NotImplementedError):
        opts.SGD(**option)


def test_shared_options_at_their_defaults_are_accepted():
    opt = opts.Adam(weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None,
                    use_ema=False, ema_momentum=0.99, ema_overwrite_frequency=None,
                    loss_scale_factor=None, gradient_accumulation_steps=None)
    assert isinstance(opt, opts.Adam)


@pytest.mark.parametrize("make", [
    lambda: opts.RMSprop(rho=2.0), lambda: opts.RMSprop(rho=1.0), lambda: opts.RMSprop(momentum=-0.1),
    lambda: opts.Adam(beta_1=1.0), lambda: opts.Adam(beta_2=5), lambda: opts.Adam(beta_2=-0.1),
    lambda: opts.Adam(epsilon=-1e-7), lambda: opts.Adagrad(initial_accumulator_value=-1.0),
    lambda: opts.Adagrad(epsilon=float("nan")), lambda: opts.Adam(learning_rate=float("inf")),
], ids=["rho-2", "rho-1", "rmsprop-momentum", "beta_1-1", "beta_2-5", "beta_2-negative",
        "epsilon-negative", "accumulator-negative", "epsilon-nan", "lr-inf"])
def test_hyper_parameters_that_make_training_diverge_are_refused(make):
    # Keras accepts these (or documents them as invalid); fastdnn refuses them where given.
    with pytest.raises(ValueError, match="Argument"):
        make()


def test_hyper_parameters_assigned_later_are_checked_too():
    opt = opts.Adam()
    with pytest.raises(ValueError, match="beta_2"):
        opt.beta_2 = 5.0
    assert opt.beta_2 == 0.999
    opt.beta_2 = 0.99
    assert opt.get_config()["beta_2"] == 0.99
    with pytest.raises(ValueError, match="iterations"):
        opt.iterations = 2**63
    with pytest.raises(ValueError, match="iterations"):
        opt.iterations = -1


def test_learning_rate_can_be_assigned():
    opt = opts.SGD()
    opt.learning_rate = 0.5
    assert opt.learning_rate == 0.5
    with pytest.raises(ValueError):
        opt.learning_rate = -1.0
    assert opt.learning_rate == 0.5


# --- lookup (1.5)


@pytest.mark.parametrize("name, cls", [("adam", opts.Adam), ("Adam", opts.Adam),
                                       ("ADAM", opts.Adam), ("sgd", opts.SGD),
                                       ("rmsprop", opts.RMSprop), ("RMSprop", opts.RMSprop),
                                       ("adagrad", opts.Adagrad)])
def test_get_makes_a_new_default_instance_from_a_name(name, cls):
    a, b = opts.get(name), opts.get(name)
    assert type(a) is cls and a is not b
    assert a.learning_rate == cls().learning_rate


def test_get_returns_an_instance_as_given():
    opt = opts.SGD(learning_rate=0.3)
    assert opts.get(opt) is opt


@pytest.mark.parametrize("identifier", ["foo", "nesterov", "momentum", 3, None])
def test_get_refuses_anything_else(identifier):
    with pytest.raises(ValueError, match="Could not interpret optimizer identifier"):
        opts.get(identifier)


# --- slots, iteration counter (1.3), summary counts


def _fit(model, epochs=1, batch_size=2, n=6):
    x, y = tiny_data(n, dtype=model.params.dtype)
    return model.fit(x, y, batch_size=batch_size, epochs=epochs, shuffle=False, verbose=0)


def test_adagrad_accumulator_starts_at_the_initial_value():
    model = tiny_model()
    model.compile(opts.Adagrad(initial_accumulator_value=0.25, learning_rate=0.0),
                  "sparse_categorical_crossentropy")
    model.evaluate(*tiny_data(2, dtype=np.float32), verbose=0)
    assert np.all(model.optimizer.slots == 0.25)


def test_iteration_counter_counts_batches_across_fits_and_survives_recompiling():
    opt = opts.Adam()
    model = tiny_model()
    model.compile(opt, "sparse_categorical_crossentropy")
    _fit(model, epochs=2)
    assert opt.iterations == 6
    _fit(model, epochs=2, n=2)
    assert opt.iterations == 8
    model.compile(opt, "sparse_categorical_crossentropy")
    assert model.optimizer.iterations == 8
    model.compile("adam", "sparse_categorical_crossentropy")
    assert model.optimizer.iterations == 0 and not model.optimizer.built


def test_reusing_the_optimizer_object_keeps_its_state_for_the_next_fit(float64):
    # Two fits of 1 epoch with one Adam object == one fit of 2 epochs.
    x, y = tiny_data(6)
    split = tiny_model()
    split.compile(opts.Adam(learning_rate=0.05), "sparse_categorical_crossentropy")
    split.fit(x, y, batch_size=2, shuffle=False, verbose=0)
    split.compile(split.optimizer, "sparse_categorical_crossentropy")
    split.fit(x, y, batch_size=2, shuffle=False, verbose=0)
    whole = tiny_model()
    whole.compile(opts.Adam(learning_rate=0.05), "sparse_categorical_crossentropy")
    whole.fit(x, y, batch_size=2, epochs=2, shuffle=False, verbose=0)
    assert same_weights(split.get_weights(), whole.get_weights())
    assert np.array_equal(split.optimizer.slots, whole.optimizer.slots)


def test_a_string_optimizer_in_compile_starts_fresh(float64):
    x, y = tiny_data(6)
    model = tiny_model()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=2, shuffle=False, verbose=0)
    after_one = model.get_weights()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=2, shuffle=False, verbose=0)
    # A fresh Adam from after_one, formula-computed, is what the second fit did.
    opt = FormulaOptimizer("adam", 0.001)
    expected, _ = formula_fit(after_one, x, y, opt, "tanh", 2, 1)
    for got, want in zip(model.get_weights(), expected):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("make, rows", [
    (lambda: opts.SGD(), 0), (lambda: opts.SGD(momentum=0.9), 1), (lambda: opts.Adagrad(), 1),
    (lambda: opts.RMSprop(), 1), (lambda: opts.RMSprop(centered=True), 2),
    (lambda: opts.Adam(), 2), (lambda: opts.Adam(amsgrad=True), 3),
])
def test_summary_counts_two_scalars_plus_the_slots(make, rows):
    model = tiny_model()
    model.compile(make(), "sparse_categorical_crossentropy")
    texts = []
    model.summary(print_fn=texts.append)
    assert "Optimizer params" not in texts[0]  # not right after compile
    _fit(model)
    texts.clear()
    model.summary(print_fn=texts.append)
    count = 2 + rows * 26
    assert model.optimizer.variable_count(26) == count
    size = count * 4
    lines = texts[0].splitlines()
    assert lines[-1].startswith(f" Optimizer params: {count:,} (")
    assert lines[-4] == f" Total params: {26 + count:,} ({size + 104:.2f} B)"


# --- parity with Keras' formulas (1.4, 4.5, 5.2)

CASES = {
    "sgd": (lambda: opts.SGD(learning_rate=0.1), ("sgd", 0.1, {})),
    "sgd_momentum": (lambda: opts.SGD(learning_rate=0.1, momentum=0.9),
                     ("sgd", 0.1, {"momentum": 0.9})),
    "sgd_nesterov": (lambda: opts.SGD(learning_rate=0.1, momentum=0.9, nesterov=True),
                     ("sgd", 0.1, {"momentum": 0.9, "nesterov": True})),
    "adam": (lambda: opts.Adam(learning_rate=0.05), ("adam", 0.05, {})),
    "adam_betas": (lambda: opts.Adam(learning_rate=0.02, beta_1=0.5, beta_2=0.9, epsilon=1e-3),
                   ("adam", 0.02, {"beta_1": 0.5, "beta_2": 0.9, "epsilon": 1e-3})),
    "adagrad": (lambda: opts.Adagrad(learning_rate=0.1), ("adagrad", 0.1, {})),
    "adagrad_settings": (lambda: opts.Adagrad(learning_rate=0.2, initial_accumulator_value=0.3,
                                              epsilon=1e-6),
                         ("adagrad", 0.2, {"initial_accumulator_value": 0.3, "epsilon": 1e-6})),
    "rmsprop": (lambda: opts.RMSprop(learning_rate=0.01), ("rmsprop", 0.01, {})),
    "rmsprop_centered_momentum": (
        lambda: opts.RMSprop(learning_rate=0.01, rho=0.8, momentum=0.5, centered=True),
        ("rmsprop", 0.01, {"rho": 0.8, "momentum": 0.5, "centered": True})),
}


@pytest.mark.parametrize("engine", ["fastdnn", "numpy"])
@pytest.mark.parametrize("hidden", ["tanh", "relu"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_fit_matches_formula_weights_and_history(case, hidden, engine, float64):
    make, (kind, lr, settings) = CASES[case]
    x, y = tiny_data(5, seed=3)  # 5 samples, batch 2: the last batch has one sample
    model = tiny_model(hidden)
    model.compile(make(), "sparse_categorical_crossentropy", metrics=["accuracy"], engine=engine)
    history = model.fit(x, y, batch_size=2, epochs=4, shuffle=False, verbose=0)
    formula = FormulaOptimizer(kind, lr, **settings)
    weights, expected = formula_fit(tiny_weights(), x, y, formula, hidden, 2, 4)
    for got, want in zip(model.get_weights(), weights):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(history.history["loss"], expected["loss"], rtol=1e-10)
    assert history.history["accuracy"] == pytest.approx(expected["accuracy"])
    assert model.optimizer.iterations == formula.iterations == 12


def test_sgd_fit_matches_formula_history(float64):
    x, y = tiny_data(6)
    model = tiny_model("relu")
    model.compile(opts.SGD(learning_rate=0.5), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x, y, batch_size=2, epochs=3, shuffle=False, verbose=0)
    weights, expected = formula_fit(tiny_weights(), x, y, FormulaOptimizer("sgd", 0.5), "relu",
                                    2, 3)
    np.testing.assert_allclose(history.history["loss"], expected["loss"], rtol=1e-12)
    for got, want in zip(model.get_weights(), weights):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_adam_fit_matches_formula_history_and_slots(float64):
    x, y = tiny_data(6)
    model = tiny_model("tanh")
    model.compile(opts.Adam(learning_rate=0.01), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x, y, batch_size=2, epochs=3, shuffle=False, verbose=0)
    formula = FormulaOptimizer("adam", 0.01)
    weights, expected = formula_fit(tiny_weights(), x, y, formula, "tanh", 2, 3)
    np.testing.assert_allclose(history.history["loss"], expected["loss"], rtol=1e-12)
    assert history.history["accuracy"] == pytest.approx(expected["accuracy"])
    for got, want in zip(model.get_weights(), weights):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    # the slots array holds m then v, each laid out like the parameter buffer
    m = np.concatenate([s.ravel() for s in formula.slots[0]])
    v = np.concatenate([s.ravel() for s in formula.slots[1]])
    np.testing.assert_allclose(model.optimizer.slots, np.stack([m, v]), rtol=1e-10, atol=1e-16)


def test_changing_the_learning_rate_between_fits_takes_effect(float64):
    x, y = tiny_data(6)
    model = tiny_model()
    opt = opts.SGD(learning_rate=0.1)
    model.compile(opt, "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=2, shuffle=False, verbose=0)
    after = model.get_weights()
    opt.learning_rate = 0.0
    model.fit(x, y, batch_size=2, shuffle=False, verbose=0)
    assert same_weights(model.get_weights(), after)
    opt.learning_rate = 0.3
    model.fit(x, y, batch_size=2, shuffle=False, verbose=0)
    expected, _ = formula_fit(after, x, y, FormulaOptimizer("sgd", 0.3), "tanh", 2, 1)
    for got, want in zip(model.get_weights(), expected):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


def test_float32_fit_stays_close_to_the_float64_formula():
    x, y = tiny_data(6, dtype=np.float32)
    model = tiny_model()
    model.compile(opts.Adam(learning_rate=0.01), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        history = model.fit(x, y, batch_size=2, epochs=3, shuffle=False, verbose=0)
    lr32 = float(np.float32(0.01))
    weights, expected = formula_fit(tiny_weights(), x, y, FormulaOptimizer("adam", lr32),
                                    "tanh", 2, 3)
    np.testing.assert_allclose(history.history["loss"], expected["loss"], rtol=1e-5)
    for got, want in zip(model.get_weights(), weights):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
