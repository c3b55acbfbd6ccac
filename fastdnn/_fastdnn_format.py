"""fastdnn's file format for models and weights.

One file holds a JSON header (format version, architecture, compile settings, optimizer state,
array manifest) and the raw arrays, and ends with the SHA-256 of everything before it:

    b"FASTDNN\\0" | version (uint32 LE) | header length (uint64 LE) | header JSON | arrays | sha256

Loading checks the magic, the version, the length and the digest before it reads anything else,
so a truncated or corrupted file is refused whole, never half-loaded. Writing is atomic
(``fastdnn._atomic_files``): a crash mid-write leaves the previous file intact.
"""

import contextlib
import hashlib
import json
import os
import struct

import numpy as np

from fastdnn import _atomic_files, layers as layers_module, losses, metrics, optimizers

MAGIC = b"FASTDNN\0"
VERSION = 1
_PREFIX = struct.Struct("<8sIQ")
_DIGEST = 32
_DTYPES = ("float32", "float64")


def _pack(header: dict, arrays: dict) -> bytes:
    """Serialise the header and named arrays into the file format (digest included)."""
    manifest, payload, offset = [], [], 0
    for name, array in arrays.items():
        raw = np.ascontiguousarray(array).tobytes()
        manifest.append({"name": name, "dtype": str(array.dtype), "shape": list(array.shape),
                         "offset": offset, "nbytes": len(raw)})
        payload.append(raw)
        offset += len(raw)
    text = json.dumps({**header, "arrays": manifest}, ensure_ascii=False).encode("utf-8")
    body = _PREFIX.pack(MAGIC, VERSION, len(text)) + text + b"".join(payload)
    return body + hashlib.sha256(body).digest()


def _unpack(path):
    """Read and verify a file; return ``(header, {name: array})``.

    Raises:
        ValueError: for a missing, truncated, corrupted or unknown-version file.
    """
    path = os.fspath(path)
    _atomic_files.clear_stale_temps(path)
    if not os.path.isfile(path):
        raise ValueError(f"File not found: filepath={path}")
    with open(path, "rb") as f:
        return _parse(f.read(), path)


def _parse(data: bytes, path):
    """Verify the bytes of a file (``path`` names them in errors); return ``(header, arrays)``."""
    if len(data) < _PREFIX.size + _DIGEST or data[:len(MAGIC)] != MAGIC:
        raise ValueError(f"{path} is not a fastdnn file (or is truncated)")
    _, version, header_len = _PREFIX.unpack_from(data)
    if version != VERSION:
        raise ValueError(f"{path} has format version {version}; this fastdnn reads version "
                         f"{VERSION}")
    body, digest = data[:-_DIGEST], data[-_DIGEST:]
    if hashlib.sha256(body).digest() != digest:
        raise ValueError(f"{path} is corrupted or truncated (checksum mismatch)")
    start = _PREFIX.size + header_len
    if start > len(body):
        raise ValueError(f"{path} is corrupted (header length {header_len} exceeds the file)")
    try:
        header = json.loads(body[_PREFIX.size:start].decode("utf-8"))
    except (UnicodeDecodeError, RecursionError) as e:  # JSONDecodeError is a ValueError
        raise ValueError(f"{path} is corrupted (its header is not valid JSON: "
                         f"{type(e).__name__})") from None
    if not isinstance(header, dict) or not isinstance(header.get("arrays"), list):
        raise ValueError(f"{path} is corrupted (its header is not a fastdnn header)")
    payload = body[start:]
    arrays = {}
    for entry in header.pop("arrays"):
        shape, dtype = tuple(entry["shape"]), entry["dtype"]
        end = entry["offset"] + entry["nbytes"]
        if dtype not in _DTYPES or end > len(payload) or \
                int(np.prod(shape)) * np.dtype(dtype).itemsize != entry["nbytes"]:
            raise ValueError(f"{path} is corrupted (array {entry['name']!r} is inconsistent)")
        arrays[entry["name"]] = np.frombuffer(payload, dtype, int(np.prod(shape)),
                                              entry["offset"]).reshape(shape).copy()
    return header, arrays


def _layout(model) -> list:
    """The weight shapes of a model, layer by layer: what a weights file must match (names may
    differ: a second copy of a model gets other automatic names)."""
    return [[list(w.shape) for w in layer.weights] for layer in model._flat_layers()]


def _contents(model):
    """The header and arrays of a model file: architecture, compile settings, optimizer state and,
    once built, the weights."""
    header = {"kind": "model", "model": model.get_config(), "layout": _layout(model),
              "compile": None}
    arrays = {"params": model.params} if model.built else {}
    if model.compiled:
        opt = model.optimizer
        header["compile"] = {
            "optimizer": {"class_name": type(opt).__name__,
                          "config": {**opt.get_config(),
                                     "learning_rate": opt.serialized_learning_rate()},
                          "iterations": opt.iterations},
            "loss": losses.serialize(model.loss) if model.loss is not None else None,
            "metrics": [metrics.serialize(m) for m in model._metrics],
            "weighted_metrics": [metrics.serialize(m) for m in model._weighted_metrics],
            "engine": model.engine}
        if opt.slots is not None:
            arrays["slots"] = opt.slots
    return header, arrays


def save_model(model, filepath, overwrite=True) -> None:
    """Write architecture, weights, compile settings and optimizer state (see module doc)."""
    path = _atomic_files.destination(filepath, ".fastdnn", "a model", overwrite)
    if not model.built:
        raise ValueError(f"Model {model.name} is not built yet: nothing to save")
    _atomic_files.write(path, _pack(*_contents(model)))


def model_to_bytes(model) -> bytes:
    """A model file's bytes, in memory (how a model pickles); the model may be unbuilt."""
    return _pack(*_contents(model))


def model_from_bytes(data: bytes, model_class):
    """The model ``model_to_bytes`` wrote (its compile settings and optimizer state included), a
    ``model_class`` (``fastdnn.models.Sequential``)."""
    with _consistent("<model bytes>"):
        return _assemble(*_parse(data, "<model bytes>"), "<model bytes>", True, model_class)


def copy_model(model, weights=True):
    """A new model of the same architecture, float type and compile settings.

    Args:
        model: a ``Sequential``, built or not.
        weights: True copies the weights and the optimizer's state; False draws new weights, as
            the layers' initializers do, and starts a new optimizer (Keras' ``clone_model``,
            compiled as the original). Defaults to True.
    """
    header, arrays = _contents(model)
    if not weights:
        arrays = {}
        if header["compile"] is not None:
            header["compile"]["optimizer"]["iterations"] = 0
    return _assemble(header, arrays, model.name, True, type(model), dtype=model._dtype)


def save_weights(model, filepath, overwrite=True) -> None:
    """Write the weights alone (see module doc)."""
    path = _atomic_files.destination(filepath, ".weights.fastdnn", "weights", overwrite)
    if not model.built:
        raise ValueError(f"Model {model.name} is not built yet: nothing to save")
    _atomic_files.write(path, _pack({"kind": "weights", "layout": _layout(model)},
                              {"params": model.params}))


def load_weights(model, filepath) -> None:
    """Load the weights of a model or weights file into ``model``; refuse another layout."""
    header, arrays = _unpack(filepath)
    if not model.built:
        raise ValueError(f"Model {model.name} must be built before load_weights")
    if header.get("layout") != _layout(model) or arrays.get("params") is None or \
            arrays["params"].shape != model.params.shape:
        raise ValueError(f"{os.fspath(filepath)} holds weights of another architecture: "
                         f"{header.get('layout')} does not match {_layout(model)}")
    with np.errstate(over="ignore"):  # an overflow is refused just below
        params = arrays["params"].astype(model.params.dtype)
    if not np.all(np.isfinite(params)):
        raise ValueError(f"{os.fspath(filepath)}: its weights do not fit in {model.params.dtype}")
    model.params[...] = params


def load_model(filepath, compile, model_class):
    """Rebuild a model, a ``model_class`` (``fastdnn.models.Sequential``), from a ``.fastdnn``
    file (see module doc)."""
    source = os.fspath(filepath)
    with _consistent(source):
        return _assemble(*_unpack(filepath), source, compile, model_class,
                         weights_required=True)


@contextlib.contextmanager
def _consistent(source):
    """Turn the errors of reading a header that lacks what it should hold into ValueError."""
    try:
        yield
    except (KeyError, TypeError, AttributeError, IndexError) as e:
        raise ValueError(f"{source} is inconsistent: {type(e).__name__}: {e}") from None


def _assemble(header, arrays, source, compile, model_class, dtype=None,
              weights_required=False):
    """A ``model_class`` from a file's header and arrays (``source`` names them in errors);
    without ``params`` its weights are drawn anew in ``dtype`` (default: floatx)."""
    if header.get("kind") != "model":
        raise ValueError(f"{source} holds weights only; use model.load_weights")
    if weights_required and "params" not in arrays:
        raise ValueError(f"{source} is inconsistent: it holds no weights")
    config = header["model"]
    params = arrays.get("params")
    layers = [layers_module.deserialize(c) for c in config["layers"]]
    model = model_class(name=config["name"])
    model._dtype = params.dtype if params is not None else dtype
    for layer in layers:
        model.add(layer)
    if _layout(model) != header["layout"] or (params is not None and (
            not model.built or model.params.shape != params.shape)):
        raise ValueError(f"{source} is inconsistent: its weights do not fit its architecture")
    if params is not None:
        model.params[...] = params
    settings = header.get("compile")
    if compile and settings is not None:
        opt_info = settings["optimizer"]
        optimizer = optimizers.ALL[opt_info["class_name"].lower()].from_config(opt_info["config"])
        optimizer.iterations = int(opt_info["iterations"])
        loss = losses.deserialize(settings["loss"]) if settings["loss"] else None
        model.compile(optimizer, loss, settings["metrics"] or None, engine=settings["engine"],
                      weighted_metrics=settings.get("weighted_metrics") or None)
        if "slots" in arrays:
            expected = (len(optimizer.slot_names()), model.params.size)
            if arrays["slots"].shape != expected or arrays["slots"].dtype != model.params.dtype:
                raise ValueError(f"{source} is inconsistent: optimizer slots of shape "
                                 f"{arrays['slots'].shape}, expected {expected}")
            optimizer.slots = np.array(arrays["slots"])  # never the source model's own
    return model
