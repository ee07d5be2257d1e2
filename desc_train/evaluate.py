"""The standard monocular-depth evaluation: AbsRel, SqRel, RMSE, RMSE log and
the delta < 1.25^k accuracies, on valid ground-truth pixels within a depth cap,
per image then averaged, with optional per-image median scaling and the Garg
crop used for KITTI's Eigen split."""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
from torch import Tensor

from .data import DepthDataset

METRICS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")


def garg_crop_mask(H: int, W: int, device=None) -> Tensor:
    """Garg et al.'s crop of KITTI's Eigen split, as a (H, W) mask."""
    mask = torch.zeros(H, W, dtype=torch.bool, device=device)
    mask[int(0.40810811 * H):int(0.99189189 * H), int(0.03594771 * W):int(0.96405229 * W)] = True
    return mask


def image_metrics(pred: Tensor, gt: Tensor, valid: Tensor) -> Dict[str, float]:
    p, g = pred[valid].double(), gt[valid].double()
    thresh = torch.maximum(g / p, p / g)
    return dict(
        abs_rel=((g - p).abs() / g).mean().item(),
        sq_rel=((g - p) ** 2 / g).mean().item(),
        rmse=((g - p) ** 2).mean().sqrt().item(),
        rmse_log=((g.log() - p.log()) ** 2).mean().sqrt().item(),
        a1=(thresh < 1.25).double().mean().item(),
        a2=(thresh < 1.25 ** 2).double().mean().item(),
        a3=(thresh < 1.25 ** 3).double().mean().item(),
    )


def depth_metrics(pred: Tensor, gt: Tensor, *, cap: Tuple[float, float] = (1e-3, 80.0),
                  median_scaling: bool = False, crop: Optional[str] = None,
                  mask: Optional[Tensor] = None) -> Dict[str, float]:
    """Mean over images of the metrics. ``pred``, ``gt`` (B, 1, H, W) or (B, H, W)
    metres (gt <= 0 or non-finite: no ground truth); ``cap`` (min, max) selects
    the ground-truth pixels evaluated (``(1e-3, 80)``; ``(1, 50)`` for the 1–50 m
    protocol) and clamps predictions into it; ``crop="garg"`` for KITTI's Eigen split;
    ``mask`` (B, H, W) or (B, 1, H, W) bool restricts the pixels further (say, to
    instance pixels); images left without a pixel are skipped."""
    if pred.shape != gt.shape:
        raise ValueError(f"pred has shape {tuple(pred.shape)} but gt has {tuple(gt.shape)}")
    if crop not in (None, "garg"):
        raise ValueError(f"crop must be None or 'garg', got {crop!r}")
    pred = pred.reshape(pred.shape[0], *pred.shape[-2:]).float()
    gt = gt.reshape(gt.shape[0], *gt.shape[-2:]).float()
    lo, hi = cap
    totals = {k: 0.0 for k in METRICS}
    n = 0
    for b in range(pred.shape[0]):
        valid = torch.isfinite(gt[b]) & (gt[b] > lo) & (gt[b] < hi)
        if crop == "garg":
            valid &= garg_crop_mask(*gt.shape[-2:], device=gt.device)
        if mask is not None:
            valid &= mask[b].reshape(gt.shape[-2:]).to(torch.bool)
        if not valid.any():
            continue
        p = pred[b]
        if median_scaling:
            p = p * (gt[b][valid].median() / p[valid].median())
        p = p.clamp(lo, hi)
        for k, v in image_metrics(p, gt[b], valid).items():
            totals[k] += v
        n += 1
    if n == 0:
        raise ValueError("no image has valid ground truth within the cap")
    return {k: v / n for k, v in totals.items()}


@torch.no_grad()
def predict_split(net: torch.nn.Module, split_dir: str, batch_size: int = 16) -> Tuple[Tensor, Tensor, Tensor]:
    """`net`'s finest-scale depth for every frame of a split, decoding each frame
    once: ``(pred, gt, instance_mask)``, (N, 1, H, W) metres twice and (N, H, W)
    bool (pixels of segmented instances), on the CPU."""
    ds = DepthDataset(split_dir)
    device = next(net.parameters()).device
    preds, gts, instances = [], [], []
    for i in range(0, len(ds), batch_size):
        items = [ds[j] for j in range(i, min(len(ds), i + batch_size))]
        preds.append(net(torch.stack([it["image"] for it in items]).to(device))[0].cpu())
        gts.append(torch.stack([it["depth"] for it in items]))
        instances.append(torch.stack([it["instance_ids"] >= 0 for it in items]))
    return torch.cat(preds), torch.cat(gts), torch.cat(instances)
