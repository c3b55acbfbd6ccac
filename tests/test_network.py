"""``kernels.Network`` against ``reference.Network``: built from the same ops and copies of the
same parameters, they must train the same batches to the same parameters (float64, 1e-10), report
the same per-batch losses and hit counts, and predict and evaluate alike; plus the driver's own
rules (a non-finite loss stops training before that batch's update) and its argument checks.
"""

import numpy as np
import pytest

from _helpers import build_ops, init_params, init_slots, network_data
from fastdnn import _kernels as kernels
from fastdnn import reference
from fastdnn._plan import Op

N_INPUTS, BATCH, CAPACITY = 6, 16, 16
N_SAMPLES = 50  # 3 full batches of 16 and a short one of 2
N_TRAIN = 48    # 3 full batches only, where a test needs them all alike

ARCHITECTURES = {
    # name: (layers, loss, metric, fused)
    "sparse_relu_softmax": (
        [("dense", 8, "relu", True), ("dense", 4, "softmax", True)],
        kernels.LOSS_SPARSE_CE, kernels.METRIC_SPARSE_ACC, True),
    "one_hot_tanh_dropout_softmax": (
        [("dense", 8, "tanh", True), ("dropout", 0.3), ("dense", 4, "softmax", True)],
        kernels.LOSS_CE, kernels.METRIC_CATEGORICAL_ACC, True),
    "binary_sigmoid_fused_sigmoid": (
        [("dense", 8, "sigmoid", True), ("dense", 3, "sigmoid", True)],
        kernels.LOSS_BCE, kernels.METRIC_BINARY_ACC, True),
    "mse_activation_op_no_bias": (
        [("dense", 8, "linear", False), ("activation", "tanh"), ("dense", 2, "linear", True)],
        kernels.LOSS_MSE, kernels.METRIC_NONE, False),
    "dropout_first_softmax_activation_op": (
        [("dropout", 0.2), ("dense", 8, "relu", True), ("dense", 4, "linear", True),
         ("activation", "softmax")],
        kernels.LOSS_SPARSE_CE, kernels.METRIC_SPARSE_ACC, True),
    "mse_sigmoid_output_binary_accuracy": (
        [("dense", 5, "relu", True), ("dense", 1, "sigmoid", True)],
        kernels.LOSS_MSE, kernels.METRIC_BINARY_ACC, False),
}

OPTIMIZERS = {
    "sgd": {"kind": "sgd", "learning_rate": 0.1},
    "sgd_momentum": {"kind": "sgd", "learning_rate": 0.05, "momentum": 0.9},
    "sgd_nesterov": {"kind": "sgd", "learning_rate": 0.05, "momentum": 0.9, "nesterov": True},
    "adagrad": {"kind": "adagrad", "learning_rate": 0.1},
    "rmsprop": {"kind": "rmsprop", "learning_rate": 0.01},
    "rmsprop_momentum": {"kind": "rmsprop", "learning_rate": 0.01, "momentum": 0.9},
    "rmsprop_centered": {"kind": "rmsprop", "learning_rate": 0.01, "rho": 0.8, "centered": True},
    "adam": {"kind": "adam", "learning_rate": 0.01},
    "adam_amsgrad": {"kind": "adam", "learning_rate": 0.01, "beta_2": 0.99, "amsgrad": True},
    "nadam": {"kind": "nadam", "learning_rate": 0.01},
    "adamax": {"kind": "adamax", "learning_rate": 0.01, "beta_1": 0.8},
    "adam_clipnorm": {"kind": "adam", "learning_rate": 0.01, "clipnorm": 0.05},
    "sgd_momentum_global_clipnorm": {"kind": "sgd", "learning_rate": 0.1, "momentum": 0.5,
                                     "global_clipnorm": 0.1},
    "nadam_global_clipnorm_decay": {"kind": "nadam", "learning_rate": 0.01,
                                    "global_clipnorm": 0.5, "weight_decay": 0.01},
}


class Run:
    """One engine's Network with its own copies of the parameters and slots."""

    def __init__(self, engine, arch, opt, params, seed=7, capacity=CAPACITY):
        layers, self.loss, metric, fused = ARCHITECTURES[arch]
        ops, _ = build_ops(N_INPUTS, layers)
        self.params = params.copy()
        self.net = engine.Network(N_INPUTS, ops, self.params, self.loss, metric, fused, capacity,
                                  seed)
        self.opt = opt
        self.slots = init_slots(opt, params.size, params.dtype)
        self.iteration = 0
        self.losses, self.correct = [], []

    def train(self, x, y, order, first, count, batch_size=BATCH):
        loss_out, correct_out = np.full(count, np.nan), np.full(count, np.nan)
        done, self.iteration = self.net.train(x, y, order, batch_size, first, count, self.opt,
                                              self.slots, self.iteration, loss_out, correct_out)
        self.losses.extend(loss_out[:min(done + 1, count)])
        self.correct.extend(correct_out[:min(done + 1, count)])
        return done


def make_problem(arch, seed=11):
    rng = np.random.default_rng(seed)
    layers, loss, _, _ = ARCHITECTURES[arch]
    _, params = init_params(rng, N_INPUTS, layers, np.float64)
    n_outputs = [layer for layer in layers if layer[0] == "dense"][-1][1]
    x, y = network_data(rng, loss, N_SAMPLES, N_INPUTS, n_outputs)
    return params, x, y, rng.permutation(N_SAMPLES).astype(np.int64)


def first_rows(x, y, n=N_TRAIN):
    return x[:n].copy(), y[:n].copy()


def assert_runs_equal(a, b):
    np.testing.assert_allclose(a.params, b.params, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(a.slots, b.slots, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(a.losses, b.losses, rtol=1e-10, atol=1e-12)
    # binary accuracy counts fractional rows, summed in a different order by the two engines
    np.testing.assert_allclose(a.correct, b.correct, rtol=1e-12, atol=0)
    assert a.iteration == b.iteration
    assert a.net.counter == b.net.counter


@pytest.mark.parametrize("shuffled", [False, True], ids=["in_order", "shuffled"])
@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_network_trains_like_the_reference(arch, opt_name, shuffled):
    params, x, y, order = make_problem(arch)
    order = order if shuffled else None
    runs = [Run(engine, arch, OPTIMIZERS[opt_name], params) for engine in (kernels, reference)]
    n_batches = 4  # the last one short
    for run in runs:  # two calls: the second resumes the iteration and the dropout counter
        assert run.train(x, y, order, 0, 2) == 2
        assert run.train(x, y, order, 2, n_batches - 2) == n_batches - 2
    kernel_run, reference_run = runs
    assert kernel_run.iteration == n_batches
    assert not np.array_equal(kernel_run.params, params)  # training moved the parameters
    assert np.all(np.isfinite(kernel_run.losses))
    assert_runs_equal(kernel_run, reference_run)
    np.testing.assert_allclose(kernel_run.net.grads, reference_run.net.grads, rtol=1e-10,
                               atol=1e-12)

    n_outputs = kernel_run.net.n_outputs
    predictions = [np.full((N_SAMPLES, n_outputs), np.nan) for _ in runs]
    for run, out in zip(runs, predictions):
        run.net.predict(x, out)
    np.testing.assert_allclose(predictions[0], predictions[1], rtol=1e-10, atol=1e-12)
    (loss_k, correct_k), (loss_r, correct_r) = (run.net.evaluate(x, y) for run in runs)
    assert loss_k == pytest.approx(loss_r, rel=1e-10)
    assert correct_k == pytest.approx(correct_r, rel=1e-12)


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_predict_applies_the_fused_activation_and_evaluate_matches_the_loss_kernels(arch):
    params, x, y, _ = make_problem(arch)
    layers, loss, metric, fused = ARCHITECTURES[arch]
    net = kernels.Network(N_INPUTS, build_ops(N_INPUTS, layers)[0], params, loss, metric, fused,
                          CAPACITY)
    out = np.empty((N_SAMPLES, net.n_outputs))
    net.predict(x, out)
    # recompute with the public kernels, dropout being the identity at inference
    cur, width = x, N_INPUTS
    for kind, units, act, _, w_off, b_off in build_ops(N_INPUTS, layers)[0]:
        if kind == kernels.OP_DENSE:
            z = np.empty((N_SAMPLES, units))
            kernels.dense_forward(cur, params[w_off:w_off + width * units].reshape(width, units),
                                  params[b_off:b_off + units] if b_off >= 0 else None, z, act)
            cur = z
        elif kind == kernels.OP_ACTIVATION:
            z = np.empty_like(cur)
            kernels.activation_forward(cur, z, act)
            cur = z
        width = units
    np.testing.assert_allclose(out, cur, rtol=1e-12, atol=1e-14)
    loss_sum, correct = net.evaluate(x, y)
    if loss == kernels.LOSS_MSE:
        expected = kernels.mean_squared_error(out, y)
    else:
        logits = np.log(out) if loss != kernels.LOSS_BCE else np.log(out / (1 - out))
        expected = {kernels.LOSS_SPARSE_CE: kernels.sparse_softmax_cross_entropy,
                    kernels.LOSS_CE: kernels.softmax_cross_entropy,
                    kernels.LOSS_BCE: kernels.sigmoid_binary_cross_entropy}[loss](logits, y)
    assert loss_sum / N_SAMPLES == pytest.approx(expected, rel=1e-9)
    if metric == kernels.METRIC_SPARSE_ACC:
        assert correct == kernels.count_correct(out, labels=y)
    elif metric == kernels.METRIC_NONE:
        assert correct == 0
    else:
        binary = metric == kernels.METRIC_BINARY_ACC
        assert correct == pytest.approx(kernels.count_correct(out, targets=y, binary=binary),
                                        rel=1e-12)


@pytest.mark.parametrize("arch", ["sparse_relu_softmax", "one_hot_tanh_dropout_softmax"])
def test_shuffled_order_equals_training_on_the_permuted_data(arch):
    params, x, y, order = make_problem(arch)
    shuffled = Run(kernels, arch, OPTIMIZERS["adam"], params)
    permuted = Run(kernels, arch, OPTIMIZERS["adam"], params)
    shuffled.train(x, y, order, 0, 4)
    permuted.train(np.ascontiguousarray(x[order]), np.ascontiguousarray(y[order]), None, 0, 4)
    np.testing.assert_array_equal(shuffled.params, permuted.params)
    np.testing.assert_array_equal(shuffled.losses, permuted.losses)


def test_identity_order_equals_no_order():
    params, x, y, _ = make_problem("sparse_relu_softmax")
    runs = [Run(kernels, "sparse_relu_softmax", OPTIMIZERS["sgd_momentum"], params)
            for _ in range(2)]
    runs[0].train(x, y, None, 0, 4)
    runs[1].train(x, y, np.arange(N_SAMPLES, dtype=np.int64), 0, 4)
    np.testing.assert_array_equal(runs[0].params, runs[1].params)


def test_reserve_grows_the_batch_capacity():
    params, x, y, _ = make_problem("sparse_relu_softmax")
    runs = [Run(engine, "sparse_relu_softmax", OPTIMIZERS["adam"], params, capacity=8)
            for engine in (kernels, reference)]
    for run in runs:
        run.net.reserve(32)
        assert run.net.capacity == 32
        run.net.reserve(4)  # never shrinks
        assert run.net.capacity == 32
        run.train(*first_rows(x, y, 32), None, 0, 1, batch_size=32)
    assert_runs_equal(*runs)


@pytest.mark.parametrize("arch", ["sparse_relu_softmax", "mse_activation_op_no_bias"])
def test_network_trains_a_short_last_batch_alone_like_the_reference(arch):
    params, x, y, order = make_problem(arch)
    runs = [Run(engine, arch, OPTIMIZERS["adam"], params) for engine in (kernels, reference)]
    for run in runs:
        assert run.train(x, y, order, 3, 1) == 1  # rows 48 and 49 only
    assert_runs_equal(*runs)
    # the mean over 2 rows: one step of plain SGD moves the parameters by the mean gradient
    sgd = Run(kernels, arch, OPTIMIZERS["sgd"], params)
    sgd.train(x, y, None, 3, 1)
    mean_of_two = Run(kernels, arch, OPTIMIZERS["sgd"], params)
    mean_of_two.train(x[48:].copy(), y[48:].copy(), None, 0, 1, batch_size=2)
    np.testing.assert_allclose(sgd.params, mean_of_two.params, rtol=1e-14, atol=1e-15)


# --- a non-finite loss stops training before that batch's update


def train_with_a_bad_sample(engine, arch, bad):
    """Train 3 batches whose batch 2 holds a sample of non-finite inputs; return both runs."""
    opt = OPTIMIZERS["adam"]
    params, x, y, _ = make_problem(arch)
    x, y = first_rows(x, y)
    x[2 * BATCH + 3, :] = bad  # every input of one sample of batch 2 (of 3)
    stopped = Run(engine, arch, opt, params)
    stopped.done = stopped.train(x, y, None, 0, 3)
    two_batches = Run(engine, arch, opt, params)
    assert two_batches.train(x, y, None, 0, 2) == 2
    return stopped, two_batches


def assert_stopped_before_batch_two(stopped, two_batches):
    assert stopped.done == 2
    assert stopped.iteration == 2
    np.testing.assert_array_equal(stopped.params, two_batches.params)
    np.testing.assert_array_equal(stopped.slots, two_batches.slots)
    assert np.all(np.isfinite(stopped.params))
    assert np.all(np.isfinite(stopped.losses[:2]))
    assert not np.isfinite(stopped.losses[2])  # the failing batch's loss is still reported


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the reference's NumPy sees inf - inf
@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan], ids=["inf", "-inf", "nan"])
@pytest.mark.parametrize("arch", ["one_hot_tanh_dropout_softmax", "binary_sigmoid_fused_sigmoid",
                                  "mse_activation_op_no_bias"])
@pytest.mark.parametrize("engine", [kernels, reference], ids=["kernels", "reference"])
def test_non_finite_loss_stops_before_that_batch_update(engine, arch, bad):
    assert_stopped_before_batch_two(*train_with_a_bad_sample(engine, arch, bad))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("engine", [kernels, reference], ids=["kernels", "reference"])
def test_nan_input_through_relu_stops_before_that_batch_update(engine):
    # relu must keep NaN (as np.maximum does): were it 0, the loss would be finite and the update
    # would write NaN into the first layer
    assert_stopped_before_batch_two(*train_with_a_bad_sample(engine, "sparse_relu_softmax",
                                                             np.nan))


# --- the constructor's checks


def valid_network_args(**overrides):
    ops, n_params = build_ops(N_INPUTS, [("dense", 8, "relu", True), ("dropout", 0.5),
                                         ("dense", 4, "softmax", True)])
    args = dict(n_inputs=N_INPUTS, ops=ops, params=np.zeros(n_params), loss=kernels.LOSS_SPARSE_CE,
                metric=kernels.METRIC_SPARSE_ACC, fused=True, capacity=CAPACITY)
    args.update(overrides)
    return args


def edit_op(index, **changes):
    ops = [list(op) for op in valid_network_args()["ops"]]
    for field, value in changes.items():
        ops[index][Op._fields.index(field)] = value
    return [tuple(op) for op in ops]


N_PARAMS = valid_network_args()["params"].size
BAD_CONSTRUCTIONS = {
    "dense_units_zero": dict(ops=edit_op(0, units=0)),
    "dropout_width_changes": dict(ops=edit_op(1, units=9)),
    "activation_width_changes": dict(ops=edit_op(1, kind=kernels.OP_ACTIVATION, units=7)),
    "kernel_offset_negative": dict(ops=edit_op(0, kernel_offset=-1)),
    "kernel_past_params": dict(ops=edit_op(2, kernel_offset=N_PARAMS - 10)),
    "bias_past_params": dict(ops=edit_op(2, bias_offset=N_PARAMS - 1)),
    "params_too_short": dict(params=np.zeros(N_PARAMS - 1)),
    "unknown_kind": dict(ops=edit_op(1, kind=3)),
    "negative_kind": dict(ops=edit_op(1, kind=-1)),
    "unknown_activation": dict(ops=edit_op(0, activation=max(kernels.ACTIVATIONS.values()) + 1)),
    "negative_activation": dict(ops=edit_op(0, activation=-1)),
    "fused_after_relu": dict(ops=edit_op(2, activation=kernels.RELU)),
    "fused_after_linear": dict(ops=edit_op(2, activation=kernels.LINEAR)),
    "fused_after_dropout": dict(ops=valid_network_args()["ops"] + [
        (kernels.OP_DROPOUT, 4, kernels.SOFTMAX, 0.5, -1, -1)]),
    "dropout_rate_above_one": dict(ops=edit_op(1, param=1.5)),
    "dropout_rate_negative": dict(ops=edit_op(1, param=-0.1)),
    "dropout_with_a_kernel": dict(ops=edit_op(1, kernel_offset=0)),
    "op_missing_a_field": dict(ops=[op[:5] for op in valid_network_args()["ops"]]),
    "op_not_a_tuple": dict(ops=[op[0] for op in valid_network_args()["ops"]]),
    "ops_not_a_list": dict(ops=None),
    "no_dense_layer": dict(ops=[(kernels.OP_ACTIVATION, N_INPUTS, kernels.SOFTMAX, 0.0, -1, -1)]),
    "empty_ops": dict(ops=[]),
    "no_inputs": dict(n_inputs=0),
    "unknown_loss": dict(loss=4),
    "unknown_metric": dict(metric=4),
    "zero_capacity": dict(capacity=0),
    "params_two_dimensional": dict(params=np.zeros((1, N_PARAMS))),
    "params_read_only": dict(params=np.zeros(N_PARAMS)),
}
BAD_CONSTRUCTIONS["params_read_only"]["params"].setflags(write=False)


@pytest.mark.parametrize("case", list(BAD_CONSTRUCTIONS))
def test_network_constructor_rejects_inconsistent_arguments(case):
    with pytest.raises(ValueError):
        kernels.Network(**valid_network_args(**BAD_CONSTRUCTIONS[case]))


@pytest.mark.parametrize("params", [np.zeros(N_PARAMS, np.int64), np.zeros(N_PARAMS, np.float16),
                                    list(np.zeros(N_PARAMS))], ids=["int64", "float16", "list"])
def test_network_constructor_rejects_params_of_the_wrong_type(params):
    with pytest.raises(TypeError, match="params"):
        kernels.Network(**valid_network_args(params=params))


@pytest.mark.parametrize("overrides", [
    dict(params=np.zeros(N_PARAMS + 1)),  # a parameter no layer owns
    dict(ops=edit_op(2, kernel_offset=0)),     # two layers sharing weights
    dict(ops=edit_op(0, bias_offset=2)),       # a bias inside its kernel
], ids=["unowned_parameter", "shared_weights", "bias_inside_kernel"])
def test_network_constructor_requires_each_parameter_in_exactly_one_layer(overrides):
    # every layer applies the optimizer step to its own weights, so each is stepped once
    with pytest.raises(ValueError, match="cover params exactly, each parameter once"):
        kernels.Network(**valid_network_args(**overrides))


def test_network_constructor_accepts_the_valid_arguments():
    net = kernels.Network(**valid_network_args())
    assert net.n_outputs == 4 and net.capacity == CAPACITY and net.dtype == np.float64


@pytest.mark.parametrize("engine", [kernels, reference], ids=["kernels", "reference"])
def test_network_reads_named_ops_as_their_tuples(engine):
    params, x, y, _ = make_problem("one_hot_tanh_dropout_softmax")
    layers, loss, metric, fused = ARCHITECTURES["one_hot_tanh_dropout_softmax"]
    ops = build_ops(N_INPUTS, layers)[0]
    outputs = []
    for plan_ops in (ops, [Op(*op) for op in ops]):
        net = engine.Network(N_INPUTS, plan_ops, params.copy(), loss, metric, fused, CAPACITY, 3)
        loss_out, correct_out = np.zeros(2), np.zeros(2)
        net.train(x, y, None, BATCH, 0, 2, OPTIMIZERS["adam"],
                  init_slots(OPTIMIZERS["adam"], params.size, params.dtype), 0, loss_out,
                  correct_out)
        outputs.append(net.params)
    assert not np.array_equal(outputs[0], params)
    np.testing.assert_array_equal(outputs[0], outputs[1])


# --- train()'s checks


def train_args(net, **overrides):
    x = np.zeros((N_TRAIN, N_INPUTS))
    args = dict(x=x, y=np.zeros(N_TRAIN, np.int32), order=None, batch_size=BATCH, first=0,
                count=2, opt={"kind": "adam"}, slots=np.zeros((2, net.params.size)), iteration=0,
                loss_out=np.zeros(2), correct_out=np.zeros(2))
    args.update(overrides)
    return args


BAD_TRAINING = {
    # case: (overrides, exception, name in the message)
    "order_out_of_range": (dict(order=np.where(np.arange(N_TRAIN) == 5, N_TRAIN,
                                               np.arange(N_TRAIN))), ValueError, "order"),
    "order_far_out_of_range": (dict(order=np.where(np.arange(N_TRAIN) == 0, 2**40,
                                                   np.arange(N_TRAIN))), ValueError, "order"),
    "order_negative": (dict(order=np.arange(N_TRAIN, dtype=np.int64) - 1), ValueError, "order"),
    "order_int32": (dict(order=np.arange(N_TRAIN, dtype=np.int32)), TypeError, "order"),
    "order_too_short": (dict(order=np.arange(N_TRAIN - 1, dtype=np.int64)), ValueError, "order"),
    "order_list": (dict(order=list(range(N_TRAIN))), TypeError, "order"),
    "batch_size_above_capacity": (dict(batch_size=CAPACITY + 1), ValueError, "batch_size"),
    "batch_size_zero": (dict(batch_size=0), ValueError, "batch_size"),
    "slots_too_few_rows": (dict(slots=np.zeros((1, N_PARAMS))), ValueError, "slots"),
    "slots_wrong_columns": (dict(slots=np.zeros((2, 3))), ValueError, "slots"),
    "slots_float32": (dict(slots=np.zeros((2, N_PARAMS), np.float32)), TypeError, "slots"),
    "slots_one_dimensional": (dict(slots=np.zeros(2)), ValueError, "slots"),
    "batches_past_the_end": (dict(first=3, count=2), ValueError, "batches"),
    "negative_first": (dict(first=-1), ValueError, "batches"),
    "loss_out_wrong_size": (dict(loss_out=np.zeros(3)), ValueError, "loss_out"),
    "correct_out_float32": (dict(correct_out=np.zeros(2, np.float32)), TypeError, "correct_out"),
    "negative_iteration": (dict(iteration=-1), ValueError, "iteration"),
    "unknown_optimizer": (dict(opt={"kind": "lion"}), ValueError, "kind"),
    "optimizer_not_a_config": (dict(opt="adam"), TypeError, "opt"),
    "learning_rate_not_a_number": (dict(opt={"kind": "adam", "learning_rate": "0.1"}), TypeError,
                                   "learning_rate"),
    "clipnorm_not_a_number": (dict(opt={"kind": "adam", "clipnorm": None}), TypeError,
                              "clipnorm"),
    "optimizer_two_clips": (dict(opt={"kind": "adam", "clipnorm": 1.0, "clipvalue": 0.5}),
                            ValueError, "Only one of"),
    "negative_clipnorm": (dict(opt={"kind": "adam", "global_clipnorm": -1.0}), ValueError,
                          "global_clipnorm"),
    "slots_too_few_for_nadam": (dict(opt={"kind": "nadam"}, slots=np.zeros((1, N_PARAMS))),
                                ValueError, "slots"),
    "non_finite_learning_rate": (dict(opt={"kind": "adam", "learning_rate": np.nan}), ValueError,
                                 "learning_rate"),
    "negative_momentum": (dict(opt={"kind": "sgd", "momentum": -0.5},
                               slots=np.zeros((0, N_PARAMS))), ValueError, "momentum"),
    "x_wrong_width": (dict(x=np.zeros((N_TRAIN, N_INPUTS + 1))), ValueError, "x"),
    "x_float32": (dict(x=np.zeros((N_TRAIN, N_INPUTS), np.float32)), TypeError, "x"),
    "labels_out_of_range": (dict(y=np.full(N_TRAIN, 4, np.int32)), ValueError, "labels"),
    "labels_wrong_length": (dict(y=np.zeros(N_TRAIN - 1, np.int32)), ValueError, "labels"),
}


@pytest.mark.parametrize("case", list(BAD_TRAINING))
def test_train_rejects_bad_arguments_naming_them(case):
    net = kernels.Network(**valid_network_args())
    overrides, error, name = BAD_TRAINING[case]
    before = net.params.copy()
    with pytest.raises(error) as info:
        net.train(**train_args(net, **overrides))
    assert name in str(info.value)
    np.testing.assert_array_equal(net.params, before)


def test_train_with_the_valid_arguments_succeeds():
    net = kernels.Network(**valid_network_args())
    assert net.train(**train_args(net)) == (2, 2)


def test_train_rejects_targets_of_the_wrong_shape_for_a_dense_loss():
    net = kernels.Network(**valid_network_args(loss=kernels.LOSS_CE,
                                               metric=kernels.METRIC_CATEGORICAL_ACC))
    with pytest.raises(ValueError, match="y"):
        net.train(**train_args(net, y=np.zeros((N_TRAIN, 3))))


def test_predict_and_evaluate_reject_bad_arguments_naming_them():
    net = kernels.Network(**valid_network_args())
    x = np.zeros((5, N_INPUTS))
    with pytest.raises(ValueError, match="out"):
        net.predict(x, np.zeros((5, 3)))
    with pytest.raises(ValueError, match="out"):
        net.predict(x, np.zeros((4, 4)))
    with pytest.raises(ValueError, match="out"):
        net.predict(x, np.zeros((5, 4), order="F"))
    with pytest.raises(ValueError, match="x"):
        net.predict(np.zeros((5, N_INPUTS + 1)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="labels"):
        net.evaluate(x, np.array([0, 1, 2, 3, 4], np.int32))


# --- layers cut into blocks run on a team of threads; while thread 0 works alone, the others copy
# rows of the next shuffled batch ahead: no result may depend on the thread count or the timing

CUT_LAYERS = {
    # n_inputs and layers; at batch 64 both hidden layers are cut (2^20 multiply-adds)
    "rows": (200, [("dense", 256, "relu", True), ("dropout", 0.2), ("dense", 128, "tanh", True),
                   ("dense", 10, "softmax", True)]),
    "columns": (300, [("dense", 80, "relu", True), ("dense", 1024, "tanh", True),
                      ("dense", 10, "softmax", True)]),
    # the first dense layer reads what thread 0 writes each step (the dropout's output)
    "dropout_first": (200, [("dropout", 0.1), ("dense", 256, "relu", True),
                            ("dense", 10, "softmax", True)]),
}


@pytest.mark.parametrize("layout", sorted(CUT_LAYERS))
def test_cut_layers_train_and_predict_bit_identically_on_any_thread_count(layout,
                                                                          kernel_threads):
    n_inputs, layers = CUT_LAYERS[layout]
    rng = np.random.default_rng(5)
    ops, params = init_params(rng, n_inputs, layers, np.float64)
    x, y = network_data(rng, kernels.LOSS_SPARSE_CE, 330, n_inputs, 10)  # 5 batches of 64 + 10
    orders = [rng.permutation(330).astype(np.int64) for _ in range(2)]
    opt = {"kind": "adam", "learning_rate": 0.01}
    results = []
    for threads in (1, 2, 3):
        kernel_threads(threads)
        net = kernels.Network(n_inputs, ops, params.copy(), kernels.LOSS_SPARSE_CE,
                              kernels.METRIC_SPARSE_ACC, True, 64, seed=3)
        slots, iteration, losses = init_slots(opt, params.size, np.float64), 0, []
        for order, calls in zip(orders, [[(0, 2), (2, 4)], [(0, 6)]]):
            for first, count in calls:
                loss_out, correct_out = np.zeros(count), np.zeros(count)
                done, iteration = net.train(x, y, order, 64, first, count, opt, slots,
                                            iteration, loss_out, correct_out)
                assert done == count
                losses.extend(loss_out)
        out = np.empty((330, 10))
        net.predict(x, out)
        results.append((net.params, slots, np.array(losses), out, net.evaluate(x, y)))
    assert not np.array_equal(results[0][0], params)
    for other in results[1:]:
        for got, want in zip(other, results[0]):
            np.testing.assert_array_equal(got, want)
