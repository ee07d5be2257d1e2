"""Mask2Former's inference from its raw outputs: the panoptic fusion and the semantic scores, as the reference
implementation computes them (facebookresearch/Mask2Former, ``MaskFormer.panoptic_inference`` and
``semantic_inference``), for any model that predicts, per query q, class logits over C classes and a last
"no object" class, ``class_logits`` (Q, C + 1), and mask logits ``mask_logits`` (Q, H, W).

Why not transformers' ``post_process_panoptic_segmentation``: it resizes the masks to 384x384 first (a
distortion for 1:3.3 street frames), gives each pixel to the best kept query even where that query's mask is
below 0.5 (so a dropped car becomes road, where Mask2Former leaves it void), and lists a merged stuff segment
once per query. Only plain torch is used here.
"""
from __future__ import annotations

from typing import List, NamedTuple, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

OVERLAP_THRESHOLD = 0.8  # Mask2Former's COCO panoptic setting (MODEL.MASK_FORMER.TEST.OVERLAP_THRESHOLD)
MASK_THRESHOLD = 0.5  # a query's mask holds the pixels where its sigmoid is at least this


class PanopticSegment(NamedTuple):
    id: int  # its id in the segment map, 1..N in the order of the queries that made them (0 is void)
    label: int  # class id, 0..C-1
    score: float  # the class probability of the (first) query of the segment


def resize_masks(mask_logits: Tensor, size: Tuple[int, int]) -> Tensor:
    """Mask logits (..., h, w) resized bilinearly to `size` (H, W), once, as logits (before the sigmoid)."""
    if tuple(mask_logits.shape[-2:]) == tuple(size):
        return mask_logits
    lead = mask_logits.shape[:-2]
    flat = mask_logits.reshape(1, -1, *mask_logits.shape[-2:])
    return F.interpolate(flat, size=tuple(size), mode="bilinear", align_corners=False).reshape(*lead, *size)


def panoptic_inference(class_logits: Tensor, mask_logits: Tensor, *, num_things: int, score_thresh: float = 0.8,
                       overlap_thresh: float = OVERLAP_THRESHOLD) -> Tuple[Tensor, List[PanopticSegment]]:
    """The panoptic segmentation of one image: (segment ids (H, W) int32, 0 = void; its segments).

    A query's class and score are the argmax and maximum of the softmax of its logits over all C + 1 classes;
    it is kept when its class is not "no object" and its score exceeds `score_thresh` (at a threshold of 0.5 or
    more this is the best real class, scoring above it). Each pixel goes to the kept query that maximises
    score x sigmoid(mask), the first one among ties, but only if that query's own mask holds the pixel
    (sigmoid >= 0.5); otherwise it stays void. A kept query makes no segment if no pixel goes to it, or if
    the pixels that maximise it, whatever its mask there, are less than `overlap_thresh` of its mask's
    pixels (it is mostly hidden behind others). Stuff queries (class >= `num_things`) of one class make one
    segment, with the first one's id and score; things make one segment each.
    """
    num_classes = class_logits.shape[-1] - 1
    scores, labels = class_logits.float().softmax(-1).max(-1)
    keep = (labels != num_classes) & (scores > score_thresh)
    scores, labels = scores[keep], labels[keep]
    masks = mask_logits[keep].float().sigmoid()
    seg = torch.zeros(mask_logits.shape[-2:], dtype=torch.int32, device=mask_logits.device)
    if len(scores) == 0:
        return seg, []
    owner = (scores[:, None, None] * masks).argmax(0)  # the first maximum, as in the reference
    inside = masks >= MASK_THRESHOLD
    inside_owner = inside.gather(0, owner[None])[0]  # the pixel lies in its owner's mask
    owned_area = torch.bincount(owner.flatten(), minlength=len(scores)).tolist()
    final_area = torch.bincount(owner[inside_owner], minlength=len(scores)).tolist()
    mask_area = inside.sum((1, 2)).tolist()

    segments: List[PanopticSegment] = []
    ids = [0] * len(scores)  # the segment id of each kept query; 0: it makes none
    stuff = {}  # class -> its segment's id
    for k, (label, score) in enumerate(zip(labels.tolist(), scores.tolist())):
        if mask_area[k] == 0 or final_area[k] == 0:  # no mask, or no pixel (then none owned either)
            continue
        if owned_area[k] / mask_area[k] < overlap_thresh:
            continue
        if label >= num_things and label in stuff:
            ids[k] = stuff[label]
            continue
        ids[k] = len(segments) + 1
        if label >= num_things:
            stuff[label] = ids[k]
        segments.append(PanopticSegment(ids[k], label, score))
    lut = torch.tensor(ids, dtype=torch.int32, device=seg.device)
    return torch.where(inside_owner, lut[owner], seg), segments


def semantic_certainty(class_logits: Tensor, mask_logits: Tensor) -> Tuple[Tensor, Tensor]:
    """(prob (H, W) float32, label (H, W) int64): at each pixel the largest probability of Mask2Former's
    semantic scores ``einsum("qc,qhw->chw", softmax(class_logits)[:, :C], sigmoid(mask_logits))``, normalised
    over the C classes, and the class that has it (the first among ties). A pixel whose scores all underflow
    to 0 is uniform: prob 1/C, class 0."""
    probs = class_logits.float().softmax(-1)[:, :-1]
    semseg = torch.einsum("qc,qhw->chw", probs, mask_logits.float().sigmoid())
    best, label = semseg.max(0)
    total = semseg.sum(0)
    prob = torch.where(total > 0, best / total.clamp_min(torch.finfo(torch.float32).tiny),
                       torch.full_like(best, 1.0 / probs.shape[-1]))
    return prob, label
