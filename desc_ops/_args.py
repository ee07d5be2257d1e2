"""Validation and normalisation of the arguments of every operator.

One function per operator returns the arguments in the order of the operator's
schema (csrc/ops.cpp), checked and converted by the rules of the contract
(`docs/ops.md` §0):

* every tensor on one device, else ``ValueError`` naming both;
* a ``(B, H, W)`` map is taken as ``(B, 1, H, W)``;
* floating arguments are cast to the dtype of the operator's first floating
  argument (the dtype of its result);
* integer maps must be integer (int32 and int64 are kept, other integer
  dtypes become int64), floating ones floating;
* an empty map where a reduction is asked raises ``ValueError``.

Both backends (the C++/CUDA kernels and ``desc_ops.reference``) call these,
so both accept and refuse exactly the same inputs.
"""
from __future__ import annotations

import numbers
import warnings
from typing import Optional, Sequence

import torch
from torch import Tensor

REDUCTIONS = ("none", "mean", "sum")


def _shape(t: Tensor) -> str:
    return f"shape {tuple(t.shape)} and dtype {t.dtype}"


def _tensor(t, name: str) -> Tensor:
    if not isinstance(t, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    return t


def _same_device(ref: Tensor, ref_name: str, t: Optional[Tensor], name: str) -> None:
    if t is not None and t.device != ref.device:
        raise ValueError(f"{name} is on {t.device} but {ref_name} is on {ref.device}")


def _floating(t: Tensor, name: str) -> Tensor:
    if not t.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor, got {_shape(t)}")
    return t


def _integer(t: Tensor, name: str) -> Tensor:
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor, got {_shape(t)}")
    if t.dtype not in (torch.int32, torch.int64):
        t = t.long()
    return t


def _map(t, name: str, like: Optional[Tensor] = None) -> Tensor:
    """A floating per-pixel map as (B, 1, H, W); `like` gives B, H, W."""
    t = _floating(_tensor(t, name), name)
    if t.dim() == 3:
        t = t.unsqueeze(1)
    if t.dim() != 4 or t.shape[1] != 1:
        raise ValueError(f"{name} must have shape (B, 1, H, W) or (B, H, W), got {_shape(t)}")
    if like is not None:
        _same_device(like, "depth", t, name)
        if t.shape[0] != like.shape[0] or t.shape[2:] != like.shape[2:]:
            raise ValueError(
                f"{name} must have shape ({like.shape[0]}, 1, {like.shape[2]}, {like.shape[3]}) "
                f"like depth, got {_shape(t)}"
            )
    return t


def _plane(t, name: str, B: int, H: int, W: int) -> Tensor:
    """An integer (B, H, W) map; (B, 1, H, W) is accepted."""
    t = _integer(_tensor(t, name), name)
    if t.dim() == 4 and t.shape[1] == 1:
        t = t.squeeze(1)
    if t.dim() != 3 or tuple(t.shape) != (B, H, W):
        raise ValueError(f"{name} must have shape ({B}, {H}, {W}), got {_shape(t)}")
    return t


def _is_int64(value) -> bool:
    """An int (not a bool) that the operators' int64 arguments can hold."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and -2**63 <= value < 2**63


def _reduction(reduction, allowed: Sequence[str] = REDUCTIONS) -> str:
    if reduction not in allowed:
        raise ValueError(f"reduction must be one of {', '.join(map(repr, allowed))}, got {reduction!r}")
    return reduction


def _not_empty(t: Tensor, name: str, reduction: str) -> None:
    if reduction != "none" and t.numel() == 0:
        raise ValueError(f"{name} is empty ({_shape(t)}): reduction {reduction!r} needs pixels")


def _number(x, name: str) -> float:
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {x!r}")
    return float(x)


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype every operator accumulates in (kernels, fakes and reference
    alike): float64 for float64 inputs, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _ignore_classes(ignore_classes, device: torch.device) -> Optional[Tensor]:
    if ignore_classes is None:
        return None
    if isinstance(ignore_classes, Tensor):
        t = ignore_classes
    elif isinstance(ignore_classes, numbers.Integral):
        t = torch.tensor([int(ignore_classes)], dtype=torch.int64)
    elif isinstance(ignore_classes, (list, tuple)):
        if not all(isinstance(c, numbers.Integral) for c in ignore_classes):
            raise ValueError(f"ignore_classes must hold integers, got {ignore_classes!r}")
        t = torch.tensor([int(c) for c in ignore_classes], dtype=torch.int64)
    else:
        raise ValueError(f"ignore_classes must be a 1-D integer tensor or a list of ints, got {ignore_classes!r}")
    if t.dim() != 1 or t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"ignore_classes must be a 1-D integer tensor, got {_shape(t)}")
    return t.to(device=device, dtype=torch.int64)


def confidence(semantic, image, edges, edge_weight, boundary_weight, ignore_index, ignore_classes,
               dtype: Optional[torch.dtype] = None):
    """Arguments of confidence_map (docs/ops.md §1). `dtype` forces the floating dtype
    (the fused loss computes the map in the dtype of depth)."""
    semantic = _tensor(semantic, "semantic")
    if semantic.is_floating_point():
        if semantic.dim() != 4 or semantic.shape[1] < 1:
            raise ValueError(f"semantic logits must have shape (B, C, H, W), got {_shape(semantic)}")
        B, H, W = semantic.shape[0], semantic.shape[2], semantic.shape[3]
        dtype = dtype or semantic.dtype
    else:
        semantic = _integer(semantic, "semantic")
        if semantic.dim() == 4 and semantic.shape[1] == 1:
            semantic = semantic.squeeze(1)
        if semantic.dim() != 3:
            raise ValueError(f"semantic labels must have shape (B, H, W), got {_shape(semantic)}")
        B, H, W = semantic.shape
    if image is not None and edges is not None:
        raise ValueError("give image or edges to confidence_map, not both")
    if image is not None:
        image = _floating(_tensor(image, "image"), "image")
        _same_device(semantic, "semantic", image, "image")
        if image.dim() != 4 or image.shape[1] not in (1, 3) or image.shape[0] != B or tuple(image.shape[2:]) != (H, W):
            raise ValueError(f"image must have shape ({B}, 3 or 1, {H}, {W}), got {_shape(image)}")
        dtype = dtype or image.dtype
    if edges is not None:
        edges = _map(edges, "edges")
        _same_device(semantic, "semantic", edges, "edges")
        if edges.shape[0] != B or tuple(edges.shape[2:]) != (H, W):
            raise ValueError(f"edges must have shape ({B}, 1, {H}, {W}), got {_shape(edges)}")
        dtype = dtype or edges.dtype
    dtype = dtype or torch.float32
    if semantic.is_floating_point():
        semantic = semantic.to(dtype)
    image = image.to(dtype) if image is not None else None
    edges = edges.to(dtype) if edges is not None else None
    semantic = semantic.detach()
    image = image.detach() if image is not None else None
    edges = edges.detach() if edges is not None else None
    ignore_classes = _ignore_classes(ignore_classes, semantic.device)
    if not _is_int64(ignore_index):
        raise ValueError(f"ignore_index must be an int (64-bit), got {ignore_index!r}")
    return (semantic, image, edges, _number(edge_weight, "edge_weight"),
            _number(boundary_weight, "boundary_weight"), int(ignore_index), ignore_classes)


def consistency(depth, depth_sem, weight, reduction):
    """Arguments of consistency_loss (docs/ops.md §2)."""
    depth = _map(depth, "depth")
    depth_sem = _map(depth_sem, "depth_sem", like=depth).to(depth.dtype)
    weight = _map(weight, "weight", like=depth).detach().to(depth.dtype)
    reduction = _reduction(reduction)
    _not_empty(depth, "depth", reduction)
    return depth, depth_sem, weight, reduction


def semantic_consistency(depth, depth_sem, semantic, image, edges, edge_weight, boundary_weight,
                         ignore_index, ignore_classes, reduction):
    """Arguments of semantic_consistency_loss (docs/ops.md §2, fused with §1)."""
    depth = _map(depth, "depth")
    depth_sem = _map(depth_sem, "depth_sem", like=depth).to(depth.dtype)
    _same_device(depth, "depth", _tensor(semantic, "semantic"), "semantic")
    conf = confidence(semantic, image, edges, edge_weight, boundary_weight, ignore_index,
                      ignore_classes, dtype=depth.dtype)
    semantic = conf[0]
    B, H, W = depth.shape[0], depth.shape[2], depth.shape[3]
    got = (semantic.shape[0], *semantic.shape[-2:])
    if got != (B, H, W):
        raise ValueError(f"semantic must cover the pixels of depth ({B}, {H}, {W}), got {_shape(semantic)}")
    reduction = _reduction(reduction)
    _not_empty(depth, "depth", reduction)
    return (depth, depth_sem) + conf + (reduction,)


def focal_tensor(focal, B: int, like: Tensor, name: str = "focal") -> Tensor:
    """A per-image number (``focal``, or ``name``) as a (B,) tensor of the
    accumulation dtype of `like`."""
    acc = _acc_dtype(like.dtype)
    if isinstance(focal, Tensor):
        _same_device(like, "depth", focal, name)
        if focal.is_complex() or focal.dtype == torch.bool:
            raise ValueError(f"{name} must be real, got {_shape(focal)}")
        if focal.dim() > 1 or (focal.dim() == 1 and focal.shape[0] not in (1, B)):
            raise ValueError(f"{name} must be a scalar or have shape ({B},), got {_shape(focal)}")
        return focal.detach().to(acc).reshape(-1).expand(B)
    return torch.full((B,), _number(focal, name), dtype=acc, device=like.device)


def _num_instances(num_instances) -> int:
    if not _is_int64(num_instances) or num_instances < 0:
        raise ValueError(f"num_instances must be an int >= 0 (64-bit), got {num_instances!r}")
    return int(num_instances)


def check_ids(ids: Tensor, num_instances: int, validate) -> bool:
    """Every id is -1 or a slot in [0, num_instances) (docs/ops.md §3): one host
    read. Returns whether the operator must still check them: under
    torch.compile, which cannot trace a host read, the operator does (and a bad
    id raises its RuntimeError)."""
    if not validate:
        return False
    if torch.compiler.is_compiling():
        return True
    if ids.numel():
        lo, hi = torch.aminmax(ids)
        # One host read: on CUDA both numbers in one copy (a synchronisation each otherwise).
        lo, hi = (lo.item(), hi.item()) if ids.device.type == "cpu" else torch.stack((lo, hi)).tolist()
        if lo < -1 or hi >= num_instances:
            raise ValueError(f"instance_ids must be -1 (no instance) or a slot in [0, {num_instances}), "
                             f"found values in [{lo}, {hi}]")
        if lo >= 0:
            # Every pixel an instance: what a panoptic map with 0 = background
            # looks like (its background becomes slot 0, a huge instance);
            # real instance masks never cover a whole batch. The same read.
            warnings.warn(f"instance_ids: no pixel of the batch is -1 (no instance), so every pixel belongs to "
                          f"an instance; if 0 (or another id) means background, map it to -1 first, e.g. "
                          f"relabel_instances(panoptic_ids, background=0)", stacklevel=4)
    return False


def stats(instance_ids, num_instances, depth, validate):
    """Arguments of instance_stats (docs/ops.md §3), the ids checked here when
    ``validate`` (check_ids)."""
    ids = _integer(_tensor(instance_ids, "instance_ids"), "instance_ids")
    if ids.dim() == 4 and ids.shape[1] == 1:
        ids = ids.squeeze(1)
    if ids.dim() != 3:
        raise ValueError(f"instance_ids must have shape (B, H, W), got {_shape(ids)}")
    if depth is not None:
        depth = _map(depth, "depth")
        _same_device(ids, "instance_ids", depth, "depth")
        if depth.shape[0] != ids.shape[0] or tuple(depth.shape[2:]) != tuple(ids.shape[1:]):
            raise ValueError(
                f"depth must have shape ({ids.shape[0]}, 1, {ids.shape[1]}, {ids.shape[2]}) "
                f"like instance_ids, got {_shape(depth)}")
        depth = depth.detach()
    K = _num_instances(num_instances)
    return ids, K, depth, check_ids(ids, K, validate)


def prior(depth, instance_ids, heights, focal, min_pixels, max_depth, reduction, validate):
    """Arguments of instance_prior_loss (docs/ops.md §4), the ids checked here
    when ``validate`` (check_ids)."""
    depth = _map(depth, "depth")
    B, H, W = depth.shape[0], depth.shape[2], depth.shape[3]
    ids = _plane(instance_ids, "instance_ids", B, H, W).detach()
    _same_device(depth, "depth", ids, "instance_ids")
    heights = _floating(_tensor(heights, "heights"), "heights")
    _same_device(depth, "depth", heights, "heights")
    if heights.dim() != 2 or heights.shape[0] != B:
        raise ValueError(f"heights must have shape ({B}, K), got {_shape(heights)}")
    if not _is_int64(min_pixels):
        raise ValueError(f"min_pixels must be an int (64-bit), got {min_pixels!r}")
    if max_depth is not None:
        max_depth = _number(max_depth, "max_depth")
        if not max_depth >= 0:
            raise ValueError(f"max_depth must be >= 0, got {max_depth!r}")
    reduction = _reduction(reduction)
    _not_empty(depth, "depth", reduction)
    return (depth, ids, heights.to(depth.dtype), focal_tensor(focal, B, depth), int(min_pixels),
            max_depth, reduction, check_ids(ids, heights.shape[1], validate))


def smoothness(depth, image, reduction="mean"):
    """Arguments of smoothness_loss (docs/ops.md §5)."""
    depth = _map(depth, "depth")
    image = _floating(_tensor(image, "image"), "image")
    _same_device(depth, "depth", image, "image")
    if image.dim() == 3:
        image = image.unsqueeze(1)
    if image.dim() != 4 or image.shape[0] != depth.shape[0] or image.shape[1] < 1 or image.shape[2:] != depth.shape[2:]:
        raise ValueError(
            f"image must have shape ({depth.shape[0]}, C, {depth.shape[2]}, {depth.shape[3]}), got {_shape(image)}")
    reduction = _reduction(reduction, ("mean", "none"))
    _not_empty(depth, "depth", reduction)
    return depth, image.detach().to(depth.dtype), reduction


SSIM_MODES = ("valid", "reflect")


def stereo(depth, image, image_other, focal_baseline, alpha=0.85, ssim="valid", reduction="mean"):
    """Arguments of stereo_photometric_loss (docs/ops.md §7)."""
    depth = _map(depth, "depth")
    B, H, W = depth.shape[0], depth.shape[2], depth.shape[3]
    images = []
    for t, name in ((image, "image"), (image_other, "image_other")):
        t = _floating(_tensor(t, name), name)
        _same_device(depth, "depth", t, name)
        if t.dim() != 4 or t.shape[0] != B or t.shape[1] < 1 or t.shape[2:] != depth.shape[2:]:
            raise ValueError(f"{name} must have shape ({B}, C, {H}, {W}), got {_shape(t)}")
        images.append(t.detach().to(depth.dtype))
    if images[1].shape[1] != images[0].shape[1]:
        raise ValueError(f"image_other must have shape {tuple(images[0].shape)} like image, "
                         f"got {_shape(image_other)}")
    alpha = _number(alpha, "alpha")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    if ssim not in SSIM_MODES:
        raise ValueError(f"ssim must be one of {', '.join(map(repr, SSIM_MODES))}, got {ssim!r}")
    least = 3 if ssim == "valid" else 2
    if B and (H < least or W < least):
        raise ValueError(f"ssim={ssim!r} needs H and W of at least {least} (its 3x3 windows), "
                         f"got depth of {_shape(depth)}")
    reduction = _reduction(reduction)
    _not_empty(depth, "depth", reduction)
    return (depth, images[0], images[1], focal_tensor(focal_baseline, B, depth, "focal_baseline"), alpha, ssim,
            reduction)


__all__ = ["confidence", "consistency", "semantic_consistency", "stats", "prior", "smoothness", "stereo",
           "focal_tensor"]
