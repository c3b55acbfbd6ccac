"""Layers shared between models keep one copy of their weights, as in Keras.

A layer's weights are views into one flat buffer, held by the layer's ``_home`` model. A model
built from layers another model holds (``Sequential([model, Softmax()])``,
``Sequential(model.layers + [Dense(10)])``) computes with that buffer: with the first part of it
when it has no weights of its own, else with a longer buffer that becomes the home of all its
layers, the other model then reading its first part. Every model that reads a part of a home's
buffer is one of its ``_sharers``, and follows it when it lays its weights out anew. Training
any of them moves the weights they all compute with.
"""

import numpy as np


def _refuse(model, layers, owner, owned):
    raise NotImplementedError(
        f"Layers {[layer.name for layer in layers]} hold weights of model {owner.name}: fastdnn "
        f"shares them when model {model.name} starts with that model's weighted layers, in order "
        f"({[layer.name for layer in owned]}), in its dtype, and adds weights only after all of "
        "them")


def buffer_for(model, plan, total, dtype):
    """Return ``(buffer, home)`` for ``model``'s weights, ``plan`` being ``[(layer, spans,
    shape)]`` in order and ``total`` its size.

    Raises:
        NotImplementedError: for a sharing the flat buffer cannot express (see ``_refuse``).
    """
    weighted = [layer for layer, spans, _ in plan if spans]
    homes = {id(l._home): l._home for l in weighted
             if l._home is not None and l._home is not model and l.built and l._weights}
    if not homes:
        for sharer in model._sharers:
            mine = [l for l in sharer._flat_layers() if l._weights]
            if weighted[:len(mine)] != mine or any(a is not b for a, b in zip(weighted, mine)):
                _refuse(sharer, mine, model, weighted)
        return np.zeros(total, dtype), model
    owner = next(iter(homes.values()))
    owned = [l for l in owner._flat_layers() if l._weights]
    k = sum(1 for a, b in zip(weighted, owned) if a is b)
    if len(homes) > 1 or owner.params.dtype != dtype or \
            any(a is not b for a, b in zip(weighted[:k], owned)) or \
            any(l._home is owner for l in weighted[k:]) or (len(weighted) > k < len(owned)):
        _refuse(model, [l for l in weighted if l._home is owner], owner, owned)
    if len(weighted) == k:  # no weights of its own: a part of the owner's buffer
        if model not in owner._sharers:
            owner._sharers.append(model)
        return owner.params[:total], owner
    params = np.zeros(total, dtype)
    params[:owner.params.size] = owner.params
    model._sharers = [m for m in owner._sharers + [owner] if m is not model]
    owner._sharers = []
    return params, model


def follow(home, params) -> None:
    """Point the home's sharers at the first part of its new buffer ``params``."""
    for sharer in home._sharers:
        sharer.params = params[:sharer.params.size]
        sharer._network = None
