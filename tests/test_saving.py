"""Saving and loading: ``model.save`` / ``fastdnn.models.load_model``, ``save_weights`` /
``load_weights``.

fastdnn's own format (docs/keras-reference.md section 13 describes Keras' conventions; fastdnn
keeps their feel with its ``.fastdnn`` / ``.weights.fastdnn`` suffixes): architecture, weights,
compile settings and optimizer state, so that training resumes where it stopped. Writes are
atomic; a truncated, corrupted, other-version or other-architecture file is refused with a
ValueError and the model is left unchanged.

File layout (fastdnn/_fastdnn_format.py): ``b"FASTDNN\\0"`` | version uint32 LE | header length uint64 LE
| header JSON | arrays | SHA-256 of everything before it.
"""

import hashlib
import json
import os
import struct

import numpy as np
import pytest

import fastdnn as keras
from _api_helpers import (float64, fresh_names, image_data, same_weights, tiny_data,  # noqa: F401
                          tiny_model)

pytestmark = pytest.mark.usefixtures("fresh_names")

PREFIX = struct.Struct("<8sIQ")


def trained(optimizer="adam", epochs=2):
    model = tiny_model()
    model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = tiny_data(6, dtype=np.float32)
    model.fit(x, y, batch_size=2, epochs=epochs, shuffle=False, verbose=0)
    return model


def split_file(data):
    """(version, header dict, arrays bytes) of a file's bytes (digest dropped)."""
    _, version, length = PREFIX.unpack_from(data)
    header = json.loads(data[PREFIX.size:PREFIX.size + length].decode("utf-8"))
    return version, header, data[PREFIX.size + length:-32]


def join_file(version, header, payload):
    """A file with a valid digest from its parts (for headers edited by a test)."""
    text = json.dumps(header, ensure_ascii=False).encode("utf-8")
    body = PREFIX.pack(b"FASTDNN\0", version, len(text)) + text + payload
    return body + hashlib.sha256(body).digest()


# --- round trips


def test_save_and_load_model_round_trip_is_bit_identical(tmp_path):
    model = trained("adam")
    path = tmp_path / "m.fastdnn"
    model.save(str(path))
    loaded = keras.models.load_model(str(path))
    assert loaded.name == model.name
    assert [l.name for l in loaded.layers] == [l.name for l in model.layers]
    assert [type(l) for l in loaded.layers] == [type(l) for l in model.layers]
    assert [l.get_config() for l in loaded.layers] == [l.get_config() for l in model.layers]
    assert loaded.input_shape == model.input_shape
    assert same_weights(loaded.get_weights(), model.get_weights())
    assert loaded.params.dtype == np.float32
    assert type(loaded.optimizer) is keras.optimizers.Adam
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert loaded.optimizer.iterations == model.optimizer.iterations == 6
    assert np.array_equal(loaded.optimizer.slots, model.optimizer.slots)
    assert type(loaded.loss) is type(model.loss)
    x, y = tiny_data(6, dtype=np.float32)
    assert np.array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert loaded.evaluate(x, y, verbose=0) == model.evaluate(x, y, verbose=0)
    assert np.shares_memory(loaded.layers[0].kernel.value, loaded.params)


def test_save_accepts_path_objects_and_the_model_layers_hold_views(tmp_path):
    model = trained("sgd")
    model.save(tmp_path / "m.fastdnn")
    loaded = keras.models.load_model(tmp_path / "m.fastdnn")
    assert same_weights(loaded.get_weights(), model.get_weights())


def test_compile_settings_survive(tmp_path):
    model = tiny_model(hidden="relu")
    opt = keras.optimizers.SGD(learning_rate=0.1, momentum=0.9, nesterov=True)
    model.compile(opt, keras.losses.SparseCategoricalCrossentropy(), metrics=["acc"],
                  engine="numpy")
    model.save(str(tmp_path / "m.fastdnn"))
    loaded = keras.models.load_model(str(tmp_path / "m.fastdnn"))
    assert loaded.engine == "numpy"
    assert loaded.optimizer.learning_rate == 0.1
    assert (loaded.optimizer.momentum, loaded.optimizer.nesterov) == (0.9, True)
    assert loaded.optimizer.iterations == 0 and not loaded.optimizer.built
    history = loaded.fit(*tiny_data(4, dtype=np.float32), verbose=0)
    assert list(history.history) == ["acc", "loss"]


def test_from_logits_survives(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.save(str(tmp_path / "m.fastdnn"))
    loaded = keras.models.load_model(str(tmp_path / "m.fastdnn"))
    assert loaded.loss.from_logits is True
    x, y = tiny_data(4, dtype=np.float32)
    assert loaded.evaluate(x, y, verbose=0) == model.evaluate(x, y, verbose=0)


def test_load_model_without_compile(tmp_path):
    model = trained()
    model.save(str(tmp_path / "m.fastdnn"))
    loaded = keras.models.load_model(str(tmp_path / "m.fastdnn"), compile=False)
    assert not loaded.compiled and loaded.optimizer is None
    assert same_weights(loaded.get_weights(), model.get_weights())
    with pytest.raises(ValueError, match="You must call `compile\\(\\)`"):
        loaded.fit(*tiny_data(4), verbose=0)


def test_an_uncompiled_model_loads_uncompiled(tmp_path):
    model = tiny_model()
    model.save(str(tmp_path / "m.fastdnn"))
    loaded = keras.models.load_model(str(tmp_path / "m.fastdnn"))
    assert not loaded.compiled
    assert same_weights(loaded.get_weights(), model.get_weights())


def test_an_unbuilt_model_cannot_be_saved(tmp_path):
    model = keras.Sequential([keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="not built"):
        model.save(str(tmp_path / "m.fastdnn"))
    with pytest.raises(ValueError, match="not built"):
        model.save_weights(str(tmp_path / "w.weights.fastdnn"))
    assert os.listdir(tmp_path) == []


def test_unicode_names_and_the_chapter_model_survive(tmp_path):
    model = keras.Sequential([
        keras.Input((28, 28)), keras.layers.Flatten(),
        keras.layers.Dense(100, activation="sigmoid", name="은닉층"),
        keras.layers.Dropout(0.3),
        keras.layers.Dense(10, activation="softmax", name="출력층")], name="패션 MNIST 모델")
    model.save(str(tmp_path / "모델.fastdnn"))
    loaded = keras.models.load_model(str(tmp_path / "모델.fastdnn"))
    assert loaded.name == "패션 MNIST 모델"
    assert [l.name for l in loaded.layers] == ["flatten", "은닉층", "dropout", "출력층"]
    assert loaded.layers[2].rate == 0.3
    assert same_weights(loaded.get_weights(), model.get_weights())
    texts_a, texts_b = [], []
    model.summary(print_fn=texts_a.append)
    loaded.summary(print_fn=texts_b.append)
    assert texts_a == texts_b


def test_float64_models_load_as_float64(tmp_path, float64):
    model = trained("rmsprop")
    model.save(str(tmp_path / "m.fastdnn"))
    keras.config.set_floatx("float32")
    loaded = keras.models.load_model(str(tmp_path / "m.fastdnn"))
    assert loaded.params.dtype == np.float64
    assert loaded.optimizer.slots.dtype == np.float64
    assert same_weights(loaded.get_weights(), model.get_weights())


def test_plain_sgd_with_no_slot_rows_round_trips(tmp_path):
    model = trained("sgd")
    assert model.optimizer.slots.shape == (0, 26)
    model.save(str(tmp_path / "m.fastdnn"))
    loaded = keras.models.load_model(str(tmp_path / "m.fastdnn"))
    assert loaded.optimizer.slots.shape == (0, 26)
    assert loaded.optimizer.iterations == 6


def test_save_weights_and_load_weights_round_trip(tmp_path):
    source = trained()
    path = str(tmp_path / "w.weights.fastdnn")
    source.save_weights(path)
    keras.utils.clear_session()
    target = tiny_model()  # same auto names as the source: dense, dense_1
    target.set_weights([w * 0 for w in target.get_weights()])
    target.load_weights(path)
    assert same_weights(target.get_weights(), source.get_weights())
    with pytest.raises(ValueError, match="holds weights only"):
        keras.models.load_model(path)


def test_load_weights_accepts_a_whole_model_file(tmp_path):
    source = trained()
    source.save(str(tmp_path / "m.fastdnn"))
    before = source.get_weights()
    source.fit(*tiny_data(6, dtype=np.float32), batch_size=2, verbose=0)
    assert not same_weights(source.get_weights(), before)
    source.load_weights(str(tmp_path / "m.fastdnn"))
    assert same_weights(source.get_weights(), before)


def test_load_weights_into_a_second_instance_of_the_same_architecture(tmp_path):
    source = trained()
    source.save_weights(str(tmp_path / "w.weights.fastdnn"))
    target = tiny_model()
    assert [l.name for l in target.layers] == ["dense_2", "dense_3"]
    target.load_weights(str(tmp_path / "w.weights.fastdnn"))
    assert same_weights(target.get_weights(), source.get_weights())


# --- resuming


@pytest.mark.parametrize("optimizer", [
    lambda: keras.optimizers.Adam(learning_rate=0.01),
    lambda: keras.optimizers.SGD(learning_rate=0.1, momentum=0.9, nesterov=True),
    lambda: keras.optimizers.Adagrad(learning_rate=0.1),
    lambda: keras.optimizers.RMSprop(learning_rate=0.01, momentum=0.5, centered=True),
])
def test_fit_save_load_fit_equals_one_longer_fit(tmp_path, optimizer):
    x, y = image_data(48)
    x = x / 255.0

    def fresh():
        keras.utils.clear_session()
        keras.utils.set_random_seed(11)
        model = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(),
                                  keras.layers.Dense(16, activation="relu"),
                                  keras.layers.Dense(10, activation="softmax")])
        model.compile(optimizer(), "sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    whole = fresh()
    full = whole.fit(x, y, batch_size=8, epochs=4, shuffle=False, verbose=0).history

    first = fresh()
    part1 = first.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0).history
    first.save(str(tmp_path / "half.fastdnn"))
    resumed = keras.models.load_model(str(tmp_path / "half.fastdnn"))
    part2 = resumed.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0).history

    assert same_weights(resumed.get_weights(), whole.get_weights())
    assert np.array_equal(resumed.optimizer.slots, whole.optimizer.slots)
    assert resumed.optimizer.iterations == whole.optimizer.iterations == 24
    for key in full:
        assert part1[key] + part2[key] == full[key]


def test_resume_with_initial_epoch(tmp_path):
    model = trained("adam", epochs=2)
    model.save(str(tmp_path / "m.fastdnn"))
    resumed = keras.models.load_model(str(tmp_path / "m.fastdnn"))
    history = resumed.fit(*tiny_data(6, dtype=np.float32), batch_size=2, epochs=4,
                          initial_epoch=2, shuffle=False, verbose=0)
    keras.utils.clear_session()
    reference = trained("adam", epochs=4)
    assert history.epoch == [2, 3]
    assert same_weights(resumed.get_weights(), reference.get_weights())


# --- file names, overwrite, atomic writes


@pytest.mark.parametrize("call, name, message", [
    ("save", "m.h5", "Please add either a `.keras` extension"),
    ("save", "m", "Please add either a `.keras` extension"),
    ("save_weights", "w.fastdnn", "Please add either a `.weights.h5` extension"),
    ("save_weights", "w.h5", "Please add either a `.weights.h5` extension"),
])
def test_wrong_suffixes_are_refused_naming_the_path(tmp_path, call, name, message):
    model = tiny_model()
    path = str(tmp_path / name)
    with pytest.raises(ValueError, match=message) as info:
        getattr(model, call)(path)
    assert path in str(info.value)
    assert os.listdir(tmp_path) == []


def test_missing_file_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="File not found"):
        keras.models.load_model(str(tmp_path / "none.fastdnn"))
    model = tiny_model()
    with pytest.raises(ValueError, match="File not found"):
        model.load_weights(str(tmp_path / "none.weights.fastdnn"))


def test_save_overwrites_by_default_and_refuses_with_overwrite_false(tmp_path):
    path = str(tmp_path / "m.fastdnn")
    first = trained("sgd")
    first.save(path)
    second = trained("adam")
    second.save(path)
    assert type(keras.models.load_model(path).optimizer) is keras.optimizers.Adam
    with pytest.raises(FileExistsError):
        first.save(path, overwrite=False)
    first.save_weights(str(tmp_path / "w.weights.fastdnn"))
    with pytest.raises(FileExistsError):
        first.save_weights(str(tmp_path / "w.weights.fastdnn"), overwrite=False)
    assert type(keras.models.load_model(path).optimizer) is keras.optimizers.Adam


def test_saving_leaves_no_temporary_file(tmp_path):
    model = trained()
    model.save(str(tmp_path / "m.fastdnn"))
    model.save_weights(str(tmp_path / "w.weights.fastdnn"))
    assert sorted(os.listdir(tmp_path)) == ["m.fastdnn", "w.weights.fastdnn"]


def test_a_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = str(tmp_path / "m.fastdnn")
    old = trained("sgd")
    old.save(path)
    before = open(path, "rb").read()
    new = trained("adam", epochs=3)

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        new.save(path)
    monkeypatch.undo()
    assert open(path, "rb").read() == before
    assert os.listdir(tmp_path) == ["m.fastdnn"]
    assert same_weights(keras.models.load_model(path).get_weights(), old.get_weights())


# --- damaged files: refused whole, model unchanged


@pytest.fixture
def saved(tmp_path):
    """(path, bytes) of a saved trained model."""
    path = tmp_path / "m.fastdnn"
    trained().save(str(path))
    return path, path.read_bytes()


def _assert_refused(path, message=None):
    victim = tiny_model()
    before = victim.get_weights()
    with pytest.raises(ValueError, match=message) as info:
        victim.load_weights(str(path))
    assert same_weights(victim.get_weights(), before)
    with pytest.raises(ValueError, match=message):
        keras.models.load_model(str(path))
    return str(info.value)


@pytest.mark.parametrize("where", ["empty", "magic", "prefix", "header start", "header middle",
                                   "header end", "payload middle", "before digest",
                                   "one byte short"])
def test_truncated_files_are_refused(saved, where):
    path, data = saved
    _, version, length = PREFIX.unpack_from(data)
    header_end = PREFIX.size + length
    cut = {"empty": 0, "magic": 5, "prefix": 14, "header start": PREFIX.size + 3,
           "header middle": PREFIX.size + length // 2, "header end": header_end,
           "payload middle": (header_end + len(data) - 32) // 2, "before digest": len(data) - 32,
           "one byte short": len(data) - 1}[where]
    path.write_bytes(data[:cut])
    message = _assert_refused(path)
    assert str(path) in message


@pytest.mark.parametrize("where", ["magic", "header length", "header", "payload", "digest"])
def test_a_flipped_byte_is_refused(saved, where):
    path, data = saved
    _, _, length = PREFIX.unpack_from(data)
    position = {"magic": 2, "header length": 12, "header": PREFIX.size + length // 2,
                "payload": PREFIX.size + length + 40, "digest": len(data) - 5}[where]
    damaged = bytearray(data)
    damaged[position] ^= 0x01
    path.write_bytes(bytes(damaged))
    _assert_refused(path, "not a fastdnn file|corrupted")


def test_a_flipped_bit_in_the_weights_is_detected(saved):
    path, data = saved
    _, _, length = PREFIX.unpack_from(data)
    damaged = bytearray(data)
    damaged[PREFIX.size + length] ^= 0x80  # the first weight's lowest byte
    path.write_bytes(bytes(damaged))
    _assert_refused(path, "checksum mismatch")


@pytest.mark.parametrize("version", [0, 2, 99])
def test_an_unknown_version_is_refused_even_with_a_valid_digest(saved, version):
    path, data = saved
    _, header, payload = split_file(data)
    path.write_bytes(join_file(version, header, payload))
    _assert_refused(path, f"format version {version}")


def test_a_raw_version_change_is_refused(saved):
    path, data = saved
    damaged = bytearray(data)
    damaged[8:12] = struct.pack("<I", 7)
    path.write_bytes(bytes(damaged))
    _assert_refused(path, "format version 7")


def test_a_file_that_is_not_fastdnn_is_refused(tmp_path):
    path = tmp_path / "m.fastdnn"
    path.write_bytes(b"PK\x03\x04" + b"\0" * 200)
    _assert_refused(path, "not a fastdnn file")


@pytest.mark.parametrize("edit", ["array too long", "dtype", "layout", "params shape"])
def test_inconsistent_headers_with_valid_digests_are_refused(saved, edit):
    path, data = saved
    version, header, payload = split_file(data)
    params = next(a for a in header["arrays"] if a["name"] == "params")
    if edit == "array too long":
        params["nbytes"] += 4
        params["shape"] = [params["shape"][0] + 1]
    elif edit == "dtype":
        params["dtype"] = "int32"
    elif edit == "layout":
        header["layout"][0][1][0] = [3, 5]
    else:
        params["shape"] = [params["shape"][0] - 2]
        params["nbytes"] -= 8
    path.write_bytes(join_file(version, header, payload))
    _assert_refused(path)


@pytest.mark.parametrize("other", [
    lambda: [keras.Input((3,)), keras.layers.Dense(5, activation="tanh"),
             keras.layers.Dense(2, activation="softmax")],
    lambda: [keras.Input((3,)), keras.layers.Dense(4, activation="tanh"),
             keras.layers.Dense(3, activation="softmax")],
    lambda: [keras.Input((4,)), keras.layers.Dense(4, activation="tanh"),
             keras.layers.Dense(2, activation="softmax")],
    lambda: [keras.Input((3,)), keras.layers.Dense(4, activation="tanh")],
])
def test_weights_of_another_architecture_are_refused(tmp_path, other):
    keras.utils.clear_session()
    source = keras.Sequential(other())
    path = str(tmp_path / "w.weights.fastdnn")
    source.save_weights(path)
    keras.utils.clear_session()
    target = tiny_model()
    before = target.get_weights()
    with pytest.raises(ValueError, match="another architecture"):
        target.load_weights(path)
    assert same_weights(target.get_weights(), before)


def test_load_weights_into_an_unbuilt_model_is_refused(saved):
    path, _ = saved
    model = keras.Sequential([keras.layers.Dense(4), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="must be built"):
        model.load_weights(str(path))
    assert not model.built
