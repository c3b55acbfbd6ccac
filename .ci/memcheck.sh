#!/usr/bin/env bash
# Memory-error runs of fastdnn's kernel tests (opt-in; see tests/README.md).
#
#   bash .ci/memcheck.sh asan       # AddressSanitizer build, kernel tests + fuzzer under it
#   bash .ci/memcheck.sh valgrind   # valgrind memcheck over a small kernel test selection
#   bash .ci/memcheck.sh all        # both (the default)
#
# asan: copies the sources to a scratch directory (the shared in-place build is never touched),
#   builds the extension there with FASTDNN_ASAN=1 (setup.py adds -fsanitize=address), and runs
#   the kernel tests, the property tests and the API fuzzer with libasan preloaded into Python
#   (an uninstrumented interpreter needs LD_PRELOAD to load an ASAN extension). Any
#   AddressSanitizer report, in pytest or in a fuzzer subprocess, fails the run.
# valgrind: builds the extension in a scratch directory and runs it under `valgrind
#   --tool=memcheck` with FASTDNN_SIMD=$VALGRIND_SIMD (default baseline: valgrind decodes no
#   AVX-512, and the baseline variant is the one whose BLAS paths the others skip); fails if any invalid
#   read/write/free has a frame in fastdnn's extension (reports wholly inside CPython, ld.so,
#   NumPy or OpenBLAS are listed but do not fail the run). Two canaries first prove that valgrind
#   really checks this interpreter and attributes errors in the extension.
#
# Tests marked xfail (known bugs, some of which crash on purpose in a subprocess) are deselected.
#
# Environment: PYTHON (default python3), FASTDNN_MEMCHECK_DIR (scratch directory, default a new
# temporary one, removed after a clean run), ASAN_TESTS / VALGRIND_TESTS (pytest arguments
# replacing the default selections below), VALGRIND_K (the valgrind run's -k expression),
# VALGRIND_SIMD (the SIMD variant valgrind runs: baseline or avx2), ASAN_SIMD (the variant ASAN
# runs; default: the fastest the CPU supports),
# FASTDNN_FUZZ_EXAMPLES (examples per fuzz target under ASAN, default 150).
set -uo pipefail

MODE=${1:-all}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# The interpreter itself, not a wrapper (a pyenv shim is a shell script: valgrind would check
# bash, and the real Python would run unchecked).
PY=$("${PYTHON:-python3}" -c 'import sys; print(sys.executable)') || exit 2
WORK=${FASTDNN_MEMCHECK_DIR:-$(mktemp -d -t fastdnn-memcheck.XXXXXX)}
mkdir -p "$WORK"
STATUS=0

ASAN_TESTS=${ASAN_TESTS:-"tests/test_kernels.py tests/test_kernel_checks.py tests/test_network.py tests/test_gradients.py tests/test_optimizers.py tests/test_engines.py tests/test_properties.py tests/test_fuzz_api.py"}
VALGRIND_TESTS=${VALGRIND_TESTS:-"tests/test_kernel_checks.py tests/test_sparse_products.py tests/test_kernels.py::test_activation_forward_matches_reference tests/test_kernels.py::test_dense_forward_matches_reference tests/test_kernels.py::test_dense_backward_matches_reference tests/test_kernels.py::test_sparse_softmax_cross_entropy_matches_reference tests/test_kernels.py::test_softmax_cross_entropy_matches_reference tests/test_kernels.py::test_sigmoid_binary_cross_entropy_matches_reference tests/test_kernels.py::test_mean_squared_error_matches_reference tests/test_kernels.py::test_count_correct_sparse_matches_reference tests/test_kernels.py::test_dropout_forward_draws_the_reference_mask tests/test_network.py::test_network_trains_like_the_reference tests/test_optimizers.py::test_float32_adam_step_is_within_a_few_ulp_of_the_exact_quotient tests/test_optimizers.py::test_adam_special_values_follow_the_exact_quotient"}
VALGRIND_K=${VALGRIND_K-"not large"}
VALGRIND_SIMD=${VALGRIND_SIMD:-baseline}
ASAN_SIMD=${ASAN_SIMD:-}

log() { printf '\n=== %s\n' "$*"; }

# A copy of the sources and tests in $1, without any build of the extension.
copy_sources() {
    rm -rf "$1" && mkdir -p "$1/fastdnn"
    cp "$ROOT/setup.py" "$ROOT/pyproject.toml" "$1/"
    for f in README.md LICENSE; do [ -e "$ROOT/$f" ] && cp "$ROOT/$f" "$1/"; done
    cp -r "$ROOT/tests" "$1/tests"
    (cd "$ROOT/fastdnn" && tar cf - --exclude='*.so' --exclude='_kernels.c' --exclude='__pycache__' .) \
        | (cd "$1/fastdnn" && tar xf -)
}

run_asan() {
    local libasan src rc
    libasan=$(gcc -print-file-name=libasan.so)
    if [ ! -e "$libasan" ]; then
        echo "ASAN: libasan.so not found (gcc -print-file-name=libasan.so gave '$libasan')"
        return 1
    fi
    src="$WORK/asan-src"
    log "ASAN: copying the sources to $src"
    copy_sources "$src"
    log "ASAN: building the extension with FASTDNN_ASAN=1 (log: $WORK/asan-build.log)"
    if ! (cd "$src" && FASTDNN_ASAN=1 "$PY" setup.py -q build_ext --inplace > "$WORK/asan-build.log" 2>&1); then
        tail -30 "$WORK/asan-build.log"
        echo "ASAN: build failed"
        return 1
    fi
    if [ "$(nm -D "$src"/fastdnn/_kernels*.so | grep -c __asan_report)" -eq 0 ]; then
        echo "ASAN: the built extension is not instrumented"
        return 1
    fi
    # detect_leaks=0: CPython's own allocations are never freed at exit (not fastdnn's).
    # allocator_may_return_null=1: a huge request (the fuzzer asks for TiB on purpose) must give
    # NumPy's MemoryError, not an ASAN abort. log_path: reports of every process land in files.
    export_asan() {
        LD_PRELOAD="$libasan" \
        ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:halt_on_error=1:abort_on_error=1:log_path=$WORK/asan-report" \
        PYTHONPATH="$src" PYTHONMALLOC=malloc OPENBLAS_NUM_THREADS=1 FASTDNN_SIMD="$ASAN_SIMD" \
        FASTDNN_FUZZ_EXAMPLES="${FASTDNN_FUZZ_EXAMPLES:-150}" "$@"
    }
    rm -f "$WORK"/asan-report.*
    # The instrumented copy is the one imported, and ASAN catches a read past a buffer in it
    # (as_strided fakes a large C-contiguous array over 3 doubles; no check can know).
    local where
    where=$(cd "$src" && export_asan "$PY" -c "import fastdnn._kernels as k; print(k.__file__)" 2>&1)
    if [[ "$where" != "$src/fastdnn/_kernels"* ]]; then
        echo "ASAN: the instrumented extension is not the one imported: $where"
        return 1
    fi
    (cd "$src" && export_asan "$PY" -c "
import numpy as np
from numpy.lib.stride_tricks import as_strided
import fastdnn._kernels as k
z = as_strided(np.zeros(3), shape=(1, 64), strides=(512, 8))
k.activation_forward(z, np.empty((1, 64)), 'relu')
" > /dev/null 2>&1)
    if ! grep -qs "heap-buffer-overflow" "$WORK"/asan-report.*; then
        echo "ASAN: the canary's read past a buffer went unnoticed"
        return 1
    fi
    rm -f "$WORK"/asan-report.*
    log "ASAN: running $ASAN_TESTS"
    (cd "$src" && export_asan "$PY" -m pytest -q -p no:cacheprovider -o addopts="" -m "not xfail" \
        $ASAN_TESTS > "$WORK/asan-pytest.log" 2>&1)
    rc=$?
    tail -5 "$WORK/asan-pytest.log"
    # Reports hold errors ("ERROR: AddressSanitizer: ...") or warnings: the fuzzer's deliberate
    # TiB requests give "WARNING: AddressSanitizer failed to allocate", then a MemoryError.
    local errors
    errors=$(grep -ls "ERROR: AddressSanitizer" "$WORK"/asan-report.* || true)
    if [ -n "$errors" ]; then
        echo "ASAN: AddressSanitizer errors:"
        head -80 $errors
        echo "ASAN: FAILED (reports in $WORK)"
        return 1
    fi
    if [ "$rc" -ne 0 ]; then
        echo "ASAN: pytest failed under ASAN (exit $rc; log $WORK/asan-pytest.log)"
        return 1
    fi
    echo "ASAN: clean"
}

write_valgrind_parser() {
    cat > "$WORK/parse.py" <<'EOF'
"""Count valgrind's invalid-access reports: in fastdnn's extension ("ours") or elsewhere."""
import glob
import re
import sys

ours, theirs = [], []
for path in glob.glob(sys.argv[1]):
    for block in re.split(r"\n==\d+== \n", open(path, errors="replace").read()):
        if re.search(r"Invalid (read|write|free)|Mismatched free|overlap", block):
            # A frame in the extension: "(in .../fastdnn/_kernels.cpython-...so)" or its source.
            mine = re.search(r"_kernels\.cpython|_kernels\.(c|pyx):\d", block)
            (ours if mine else theirs).append(block)
if len(sys.argv) > 2:  # canary mode: both deliberate errors must have been seen
    sys.exit(0 if ours and any("Invalid write" in b for b in theirs) else 1)
print(f"VALGRIND: {len(ours)} invalid accesses in fastdnn's extension, {len(theirs)} elsewhere "
      "(CPython/ld.so/NumPy/OpenBLAS, not counted)")
for block in (ours + theirs)[:5]:
    print(block[:3000])
sys.exit(1 if ours else 0)
EOF
}

run_valgrind() {
    local rc src ids=() kflag=()
    if ! command -v valgrind > /dev/null; then
        echo "VALGRIND: valgrind is not installed"
        return 1
    fi
    # valgrind 3.19 decodes no AVX-512: the run forces a variant without it (FASTDNN_SIMD).
    src="$WORK/valgrind-src"
    log "VALGRIND: building the extension in $src (log: $WORK/valgrind-build.log)"
    copy_sources "$src"
    local -x FASTDNN_SIMD="$VALGRIND_SIMD"
    if ! (cd "$src" && "$PY" setup.py -q build_ext --inplace \
            > "$WORK/valgrind-build.log" 2>&1); then
        tail -30 "$WORK/valgrind-build.log"
        echo "VALGRIND: build failed"
        return 1
    fi
    local where
    where=$(cd "$src" && PYTHONPATH="$src" "$PY" -c "import fastdnn._kernels as k; print(k.__file__)" 2>&1)
    if [[ "$where" != "$src/fastdnn/_kernels"* ]]; then
        echo "VALGRIND: the scratch build is not the one imported: $where"
        return 1
    fi
    rm -f "$WORK"/valgrind.*.log "$WORK"/canary.*.log
    write_valgrind_parser
    # Canaries: valgrind must see this interpreter's heap (a write past a NumPy buffer) and
    # attribute a read past a buffer inside the extension to it.
    (cd "$src" && PYTHONPATH="$src" PYTHONMALLOC=malloc valgrind --tool=memcheck --leak-check=no \
        --log-file="$WORK/canary.%p.log" "$PY" -c "
import ctypes, numpy as np
from numpy.lib.stride_tricks import as_strided
import fastdnn._kernels as k
a = np.zeros(3)
ctypes.memmove(a.ctypes.data + 24, b'12345678', 8)
z = as_strided(np.zeros(3), shape=(1, 64), strides=(512, 8))
k.activation_forward(z, np.empty((1, 64)), 'relu')
" > /dev/null 2>&1)
    if ! "$PY" "$WORK/parse.py" "$WORK/canary.*.log" canary; then
        echo "VALGRIND: the canaries went unnoticed: valgrind is not checking $PY and fastdnn"
        return 1
    fi
    read -r -a ids <<< "$VALGRIND_TESTS"
    [ -n "$VALGRIND_K" ] && kflag=(-k "$VALGRIND_K")
    log "VALGRIND: memcheck (FASTDNN_SIMD=$FASTDNN_SIMD) over: $VALGRIND_TESTS ${kflag[*]}"
    (cd "$src" && \
        PYTHONPATH="$src" PYTHONMALLOC=malloc OPENBLAS_NUM_THREADS=1 \
        valgrind --tool=memcheck --leak-check=no --track-origins=no --error-limit=no \
            --trace-children=no --log-file="$WORK/valgrind.%p.log" \
            "$PY" -m pytest -q -p no:cacheprovider -m "not xfail" -o addopts="" \
            "${ids[@]}" "${kflag[@]}" > "$WORK/valgrind-pytest.log" 2>&1)
    rc=$?
    tail -3 "$WORK/valgrind-pytest.log"
    if ! "$PY" "$WORK/parse.py" "$WORK/valgrind.*.log"; then
        echo "VALGRIND: FAILED (logs in $WORK)"
        return 1
    fi
    if [ "$rc" -ne 0 ]; then
        echo "VALGRIND: pytest failed under valgrind (exit $rc; log $WORK/valgrind-pytest.log)"
        return 1
    fi
    echo "VALGRIND: clean"
}

case "$MODE" in
    asan) run_asan || STATUS=1 ;;
    valgrind) run_valgrind || STATUS=1 ;;
    all) run_asan || STATUS=1; run_valgrind || STATUS=1 ;;
    *) echo "usage: $0 [asan|valgrind|all]"; exit 2 ;;
esac

if [ "$STATUS" -eq 0 ] && [ -z "${FASTDNN_MEMCHECK_DIR:-}" ]; then
    rm -rf "$WORK"
fi
exit "$STATUS"
