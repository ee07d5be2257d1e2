"""``nn.Module`` forms of the losses, and ``DESCLoss``, the target-domain
objective of DESC that the trainer uses."""
from __future__ import annotations

from typing import Dict, NamedTuple, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from . import functional as F

__all__ = ["ConsistencyLoss", "SemanticConsistencyLoss", "InstancePriorLoss", "SmoothnessLoss", "DESCLoss",
           "DESCLossOutput"]


class ConsistencyLoss(nn.Module):
    """``consistency_loss(depth, depth_sem, weight)`` (spec §2)."""

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, depth: Tensor, depth_sem: Tensor, weight: Tensor) -> Tensor:
        return F.consistency_loss(depth, depth_sem, weight, reduction=self.reduction)


class SemanticConsistencyLoss(nn.Module):
    """Confidence-weighted consistency, fused (spec §2 with §1): the options of
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
    """``instance_prior_loss`` (spec §4) with fixed ``min_pixels`` and ``max_depth``."""

    def __init__(self, *, min_pixels: int = 1, max_depth: Optional[float] = None, reduction: str = "mean"):
        super().__init__()
        self.min_pixels = min_pixels
        self.max_depth = max_depth
        self.reduction = reduction

    def forward(self, depth: Tensor, instance_ids: Tensor, heights: Tensor, focal: Union[float, Tensor]) -> Tensor:
        return F.instance_prior_loss(depth, instance_ids, heights, focal, min_pixels=self.min_pixels,
                                     max_depth=self.max_depth, reduction=self.reduction)


class SmoothnessLoss(nn.Module):
    """Edge-aware smoothness (spec §5)."""

    def forward(self, depth: Tensor, image: Tensor) -> Tensor:
        return F.smoothness_loss(depth, image)


class DESCLossOutput(NamedTuple):
    total: Tensor
    terms: Dict[str, Tensor]


class DESCLoss(nn.Module):
    """The target-domain objective of DESC on one scale:

    ``consistency_weight * L_cons + instance_weight * L_inst + smoothness_weight * L_smooth``

    * ``L_cons``: the confidence-weighted ``semantic_consistency_loss`` between
      the RGB depth and the semantic depth (or, with ``confidence=False``, the
      plain mean ``|depth - depth_sem|`` of the official code, for ablations);
    * ``L_inst``: ``instance_prior_loss`` of the depth against the pinhole
      pseudo-depth of predicted instance heights;
    * ``L_smooth``: the edge-aware ``smoothness_loss`` of the depth.

    A term with weight 0 is skipped, so each can be switched off. ``forward``
    returns the total and every computed term (detached) by name.
    """

    def __init__(self, *, consistency_weight: float = 1.0, instance_weight: float = 1.0,
                 smoothness_weight: float = 0.01, confidence: bool = True, edge_weight: float = 1.0,
                 boundary_weight: float = 0.5, ignore_index: int = -1,
                 ignore_classes: Optional[Sequence[int]] = None, min_pixels: int = 1,
                 max_depth: Optional[float] = None):
        super().__init__()
        self.consistency_weight = float(consistency_weight)
        self.instance_weight = float(instance_weight)
        self.smoothness_weight = float(smoothness_weight)
        self.confidence = confidence
        self.consistency = SemanticConsistencyLoss(edge_weight=edge_weight, boundary_weight=boundary_weight,
                                                   ignore_index=ignore_index, ignore_classes=ignore_classes)
        self.instance_prior = InstancePriorLoss(min_pixels=min_pixels, max_depth=max_depth)
        self.smoothness = SmoothnessLoss()

    def forward(self, depth: Tensor, *, depth_sem: Optional[Tensor] = None, semantic: Optional[Tensor] = None,
                image: Optional[Tensor] = None, edges: Optional[Tensor] = None,
                instance_ids: Optional[Tensor] = None, heights: Optional[Tensor] = None,
                focal: Optional[Union[float, Tensor]] = None) -> DESCLossOutput:
        terms: Dict[str, Tensor] = {}
        total = depth.new_zeros(())
        if self.consistency_weight:
            if depth_sem is None:
                raise ValueError("DESCLoss: depth_sem is needed for the consistency term")
            if self.confidence:
                if semantic is None:
                    raise ValueError("DESCLoss: semantic is needed for the confidence-weighted consistency term")
                term = self.consistency(depth, depth_sem, semantic, image=image if edges is None else None,
                                        edges=edges)
            else:
                term = F.consistency_loss(depth, depth_sem, torch.ones_like(depth))
            terms["consistency"] = term
            total = total + self.consistency_weight * term
        if self.instance_weight:
            if instance_ids is None or heights is None or focal is None:
                raise ValueError("DESCLoss: instance_ids, heights and focal are needed for the instance term")
            term = self.instance_prior(depth, instance_ids, heights, focal)
            terms["instance_prior"] = term
            total = total + self.instance_weight * term
        if self.smoothness_weight:
            if image is None:
                raise ValueError("DESCLoss: image is needed for the smoothness term")
            term = self.smoothness(depth, image)
            terms["smoothness"] = term
            total = total + self.smoothness_weight * term
        return DESCLossOutput(total, {k: v.detach() for k, v in terms.items()})
