"""The on-disk layout every dataset of desc_train uses.

    ROOT/SPLIT/meta.json           calibration and metadata (see SplitMeta)
    ROOT/SPLIT/rgb/NAME.png        8-bit RGB
    ROOT/SPLIT/depth/NAME.png      16-bit, metres * depth_scale (default 256); 0 = no depth
                                   (or depth/NAME.npy, float32 metres, NaN or 0 = no depth)
    ROOT/SPLIT/semantic/NAME.png   8-bit class ids; 255 = ignore
    ROOT/SPLIT/instance/NAME.png   16-bit instance ids, unique per image; 0 = no instance
    ROOT/SPLIT/logits/NAME.npy     optional: (C, H, W) float16 segmenter logits
    ROOT/SPLIT/gt/NAME.npy         optional: float32 metres at the source's native size
                                   (0 = none), the evaluation ground truth of real test splits

meta.json: {"domain", "depth_scale", "classes", "instance_classes", "focal" (pixels, the
default of every frame), "baseline" (metres, or null), "image_size" [H, W],
"frames": {NAME: {"focal": ...}}} (a frame's own focal overrides the default). Splits
that `desc-train prepare` converts from real datasets add: "has_depth" (false: no depth/
folder, depth reads as 0), "has_labels" (false: no semantic/ and instance/ yet; they read
as ignore and no instance), "max_depth" (metres the depth was clamped to), "max_instances"
(the most instances of a frame), "dataset" (provenance: name, version, root, converter
arguments, list hash), "label_source", "eval" (the evaluation protocol of a test split:
ground-truth kind, crop, caps), and per frame "K" [fx, fy, cx, cy] at the stored size
("focal" is fy: h = f H / Z counts rows), "orig_size" [H0, W0] and "src" (the source
file, relative to the dataset root).
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np

from ..errors import UserError

DEPTH_SCALE = 256.0


class DataError(UserError):
    """A file of a dataset is missing, unreadable or inconsistent; the message names it."""


@dataclass
class SplitMeta:
    domain: str
    classes: List[str]
    instance_classes: List[int]
    focal: float
    image_size: List[int]
    depth_scale: float = DEPTH_SCALE
    baseline: Optional[float] = None
    frames: Dict[str, Dict] = field(default_factory=dict)
    has_depth: bool = True
    has_labels: bool = True
    max_depth: Optional[float] = None
    max_instances: Optional[int] = None
    dataset: Optional[Dict] = None
    label_source: Optional[Dict] = None
    eval: Optional[Dict] = None

    def frame_focal(self, name: str) -> float:
        return float(self.frames.get(name, {}).get("focal", self.focal))

    @property
    def names(self) -> List[str]:
        return sorted(self.frames)


def meta_path(split_dir: str) -> str:
    return os.path.join(split_dir, "meta.json")


def read_meta(split_dir: str) -> SplitMeta:
    path = meta_path(split_dir)
    try:
        with open(path) as f:
            raw = json.load(f)
    except FileNotFoundError:
        raise DataError(f"{path}: missing (every split needs a meta.json)") from None
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: unreadable: {err}") from None
    missing = [k for k in ("domain", "classes", "instance_classes", "focal", "image_size") if k not in raw]
    if missing:
        raise DataError(f"{path}: lacks {', '.join(missing)}")
    known = {k: raw[k] for k in SplitMeta.__dataclass_fields__ if k in raw}
    return SplitMeta(**known)


def write_meta(split_dir: str, meta: SplitMeta) -> None:
    os.makedirs(split_dir, exist_ok=True)
    tmp = meta_path(split_dir) + ".tmp"
    with open(tmp, "w") as f:
        json.dump(asdict(meta), f, indent=1)
    os.replace(tmp, meta_path(split_dir))


def _write_png(path: str, array: np.ndarray) -> None:
    if not cv2.imwrite(path, array):
        raise DataError(f"{path}: could not be written")


def write_sample(split_dir: str, name: str, rgb: Optional[np.ndarray], depth: Optional[np.ndarray] = None,
                 semantic: Optional[np.ndarray] = None, instance: Optional[np.ndarray] = None,
                 depth_scale: float = DEPTH_SCALE) -> None:
    """rgb (H, W, 3) uint8; depth (H, W) metres (<= 0 or non-finite: none);
    semantic (H, W) class ids (255 ignore); instance (H, W) ids (0 none). A map
    given as None is not written."""
    def put(folder: str, array: np.ndarray) -> None:
        os.makedirs(os.path.join(split_dir, folder), exist_ok=True)
        _write_png(os.path.join(split_dir, folder, name + ".png"), array)

    if rgb is not None:
        put("rgb", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if depth is not None:
        d = np.where(np.isfinite(depth) & (depth > 0), depth, 0.0) * depth_scale
        put("depth", np.clip(np.round(d), 0, 65535).astype(np.uint16))
    if semantic is not None:
        put("semantic", semantic.astype(np.uint8))
    if instance is not None:
        put("instance", instance.astype(np.uint16))


def gt_path(split_dir: str, name: str) -> str:
    return os.path.join(split_dir, "gt", name + ".npy")


def write_gt(split_dir: str, name: str, gt: np.ndarray) -> None:
    """A frame's evaluation ground truth, float32 metres at its native size (0 = none)."""
    os.makedirs(os.path.join(split_dir, "gt"), exist_ok=True)
    gt = np.where(np.isfinite(gt) & (gt > 0), gt, 0).astype(np.float32)
    tmp = gt_path(split_dir, name) + ".tmp.npy"
    np.save(tmp, gt)
    os.replace(tmp, gt_path(split_dir, name))


def read_gt(split_dir: str, name: str) -> Optional[np.ndarray]:
    """The native-size ground truth of a frame (float32 metres, 0 = none), or None
    when the split has none."""
    path = gt_path(split_dir, name)
    if not os.path.exists(path):
        return None
    try:
        gt = np.load(path)
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: unreadable ground truth: {err}") from None
    if gt.ndim != 2 or not np.issubdtype(gt.dtype, np.floating):
        raise DataError(f"{path}: ground truth must be a 2-D float array of metres, got {gt.dtype} {gt.shape}")
    return np.where(np.isfinite(gt) & (gt > 0), gt, 0).astype(np.float32)


def write_logits(split_dir: str, name: str, logits: np.ndarray) -> None:
    os.makedirs(os.path.join(split_dir, "logits"), exist_ok=True)
    np.save(os.path.join(split_dir, "logits", name + ".npy"), logits.astype(np.float16))


def read_logits(split_dir: str, name: str, size) -> Optional[np.ndarray]:
    """The (C, H, W) float32 logits of a frame, or None when the split has none."""
    path = os.path.join(split_dir, "logits", name + ".npy")
    if not os.path.exists(path):
        return None
    try:
        logits = np.load(path).astype(np.float32)
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: unreadable logits: {err}") from None
    if logits.ndim != 3 or tuple(logits.shape[1:]) != tuple(size):
        raise DataError(f"{path}: logits of shape {logits.shape}, expected (C, {size[0]}, {size[1]})")
    return logits


def _read_png(path: str, flags: int, size: Optional[Sequence[int]], what: str) -> np.ndarray:
    if not os.path.exists(path):
        raise DataError(f"{path}: missing {what}")
    array = cv2.imread(path, flags)
    if array is None:
        raise DataError(f"{path}: not a readable PNG ({what})")
    if size is not None and tuple(array.shape[:2]) != tuple(size):
        raise DataError(f"{path}: {what} is {array.shape[1]}x{array.shape[0]}, expected {size[1]}x{size[0]}")
    return array


def read_sample(split_dir: str, name: str, meta: SplitMeta) -> Dict[str, np.ndarray]:
    """The arrays of one frame: rgb (H, W, 3) uint8, depth (H, W) float32 metres
    (0 = none, and everywhere in a split without depth), semantic (H, W) int64 (-1 =
    ignore, everywhere in a split without labels), instance (H, W) int64 (0 = none)."""
    bgr = _read_png(os.path.join(split_dir, "rgb", name + ".png"), cv2.IMREAD_COLOR, None, "RGB image")
    size = bgr.shape[:2]
    if bgr.ndim != 3 or bgr.shape[2] != 3:
        raise DataError(f"{os.path.join(split_dir, 'rgb', name + '.png')}: not a 3-channel image")
    npy = os.path.join(split_dir, "depth", name + ".npy")
    if not meta.has_depth:
        depth = np.zeros(size, np.float32)
    elif os.path.exists(npy):
        try:
            depth = np.load(npy).astype(np.float32)
        except (OSError, ValueError) as err:
            raise DataError(f"{npy}: unreadable depth: {err}") from None
        if depth.shape != size:
            raise DataError(f"{npy}: depth is {depth.shape}, expected {size}")
        depth = np.where(np.isfinite(depth) & (depth > 0), depth, 0).astype(np.float32)
    else:
        raw = _read_png(os.path.join(split_dir, "depth", name + ".png"), cv2.IMREAD_UNCHANGED, size, "depth")
        if raw.dtype != np.uint16 or raw.ndim != 2:
            raise DataError(f"{os.path.join(split_dir, 'depth', name + '.png')}: depth must be a 16-bit "
                            f"single-channel PNG, got {raw.dtype} with shape {raw.shape}")
        depth = raw.astype(np.float32) / meta.depth_scale
    if not meta.has_labels:
        return dict(rgb=cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), depth=depth, semantic=np.full(size, -1, np.int64),
                    instance=np.zeros(size, np.int64))
    semantic = _read_png(os.path.join(split_dir, "semantic", name + ".png"), cv2.IMREAD_UNCHANGED, size,
                         "semantic labels")
    if semantic.ndim != 2:
        raise DataError(f"{os.path.join(split_dir, 'semantic', name + '.png')}: labels must be single-channel")
    semantic = semantic.astype(np.int64)
    semantic[semantic == 255] = -1
    instance = _read_png(os.path.join(split_dir, "instance", name + ".png"), cv2.IMREAD_UNCHANGED, size,
                         "instance ids")
    if instance.ndim != 2:
        raise DataError(f"{os.path.join(split_dir, 'instance', name + '.png')}: instance ids must be single-channel")
    return dict(rgb=cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), depth=depth, semantic=semantic,
                instance=instance.astype(np.int64))
