"""instance_prior_loss (docs/ops.md §4): value and gradients to depth and heights by
hand and at the contract's edges. Against the reference, in other layouts and
gradcheck: tests/test_op_*.py."""
import pytest
import torch

import desc_ops
from desc_ops import reference

from helpers import assert_close, leaf
from operators import cases, pseudo_depths


def _inputs(B, H, W, K, dtype, device, g, fill=0.6, id_dtype=torch.int64):
    ids = torch.randint(0, max(K, 1), (B, H, W), generator=g)
    ids[torch.rand(B, H, W, generator=g) > fill] = -1
    if K == 0:
        ids.fill_(-1)
    depth = (torch.rand(B, 1, H, W, generator=g, dtype=torch.float64) * 40 + 1).to(device=device, dtype=dtype)
    heights = (torch.rand(B, K, generator=g, dtype=torch.float64) * 2 + 0.5).to(device=device, dtype=dtype)
    focal = (torch.rand(B, generator=g, dtype=torch.float64) * 50 + 20).to(device)
    return depth, ids.to(device=device, dtype=id_dtype), heights, focal


def _run(fn, depth, ids, heights, focal, **kw):
    depth, heights = leaf(depth), leaf(heights)
    loss = fn(depth, ids, heights, focal, **kw)
    # An upstream map for "none" (different per pixel, so that each pixel's must
    # reach its own gradient and its slot's height), else 1.7.
    upstream = torch.linspace(-1, 2, loss.numel(), dtype=torch.float64).reshape(loss.shape).to(loss) \
        if loss.dim() else torch.tensor(1.7, dtype=loss.dtype, device=loss.device)
    gd, gh = torch.autograd.grad(loss, (depth, heights), upstream)
    return loss, gd, gh


def test_formula_by_hand(device, impl):
    ids = torch.tensor([[[0, 0, -1], [1, 0, -1]]], device=device)
    depth = leaf(torch.tensor([[[[10.0, 30.0, 5.0], [8.0, 25.0, 5.0]]]], device=device))
    heights = leaf(torch.tensor([[1.0, 0.5]], device=device))
    focal = 40.0
    # slot 0: rows 0..1 -> h = 2, z = 40 * 1 / 2 = 20; slot 1: h = 1, z = 20.
    loss = desc_ops.instance_prior_loss(depth, ids, heights, focal)
    assert loss.item() == pytest.approx((10 + 10 + 5 + 12) / 4)
    loss.backward()
    assert depth.grad.flatten().tolist() == [-0.25, 0.25, 0.0, -0.25, 0.25, 0.0]
    # d/dH0 = -(f/h) * sum sign / N = -(20) * (-1 + 1 + 1) / 4; d/dH1 = -(40) * (-1) / 4.
    assert heights.grad.flatten().tolist() == pytest.approx([-5.0, 10.0])


def test_depth_equal_to_the_pseudo_depth_gives_no_gradient(device, impl):
    """sign(0) = 0 (docs/ops.md §0): a pixel whose depth is exactly z adds
    nothing to either gradient."""
    ids = torch.tensor([[[0, 0, 0, -1], [0, 1, 1, -1]]], device=device)
    depth = leaf(torch.tensor([[[[20.0, 30.0, 20.0, 5.0], [10.0, 40.0, 40.0, 5.0]]]], device=device))
    heights = leaf(torch.tensor([[1.0, 2.0]], device=device))
    # slot 0: rows 0..1, z = 40 * 1 / 2 = 20; slot 1: one row, z = 40 * 2 / 1 = 80.
    desc_ops.instance_prior_loss(depth, ids, heights, 40.0, reduction="sum").backward()
    assert depth.grad.flatten().tolist() == [0.0, 1.0, 0.0, 0.0, -1.0, -1.0, -1.0, 0.0]
    # d/dH0 = -(f/h) * sum sign = -20 * (0 + 1 + 0 - 1); d/dH1 = -40 * (-1 - 1).
    assert heights.grad.flatten().tolist() == [0.0, 80.0]


def test_clamp_and_unused_slots(device, impl):
    ids = torch.tensor([[[0, 1, 2, 3]]], device=device)
    depth = leaf(torch.full((1, 1, 1, 4), 10.0, device=device))
    heights = leaf(torch.tensor([[100.0, 0.1, float("inf"), 1.0]], device=device))
    loss = desc_ops.instance_prior_loss(depth, ids, heights, 10.0, max_depth=80.0, min_pixels=1)
    # slot 0 clamps to 80, slot 1: z = 1, slot 2 unused (inf), slot 3: z = 10.
    assert loss.item() == pytest.approx((70 + 9 + 0) / 3)
    loss.backward()
    assert heights.grad[0, 0] == 0 and heights.grad[0, 2] == 0
    assert heights.grad[0, 1].item() == pytest.approx(-10.0 * 1 / 3)
    assert depth.grad[0, 0, 0, 2] == 0


@pytest.mark.parametrize("op, sample, dtype", [p for p in cases(dtypes=[torch.float32], only="instance_prior_loss")
                                               if p.values[1].options.get("acting") and p.values[1].size()["K"] > 1])
def test_options_act_on_the_registry_samples(op, sample, dtype):
    """The min_pixels and max_depth of the registry's samples (tests/operators.py)
    exclude and clamp some slots, not none or all: the loss differs without them."""
    kwargs = op.kwargs(sample, "cpu", dtype)
    z, count = pseudo_depths(kwargs["instance_ids"], kwargs["heights"], kwargs["focal"])
    if "min_pixels" in kwargs:
        assert (count < kwargs["min_pixels"]).any() and (count >= kwargs["min_pixels"]).any()
    else:
        assert (z > kwargs["max_depth"]).any() and (z < kwargs["max_depth"]).any()
    plain = {k: v for k, v in kwargs.items() if k not in ("min_pixels", "max_depth")}
    assert not torch.equal(op.fn(**kwargs), op.fn(**plain))


def test_boundaries_by_hand(device, impl):
    """A slot with exactly min_pixels pixels is used; a pseudo-depth exactly at
    max_depth takes torch.clamp's gradient there: 0."""
    ids = torch.tensor([[[0, 0, 1, 1, 1]]], device=device)  # slot 0: 2 pixels, slot 1: 3
    depth = leaf(torch.full((1, 1, 1, 5), 10.0, device=device))
    heights = leaf(torch.tensor([[1.0, 2.0]], device=device))
    # pixel height 1: z = focal * h = 4 and 8.
    loss = desc_ops.instance_prior_loss(depth, ids, heights, 4.0, min_pixels=3)
    assert loss.item() == pytest.approx(2.0)  # slot 1 only: |10 - 8|
    loss = desc_ops.instance_prior_loss(depth, ids, heights, 4.0, min_pixels=2, max_depth=8.0, reduction="sum")
    assert loss.item() == pytest.approx(2 * 6.0 + 3 * 2.0)
    loss.backward()
    # d/dh0 = -focal * sum sign(10 - 4) = -4 * 2; z1 == max_depth: no gradient.
    assert heights.grad.flatten().tolist() == pytest.approx([-8.0, 0.0])
    loss = desc_ops.instance_prior_loss(depth, ids, heights, 4.0, max_depth=7.5, reduction="sum")
    assert loss.item() == pytest.approx(2 * 6.0 + 3 * 2.5)


def test_non_finite_focal_drops_its_image(device, impl):
    """An image whose focal is NaN or inf has no used slot: the loss is that of
    the other images, with finite gradients, on every backend."""
    g = torch.Generator().manual_seed(8)
    depth, ids, heights, _ = _inputs(3, 6, 7, 3, torch.float64, device, g)
    for bad in (float("nan"), float("inf")):
        focal = torch.tensor([30.0, bad, 20.0], dtype=torch.float64, device=device)
        got = _run(desc_ops.instance_prior_loss, depth, ids, heights, focal)
        keep = torch.tensor([0, 2], device=device)
        want = _run(desc_ops.instance_prior_loss, depth[keep], ids[keep], heights[keep], focal[keep])
        assert_close(got[0], want[0])
        assert torch.isfinite(got[1]).all() and torch.isfinite(got[2]).all()
        assert (got[1][1] == 0).all() and (got[2][1] == 0).all()
        assert_close(got[1][keep], want[1])
        assert_close(got[2][keep], want[2])


def test_no_used_slot_gives_exact_zero(device, impl):
    g = torch.Generator().manual_seed(1)
    depth, ids, heights, focal = _inputs(2, 5, 5, 3, torch.float32, device, g)
    depth, heights = leaf(depth), leaf(heights)
    loss = desc_ops.instance_prior_loss(depth, ids, heights, focal, min_pixels=1000)
    assert loss.item() == 0.0
    gd, gh = torch.autograd.grad(loss, (depth, heights))
    assert (gd == 0).all() and (gh == 0).all()


def test_scalar_and_batch_focal_agree(device):
    g = torch.Generator().manual_seed(3)
    depth, ids, heights, _ = _inputs(2, 6, 8, 4, torch.float32, device, g)
    a = desc_ops.instance_prior_loss(depth, ids, heights, 35.0)
    b = desc_ops.instance_prior_loss(depth, ids, heights, torch.tensor([35.0, 35.0], device=device))
    c = desc_ops.instance_prior_loss(depth, ids, heights, torch.tensor(35.0, device=device))
    assert torch.equal(a, b) and torch.equal(a, c)


def _by_hand(depth, ids, heights, focal, min_pixels=1, max_depth=None, reduction="mean"):
    """§4 in float64 with Python loops: z_k = f h_k / (y_max - y_min + 1) over slots with
    at least min_pixels (and one) pixels; ids outside [0, K) are no instance."""
    d, K = depth[0, 0].double(), heights.shape[1]
    total, n = 0.0, 0
    for k in range(K):
        rows = (ids[0] == k).nonzero()[:, 0]
        if len(rows) == 0 or len(rows) < min_pixels:
            continue
        z = focal * float(heights[0, k]) / float(rows.max() - rows.min() + 1)
        z = min(max(z, 0.0), max_depth) if max_depth is not None else z
        total += float((d[ids[0] == k] - z).abs().sum())
        n += len(rows)
    return total / max(n, 1) if reduction == "mean" else total


@pytest.mark.parametrize("backend", ["reference", "extension"])
def test_prior_edges_by_hand_on_both_backends(backend):
    """One pixel in use (the mean divides by 1), an empty slot with min_pixels=0,
    ids equal to K and beyond with validate=False, a negative height clamped to 0,
    and the defaults (reduction mean, validation on)."""
    desc_ops.set_backend(backend)
    g = torch.Generator().manual_seed(3)
    depth = torch.rand(1, 1, 6, 7, generator=g, dtype=torch.float64) * 20 + 1
    ids = torch.full((1, 6, 7), -1)
    ids[0, 4, 5] = 1  # one pixel
    heights = torch.tensor([[1.5, 1.7, 1.6]], dtype=torch.float64)  # slots 0 and 2 empty
    loss = desc_ops.instance_prior_loss(depth, ids, heights, 50.0, min_pixels=0)
    assert loss.item() == pytest.approx(_by_hand(depth, ids, heights, 50.0), rel=1e-12)
    assert loss.item() == pytest.approx(abs(depth[0, 0, 4, 5].item() - 50.0 * 1.7), rel=1e-12)
    ids[0, :2, :3] = 0
    ids[0, 2:4, 6] = 2  # K - 1, where an id of K would land if it were clamped into range
    ids[0, 5, :] = 3  # = K
    ids[0, 3, 0] = 9
    out = desc_ops.instance_prior_loss(depth, ids, heights, 50.0, validate=False)
    assert out.item() == pytest.approx(_by_hand(depth, ids, heights, 50.0), rel=1e-12)
    with pytest.raises(ValueError, match=r"instance_ids must be -1 \(no instance\) or a slot in \[0, 3\)"):
        desc_ops.instance_prior_loss(depth, ids, heights, 50.0)  # validation is on by default
    ops = reference if backend == "reference" else desc_ops  # the reference's own defaults too
    with pytest.raises(ValueError, match=r"instance_ids must be -1 \(no instance\) or a slot in \[0, 3\)"):
        ops.instance_prior_loss(depth, ids, heights, 50.0)
    ids[ids >= 3] = -1
    assert torch.equal(ops.instance_prior_loss(depth, ids, heights, 50.0),
                       ops.instance_prior_loss(depth, ids, heights, 50.0, reduction="mean"))
    negative = heights * torch.tensor([[-1.0, 1.0, 1.0]], dtype=torch.float64)
    clamped = desc_ops.instance_prior_loss(depth, ids, negative, 50.0, max_depth=30.0, reduction="sum")
    assert clamped.item() == pytest.approx(_by_hand(depth, ids, negative, 50.0, max_depth=30.0, reduction="sum"),
                                           rel=1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_reference_prior_accumulates_half_precision_in_float32(dtype):
    g = torch.Generator().manual_seed(4)
    depth = torch.rand(1, 1, 64, 64, generator=g) * 20 + 1
    ids = torch.randint(-1, 4, (1, 64, 64), generator=g)
    heights = torch.rand(1, 4, generator=g) + 1
    exact = reference.instance_prior_loss(depth.double(), ids, heights.double(), 30.0, reduction="sum")
    half = reference.instance_prior_loss(depth.to(dtype), ids, heights.to(dtype), 30.0, reduction="sum")
    # Inputs and the result rounded to the dtype; a sum of 4096 terms in the dtype itself is off by far more.
    assert half.dtype == dtype and half.double().item() == pytest.approx(exact.item(), rel=2e-2)


def test_instance_ids_with_a_channel_axis_are_taken_as_maps(impl):
    g = torch.Generator().manual_seed(8)
    depth = torch.rand(2, 1, 4, 5, generator=g) + 1
    ids = torch.randint(-1, 2, (2, 4, 5), generator=g)
    heights = torch.rand(2, 2, generator=g) + 1
    assert torch.equal(desc_ops.instance_prior_loss(depth, ids[:, None], heights, 20.0),
                       desc_ops.instance_prior_loss(depth, ids, heights, 20.0))
    for bad, shape in ((ids[:, None].expand(2, 2, 4, 5), r"\(2, 2, 4, 5\)"), (ids[:, None, None], r"\(2, 1, 1, 4, 5\)")):
        with pytest.raises(ValueError, match=rf"^instance_ids must have shape \(2, 4, 5\), got shape {shape}"):
            desc_ops.instance_prior_loss(depth, bad, heights, 20.0)
    with pytest.raises(ValueError, match=r"^instance_ids must be a torch.Tensor, got list$"):
        desc_ops.instance_prior_loss(depth, [[0]], heights, 20.0)


def test_prior_argument_errors_and_limits(impl):
    depth = torch.rand(1, 1, 3, 4) + 1
    ids = torch.zeros(1, 3, 4, dtype=torch.long)
    heights = torch.ones(1, 1)
    with pytest.raises(ValueError, match=r"^depth must have shape \(B, 1, H, W\) or \(B, H, W\), got shape "):
        desc_ops.instance_prior_loss(depth[:, :, None], ids, heights, 10.0)
    with pytest.raises(ValueError, match=r"^heights must be a torch.Tensor, got list$"):
        desc_ops.instance_prior_loss(depth, ids, [[1.0]], 10.0)
    with pytest.raises(ValueError, match=r"^max_depth must be a real number, got 'far'$"):
        desc_ops.instance_prior_loss(depth, ids, heights, 10.0, max_depth="far")
    with pytest.raises(ValueError, match=r"^depth is empty \(shape \(0, 1, 3, 4\) and dtype torch.float32\): "
                                         r"reduction 'sum' needs pixels$"):
        desc_ops.instance_prior_loss(depth[:0], ids[:0], heights[:0], 10.0, reduction="sum")
    # max_depth 0 and below a metre are limits like any other: every pseudo-depth clamps to them.
    for limit in (0.0, 0.5):
        loss = desc_ops.instance_prior_loss(depth, ids, heights, 10.0, max_depth=limit)
        assert loss.item() == pytest.approx((depth - limit).abs().mean().item(), rel=1e-6)
    # float64 heights with float32 depth: cast to float32, the result float32.
    out = desc_ops.instance_prior_loss(depth, ids, heights.double() * 1.3, 10.0)
    assert out.dtype == torch.float32 and torch.equal(out, desc_ops.instance_prior_loss(depth, ids, heights * 1.3, 10.0))
