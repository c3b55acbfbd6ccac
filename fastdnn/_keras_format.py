"""Keras 3's file formats: ``.keras`` models and ``.weights.h5`` weights, both ways.

A ``.keras`` file is a zip of ``metadata.json``, ``config.json`` (the architecture and compile
settings, in Keras' serialization) and ``model.weights.h5``. The HDF5 file holds each layer's
variables under ``layers/<key>/vars/<i>``, the key being the snake_case class name made unique in
layer order (``dense``, ``dense_1``, ...), and the optimizer's under ``optimizer/vars/<i>``:
the iteration count, the learning rate, then the slots in Keras' order. A ``.weights.h5`` file is
that HDF5 file alone.

Safety as in ``fastdnn._fastdnn_format``: writes are atomic (``fastdnn._atomic_files``); loading
reads and checks everything before it changes any model. The bytes are verified before HDF5
parses them (HDF5 itself may crash on damaged input): a ``.keras`` file's members by the zip's
CRC-32s, a ``.weights.h5`` file fastdnn wrote by a SHA-256 of the HDF5 data in its user block
(the leading bytes HDF5 reserves for applications; Keras skips them). A ``.weights.h5`` file from
Keras has no checksum: only its structure is checked. h5py is needed only here
(``pip install 'fastdnn[keras]'``).
"""

import datetime
import hashlib
import inspect
import io
import json
import os
import zipfile
import zlib

import numpy as np

from fastdnn import _atomic_files, _naming, layers as layers_module, losses, metrics, optimizers

_USERBLOCK = 512
_USERBLOCK_MAGIC = b"fastdnn weights sha256 "
_KERAS_VERSION = "3.15.1"  # the Keras release whose format this writes and reads
# Keras' optimizers group their slots per variable in this order (the rest are slot-major).
_INTERLEAVED_SLOTS = {"adam": ("momentum", "velocity"), "nadam": ("momentum", "velocity"),
                      "adamax": ("momentum", "norm")}
_DAMAGE = (OSError, RuntimeError, KeyError, IndexError, TypeError, AttributeError, EOFError, UnicodeError,
           zipfile.BadZipFile, zlib.error, json.JSONDecodeError)


def _h5py():
    try:
        import h5py
    except ImportError:
        raise ImportError("Keras files (.keras, .weights.h5) need h5py: install it with "
                          "`pip install 'fastdnn[keras]'` (or `pip install h5py`). fastdnn's own "
                          "`.fastdnn` format needs nothing more.") from None
    return h5py


def is_keras_path(filepath) -> bool:
    """Whether a path names a Keras file (``.keras``, ``.h5``) rather than a fastdnn one."""
    return os.fspath(filepath).endswith((".keras", ".h5"))


def _names_keras(filepath, keras_suffix, own_suffix, what) -> bool:
    path = os.fspath(filepath)
    if not path.endswith((keras_suffix, own_suffix)):
        raise ValueError(f"Invalid filepath extension for saving {what}. Please add either a "
                         f"`{keras_suffix}` extension (Keras 3's format) or a `{own_suffix}` "
                         f"extension (fastdnn's own). Received: filepath={path}")
    return path.endswith(keras_suffix)


def model_file_is_keras(filepath) -> bool:
    """True for a ``.keras`` path, False for a ``.fastdnn`` one; refuse any other name."""
    return _names_keras(filepath, ".keras", ".fastdnn", "a model")


def weights_file_is_keras(filepath) -> bool:
    """True for a ``.weights.h5`` path, False for ``.weights.fastdnn``; refuse any other."""
    return _names_keras(filepath, ".weights.h5", ".weights.fastdnn", "weights")


# --- fastdnn -> Keras


def _dtype_policy(dtype) -> dict:
    return {"module": "keras", "class_name": "DTypePolicy", "config": {"name": str(dtype)},
            "registered_name": None}


def _layer_config(layer, dtype) -> dict:
    if isinstance(layer, layers_module.InputLayer):
        config = {"batch_shape": [None, *layer.shape], "dtype": str(dtype), "sparse": False,
                  "ragged": False, "name": layer.name}
    else:
        config = {**layer.get_config(), "dtype": _dtype_policy(dtype)}
    return {"module": "keras.layers", "class_name": type(layer).__name__, "config": config,
            "registered_name": None}


def _keras_object(module, obj) -> dict:
    return {"module": module, "class_name": type(obj).__name__, "config": obj.get_config(),
            "registered_name": None}


def model_config(model) -> dict:
    """The ``config.json`` Keras 3 writes for ``model``."""
    dtype = model.params.dtype
    input_shape = list(model.input_shape)
    config = {"module": "keras", "class_name": "Sequential", "registered_name": None,
              "config": {"name": model.name, "trainable": model.trainable,
                         "dtype": _dtype_policy(dtype),
                         "layers": [_layer_config(l, dtype)
                                    for l in [model._input] + model._flat_layers()],
                         "build_input_shape": input_shape},
              "build_config": {"input_shape": input_shape}}
    if model.compiled:
        config["compile_config"] = {
            "optimizer": _keras_object("keras.optimizers", model.optimizer),
            "loss": _keras_object("keras.losses", model.loss) if model.loss is not None else None,
            "loss_weights": None, "metrics": [metrics.serialize(m) for m in model._metrics] or None,
            "weighted_metrics": [metrics.serialize(m) for m in model._weighted_metrics] or None,
            "run_eagerly": False, "steps_per_execution": 1,
            "jit_compile": False}
    return config


def _layer_keys(layers) -> list:
    """Keras' HDF5 group name of each layer: its snake_case class name, made unique in order."""
    used, keys = {}, []
    for layer in layers:
        name = _naming.to_snake_case(layer if isinstance(layer, str) else type(layer).__name__)
        count = used.get(name, 0)
        used[name] = count + 1
        keys.append(name if count == 0 else f"{name}_{count}")
    return keys


def _slot_order(optimizer, weights) -> list:
    """``(slot index, weight index)`` of each optimizer slot variable, in Keras' order."""
    names = optimizer.slot_names()
    first = [n for n in _INTERLEAVED_SLOTS.get(optimizer.kind, ()) if n in names]
    order = [(names.index(n), w) for w in range(len(weights)) for n in first]
    rest = [n for n in names if n not in first]
    return order + [(names.index(n), w) for n in rest for w in range(len(weights))]


def _optimizer_arrays(model) -> list:
    opt = model.optimizer
    arrays = [np.array(opt.iterations, np.int64), np.array(opt.learning_rate, np.float32)]
    if opt.slots is None:
        return arrays
    spans = _weight_spans(model)
    for slot, w in _slot_order(opt, spans):
        offset, shape = spans[w]
        arrays.append(opt.slots[slot, offset:offset + int(np.prod(shape))].reshape(shape))
    return arrays + [np.array(value, opt.slots.dtype) for _, value in opt.scalar_state()]


def _weight_spans(model) -> list:
    """``(offset, shape)`` of each weight the optimizer has slots for in Keras: the trainable
    ones (not a batch normalization's moving statistics, nor a frozen layer's weights)."""
    return [(offset, w.shape) for layer in model._flat_layers()
            for offset, w, variable in zip(layer._offsets, layer._weights, layer.weights)
            if variable.trainable]


def _weights_h5(model, with_optimizer) -> bytes:
    """The HDF5 bytes Keras writes for the model's weights (and optimizer variables), with the
    SHA-256 of the HDF5 data in the user block."""
    h5py = _h5py()
    buffer = io.BytesIO()
    with h5py.File(buffer, "w", userblock_size=_USERBLOCK) as f:
        f.create_group("vars").attrs["name"] = model.name
        layers = model._flat_layers()
        for key, layer in zip(_layer_keys(layers), layers):
            group = f.create_group(f"layers/{key}/vars")
            group.attrs["name"] = layer.name
            for i, (w, name) in enumerate(zip(layer._weights, layer._weight_names)):
                integer = name in getattr(layer, "_integer_weights", ())
                group.create_dataset(str(i), data=w.astype(np.int64) if integer else w)
        if with_optimizer and model.compiled:
            group = f.create_group("optimizer/vars")
            group.attrs["name"] = model.optimizer.name
            for i, a in enumerate(_optimizer_arrays(model)):
                group.create_dataset(str(i), data=a)
    data = bytearray(buffer.getvalue())
    stamp = _USERBLOCK_MAGIC + hashlib.sha256(data[_USERBLOCK:]).hexdigest().encode()
    data[:len(stamp)] = stamp
    return bytes(data)


def _check_built(model):
    if not model.built:
        raise ValueError(f"Model {model.name} is not built yet: nothing to save")


def save_model(model, filepath, overwrite=True) -> None:
    """Write a ``.keras`` file (see module doc), atomically."""
    path = _atomic_files.destination(filepath, ".keras", "a model", overwrite)
    _check_built(model)
    metadata = {"keras_version": _KERAS_VERSION,
                "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as z:
        z.writestr("metadata.json", json.dumps(metadata))
        z.writestr("config.json", json.dumps(model_config(model)))
        z.writestr("model.weights.h5", _weights_h5(model, with_optimizer=True))
    _atomic_files.write(path, buffer.getvalue())


def save_weights(model, filepath, overwrite=True) -> None:
    """Write a ``.weights.h5`` file (layer weights and optimizer variables), atomically."""
    path = _atomic_files.destination(filepath, ".weights.h5", "weights", overwrite)
    _check_built(model)
    _atomic_files.write(path, _weights_h5(model, with_optimizer=True))


# --- Keras -> fastdnn


def _read_bytes(path) -> bytes:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"File not found: filepath={path}. Please ensure the file is an "
                         "accessible `.keras` zip file.")
    with open(path, "rb") as f:
        return f.read()


def _read_h5(data: bytes, where) -> dict:
    """Every dataset of an HDF5 file as ``{path: array}``, its checksum verified first if it has
    one."""
    if data.startswith(_USERBLOCK_MAGIC):
        digest = data[len(_USERBLOCK_MAGIC):len(_USERBLOCK_MAGIC) + 64]
        if len(data) <= _USERBLOCK or \
                hashlib.sha256(data[_USERBLOCK:]).hexdigest().encode() != digest:
            raise ValueError(f"{where} is corrupted or truncated (checksum mismatch)")
    h5py = _h5py()
    arrays = {}
    with h5py.File(io.BytesIO(data), "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                arrays[name] = obj[()]
        f.visititems(visit)
    return {"arrays": arrays}


def _unzip(path) -> tuple:
    data = _read_bytes(path)
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise ValueError(f"{path} is not a `.keras` zip file (or is truncated)")
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        bad = z.testzip()
        if bad is not None:
            raise ValueError(f"{path} is corrupted (member {bad} fails its CRC check)")
        config = json.loads(z.read("config.json").decode("utf-8"))
        weights = z.read("model.weights.h5")
    return config, _read_h5(weights, path)


def _damaged(path, error):
    return ValueError(f"{os.fspath(path)} is damaged or not a Keras 3 file fastdnn can read: "
                      f"{type(error).__name__}: {error}")


def _layer_weights(model, store, where) -> list:
    """The arrays for each of the model's weights, checked against their shapes."""
    arrays, values = store["arrays"], []
    layers = model._flat_layers()
    keys = _layer_keys(layers)
    for key, layer in zip(keys, layers):
        for i, w in enumerate(layer.weights):
            value = arrays.get(f"layers/{key}/vars/{i}")
            if value is None or value.shape != w.shape:
                got = None if value is None else value.shape
                raise ValueError(f"{where} holds weights of another architecture: layer "
                                 f"'{layer.name}' weight {i} has shape {w.shape}, the file "
                                 f"{got} (under layers/{key})")
            values.append(value)
    extra = sorted({p.split("/vars/")[0] for p in arrays if p.startswith("layers/")}
                   - {f"layers/{k}" for k in keys})
    if extra:
        raise ValueError(f"{where} holds weights of another architecture: it has weights for "
                         f"{', '.join(extra)}, which model {model.name} lacks")
    return values


def _finite(values, dtype, where) -> list:
    with np.errstate(over="ignore", invalid="ignore"):
        cast = [np.asarray(v).astype(dtype) for v in values]
    if not all(np.all(np.isfinite(v)) for v in cast):
        raise ValueError(f"{where}: its weights are not finite in {np.dtype(dtype)}")
    return cast


def _optimizer_state(model, store, where):
    """``(iterations, learning_rate, slots or None)`` from the file, or None without any."""
    arrays = store["arrays"]
    count = sum(1 for p in arrays if p.startswith("optimizer/vars/"))
    if count == 0 or not model.compiled:
        return None
    opt = model.optimizer
    spans = _weight_spans(model)
    order = _slot_order(opt, spans)
    scalars = len(opt.scalar_state())  # derived from iterations: checked, not read
    if count not in (2, 2 + len(order) + scalars):
        raise ValueError(f"{where}: its optimizer has {count} variables; {type(opt).__name__} "
                         f"over this model has {2 + len(order) + scalars}")
    iterations = int(arrays["optimizer/vars/0"])
    learning_rate = float(arrays["optimizer/vars/1"])
    if count == 2:
        return iterations, learning_rate, None
    slots = np.zeros((len(opt.slot_names()), model.params.size), model.params.dtype)
    values = _finite([arrays[f"optimizer/vars/{i + 2}"] for i in range(len(order) + scalars)],
                     model.params.dtype, where)[:len(order)]
    for (slot, w), value in zip(order, values):
        offset, shape = spans[w]
        if value.shape != shape:
            raise ValueError(f"{where}: optimizer variable {slot} has shape {value.shape}, "
                             f"expected {shape}")
        slots[slot, offset:offset + value.size] = value.reshape(-1)
    return iterations, learning_rate, slots


def _apply(model, values, state):
    for target, value in zip(model._views(), values):
        target[...] = value
    if state is not None:
        opt = model.optimizer
        opt.iterations, opt.learning_rate = state[0], state[1]
        if state[2] is not None:
            opt.slots = state[2]


def load_weights(model, filepath) -> None:
    """Load a ``.weights.h5`` or ``.keras`` file's weights (and, for a compiled model with the
    same optimizer, its optimizer state); nothing changes on error."""
    where = os.fspath(filepath)
    if not model.built:
        raise ValueError(f"Model {model.name} must be built before load_weights")
    try:
        if where.endswith(".keras"):
            store = _unzip(filepath)[1]
        else:
            store = _read_h5(_read_bytes(filepath), where)
        values = _finite(_layer_weights(model, store, where), model.params.dtype, where)
        state = _optimizer_state(model, store, where)
    except _DAMAGE as e:
        raise _damaged(filepath, e) from None
    _apply(model, values, state)


_DROPPED_IF = {"dtype": None, "registered_name": None, "shared_object_id": None,
               "build_config": None}
# Keras arguments fastdnn's layers do not take, with the values meaning what fastdnn does.
_KERAS_DEFAULTS = {"kernel_regularizer": None, "bias_regularizer": None,
                   "activity_regularizer": None, "kernel_constraint": None,
                   "bias_constraint": None, "quantization_config": None, "lora_rank": None,
                   "lora_alpha": None, "noise_shape": None, "data_format": "channels_last",
                   "axis": -1, "max_value": None, "negative_slope": 0.0, "threshold": 0.0,
                   "kernel_initializer": "glorot_uniform", "bias_initializer": "zeros"}


def _plain(value):
    """A Keras initializer object ({'class_name': 'GlorotUniform', ...}) as its string name
    (other objects, regularizers, keep their settings)."""
    if isinstance(value, dict) and "class_name" in value and \
            value.get("module") == "keras.initializers":
        return _naming.to_snake_case(value["class_name"])
    return value


def _fastdnn_layer(entry):
    cls = layers_module.ALL[entry["class_name"]]
    config = dict(entry["config"])
    if cls is layers_module.InputLayer:
        shape = config.get("batch_shape") or [None, *config["shape"]]
        return layers_module.InputLayer(shape=tuple(shape[1:]), name=config.get("name"))
    for key in _DROPPED_IF:
        config.pop(key, None)
    accepted = _accepted_arguments(cls)
    for key in list(config):
        config[key] = _plain(config[key])
        if key not in accepted:
            if key in _KERAS_DEFAULTS and config[key] == _KERAS_DEFAULTS[key]:
                del config[key]
            else:
                raise ValueError(f"Layer '{config.get('name')}' ({entry['class_name']}) has "
                                 f"{key}={config[key]!r}, which fastdnn does not support")
    return cls.from_config(config)


def _accepted_arguments(cls) -> set:
    names = set(layers_module._BASE_KWARGS)
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            names |= {p for p in inspect.signature(klass.__init__).parameters if p != "self"}
    return names - {"kwargs"}


def _unknown_layers(entries) -> list:
    return [f"{e.get('class_name')} ('{e.get('config', {}).get('name')}')" for e in entries
            if e.get("class_name") not in layers_module.ALL]


def _model_from_config(config, where, model_class):
    if config.get("class_name") != "Sequential":
        raise ValueError(f"{where} holds a {config.get('class_name')} model; fastdnn builds "
                         "Sequential models only")
    body = config["config"]
    unknown = _unknown_layers(body["layers"])
    if unknown:
        raise ValueError(f"{where} holds layers fastdnn does not have: {', '.join(unknown)}")
    dtype = body.get("dtype")
    dtype = dtype["config"]["name"] if isinstance(dtype, dict) else (dtype or "float32")
    if dtype not in ("float32", "float64"):
        raise ValueError(f"{where} uses the dtype policy {dtype!r}; fastdnn computes in float32 "
                         "or float64")
    layers = [_fastdnn_layer(e) for e in body["layers"]]
    model = model_class(name=body.get("name"))
    model._dtype = np.dtype(dtype)
    if layers and not isinstance(layers[0], layers_module.InputLayer):
        shape = body.get("build_input_shape") or config.get("build_config", {}).get("input_shape")
        if shape is None:
            raise ValueError(f"{where} holds a model that was never built: no weights to load")
        model.add(layers_module.InputLayer(shape=tuple(shape[1:])))
    for layer in layers:
        model.add(layer)
    if not model.built:
        raise ValueError(f"{where} holds a model that was never built: no weights to load")
    return model


def _loss(value):
    if isinstance(value, dict):
        if value.get("class_name") == "function":
            return losses.get(value["config"])
        config = {k: v for k, v in value["config"].items()
                  if not (k == "axis" and v == -1) and k != "dtype"}
        return losses.deserialize({"class_name": value["class_name"], "config": config})
    return losses.get(value)


def _optimizer(value):
    if isinstance(value, str):
        return optimizers.get(value)
    cls = optimizers.ALL.get(value["class_name"].lower())
    if cls is None:
        raise ValueError(f"Optimizer {value['class_name']} is not one fastdnn has "
                         f"({sorted(optimizers.ALL)})")
    return cls.from_config(value["config"])


def _compile(model, settings):
    metric_lists = settings.get("metrics"), settings.get("weighted_metrics")
    if any(isinstance(metric_list, dict) for metric_list in metric_lists):
        raise ValueError("fastdnn models have one output: metrics given as a dict are not "
                         "supported")
    model.compile(_optimizer(settings["optimizer"]),
                  _loss(settings["loss"]) if settings.get("loss") is not None else None,
                  metric_lists[0] or None, weighted_metrics=metric_lists[1] or None)


def load_model(filepath, compile, model_class):
    """Rebuild a model, a ``model_class`` (``fastdnn.models.Sequential``), from a ``.keras``
    file (see module doc)."""
    where = os.fspath(filepath)
    try:
        config, store = _unzip(filepath)
        model = _model_from_config(config, where, model_class)
        values = _finite(_layer_weights(model, store, where), model._dtype, where)
        settings = config.get("compile_config")
        if compile and settings:
            _compile(model, settings)
            state = _optimizer_state(model, store, where)
        else:
            state = None
    except _DAMAGE as e:
        raise _damaged(filepath, e) from None
    _apply(model, values, state)
    return model
