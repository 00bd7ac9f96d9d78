# Two commands on a fresh machine: `make demo` and `make test`. Everything lives in .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
BUILD_DEPS := scikit-build-core pybind11 nlohmann-json ninja
# The CPU wheel on this machine's disk; named exactly so pip never resolves a CUDA build.
TORCH := torch==2.13.0
# Rebuild when any source of the package changes.
SOURCES := $(shell find cpp python export cmake -type f -not -path '*/__pycache__/*' 2>/dev/null) CMakeLists.txt pyproject.toml

.PHONY: install demo test test-cpp test-py clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Build tools first, then the package without build isolation (see pyproject.toml for why).
$(VENV)/.installed: $(BIN)/python $(SOURCES)
	$(BIN)/pip install -q $(BUILD_DEPS) $(TORCH)
	$(BIN)/pip install -q --no-build-isolation '.[train,gnn,serve,test]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/libfraud demo --out demo-out

# C and C++ tests from the package's own CMake build, then every Python test against the install.
test-cpp: install
	ctest --test-dir build/py --output-on-failure

test-py: install
	$(BIN)/python -m pytest

test: test-cpp test-py

clean:
	rm -rf build $(VENV) demo-out

# libFuzzer targets (cpp/fuzz), 20 s each under ASan+UBSan; installs clang when missing.
.PHONY: fuzz-smoke test-sanitize
fuzz-smoke:
	scripts/fuzz.sh --seconds 20

# The C/C++ tests and a Python subset under ASan+UBSan, the C/C++ tests under TSan.
test-sanitize: install
	scripts/sanitize.sh
