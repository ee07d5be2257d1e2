"""The DESCLoss module: its terms, defaults and options, its scales (finest
first, coarse scales reading labels, edges and image at their size), the
mistakes it names and the image range it takes."""
import pytest
import torch
from torch.nn.functional import avg_pool2d

import desc_ops

from helpers import _batch, assert_close, leaf


def _one_pixel_slot(ids):
    """`ids` with instance 0 of image 0 cut down to one pixel (so min_pixels 1
    and 2 differ), and that pixel's own slot otherwise unchanged."""
    ids = ids.clone()
    ids[0][ids[0] == 0] = -1
    ids[0, 0, 0] = 0
    return ids


def _block_labels(B=2, H=6, W=7):
    """Labels 0, 1, 2 in vertical bands: pixels inside a band are no boundary, so
    that the boundary weight acts on the mean (with random labels every pixel
    is a boundary, and a constant factor cancels in the weighted mean)."""
    return (torch.arange(W) * 3 // W).expand(B, H, W).clone()


def test_desc_loss_combines_terms(device):
    x = _batch(device)
    loss_fn = desc_ops.DESCLoss(consistency_weight=2.0, instance_weight=0.5, smoothness_weight=0.1,
                                edge_weight=0.7, max_depth=60.0)
    d = leaf(x["depth"])
    out = loss_fn(d, depth_sem=x["depth_sem"], semantic=x["logits"], image=x["image"], instance_ids=x["ids"],
                  heights=x["heights"], focal=30.0)
    cons = desc_ops.semantic_consistency_loss(x["depth"], x["depth_sem"], x["logits"], image=x["image"],
                                              edge_weight=0.7)
    prior = desc_ops.instance_prior_loss(x["depth"], x["ids"], x["heights"], 30.0, max_depth=60.0)
    smooth = desc_ops.smoothness_loss(x["depth"], x["image"])
    assert set(out.terms) == {"consistency", "instance_prior", "smoothness"}
    assert torch.equal(out.terms["consistency"], cons)
    assert torch.equal(out.terms["instance_prior"], prior)
    assert_close(out.total, 2.0 * cons + 0.5 * prior + 0.1 * smooth)
    out.total.backward()
    assert d.grad is not None and torch.isfinite(d.grad).all()

    unweighted = desc_ops.DESCLoss(instance_weight=0, smoothness_weight=0, confidence=False)
    out = unweighted(x["depth"], depth_sem=x["depth_sem"])
    assert set(out.terms) == {"consistency"}
    assert_close(out.total, (x["depth"] - x["depth_sem"]).abs().mean())
    with pytest.raises(ValueError, match="semantic"):
        desc_ops.DESCLoss(instance_weight=0, smoothness_weight=0)(x["depth"], depth_sem=x["depth_sem"])
    with pytest.raises(ValueError, match="instance_ids"):
        desc_ops.DESCLoss(consistency_weight=0, smoothness_weight=0)(x["depth"])
    # validate reaches the instance term: an out-of-range id raises, or is no instance.
    bad_ids = torch.full_like(x["ids"], x["heights"].shape[1])
    prior_only = dict(consistency_weight=0, smoothness_weight=0)
    with pytest.raises(ValueError, match="instance_ids must be -1"):
        desc_ops.DESCLoss(**prior_only)(x["depth"], instance_ids=bad_ids, heights=x["heights"], focal=30.0)
    out = desc_ops.DESCLoss(**prior_only, validate=False)(x["depth"], instance_ids=bad_ids, heights=x["heights"],
                                                         focal=30.0)
    assert out.total.item() == 0.0


def test_desc_loss_defaults_are_the_documented_ones():
    """DESCLoss() is 1 x the confidence-weighted consistency (edge weight 1,
    boundary weight 0.5, ignore index -1) + 1 x the instance prior (min_pixels 1,
    no clamp, ids validated) + 0.01 x the smoothness; and the modules' defaults
    are the functions'."""
    x = _batch("cpu", torch.float64, seed=5)
    ids = _one_pixel_slot(x["ids"])
    labels = _block_labels()
    labels[0, 0, :] = -1  # an ignored row, so that the ignore index acts
    out = desc_ops.DESCLoss()(x["depth"], depth_sem=x["depth_sem"], semantic=labels, image=x["image"],
                              instance_ids=ids, heights=x["heights"], focal=x["focal"])
    cons = desc_ops.semantic_consistency_loss(x["depth"], x["depth_sem"], labels, image=x["image"], edge_weight=1.0,
                                              boundary_weight=0.5, ignore_index=-1)
    prior = desc_ops.instance_prior_loss(x["depth"], ids, x["heights"], x["focal"], min_pixels=1, max_depth=None)
    smooth = desc_ops.smoothness_loss(x["depth"], x["image"])
    assert torch.equal(out.terms["consistency"], cons)
    assert torch.equal(out.terms["instance_prior"], prior)
    assert torch.equal(out.terms["smoothness"], smooth)
    assert_close(out.total, cons + prior + 0.01 * smooth)
    assert not torch.equal(prior, desc_ops.instance_prior_loss(x["depth"], ids, x["heights"], x["focal"],
                                                               min_pixels=2))
    assert not torch.equal(cons, desc_ops.semantic_consistency_loss(x["depth"], x["depth_sem"], labels,
                                                                     image=x["image"], boundary_weight=1.5))
    assert torch.equal(desc_ops.SemanticConsistencyLoss()(x["depth"], x["depth_sem"], labels, image=x["image"]), cons)
    assert torch.equal(desc_ops.InstancePriorLoss()(x["depth"], ids, x["heights"], x["focal"]), prior)
    bad_ids = torch.full_like(ids, x["heights"].shape[1])
    with pytest.raises(ValueError, match="instance_ids must be -1"):
        desc_ops.InstancePriorLoss()(x["depth"], bad_ids, x["heights"], x["focal"])


@pytest.mark.parametrize("option, value", [("edge_weight", 3.0), ("boundary_weight", 0.2), ("ignore_index", 0),
                                           ("ignore_classes", [1]), ("min_pixels", 2), ("max_depth", 1.5)])
def test_desc_loss_passes_each_option_to_its_term(option, value):
    """Each option of DESCLoss reaches the term it belongs to: that term equals
    its function with the option, and differs from the default's."""
    x = _batch("cpu", torch.float64, seed=5)
    ids = _one_pixel_slot(x["ids"])
    inputs = dict(depth_sem=x["depth_sem"], semantic=_block_labels(), edges=x["edges"], instance_ids=ids,
                  heights=x["heights"], focal=x["focal"], image=x["image"])
    got = desc_ops.DESCLoss(**{option: value})(x["depth"], **inputs).terms
    default = desc_ops.DESCLoss()(x["depth"], **inputs).terms
    if option in ("min_pixels", "max_depth"):
        name = "instance_prior"
        want = desc_ops.instance_prior_loss(x["depth"], ids, x["heights"], x["focal"], **{option: value})
    else:
        name = "consistency"
        want = desc_ops.semantic_consistency_loss(x["depth"], x["depth_sem"], _block_labels(), edges=x["edges"],
                                                  **{option: value})
    assert torch.equal(got[name], want)
    assert not torch.equal(got[name], default[name])


@pytest.mark.parametrize("missing", ["instance_ids", "heights", "focal"])
def test_desc_loss_instance_term_needs_all_three_inputs(missing):
    x = _batch("cpu")
    inputs = dict(instance_ids=x["ids"], heights=x["heights"], focal=x["focal"])
    inputs.pop(missing)
    with pytest.raises(ValueError, match=r"^DESCLoss: instance_ids, heights and focal are needed for the instance "
                                         r"term$"):
        desc_ops.DESCLoss(consistency_weight=0, smoothness_weight=0)(x["depth"], **inputs)


def test_desc_loss_scales_with_edges_and_a_scale_left_out():
    """Three scales; the consistency weight 0 at scale 0 skips that scale only;
    edges, given, are taken at each scale (nearest) and the image is then not
    used for the confidence."""
    g = torch.Generator().manual_seed(21)
    full = (8, 12)
    depths = [torch.rand(2, 1, 8 // f, 12 // f, generator=g) + 0.5 for f in (1, 2, 4)]
    sems = [torch.rand(2, 1, 8 // f, 12 // f, generator=g) + 0.5 for f in (1, 2, 4)]
    labels = torch.randint(0, 3, (2, *full), generator=g)
    edges = torch.rand(2, 1, *full, generator=g)
    image = torch.rand(2, 3, *full, generator=g)
    loss = desc_ops.DESCLoss(consistency_weight=[0.0, 1.0, 2.0], instance_weight=0, smoothness_weight=0)
    out = loss(depths, depth_sem=sems, semantic=labels, edges=edges, image=image)
    want = 0.0
    for i, f in ((1, 2), (2, 4)):
        near = (slice(None), slice(None), slice(f // 2, None, f), slice(f // 2, None, f))
        term = desc_ops.semantic_consistency_loss(depths[i], sems[i], labels[:, None][near][:, 0], edges=edges[near])
        assert torch.equal(out.terms[f"consistency@{i}"], term)
        want = want + i * term
    assert "consistency" not in out.terms and torch.allclose(out.total, want)


@pytest.mark.parametrize("case, message", [
    ("no depth_sem", r"^DESCLoss: depth_sem is needed for the consistency term$"),
    ("scales differ", r"^DESCLoss: depth has 2 scale\(s\) but depth_sem has 1$"),
    ("no semantic", r"^DESCLoss: semantic is needed for the confidence-weighted consistency term$"),
    ("width does not divide", r"^DESCLoss: a depth scale of 4x5 does not divide the full resolution 8x12$"),
    ("too many weights", r"^DESCLoss: consistency_weight has 3 per-scale weights but depth has 2 scale\(s\)$"),
    ("coarsest first", r"^DESCLoss: the scales of depth must run finest first, got 4x6 \(scale 0\) before 8x12 "
                       r"\(scale 1\): reverse the sequence$"),
    ("coarsest first in depth_sem", r"^DESCLoss: the scales of depth_sem must run finest first"),
    ("a dict", r"^DESCLoss: depth must be a tensor or a sequence of tensors \(finest scale first\), got a dict; "
               r"pass its maps as a list"),
    ("an empty list", r"^DESCLoss: depth must be a tensor or a non-empty sequence of tensors"),
])
def test_desc_loss_mistakes_are_named(case, message):
    d, s = [torch.rand(1, 1, 8, 12), torch.rand(1, 1, 4, 6)], [torch.rand(1, 1, 8, 12), torch.rand(1, 1, 4, 6)]
    labels = torch.zeros(1, 8, 12, dtype=torch.long)
    loss = desc_ops.DESCLoss(instance_weight=0, smoothness_weight=0,
                             consistency_weight=[1.0, 1.0, 1.0] if case == "too many weights" else 1.0)
    kwargs = dict(depth_sem=s, semantic=labels)
    if case == "no depth_sem":
        kwargs.pop("depth_sem")
    elif case == "scales differ":
        kwargs["depth_sem"] = s[:1]
    elif case == "no semantic":
        kwargs.pop("semantic")
    elif case == "width does not divide":
        d, kwargs["depth_sem"] = [d[0], torch.rand(1, 1, 4, 5)], [s[0], torch.rand(1, 1, 4, 5)]
    elif case == "coarsest first":
        d, kwargs["depth_sem"] = d[::-1], s[::-1]
    elif case == "coarsest first in depth_sem":
        kwargs["depth_sem"] = s[::-1]
    elif case == "a dict":
        d = {("disp", 0): d[0], ("disp", 1): d[1]}
    elif case == "an empty list":
        d = []
    with pytest.raises(ValueError, match=message):
        loss(d, **kwargs)


def test_desc_loss_takes_any_sequence_of_scales():
    d, s = (torch.rand(1, 1, 8, 12) + 1, torch.rand(1, 1, 4, 6) + 1), (torch.rand(1, 1, 8, 12), torch.rand(1, 1, 4, 6))
    loss = desc_ops.DESCLoss(instance_weight=0, smoothness_weight=0, confidence=False)
    from_tuples = loss(d, depth_sem=s).total
    assert torch.equal(from_tuples, loss(list(d), depth_sem=list(s)).total)


def test_desc_loss_with_every_weight_zero_backpropagates():
    d = leaf(torch.rand(2, 1, 4, 6) + 1)
    out = desc_ops.DESCLoss(consistency_weight=0, instance_weight=0, smoothness_weight=0)(d)
    assert out.total.item() == 0 and out.terms == {}
    out.total.backward()
    assert torch.equal(d.grad, torch.zeros_like(d))


@pytest.mark.parametrize("scale, fails", [(1.0, False), (1.015, False), (255.0, True), (-1.0, True)])
def test_desc_loss_refuses_an_image_outside_0_1(scale, fails):
    """An 8-bit or normalised image changes the edge weights silently; within
    rounding and interpolation overshoot of [0, 1] it is taken. validate=False skips the check."""
    d = torch.rand(1, 1, 4, 6) + 1
    image = torch.rand(1, 3, 4, 6) * 0.5 + 0.5
    image[0, 0, 0, 0] = 1.0
    image = image * scale
    loss = desc_ops.DESCLoss(consistency_weight=0, instance_weight=0)
    if fails:
        with pytest.raises(ValueError, match=r"^DESCLoss: image must be RGB in \[0, 1\], got values in \["):
            loss(d, image=image)
    else:
        loss(d, image=image)
    desc_ops.DESCLoss(consistency_weight=0, instance_weight=0, validate=False)(d, image=image)


def test_desc_loss_image_range_reaches_the_smoothness_as_given_and_the_confidence_map_as_0_1():
    """With image_range=(-1, 1) the smoothness term reads the image as given (edge
    weights of the [-1, 1] image), the confidence map the [0, 1] image, and the
    check takes [-1, 1] (with 2% of slack) and refuses the [0, 255] one."""
    g = torch.Generator().manual_seed(3)
    d, s = torch.rand(2, 1, 8, 12, generator=g) * 80, torch.rand(2, 1, 8, 12, generator=g) * 80
    semantic, image = torch.randint(0, 4, (2, 8, 12), generator=g), torch.rand(2, 3, 8, 12, generator=g)
    image[0, 0, 0, :2] = torch.tensor([0.0, 1.0])
    symmetric = image * 2 - 1
    out = desc_ops.DESCLoss(instance_weight=0, image_range=(-1, 1))(d, depth_sem=s, semantic=semantic,
                                                                     image=symmetric * 1.015)
    unit = desc_ops.DESCLoss(instance_weight=0)(d, depth_sem=s, semantic=semantic, image=image * 1.015 - 0.0075)
    torch.testing.assert_close(out.terms["smoothness"], desc_ops.smoothness_loss(d, symmetric * 1.015))
    assert not torch.allclose(out.terms["smoothness"], unit.terms["smoothness"], rtol=1e-3)
    torch.testing.assert_close(out.terms["consistency"], unit.terms["consistency"], rtol=1e-5, atol=0)
    with pytest.raises(ValueError, match=r"^DESCLoss: image must be RGB in \[-1, 1\], got values in \[0, 255\]"):
        desc_ops.DESCLoss(instance_weight=0, image_range=(-1, 1))(d, depth_sem=s, semantic=semantic,
                                                                   image=image * 255)
    with pytest.raises(ValueError, match="image_range must be finite with lo < hi"):
        desc_ops.DESCLoss(image_range=(1, -1))


def test_desc_loss_weights_past_the_given_ones_are_zero():
    d, s = [torch.rand(1, 1, 4, 4) + 0.5, torch.rand(1, 1, 2, 2) + 0.5], [torch.rand(1, 1, 4, 4), torch.rand(1, 1, 2, 2)]
    out = desc_ops.DESCLoss(consistency_weight=[1.0], instance_weight=0, smoothness_weight=0, confidence=False)(
        d, depth_sem=s)
    assert set(out.terms) == {"consistency"}


def test_desc_loss_at_coarse_scales_uses_labels_and_image_of_that_scale():
    """Scale i reads the full-resolution label nearest to each pixel's centre
    and the image area-averaged to its size, with its own weights."""
    g = torch.Generator().manual_seed(0)
    semantic, image = torch.randint(-1, 5, (2, 16, 32), generator=g), torch.rand(2, 3, 16, 32, generator=g)
    shapes = [(2, 1, 16, 32), (2, 1, 8, 16), (2, 1, 4, 8)]
    d = [torch.rand(shape, generator=g) * 80 for shape in shapes]
    d_sem = [torch.rand(shape, generator=g) * 80 for shape in shapes]
    labels = [semantic, semantic[:, 1::2, 1::2].contiguous(), semantic[:, 2::4, 2::4].contiguous()]
    images = [image, avg_pool2d(image, 2), avg_pool2d(image, 4)]
    cons = [desc_ops.semantic_consistency_loss(d[i], d_sem[i], labels[i], image=images[i]) for i in range(3)]
    smooth = [desc_ops.smoothness_loss(d[i], images[i]) for i in range(3)]

    loss = desc_ops.DESCLoss(consistency_weight=[1.0, 0.5, 0.25], instance_weight=0.0,
                             smoothness_weight=[0.1, 0.05])  # no smoothness at scale 2
    out = loss(d, depth_sem=d_sem, semantic=semantic, image=image)
    assert set(out.terms) == {"consistency", "consistency@1", "consistency@2", "smoothness", "smoothness@1"}
    for i, name in enumerate(["consistency", "consistency@1", "consistency@2"]):
        assert torch.allclose(out.terms[name], cons[i], rtol=1e-5), name
    assert torch.allclose(out.weighted["consistency"], cons[0] + 0.5 * cons[1] + 0.25 * cons[2], rtol=1e-5)
    assert torch.allclose(out.weighted["smoothness"], 0.1 * smooth[0] + 0.05 * smooth[1], rtol=1e-5)
    assert torch.allclose(out.total, out.weighted["consistency"] + out.weighted["smoothness"], rtol=1e-6)

    plain = desc_ops.DESCLoss(instance_weight=0.0, smoothness_weight=0.0, confidence=False)(d, depth_sem=d_sem)
    assert torch.allclose(plain.total, sum((a - b).abs().mean() for a, b in zip(d, d_sem)), rtol=1e-5)
    with pytest.raises(ValueError, match="smoothness_weight has 4 per-scale weights"):
        desc_ops.DESCLoss(smoothness_weight=[1.0] * 4)(d, depth_sem=d_sem, semantic=semantic, image=image)


def test_desc_loss_passes_min_pixels_to_the_instance_prior(impl):
    """Two instances on a depth of 10 m, focal 10 px: 3 pixels over 3 rows with
    height 1.5 m (pseudo-depth 5 m, error 5) and 8 pixels over 4 rows with
    2.4 m (6 m, error 4). min_pixels=4 leaves out the first one."""
    ids = torch.full((1, 8, 8), -1)
    ids[0, 1:4, 1] = 0
    ids[0, 2:6, 4:6] = 1
    depth = torch.full((1, 1, 8, 8), 10.0)
    heights, focal = torch.tensor([[1.5, 2.4]]), torch.tensor([10.0])

    def prior(min_pixels):
        loss = desc_ops.DESCLoss(consistency_weight=0.0, smoothness_weight=0.0, instance_weight=1.0,
                                 min_pixels=min_pixels)
        out = loss(depth, instance_ids=ids, heights=heights, focal=focal)
        assert set(out.terms) == {"instance_prior"}
        return out.total.item()

    assert prior(1) == pytest.approx((3 * 5 + 8 * 4) / 11, rel=1e-6)
    assert prior(3) == pytest.approx((3 * 5 + 8 * 4) / 11, rel=1e-6)
    assert prior(4) == pytest.approx(4.0, rel=1e-6)
    assert prior(9) == 0.0  # no slot left
