#!/usr/bin/env bash
# Builds the libFuzzer targets (cpp/fuzz) with clang, ASan and UBSan into build/fuzz, replays the
# saved regressions, then fuzzes each target for a bounded time or number of runs.
#   scripts/fuzz.sh                     # 30 s per target (what `make fuzz-smoke` runs, with 20)
#   scripts/fuzz.sh --seconds 600       # longer
#   scripts/fuzz.sh --runs 10000000     # a fixed number of executions per target
#   scripts/fuzz.sh --targets "fuzz_manifest" --jobs 4 --skip-known
# Exit status: 0 when every target ran clean, 1 when one found a crash (inputs under
# build/fuzz/artifacts/<target>/), 2 for a setup failure. See cpp/fuzz/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET=30
RUNS=""
TARGETS="fuzz_manifest fuzz_manifest_shapes fuzz_schema fuzz_transactions fuzz_labels fuzz_snapshot fuzz_shap_tables fuzz_rules"
JOBS=1
BUILD=build/fuzz
while [[ $# -gt 0 ]]; do
  case "$1" in
    --seconds) SECONDS_PER_TARGET="$2"; RUNS=""; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    --targets) TARGETS="$2"; shift 2 ;;
    --jobs) JOBS="$2"; shift 2 ;;
    # Go on past the findings listed in cpp/fuzz/regressions/README.md (for long runs only).
    --skip-known) export LIBFRAUD_FUZZ_SKIP_KNOWN=1; shift ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "fuzz.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

say() { echo "fuzz.sh: $*"; }

# clang and its libFuzzer runtime; CI is root on a fresh Debian bookworm, so install them there.
have_libfuzzer() {
  command -v clang++ >/dev/null && command -v clang >/dev/null &&
    [[ -f "$(clang -print-file-name=libclang_rt.fuzzer-x86_64.a)" || \
       -f "$(clang -print-runtime-dir 2>/dev/null)/libclang_rt.fuzzer-x86_64.a" ]]
}
PKGS=""
have_libfuzzer || PKGS="clang libclang-rt-14-dev"
PYTHON=python3
[[ -x .venv/bin/python ]] && PYTHON="$PWD/.venv/bin/python"
# nlohmann/json: the venv's nlohmann-json package (make install), else the system's.
if ! "$PYTHON" -c "import nlohmann_json" 2>/dev/null && [[ ! -f /usr/include/nlohmann/json.hpp ]]; then
  PKGS="$PKGS nlohmann-json3-dev"
fi
[[ -f /usr/include/openssl/evp.h ]] || PKGS="$PKGS libssl-dev"
command -v cmake >/dev/null || PKGS="$PKGS cmake"
if [[ -n "$PKGS" ]]; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    say "installing:$PKGS (apt-get update && apt-get install -y$PKGS)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $PKGS
  else
    say "missing:$PKGS; run: sudo apt-get install -y$PKGS" >&2
    exit 2
  fi
fi
have_libfuzzer || { say "clang's libFuzzer runtime still missing (libclang-rt-<version>-dev)" >&2; exit 2; }
say "using $(clang++ --version | head -1)"

GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)
[[ -f $BUILD/CMakeCache.txt ]] && GEN=()  # keep the generator the tree was made with
say "configuring $BUILD (clang, LIBFRAUD_FUZZ=ON, LIBFRAUD_SANITIZE=address,undefined)"
CC=clang CXX=clang++ cmake -S . -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DLIBFRAUD_FUZZ=ON -DLIBFRAUD_SANITIZE=address,undefined -DLIBFRAUD_BUILD_TESTS=OFF \
  -DLIBFRAUD_BUILD_PYTHON=OFF -DLIBFRAUD_WITH_TORCH=OFF -DPython_EXECUTABLE="$(command -v "$PYTHON")" >/dev/null

BUILT=""
for t in $TARGETS; do
  if [[ $t == fuzz_snapshot && ! -f cpp/src/store/snapshot.cpp ]]; then
    say "skipping $t: cpp/src/store/snapshot.cpp is not there yet"
    continue
  fi
  BUILT="$BUILT $t"
done
say "building:$BUILT"
cmake --build "$BUILD" --parallel --target $BUILT fuzz_fake_trees >/dev/null

say "writing seeds (cpp/fuzz/make_seeds.py) under $BUILD/seeds"
python3 cpp/fuzz/make_seeds.py "$BUILD/seeds" >/dev/null

# The targets write their inputs to scratch files: on tmpfs, not a disk (ext4 flushes a file
# rewritten in place at close, which made the targets 10-20 times slower).
if [[ -z "${TMPDIR:-}" && -d /dev/shm && -w /dev/shm ]]; then export TMPDIR=/dev/shm; fi
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
STATUS=0
SUMMARY=()
for t in $BUILT; do
  bin="$BUILD/cpp/fuzz/$t"
  short=${t#fuzz_}
  corpus="$BUILD/corpus/$t"
  artifacts="$BUILD/artifacts/$t"
  mkdir -p "$corpus" "$artifacts"
  args=(-artifact_prefix="$artifacts/" -timeout=30 -print_final_stats=1)
  [[ $t == fuzz_manifest || $t == fuzz_schema ]] && args+=(-dict=cpp/fuzz/manifest.dict)
  [[ $t == fuzz_rules ]] && args+=(-dict=cpp/fuzz/rules.dict)

  regressions=(cpp/fuzz/regressions/"$short"-*)
  if [[ -e ${regressions[0]} && -z "${LIBFRAUD_FUZZ_SKIP_KNOWN:-}" ]]; then
    say "$t: replaying ${#regressions[@]} saved regression input(s)"
    if ! "$bin" "${args[@]}" "${regressions[@]}" >"$BUILD/$t.regressions.log" 2>&1; then
      say "$t: a regression input still fails: $BUILD/$t.regressions.log"
      grep -m3 -E "runtime error|ERROR:|terminate|FUZZ_CHECK|missing" "$BUILD/$t.regressions.log" || true
      STATUS=1
    fi
  fi

  if [[ -n $RUNS ]]; then
    args+=(-runs="$RUNS"); what="$RUNS runs"
  else
    args+=(-max_total_time="$SECONDS_PER_TARGET"); what="$SECONDS_PER_TARGET s"
  fi
  [[ $JOBS -gt 1 ]] && args+=(-fork="$JOBS")
  say "$t: fuzzing for $what ($bin ${args[*]} $corpus $BUILD/seeds/$t)"
  log="$BUILD/$t.log"
  if "$bin" "${args[@]}" "$corpus" "$BUILD/seeds/$t" >"$log" 2>&1; then
    result=clean
  else
    result="FOUND A CRASH (see $log, input under $artifacts/)"
    grep -m5 -E "runtime error|ERROR:|terminate|FUZZ_CHECK|missing after" "$log" || true
    STATUS=1
  fi
  execs=$(grep -m1 -oP 'stat::number_of_executed_units:\s*\K[0-9]+' "$log" || echo "?")
  rate=$(grep -m1 -oP 'stat::average_exec_per_sec:\s*\K[0-9]+' "$log" || echo "?")
  SUMMARY+=("$t: $execs executions ($rate/s), $result")
done

say "summary"
for line in "${SUMMARY[@]}"; do echo "  $line"; done
exit $STATUS
