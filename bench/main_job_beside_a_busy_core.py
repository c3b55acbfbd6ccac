"""The main job beside a busy core: ``python -m fastdnn`` at its default thread count against
``OMP_NUM_THREADS=1 python -m fastdnn``, while another process keeps one core busy.

Each round runs both jobs, one after the other (which first alternates), and reads the
per-step time of every epoch from their progress lines; the table gives each epoch's
default/one-thread ratio of the medians over the rounds, and of the whole runs' summed
per-step times. Issue 23's target: every ratio within 1.1.

    python bench/main_job_beside_a_busy_core.py [--rounds 3] [--epochs 3]
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import time

STEP = re.compile(r"(\d+(?:\.\d+)?)(us|ms|s)/step")
SCALE = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
BUSY_SECONDS = 600  # the busy process ends itself after this long, should nothing else end it


def per_step_times(epochs, env):
    """Run the main job; return its per-step seconds, one per epoch."""
    out = subprocess.run([sys.executable, "-m", "fastdnn", "--epochs", str(epochs)], env=env,
                         capture_output=True, text=True, check=True).stdout
    times = [float(value) * SCALE[unit] for value, unit in STEP.findall(out)]
    if len(times) != epochs:
        raise RuntimeError(f"expected {epochs} progress lines, found {len(times)}:\n{out}")
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    default_env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    envs = {"default": default_env, "1 thread": {**default_env, "OMP_NUM_THREADS": "1"}}
    loop = f"import time\nend = time.monotonic() + {BUSY_SECONDS}\nwhile time.monotonic() < end: pass"
    busy = subprocess.Popen([sys.executable, "-c", loop])
    runs = {name: [] for name in envs}
    try:
        time.sleep(0.2)
        for r in range(args.rounds):
            order = list(envs) if r % 2 == 0 else list(envs)[::-1]
            for name in order:
                runs[name].append(per_step_times(args.epochs, envs[name]))
    finally:
        busy.kill()
        busy.wait()
    print(f"per-step time, median of {args.rounds} rounds, one core busy")
    print(f"{'epoch':>6} {'default':>10} {'1 thread':>10} {'ratio':>6}")
    for e in range(args.epochs):
        d = statistics.median(run[e] for run in runs["default"])
        o = statistics.median(run[e] for run in runs["1 thread"])
        print(f"{e + 1:>6} {d * 1e6:>8.0f}us {o * 1e6:>8.0f}us {d / o:>6.2f}")
    d = statistics.median(sum(run) for run in runs["default"])
    o = statistics.median(sum(run) for run in runs["1 thread"])
    print(f"{'all':>6} {d * 1e6:>8.0f}us {o * 1e6:>8.0f}us {d / o:>6.2f}  (sums of the epochs)")


if __name__ == "__main__":
    main()
