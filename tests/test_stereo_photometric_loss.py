"""stereo_photometric_loss (docs/ops.md §6)."""
import pytest
import torch
import torch.nn.functional as F

import desc_ops
from desc_ops import reference

from helpers import assert_close, leaf, maybe_noncontiguous, seed


def _inputs(B, C, H, W, dtype, device, *, contiguous=True, fb_scale=8.0, generator=None):
    g = generator or torch.Generator().manual_seed(seed(B, C, H, W))
    depth = (torch.rand(B, 1, H, W, generator=g, dtype=torch.float64) * 9 + 1).to(device, dtype)
    image = torch.rand(B, C, H, W, generator=g).to(device, dtype)
    other = torch.rand(B, C, H, W, generator=g).to(device, dtype)
    fb = (torch.rand(B, generator=g, dtype=torch.float64) * fb_scale).to(device)
    return (maybe_noncontiguous(depth, contiguous), maybe_noncontiguous(image, contiguous),
            maybe_noncontiguous(other, contiguous), fb)


def _both(depth, image, other, fb, upstream, **options):
    """Loss and depth gradient of the kernels and of the reference."""
    results = []
    for fn in (desc_ops.stereo_photometric_loss, reference.stereo_photometric_loss):
        d = leaf(depth)
        loss = fn(d, image, other, fb, **options)
        (grad,) = torch.autograd.grad(loss, d, upstream)
        results.append((loss, grad))
    return results


@pytest.mark.parametrize("fb", [0.0, -6.5, 3.0, 1e4, torch.tensor([2.5, -40.0, 1e9])])
def test_disparities_zero_negative_and_leaving_the_image(device, fb):
    """Zero disparity (warped = image_other), the other direction, a whole
    image's width and more (samples of zeros, no gradient), per image."""
    depth, image, other, _ = _inputs(3, 3, 6, 11, torch.float64, device)
    if torch.is_tensor(fb):
        fb = fb.to(device, torch.float64)
    for ssim in ("valid", "reflect"):
        (a, ga), (b, gb) = _both(depth, image, other, fb, torch.tensor(1.0, dtype=torch.float64, device=device),
                                 ssim=ssim)
        assert_close(a, b)
        assert_close(ga, gb)
    if not torch.is_tensor(fb) and fb >= 1e4:
        # Every sample is outside: the warped image is 0 and nothing moves it.
        want = reference.stereo_photometric_loss(depth, image, torch.zeros_like(other), 0.0)
        d = leaf(depth)
        loss = desc_ops.stereo_photometric_loss(d, image, other, fb)
        assert_close(loss, want)
        assert (torch.autograd.grad(loss, d)[0] == 0).all()


def test_identical_views_give_zero(device, impl):
    image = torch.rand(2, 3, 5, 8, dtype=torch.float64, device=device)
    depth = torch.rand(2, 1, 5, 8, dtype=torch.float64, device=device) + 1
    for ssim in ("valid", "reflect"):
        assert desc_ops.stereo_photometric_loss(depth, image, image, 0.0, ssim=ssim).item() == pytest.approx(0, abs=1e-12)
        constant = torch.full_like(image, 0.3)
        assert desc_ops.stereo_photometric_loss(depth, constant, constant, 0.0, ssim=ssim).item() == \
            pytest.approx(0, abs=1e-12)


@pytest.mark.parametrize("disparity", [3.0, 2.25])
def test_a_shifted_view_with_its_depth_gives_zero_away_from_the_border(device, impl, disparity):
    """image_other(x) = image(x + d) with depth = fb / d: warped = image for x >= d
    (to the left, samples of the zero border). The image is linear along x, so
    linear interpolation is exact at fractional d too."""
    H, W, fb = 6, 20, 12.0
    x = torch.arange(W, dtype=torch.float64)
    rows = torch.rand(1, 3, H, 1, dtype=torch.float64) * 0.5
    slope = torch.rand(1, 3, H, 1, dtype=torch.float64) * 0.02
    image = (rows + slope * x).to(device)
    other = (rows + slope * (x + disparity)).to(device)
    depth = torch.full((1, 1, H, W), fb / disparity, dtype=torch.float64, device=device)
    for ssim in ("valid", "reflect"):
        m = desc_ops.stereo_photometric_loss(depth, image, other, fb, ssim=ssim, reduction="none")
        start = int(disparity) + 2  # the SSIM windows of these columns hold no border sample
        assert m[..., start:].abs().max().item() < 1e-7  # the 1e-6 added to depth moves samples by ~1e-7 px
        assert m[..., 0].min().item() > 1e-3


def test_bright_pixel_gradient_sign(device, impl):
    """One bright pixel, seen at column 10 in the image and 7 in the other
    view (true disparity 3); a depth whose disparity is 2.5 samples it half:
    a nearer depth (larger disparity) lowers the error, so d loss / d depth
    at column 10 is positive; a disparity of 3.5 overshoots: negative."""
    W, fb = 16, 10.0
    image = torch.zeros(1, 1, 3, W, dtype=torch.float64, device=device)
    other = torch.zeros_like(image)
    image[..., 10] = 1.0
    other[..., 7] = 1.0
    for disparity, sign in ((2.5, 1.0), (3.5, -1.0)):
        d = torch.full((1, 1, 3, W), 100.0, dtype=torch.float64, device=device)
        d[..., 10] = fb / disparity
        d.requires_grad_(True)
        loss = desc_ops.stereo_photometric_loss(d, image, other, fb, alpha=0.0)
        (grad,) = torch.autograd.grad(loss, d)
        assert (grad[0, 0, :, 10] * sign > 0).all()


def test_depth_rule_at_zero_negative_and_non_finite(device, impl):
    """z = max(depth, 0) + 1e-6: a negative depth is depth 0 (a sample far
    outside, no gradient), +inf is disparity 0, NaN gives NaN."""
    depth, image, other, _ = _inputs(1, 3, 5, 9, torch.float64, device)
    fb = 4.0
    neg, zero = depth.clone(), depth.clone()
    neg[..., 2, 4], zero[..., 2, 4] = -3.0, 0.0
    assert_close(desc_ops.stereo_photometric_loss(neg, image, other, fb, reduction="none"),
                 desc_ops.stereo_photometric_loss(zero, image, other, fb, reduction="none"))
    d = leaf(neg)
    (grad,) = torch.autograd.grad(desc_ops.stereo_photometric_loss(d, image, other, fb), d)
    assert grad[..., 2, 4].item() == 0
    far = depth.clone()
    far[..., 2, 4] = float("inf")
    m = desc_ops.stereo_photometric_loss(far, image, other, fb, reduction="none", alpha=0.0)
    assert m[..., 2, 4].item() == pytest.approx((image[0, :, 2, 4] - other[0, :, 2, 4]).abs().mean().item())
    nan = depth.clone()
    nan[..., 2, 4] = float("nan")
    assert torch.isnan(desc_ops.stereo_photometric_loss(nan, image, other, fb))


# ------------------------------------------------- independent transcriptions


def _official_sampler(images, x_offset):
    """alopezgit/DESC utils/bilinear_sampler.py, bilinear_sampler_1d_h with
    wrap_mode 'border' (the images zero-padded by one pixel, the position
    clamped to the padded range), transcribed in plain torch."""
    B, C, H, W = images.shape
    padded = F.pad(images, (1, 1, 1, 1))
    x = torch.arange(W, dtype=images.dtype, device=images.device).view(1, 1, W).expand(B, H, W) + 1
    y = torch.arange(H, device=images.device).view(1, H, 1).expand(B, H, W) + 1
    x = (x + x_offset.view(B, H, W) * W).clamp(0, W + 1)
    x0 = torch.floor(x)
    x1 = (x0 + 1).clamp(max=W + 1)
    flat = padded.reshape(B, C, -1)
    base = (y * (W + 2)).view(B, 1, -1)
    pix_l = flat.gather(2, (base + x0.long().view(B, 1, -1)).expand(B, C, -1))
    pix_r = flat.gather(2, (base + x1.long().view(B, 1, -1)).expand(B, C, -1))
    out = (x1 - x).view(B, 1, -1) * pix_l + (x - x0).view(B, 1, -1) * pix_r
    return out.view(B, C, H, W)


def _official_ssim(x, y):
    """networks.ReconLoss.ssim: 3x3 average pools, no padding."""
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mu_x, mu_y = F.avg_pool2d(x, 3, 1), F.avg_pool2d(y, 3, 1)
    sigma_x = F.avg_pool2d(x * x, 3, 1) - mu_x.pow(2)
    sigma_y = F.avg_pool2d(y * y, 3, 1) - mu_y.pow(2)
    sigma_xy = F.avg_pool2d(x * y, 3, 1) - mu_x * mu_y
    n = (2 * mu_x * mu_y + c1) * (2 * sigma_xy + c2)
    d = (mu_x.pow(2) + mu_y.pow(2) + c1) * (sigma_x + sigma_y + c2)
    return torch.clamp((1 - n / d) / 2, 0, 1)


def _official_stereo_loss(depth, left, right, fb):
    disp = fb.view(-1, 1, 1, 1) / (depth + 1e-6) / depth.shape[3]
    warped = _official_sampler(right, -disp)
    return torch.mean(0.85 * _official_ssim(left, warped)) + torch.mean(0.15 * torch.abs(left - warped))


def _monodepth2_reprojection(pred, target):
    """monodepth2 layers.SSIM (reflection padding) and compute_reprojection_loss."""
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    x, y = F.pad(pred, (1, 1, 1, 1), mode="reflect"), F.pad(target, (1, 1, 1, 1), mode="reflect")
    mu_x, mu_y = F.avg_pool2d(x, 3, 1), F.avg_pool2d(y, 3, 1)
    sigma_x = F.avg_pool2d(x ** 2, 3, 1) - mu_x ** 2
    sigma_y = F.avg_pool2d(y ** 2, 3, 1) - mu_y ** 2
    sigma_xy = F.avg_pool2d(x * y, 3, 1) - mu_x * mu_y
    n = (2 * mu_x * mu_y + c1) * (2 * sigma_xy + c2)
    d = (mu_x ** 2 + mu_y ** 2 + c1) * (sigma_x + sigma_y + c2)
    ssim = torch.clamp((1 - n / d) / 2, 0, 1).mean(1, True)
    return 0.85 * ssim + 0.15 * (target - pred).abs().mean(1, True)


@pytest.mark.parametrize("shape", [(2, 3, 8, 24), (1, 3, 3, 3), (2, 3, 13, 31)])
def test_matches_the_official_stereo_loss(device, shape):
    B, C, H, W = shape
    g = torch.Generator().manual_seed(seed(shape, "official"))
    depth, image, other, _ = _inputs(B, C, H, W, torch.float64, device, generator=g)
    depth[0, 0, 0, 0] = 0.0  # the official + 1e-6 at depth 0
    fb = (torch.rand(B, generator=g, dtype=torch.float64) * 3 * W).to(device)  # samples in and out of the image
    grads = []
    for fn in (lambda d: desc_ops.stereo_photometric_loss(d, image, other, fb),
               lambda d: _official_stereo_loss(d, image, other, fb)):
        d = leaf(depth)
        loss = fn(d)
        grads.append((loss, torch.autograd.grad(loss, d)[0]))
    assert_close(grads[0][0], grads[1][0])
    assert_close(grads[0][1], grads[1][1])


def test_matches_monodepth2_with_reflection(device):
    """ssim="reflect", reduction="none" is monodepth2's per-pixel reprojection
    loss of the warped image; the warp against grid_sample (zeros padding,
    align_corners=True: pixel coordinates)."""
    B, C, H, W = 2, 3, 9, 17
    depth, image, other, _ = _inputs(B, C, H, W, torch.float64, device)
    fb = torch.tensor([5.0, -3.5], dtype=torch.float64, device=device)
    u = torch.arange(W, dtype=torch.float64, device=device) - fb.view(B, 1, 1, 1) / (depth + 1e-6)
    v = torch.arange(H, dtype=torch.float64, device=device).view(1, 1, H, 1).expand_as(u)
    grid = torch.stack((2 * u / (W - 1) - 1, 2 * v / (H - 1) - 1), dim=-1).squeeze(1)
    warped = F.grid_sample(other, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    got = desc_ops.stereo_photometric_loss(depth, image, other, fb, ssim="reflect", reduction="none")
    assert_close(got, _monodepth2_reprojection(warped, image))
