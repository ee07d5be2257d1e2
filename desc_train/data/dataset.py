"""A torch Dataset over one split of the on-disk layout (layout.py), returning
tensors ready for the desc_ops losses, with augmentations that keep the
pinhole geometry honest: a horizontal flip and a crop keep the focal length,
a resize by s scales it by s (so h = f H / Z still holds).

A stereo pair keeps its disparity d = focal_baseline / Z true the same way: the
right view is resized, cropped and flipped with the left one; a resize scales
focal_baseline by the width's factor, a crop keeps it, and a flip negates it
(mirrored, the right camera sits at minus the baseline: labels and depth stay
with the left image, and the mirrored right view is sampled at x + d)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from .layout import (CERTAINTY, RIGHT, DataError, SplitMeta, check_stereo, has_right_views, read_certainty, read_logits,
                     read_meta, read_rgb, read_sample)


@dataclass
class Augment:
    hflip: float = 0.0  # probability of a horizontal flip
    scale: Tuple[float, float] = (1.0, 1.0)  # resize factor range
    crop: Optional[Tuple[int, int]] = None  # (H, W) random crop after resizing


def resize_frame(s: Dict[str, np.ndarray], factor: float) -> Dict[str, np.ndarray]:
    H, W = s["depth"].shape
    size = (max(1, round(W * factor)), max(1, round(H * factor)))
    out = dict(s)
    for key in _images(s):
        out[key] = cv2.resize(s[key], size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
    for key in ("depth", "semantic", "instance"):  # no blending of depths or ids across edges
        out[key] = cv2.resize(s[key], size, interpolation=cv2.INTER_NEAREST) if s[key].dtype != np.int64 else \
            cv2.resize(s[key].astype(np.int32), size, interpolation=cv2.INTER_NEAREST).astype(np.int64)
    if s.get("logits") is not None:
        out["logits"] = cv2.resize(s["logits"].transpose(1, 2, 0), size, interpolation=cv2.INTER_LINEAR)
        out["logits"] = out["logits"].reshape(size[1], size[0], -1).transpose(2, 0, 1)
    out["focal"] = s["focal"] * size[0] / W
    if "focal_baseline" in s:  # a disparity is a width
        out["focal_baseline"] = s["focal_baseline"] * size[0] / W
    return out


def crop_frame(s: Dict[str, np.ndarray], top: int, left: int, h: int, w: int) -> Dict[str, np.ndarray]:
    out = dict(s)
    for key in (*_images(s), "depth", "semantic", "instance"):
        out[key] = s[key][top:top + h, left:left + w]
    if s.get("logits") is not None:
        out["logits"] = s["logits"][:, top:top + h, left:left + w]
    return out


def flip_frame(s: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    out = dict(s)
    for key in (*_images(s), "depth", "semantic", "instance"):
        out[key] = np.ascontiguousarray(s[key][:, ::-1])
    if s.get("logits") is not None:
        out["logits"] = np.ascontiguousarray(s["logits"][:, :, ::-1])
    if "focal_baseline" in s:  # the mirrored right camera sits at -baseline (module docstring)
        out["focal_baseline"] = -s["focal_baseline"]
    return out


def _images(s: Dict) -> Tuple[str, ...]:
    return ("rgb", RIGHT) if RIGHT in s else ("rgb",)


class DepthDataset(Dataset):
    """Frames of one split. Each item: ``image`` (3, H, W) float in [0, 1],
    ``depth`` (1, H, W) metres (0 = no depth), ``semantic`` (H, W) int64 (-1 =
    ignore), ``instance_ids`` (H, W) int64 slots ``0..K-1`` (-1 = none, K =
    ``max_instances``), ``instance_class`` (K,) int64 (-1 for unused slots),
    ``focal`` () float32 pixels, ``name``, and ``logits`` (C, H, W) float32, the
    segmenter's scores, where the split has them: logits/NAME.npy, or else the
    logits its certainty/NAME.npz stands for (``read_certainty_logits``).
    `scores` None: where the frame has them; False: never (nothing read); True:
    every frame must have them (DataError naming the frame).

    Stereo (`stereo` None: when the split has right views, rgb_right/; True: the
    split must have them; False: never) adds ``image_right`` (3, H, W) float in
    [0, 1], the right view, and ``focal_baseline`` () float32, fx times the
    baseline in pixels, so that the left image at (y, x) is the right view at
    (y, x - focal_baseline / depth); kept true under the augmentations (module
    docstring: a flip negates it)."""

    def __init__(self, split_dir: str, *, augment: Optional[Augment] = None, max_instances: int = 32,
                 seed: int = 0, stereo: Optional[bool] = None, scores: Optional[bool] = None):
        self.split_dir = split_dir
        self.scores = scores
        self.meta = read_meta(split_dir)
        self.names = self.meta.names
        if not self.names:
            raise DataError(f"{os.path.join(split_dir, 'meta.json')}: lists no frames")
        self.stereo = has_right_views(split_dir) if stereo is None else bool(stereo)
        if self.stereo:
            if not has_right_views(split_dir):
                raise DataError(f"{split_dir}: has no right views ({RIGHT}/) for stereo: prepare it with --stereo "
                                f"(desc-train prepare kitti or cityscapes, desc-train generate)")
            check_stereo(split_dir, self.meta)
        self.augment = augment or Augment()
        self.max_instances = max_instances
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.names)

    def set_epoch(self, epoch: int) -> None:
        """Augmentations are drawn from (seed, epoch, index): reproducible, and new each epoch."""
        self.epoch = epoch

    def load(self, index: int) -> Dict[str, np.ndarray]:
        name = self.names[index]
        s = read_sample(self.split_dir, name, self.meta)
        s["focal"] = self.meta.frame_focal(name)
        s["name"] = name
        s["logits"] = None if self.scores is False else self.read_scores(name, s["depth"].shape)
        if self.stereo:
            s[RIGHT] = read_rgb(self.split_dir, name, self.meta, RIGHT)
            s["focal_baseline"] = self.meta.frame_fx(name) * self.meta.frame_baseline(name)
        return s

    def read_scores(self, name: str, size) -> Optional[np.ndarray]:
        """A frame's segmenter scores as (C, H, W) float32 logits: logits/NAME.npy, else
        certainty/NAME.npz's (``read_certainty_logits``), else None (a DataError when `scores`)."""
        logits = read_logits(self.split_dir, name, size)
        if logits is None:
            rebuilt = read_certainty_logits(self.split_dir, name, self.meta)
            logits = None if rebuilt is None else rebuilt.numpy()
        if logits is None and self.scores:
            raise DataError(f"{self.split_dir}: frame {name} has no segmenter scores (neither logits/{name}.npy nor "
                            f"{CERTAINTY}/{name}.npz)")
        return logits

    def _augment(self, s, index: int):
        a = self.augment
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if a.scale != (1.0, 1.0):
            s = resize_frame(s, float(rng.uniform(*a.scale)))
        if a.crop is not None:
            H, W = s["depth"].shape
            h, w = min(a.crop[0], H), min(a.crop[1], W)
            s = crop_frame(s, int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1)), h, w)
        if a.hflip > 0 and rng.random() < a.hflip:
            s = flip_frame(s)
        return s

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        s = self._augment(self.load(index), index)
        return to_tensors(s, self.max_instances, where=os.path.join(self.split_dir, "instance", s["name"] + ".png"))


def certainty_logits(prob: torch.Tensor, label: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Logits (..., C, H, W) float32 of certainty maps `prob` and `label` (..., H, W) (layout.py, certainty/)
    whose softmax has its maximum `prob` at class `label`: what ``desc_ops.confidence_map`` reads of a
    segmenter's scores. The label's logit is 0, each other class's log((1 - q) / (q (C - 1))), with q clamped
    to [1/C, 1]: below 1/C (rounding of q = 1/C) the pixel is uncertain either way, and at q = 1 the others
    are floored at float32's smallest normal ratio, as an infinite logit would make the map NaN."""
    tiny = torch.finfo(torch.float32).tiny
    q = prob.float().clamp(1.0 / num_classes, 1.0)
    other = torch.log((1 - q).clamp_min(tiny)) - torch.log(q * (num_classes - 1))
    logits = other.unsqueeze(-3).repeat_interleave(num_classes, dim=-3)
    logits.scatter_(-3, label.long().unsqueeze(-3), 0.0)
    return logits


def read_certainty_logits(split_dir: str, name: str, meta: SplitMeta) -> Optional[torch.Tensor]:
    """The (C, H, W) float32 logits a frame's certainty maps stand for (``certainty_logits``), C the split's
    classes: ``desc_ops.confidence_map(logits[None])`` is the confidence map of the segmenter's full scores.
    None when the split has no certainty maps."""
    stored = read_certainty(split_dir, name, meta)
    if stored is None:
        return None
    prob, label = (torch.from_numpy(a) for a in stored)
    return certainty_logits(prob, label, len(meta.classes))


def to_tensors(s: Dict, max_instances: int, where: str = "instance map") -> Dict:
    import desc_ops

    instance = torch.from_numpy(np.ascontiguousarray(s["instance"]))
    ids, K, original = desc_ops.relabel_instances(instance, background=0, return_ids=True)
    if K > max_instances:
        raise DataError(f"{where}: {K} instances, more than max_instances={max_instances}")
    ids, _, original = desc_ops.relabel_instances(instance, background=0, num_instances=max_instances,
                                                  return_ids=True)
    semantic = torch.from_numpy(np.ascontiguousarray(s["semantic"])).long()
    # The class of a slot: the most frequent label over its pixels.
    flat_ids, flat_sem = ids.reshape(-1), semantic.reshape(-1)
    on = (flat_ids >= 0) & (flat_sem >= 0)
    num_classes = max(1, int(semantic.max().item()) + 1) if semantic.numel() else 1  # unlabelled: all -1
    votes = torch.zeros(max_instances * num_classes, dtype=torch.long)
    votes.scatter_add_(0, flat_ids[on] * num_classes + flat_sem[on], torch.ones(int(on.sum()), dtype=torch.long))
    votes = votes.view(max_instances, num_classes)
    instance_class = torch.where(votes.sum(1) > 0, votes.argmax(1), torch.full((max_instances,), -1))
    out = dict(
        image=_image(s["rgb"]),
        depth=torch.from_numpy(np.ascontiguousarray(s["depth"], dtype=np.float32))[None],
        semantic=semantic,
        instance_ids=ids,
        instance_class=instance_class,
        focal=torch.tensor(float(s["focal"]), dtype=torch.float32),
        name=s["name"],
    )
    if s.get("logits") is not None:
        out["logits"] = torch.from_numpy(np.ascontiguousarray(s["logits"], dtype=np.float32))
    if RIGHT in s:
        out["image_right"] = _image(s[RIGHT])
        out["focal_baseline"] = torch.tensor(float(s["focal_baseline"]), dtype=torch.float32)
    return out


def _image(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float() / 255.0
