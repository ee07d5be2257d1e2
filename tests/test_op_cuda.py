"""The CUDA kernels against the CPU kernels on every operator's large samples,
at sizes that span many blocks and both the shared-memory (K = 40) and
global-atomics (K = 1500) paths of the instance kernels, in every dtype."""
import pytest
import torch

from helpers import DTYPES, assert_close, tol
from operators import LARGE, cases, run

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

BLOCKS = [dict(LARGE[1], K=40), LARGE[1]]


@pytest.mark.parametrize("sizes", BLOCKS, ids=[f"K{s['K']}" for s in BLOCKS])
@pytest.mark.parametrize("op, sample, dtype", cases("large", dtypes=DTYPES))
def test_cuda_matches_cpu(op, sample, dtype, sizes):
    sample = sample.resized(**sizes)
    gpu = run(op, op.fn, op.kwargs(sample, "cuda", dtype))
    cpu = run(op, op.fn, op.kwargs(sample, "cpu", dtype))
    for (name, a), (_, b) in zip(gpu, cpu):
        a = a.cpu()
        if not b.is_floating_point() or name in op.exact:
            assert torch.equal(a.nan_to_num(-1), b.nan_to_num(-1)), name
        elif name.startswith("grad_"):
            # Per-pixel gradients are ~1 / (pixels) each: an absolute tolerance of
            # the losses' size would pass a missing term. Relative to the largest.
            assert_close(a, b, dtype, atol=tol(dtype)["rtol"] * b.abs().max().item())
        else:
            assert_close(a, b, dtype)
