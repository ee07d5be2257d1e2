"""Every desc_ops operator in plain PyTorch: the executable form of the contract
(`docs/ops.md`). Same signatures as the public functions of
``desc_ops``; tests and benchmarks compare the kernels against these, and
``DESC_OPS_BACKEND=reference`` makes ``desc_ops`` run them.

Computation is in float32 (float64 for float64 inputs) whatever the input
dtype, and the result is cast back, as the kernels do. Everything here has
static shapes, so ``torch.compile`` of it is a fair competitor in the
benchmarks.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _args
from ._args import _acc_dtype
from .instances import InstanceStats, instance_heights, relabel_instances

__all__ = [
    "confidence_map",
    "consistency_loss",
    "semantic_consistency_loss",
    "instance_stats",
    "instance_heights",
    "instance_prior_loss",
    "smoothness_loss",
    "stereo_photometric_loss",
    "relabel_instances",
    "sobel_magnitude",  # not an operator: confidence_map's edge filter, public for its users (G_sem's edge map)
]


# --------------------------------------------------------------------------- §1


def sobel_magnitude(y: Tensor) -> Tensor:
    """3x3 Sobel magnitude of (B, 1, H, W) with replicated borders: the edge
    filter of ``confidence_map`` (``edges=None``) and of desc_train's G_sem input."""
    p = F.pad(y, (1, 1, 1, 1), mode="replicate")
    tl, tc, tr = p[..., :-2, :-2], p[..., :-2, 1:-1], p[..., :-2, 2:]
    ml, mr = p[..., 1:-1, :-2], p[..., 1:-1, 2:]
    bl, bc, br = p[..., 2:, :-2], p[..., 2:, 1:-1], p[..., 2:, 2:]
    gx = (tr + 2 * mr + br) - (tl + 2 * ml + bl)
    gy = (bl + 2 * bc + br) - (tl + 2 * tc + tr)
    return torch.sqrt(gx * gx + gy * gy)


def _label_boundary(labels: Tensor) -> Tensor:
    """Whether an in-image 4-neighbour of each pixel of (B, H, W) differs."""
    diff = torch.zeros_like(labels, dtype=torch.bool)
    vertical = labels[:, 1:, :] != labels[:, :-1, :]
    horizontal = labels[:, :, 1:] != labels[:, :, :-1]
    diff[:, 1:, :] |= vertical
    diff[:, :-1, :] |= vertical
    diff[:, :, 1:] |= horizontal
    diff[:, :, :-1] |= horizontal
    return diff


def _confidence_map(semantic, image, edges, edge_weight, boundary_weight, ignore_index, ignore_classes,
                    dtype: Optional[torch.dtype] = None) -> Tensor:
    if dtype is None:
        if semantic.is_floating_point():
            dtype = semantic.dtype
        else:
            dtype = image.dtype if image is not None else edges.dtype if edges is not None else torch.float32
    acc = _acc_dtype(dtype)
    if semantic.is_floating_point():
        B, C, H, W = semantic.shape
        if semantic.numel() == 0:
            return semantic.new_empty((B, 1, H, W), dtype=dtype)
        z = semantic.to(acc)
        if C > 1:
            q = torch.softmax(z, dim=1).amax(dim=1, keepdim=True)
            uniform = torch.tensor(1.0, dtype=acc) / C
            s = (q - uniform) / (1 - uniform)
        else:
            s = torch.ones_like(z[:, :1])
        cls = z.argmax(dim=1, keepdim=True)
    else:
        B, H, W = semantic.shape
        if semantic.numel() == 0:
            return torch.empty((B, 1, H, W), dtype=dtype, device=semantic.device)
        one = torch.ones((), dtype=acc, device=semantic.device)
        s = torch.where(_label_boundary(semantic), one - boundary_weight, one)
        s = torch.where(semantic == ignore_index, torch.zeros_like(s), s).unsqueeze(1)
        cls = semantic.unsqueeze(1)
    if ignore_classes is not None and ignore_classes.numel() > 0:
        s = torch.where(torch.isin(cls, ignore_classes), torch.zeros_like(s), s)
    if image is not None:
        img = image.to(acc)
        y = img if img.shape[1] == 1 else 0.299 * img[:, 0:1] + 0.587 * img[:, 1:2] + 0.114 * img[:, 2:3]
        s = s * torch.exp(-edge_weight * sobel_magnitude(y))
    elif edges is not None:
        s = s * torch.exp(-edge_weight * edges.to(acc))
    return s.to(dtype)


def confidence_map(semantic, *, image=None, edges=None, edge_weight=1.0, boundary_weight=0.5,
                   ignore_index=-1, ignore_classes=None) -> Tensor:
    """``c = s * e`` (docs/ops.md §1): semantic certainty times ``exp(-edge_weight * edge strength)``."""
    return _confidence_map(*_args.confidence(semantic, image, edges, edge_weight, boundary_weight,
                                             ignore_index, ignore_classes))


# --------------------------------------------------------------------------- §2


def _consistency_loss(depth, depth_sem, weight, reduction) -> Tensor:
    acc = _acc_dtype(depth.dtype)
    w = weight.to(acc)
    loss = w * (depth.to(acc) - depth_sem.to(acc)).abs()
    if reduction == "none":
        return loss.to(depth.dtype)
    total = loss.sum()
    if reduction == "mean":
        w_tot = w.sum()
        # W_tot == 0 means every weight is 0: total is 0, and so are the gradients.
        total = total / torch.where(w_tot != 0, w_tot, torch.ones_like(w_tot))
    return total.to(depth.dtype)


def consistency_loss(depth, depth_sem, weight, *, reduction="mean") -> Tensor:
    """``sum_p w |depth - depth_sem|``, divided by ``sum_p w`` for ``"mean"`` (docs/ops.md §2)."""
    return _consistency_loss(*_args.consistency(depth, depth_sem, weight, reduction))


def semantic_consistency_loss(depth, depth_sem, semantic, *, image=None, edges=None, edge_weight=1.0,
                              boundary_weight=0.5, ignore_index=-1, ignore_classes=None,
                              reduction="mean", return_confidence=False):
    """``consistency_loss(depth, depth_sem, confidence_map(semantic, ...))`` (docs/ops.md §2)."""
    a = _args.semantic_consistency(depth, depth_sem, semantic, image, edges, edge_weight, boundary_weight,
                                   ignore_index, ignore_classes, reduction)
    depth, depth_sem, conf_args, reduction = a[0], a[1], a[2:-1], a[-1]
    weight = _confidence_map(*conf_args, dtype=depth.dtype)
    loss = _consistency_loss(depth, depth_sem, weight, reduction)
    return (loss, weight) if return_confidence else loss


# --------------------------------------------------------------------------- §3


def _instance_stats(ids: Tensor, K: int, depth: Optional[Tensor], validate: bool) -> InstanceStats:
    # `validate`: _args.check_ids has checked the ids (except under torch.compile).
    B, H, W = ids.shape
    dev = ids.device
    n = B * K + 1  # one extra slot collects every pixel that is no instance
    flat_ids = ids.reshape(B, H * W).long()
    inside = (flat_ids >= 0) & (flat_ids < K)
    slot = torch.where(inside, flat_ids + torch.arange(B, device=dev)[:, None] * K,
                       torch.full_like(flat_ids, B * K)).reshape(-1)
    count = torch.zeros(n, dtype=torch.long, device=dev).scatter_add_(0, slot, torch.ones_like(slot))
    ys = torch.arange(H, device=dev).repeat_interleave(W).repeat(B)
    xs = torch.arange(W, device=dev).repeat(B * H)
    big = torch.iinfo(torch.long).max

    def extreme(values, how, init):
        out = torch.full((n,), init, dtype=torch.long, device=dev).scatter_reduce_(0, slot, values, how)
        return torch.where(count > 0, out, torch.full_like(out, -1))[:-1].view(B, K)

    box = torch.stack([extreme(ys, "amin", big), extreme(ys, "amax", -1),
                       extreme(xs, "amin", big), extreme(xs, "amax", -1)], dim=-1)
    count_bk = count[:-1].view(B, K)
    if depth is None:
        return InstanceStats.from_box(count_bk, box)

    acc = _acc_dtype(depth.dtype)
    d = depth.reshape(-1).to(acc)
    valid = (slot < B * K) & torch.isfinite(d) & (d > 0)
    vslot = torch.where(valid, slot, torch.full_like(slot, B * K))
    valid_count = torch.zeros(n, dtype=torch.long, device=dev).scatter_add_(0, vslot, valid.long())
    total = torch.zeros(n, dtype=torch.float64, device=dev).scatter_add_(
        0, vslot, torch.where(valid, d, torch.zeros_like(d)).double())
    mean = (total / valid_count).to(depth.dtype)  # 0 / 0 = NaN where no valid depth
    # Valid depths grouped by slot, ascending within each: sort by depth, then
    # stably by slot.
    d_sorted, order = torch.sort(d, stable=True)
    _, by_slot = torch.sort(vslot[order], stable=True)
    grouped = torch.cat([d_sorted[by_slot], d.new_full((1,), float("nan"))])
    start = torch.cumsum(valid_count, 0) - valid_count
    at = (start + torch.div(valid_count - 1, 2, rounding_mode="floor")).clamp(0, grouped.numel() - 1)
    median = torch.where(valid_count > 0, grouped[at], torch.full_like(grouped[at], float("nan")))
    return InstanceStats.from_box(count_bk, box, valid_count[:-1].view(B, K),
                                  mean[:-1].view(B, K), median[:-1].view(B, K).to(depth.dtype))


def instance_stats(instance_ids, num_instances, depth=None, *, validate=True) -> InstanceStats:
    """Count, tight box, pixel height, and with depth the valid count, mean and
    lower median depth of every instance slot (docs/ops.md §3)."""
    return _instance_stats(*_args.stats(instance_ids, num_instances, depth, validate))


# --------------------------------------------------------------------------- §4


def _instance_prior_loss(depth, ids, heights, focal, min_pixels, max_depth, reduction, validate) -> Tensor:
    B, _, H, W = depth.shape
    K = heights.shape[1]
    acc = _acc_dtype(depth.dtype)
    st = _instance_stats(ids, K, None, validate)
    hts = heights.to(acc)
    finite_focal = torch.isfinite(focal)
    used = (st.count >= min_pixels) & (st.count > 0) & torch.isfinite(hts) & finite_focal[:, None]
    pixel_height = torch.where(used, st.pixel_height, torch.ones_like(st.pixel_height)).to(acc)
    f = torch.where(finite_focal, focal, torch.zeros_like(focal))  # a NaN focal would reach the gradient
    z = (f[:, None] / pixel_height) * torch.where(used, hts, torch.zeros_like(hts))
    if max_depth is not None:
        # The clamp passes no gradient at its bounds (docs/ops.md §4), whatever
        # torch.clamp does there (1 on torch 2.13, 0 on 2.14).
        inside = (z > 0) & (z < max_depth)
        z = torch.where(inside, z, z.detach().clamp(0, max_depth))
    flat = ids.reshape(B, H * W).long()
    slot = flat.clamp(0, max(K - 1, 0))
    if K == 0:
        on = torch.zeros_like(flat, dtype=torch.bool)
        z_pixel = torch.zeros_like(flat, dtype=acc) + z.sum()  # 0, keeps heights in the graph
    else:
        on = (flat >= 0) & (flat < K) & used.gather(1, slot)
        z_pixel = z.gather(1, slot)
    diff = (depth.reshape(B, H * W).to(acc) - z_pixel).abs()
    if reduction == "none":
        return torch.where(on, diff, torch.zeros_like(diff)).reshape(B, 1, H, W).to(depth.dtype)
    total = torch.where(on, diff, torch.zeros_like(diff)).sum()
    if reduction == "mean":
        n = (st.count * used).sum()
        total = total / n.clamp(min=1).to(acc)
    return total.to(depth.dtype)


def instance_prior_loss(depth, instance_ids, heights, focal, *, min_pixels=1, max_depth=None,
                        reduction="mean", validate=True) -> Tensor:
    """``mean |depth(p) - z_k|`` over the pixels of used slots, with the
    pseudo-depth ``z_k = focal * heights_k / pixel_height_k`` (docs/ops.md §4)."""
    return _instance_prior_loss(*_args.prior(depth, instance_ids, heights, focal, min_pixels, max_depth,
                                             reduction, validate))


# --------------------------------------------------------------------------- §5


def _smoothness_loss(depth, image, reduction="mean") -> Tensor:
    acc = _acc_dtype(depth.dtype)
    d, img = depth.to(acc), image.to(acc)
    if reduction == "none":  # each pixel's terms to its right and below
        out = torch.zeros_like(d) + d.reshape(-1)[:0].sum()  # 0, attached to depth when both terms are empty
        if depth.shape[3] > 1:
            wx = torch.exp(-(img[..., :, :-1] - img[..., :, 1:]).abs().mean(1, keepdim=True))
            out = out + F.pad((d[..., :, :-1] - d[..., :, 1:]).abs() * wx, (0, 1))
        if depth.shape[2] > 1:
            wy = torch.exp(-(img[..., :-1, :] - img[..., 1:, :]).abs().mean(1, keepdim=True))
            out = out + F.pad((d[..., :-1, :] - d[..., 1:, :]).abs() * wy, (0, 0, 0, 1))
        return out.to(depth.dtype)
    total = d.reshape(-1)[:0].sum()  # 0, still attached to depth when both terms are empty
    if depth.shape[3] > 1:
        wx = torch.exp(-(img[..., :, :-1] - img[..., :, 1:]).abs().mean(1, keepdim=True))
        total = total + ((d[..., :, :-1] - d[..., :, 1:]).abs() * wx).mean()
    if depth.shape[2] > 1:
        wy = torch.exp(-(img[..., :-1, :] - img[..., 1:, :]).abs().mean(1, keepdim=True))
        total = total + ((d[..., :-1, :] - d[..., 1:, :]).abs() * wy).mean()
    return total.to(depth.dtype)


def smoothness_loss(depth, image, *, reduction="mean") -> Tensor:
    """Edge-aware smoothness ``mean |dx| exp(-mean_c |dI_x|) + mean |dy| exp(-mean_c |dI_y|)``, or with
    ``"none"`` each pixel's terms ``|dx| wx + |dy| wy`` (docs/ops.md §5)."""
    return _smoothness_loss(*_args.smoothness(depth, image, reduction))


# --------------------------------------------------------------------------- §7


def _stereo_warp(image_other: Tensor, depth: Tensor, focal_baseline: Tensor) -> Tensor:
    """``image_other`` sampled at ``x - focal_baseline / (max(depth, 0) + 1e-6)``
    along each row, linearly, the row extended by zeros; the gradient reaches
    depth through the weights (``floor`` has none: at an integer position the
    slope is the right difference, as ``grid_sample``'s)."""
    B, C, H, W = image_other.shape
    x = torch.arange(W, dtype=depth.dtype, device=depth.device).view(1, 1, 1, W)
    u = x - focal_baseline.view(B, 1, 1, 1) / (depth.clamp(min=0) + 1e-6)
    u = u.clamp(-2, W + 1)  # both taps already zeros there; keeps the index in range
    x0 = torch.floor(u)
    w1 = u - x0  # NaN for a NaN position: a NaN sample
    index = (torch.nan_to_num(x0, nan=0.0).long() + 2).expand(B, C, H, W)
    padded = F.pad(image_other, (2, 3))  # columns -2, -1 and W .. W+2 read as 0
    v0, v1 = padded.gather(3, index), padded.gather(3, index + 1)
    return v0 + w1 * (v1 - v0)


def _ssim_dissimilarity(x: Tensor, y: Tensor, reflect: bool) -> Tensor:
    """``clamp((1 - SSIM) / 2, 0, 1)`` per channel over 3x3 windows (average pools)."""
    if reflect:
        x, y = F.pad(x, (1, 1, 1, 1), mode="reflect"), F.pad(y, (1, 1, 1, 1), mode="reflect")
    mu_x, mu_y = F.avg_pool2d(x, 3, 1), F.avg_pool2d(y, 3, 1)
    var_x = F.avg_pool2d(x * x, 3, 1) - mu_x ** 2
    var_y = F.avg_pool2d(y * y, 3, 1) - mu_y ** 2
    cov = F.avg_pool2d(x * y, 3, 1) - mu_x * mu_y
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    ssim = (2 * mu_x * mu_y + c1) * (2 * cov + c2) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return ((1 - ssim) / 2).clamp(0, 1)


def _stereo_photometric_loss(depth, image, image_other, focal_baseline, alpha=0.85, ssim="valid",
                             reduction="mean") -> Tensor:
    acc = _acc_dtype(depth.dtype)
    d, left, other = depth.to(acc), image.to(acc), image_other.to(acc)
    warped = _stereo_warp(other, d, focal_baseline.to(acc))
    s = _ssim_dissimilarity(left, warped, ssim == "reflect")
    l1 = (left - warped).abs()
    if reduction == "mean":
        return (alpha * s.mean() + (1 - alpha) * l1.mean()).to(depth.dtype)
    border = (depth.shape[2] - s.shape[2]) // 2
    per_pixel = alpha * F.pad(s.mean(1, keepdim=True), (border,) * 4) + (1 - alpha) * l1.mean(1, keepdim=True)
    return (per_pixel.sum() if reduction == "sum" else per_pixel).to(depth.dtype)


def stereo_photometric_loss(depth, image, image_other, focal_baseline, *, alpha=0.85, ssim="valid",
                            reduction="mean") -> Tensor:
    """``alpha * mean clamp((1 - SSIM(image, warped)) / 2, 0, 1) + (1 - alpha) * mean |image - warped|``
    with ``warped`` = ``image_other`` at ``x - focal_baseline / depth`` (docs/ops.md §7)."""
    return _stereo_photometric_loss(*_args.stereo(depth, image, image_other, focal_baseline, alpha, ssim,
                                                  reduction))
