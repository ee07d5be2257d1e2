"""Instance helpers that need no kernel: the ``InstanceStats`` record,
``instance_heights`` (docs/ops.md §3) and ``relabel_instances`` (docs/ops.md §6)."""
from __future__ import annotations

from typing import NamedTuple, Optional, Tuple, Union

import torch
from torch import Tensor

from . import _args


class InstanceStats(NamedTuple):
    """Per-slot statistics of an instance map, every field ``(B, K)``.

    ``valid_count``, ``depth_mean`` and ``depth_median`` are ``None`` when
    ``instance_stats`` was called without depth.
    """

    count: Tensor
    y_min: Tensor
    y_max: Tensor
    x_min: Tensor
    x_max: Tensor
    pixel_height: Tensor
    valid_count: Optional[Tensor] = None
    depth_mean: Optional[Tensor] = None
    depth_median: Optional[Tensor] = None

    @staticmethod
    def from_box(count: Tensor, box: Tensor, valid_count=None, mean=None, median=None) -> "InstanceStats":
        """From counts and a ``(B, K, 4)`` box of (y_min, y_max, x_min, x_max)."""
        y_min, y_max, x_min, x_max = box.unbind(-1)
        pixel_height = torch.where(count > 0, y_max - y_min + 1, torch.zeros_like(count))
        return InstanceStats(count, y_min, y_max, x_min, x_max, pixel_height, valid_count, mean, median)


def instance_heights(stats: InstanceStats, focal: Union[float, Tensor]) -> Tensor:
    """Metric height of every instance, ``depth_median * pixel_height / focal_b``
    (docs/ops.md §3, the pinhole relation ``h_pixels = f H / Z``); NaN where the
    median is NaN. ``focal`` is a scalar or ``(B,)``, in pixels."""
    if not isinstance(stats, InstanceStats):
        raise ValueError(f"stats must be the InstanceStats of instance_stats, got {type(stats).__name__}")
    if stats.depth_median is None:
        raise ValueError("stats has no depth: call instance_stats(instance_ids, num_instances, depth)")
    median = stats.depth_median
    B = median.shape[0]
    f = _args.focal_tensor(focal, B, median)
    acc = f.dtype
    return (median.to(acc) * stats.pixel_height.to(acc) / f[:, None]).to(median.dtype)


def relabel_instances(
    panoptic_ids: Tensor,
    *,
    background: int = 0,
    num_instances: Optional[int] = None,
    return_ids: bool = False,
) -> Union[Tuple[Tensor, int], Tuple[Tensor, int, Tensor]]:
    """Maps arbitrary per-image instance ids to compact slots ``0..K-1``.

    ``panoptic_ids`` ``(B, H, W)`` (or ``(H, W)``) integer: every distinct value
    of an image other than ``background`` and negative values is one instance;
    slots are given in ascending order of the ids, per image. ``K`` is the
    largest number of instances in one image, or ``num_instances`` when given
    (``ValueError`` if an image has more). Returns ``(instance_ids, K)`` with
    ``instance_ids`` int64, ``-1`` where there is no instance, and with
    ``return_ids`` also the ``(B, K)`` original id of every slot (``-1`` for
    unused slots).
    """
    if not isinstance(panoptic_ids, Tensor):
        raise ValueError(f"panoptic_ids must be a torch.Tensor, got {type(panoptic_ids).__name__}")
    ids = _args._integer(panoptic_ids, "panoptic_ids").long()
    squeeze = ids.dim() == 2
    if squeeze:
        ids = ids.unsqueeze(0)
    if ids.dim() != 3:
        raise ValueError(f"panoptic_ids must have shape (B, H, W) or (H, W), got {tuple(panoptic_ids.shape)}")
    B = ids.shape[0]
    flat = ids.reshape(B, ids.shape[1] * ids.shape[2])
    member = (flat != background) & (flat >= 0)
    # The distinct (image, id) pairs of the instance pixels, sorted by image,
    # then id: torch.unique over pairs (a key such as image * span + id would
    # overflow int64 for ids near 2^63).
    image_of = torch.arange(B, device=ids.device)[:, None].expand_as(flat)
    pairs, inverse = torch.unique(torch.stack([image_of[member], flat[member]]), dim=1, return_inverse=True)
    per_image = torch.bincount(pairs[0], minlength=B)
    first = torch.cumsum(per_image, 0) - per_image
    K = int(per_image.max().item()) if B else 0
    if num_instances is not None:
        if num_instances < K:
            raise ValueError(f"num_instances={num_instances} but an image of panoptic_ids has {K} instances")
        K = int(num_instances)
    slots = torch.full_like(flat, -1)
    slots[member] = inverse - first[image_of[member]]
    instance_ids = slots.reshape(ids.shape)
    if squeeze:
        instance_ids = instance_ids[0]
    if not return_ids:
        return instance_ids, K
    original = torch.full((B, K), -1, dtype=torch.int64, device=ids.device)
    original[pairs[0], torch.arange(pairs.shape[1], device=ids.device) - first[pairs[0]]] = pairs[1]
    return instance_ids, K, (original[0] if squeeze else original)
