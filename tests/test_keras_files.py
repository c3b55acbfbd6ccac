"""Keras 3's file formats: ``.keras`` models and ``.weights.h5`` weights, both ways.

The fixtures in ``tests/fixtures/keras`` were made by real Keras 3 (``make_fixtures.py`` there,
run in a scratch environment): each model trained two epochs, saved, and Keras' predictions and
the weights after one more step recorded in ``expected.npz``. fastdnn must load them, predict as
Keras did, and resume training with Keras' optimizer state to the same weights. fastdnn's own
files must round-trip exactly. Damaged files are refused whole, the model left unchanged.
"""

import io
import json
import os
import sys
import zipfile

import numpy as np
import pytest

import fastdnn as keras
from _api_helpers import fresh_names, same_weights  # noqa: F401

pytest.importorskip("h5py", reason="the Keras formats need h5py (the `keras` extra)")

pytestmark = pytest.mark.usefixtures("fresh_names")

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "keras")
EXPECTED = np.load(os.path.join(FIXTURES, "expected.npz"))
NAMES = ["adam_softmax", "rmsprop_sigmoid", "adagrad_layers", "sgd_mse", "adam_amsgrad_dropout"]
RESUMABLE = [n for n in NAMES if f"{n}/x_step" in EXPECTED]
OPTIMIZERS = {"adam_softmax": keras.optimizers.Adam, "rmsprop_sigmoid": keras.optimizers.RMSprop,
              "adagrad_layers": keras.optimizers.Adagrad, "sgd_mse": keras.optimizers.SGD,
              "adam_amsgrad_dropout": keras.optimizers.Adam}


def fixture(name, suffix=".keras"):
    return os.path.join(FIXTURES, name + suffix)


def after_step(name):
    count = sum(1 for k in EXPECTED.files if k.startswith(f"{name}/after_step/"))
    return [EXPECTED[f"{name}/after_step/{i}"] for i in range(count)]


def resume_one_step(model, name):
    model.fit(EXPECTED[f"{name}/x_step"], EXPECTED[f"{name}/y_step"], batch_size=10, epochs=1,
              shuffle=False, verbose=0)


# --- files made by Keras 3


@pytest.mark.parametrize("name", NAMES)
def test_a_keras_file_loads_and_predicts_as_keras_did(name):
    model = keras.models.load_model(fixture(name))
    assert type(model.optimizer) is OPTIMIZERS[name]
    assert model.optimizer.iterations == 6  # 2 epochs of 3 batches
    np.testing.assert_allclose(model.predict(EXPECTED[f"{name}/x"], verbose=0),
                               EXPECTED[f"{name}/predict"], rtol=1e-5, atol=1e-6)


def test_keras_saving_load_model_opens_keras_files_too():
    model = keras.saving.load_model(fixture("sgd_mse"))  # keras.saving.load_model, as tutorials
    np.testing.assert_allclose(model.predict(EXPECTED["sgd_mse/x"], verbose=0),
                               EXPECTED["sgd_mse/predict"], rtol=1e-5, atol=1e-6)


def test_a_keras_file_keeps_names_settings_and_compile_configuration():
    model = keras.models.load_model(fixture("rmsprop_sigmoid"))
    assert [layer.name for layer in model.layers] == ["flatten", "hidden", "dense_2"]  # as Keras named them
    assert model.input_shape == (None, 2, 3)
    opt = model.optimizer
    assert (opt.momentum, opt.centered) == (0.5, True)
    assert opt.learning_rate == pytest.approx(0.01)
    assert isinstance(model.loss, keras.losses.BinaryCrossentropy)
    smoothed = keras.models.load_model(fixture("adagrad_layers")).loss
    assert smoothed.label_smoothing == pytest.approx(0.1)


@pytest.mark.parametrize("name", RESUMABLE)
def test_training_resumes_from_a_keras_file_with_keras_optimizer_state(name):
    model = keras.models.load_model(fixture(name))
    resume_one_step(model, name)
    for mine, theirs in zip(model.get_weights(), after_step(name), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", RESUMABLE)
def test_keras_weights_files_load_weights_and_optimizer_state(name):
    model = keras.models.load_model(fixture(name))
    fresh = keras.Sequential.from_config(model.get_config())
    fresh.compile(type(model.optimizer).from_config(model.optimizer.get_config()), model.loss)
    fresh.load_weights(fixture(name, ".weights.h5"))
    assert same_weights(fresh.get_weights(), model.get_weights())
    assert fresh.optimizer.iterations == 6
    resume_one_step(fresh, name)
    for mine, theirs in zip(fresh.get_weights(), after_step(name), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6)


def test_load_model_without_compile_loads_weights_only():
    model = keras.models.load_model(fixture("adam_softmax"), compile=False)
    assert not model.compiled
    np.testing.assert_allclose(model.predict(EXPECTED["adam_softmax/x"], verbose=0),
                               EXPECTED["adam_softmax/predict"], rtol=1e-5, atol=1e-6)


def test_a_keras_file_with_layers_fastdnn_lacks_is_refused_naming_them():
    with pytest.raises(ValueError, match=r"layers fastdnn does not have: Conv1D \('conv1d'\), "
                                         r"BatchNormalization \('batch_normalization'\)"):
        keras.models.load_model(fixture("unknown_layers"))


# --- fastdnn's files


def trained(optimizer, dtype="float32", loss="sparse_categorical_crossentropy"):
    keras.config.set_floatx(dtype)
    try:
        model = keras.Sequential([keras.Input((2, 3)), keras.layers.Flatten(),
                                  keras.layers.Dense(5, activation="relu"),
                                  keras.layers.Dropout(0.1), keras.layers.Dense(4),
                                  keras.layers.Softmax()])
    finally:
        keras.config.set_floatx("float32")
    model.compile(optimizer, loss, metrics=["accuracy"])
    rng = np.random.default_rng(3)
    model.fit(rng.normal(size=(20, 2, 3)), rng.integers(0, 4, 20), batch_size=8, epochs=2,
              verbose=0)
    return model


OUR_OPTIMIZERS = [lambda: keras.optimizers.Adam(0.01, amsgrad=True),
                  lambda: keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True),
                  lambda: keras.optimizers.RMSprop(momentum=0.5, centered=True),
                  lambda: keras.optimizers.Adagrad(),
                  lambda: keras.optimizers.Nadam(0.01, beta_1=0.8, clipnorm=1.0),
                  lambda: keras.optimizers.Adamax(0.01, global_clipnorm=1.0)]


@pytest.mark.parametrize("make_optimizer", OUR_OPTIMIZERS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_keras_file_round_trips_exactly_with_optimizer_state(tmp_path, make_optimizer, dtype):
    model = trained(make_optimizer(), dtype)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.params.dtype == np.dtype(dtype)
    assert [l.name for l in loaded.layers] == [l.name for l in model.layers]
    assert same_weights(loaded.get_weights(), model.get_weights())
    assert np.array_equal(loaded.optimizer.slots, model.optimizer.slots)
    assert loaded.optimizer.iterations == model.optimizer.iterations
    assert loaded.optimizer.get_config() == model.optimizer.get_config()


def test_training_resumed_from_a_keras_file_matches_an_uninterrupted_run(tmp_path):
    x, y = np.random.default_rng(4).normal(size=(16, 2, 3)), np.arange(16) % 4
    model = trained(keras.optimizers.Adam(0.01))
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    for m in (model, loaded):
        m.layers[2].rate = 0.0  # no dropout: both runs must match exactly
        m.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    assert same_weights(loaded.get_weights(), model.get_weights())


def test_the_files_have_keras_layout(tmp_path):
    model = trained(keras.optimizers.Adam())
    model.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as z:
        assert sorted(z.namelist()) == ["config.json", "metadata.json", "model.weights.h5"]
        config = json.loads(z.read("config.json"))
        assert "keras_version" in json.loads(z.read("metadata.json"))
        weights = z.read("model.weights.h5")
    assert config["class_name"] == "Sequential"
    assert [l["class_name"] for l in config["config"]["layers"]] == [
        "InputLayer", "Flatten", "Dense", "Dropout", "Dense", "Softmax"]
    assert config["compile_config"]["optimizer"]["class_name"] == "Adam"
    assert config["compile_config"]["loss"]["class_name"] == "SparseCategoricalCrossentropy"
    import h5py

    with h5py.File(io.BytesIO(weights), "r") as f:
        assert f["layers/dense/vars/0"].shape == (6, 5)
        assert f["layers/dense_1/vars/1"].shape == (4,)
        assert f["optimizer/vars/0"][()] == model.optimizer.iterations
        # Keras' order: iteration, learning rate, then (momentum, velocity) per variable
        assert f["optimizer/vars/3"].shape == (6, 5) and f["optimizer/vars/4"].shape == (5,)
        assert np.array_equal(f["optimizer/vars/3"][()].reshape(-1),
                              model.optimizer.slots[1, :30])


def test_weights_h5_round_trip_and_refuse_another_architecture(tmp_path):
    model = trained(keras.optimizers.SGD(momentum=0.5))
    model.save_weights(tmp_path / "w.weights.h5")
    other = trained(keras.optimizers.SGD(momentum=0.5))
    other.load_weights(tmp_path / "w.weights.h5")
    assert same_weights(other.get_weights(), model.get_weights())
    assert np.array_equal(other.optimizer.slots, model.optimizer.slots)
    wider = keras.Sequential([keras.Input((2, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(6), keras.layers.Dense(4)])
    before = wider.get_weights()
    with pytest.raises(ValueError, match="another architecture"):
        wider.load_weights(tmp_path / "w.weights.h5")
    assert same_weights(wider.get_weights(), before)


def test_load_weights_reads_a_keras_file(tmp_path):
    model = trained(keras.optimizers.Adam())
    model.save(tmp_path / "m.keras")
    other = trained(keras.optimizers.Adam())
    other.load_weights(tmp_path / "m.keras")
    assert same_weights(other.get_weights(), model.get_weights())


# --- damaged files, names, the extra


@pytest.fixture
def saved(tmp_path):
    model = trained(keras.optimizers.Adam())
    model.save(tmp_path / "m.keras")
    model.save_weights(tmp_path / "w.weights.h5")
    return model, tmp_path


def assert_refused_or_unchanged(path, data, model):
    """A damaged file raises ValueError; a flip in unused bytes may load the same values."""
    path.write_bytes(data)
    victim = keras.Sequential.from_config(model.get_config())
    victim.build((None, 2, 3))
    before = victim.get_weights()
    try:
        victim.load_weights(path)
    except ValueError:
        assert same_weights(victim.get_weights(), before)
        return
    assert same_weights(victim.get_weights(), model.get_weights())


@pytest.mark.parametrize("file", ["m.keras", "w.weights.h5"])
def test_truncated_files_are_refused_whole(saved, file):
    model, folder = saved
    data = (folder / file).read_bytes()
    target = folder / ("cut" + file[1:])
    for cut in np.linspace(0, len(data) - 1, 40).astype(int):
        target.write_bytes(data[:cut])
        victim = keras.Sequential.from_config(model.get_config())
        victim.build((None, 2, 3))
        before = victim.get_weights()
        with pytest.raises(ValueError):
            victim.load_weights(target)
        assert same_weights(victim.get_weights(), before)


@pytest.mark.parametrize("file", ["m.keras", "w.weights.h5"])
def test_flipped_bytes_are_refused_or_harmless(saved, file):
    model, folder = saved
    data = bytearray((folder / file).read_bytes())
    target = folder / ("bad" + file[1:])
    for at in np.linspace(0, len(data) - 1, 150).astype(int):
        damaged = bytearray(data)
        damaged[at] ^= 0xFF
        assert_refused_or_unchanged(target, bytes(damaged), model)


def test_a_flipped_weight_byte_in_a_fastdnn_weights_file_is_caught(saved):
    model, folder = saved
    data = (folder / "w.weights.h5").read_bytes()
    kernel = model.layers[1].kernel.numpy().tobytes()
    at = data.index(kernel) + 5
    damaged = bytearray(data)
    damaged[at] ^= 0x01
    (folder / "bad.weights.h5").write_bytes(bytes(damaged))
    with pytest.raises(ValueError, match="checksum"):
        model.load_weights(folder / "bad.weights.h5")


def test_missing_and_non_keras_files_are_refused(tmp_path):
    with pytest.raises(ValueError, match="File not found"):
        keras.models.load_model(tmp_path / "none.keras")
    (tmp_path / "text.keras").write_text("not a zip")
    with pytest.raises(ValueError, match="not a `.keras` zip"):
        keras.models.load_model(tmp_path / "text.keras")


def test_file_names_select_the_format_and_others_are_refused(saved):
    model, folder = saved
    with pytest.raises(ValueError, match=r"either a `\.keras` extension"):
        model.save(folder / "m.h5")
    with pytest.raises(ValueError, match=r"either a `\.weights\.h5` extension"):
        model.save_weights(folder / "w.keras")
    with pytest.raises(FileExistsError):
        model.save(folder / "m.keras", overwrite=False)
    model.save(folder / "m.fastdnn")
    assert sorted(os.listdir(folder)) == ["m.fastdnn", "m.keras", "w.weights.h5"]


def test_without_h5py_keras_files_raise_a_clear_import_error(tmp_path, monkeypatch):
    model = trained(keras.optimizers.Adam())
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match=r"pip install 'fastdnn\[keras\]'"):
        model.save(tmp_path / "m.keras")
    assert os.listdir(tmp_path) == []
    model.save(tmp_path / "m.fastdnn")  # fastdnn's own format needs nothing more


# --- ModelCheckpoint


def test_model_checkpoint_writes_keras_files(tmp_path):
    x, y = np.random.default_rng(5).normal(size=(20, 2, 3)), np.arange(20) % 4
    model = trained(keras.optimizers.Adam())
    model.fit(x, y, epochs=2, verbose=0, callbacks=[
        keras.callbacks.ModelCheckpoint(str(tmp_path / "m-{epoch}.keras")),
        keras.callbacks.ModelCheckpoint(str(tmp_path / "ckpt.weights.h5"),
                                        save_weights_only=True)])
    assert sorted(os.listdir(tmp_path)) == ["ckpt.weights.h5", "m-1.keras", "m-2.keras"]
    last = keras.models.load_model(tmp_path / "m-2.keras")
    assert same_weights(last.get_weights(), model.get_weights())
    assert last.optimizer.iterations == model.optimizer.iterations


def test_model_checkpoint_save_best_only_keeps_the_best_keras_model(tmp_path):
    x, y = np.random.default_rng(6).normal(size=(20, 2, 3)), np.arange(20) % 4
    model = trained(keras.optimizers.SGD(0.0))  # no step: val_loss never improves after epoch 1
    path = tmp_path / "best.keras"
    model.fit(x, y, epochs=3, verbose=0, validation_data=(x, y), callbacks=[
        keras.callbacks.ModelCheckpoint(str(path), save_best_only=True)])
    assert os.listdir(tmp_path) == ["best.keras"]
    # one batch per epoch: the file holds the model after the first of the three
    assert keras.models.load_model(path).optimizer.iterations == model.optimizer.iterations - 2


# --- real Keras (only where FASTDNN_KERAS_PYTHON names a Python with keras, jax and h5py)


@pytest.mark.skipif(not os.environ.get("FASTDNN_KERAS_PYTHON"),
                    reason="set FASTDNN_KERAS_PYTHON to a Python with Keras 3 to run")
@pytest.mark.parametrize("make_optimizer", [
    lambda: keras.optimizers.Adam(0.01), lambda: keras.optimizers.Nadam(0.01, clipnorm=1.0),
    lambda: keras.optimizers.Adamax(0.01, global_clipnorm=1.0)])
def test_real_keras_opens_fastdnn_files_and_resumes_training(tmp_path, make_optimizer):
    import subprocess

    model = trained(make_optimizer())
    x = np.random.default_rng(7).normal(size=(5, 2, 3)).astype(np.float32)
    model.save(tmp_path / "m.keras")
    model.save_weights(tmp_path / "w.weights.h5")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "predict.npy", model.predict(x, verbose=0))
    out = subprocess.run([os.environ["FASTDNN_KERAS_PYTHON"],
                          os.path.join(FIXTURES, "open_in_keras.py"), str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == ["ok", str(model.optimizer.iterations + 1)]
