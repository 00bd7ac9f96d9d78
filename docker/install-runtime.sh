#!/usr/bin/env bash
# The container's runtime stage, and what tests/test_container.py runs outside a container: install
# a built wheel and the HTTP service's dependencies into PREFIX (a venv). No compiler is needed and
# none is installed; torch only with WITH_TORCH=1 (bundles served by the aoti or torchscript
# backends; tree-only and native-GNN bundles need no torch).
#   docker/install-runtime.sh WHEEL_DIR PREFIX
set -euo pipefail
wheels=$(cd "$1" && pwd)
prefix=$2
python=${PYTHON:-python3}
"$python" -m venv "$prefix"
"$prefix/bin/pip" install -q --upgrade pip
wheel=$(ls "$wheels"/libfraud-*.whl | head -n 1)
"$prefix/bin/pip" install -q "${wheel}[serve]"
if [[ ${WITH_TORCH:-0} == 1 ]]; then
  "$prefix/bin/pip" install -q torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
fi
# The image must not carry a compiler; say so if this prefix could reach one it brought itself.
if ls "$prefix"/bin | grep -qE '^(gcc|g\+\+|cc|c\+\+|cmake|ninja)$'; then
  echo "install-runtime.sh: a compiler or build tool ended up in $prefix/bin" >&2; exit 1
fi
"$prefix/bin/python" -c "import libfraud, libfraud._core; print('libfraud', libfraud._core.__version__)"
