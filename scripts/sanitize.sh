#!/usr/bin/env bash
# The tests under the sanitizers (see cpp/fuzz/README.md, "Sanitizer runs"):
#   1. build/asan: the C/C++ tests and the Python module with LIBFRAUD_SANITIZE=address,undefined;
#      ctest, then a subset of the Python tests (test_features, test_scorer, test_reasons) on
#      that module with libasan preloaded into the interpreter;
#   2. build/tsan: the C/C++ tests with LIBFRAUD_SANITIZE=thread.
#   scripts/sanitize.sh [--no-python] [--no-tsan]
# Needs `make install` first for the Python part (the venv's pybind11, nlohmann-json, pytest).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON_TESTS=1
TSAN=1
for arg in "$@"; do
  case "$arg" in
    --no-python) PYTHON_TESTS=0 ;;
    --no-tsan) TSAN=0 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "sanitize.sh: unknown argument '$arg'" >&2; exit 2 ;;
  esac
done
say() { echo "sanitize.sh: $*"; }
start=$(date +%s)
PY="$PWD/.venv/bin/python"
if [[ ! -x $PY ]]; then
  say "no .venv (run make install first): C/C++ tests only"
  PY=python3
  PYTHON_TESTS=0
fi
GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)
# Every UBSan report fails the run; leaks fail the C/C++ tests.
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
STATUS=0

# --- 1. ASan + UBSan -------------------------------------------------------------------------
ASAN_ARGS=(-DLIBFRAUD_SANITIZE=address,undefined -DLIBFRAUD_BUILD_TESTS=ON -DLIBFRAUD_WITH_TORCH=OFF
           -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPython_EXECUTABLE="$(command -v "$PY")")
if [[ $PYTHON_TESTS == 1 ]]; then
  ASAN_ARGS+=(-DLIBFRAUD_BUILD_PYTHON=ON -Dpybind11_DIR="$($PY -m pybind11 --cmakedir)")
fi
[[ -f build/asan/CMakeCache.txt ]] && GEN_A=() || GEN_A=("${GEN[@]}")
say "configuring build/asan (${ASAN_ARGS[*]})"
cmake -S . -B build/asan "${GEN_A[@]}" "${ASAN_ARGS[@]}" >/dev/null
say "building build/asan"
cmake --build build/asan --parallel >/dev/null
say "ctest in build/asan (ASan + UBSan)"
t0=$(date +%s)
if ! ASAN_OPTIONS="detect_leaks=1:abort_on_error=0" ctest --test-dir build/asan --output-on-failure; then
  STATUS=1
fi
say "ctest build/asan: $(( $(date +%s) - t0 )) s"

if [[ $PYTHON_TESTS == 1 ]]; then
  # The package as the wheel lays it out, with the sanitized _core and libfraud.so, ahead of the
  # venv's install on sys.path.
  root=build/asan/pyroot
  rm -rf "$root"
  mkdir -p "$root/libfraud/lib"
  cp -r python/libfraud/. "$root/libfraud/"
  cp -r export "$root/libfraud/export"
  mkdir -p "$root/libfraud/include/libfraud"
  cp cpp/include/libfraud/fraud.h "$root/libfraud/include/libfraud/"
  cp build/asan/_core*.so "$root/libfraud/"
  cp -P build/asan/libfraud.so* "$root/libfraud/lib/"
  # CPython itself is not built with ASan: the runtime must be loaded first (LD_PRELOAD), leaks
  # of the interpreter are not ours (detect_leaks=0), and the C++ runtime is preloaded with it so
  # ASan's interception of operator new/delete sees every allocation.
  preload="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so):$(gcc -print-file-name=libstdc++.so)"
  say "Python tests under ASan: PYTHONPATH=$root LD_PRELOAD=$preload"
  t0=$(date +%s)
  if ! PYTHONPATH="$root" LD_PRELOAD="$preload" \
      ASAN_OPTIONS="detect_leaks=0:verify_asan_link_order=0" \
      $PY -c "import libfraud._core as c, sys; assert c.__file__.startswith('$PWD/$root'), c.__file__; print('sanitize.sh: _core from', c.__file__)" ||
     ! PYTHONPATH="$root" LD_PRELOAD="$preload" \
      ASAN_OPTIONS="detect_leaks=0:verify_asan_link_order=0" \
      $PY -m pytest -q -p no:cacheprovider tests/test_features.py tests/test_scorer.py tests/test_reasons.py; then
    STATUS=1
  fi
  say "Python tests under ASan: $(( $(date +%s) - t0 )) s"
fi

# --- 2. TSan ---------------------------------------------------------------------------------
if [[ $TSAN == 1 ]]; then
  [[ -f build/tsan/CMakeCache.txt ]] && GEN_T=() || GEN_T=("${GEN[@]}")
  say "configuring build/tsan (LIBFRAUD_SANITIZE=thread, C/C++ tests)"
  cmake -S . -B build/tsan "${GEN_T[@]}" -DLIBFRAUD_SANITIZE=thread -DLIBFRAUD_BUILD_TESTS=ON \
    -DLIBFRAUD_BUILD_PYTHON=OFF -DLIBFRAUD_WITH_TORCH=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DPython_EXECUTABLE="$(command -v "$PY")" >/dev/null
  cmake --build build/tsan --parallel >/dev/null
  t0=$(date +%s)
  if ! TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1" \
      ctest --test-dir build/tsan --output-on-failure; then
    STATUS=1
  fi
  say "ctest build/tsan: $(( $(date +%s) - t0 )) s"
fi

say "done in $(( $(date +%s) - start )) s, $([[ $STATUS == 0 ]] && echo clean || echo FAILED)"
exit $STATUS
