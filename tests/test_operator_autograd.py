"""The autograd of the operators themselves (``torch.ops.desc_ops.consistency_loss``
and ``semantic_consistency_loss``), checked on the CPU. The public functions take
the CPU training forms when a gradient is needed, so without these tests the
operators' own backward (the one CUDA and ``torch.compile`` use) would only be
checked where a GPU runs the suite."""
import pytest
import torch

from desc_ops import _args, reference
from helpers import assert_close

OPS = torch.ops.desc_ops
B, H, W = 2, 5, 7


def maps(seed_):
    g = torch.Generator().manual_seed(seed_)
    d = torch.rand(B, 1, H, W, generator=g, dtype=torch.float64) + 0.5
    s = torch.rand(B, 1, H, W, generator=g, dtype=torch.float64) + 0.5
    return d, s, g


@pytest.mark.parametrize("wants", [(True, True), (True, False), (False, True)], ids=["both", "depth", "depth_sem"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_consistency_operator_gradients(wants, reduction):
    d, s, g = maps(1)
    w = torch.rand(B, 1, H, W, generator=g, dtype=torch.float64)
    d.requires_grad_(wants[0])
    s.requires_grad_(wants[1])
    args = _args.consistency(d, s, w, reduction)
    loss, norm = OPS.consistency_loss(*args)
    assert not norm.requires_grad
    got = torch.autograd.grad(loss, [t for t, want in zip((d, s), wants) if want])
    expected = torch.autograd.grad(reference.consistency_loss(d, s, w, reduction=reduction),
                                   [t for t, want in zip((d, s), wants) if want])
    for a, e in zip(got, expected):
        assert a.abs().sum() > 0
        assert_close(a, e)
    assert torch.autograd.gradcheck(lambda d_, s_: OPS.consistency_loss(d_, s_, w, reduction)[0],
                                    (d.detach().requires_grad_(wants[0]), s.detach().requires_grad_(wants[1])))


@pytest.mark.parametrize("wants", [(True, True), (True, False), (False, True)], ids=["both", "depth", "depth_sem"])
def test_semantic_consistency_operator_gradients(wants):
    d, s, g = maps(2)
    logits = torch.randn(B, 4, H, W, generator=g, dtype=torch.float64)
    image = torch.rand(B, 3, H, W, generator=g, dtype=torch.float64)
    d.requires_grad_(wants[0])
    s.requires_grad_(wants[1])
    args = _args.semantic_consistency(d, s, logits, image, None, 1.0, 0.5, -1, None, "mean")
    loss, confidence, norm = OPS.semantic_consistency_loss(*args)
    assert not confidence.requires_grad and not norm.requires_grad
    leaves = [t for t, want in zip((d, s), wants) if want]
    got = torch.autograd.grad(loss, leaves)
    expected = torch.autograd.grad(reference.semantic_consistency_loss(d, s, logits, image=image), leaves)
    for a, e in zip(got, expected):
        assert a.abs().sum() > 0
        assert_close(a, e)
