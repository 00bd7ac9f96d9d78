#!/usr/bin/env bash
# The container's build stage, and what tests/test_container.py runs outside a container: build the
# libfraud wheel from a source tree, without its C/C++ test binaries, into OUT_DIR.
#   docker/build-wheel.sh SRC_DIR OUT_DIR
# Needs a C/C++ compiler, CMake >= 3.20, ninja and OpenSSL's headers. The build tools go into a
# private venv (BUILD_VENV, default OUT_DIR/.build-venv); torch is never installed (the core does
# not build against it; the libtorch plugin is built only where libtorch is found).
set -euo pipefail
src=$(cd "$1" && pwd)
out=$(mkdir -p "$2" && cd "$2" && pwd)
venv=${BUILD_VENV:-$out/.build-venv}
python=${PYTHON:-python3}
[[ -x $venv/bin/python ]] || "$python" -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q scikit-build-core pybind11 nlohmann-json ninja
# --no-build-isolation: the tools above, never a resolver's pick of torch. Tests off: the wheel
# carries the library, the module, the header and the CMake/pkg-config files, no test binaries.
"$venv/bin/pip" wheel -q --no-build-isolation --no-deps "$src" -w "$out" \
  -C cmake.define.LIBFRAUD_BUILD_TESTS=OFF -C build-dir="${BUILD_DIR:-$out/.build}"
ls "$out"/libfraud-*.whl
