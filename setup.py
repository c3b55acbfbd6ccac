"""Build the Cython kernels.

Flags: -O3 always; OpenMP when a probe compile shows the compiler supports it (else a serial build
with a warning); -march=native only when FASTDNN_NATIVE=1 (a default wheel must run on any x86-64);
-fsanitize=address when FASTDNN_ASAN=1 (for memory-error runs of the kernel tests).
"""

import os
import subprocess
import sys
import sysconfig
import tempfile
import warnings

import numpy
import scipy
from Cython.Build import cythonize
from setuptools import Extension, setup


def _compiler_accepts(flags):
    """Return True if the C compiler builds and links a tiny OpenMP program with ``flags``."""
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    source = "#include <omp.h>\nint main(void) { return omp_get_max_threads() > 0 ? 0 : 1; }\n"
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write(source)
        cmd = cc.split() + flags + [src, "-o", os.path.join(tmp, "probe")]
        return subprocess.run(cmd, capture_output=True).returncode == 0


compile_args = ["-O3", "-fno-math-errno", "-fno-trapping-math"]
link_args = []
if sys.platform != "win32" and _compiler_accepts(["-fopenmp"]):
    compile_args.append("-fopenmp")
    link_args.append("-fopenmp")
else:
    warnings.warn("fastdnn: the C compiler has no OpenMP; building the kernels single-threaded.")
if os.environ.get("FASTDNN_NATIVE") == "1":
    compile_args.append("-march=native")
if os.environ.get("FASTDNN_ASAN") == "1":
    compile_args += ["-fsanitize=address", "-fno-omit-frame-pointer", "-O1"]
    link_args.append("-fsanitize=address")

extension = Extension(
    "fastdnn._kernels",
    ["fastdnn/_kernels.pyx"],
    include_dirs=[numpy.get_include(), os.path.dirname(scipy.__file__), "fastdnn"],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    extra_compile_args=compile_args,
    extra_link_args=link_args,
)

setup(
    ext_modules=cythonize(
        [extension],
        language_level=3,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "initializedcheck": False,
            "cdivision": True,
            "embedsignature": True,
        },
    )
)
