#!/usr/bin/env bash
# The GPU check of desc-ops, in one command on a machine with a CUDA GPU:
# builds the package from this working tree against the installed torch, runs
# the whole test suite (CUDA included), runs a reduced CUDA set under
# compute-sanitizer (memcheck, racecheck, synccheck) and the benchmarks,
# writing every log to the folder given.
#
#   bash benchmarks/gpu_suite.sh LOG_DIR [--quick]
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

step "environment"
{ nvidia-smi; python --version; python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"; nvcc --version; } \
  > "$out/environment.txt" 2>&1

step "build"
if [ -z "${TORCH_CUDA_ARCH_LIST:-}" ]; then
  export TORCH_CUDA_ARCH_LIST=$(python -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")
fi
export MAX_JOBS=${MAX_JOBS:-$(nproc)}
if ! FORCE_CUDA=1 python -m pip install --no-build-isolation --no-deps -v -e . > "$out/build.log" 2>&1; then
  echo "build failed: see build.log" | tee -a "$out/summary.txt"
  tail -40 "$out/build.log"
  exit 1
fi
python -c "import desc_ops; print('desc_ops built with CUDA', desc_ops.built_cuda_version())" | tee -a "$out/summary.txt"

step "tests"
python -m pytest -q tests -p no:cacheprovider > "$out/tests.log" 2>&1 || status=1
tail -3 "$out/tests.log" | tee -a "$out/summary.txt"

# The sanitizers slow kernels down by orders of magnitude: a reduced set (float32, CUDA against CPU).
for tool in memcheck racecheck synccheck; do
  step "compute-sanitizer $tool"
  compute-sanitizer --tool "$tool" --error-exitcode 9 python -m pytest -q -p no:cacheprovider \
    tests/test_cuda.py -k "matches_cpu and float32" > "$out/sanitizer-$tool.log" 2>&1 || status=1
  grep -E "ERROR SUMMARY|passed|failed" "$out/sanitizer-$tool.log" | tail -3 | tee -a "$out/summary.txt"
done

step "benchmarks"
python benchmarks/losses.py --device cuda ${quick:+--quick} --json "$out/benchmark.json" \
  --plot "$out/benchmark-scaling.png" > "$out/benchmark.txt" 2>&1 || status=1
tail -5 "$out/benchmark.txt" | tee -a "$out/summary.txt"

step "done (status $status)"
exit $status
