"""``Sequential``: Keras' model API on fastdnn's kernels.

The model decides *what* to compute; the kernels decide *how*. Building lays every weight out in
one flat parameter buffer (each layer's weights are views into it). Training hands the kernels
the whole plan once, then each call into compiled code runs many batches (gather, forward, loss,
backward, fused update) without the GIL; Python sees control again only for progress and
callbacks.
"""

import contextlib
import functools
import os
import threading
import warnings

import numpy as np

from fastdnn import (_fastdnn_format, _inputs, _keras_format, _kernels, _naming, _plan, _sharing,
                     _summary, _tensors, _training, config, layers as layers_module, losses,
                     metrics as metrics_module, optimizers, reference)

__all__ = ["Sequential", "load_model"]

ENGINES = {"fastdnn": _kernels, "numpy": reference}

# The kernels index arrays with C ints (BLAS's own limit).
_MAX_PARAMS = 2**31 - 1


def _exclusive(method):
    """Run a model method under the model's lock (its network and workspace are shared)."""
    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)
    return locked


def _not_while_fitting(method):
    """Refuse a method that would change what a running ``fit`` trains (called from one of its
    callbacks): fit holds the plan, the optimizer's slots and the parameter buffer."""
    @functools.wraps(method)
    def guarded(self, *args, **kwargs):
        if self._fitting:
            raise RuntimeError(f"`{method.__name__}()` cannot be called on model {self.name} "
                               "while `fit()` is running (from one of its callbacks): call it "
                               "after fit returns, or stop training with "
                               "`model.stop_training = True`")
        return method(self, *args, **kwargs)
    return guarded


class Sequential:
    """A linear stack of layers, as ``keras.Sequential``.

    Args:
        layers: optional list of layers to add (an ``Input``/``InputLayer`` first builds the
            model at once, as does ``input_shape=`` on the first layer).
        trainable: Defaults to True.
        name: any str without '/'. Defaults to ``sequential``, made unique.

    Example:
        >>> import fastdnn as keras
        >>> model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(10, "softmax")])
        >>> model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    """

    def __init__(self, layers=None, trainable=True, name=None):
        self.name = _naming.check_name(name, "sequential")
        self._trainable = bool(trainable)
        self._layers = []
        self._sharers = []  # models computing with a part of this model's buffer (_sharing)
        self._input = None
        self.params = None
        self.built = False
        self.compiled = False
        self.optimizer = None
        self.loss = None
        self.metrics_names = []
        self.engine = "fastdnn"
        self.stop_training = False
        self.history = None
        self._dtype = None
        self._network = None
        self._network_key = None
        # One network (and workspace) serves the model: calls from several threads take turns.
        self._lock = threading.RLock()
        self._fitting = False  # fit is running: its callbacks may not change structure or compile
        for layer in layers or []:
            self.add(layer)

    # --- structure

    @property
    def layers(self) -> list:
        """The layers, without the input layer."""
        return list(self._layers)

    @layers.setter
    def layers(self, _):
        raise AttributeError("`Sequential.layers` attribute is reserved and should not be used. "
                             "Use `add()` and `pop()` to change the layers in this model.")

    @_not_while_fitting
    def add(self, layer) -> None:
        """Add a layer on top of the stack (or an ``Input`` at the bottom).

        Raises:
            ValueError: for something that is not a layer, a duplicate name, or a second input.
        """
        if isinstance(layer, layers_module.InputLayer):
            if self._input is not None:
                raise ValueError(f"Sequential model '{self.name}' has already been configured to "
                                 f"use input shape {self._input.output_shape}. You cannot add a "
                                 "different Input layer to it.")
            if self._layers:
                raise ValueError("An Input must be the first layer of a Sequential model")
            self._input = layer
            return
        if not isinstance(layer, (layers_module.Layer, Sequential)):
            raise ValueError("Only instances of `keras.Layer` can be added to a Sequential model. "
                             f"Received: {layer!r} (of type {type(layer)})")
        if isinstance(layer, Sequential) and not layer.built:
            raise ValueError(f"Model {layer.name} must be built (start it with an `Input`) before "
                             "it is used as a layer of another model")
        taken = [l.name for l in self._layers] + ([self._input.name] if self._input else [])
        if layer.name in taken:
            raise ValueError("All layers added to a Sequential model should have unique names. "
                             f"Name '{layer.name}' is already the name of a layer in this model. "
                             "Update the `name` argument to pass a unique name.")
        if not self._layers and self._input is None and layer._input_shape is not None:
            self._input = layers_module.InputLayer(shape=layer._input_shape)
        self._layers.append(layer)
        if self._input is not None:
            try:
                self._lay_out()
            except (ValueError, NotImplementedError):
                self._layers.pop()
                raise

    @_not_while_fitting
    def pop(self):
        """Remove and return the top layer (``IndexError`` on an empty model)."""
        layer = self._layers.pop()
        if self._input is not None and self._layers:
            self._lay_out()
        return layer

    @_not_while_fitting
    def build(self, input_shape=None) -> None:
        """Create the weights for inputs of ``input_shape`` (batch axis first, e.g. (None, 784)).

        Raises:
            ValueError: for an empty model or a shape that contradicts the model's input.
        """
        if input_shape is not None:
            shape = tuple(input_shape)[1:]
            if self._input is None:
                self._input = layers_module.InputLayer(shape=shape)
            elif tuple(self._input.shape) != tuple(shape):
                raise ValueError(f"Input shape {input_shape} does not match the model's input "
                                 f"shape {self._input.output_shape}")
        if self._input is None:
            raise ValueError(f"Sequential model {self.name} cannot be built: it has no input "
                             "shape. Pass `input_shape` or add an `Input` first.")
        self._lay_out()

    @property
    def _input_shape(self):
        """The input shape without the batch axis: a model used as a layer gives the outer
        model its input."""
        return self._input.shape if self._input is not None else None

    def _flat_layers(self) -> list:
        """The layers, those of the models used as layers in their place."""
        return [inner for layer in self._layers
                for inner in (layer._flat_layers() if isinstance(layer, Sequential) else [layer])]

    def _lay_out(self) -> None:
        """Lay every weight out in one flat buffer, keeping the values of built layers (shared
        with the model that holds them, see ``fastdnn._sharing``)."""
        if not self._layers:
            raise ValueError(f"Sequential model {self.name} cannot be built because it has no "
                             "layers. Call `model.add(layer)`.")
        if self._dtype is None:
            self._dtype = config._dtype()
        shape = self._input.output_shape
        plan, total = [], 0
        for layer in self._flat_layers():
            spans = []
            for wname, wshape in layer.weight_shapes(shape):
                spans.append((total, wshape, wname))
                total += int(np.prod(wshape))
            plan.append((layer, spans, shape))
            shape = layer.compute_output_shape(shape)
        if total > _MAX_PARAMS:
            raise ValueError(f"Model {self.name} would have {total:,} parameters; the kernels "
                             f"address at most {_MAX_PARAMS:,}")
        params, home = _sharing.buffer_for(self, plan, total, self._dtype)
        for layer, spans, in_shape in plan:
            views = [params[o:o + int(np.prod(s))].reshape(s) for o, s, _ in spans]
            old = layer._weights
            if layer.built and [w.shape for w in old] == [v.shape for v in views]:
                for view, value in zip(views, old):
                    view[...] = value
            else:
                layer.initialize(views)
            layer._weights = views
            layer._offsets = [o for o, _, _ in spans]
            layer._weight_names = [n for _, _, n in spans]
            layer._scope = layer._scope or self.name
            layer._home = home
            layer._built_input_shape, layer._dtype = in_shape, str(self._dtype)
            layer.output_shape = layer.compute_output_shape(in_shape)
            layer.built = True
        self.params = params
        self.built = True
        self._network = None
        _sharing.follow(self, params)

    @property
    def trainable(self) -> bool:
        """Whether fit may change the weights; setting it sets every layer's ``trainable`` too,
        as Keras does (a frozen model trains none of its layers)."""
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        self._trainable = bool(value)
        for layer in self._layers:
            layer.trainable = self._trainable

    def _trained_layers(self) -> list:
        """The flat layers fit steps: trainable ones, in trainable models only."""
        if not self._trainable:
            return []
        return [inner for layer in self._layers if layer.trainable
                for inner in (layer._trained_layers() if isinstance(layer, Sequential)
                              else [layer])]

    @property
    def input_shape(self):
        """The input's shape with the batch axis, e.g. ``(None, 28, 28)``."""
        return self._input.output_shape if self._input is not None else None

    @property
    def output_shape(self):
        """The output's shape with the batch axis, e.g. ``(None, 10)``."""
        return self._layers[-1].output_shape if self.built else None

    @property
    def weights(self) -> list:
        """Every weight, layer by layer (kernel, then bias), as ``Variable`` objects."""
        return [w for layer in self._layers for w in layer.weights] if self.built else []

    @property
    def trainable_weights(self) -> list:
        """The weights of the trainable layers (all of them, if the model is trainable)."""
        return [w for layer in self._layers for w in layer.trainable_weights] \
            if self.built and self.trainable else []

    @property
    def non_trainable_weights(self) -> list:
        """The weights of the layers that are not trainable."""
        return [w for w in self.weights if not w.trainable] if self.trainable else self.weights

    def _views(self) -> list:
        """Every weight as a NumPy view into the parameter buffer."""
        return [w for layer in self._flat_layers() for w in layer._weights] if self.built else []

    def get_weights(self) -> list:
        """Return copies of every weight, layer by layer."""
        return [w.copy() for w in self._views()]

    def set_weights(self, weights) -> None:
        """Set every weight from a list like ``get_weights()``'s; nothing changes on error.

        Raises:
            TypeError: for values that are not real numbers (complex, dates, text).
            ValueError: for a wrong count, a wrong shape, or a value that is NaN, infinite or
                beyond the model's float type.
        """
        mine, weights = self._views(), list(weights)
        if len(weights) != len(mine):
            raise ValueError(f"You called `set_weights(weights)` on model {self.name} with a "
                             f"weight list of length {len(weights)}, but the model was expecting "
                             f"{len(mine)} weights.")
        values = []
        for target, value in zip(mine, weights):
            value = np.asarray(value)
            if target.shape != value.shape:
                raise ValueError(f"Weight shape {value.shape} is not compatible with the model's "
                                 f"weight shape {target.shape}")
            values.append(layers_module._weight_value(value, target.dtype, "set_weights: weights"))
        for target, value in zip(mine, values):
            target[...] = value

    def count_params(self) -> int:
        """Number of weight elements."""
        return self.params.size if self.built else 0

    def get_layer(self, name=None, index=None):
        """Return a layer by name or by index in ``model.layers``.

        Args:
            name: the layer's name. Defaults to None.
            index: its index (the input layer not counted). Defaults to None.

        Raises:
            ValueError: for an unknown name, an index out of range, or neither argument.
        """
        if index is not None and name is not None:
            raise ValueError("Provide only a layer name or a layer index. Received: "
                             f"index={index}, name={name}.")
        if index is not None:
            if not -len(self._layers) <= index < len(self._layers):
                raise ValueError(f"Was asked to retrieve layer at index {index} but model only "
                                 f"has {len(self._layers)} layers.")
            return self._layers[index]
        if name is not None:
            for layer in self._layers:
                if layer.name == name:
                    return layer
            raise ValueError(f"No such layer: {name}. Existing layers are: "
                             f"{[l.name for l in self._layers]}.")
        raise ValueError("Provide either a layer name or layer index at `get_layer`.")

    @property
    def inputs(self) -> list:
        """``[KerasTensor]`` describing the model's input (shape with None for the batch axis)."""
        return [self._symbol(self.input_shape, "input")]

    @property
    def outputs(self) -> list:
        """``[KerasTensor]`` describing the model's output."""
        return [self._symbol(self.output_shape, "output")]

    @property
    def input(self):
        """The ``KerasTensor`` of ``inputs``."""
        return self.inputs[0]

    @property
    def output(self):
        """The ``KerasTensor`` of ``outputs``."""
        return self.outputs[0]

    def _symbol(self, shape, what):
        if shape is None or not self.built:
            raise AttributeError(f"The model {self.name} has not been built yet and thus has no "
                                 f"defined {what}. Add an `Input` first, or call `build()`.")
        return _tensors.KerasTensor(shape, self._dtype)

    # --- compile

    @_not_while_fitting
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, engine="fastdnn",
                run_eagerly=False, jit_compile="auto", steps_per_execution=1,
                weighted_metrics=None):
        """Configure the model for training.

        Args:
            optimizer: name (``'rmsprop'``, ``'adam'``, ``'sgd'``, ``'adagrad'``, any case: a new
                instance with defaults) or an optimizer object (used as is, state kept).
                Defaults to ``'rmsprop'``.
            loss: name or ``fastdnn.losses`` object: sparse/categorical/binary cross-entropy or
                mean squared error.
            metrics: None or a list of Keras metric names or objects, several allowed:
                ``'accuracy'``/``'acc'`` and the accuracy classes, ``'mae'``, ``'mse'``,
                ``'RootMeanSquaredError'``, ``SparseTopKCategoricalAccuracy``, ``Precision``,
                ``Recall`` (see ``fastdnn.metrics``). As Keras, fit's and evaluate's
                ``sample_weight`` does not weigh them.
            engine: ``'fastdnn'`` (the compiled kernels, the default) or ``'numpy'`` (the plain
                NumPy reference, same maths: for verification and comparison). A fastdnn
                extension.
            run_eagerly: accepted for Keras compatibility; no effect.
            jit_compile: accepted for Keras compatibility; no effect.
            steps_per_execution: accepted for Keras compatibility; fastdnn chooses for itself.
            weighted_metrics: None or a list as ``metrics``, of metrics that the sample weights
                weigh (``Σ w·value / Σ w``); one named like a metric is logged as
                ``weighted_<name>``, as Keras.

        Raises:
            ValueError: for an unknown optimizer, loss, metric or engine.
        """
        if engine not in ENGINES:
            raise ValueError(f"`engine` must be one of {sorted(ENGINES)}. Received: {engine!r}")
        self.optimizer = optimizers.get(optimizer)
        self.loss = losses.get(loss) if loss is not None else None
        self._named_metrics = metrics_module._check_list(metrics, weighted_metrics)
        self._metrics = [m for _, m, weighted in self._named_metrics if not weighted]
        self._weighted_metrics = [m for _, m, weighted in self._named_metrics if weighted]
        self.metrics_names = ["loss"] + [name for name, _, _ in self._named_metrics]
        self.engine = engine
        self.compiled = True
        self._network = None

    def _assert_compiled(self):
        if not self.compiled:
            raise ValueError("You must call `compile()` before using the model.")
        if self.loss is None:
            raise ValueError("No loss to compute. Provide a `loss` argument in `compile()`.")

    # --- data

    @contextlib.contextmanager
    def _building_from_data(self):
        """Undo a build made from data whose checks then failed: the user's corrected call must
        find the model as it was."""
        unbuilt = self._input is None
        try:
            yield
        except BaseException:
            if unbuilt and self._input is not None:
                self._input, self.params, self.built, self._network = None, None, False, None
                for layer in self._flat_layers():
                    layer.built, layer._weights, layer.output_shape = False, [], None
            raise

    def _prepare_x(self, x, name="x"):
        """x converted once for the kernels (``_inputs.features``), the model built from its
        shape if it has no input yet."""
        array = _inputs.as_array(x, name)
        if self._input is None:
            self.build((None,) + array.shape[1:])
        elif not self.built:
            self._lay_out()
        return _inputs.features(array, self._input.shape, self._dtype, name)

    def _prepare(self, x, y, sample_weight=None, class_weight=None,
                 names=("x", "y", "sample_weight")):
        """``(x, y, sample weights or None)`` converted once for the kernels."""
        xs = self._prepare_x(x, names[0])
        n = xs.shape[0]
        ys = _inputs.targets(y, n, self.loss, self._layers[-1].output_shape[-1], self._dtype,
                             names[1])
        ws = _inputs.sample_weights(sample_weight, class_weight, y, n, self._dtype, names[2])
        return xs, ys, ws

    def _metric_specs(self, y):
        """``(code, k, weighted)`` of each compiled metric for targets like ``y``."""
        return _plan.metric_specs(self._named_metrics, y, self._layers[-1].output_shape[-1],
                                  self.loss)

    # --- the plan for the kernels

    def _engine(self, batch_size, metric_specs=(), training=True):
        """The network object for this model's plan (made once, reused while the plan and the
        parameter buffer stay the same), its workspace sized for ``batch_size`` rows."""
        plan = _plan.build(self._flat_layers(), self._input.shape, self._trained_layers(),
                           self.loss if training else None, metric_specs, self.name,
                           self._layers[-1].name)
        key = (self.engine, plan, id(self.params))
        if self._network is None or self._network_key != key:
            seed = int(np.random.randint(0, 2**63 - 1, dtype=np.int64))
            self._network = plan.network(ENGINES[self.engine], self.params, batch_size, seed)
            self._network_key = key
        self._network.reserve(batch_size)
        return self._network

    # --- fit / evaluate / predict

    @_exclusive
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
            sample_weight=None, initial_epoch=0, steps_per_epoch=None, validation_steps=None,
            validation_batch_size=None, validation_freq=1):
        """Train the model.

        fastdnn accepts any array-like (NumPy arrays of any numeric dtype and order, nested
        lists) and converts it once, before training, to the model's float type. Bad data (NaN
        or inf in x, labels outside the output's range, mismatched lengths, a wrong feature
        shape) is refused with a ``ValueError`` before any weight changes.

        Args:
            x: inputs, shape (n,) + the model's input shape.
            y: targets: integer labels (n,) for sparse cross-entropy, else (n, outputs).
            batch_size: Defaults to 32.
            epochs: train until this epoch index. Defaults to 1.
            verbose: 'auto' (= 1, progress bar), 0 (silent), 1, or 2 (one line per epoch).
            callbacks: list of ``fastdnn.callbacks`` objects.
            validation_split: fraction in [0, 1) of the data, taken from the end before
                shuffling, to validate on.
            validation_data: ``(x_val, y_val)`` or ``(x_val, y_val, val_sample_weight)``,
                overrides validation_split.
            shuffle: shuffle the training data every epoch. Defaults to True.
            initial_epoch: epoch to start at. Defaults to 0.
            validation_batch_size: Defaults to batch_size.
            validation_freq: validate every this many epochs. Defaults to 1.
            class_weight: ``{class index: weight}``: each sample's loss (and weighted metrics)
                counts its class's weight (1 for classes not listed). Not applied to validation.
            sample_weight: one finite weight per sample, instead of class_weight: the batch
                loss is ``Σ w_i·loss_i / batch size`` and each of compile's
                ``weighted_metrics`` the weighted mean, as Keras.
            steps_per_epoch, validation_steps: only None.

        Returns:
            A ``History`` whose ``.history`` holds each epoch's loss and metrics.
        """
        self._assert_compiled()
        for name, value in (("steps_per_epoch", steps_per_epoch),
                            ("validation_steps", validation_steps)):
            if value is not None:
                raise NotImplementedError(f"fastdnn's fit does not support `{name}`")
        batch_size = _inputs.positive_int("batch_size", 32 if batch_size is None else batch_size)
        epochs = _inputs.positive_int("epochs", epochs, allow_zero=True)
        initial_epoch = _inputs.positive_int("initial_epoch", initial_epoch, allow_zero=True)
        validation_freq = _inputs.positive_int("validation_freq", validation_freq)
        _inputs.verbose_level(verbose)
        _inputs.validation_fraction(validation_split)
        with self._building_from_data():
            data = self._prepare(x, y, sample_weight, class_weight)
            metric_specs = self._metric_specs(y)
            val = None
            if validation_data is not None:
                val = self._prepare(*_inputs.validation_tuple(validation_data),
                                    names=[f"validation_data[{i}]" for i in range(3)])
            elif validation_split:
                data, val = _inputs.split(data, validation_split)
            val_batch = _inputs.positive_int("validation_batch_size",
                                             validation_batch_size or batch_size)
            rows = min(batch_size, data[0].shape[0])
            val_rows = min(val_batch, val[0].shape[0]) if val is not None else 1
            network = self._engine(max(rows, val_rows), metric_specs)
        self.optimizer.build(self.params.size, self._dtype)
        if not self.trainable_weights:
            warnings.warn("The model does not have any trainable weights.", stacklevel=2)
        return _training.fit(self, network, data, val, batch_size, epochs, initial_epoch, shuffle,
                             validation_freq, val_batch, callbacks, verbose)

    @_exclusive
    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None,
                 steps=None, callbacks=None, return_dict=False):
        """Return the loss (and metric) of the model on x, y, in inference mode.

        Args:
            x: inputs (any numeric array-like).
            y: targets.
            batch_size: Defaults to 32 (it only sets the progress bar's step count here).
            verbose: 'auto' (= 1), 0, 1 or 2.
            sample_weight: None, or one finite weight per sample: the loss is
                ``Σ w_i·loss_i / n`` and each of compile's ``weighted_metrics`` the weighted
                mean, as Keras.
            steps: only None.
            callbacks: list of callbacks (their test hooks are called).
            return_dict: return ``{'accuracy': ..., 'loss': ...}``. Defaults to False.

        Returns:
            The loss as a float when there is no metric, else the list of ``metrics_names``'
            values: ``[loss, metric, ...]``, the metrics then the weighted metrics.
        """
        self._assert_compiled()
        if steps is not None:
            raise NotImplementedError("fastdnn's evaluate does not support `steps`")
        batch_size = _inputs.positive_int("batch_size", 32 if batch_size is None else batch_size)
        _inputs.verbose_level(verbose)
        with self._building_from_data():
            data = self._prepare(x, y, sample_weight)
            network = self._engine(min(batch_size, data[0].shape[0]), self._metric_specs(y))
        self.optimizer.build(self.params.size, self._dtype)
        logs = _training.evaluate(self, network, data, batch_size, callbacks, verbose)
        if return_dict:
            return logs
        if not self._named_metrics:
            return logs["loss"]
        return [logs[name] for name in self.metrics_names]

    @_exclusive
    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """Return the model's outputs for x (probabilities for a softmax output), in inference
        mode. Does not need ``compile()``.

        Args:
            x: inputs (any numeric array-like).
            batch_size: Defaults to 32.
            verbose: 'auto' (= 1), 0, 1 or 2.
            steps: only None.
            callbacks: list of callbacks (their predict hooks are called).

        Returns:
            An array of shape (n, outputs) in the model's float type (float32 by default).
        """
        if steps is not None:
            raise NotImplementedError("fastdnn's predict does not support `steps`")
        batch_size = _inputs.positive_int("batch_size", 32 if batch_size is None else batch_size)
        _inputs.verbose_level(verbose)
        with self._building_from_data():
            xs = self._prepare_x(x)
            network = self._engine(min(batch_size, xs.shape[0]), training=False)
        return _training.predict(self, network, xs, batch_size, callbacks, verbose)

    def __call__(self, x, training=False):
        """Return the model's outputs for x as a NumPy array (inference mode)."""
        if training:
            raise NotImplementedError("fastdnn runs training-mode passes only inside fit")
        return self.predict(x, verbose=0)

    # --- summary

    def summary(self, line_length=None, positions=None, print_fn=None, expand_nested=False,
                show_trainable=False, layer_range=None):
        """Print Keras' summary table: each layer's output shape and parameter count, then the
        totals with their sizes in bytes.

        Args:
            line_length: total width. Defaults to min(88, terminal columns - 4) (76 in a pipe).
            positions: column boundaries as fractions of the width. Defaults to
                [0.45, 0.80, 1.0].
            print_fn: called once with the whole text instead of printing it.
            expand_nested, show_trainable, layer_range: accepted; only their defaults apply.
        """
        text = _summary.model_summary(self, line_length=line_length, positions=positions)
        if print_fn is not None:
            print_fn(text)
        else:
            print(text, end="")

    def __repr__(self):
        return f"<Sequential name={self.name}, built={self.built}>"

    def __reduce__(self):
        """Pickle and copy through the model file's bytes (architecture, weights, compile
        settings, optimizer state), so joblib and Dask can ship a model."""
        return _fastdnn_format.model_from_bytes, (_fastdnn_format.model_to_bytes(self),
                                                  type(self))

    # --- configuration and files

    def get_config(self) -> dict:
        """Return the architecture: the name and every layer's config (input layer first; the
        layers of a model used as a layer in its place)."""
        layers = ([layers_module.serialize(self._input)] if self._input is not None else [])
        return {"name": self.name, "layers": layers + [layers_module.serialize(l)
                                                         for l in self._flat_layers()]}

    @classmethod
    def from_config(cls, config: dict) -> "Sequential":
        """Create a model from ``get_config()``'s output."""
        return cls([layers_module.deserialize(c) for c in config["layers"]], name=config["name"])

    def save(self, filepath, overwrite=True) -> None:
        """Save architecture, weights, compile settings and optimizer state, atomically (a crash
        mid-write leaves any previous file intact).

        Args:
            filepath: path ending in ``.keras`` (Keras 3's format, which Keras opens; needs
                h5py) or ``.fastdnn`` (fastdnn's own, needs nothing more).
            overwrite: Defaults to True.
        """
        if _keras_format.model_file_is_keras(filepath):
            _keras_format.save_model(self, filepath, overwrite=overwrite)
        else:
            _fastdnn_format.save_model(self, filepath, overwrite=overwrite)

    def save_weights(self, filepath, overwrite=True) -> None:
        """Save the weights alone, atomically, to a ``.weights.h5`` file (Keras 3's format,
        with the optimizer's variables, as Keras) or a ``.weights.fastdnn`` file."""
        if _keras_format.weights_file_is_keras(filepath):
            _keras_format.save_weights(self, filepath, overwrite=overwrite)
        else:
            _fastdnn_format.save_weights(self, filepath, overwrite=overwrite)

    def load_weights(self, filepath) -> None:
        """Load weights saved by ``save_weights`` or ``save`` (``.weights.h5``, ``.keras``, or
        fastdnn's files); refuse a file of another architecture, or a damaged one, without
        changing the model."""
        if _keras_format.is_keras_path(filepath):
            _keras_format.load_weights(self, filepath)
        else:
            _fastdnn_format.load_weights(self, filepath)


def load_model(filepath, compile=True):
    """Load a model saved with ``model.save`` (or a ``.keras`` file from Keras 3): architecture,
    weights and, with ``compile=True``, its compile settings and optimizer state, so that
    training resumes where it stopped.

    Raises:
        ValueError: for a missing, truncated, corrupted or unknown-version file, or a Keras file
            holding layers fastdnn lacks (naming them).
    """
    if os.fspath(filepath).endswith(".keras"):
        return _keras_format.load_model(filepath, compile, Sequential)
    return _fastdnn_format.load_model(filepath, compile, Sequential)
