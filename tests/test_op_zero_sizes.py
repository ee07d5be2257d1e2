"""Every operator's core samples with each dimension of size 0 (batch,
classes, height, width, instance slots), on both backends: the kernels define
every output whatever the sizes (docs/ops.md §0), so they give what the
reference gives (or refuse with the same message), and the same bits on every
call (memory left uninitialised would differ from call to call)."""
import pytest
import torch

import desc_ops
from helpers import assert_close
from operators import OPS, SIZES, run


def _outcome(op, sample, device):
    try:
        return [t.detach().cpu() for _, t in run(op, op.fn, op.kwargs(sample, device, torch.float32))]
    except ValueError as err:
        return str(err)


@pytest.mark.parametrize("zero", list(SIZES))
@pytest.mark.parametrize("op, sample", [pytest.param(op, s, id=f"{op.name}-{s.name}")
                                        for op in OPS.values() for s in op.core])
def test_every_operator_with_a_dimension_of_size_0(device, op, sample, zero):
    sample = sample.resized(**{zero: 0})
    desc_ops.set_backend("reference")
    want = _outcome(op, sample, device)
    desc_ops.set_backend("extension")
    first, second = _outcome(op, sample, device), _outcome(op, sample, device)
    if isinstance(want, str):
        assert first == want and second == want
        return
    assert len(first) == len(want)
    for a, b, w in zip(first, second, want):
        assert a.shape == w.shape and a.dtype == w.dtype
        assert torch.equal(a.nan_to_num(-7.0), b.nan_to_num(-7.0))
        if a.is_floating_point():
            assert_close(a, w)
        else:
            assert torch.equal(a, w)
