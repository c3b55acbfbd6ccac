"""Done-when of the model API: the chapter's network trains on the real Fashion-MNIST.

Flatten(28x28) -> Dense(100, relu) -> Dense(10, softmax), Adam, batch 32, 5 epochs, inputs /255,
the last 12,000 of the 60,000 training images for validation (validation_split=0.2): the
validation accuracy must reach 0.87. Runs when /usr/share/datasets/fashion-mnist holds the data
(Debian's ``dataset-fashion-mnist`` package); skipped with the reason otherwise.
"""

from pathlib import Path

import pytest

import fastdnn as keras

DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
         "t10k-labels-idx1-ubyte")


def _have_data():
    return all((DATA_DIR / name).exists() or (DATA_DIR / (name + ".gz")).exists()
               for name in FILES)


@pytest.mark.slow
@pytest.mark.skipif(not _have_data(), reason=f"Fashion-MNIST not found in {DATA_DIR} "
                    "(apt-get install dataset-fashion-mnist)")
def test_relu_adam_reaches_087_validation_accuracy_in_5_epochs():
    (train_input, train_target), _ = keras.datasets.fashion_mnist.load_data()
    assert train_input.shape == (60000, 28, 28)
    keras.utils.clear_session()
    keras.utils.set_random_seed(42)
    model = keras.Sequential([
        keras.Input(shape=(28, 28)),
        keras.layers.Flatten(),
        keras.layers.Dense(100, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(train_input / 255.0, train_target, epochs=5, batch_size=32,
                        validation_split=0.2, verbose=0)
    assert history.params["steps"] == 1500  # 48,000 training samples / 32
    val_accuracy = history.history["val_accuracy"]
    print(f"validation accuracy per epoch: {val_accuracy}")
    assert val_accuracy[-1] >= 0.87
    assert history.history["loss"][-1] < history.history["loss"][0]
    loss, accuracy = model.evaluate(train_input[48000:] / 255.0, train_target[48000:],
                                    verbose=0)
    assert accuracy == pytest.approx(val_accuracy[-1])
    assert loss == pytest.approx(history.history["val_loss"][-1], rel=1e-6)
