#!/usr/bin/env bash
# CI: build fastpong with AddressSanitizer + UndefinedBehaviorSanitizer (CMake option
# FASTPONG_SANITIZE) into its own folder and run the kernel tests on that build. Any report fails
# the run: ASan stops at its first error, and UBSan is compiled without recovery.
#
# Run from any Python environment that has fastpong's dependencies and the test extra (CI's
# .venv-ci; locally your venv): bash .ci/sanitize.sh. Extra pip arguments go in
# SANITIZE_PIP_ARGS (say --no-build-isolation, offline). The ordinary install is not touched: the
# sanitized package goes to build/sanitize/site and comes first on PYTHONPATH for the tests only.
set -euo pipefail
cd "$(dirname "$0")/.."

# The tests run on the sanitized build: the kernels' own tests and the boundary fuzzers. Add a
# file here when it exercises C++ and runs in seconds (the environment and training tests spend
# their time in the emulator, which is not instrumented).
SANITIZED_TESTS=(
  tests/test_frames.py
  tests/test_policy.py
  tests/test_training_kernels.py
  tests/test_errors.py
  tests/test_fuzz_boundary.py
  tests/test_threads.py
  tests/test_adam.py
  tests/test_categorical.py
  tests/test_cnn.py
  tests/test_lab_frames.py
  tests/test_ppo.py
)

site=build/sanitize/site
rm -rf "$site"
# shellcheck disable=SC2086
# RelWithDebInfo: pybind11 strips Release modules, which would leave reports without names.
python -m pip install --quiet --no-deps --target "$site" ${SANITIZE_PIP_ARGS:-} \
  -Ccmake.define.FASTPONG_SANITIZE=ON -Ccmake.build-type=RelWithDebInfo -Cbuild-dir=build/sanitize/cmake .

module=$(ls "$site"/fastpong/_core*.so)
# CPython itself is not instrumented, so the ASan runtime must be loaded before anything else: the
# runtimes the module was linked against (libasan, libubsan) are preloaded by path.
preload=$(ldd "$module" | awk '/lib(asan|ubsan|clang_rt\.asan)/ {print $3}' | paste -sd: -)
if [[ -z "$preload" ]]; then
  echo "sanitize.sh: $module links no sanitizer runtime; was FASTPONG_SANITIZE applied?" >&2
  exit 1
fi

# detect_leaks=0: CPython keeps interned objects and module state alive at exit by design, which
# LeakSanitizer would report as leaks on every run. Everything else ASan finds stops the run.
export ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export PYTHONPATH="$PWD/$site${PYTHONPATH:+:$PYTHONPATH}"

LD_PRELOAD="$preload" python -c "
import fastpong, sys
assert fastpong.__file__.startswith('$PWD/$site'), fastpong.__file__
print('sanitized build:', fastpong.__file__, file=sys.stderr)"

# Hypothesis gets more examples here than in the ordinary run: these tests are where memory
# errors would show, and the sanitizers make each one count. --capture=sys: a sanitizer report is
# written to file descriptor 2 just before the process aborts, so pytest must not hold that one.
LD_PRELOAD="$preload" FASTPONG_FUZZ_EXAMPLES="${FASTPONG_FUZZ_EXAMPLES:-300}" \
  python -m pytest -q -p no:cacheprovider --capture=sys "${SANITIZED_TESTS[@]}" "$@"
