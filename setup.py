"""Build the Cython kernels.

Flags: -O3 always; OpenMP when a probe compile shows the compiler supports it (else a serial build
with a warning); -mavx2 -mfma when the building machine's CPU has them (a probe program asks the
CPU): the optimizer updates run about 1.5x faster with 8-wide vectors; and -mavx512f where it has
AVX-512 (the sparse input products then use 16-wide vectors; -mprefer-vector-width=256 keeps the
compiler's own loops as they were measured). The kernels are thus built for the machine that
builds them, as ``pip install`` from source does; FASTDNN_PORTABLE=1 builds for any x86-64 (a
wheel meant for other machines), FASTDNN_AVX512=0 without AVX-512 (valgrind knows no AVX-512).
-fsanitize=address when FASTDNN_ASAN=1 (for memory-error runs of the kernel tests).
"""

import os
import platform
import subprocess
import sys
import sysconfig
import tempfile
import warnings

import numpy
import scipy
from Cython.Build import cythonize
from setuptools import Extension, setup


OPENMP_PROBE = "#include <omp.h>\nint main(void) { return omp_get_max_threads() > 0 ? 0 : 1; }\n"
AVX2_PROBE = ("int main(void) { __builtin_cpu_init(); return __builtin_cpu_supports(\"avx2\") && "
              "__builtin_cpu_supports(\"fma\") ? 0 : 1; }\n")
AVX512_PROBE = ("int main(void) { __builtin_cpu_init(); "
                "return __builtin_cpu_supports(\"avx512f\") ? 0 : 1; }\n")


def _probe(flags, source):
    """Return True if the C compiler builds ``source`` with ``flags`` and the program exits 0."""
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = os.path.join(tmp, "probe.c"), os.path.join(tmp, "probe")
        with open(src, "w") as f:
            f.write(source)
        if subprocess.run(cc.split() + flags + [src, "-o", exe], capture_output=True).returncode:
            return False
        return subprocess.run([exe], capture_output=True).returncode == 0


compile_args = ["-O3", "-fno-math-errno", "-fno-trapping-math"]
link_args = []
if sys.platform != "win32" and _probe(["-fopenmp"], OPENMP_PROBE):
    compile_args.append("-fopenmp")
    link_args.append("-fopenmp")
else:
    warnings.warn("fastdnn: the C compiler has no OpenMP; building the kernels single-threaded.")
if (os.environ.get("FASTDNN_PORTABLE") != "1" and platform.machine().lower() in ("x86_64", "amd64")
        and sys.platform != "win32" and _probe(["-mavx2", "-mfma"], AVX2_PROBE)):
    compile_args += ["-mavx2", "-mfma"]
    if os.environ.get("FASTDNN_AVX512") != "0" and _probe(["-mavx512f"], AVX512_PROBE):
        compile_args += ["-mavx512f", "-mprefer-vector-width=256"]
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
