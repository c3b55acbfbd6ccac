"""Command line of the fuzzer: ``python -m tests.fuzz TARGET --seed N --examples N``.

The process guards come first, before numpy, hypothesis and fastdnn are imported.
"""

import faulthandler
import os
import resource

# Guard the shared machine: a request for a huge buffer must fail fast, not swap. (Not under
# AddressSanitizer, which reserves terabytes of address space for its shadow memory.)
_AS_LIMIT = 6 * 2**30
if "asan" not in os.environ.get("LD_PRELOAD", "") and "ASAN_OPTIONS" not in os.environ:
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard == resource.RLIM_INFINITY or hard > _AS_LIMIT:
            resource.setrlimit(resource.RLIMIT_AS, (_AS_LIMIT, hard))
    except (ValueError, OSError):  # pragma: no cover - not on Linux
        pass

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
faulthandler.enable()

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402

from hypothesis import HealthCheck, Phase, given, seed as hyp_seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from .common import STATS  # noqa: E402
from .kernels import run_kernel_example, run_network_example  # noqa: E402
from .model import run_constructor_example, run_model_example  # noqa: E402
from .reliability import (run_callbacks_example, run_hyper_example,  # noqa: E402
                          run_reentry_example, run_signals_example)


TARGETS = {"kernels": run_kernel_example, "network": run_network_example,
           "model": run_model_example, "constructors": run_constructor_example,
           "reentry": run_reentry_example, "hyper": run_hyper_example,
           "callbacks": run_callbacks_example, "signals": run_signals_example}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", choices=sorted(TARGETS))
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--examples", type=int, default=150)
    options = parser.parse_args(argv)
    body = TARGETS[options.target]

    @hyp_seed(options.seed)
    @settings(max_examples=options.examples, database=None, deadline=None, derandomize=False,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate, Phase.shrink],
              print_blob=False)
    @given(st.data())
    def fuzz(data):
        STATS.examples += 1
        body(data)

    status = 0
    try:
        fuzz()
    except Exception:  # the shrunk falsifying example is printed by hypothesis
        traceback.print_exc()
        status = 1
    summary = {"target": options.target, "seed": options.seed, "examples": STATS.examples,
               "outcomes": dict(sorted(STATS.outcomes.items())),
               "known_bug_examples": STATS.first_case, "status": status}
    print("FUZZ-SUMMARY " + json.dumps(summary), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
