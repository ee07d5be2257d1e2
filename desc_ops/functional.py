"""The public operators of desc_ops (``docs/ops.md``).

Each function checks its arguments (``desc_ops._args``), then runs the
compiled kernel of the tensors' device, or ``desc_ops.reference`` when that
backend is selected (``DESC_OPS_BACKEND=reference`` or ``set_backend``).
"""
from __future__ import annotations

import functools
from typing import Optional, Sequence, Union

import torch
from torch import Tensor

from . import _args, _backend, reference
from .instances import InstanceStats

ops = torch.ops.desc_ops

__all__ = [
    "confidence_map",
    "consistency_loss",
    "semantic_consistency_loss",
    "instance_stats",
    "instance_prior_loss",
    "smoothness_loss",
    "stereo_photometric_loss",
]

Classes = Optional[Union[Tensor, Sequence[int], int]]


def _cpu_training(*tensors: Tensor) -> bool:
    """Whether a loss on the CPU will be differentiated: then its training form
    runs, whose forward also returns what the backward reads (the signed
    weights of §2, the unit gradient of §5), so that the backward reads one
    map instead of recomputing from every input (docs/ops.md §0, "CPU
    training forms")."""
    return (tensors[0].device.type == "cpu" and torch.is_grad_enabled()
            and any(t.requires_grad for t in tensors))


def _float32_under_autocast(loss):
    """Under ``torch.autocast`` the loss runs on float32 copies of its floating
    tensors, outside autocast, and returns float32, as torch's own losses do
    there (docs/ops.md §0): a bfloat16 or float16 total would be rounded.
    Outside autocast, the tensors' own dtype."""

    @functools.wraps(loss)
    def run(*args, **kwargs):
        # Checked without reading a device first: this runs on every call.
        if not (torch.is_autocast_enabled("cpu") or torch.is_autocast_enabled("cuda")):
            return loss(*args, **kwargs)
        first = args[0] if args and isinstance(args[0], Tensor) else None
        if first is None or first.device.type not in ("cpu", "cuda") or \
                not torch.is_autocast_enabled(first.device.type):
            return loss(*args, **kwargs)

        def as_float32(x):
            return x.float() if isinstance(x, Tensor) and x.is_floating_point() else x

        with torch.autocast(first.device.type, enabled=False):
            return loss(*(as_float32(a) for a in args), **{k: as_float32(v) for k, v in kwargs.items()})

    return run


def confidence_map(
    semantic: Tensor,
    *,
    image: Optional[Tensor] = None,
    edges: Optional[Tensor] = None,
    edge_weight: float = 1.0,
    boundary_weight: float = 0.5,
    ignore_index: int = -1,
    ignore_classes: Classes = None,
) -> Tensor:
    """Per-pixel trust in the semantic depth model, ``c = s * e`` in ``[0, 1]`` (docs/ops.md §1).

    ``s``: for logits ``(B, C, H, W)``, ``(max softmax - 1/C) / (1 - 1/C)``; for
    labels ``(B, H, W)``, 0 on ``ignore_index``, ``1 - boundary_weight`` on class
    boundaries, 1 elsewhere; 0 on ``ignore_classes``. ``e = exp(-edge_weight * m)``
    with ``m`` the given ``edges`` or the Sobel magnitude of the ``image``'s
    luminance (``e = 1`` with neither). Returns ``(B, 1, H, W)``; no gradient.
    """
    if _backend.use_reference():
        return reference.confidence_map(semantic, image=image, edges=edges, edge_weight=edge_weight,
                                        boundary_weight=boundary_weight, ignore_index=ignore_index,
                                        ignore_classes=ignore_classes)
    return ops.confidence_map(*_args.confidence(semantic, image, edges, edge_weight, boundary_weight,
                                                ignore_index, ignore_classes))


@_float32_under_autocast
def consistency_loss(depth: Tensor, depth_sem: Tensor, weight: Tensor, *, reduction: str = "mean") -> Tensor:
    """Weighted L1 between two depth maps (docs/ops.md §2).

    ``"none"``: ``weight * |depth - depth_sem|``; ``"sum"``: its sum ``S``;
    ``"mean"``: ``S / sum(weight)`` (0 when all weights are 0). Gradients to
    ``depth`` and ``depth_sem``.
    """
    if _backend.use_reference():
        return reference.consistency_loss(depth, depth_sem, weight, reduction=reduction)
    args = _args.consistency(depth, depth_sem, weight, reduction)
    if _cpu_training(*args[:2]):
        return ops._consistency_loss_train(*args)[0]
    return ops.consistency_loss(*args)[0]


@_float32_under_autocast
def semantic_consistency_loss(
    depth: Tensor,
    depth_sem: Tensor,
    semantic: Tensor,
    *,
    image: Optional[Tensor] = None,
    edges: Optional[Tensor] = None,
    edge_weight: float = 1.0,
    boundary_weight: float = 0.5,
    ignore_index: int = -1,
    ignore_classes: Classes = None,
    reduction: str = "mean",
    return_confidence: bool = False,
):
    """``consistency_loss(depth, depth_sem, confidence_map(semantic, ...))`` in one
    pass, without materialising softmax or Sobel images (docs/ops.md §2). With
    ``return_confidence`` also returns the confidence map ``(B, 1, H, W)``."""
    if _backend.use_reference():
        return reference.semantic_consistency_loss(
            depth, depth_sem, semantic, image=image, edges=edges, edge_weight=edge_weight,
            boundary_weight=boundary_weight, ignore_index=ignore_index, ignore_classes=ignore_classes,
            reduction=reduction, return_confidence=return_confidence)
    args = _args.semantic_consistency(depth, depth_sem, semantic, image, edges, edge_weight, boundary_weight,
                                      ignore_index, ignore_classes, reduction)
    if _cpu_training(*args[:2]):
        loss, confidence = ops._semantic_consistency_loss_train(*args)[:2]
    else:
        loss, confidence, _ = ops.semantic_consistency_loss(*args)
    return (loss, confidence) if return_confidence else loss


def instance_stats(instance_ids: Tensor, num_instances: int, depth: Optional[Tensor] = None, *,
                   validate: bool = True) -> InstanceStats:
    """Per instance slot ``(B, K)``: pixel count, tight box, pixel height, and with
    ``depth`` the number of valid (finite, > 0) depths, their mean and their
    lower median (``sorted[(n - 1) // 2]``, NaN if none) (docs/ops.md §3).

    ``instance_ids`` ``(B, H, W)``: ``k`` in ``[0, num_instances)`` is slot ``k``,
    ``-1`` no instance; anything else raises ``ValueError`` unless
    ``validate=False`` (then it is ignored).
    """
    if _backend.use_reference():
        return reference.instance_stats(instance_ids, num_instances, depth, validate=validate)
    a = _args.stats(instance_ids, num_instances, depth, validate)
    count, box, valid_count, mean, median = ops.instance_stats(*a)
    if a[2] is None:
        return InstanceStats.from_box(count, box)
    return InstanceStats.from_box(count, box, valid_count, mean, median)


@_float32_under_autocast
def instance_prior_loss(
    depth: Tensor,
    instance_ids: Tensor,
    heights: Tensor,
    focal: Union[float, Tensor],
    *,
    min_pixels: int = 1,
    max_depth: Optional[float] = None,
    reduction: str = "mean",
    validate: bool = True,
) -> Tensor:
    """L1 between depth and the pinhole pseudo-depth of instances (docs/ops.md §4).

    A slot is used when it has ``>= min_pixels`` pixels, a finite height and
    its image a finite focal; its pseudo-depth is ``z = focal * heights[b, k] / pixel_height`` (clamped to
    ``[0, max_depth]`` if given). ``"sum"``: ``S = sum |depth(p) - z|`` over the
    pixels of used slots; ``"mean"``: ``S / N`` with ``N`` those pixels (0 if
    none); ``"none"``: the ``(B, 1, H, W)`` map of ``|depth(p) - z|``, 0 off those
    pixels. Gradients to ``depth`` and ``heights``.
    """
    if _backend.use_reference():
        return reference.instance_prior_loss(depth, instance_ids, heights, focal, min_pixels=min_pixels,
                                             max_depth=max_depth, reduction=reduction, validate=validate)
    return ops.instance_prior_loss(*_args.prior(depth, instance_ids, heights, focal, min_pixels, max_depth,
                                                reduction, validate))[0]


@_float32_under_autocast
def smoothness_loss(depth: Tensor, image: Tensor, *, reduction: str = "mean") -> Tensor:
    """Edge-aware first-order smoothness (docs/ops.md §5):
    ``mean |dx| exp(-mean_c |dI_x|) + mean |dy| exp(-mean_c |dI_y|)``; ``"none"``:
    the ``(B, 1, H, W)`` map of each pixel's terms ``|dx| wx + |dy| wy`` (to its
    right and below). Gradient to ``depth``."""
    if _backend.use_reference():
        return reference.smoothness_loss(depth, image, reduction=reduction)
    args = _args.smoothness(depth, image, reduction)
    if args[2] == "mean" and _cpu_training(args[0]):
        return ops._smoothness_loss_train(*args[:2])[0]
    return ops.smoothness_loss(*args)


@_float32_under_autocast
def stereo_photometric_loss(depth: Tensor, image: Tensor, image_other: Tensor,
                            focal_baseline: Union[float, Tensor], *, alpha: float = 0.85, ssim: str = "valid",
                            reduction: str = "mean") -> Tensor:
    """Photometric error of ``image`` against ``image_other`` warped by the
    disparity of ``depth`` (docs/ops.md §7):
    ``alpha * mean_{c,q} s_c(q) + (1 - alpha) * mean_{c,p} |image - warped|``, with
    ``warped(y, x) = image_other(y, x - focal_baseline / z)`` (linear along the
    row, zeros outside; ``z = max(depth, 0) + 1e-6``) and ``s = clamp((1 - SSIM)
    / 2, 0, 1)`` over 3x3 windows (``ssim="valid"``: unpadded, ``"reflect"``:
    reflection-padded). ``"sum"`` and ``"none"``: the map ``alpha mean_c s +
    (1 - alpha) mean_c |.|`` summed or per pixel (``s`` = 0 on the unpadded
    border). Gradient to ``depth``."""
    if _backend.use_reference():
        return reference.stereo_photometric_loss(depth, image, image_other, focal_baseline, alpha=alpha, ssim=ssim,
                                                 reduction=reduction)
    return ops.stereo_photometric_loss(*_args.stereo(depth, image, image_other, focal_baseline, alpha, ssim,
                                                     reduction))
