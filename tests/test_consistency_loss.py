"""consistency_loss and the fused semantic_consistency_loss (docs/ops.md §2): the
gradients' rule, the fused form against its composition, the W_tot == 0 rule,
values by hand. Against the reference, in other layouts and gradcheck: the
families of tests/test_op_*.py."""
import pytest
import torch

import desc_ops
from desc_ops import reference

from helpers import DTYPES, assert_close, leaf, rand_map
from operators import cases, run

REDUCTIONS = ["mean", "sum", "none"]


@pytest.mark.parametrize("op, sample, dtype", cases(only="consistency_loss"))
def test_depth_sem_gets_minus_the_gradient_of_depth(device, op, sample, dtype):
    """|depth - depth_sem|: the two gradients are opposite, bit for bit, on every
    sample of the registry (tests/operators.py)."""
    results = dict(run(op, op.fn, op.kwargs(sample, device, dtype)))
    assert torch.equal(results["grad_depth_sem"], -results["grad_depth"])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_fused_equals_composition(device, dtype, reduction):
    """The fused kernel is consistency_loss(confidence_map(...)) to the bit."""
    g = torch.Generator().manual_seed(11)
    B, C, H, W = 2, 19, 13, 21
    depth = rand_map(B, H, W, dtype, device, generator=g)
    depth_sem = rand_map(B, H, W, dtype, device, generator=g)
    logits = torch.randn(B, C, H, W, generator=g).to(device=device, dtype=dtype)
    image = torch.rand(B, 3, H, W, generator=g).to(device=device, dtype=dtype)
    fused, conf = desc_ops.semantic_consistency_loss(depth, depth_sem, logits, image=image, reduction=reduction,
                                                     return_confidence=True)
    weight = desc_ops.confidence_map(logits, image=image)
    assert torch.equal(conf, weight)
    assert torch.equal(fused, desc_ops.consistency_loss(depth, depth_sem, weight, reduction=reduction))


@pytest.mark.parametrize("fused", [False, True])
def test_zero_total_weight_gives_exact_zero(device, impl, fused):
    depth = leaf(rand_map(2, 5, 6, torch.float32, device))
    depth_sem = leaf(rand_map(2, 5, 6, torch.float32, device))
    if fused:
        labels = torch.zeros(2, 5, 6, dtype=torch.long, device=device)
        loss = desc_ops.semantic_consistency_loss(depth, depth_sem, labels, ignore_classes=[0])
    else:
        loss = desc_ops.consistency_loss(depth, depth_sem, torch.zeros_like(depth))
    assert loss.item() == 0.0
    gd, gs = torch.autograd.grad(loss, (depth, depth_sem))
    assert (gd == 0).all() and (gs == 0).all()


def test_gradient_formula(device, impl):
    depth = leaf(torch.tensor([[[[1.0, 2.0, 3.0]]]], device=device))
    depth_sem = leaf(torch.tensor([[[[2.0, 2.0, 1.0]]]], device=device))
    weight = torch.tensor([[[[0.5, 1.0, 2.0]]]], device=device)
    loss = desc_ops.consistency_loss(depth, depth_sem, weight)
    assert loss.item() == pytest.approx((0.5 * 1 + 0 + 2 * 2) / 3.5)
    loss.backward()
    assert torch.equal(depth.grad.flatten(), torch.tensor([-0.5, 0.0, 2.0], device=device) / 3.5)
    assert torch.equal(depth_sem.grad, -depth.grad)


def test_equal_depths_give_no_gradient(device, impl):
    """sign(0) = 0 (docs/ops.md §0): where depth equals depth_sem exactly, as on
    every other pixel, the gradients are -+weight * sign(depth - depth_sem) / W_tot.
    37 columns: ties in the vector loop and in its tail."""
    g = torch.Generator().manual_seed(8)
    depth = torch.randint(0, 3, (2, 1, 3, 37), generator=g).double()
    depth_sem = torch.randint(0, 3, (2, 1, 3, 37), generator=g).double()
    weight = torch.rand(2, 1, 3, 37, generator=g, dtype=torch.float64) + 0.5
    assert (depth == depth_sem).float().mean() > 0.2
    d, s = leaf(depth.to(device)), leaf(depth_sem.to(device))
    loss = desc_ops.consistency_loss(d, s, weight.to(device), reduction="sum")
    gd, gs = torch.autograd.grad(loss, (d, s))
    expected = (weight * torch.sign(depth - depth_sem)).to(device)
    assert torch.equal(gd, expected) and torch.equal(gs, -expected)


def test_three_dim_maps_are_one_channel(device, impl):
    g = torch.Generator().manual_seed(2)
    depth = rand_map(2, 4, 5, torch.float32, device, generator=g)
    depth_sem = rand_map(2, 4, 5, torch.float32, device, generator=g)
    weight = rand_map(2, 4, 5, torch.float32, device, low=0, high=1, generator=g)
    assert torch.equal(desc_ops.consistency_loss(depth[:, 0], depth_sem[:, 0], weight[:, 0]),
                       desc_ops.consistency_loss(depth, depth_sem, weight))


def test_mixed_dtypes_follow_depth(device, impl):
    depth = rand_map(1, 3, 4, torch.float16, device)
    depth_sem = rand_map(1, 3, 4, torch.float32, device)
    weight = rand_map(1, 3, 4, torch.float64, device, low=0, high=1)
    loss = desc_ops.consistency_loss(depth, depth_sem, weight)
    assert loss.dtype == torch.float16
    assert_close(loss, reference.consistency_loss(depth, depth_sem, weight))


def test_cpu_bfloat16_rounding_is_exact():
    """The vectorised CPU stores round float to bfloat16 as torch does (nearest
    even, NaN and infinities kept), over every bit pattern of depth."""
    g = torch.Generator().manual_seed(0)
    n = 2**16 + 37
    depth = (torch.arange(n, dtype=torch.int32) & 0xFFFF).to(torch.int16).view(torch.bfloat16).reshape(1, 1, 1, n)
    depth_sem = torch.randn(1, 1, 1, n, generator=g).to(torch.bfloat16)
    weight = torch.rand(1, 1, 1, n, generator=g).to(torch.bfloat16)
    got = desc_ops.consistency_loss(depth, depth_sem, weight, reduction="none")
    want = (weight.float() * (depth.float() - depth_sem.float()).abs()).bfloat16()
    same = (got.view(torch.int16) == want.view(torch.int16)) | (got.isnan() & want.isnan())
    assert bool(same.all())


@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
def test_semantic_options_reach_both_backends(grad):
    """Every option, off its default, reaches the computation on each backend
    (the CPU training form with a gradient, the operator without): the two
    backends agree, and each differs from the defaults."""
    g = torch.Generator().manual_seed(12)
    d = torch.rand(2, 1, 6, 7, generator=g, dtype=torch.float64) + 0.5
    s = torch.rand(2, 1, 6, 7, generator=g, dtype=torch.float64) + 0.5
    labels = torch.randint(-1, 4, (2, 6, 7), generator=g)
    labels[0, 0, :3] = 7  # another ignore value
    image = torch.rand(2, 3, 6, 7, generator=g, dtype=torch.float64)
    options = dict(image=image, edge_weight=0.3, boundary_weight=0.8, ignore_index=7,
                   ignore_classes=torch.tensor([2]), reduction="sum")
    results = {}
    for backend in ("extension", "reference"):
        desc_ops.set_backend(backend)
        depth = d.clone().requires_grad_(grad)
        loss, conf = desc_ops.semantic_consistency_loss(depth, s, labels, return_confidence=True, **options)
        results[backend] = loss, conf
        for name in ("edge_weight", "boundary_weight", "ignore_index", "ignore_classes", "reduction"):
            other = {k: v for k, v in options.items() if k != name}
            assert not torch.equal(desc_ops.semantic_consistency_loss(d, s, labels, **other), loss.detach()), name
    assert_close(results["extension"][0], results["reference"][0])
    assert_close(results["extension"][1], results["reference"][1])


def test_semantic_argument_errors_name_the_argument():
    d, s = torch.rand(1, 1, 3, 4), torch.rand(1, 1, 3, 4)
    labels = torch.zeros(1, 3, 4, dtype=torch.long)
    with pytest.raises(ValueError, match=r"^depth must have shape \(B, 1, H, W\) or \(B, H, W\), got shape "
                                         r"\(1, 2, 3, 4\) and dtype torch.float32$"):
        desc_ops.semantic_consistency_loss(torch.rand(1, 2, 3, 4), s, labels)
    with pytest.raises(ValueError, match=r"^semantic must be a torch.Tensor, got list$"):
        desc_ops.semantic_consistency_loss(d, s, [[0]])
    with pytest.raises(ValueError, match=r"^depth is empty \(shape \(0, 1, 3, 4\) and dtype torch.float32\): "
                                         r"reduction 'mean' needs pixels$"):
        desc_ops.semantic_consistency_loss(d[:0], s[:0], labels[:0])
    assert desc_ops.semantic_consistency_loss(d[:0], s[:0], labels[:0], reduction="none").shape == (0, 1, 3, 4)


def test_semantic_outputs_take_the_dtype_of_depth():
    g = torch.Generator().manual_seed(13)
    d = torch.rand(1, 1, 3, 4, generator=g) + 0.5
    s64 = torch.rand(1, 1, 3, 4, generator=g, dtype=torch.float64) + 0.5
    logits64 = torch.randn(1, 3, 3, 4, generator=g, dtype=torch.float64)
    loss, conf = desc_ops.semantic_consistency_loss(d, s64, logits64, return_confidence=True)
    assert loss.dtype == conf.dtype == torch.float32
    want = desc_ops.semantic_consistency_loss(d, s64.float(), logits64.float(), return_confidence=True)
    assert_close(loss, want[0])
    assert_close(conf, want[1])
