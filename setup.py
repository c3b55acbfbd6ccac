"""Build the Cython kernels.

The default build runs on any CPU of its architecture: no -m flags at module level. The kernels
that gain from wider vectors (the optimizer updates, the sparse input products, float32 Adam) are
compiled in variants inside the module (``fastdnn/simd/dispatch.h``) and the fastest the CPU
supports is chosen at import (``FASTDNN_SIMD`` forces one). Flags: -O3 always; -g0 (no debug info
in wheels); OpenMP when a probe compile shows the compiler supports it (else a serial build with a
warning). Opt-ins: FASTDNN_NATIVE=1 adds -march=native (a build for this machine only);
FASTDNN_ASAN=1 adds -fsanitize=address (memory-error runs of the kernel tests). GCC and Clang
only: the kernels use their builtins and attributes.
"""

import os
import subprocess
import sysconfig
import tempfile
import warnings

import numpy
import scipy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


OPENMP_PROBE = "#include <omp.h>\nint main(void) { return omp_get_max_threads() > 0 ? 0 : 1; }\n"


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


def _flags():
    """The compile and link flags for a GCC-compatible compiler (see the module docstring)."""
    compile_args = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-g0"]
    link_args = []
    if _probe(["-fopenmp"], OPENMP_PROBE):
        compile_args.append("-fopenmp")
        link_args.append("-fopenmp")
    else:
        warnings.warn("fastdnn: the C compiler has no OpenMP; building the kernels single-threaded.")
    if os.environ.get("FASTDNN_NATIVE") == "1":
        compile_args.append("-march=native")
    if os.environ.get("FASTDNN_ASAN") == "1":
        compile_args += ["-fsanitize=address", "-fno-omit-frame-pointer", "-O1", "-g"]
        link_args.append("-fsanitize=address")
    return compile_args, link_args


class BuildExt(build_ext):
    """build_ext that refuses compilers the kernels do not support, before passing GCC flags."""

    def build_extensions(self):
        if self.compiler.compiler_type == "msvc":
            raise RuntimeError(
                "fastdnn's kernels need GCC or Clang (their builtins, attributes and OpenMP); "
                "MSVC is not supported. On Windows, use WSL, or MinGW-w64's GCC "
                "(`compiler = mingw32` in the [build_ext] section of a setup.cfg).")
        compile_args, link_args = _flags()
        for ext in self.extensions:
            ext.extra_compile_args = compile_args
            ext.extra_link_args = link_args
        super().build_extensions()


extension = Extension(
    "fastdnn._kernels",
    ["fastdnn/_kernels.pyx"],
    include_dirs=[numpy.get_include(), os.path.dirname(scipy.__file__), "fastdnn"],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
)

setup(
    cmdclass={"build_ext": BuildExt},
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
    ),
)
