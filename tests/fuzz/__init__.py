"""API fuzzer for fastdnn, run in a subprocess by ``tests/test_fuzz_api.py``.

Usage::

    python -m tests.fuzz TARGET --seed 20240601 --examples 150     # from the repository root

TARGET is one of ``kernels``, ``network``, ``model``, ``constructors``, ``reentry``, ``hyper``,
``callbacks``, ``signals`` (see ``TARGETS`` in ``__main__.py``). Each target feeds random,
mostly wrong, arguments to public entry points with hypothesis (fixed seed, no example database,
a bounded number of examples) and checks the contract of the library:

* the call works, and then its result is right (a kernel equals ``fastdnn.reference`` on copies
  of its arguments; ``predict`` equals a plain NumPy forward pass on the documented conversion of
  x: ``np.asarray(x)`` → the model's float type, C order, flattened per sample); or
* the call raises ``ValueError`` or ``TypeError`` (``NotImplementedError`` only where fastdnn
  documents an unsupported Keras option), and then nothing changed: the weights, the optimizer's
  iteration counter and slots are bit-identical to before and the model still predicts the same.

A crash (segfault, abort) kills this process: the parent sees a non-zero exit code and, thanks
to ``faulthandler`` and the ``CASE`` line written to stderr before every call, the input that did
it. A hang is caught by the parent's timeout.

Known bugs (each reproduced deterministically by a strict-xfail test in test_fuzz_api.py) are
listed in ``common.KNOWN_BUGS``: an outcome matching one is counted under its tag instead of
failing the run, so the fuzzer keeps guarding everything else. Inputs of a known *crash* are
never generated (they would end the run); they are counted as ``skipped_known_crash``.

The last line of stdout is ``FUZZ-SUMMARY {json}`` with the number of examples run and the count
of each outcome. The exit code is 0 when every example met the contract, 1 otherwise (hypothesis
prints the shrunk falsifying example on stderr).

Modules: ``__main__`` (process guards, the command line, ``TARGETS``), ``common`` (outcome
counts, the ``CASE`` line, known bugs, comparisons), ``strategies`` (array-likes and their
mutations, activation names), ``kernels`` (targets ``kernels`` and ``network``), ``model``
(``model`` and ``constructors``), ``reliability`` (``reentry``, ``hyper``, ``callbacks``,
``signals``).
"""
