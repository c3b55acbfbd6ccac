"""Files: exact round trips, refusal of every damaged file, and atomic saves under SIGKILL.

The ``.fastdnn`` format (``fastdnn/_fastdnn_format.py``) is ``magic | version | header length | header
JSON | arrays | sha256``. Loading must give back the weights bit for bit (and the optimizer state,
so training resumes exactly), and must refuse with a ``ValueError`` -- never half-load, never
change the model it loads into -- a file truncated at any byte, with any byte flipped, of another
architecture, or of an unknown format version. A save killed mid-write must leave the previous
file intact.
"""

import copy
import hashlib
import json
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import fastdnn as keras
from fastdnn import _fastdnn_format as file_format

FEATURES = 6


def build(hidden=4, name="robust", seed=0, names=("hidden", "output")):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((FEATURES,)),
                              keras.layers.Dense(hidden, "tanh", name=names[0]),
                              keras.layers.Dense(3, "softmax", name=names[1])], name=name)
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def data(n=48, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, FEATURES)).astype(np.float32), rng.integers(0, 3, n)


def assert_same_weights(a, b):
    assert len(a) == len(b)
    for u, v in zip(a, b):
        assert u.dtype == v.dtype
        np.testing.assert_array_equal(u, v)


@pytest.fixture
def trained(tmp_path):
    """A small trained model and the bytes of its saved file."""
    model = build()
    x, y = data()
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    path = tmp_path / "model.fastdnn"
    model.save(path)
    return model, path, path.read_bytes()


# --- round trips


def test_save_and_load_round_trip_exactly(trained, tmp_path):
    model, path, _ = trained
    loaded = keras.models.load_model(path)
    assert_same_weights(loaded.get_weights(), model.get_weights())
    assert loaded.get_config() == model.get_config()
    assert loaded.optimizer.iterations == model.optimizer.iterations
    np.testing.assert_array_equal(loaded.optimizer.slots, model.optimizer.slots)
    assert type(loaded.optimizer) is type(model.optimizer)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    x, _ = data()
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    # Saving the loaded model gives the same bytes again.
    again = tmp_path / "again.fastdnn"
    loaded.save(again)
    assert again.read_bytes() == path.read_bytes()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_weights_round_trip_bit_identical_including_extreme_values(tmp_path, dtype):
    keras.config.set_floatx(dtype)
    try:
        model, other = build(), build(seed=9)
    finally:
        keras.config.set_floatx("float32")
    extreme = [w.copy() for w in model.get_weights()]
    info = np.finfo(dtype)
    special = [info.max, -info.max, info.tiny, info.tiny / 4, -0.0, 0.0, info.eps, 1 / 3]
    flat = extreme[0].reshape(-1)
    flat[:len(special)] = special
    model.set_weights(extreme)
    model.save_weights(tmp_path / "w.weights.fastdnn")
    other.load_weights(tmp_path / "w.weights.fastdnn")
    for a, b in zip(other.get_weights(), extreme):
        assert a.dtype == np.dtype(dtype)
        assert a.tobytes() == b.tobytes()  # bit-identical, signed zero and subnormals included


def test_training_resumes_from_a_file_exactly_like_an_uninterrupted_run(tmp_path):
    """Optimizer slots and the iteration counter (Adam's bias correction) are in the file."""
    x, y = data(64)
    straight = build(seed=4)
    h_straight = straight.fit(x, y, epochs=4, batch_size=8, shuffle=False, verbose=0).history

    first = build(seed=4)
    h_first = first.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0).history
    first.save(tmp_path / "half.fastdnn")
    resumed = keras.models.load_model(tmp_path / "half.fastdnn")
    h_second = resumed.fit(x, y, epochs=4, initial_epoch=2, batch_size=8, shuffle=False,
                           verbose=0).history
    for key in h_straight:
        assert h_first[key] + h_second[key] == h_straight[key], key
    assert_same_weights(resumed.get_weights(), straight.get_weights())
    assert resumed.optimizer.iterations == straight.optimizer.iterations


# --- damaged files


def assert_refused(path, model_for_weights):
    """load_model and load_weights both refuse with ValueError; the target model is unchanged."""
    with pytest.raises(ValueError):
        keras.models.load_model(path)
    before = model_for_weights.get_weights()
    with pytest.raises(ValueError):
        model_for_weights.load_weights(path)
    assert_same_weights(model_for_weights.get_weights(), before)


def test_a_file_truncated_at_any_byte_is_refused(trained, tmp_path):
    model, _, blob = trained
    target = build(seed=5)
    before = target.get_weights()
    path = tmp_path / "cut.fastdnn"
    for size in range(len(blob)):
        path.write_bytes(blob[:size])
        with pytest.raises(ValueError, match="truncated|corrupted|not a fastdnn"):
            keras.models.load_model(path)
        with pytest.raises(ValueError):
            target.load_weights(path)
    assert_same_weights(target.get_weights(), before)


def test_a_file_with_any_byte_flipped_is_refused(trained, tmp_path):
    model, _, blob = trained
    target = build(seed=5)
    before = target.get_weights()
    path = tmp_path / "flipped.fastdnn"
    rng = random.Random(0)
    for position in range(len(blob)):
        damaged = bytearray(blob)
        damaged[position] ^= 1 << rng.randrange(8) if position % 2 else 0xFF
        path.write_bytes(bytes(damaged))
        with pytest.raises(ValueError, match="corrupted|version|not a fastdnn"):
            keras.models.load_model(path)
        with pytest.raises(ValueError):
            target.load_weights(path)
    assert_same_weights(target.get_weights(), before)


def test_trailing_garbage_and_an_empty_or_missing_file_are_refused(trained, tmp_path):
    _, _, blob = trained
    target = build(seed=5)
    for name, content in [("extra", blob + b"\0"), ("empty", b""), ("text", b"hello\n" * 20),
                          ("double", blob + blob)]:
        path = tmp_path / f"{name}.fastdnn"
        path.write_bytes(content)
        assert_refused(path, target)
    with pytest.raises(ValueError, match="File not found"):
        keras.models.load_model(tmp_path / "missing.fastdnn")


def test_a_file_of_another_architecture_is_refused(tmp_path):
    wide = build(hidden=5)
    wide.save_weights(tmp_path / "wide.weights.fastdnn")
    wide.save(tmp_path / "wide.fastdnn")
    narrow = build(hidden=4)
    before = narrow.get_weights()
    for path in ("wide.weights.fastdnn", "wide.fastdnn"):
        with pytest.raises(ValueError, match="architecture"):
            narrow.load_weights(tmp_path / path)
        assert_same_weights(narrow.get_weights(), before)
    # A weights-only file is not a model.
    with pytest.raises(ValueError, match="weights only"):
        keras.models.load_model(tmp_path / "wide.weights.fastdnn")


def forge(path, header, payload, version=file_format.VERSION):
    """Write a file with a *valid* checksum around the given header and payload."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    body = file_format._PREFIX.pack(file_format.MAGIC, version, len(text)) + text + payload
    path.write_bytes(body + hashlib.sha256(body).digest())
    return path


def split(blob):
    _, _, header_len = file_format._PREFIX.unpack_from(blob)
    start = file_format._PREFIX.size
    return json.loads(blob[start:start + header_len]), blob[start + header_len:-32]


@pytest.mark.parametrize("version", [0, 2, 99, 2**32 - 1])
def test_an_unknown_format_version_is_refused_naming_it(trained, tmp_path, version):
    _, _, blob = trained
    header, payload = split(blob)
    path = forge(tmp_path / "future.fastdnn", header, payload, version=version)
    with pytest.raises(ValueError, match=f"version {version}"):
        keras.models.load_model(path)
    target = build(seed=5)
    before = target.get_weights()
    with pytest.raises(ValueError, match="version"):
        target.load_weights(path)
    assert_same_weights(target.get_weights(), before)


def _edit(name):
    def change(h):
        if name == "array_dtype_int64":
            h["arrays"][0]["dtype"] = "int64"
        elif name == "array_past_the_end":
            h["arrays"][0]["nbytes"] = 10**18
            h["arrays"][0]["shape"] = [10**18 // 4]
        elif name == "array_negative_offset":
            h["arrays"][0]["offset"] = -4
        elif name == "array_negative_shape":
            h["arrays"][0]["shape"] = [-1, -h["arrays"][0]["shape"][0]]
        elif name == "unknown_layer_class":
            h["model"]["layers"][1]["class_name"] = "Conv2D"
        elif name == "invalid_layer_config":
            h["model"]["layers"][1]["config"]["units"] = -3
        elif name == "header_not_json":
            return b"{nope"
        elif name == "header_not_utf8":
            return b"\xff\xfe"
        elif name == "header_is_a_list":
            return [1, 2]
        elif name == "no_array_manifest":
            del h["arrays"]
        elif name == "no_model_config":
            del h["model"]
        elif name == "params_array_missing":
            h["arrays"][0]["name"] = "weights"
        elif name == "layers_not_a_list":
            h["model"]["layers"] = 5
        elif name == "compile_not_a_dict":
            h["compile"] = 5
        elif name == "unknown_optimizer":
            h["compile"]["optimizer"]["class_name"] = "Nadam"
        elif name == "slots_of_the_wrong_shape":
            shape = h["arrays"][1]["shape"]
            h["arrays"][1]["shape"] = [shape[1], shape[0]]
        return h
    return change


STRUCTURE_OK = ["array_dtype_int64", "array_past_the_end", "array_negative_offset",
                "array_negative_shape", "unknown_layer_class", "invalid_layer_config",
                "header_not_json", "header_not_utf8"]
STRUCTURE_BUGS = ["header_is_a_list", "no_array_manifest", "no_model_config",
                  "params_array_missing", "layers_not_a_list", "compile_not_a_dict",
                  "unknown_optimizer", "slots_of_the_wrong_shape"]

@pytest.mark.parametrize("case", STRUCTURE_OK + STRUCTURE_BUGS)
def test_a_well_signed_file_with_an_invalid_header_is_refused_with_value_error(trained, tmp_path,
                                                                             case):
    _, _, blob = trained
    header, payload = split(blob)
    path = forge(tmp_path / "forged.fastdnn", _edit(case)(copy.deepcopy(header)), payload)
    with pytest.raises(ValueError):
        keras.models.load_model(path)


def test_weights_load_into_the_same_architecture_whatever_the_layer_names(tmp_path):
    """A model rebuilt in the same process gets other automatic names (dense_2, ...): Keras 3
    matches weights by structure, and so does fastdnn."""
    source = build(names=("a", "b"))
    source.save_weights(tmp_path / "w.weights.fastdnn")
    twin = build(seed=3, names=("c", "d"))
    twin.load_weights(tmp_path / "w.weights.fastdnn")
    assert_same_weights(twin.get_weights(), source.get_weights())


def test_loading_float64_weights_that_overflow_float32_is_refused(tmp_path):
    keras.config.set_floatx("float64")
    try:
        wide = build()
    finally:
        keras.config.set_floatx("float32")
    weights = wide.get_weights()
    weights[0][0, 0] = 1e300
    wide.set_weights(weights)
    wide.save_weights(tmp_path / "w64.weights.fastdnn")
    narrow = build()
    before = narrow.get_weights()
    try:
        narrow.load_weights(tmp_path / "w64.weights.fastdnn")
    except ValueError:
        assert_same_weights(narrow.get_weights(), before)
        return
    assert all(np.all(np.isfinite(w)) for w in narrow.get_weights())


def test_saving_refuses_a_wrong_extension_and_overwrite_false(trained, tmp_path):
    model, path, blob = trained
    with pytest.raises(ValueError, match="extension"):
        model.save(tmp_path / "model.h5")
    with pytest.raises(ValueError, match="extension"):
        model.save_weights(tmp_path / "model.fastdnn")
    with pytest.raises(FileExistsError):
        model.save(path, overwrite=False)
    assert path.read_bytes() == blob


# --- a crash during save leaves the previous file intact

WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    import fastdnn as keras

    path, first = sys.argv[1], int(sys.argv[2])
    model = keras.Sequential([keras.Input((1000,)), keras.layers.Dense(2000),
                              keras.layers.Dense(10)], name="big")
    version = first
    while True:
        model.params[...] = version  # every weight of version k equals k
        model.save(path)
        if version == first:
            print("ready", flush=True)
        version += 1
""")


def load_version(path):
    model = keras.models.load_model(path)
    values = np.unique(model.params)
    assert values.size == 1, "the file mixes two versions"
    assert model.count_params() == 1000 * 2000 + 2000 + 2000 * 10 + 10
    return int(values[0])


def test_a_save_killed_mid_write_leaves_the_previous_file_intact(tmp_path):
    path = tmp_path / "big.fastdnn"
    model = keras.Sequential([keras.Input((1000,)), keras.layers.Dense(2000),
                              keras.layers.Dense(10)], name="big")
    model.params[...] = 0
    model.save(path)  # version 0, complete
    rng = random.Random(1234)
    kills, mid_write = 0, 0
    while kills < 12 and not (kills >= 4 and mid_write >= 2):
        first = (kills + 1) * 100_000  # run r writes versions r·100000, r·100000 + 1, ...
        before_tmp = {p.name for p in tmp_path.iterdir() if ".tmp-" in p.name}
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(first)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = proc.stdout.readline()  # "ready": its first version is completely saved
            assert line.strip() == "ready", proc.stderr.read()
            time.sleep(rng.uniform(0.0, 0.25))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            proc.stdout.close()
            proc.stderr.close()
        kills += 1
        # counted before the load, which clears what killed writers left
        leftovers = {p.name for p in tmp_path.iterdir() if ".tmp-" in p.name}
        mid_write += len(leftovers - before_tmp) > 0
        version = load_version(path)  # loadable, and exactly one complete version...
        assert first <= version < first + 100_000, (version, first)  # ...of this run
    # The kills did land inside writes (a temporary file was left behind) at least once.
    assert mid_write >= 1, f"{kills} kills, none mid-write: the test did not test anything"
    assert {p.name for p in tmp_path.iterdir() if ".tmp-" not in p.name} == {path.name}
