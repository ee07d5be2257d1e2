"""Same inputs, same bits: every operator's large samples (work split between
threads and blocks) twice on each device, and with 1, 2 and 3 threads on the
CPU (fixed chunk sizes, partials added in a fixed order): outputs and
gradients."""
import pytest
import torch

from operators import LARGE, cases, run


def _bits(results):
    return [t.nan_to_num(-1) for _, t in results]


def _large(sizes):
    return [pytest.param(op, sample.resized(**sizes), dtype, id=p.id)
            for p in cases("large", dtypes=[torch.float32, torch.bfloat16]) for op, sample, dtype in [p.values]]


@pytest.mark.parametrize("op, sample, dtype", _large(LARGE[0]))
def test_same_bits_twice(device, op, sample, dtype):
    kwargs = op.kwargs(sample, device, dtype)
    first, second = _bits(run(op, op.fn, kwargs)), _bits(run(op, op.fn, kwargs))
    assert all(torch.equal(a, b) for a, b in zip(first, second))


@pytest.mark.parametrize("op, sample, dtype", _large(LARGE[0]))
def test_bits_do_not_depend_on_threads(op, sample, dtype):
    kwargs = op.kwargs(sample, "cpu", dtype)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            results.append(_bits(run(op, op.fn, kwargs)))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], other))
