#!/usr/bin/env bash
# The GPU check of desc-ops, in one command on a machine with a CUDA GPU:
# builds the package from this working tree against the installed torch, runs
# the whole test suite (CUDA included), runs a reduced CUDA set under
# compute-sanitizer (memcheck, racecheck, synccheck) and the benchmarks,
# writing every log to the folder given.
#
#   bash benchmarks/gpu_suite.sh LOG_DIR [--quick]
#
# GPU_SUITE_STEPS picks steps (default "build tests sanitizers benchmarks"):
# the whole script takes longer than some machines allow one command, so it
# can run as "build tests" and then "sanitizers benchmarks" on the warm machine.
#
# Needs: torch (CUDA build), nvcc, setuptools, ninja, pytest; no network.
# TORCH_CUDA_ARCH_LIST defaults to the visible GPU's architecture.
set -uo pipefail
out=${1:?usage: gpu_suite.sh LOG_DIR [--quick]}
quick=${2:-}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.."
status=0
step() { echo "== $1: $(date +%T)" | tee -a "$out/summary.txt"; }
steps=" ${GPU_SUITE_STEPS:-build tests sanitizers benchmarks} "
want() { [[ $steps == *" $1 "* ]]; }
# Some GPU images have python3 but no python; PYTHON overrides.
py=${PYTHON:-$(command -v python || command -v python3)}

step "environment"
{ nvidia-smi; "$py" --version; echo "image CC=${CC:-} CXX=${CXX:-}"; "$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"; nvcc --version; } \
  > "$out/environment.txt" 2>&1

if want build; then
step "build"
if [ -z "${TORCH_CUDA_ARCH_LIST:-}" ]; then
  export TORCH_CUDA_ARCH_LIST=$("$py" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")
fi
export MAX_JOBS=${MAX_JOBS:-$(nproc)}
# The gcc on PATH, not an image's $CC/$CXX: one GPU image's CXX (/opt/gcc)
# links libstdc++ statically, and an extension with its own libstdc++ beside
# torch's crashes when it formats a C++ error message (any TORCH_CHECK).
# DESC_CC / DESC_CXX choose another.
export CC=${DESC_CC:-$(command -v gcc)} CXX=${DESC_CXX:-$(command -v g++)}
if ! FORCE_CUDA=1 "$py" -m pip install --no-build-isolation --no-deps -v -e . > "$out/build.log" 2>&1; then
  echo "build failed: see build.log" | tee -a "$out/summary.txt"
  tail -40 "$out/build.log"
  exit 1
fi
fi
"$py" -c "import desc_ops; print('desc_ops built with CUDA', desc_ops.built_cuda_version())" | tee -a "$out/summary.txt"

if want tests; then
step "tests"
# One process per test file: a crash (a kernel that corrupts memory) then
# names its file and leaves the other files' results standing.
for f in tests/test_*.py; do
  echo "==== $f" >> "$out/tests.log"
  "$py" -m pytest -q -rfE -p no:cacheprovider "$f" >> "$out/tests.log" 2>&1
  rc=$?
  [ $rc -eq 0 ] || status=1
  printf '%-36s exit %3d  %s\n' "$f" "$rc" "$(grep -E '(passed|failed|error|skipped)' "$out/tests.log" | tail -1)" \
    | tee -a "$out/summary.txt"
done
fi

# The sanitizers slow kernels down by orders of magnitude: a reduced set (float32, CUDA against CPU).
if want sanitizers; then
for tool in memcheck racecheck synccheck; do
  step "compute-sanitizer $tool"
  compute-sanitizer --tool "$tool" --error-exitcode 9 "$py" -m pytest -q -p no:cacheprovider \
    tests/test_cuda.py -k "matches_cpu and float32" > "$out/sanitizer-$tool.tmp" 2>&1 || status=1
  # one log for the three tools keeps the folder small enough to copy back whole
  { echo "==== $tool"; cat "$out/sanitizer-$tool.tmp"; } >> "$out/sanitizer.log"
  grep -E "ERROR SUMMARY|passed|failed" "$out/sanitizer-$tool.tmp" | tail -3 | tee -a "$out/summary.txt"
  rm -f "$out/sanitizer-$tool.tmp"
done
fi

if want benchmarks; then
step "benchmarks"
"$py" benchmarks/losses.py --device cuda ${quick:+--quick} --json "$out/benchmark.json" \
  --plot "$out/benchmark-scaling.png" > "$out/benchmark.txt" 2>&1 || status=1
tail -5 "$out/benchmark.txt" | tee -a "$out/summary.txt"
fi

step "done (status $status)"
exit $status
