"""Keras-style automatic names: ``dense``, ``dense_1``, ... one counter per prefix, per process."""

import collections
import re

_counts: collections.Counter = collections.Counter()


def to_snake_case(name: str) -> str:
    """``'ReLU'`` -> ``'re_lu'``, ``'InputLayer'`` -> ``'input_layer'`` (Keras' rule)."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def auto_name(prefix: str) -> str:
    """Return ``prefix`` the first time, then ``prefix_1``, ``prefix_2``, ..."""
    count = _counts[prefix]
    _counts[prefix] += 1
    return prefix if count == 0 else f"{prefix}_{count}"


def check_name(name, default_prefix: str) -> str:
    """Validate a user-given name, or make one. Names are any str without '/'."""
    if name is None:
        return auto_name(default_prefix)
    if not isinstance(name, str) or "/" in name:
        raise ValueError("Argument `name` must be a string and cannot contain character `/`. "
                         f"Received: name={name} (of type {type(name)})")
    return name


def clear_session() -> None:
    """Reset the automatic-name counters (``keras.backend.clear_session``)."""
    _counts.clear()
