"""Shared draws of the fuzz targets: an array-like and its mutations, right or wrong; activation
names, valid and odd.
"""

import numpy as np
from hypothesis import strategies as st


# Array-likes: a "right" array and its mutations, right-or-wrong.

NUMERIC_DTYPES = [np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64,
                  np.uint8, np.uint16, np.uint32, np.bool_]

FLOAT_MUTATIONS = ["same"] * 6 + ["fortran", "strided", "reversed", "readonly", "list", "nan",
                                  "inf", "overflow32", "big", "tiny", "zeros", "dtype"]
WRONG_MUTATIONS = ["fewer_rows", "more_rows", "extra_axis", "drop_axis", "transpose",
                   "wrong_width", "empty", "scalar", "none", "string", "object", "object_none",
                   "ragged", "complex", "dict", "datetime", "bytes", "zero_d", "set"]


def mutate(data, base, allow_wrong=True, label="x"):
    """Return ``(value, mutation)``: base changed by one drawn mutation."""
    pool = FLOAT_MUTATIONS + (WRONG_MUTATIONS if allow_wrong else [])
    kind = data.draw(st.sampled_from(pool), label=f"{label}_mutation")
    a = np.array(base, copy=True)
    if kind == "same":
        return a, kind
    if kind == "fortran":
        return np.asfortranarray(a), kind
    if kind == "strided":
        big = np.repeat(a, 2, axis=0) if a.ndim else a
        return big[::2], kind
    if kind == "reversed":
        return a[::-1] if a.ndim else a, kind
    if kind == "readonly":
        a.setflags(write=False)
        return a, kind
    if kind == "list":
        return a.tolist(), kind
    if kind in ("nan", "inf", "overflow32", "big", "tiny", "zeros"):
        f = a.astype(np.float64)
        if f.size:
            i = data.draw(st.integers(0, f.size - 1), label=f"{label}_index")
            if kind == "nan":
                f.flat[i] = np.nan
            elif kind == "inf":
                f.flat[i] = data.draw(st.sampled_from([np.inf, -np.inf]))
            elif kind == "overflow32":
                f.flat[i] = 1e39
            elif kind == "big":
                f *= 1e4
            elif kind == "tiny":
                f *= 1e-42
            else:
                f[...] = 0
        return f, kind
    if kind == "dtype":
        dt = data.draw(st.sampled_from(NUMERIC_DTYPES), label=f"{label}_dtype")
        with np.errstate(all="ignore"):
            return a.astype(dt), kind
    if kind == "fewer_rows":
        return a[:-1] if a.ndim else a, kind
    if kind == "more_rows":
        return (np.concatenate([a, a[:1]]) if a.ndim else a), kind
    if kind == "extra_axis":
        return a[..., None], kind
    if kind == "drop_axis":
        return (a.reshape(a.shape[0], -1)[:, 0] if a.ndim > 1 else a.reshape(-1)[:1].reshape(())
                if a.size else a), kind
    if kind == "transpose":
        return a.T, kind
    if kind == "wrong_width":
        if a.ndim >= 2:
            return np.concatenate([a, a[:, :1]], axis=1), kind
        return a[..., None], kind
    if kind == "empty":
        return a[:0], kind
    if kind == "scalar":
        return data.draw(st.sampled_from([0, 1, 3.5, -2, np.float32(1), True])), kind
    if kind == "none":
        return None, kind
    if kind == "string":
        return data.draw(st.sampled_from(["abc", "1.0", np.array(["a", "b"]),
                                          a.astype(str) if a.size < 500 else "x"])), kind
    if kind == "object":
        return a.astype(object), kind
    if kind == "object_none":
        o = a.astype(object)
        if o.size:
            o.flat[0] = None
        return o, kind
    if kind == "ragged":
        rows = a.reshape(a.shape[0], -1).tolist() if a.ndim >= 1 and a.size else [[1.0]]
        if rows:
            rows[0] = rows[0] + [1.0]
        return rows, kind
    if kind == "complex":
        return a.astype(np.complex128), kind
    if kind == "dict":
        return {"x": a}, kind
    if kind == "datetime":
        return np.zeros(a.shape, "datetime64[s]"), kind
    if kind == "bytes":
        return b"\x00\x01", kind
    if kind == "zero_d":
        return np.array(1.0), kind
    if kind == "set":
        return {1, 2, 3}, kind
    raise AssertionError(kind)


ACTS = ["linear", "relu", "sigmoid", "tanh", "softmax"]
ODD_ACTS = ["Relu", "gelu", None, 7, -1, 2.5, "", b"relu"]
