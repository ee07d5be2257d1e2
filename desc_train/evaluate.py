"""The standard monocular-depth evaluation: AbsRel, SqRel, RMSE, RMSE log and
the delta < 1.25^k accuracies, on valid ground-truth pixels within a depth cap,
per image then averaged, with optional per-image median scaling and the Garg
crop used for KITTI's Eigen split.

On a split with native-size ground truth (``gt/``, real test splits) every frame
is evaluated at its ground truth's own size, as the published KITTI protocol:
the prediction is upsampled bilinearly (OpenCV's INTER_LINEAR), floored at
1e-3 m, the crop is taken on the ground truth's size, the median is NumPy's,
and the metrics are averaged over images. Splits without ``gt/`` are evaluated
against their stored depth."""
from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import torch
import torch.nn.functional as F
from torch import Tensor

from .data import DepthDataset
from .config import MAX_DEPTH
from .data.layout import read_gt, read_meta

CAP = (1e-3, MAX_DEPTH)  # metres: the ground truth evaluated by default

METRICS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")


def garg_crop_mask(H: int, W: int, device=None) -> Tensor:
    """Garg et al.'s crop of KITTI's Eigen split, as a (H, W) mask."""
    mask = torch.zeros(H, W, dtype=torch.bool, device=device)
    mask[int(0.40810811 * H):int(0.99189189 * H), int(0.03594771 * W):int(0.96405229 * W)] = True
    return mask


def cityscapes_crop_mask(H: int, W: int, device=None) -> Tensor:
    """The usual crop of Cityscapes depth evaluation, on frames whose bottom
    quarter (the ego car) is already cut off: rows [256, 768) and columns
    [192, 1856) of 768x2048, as fractions of (H, W)."""
    mask = torch.zeros(H, W, dtype=torch.bool, device=device)
    mask[round(H * 256 / 768):, round(W * 192 / 2048):round(W * 1856 / 2048)] = True
    return mask


CROPS = {"garg": garg_crop_mask, "cityscapes": cityscapes_crop_mask}


def median(x: Tensor) -> Tensor:
    """NumPy's median: the mean of the two middle values of an even count
    (``torch.median`` returns the lower one)."""
    s = x.flatten().sort().values
    n = s.numel()
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


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


def frame_metrics(pred: Tensor, gt: Tensor, *, cap: Tuple[float, float] = CAP,
                  median_scaling: bool = False, crop: Optional[str] = None,
                  mask: Optional[Tensor] = None) -> Optional[Dict[str, float]]:
    """The metrics of one image, ``pred`` and ``gt`` (H, W) metres, on the ground
    truth pixels with ``cap[0] < gt < cap[1]`` (inside ``crop`` and ``mask``):
    the prediction (floored at 1e-3) is scaled by median(gt) / median(pred) over
    them when ``median_scaling``, then clamped into the cap. None when no pixel
    is valid."""
    if crop not in (None, *CROPS):
        raise ValueError(f"crop must be None or one of {sorted(CROPS)}, got {crop!r}")
    lo, hi = cap
    gt = gt.float()
    valid = torch.isfinite(gt) & (gt > lo) & (gt < hi)
    if crop is not None:
        valid &= CROPS[crop](*gt.shape, device=gt.device)
    if mask is not None:
        valid &= mask.reshape(gt.shape).to(torch.bool)
    if not valid.any():
        return None
    p = pred.float().clamp_min(1e-3)
    if median_scaling:
        p = p * (median(gt[valid]) / median(p[valid]))
    return image_metrics(p.clamp(lo, hi), gt, valid)


def depth_metrics(pred: Tensor, gt: Tensor, *, cap: Tuple[float, float] = CAP,
                  median_scaling: bool = False, crop: Optional[str] = None,
                  mask: Optional[Tensor] = None) -> Dict[str, float]:
    """Mean over images of ``frame_metrics``. ``pred``, ``gt`` (B, 1, H, W) or (B, H, W)
    metres (gt <= 0 or non-finite: no ground truth); ``cap`` (min, max) selects
    the ground-truth pixels evaluated (``(1e-3, 80)``; ``(1, 50)`` for the 1–50 m
    protocol) and clamps predictions into it; ``crop="garg"`` for KITTI's Eigen split;
    ``mask`` (B, H, W) or (B, 1, H, W) bool restricts the pixels further (say, to
    instance pixels); images left without a pixel are skipped."""
    if pred.shape != gt.shape:
        raise ValueError(f"pred has shape {tuple(pred.shape)} but gt has {tuple(gt.shape)}")
    pred = pred.reshape(pred.shape[0], *pred.shape[-2:])
    gt = gt.reshape(gt.shape[0], *gt.shape[-2:])
    per_image = [frame_metrics(pred[b], gt[b], cap=cap, median_scaling=median_scaling, crop=crop,
                               mask=None if mask is None else mask[b]) for b in range(pred.shape[0])]
    return mean_metrics([m for m in per_image if m is not None])


def mean_metrics(per_image: Sequence[Dict[str, float]]) -> Dict[str, float]:
    if not per_image:
        raise ValueError("no image has valid ground truth within the cap")
    return {k: sum(m[k] for m in per_image) / len(per_image) for k in METRICS}


def finest_depth(net: torch.nn.Module, images: Tensor) -> Tensor:
    """`net`'s finest-scale depth (B, 1, H, W) for images of any size: the U-Nets
    take multiples of 16, so the images are padded (replicating their edges) to
    the next ones and the prediction is cropped back."""
    H, W = images.shape[-2:]
    ph, pw = -H % 16, -W % 16
    if ph or pw:
        images = F.pad(images, (0, pw, 0, ph), mode="replicate")
    return net(images)[0][..., :H, :W]


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
        preds.append(finest_depth(net, torch.stack([it["image"] for it in items]).to(device)).cpu())
        gts.append(torch.stack([it["depth"] for it in items]))
        instances.append(torch.stack([it["instance_ids"] >= 0 for it in items]))
    return torch.cat(preds), torch.cat(gts), torch.cat(instances)


def protocol_of(split_dir: str, *, median_scaling: bool, caps=None, crop: Optional[str] = "auto") -> Dict:
    """The evaluation protocol of a split: its meta.json ``eval`` record (real
    test splits) with the caller's choices over it."""
    meta = read_meta(split_dir)
    ev = dict(meta.eval or {})
    native = os.path.isdir(os.path.join(split_dir, "gt"))
    return dict(split=os.path.abspath(split_dir), frames=len(meta.frames),
                gt_kind=ev.get("gt_kind", "stored depth"), gt_size="native" if native else "stored",
                crop=ev.get("crop") if crop == "auto" else crop,
                caps=[list(c) for c in (caps or ev.get("caps") or [CAP, (1.0, 50.0)])],
                median_scaling=median_scaling, list=ev.get("list"), list_sha256=ev.get("list_sha256"))


@torch.no_grad()
def evaluate_split(net: torch.nn.Module, split_dir: str, *, median_scaling: bool = False, caps=None,
                   crop: Optional[str] = "auto", batch_size: int = 8) -> Dict:
    """`net`'s finest-scale depth on every frame of a split under the protocol of
    ``protocol_of`` (``crop="auto"``: the split's own). Returns ``{"protocol": ...,
    "metrics": {"CAP_MIN-CAP_MAX": {metric: mean over images}}, "images": {cap: n}}``."""
    protocol = protocol_of(split_dir, median_scaling=median_scaling, caps=caps, crop=crop)
    ds = DepthDataset(split_dir, max_instances=max(32, read_meta(split_dir).max_instances or 0))
    device = next(net.parameters()).device
    per_cap: Dict[str, List[Dict[str, float]]] = {cap_name(c): [] for c in protocol["caps"]}
    for i in range(0, len(ds), batch_size):
        items = [ds[j] for j in range(i, min(len(ds), i + batch_size))]
        preds = finest_depth(net, torch.stack([it["image"] for it in items]).to(device))[:, 0].float().cpu()
        for it, pred in zip(items, preds):
            gt = read_gt(split_dir, it["name"])
            if gt is None:
                gt = it["depth"][0].numpy()
            p = pred.numpy()
            if p.shape != gt.shape:  # bilinear, as cv2.resize's default in the published evaluation
                p = cv2.resize(p, (gt.shape[1], gt.shape[0]), interpolation=cv2.INTER_LINEAR)
            for cap in protocol["caps"]:
                m = frame_metrics(torch.from_numpy(p), torch.from_numpy(gt), cap=tuple(cap),
                                  median_scaling=median_scaling, crop=protocol["crop"])
                if m is not None:
                    per_cap[cap_name(cap)].append(m)
    return dict(protocol=protocol, metrics={k: mean_metrics(v) for k, v in per_cap.items()},
                images={k: len(v) for k, v in per_cap.items()})


def cap_name(cap) -> str:
    return f"{cap[0]:g}-{cap[1]:g}m"


def results_table(result: Dict) -> str:
    """A Markdown table of ``evaluate_split``'s result, headed by its protocol."""
    p = result["protocol"]
    lines = [f"split {p['split']} ({p['frames']} frames"
             + (f", list {p['list']} sha256 {p['list_sha256'][:12]}" if p.get("list_sha256") else "") + ")",
             f"ground truth {p['gt_kind']} at {p['gt_size']} size; crop {p['crop'] or 'none'}; "
             f"median scaling {'on' if p['median_scaling'] else 'off'}",
             "",
             "| cap | images | " + " | ".join(METRICS) + " |",
             "| --- | ---: | " + " | ".join("---:" for _ in METRICS) + " |"]
    for cap, m in result["metrics"].items():
        lines.append(f"| {cap} | {result['images'][cap]} | " + " | ".join(f"{m[k]:.4f}" for k in METRICS) + " |")
    return "\n".join(lines)
