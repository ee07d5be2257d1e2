"""Every operator's samples (tests/operators.py) against desc_ops.reference:
outputs and the gradients to each differentiable argument, in every dtype."""
import pytest
import torch

from helpers import assert_close, tol
from operators import cases, run


def assert_same_results(op, got, want, dtype, pixels=1, reduction=None):
    """Kernels' results against the reference's: integers and the op's exact
    outputs bit for bit, floating ones within the dtype's tolerance ("sum"
    adds `pixels` map values: its absolute tolerance scales with them)."""
    assert [name for name, _ in got] == [name for name, _ in want]
    for (name, a), (_, b) in zip(got, want):
        assert a.shape == b.shape and a.dtype == b.dtype, name
        if not a.is_floating_point() or name in op.exact:
            assert torch.equal(a.nan_to_num(-7), b.nan_to_num(-7)), name
        else:
            atol = tol(b.dtype)["atol"] * (pixels if reduction == "sum" and not name.startswith("grad") else 1)
            assert_close(a, b, atol=atol)


@pytest.mark.parametrize("op, sample, dtype", cases())
def test_matches_reference(device, op, sample, dtype):
    kwargs = op.kwargs(sample, device, dtype)
    got, want = run(op, op.fn, kwargs), run(op, op.reference, kwargs)
    size = sample.size()
    assert_same_results(op, got, want, dtype, size["B"] * size["H"] * size["W"], kwargs.get("reduction"))
