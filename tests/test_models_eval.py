"""desc_train models and evaluation metrics."""
import math

import pytest
import torch

import desc_ops
from desc_train.evaluate import depth_metrics, frame_metrics, garg_crop_mask, mean_metrics
from desc_train.models import DepthUNet, HeightNet, instance_features, semantic_input


def test_unet_scales_and_range():
    net = DepthUNet(3, width=4)
    out = net(torch.rand(2, 3, 32, 64))
    assert [tuple(o.shape) for o in out] == [(2, 1, 32, 64), (2, 1, 16, 32), (2, 1, 8, 16), (2, 1, 4, 8)]
    assert all(((o >= 0) & (o <= 80)).all() for o in out)
    sum(o.mean() for o in out).backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
    with pytest.raises(ValueError, match="multiples of 16"):
        net(torch.rand(1, 3, 30, 64))


def test_depth_unet_has_the_documented_size_and_needs_multiples_of_16():
    """Width 88 gives 54.7 M parameters (README, the paper preset; the official
    UNetGenerator has 54.6 M); inputs must be multiples of 16 in both dimensions."""
    # Exactly: each block is conv (no bias), BatchNorm, ELU, twice; a dropped BatchNorm or an
    # added bias changes the count by thousands of parameters, not the rounded millions.
    assert sum(p.numel() for p in DepthUNet(3, 88).parameters()) == 54_735_388
    with pytest.raises(ValueError, match=r"multiples of 16, got \(32, 60\)"):  # the width too
        DepthUNet(3, 4)(torch.rand(1, 3, 32, 60))


def test_layers_of_a_block_and_of_g_h():
    """A U-Net block is (conv, BatchNorm, ELU) twice; G_h is an MLP with an ELU
    after each hidden layer."""
    from torch import nn
    from desc_train.models import _block

    assert [type(m) for m in _block(3, 8)] == [nn.Conv2d, nn.BatchNorm2d, nn.ELU] * 2
    assert [type(m) for m in HeightNet(15).net] == [nn.Linear, nn.ELU, nn.Linear, nn.ELU, nn.Linear]
    assert [(m.in_features, m.out_features) for m in HeightNet(15).net if isinstance(m, nn.Linear)] == \
        [(15, 64), (64, 64), (64, 1)]


def test_unet_depth_spans_zero_to_max_depth():
    """Each head maps to max_depth / 2 * (tanh + 1): saturated heads give 0 and max_depth."""
    torch.manual_seed(0)
    net = DepthUNet(3, width=4, max_depth=50.0).eval()
    x = torch.rand(1, 3, 32, 32)
    for bias, want in ((40.0, 50.0), (-40.0, 0.0)):
        with torch.no_grad():
            for head in net.heads:
                head.bias.fill_(bias)
            assert all(torch.allclose(o, torch.full_like(o, want)) for o in net(x))


def test_semantic_input_and_height_net():
    labels = torch.tensor([[[0, 1], [-1, 2]]])
    x = semantic_input(labels, 3, torch.ones(1, 1, 2, 2))
    assert x.shape == (1, 4, 2, 2)
    assert x[0, :3, 1, 0].sum() == 0 and x[0, 1, 0, 1] == 1 and (x[0, 3] == 1).all()
    ids = torch.full((2, 16, 16), -1)
    ids[0, 2:10, 3:5] = 0
    ids[1, 5:7, 1:9] = 1
    st = desc_ops.instance_stats(ids, 3)
    cls = torch.tensor([[5, -1, -1], [-1, 6, -1]])
    feats = instance_features(st, cls, 8, 16, 16)
    assert feats.shape == (2, 3, 15)
    assert (feats[0, 1:] == 0).all() and feats[0, 0, 5] == 1 and feats[0, 0, 8 + 4] == pytest.approx(8 / 16)
    heights = HeightNet(15)(feats)
    assert heights.shape == (2, 3) and (heights > 0).all()


def test_semantic_input_keeps_class_0_and_zeroes_ignored_pixels():
    labels = torch.tensor([[[0, 2], [-1, 1]]])
    edges = torch.tensor([[[[0.5, 0.0], [1.0, 0.25]]]])
    want = torch.zeros(1, 4, 2, 2)
    want[0, 0, 0, 0] = want[0, 2, 0, 1] = want[0, 1, 1, 1] = 1
    want[0, 3] = edges[0, 0]
    assert torch.equal(semantic_input(labels, 3, edges), want)


def test_instance_features_of_known_boxes():
    """Class one-hot, then y_min / H, y_max / H, x_min / W, x_max / W, rows / H, columns / W
    and the mask's fill of its box; a slot of class 0 counts, an empty or unclassed one is zeros."""
    ids = torch.full((1, 10, 20), -1)
    ids[0, 2:6, 4:10] = 0  # 4 rows x 6 columns, full
    ids[0, 7, 1:3] = 1  # 1 row x 2 columns
    ids[0, 8, 15] = 3  # pixels, but no class
    feats = instance_features(desc_ops.instance_stats(ids, 4), torch.tensor([[2, 0, 1, -1]]), 3, 10, 20)
    torch.testing.assert_close(feats[0, 0], torch.tensor([0, 0, 1, 2 / 10, 5 / 10, 4 / 20, 9 / 20, 4 / 10, 6 / 20, 1.0]))
    torch.testing.assert_close(feats[0, 1], torch.tensor([1, 0, 0, 7 / 10, 7 / 10, 1 / 20, 2 / 20, 1 / 10, 2 / 20, 1.0]))
    assert (feats[0, 2:] == 0).all()


def test_metrics_by_hand():
    gt = torch.tensor([[[[2.0, 4.0], [10.0, 0.0]]]])
    pred = torch.tensor([[[[2.0, 5.0], [8.0, 3.0]]]])
    m = depth_metrics(pred, gt)
    # valid: 2, 4, 10 (0 is no ground truth)
    assert m["abs_rel"] == pytest.approx((0 + 1 / 4 + 2 / 10) / 3)
    assert m["sq_rel"] == pytest.approx((0 + 1 / 4 + 4 / 10) / 3)
    assert m["rmse"] == pytest.approx(math.sqrt((0 + 1 + 4) / 3))
    assert m["rmse_log"] == pytest.approx(math.sqrt((0 + math.log(4 / 5) ** 2 + math.log(10 / 8) ** 2) / 3))
    assert m["a1"] == pytest.approx(1 / 3) and m["a2"] == 1 and m["a3"] == 1  # 5/4 = 10/8 = 1.25 is not < 1.25
    scaled = depth_metrics(pred * 3, gt, median_scaling=True)
    assert scaled["abs_rel"] == pytest.approx(depth_metrics(pred, gt, median_scaling=True)["abs_rel"], rel=1e-6)
    capped = depth_metrics(pred, gt, cap=(1.0, 5.0))
    assert capped["abs_rel"] == pytest.approx((0 + 1 / 4) / 2)  # 10 m is outside the 1-5 m cap
    with pytest.raises(ValueError, match="shape"):
        depth_metrics(pred, gt[..., :1])
    assert depth_metrics(pred[:, 0], gt[:, 0]) == m  # (B, H, W) as (B, 1, H, W)
    # The thresholds are strict at every power: ratios of exactly 1.25^2 and 1.25^3
    # (both exact in binary) count for the next threshold only.
    edge = depth_metrics(torch.tensor([[[[1.5625, 1.953125, 1.0]]]]), torch.ones(1, 1, 1, 3))
    assert (edge["a1"], edge["a2"], edge["a3"]) == pytest.approx((1 / 3, 1 / 3, 2 / 3))
    # The cap is open at both ends and clamps the predictions into it; a mask only
    # takes pixels away from those with ground truth.
    gt_cap = torch.tensor([[[[1.0, 5.0, 2.0, 4.0]]]])
    pred_cap = torch.tensor([[[[3.0, 3.0, 0.5, 9.0]]]])
    m = depth_metrics(pred_cap, gt_cap, cap=(1.0, 5.0))  # 1 and 5 m are outside; 0.5 -> 1, 9 -> 5
    assert m["abs_rel"] == pytest.approx((1 / 2 + 1 / 4) / 2) and m["rmse"] == pytest.approx(math.sqrt((1 + 1) / 2))
    holes = torch.tensor([[[[0.0, 2.0, 4.0]]]])
    masked = depth_metrics(torch.tensor([[[[1.0, 2.0, 2.0]]]]), holes, mask=torch.tensor([[[[True, False, True]]]]))
    assert masked["abs_rel"] == pytest.approx(0.5)  # only the 4 m pixel: the masked-in 0 has no ground truth
    with pytest.raises(ValueError, match=r"^crop must be None or one of \['cityscapes', 'garg'\], got 'eigen'$"):
        frame_metrics(pred[0, 0], gt[0, 0], crop="eigen")
    with pytest.raises(ValueError, match="^no image has valid ground truth within the cap$"):
        mean_metrics([])


def test_garg_crop():
    mask = garg_crop_mask(375, 1242)
    assert mask.sum() > 0 and not mask[0].any() and not mask[:, 0].any() and mask[200, 600]
    gt = torch.full((1, 1, 375, 1242), 10.0)
    pred = gt.clone()
    pred[..., :100, :] = 50.0  # outside the crop: ignored
    assert depth_metrics(pred, gt, crop="garg")["abs_rel"] == 0.0


def test_garg_crop_region_at_kitti_size():
    """At 375 x 1242 the crop is rows 153..370 (0.40810811 * 375 = 153.04,
    0.99189189 * 375 = 371.96) and columns 44..1196 (0.03594771 * 1242 = 44.65,
    0.96405229 * 1242 = 1197.35); Eigen's crop (rows 124..341) is not it."""
    expected = torch.zeros(375, 1242, dtype=torch.bool)
    expected[153:371, 44:1197] = True
    assert torch.equal(garg_crop_mask(375, 1242), expected)
    gt = torch.full((1, 1, 375, 1242), 10.0)
    for rows, cols, inside in [(slice(124, 153), slice(None), False),  # Eigen's rows above Garg's
                               (slice(342, 371), slice(None), True),  # Garg's rows below Eigen's
                               (slice(371, None), slice(None), False),
                               (slice(None), slice(0, 44), False), (slice(None), slice(1197, None), False),
                               (slice(153, 154), slice(44, 45), True), (slice(370, 371), slice(1196, 1197), True)]:
        pred = gt.clone()
        pred[..., rows, cols] = 20.0
        assert (depth_metrics(pred, gt, crop="garg")["abs_rel"] > 0) == inside, (rows, cols)


def test_mask_restricts_the_evaluated_pixels():
    g = torch.Generator().manual_seed(3)
    gt = torch.rand(2, 1, 8, 12, generator=g) * 70 + 1
    pred = gt * (1 + 0.3 * torch.rand(2, 1, 8, 12, generator=g))
    mask = torch.zeros(2, 8, 12, dtype=torch.bool)
    mask[0, 2:5, 3:9] = True  # the second image has no pixel left: skipped
    expected = ((pred[0, 0].clamp(max=80.0) - gt[0, 0]).abs() / gt[0, 0])[mask[0]].mean().item()  # cap clamps
    assert depth_metrics(pred, gt, mask=mask)["abs_rel"] == pytest.approx(expected, rel=1e-6)
    assert depth_metrics(pred, gt, mask=mask)["abs_rel"] != pytest.approx(depth_metrics(pred, gt)["abs_rel"])
