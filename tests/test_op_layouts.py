"""Every operator's samples in other memory layouts (a strided view, the last
two dimensions swapped in memory) give the bits of the contiguous inputs:
outputs and gradients."""
import pytest
import torch

from operators import cases, run


@pytest.mark.parametrize("op, sample, dtype", cases(dtypes=[torch.float32, torch.bfloat16]))
def test_other_layouts_give_the_same_bits(device, op, sample, dtype):
    want = run(op, op.fn, op.kwargs(sample, device, dtype))
    for layout in ("strided", "transposed"):
        kwargs = op.kwargs(sample, device, dtype, layout)
        wide = [t for t in kwargs.values() if torch.is_tensor(t) and t.numel() > 1 and t.shape[-1] > 1]
        if layout == "strided" and wide:
            assert not all(t.is_contiguous() for t in kwargs.values() if torch.is_tensor(t))
        got = run(op, op.fn, kwargs)
        for (name, a), (_, b) in zip(got, want):
            assert a.shape == b.shape and a.dtype == b.dtype, (layout, name)
            assert torch.equal(a.nan_to_num(-7), b.nan_to_num(-7)), (layout, name)
