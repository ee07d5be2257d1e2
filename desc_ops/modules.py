"""``nn.Module`` forms of the losses, and ``DESCLoss``, the target-domain
objective of DESC that the trainer uses."""
from __future__ import annotations

import math
import numbers
from typing import Dict, List, NamedTuple, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from . import functional as F

__all__ = ["ConsistencyLoss", "SemanticConsistencyLoss", "InstancePriorLoss", "SmoothnessLoss",
           "StereoPhotometricLoss", "DESCLoss", "DESCLossOutput"]


class ConsistencyLoss(nn.Module):
    """``consistency_loss(depth, depth_sem, weight)`` (docs/ops.md §2)."""

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, depth: Tensor, depth_sem: Tensor, weight: Tensor) -> Tensor:
        return F.consistency_loss(depth, depth_sem, weight, reduction=self.reduction)


class SemanticConsistencyLoss(nn.Module):
    """Confidence-weighted consistency, fused (docs/ops.md §2 with §1): the options of
    ``confidence_map`` are fixed at construction."""

    def __init__(self, *, edge_weight: float = 1.0, boundary_weight: float = 0.5, ignore_index: int = -1,
                 ignore_classes: Optional[Sequence[int]] = None, reduction: str = "mean"):
        super().__init__()
        self.edge_weight = edge_weight
        self.boundary_weight = boundary_weight
        self.ignore_index = ignore_index
        self.ignore_classes = None if ignore_classes is None else [int(c) for c in ignore_classes]
        self.reduction = reduction

    def forward(self, depth: Tensor, depth_sem: Tensor, semantic: Tensor, *, image: Optional[Tensor] = None,
                edges: Optional[Tensor] = None) -> Tensor:
        return F.semantic_consistency_loss(
            depth, depth_sem, semantic, image=image, edges=edges, edge_weight=self.edge_weight,
            boundary_weight=self.boundary_weight, ignore_index=self.ignore_index,
            ignore_classes=self.ignore_classes, reduction=self.reduction)


class InstancePriorLoss(nn.Module):
    """``instance_prior_loss`` (docs/ops.md §4) with fixed ``min_pixels``,
    ``max_depth`` and ``validate`` (``False`` skips the id check, the one host
    read on CUDA, for ids that are valid by construction)."""

    def __init__(self, *, min_pixels: int = 1, max_depth: Optional[float] = None, reduction: str = "mean",
                 validate: bool = True):
        super().__init__()
        self.min_pixels = min_pixels
        self.max_depth = max_depth
        self.reduction = reduction
        self.validate = validate

    def forward(self, depth: Tensor, instance_ids: Tensor, heights: Tensor, focal: Union[float, Tensor]) -> Tensor:
        return F.instance_prior_loss(depth, instance_ids, heights, focal, min_pixels=self.min_pixels,
                                     max_depth=self.max_depth, reduction=self.reduction, validate=self.validate)


class SmoothnessLoss(nn.Module):
    """Edge-aware smoothness (docs/ops.md §5)."""

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, depth: Tensor, image: Tensor) -> Tensor:
        return F.smoothness_loss(depth, image, reduction=self.reduction)


class StereoPhotometricLoss(nn.Module):
    """``stereo_photometric_loss`` (docs/ops.md §7) with fixed ``alpha``, ``ssim``
    and ``reduction``."""

    def __init__(self, *, alpha: float = 0.85, ssim: str = "valid", reduction: str = "mean"):
        super().__init__()
        self.alpha = alpha
        self.ssim = ssim
        self.reduction = reduction

    def forward(self, depth: Tensor, image: Tensor, image_other: Tensor,
                focal_baseline: Union[float, Tensor]) -> Tensor:
        return F.stereo_photometric_loss(depth, image, image_other, focal_baseline, alpha=self.alpha, ssim=self.ssim,
                                         reduction=self.reduction)


class DESCLossOutput(NamedTuple):
    """``total``: the objective, to backpropagate. ``terms``: every loss computed,
    unweighted and detached, by name (``consistency``, ``instance_prior``,
    ``smoothness``; at output scale ``i > 0``, ``consistency@i`` and
    ``smoothness@i``). ``weighted``: each term's share of ``total`` (weights
    applied, summed over scales, with gradients), so that ``total`` is their sum."""

    total: Tensor
    terms: Dict[str, Tensor]
    weighted: Dict[str, Tensor]


Weights = Union[float, Sequence[float]]


def _per_scale(weight: Weights, scales: int, name: str) -> List[float]:
    """The weight of each of `scales` output scales: a number weighs every scale
    alike; a sequence gives scale 0, 1, ... in turn and 0 to the scales past its end."""
    if isinstance(weight, numbers.Real):
        return [float(weight)] * scales
    weights = [float(w) for w in weight]
    if len(weights) > scales:
        raise ValueError(f"DESCLoss: {name} has {len(weights)} per-scale weights but depth has {scales} scale(s)")
    return weights + [0.0] * (scales - len(weights))


def _scales(maps, name: str) -> List[Tensor]:
    """The maps of a depth network's output scales, checked finest first."""
    if isinstance(maps, Tensor):
        return [maps]
    if isinstance(maps, dict):
        raise ValueError(f"DESCLoss: {name} must be a tensor or a sequence of tensors (finest scale first), got a "
                         f"dict; pass its maps as a list, e.g. [outputs[k] for k in keys] with the finest first")
    if not isinstance(maps, Sequence) or not maps or not all(isinstance(m, Tensor) for m in maps):
        raise ValueError(f"DESCLoss: {name} must be a tensor or a non-empty sequence of tensors (finest scale "
                         f"first), got {type(maps).__name__}")
    maps = list(maps)
    for i in range(1, len(maps)):
        prev, cur = tuple(maps[i - 1].shape[-2:]), tuple(maps[i].shape[-2:])
        if cur[0] > prev[0] or cur[1] > prev[1]:
            raise ValueError(f"DESCLoss: the scales of {name} must run finest first, got {prev[0]}x{prev[1]} "
                             f"(scale {i - 1}) before {cur[0]}x{cur[1]} (scale {i}): reverse the sequence")
    return maps


# How far outside its range an image may reach, as a fraction of the range's width:
# rounding, and the overshoot of a bicubic resize; a 0-255 image, or one normalised
# otherwise than the range says, is far beyond it.
_IMAGE_SLACK = 0.02


def _image_range(image_range) -> tuple:
    try:
        lo, hi = (float(v) for v in image_range)
    except (TypeError, ValueError):
        raise ValueError(f"DESCLoss: image_range must be two numbers (lo, hi), got {image_range!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"DESCLoss: image_range must be finite with lo < hi, got {image_range!r}")
    return lo, hi


def _check_image(image: Tensor, image_range, name: str = "image") -> None:
    if not isinstance(image, Tensor) or not image.is_floating_point() or not image.numel():
        return  # the loss that reads it names what is wrong
    lo, hi = torch.stack(torch.aminmax(image.detach())).tolist()
    low, high = image_range
    slack = _IMAGE_SLACK * (high - low)
    if lo < low - slack or hi > high + slack:
        raise ValueError(f"DESCLoss: {name} must be RGB in [{low:g}, {high:g}], got values in [{lo:.4g}, {hi:.4g}]: "
                         f"divide 8-bit images by 255, undo a mean/std normalisation or pass the image_range the "
                         f"image is in (validate=False skips this check)")


def _nearest(x: Tensor, size) -> Tensor:
    """`x` (…, H, W) at `size` (h, w), h and w dividing H and W, each pixel the
    full-resolution pixel nearest to its centre: labels stay labels."""
    (H, W), (h, w) = x.shape[-2:], size
    if (H, W) == (h, w):
        return x
    if H % h or W % w:
        raise ValueError(f"DESCLoss: a depth scale of {h}x{w} does not divide the full resolution {H}x{W}")
    sy, sx = H // h, W // w
    return x[..., sy // 2::sy, sx // 2::sx].contiguous()


class DESCLoss(nn.Module):
    """The target-domain objective of DESC:

    ``sum_i consistency_weight[i] * L_cons(i) + instance_weight * L_inst + sum_i smoothness_weight[i] * L_smooth(i)``
    ``+ sum_i stereo_weight[i] * L_stereo(i)``

    over the output scales ``i`` of a depth network, or one scale:

    * ``L_cons``: the confidence-weighted ``semantic_consistency_loss`` between
      the RGB depth and the semantic depth (or, with ``confidence=False``, the
      plain mean ``|depth - depth_sem|`` of the official code, for ablations);
    * ``L_inst``: ``instance_prior_loss`` of the finest depth against the pinhole
      pseudo-depth of predicted instance heights (``min_pixels``, ``max_depth``
      as there);
    * ``L_smooth``: the edge-aware ``smoothness_loss`` of the depth;
    * ``L_stereo``: ``stereo_photometric_loss`` (the official settings: alpha
      0.85, unpadded SSIM) of ``image`` against ``image_other``, the other view
      of a rectified stereo pair, warped by the depth of each scale, with
      ``focal_baseline`` (at ``image``'s width) scaled to that scale's width, as
      the official "DESC + stereo" (off by default: weight 0).

    ``depth`` (and ``depth_sem``) is one map or a sequence of maps (list, tuple),
    finest first, each scale dividing the finest; depths are in metres (a
    disparity network converts first). A dict of outputs is refused: pass its
    depth maps as a list, finest first. ``semantic``, ``edges``, ``image`` and
    ``instance_ids`` are at full resolution: at a coarser scale the confidence
    map reads the labels (or logits, or edges) of the full-resolution pixel
    nearest to each pixel's centre, and the images area-averaged to that scale.

    A weight is a number (every scale alike) or a sequence of per-scale weights,
    finest first (scales past its end get 0). A term or scale of weight 0 is
    skipped, so each can be switched off; with every weight 0 the total is a
    zero that backpropagates.

    ``image`` is RGB in ``image_range``: ``(0, 1)`` by default, or e.g. ``(-1, 1)``
    for networks trained on images normalised with mean and std 0.5 (the
    official DESC code). The smoothness term reads the image as given, so its
    edge weights ``exp(-mean_c |dI|)`` depend on the range (on ``(-1, 1)`` they
    are ``exp(-2 mean_c |dI|)`` of the ``[0, 1]`` image, as the official
    code's); the confidence map and the stereo term read the images mapped to
    ``[0, 1]``, where the edge weight and the SSIM constants are defined. With ``validate`` (the default) two mistakes that
    silently change the result are checked, with one host read each: an image
    outside ``image_range`` by more than 2% of its width (``ValueError``), and
    an instance map without a single ``-1`` (a warning: docs/ops.md §3).
    ``forward`` returns a ``DESCLossOutput``.
    """

    def __init__(self, *, consistency_weight: Weights = 1.0, instance_weight: float = 1.0,
                 smoothness_weight: Weights = 0.01, stereo_weight: Weights = 0.0, confidence: bool = True,
                 edge_weight: float = 1.0,
                 boundary_weight: float = 0.5, ignore_index: int = -1,
                 ignore_classes: Optional[Sequence[int]] = None, min_pixels: int = 1,
                 max_depth: Optional[float] = None, image_range: Sequence[float] = (0.0, 1.0),
                 validate: bool = True):
        super().__init__()
        self.consistency_weight = consistency_weight
        self.instance_weight = float(instance_weight)
        self.smoothness_weight = smoothness_weight
        self.stereo_weight = stereo_weight
        self.confidence = confidence
        self.consistency = SemanticConsistencyLoss(edge_weight=edge_weight, boundary_weight=boundary_weight,
                                                   ignore_index=ignore_index, ignore_classes=ignore_classes)
        self.instance_prior = InstancePriorLoss(min_pixels=min_pixels, max_depth=max_depth, validate=validate)
        self.smoothness = SmoothnessLoss()
        self.stereo = StereoPhotometricLoss()
        self.image_range = _image_range(image_range)
        self.validate = validate

    def forward(self, depth: Union[Tensor, Sequence[Tensor]], *,
                depth_sem: Optional[Union[Tensor, Sequence[Tensor]]] = None, semantic: Optional[Tensor] = None,
                image: Optional[Tensor] = None, edges: Optional[Tensor] = None,
                instance_ids: Optional[Tensor] = None, heights: Optional[Tensor] = None,
                focal: Optional[Union[float, Tensor]] = None, image_other: Optional[Tensor] = None,
                focal_baseline: Optional[Union[float, Tensor]] = None) -> DESCLossOutput:
        depths = _scales(depth, "depth")
        n = len(depths)
        consistency_weights = _per_scale(self.consistency_weight, n, "consistency_weight")
        smoothness_weights = _per_scale(self.smoothness_weight, n, "smoothness_weight")
        stereo_weights = _per_scale(self.stereo_weight, n, "stereo_weight")
        terms: Dict[str, Tensor] = {}
        weighted: Dict[str, Tensor] = {}
        # 0 in the graph of depth (a sum over no element), so that a total with
        # every term off still backpropagates (zero gradients).
        zero = depths[0].reshape(-1)[:0].sum()
        if self.validate and image is not None and not torch.compiler.is_compiling():  # a host read
            _check_image(image, self.image_range)
            if image_other is not None and any(stereo_weights):
                _check_image(image_other, self.image_range, "image_other")

        def add(name: str, scale: int, weight: float, value: Tensor) -> None:
            terms[name if scale == 0 else f"{name}@{scale}"] = value.detach()
            weighted[name] = weighted.get(name, zero) + weight * value

        images: Dict[int, Tensor] = {}

        def image_at(i: int, full: Optional[Tensor] = None) -> Tensor:  # made once, for every term that reads it
            full = image if full is None else full
            key = (i, id(full))
            if key not in images:
                size = depths[i].shape[-2:]
                images[key] = full if full.shape[-2:] == size else \
                    torch.nn.functional.interpolate(full, size=size, mode="area")
            return images[key]

        def unit_image_at(i: int, full: Optional[Tensor] = None) -> Tensor:  # [0, 1], where the terms define it
            lo, hi = self.image_range
            return image_at(i, full) if (lo, hi) == (0.0, 1.0) else (image_at(i, full) - lo) / (hi - lo)

        if any(consistency_weights):
            if depth_sem is None:
                raise ValueError("DESCLoss: depth_sem is needed for the consistency term")
            depths_sem = _scales(depth_sem, "depth_sem")
            if len(depths_sem) != n:
                raise ValueError(f"DESCLoss: depth has {n} scale(s) but depth_sem has {len(depths_sem)}")
            if self.confidence and semantic is None:
                raise ValueError("DESCLoss: semantic is needed for the confidence-weighted consistency term")
            for i, (d, s, w) in enumerate(zip(depths, depths_sem, consistency_weights)):
                if not w:
                    continue
                if self.confidence:
                    size = d.shape[-2:]
                    term = self.consistency(d, s, _nearest(semantic, size),
                                            edges=None if edges is None else _nearest(edges, size),
                                            image=unit_image_at(i) if edges is None and image is not None else None)
                else:
                    term = F.consistency_loss(d, s, torch.ones_like(d))
                add("consistency", i, w, term)
        if self.instance_weight:
            if instance_ids is None or heights is None or focal is None:
                raise ValueError("DESCLoss: instance_ids, heights and focal are needed for the instance term")
            add("instance_prior", 0, self.instance_weight,
                self.instance_prior(depths[0], instance_ids, heights, focal))
        if any(smoothness_weights):
            if image is None:
                raise ValueError("DESCLoss: image is needed for the smoothness term")
            for i, (d, w) in enumerate(zip(depths, smoothness_weights)):
                if w:
                    add("smoothness", i, w, self.smoothness(d, image_at(i)))
        if any(stereo_weights):
            if image is None or image_other is None or focal_baseline is None:
                raise ValueError("DESCLoss: image, image_other and focal_baseline are needed for the stereo term")
            for i, (d, w) in enumerate(zip(depths, stereo_weights)):
                if w:
                    fb = focal_baseline * (d.shape[-1] / image.shape[-1])  # pixels of this scale's width
                    add("stereo", i, w, self.stereo(d, unit_image_at(i), unit_image_at(i, image_other), fb))
        total = zero
        for value in weighted.values():
            total = total + value
        return DESCLossOutput(total, terms, weighted)
