"""The on-disk layout every dataset of desc_train uses.

    ROOT/SPLIT/meta.json           calibration and metadata (see SplitMeta)
    ROOT/SPLIT/rgb/NAME.png        8-bit RGB
    ROOT/SPLIT/rgb_right/NAME.png  optional: the other view of a rectified stereo pair, 8-bit RGB of
                                   the same size, from a camera "baseline" metres to the right
                                   (same intrinsics: a point at depth Z lies f_x baseline / Z
                                   pixels further left in it)
    ROOT/SPLIT/depth/NAME.png      16-bit, metres * depth_scale (default 256); 0 = no depth
                                   (or depth/NAME.npy, float32 metres, NaN or 0 = no depth)
    ROOT/SPLIT/semantic/NAME.png   8-bit class ids; 255 = ignore
    ROOT/SPLIT/instance/NAME.png   16-bit instance ids, unique per image; 0 = no instance
    ROOT/SPLIT/logits/NAME.npy     optional: (C, H, W) float16 segmenter logits
    ROOT/SPLIT/certainty/NAME.npz  optional: the segmenter's certainty, in 3 bytes a pixel (below)
    ROOT/SPLIT/gt/NAME.npy         optional: float32 metres at the source's native size
                                   (0 = none), the evaluation ground truth of real test splits

meta.json: {"domain", "depth_scale", "classes", "instance_classes", "focal" (pixels, the
default of every frame), "baseline" (metres between the cameras of a stereo pair, the
default of every frame, or null), "image_size" [H, W], "frames": {NAME: {"focal": ...,
"baseline": ...}}} (a frame's own focal or baseline overrides the default; a split with
rgb_right/ must give every frame a baseline, and every frame a right view). Splits
that `desc-train prepare` converts from real datasets add: "has_depth" (false: no depth/
folder, depth reads as 0), "has_labels" (false: no semantic/ and instance/ yet; they read
as ignore and no instance), "max_depth" (metres the depth was clamped to), "max_instances"
(the most instances of a frame), "dataset" (provenance: name, version, root, converter
arguments, list hash), "label_source", "eval" (the evaluation protocol of a test split:
ground-truth kind, crop, caps), and per frame "K" [fx, fy, cx, cy] at the stored size
("focal" is fy: h = f H / Z counts rows), "orig_size" [H0, W0] and "src" (the source
file, relative to the dataset root). read_meta and write_meta refuse a field of another
kind (a list where a number belongs, a focal length or baseline that is not finite and above 0), naming
it; the frames' maps must have image_size, and their class ids be classes of the split.

certainty/NAME.npz (``prepare segment --logits``) holds what the confidence map (docs/ops.md §1) reads of a
segmenter's per-class scores, instead of the scores themselves (133 float16 maps are 33 MB a 192x640 frame): at
each pixel the largest class probability ``q`` of the normalised scores, as ``prob`` (H, W) uint16 =
round(65535 q), and the class that has it, as ``label`` (H, W) uint8. The confidence map of these is that of
the full scores up to the rounding of q (at most 0.5 / 65535 in q, 7.7e-6 in its semantic term), ignore_classes
included: ``read_certainty_logits`` (dataset.py) rebuilds logits of the split's C classes whose softmax has its
maximum q at that class. What is lost is the rest of the distribution (the runner-up classes), which the
confidence map does not read.
"""
from __future__ import annotations

import json
import math
import os
import zipfile
import zlib
from dataclasses import asdict, dataclass, field
from typing import IO, Any, Callable, Dict, List, Optional, Sequence

import cv2
import numpy as np

from ..errors import UserError

DEPTH_SCALE = 256.0
RIGHT = "rgb_right"  # the folder of the right views of a stereo split
CERTAINTY = "certainty"  # folder of the segmenter's certainty maps
CERTAINTY_LEVELS = 65535  # q is stored as round(CERTAINTY_LEVELS * q), uint16


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

    def frame_fx(self, name: str) -> float:
        """The horizontal focal length: K's fx where the frame has K, else the focal."""
        K = self.frames.get(name, {}).get("K")
        return float(K[0]) if K else self.frame_focal(name)

    def frame_baseline(self, name: str) -> Optional[float]:
        baseline = self.frames.get(name, {}).get("baseline", self.baseline)
        return None if baseline is None else float(baseline)

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
    if not isinstance(raw, dict):
        raise DataError(f"{path}: must hold a JSON object of fields, got {type(raw).__name__}")
    missing = [k for k in ("domain", "classes", "instance_classes", "focal", "image_size") if k not in raw]
    if missing:
        raise DataError(f"{path}: lacks {', '.join(missing)}")
    known = {k: raw[k] for k in SplitMeta.__dataclass_fields__ if k in raw}
    check_fields(known, path)
    return SplitMeta(**known)


# ---------------------------------------------------------------- what meta.json fields must hold
def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _positive(v) -> bool:
    return _number(v) and v > 0


def _count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _cap(c) -> bool:
    return isinstance(c, (list, tuple)) and len(c) == 2 and all(_number(v) for v in c) and 0 <= c[0] < c[1]


EVAL_CROPS = ("garg", "cityscapes")  # the crops desc_train.evaluate knows (CROPS)

# field -> (test of its value, what it must be)
_FIELDS: Dict[str, Any] = {
    "domain": (lambda v: isinstance(v, str), "a string"),
    "classes": (lambda v: isinstance(v, (list, tuple)) and all(isinstance(c, str) for c in v),
                "a list of class names"),
    "instance_classes": (lambda v: isinstance(v, (list, tuple)) and all(_count(c) for c in v), "a list of class ids"),
    "focal": (_positive, "a finite number of pixels above 0"),
    "image_size": (lambda v: isinstance(v, (list, tuple)) and len(v) == 2 and all(_count(x) and x > 0 for x in v),
                   "[H, W], two positive integers"),
    "depth_scale": (_positive, "a finite number above 0"),
    "baseline": (lambda v: v is None or _positive(v), "a finite number of metres above 0 or null"),
    "frames": (lambda v: isinstance(v, dict) and all(isinstance(f, dict) for f in v.values()),
               "an object of frame name -> object"),
    "has_depth": (lambda v: isinstance(v, bool), "true or false"),
    "has_labels": (lambda v: isinstance(v, bool), "true or false"),
    "max_depth": (lambda v: v is None or _positive(v), "a finite number of metres above 0 or null"),
    "max_instances": (lambda v: v is None or _count(v), "a count or null"),
    "dataset": (lambda v: v is None or isinstance(v, dict), "an object or null"),
    "label_source": (lambda v: v is None or isinstance(v, dict), "an object or null"),
    "eval": (lambda v: v is None or isinstance(v, dict), "an object or null"),
}


def intrinsics_problem(K) -> Optional[str]:
    """What is wrong with [fx, fy, cx, cy] in pixels (None: nothing): focal
    lengths must be finite and above 0, the principal point finite and not
    negative (an image's corner at most)."""
    if not isinstance(K, (list, tuple)) or len(K) != 4 or \
            not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in K):
        return f"must be [fx, fy, cx, cy], four numbers, got {_shown(K)}"
    infinite = [f"{name} {v!r}" for name, v in zip(("fx", "fy", "cx", "cy"), K) if not math.isfinite(v)]
    if infinite:
        return f"must be finite, got {', '.join(infinite)}"
    if not (K[0] > 0 and K[1] > 0):
        return f"focal lengths fx {K[0]!r} and fy {K[1]!r} must be above 0"
    if not (K[2] >= 0 and K[3] >= 0):
        return f"principal point cx {K[2]!r} and cy {K[3]!r} must not be negative"
    return None


def _shown(value) -> str:
    """A value as a message shows it (its repr), cut short."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_fields(fields: Dict[str, Any], path: str) -> None:
    """Raises DataError naming `path` and the first field of a meta.json that is
    not of its kind (a list where a number belongs, a focal of 0, NaN or -1):
    such a split would otherwise fail far from its cause, or train on garbage."""
    for key, value in fields.items():
        test, what = _FIELDS[key]
        if not test(value):
            raise DataError(f"{path}: {key} must be {what}, got {_shown(value)}")
    protocol = fields.get("eval") or {}
    caps = protocol.get("caps")
    if caps is not None and not (isinstance(caps, list) and all(_cap(c) for c in caps)):
        raise DataError(f"{path}: eval.caps must be a list of [min, max] metres, 0 <= min < max, got {_shown(caps)}")
    if protocol.get("crop") not in (None, *EVAL_CROPS):
        raise DataError(f"{path}: eval.crop must be null or one of {', '.join(EVAL_CROPS)}, got "
                        f"{_shown(protocol.get('crop'))}")
    for name, frame in (fields.get("frames") or {}).items():
        for key, unit in (("focal", "pixels"), ("baseline", "metres")):
            if key in frame and not _positive(frame[key]):
                raise DataError(f"{path}: frames.{name}.{key} must be a finite number of {unit} above 0, got "
                                f"{_shown(frame[key])}")
        problem = intrinsics_problem(frame["K"]) if "K" in frame else None
        if problem:
            raise DataError(f"{path}: frames.{name}.K {problem}")


def write_meta(split_dir: str, meta: SplitMeta) -> None:
    """meta.json, checked as read_meta checks it (nothing is written that it would
    refuse), strict JSON (no NaN), atomically."""
    fields = asdict(meta)
    check_fields(fields, meta_path(split_dir))
    os.makedirs(split_dir, exist_ok=True)
    atomic_write(meta_path(split_dir), lambda f: json.dump(fields, f, indent=1, allow_nan=False))


def atomic_write(path: str, write: Callable[[IO], None], binary: bool = False, sync: bool = False) -> None:
    """Writes `path` through `write(file)` into PATH.tmp and a rename: a reader
    finds the previous file or the new one, never half of one. A failed write (a
    full disk) removes the .tmp, keeps the previous file and raises one OSError
    naming `path`; a .tmp a killed run left is overwritten by the next write of
    the same file. `sync`: on disk before the rename (a checkpoint hours of
    training made)."""
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb" if binary else "w") as f:
            write(f)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        try:
            os.remove(tmp)
        except OSError:
            pass
        if isinstance(err, (OSError, RuntimeError)):  # RuntimeError: torch's writer on a full disk
            reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err).splitlines()[0]
            raise OSError(f"{path}: could not be written ({reason}); the previous file, if any, is kept") from err
        raise


def _write_png(path: str, array: np.ndarray) -> None:
    if not cv2.imwrite(path, array):
        raise DataError(f"{path}: could not be written")


def write_sample(split_dir: str, name: str, rgb: Optional[np.ndarray], depth: Optional[np.ndarray] = None,
                 semantic: Optional[np.ndarray] = None, instance: Optional[np.ndarray] = None,
                 depth_scale: float = DEPTH_SCALE, rgb_right: Optional[np.ndarray] = None) -> None:
    """rgb and rgb_right (H, W, 3) uint8; depth (H, W) metres (<= 0 or non-finite:
    none); semantic (H, W) class ids (255 ignore); instance (H, W) ids (0 none). A
    map given as None is not written."""
    def put(folder: str, array: np.ndarray) -> None:
        os.makedirs(os.path.join(split_dir, folder), exist_ok=True)
        _write_png(os.path.join(split_dir, folder, name + ".png"), array)

    if rgb is not None:
        put("rgb", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if rgb_right is not None:
        put(RIGHT, cv2.cvtColor(rgb_right, cv2.COLOR_RGB2BGR))
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
    atomic_write(gt_path(split_dir, name), lambda f: np.save(f, gt), binary=True)


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


def certainty_path(split_dir: str, name: str) -> str:
    return os.path.join(split_dir, CERTAINTY, name + ".npz")


def write_certainty(split_dir: str, name: str, prob: np.ndarray, label: np.ndarray) -> None:
    """A frame's certainty: `prob` (H, W) the largest class probability in [0, 1], `label` (H, W) its class."""
    if label.size and not 0 <= int(label.min()) <= int(label.max()) <= 255:
        raise ValueError(f"certainty labels must be class ids 0-255, got {int(label.min())}-{int(label.max())}")
    stored = np.round(np.clip(prob, 0, 1) * CERTAINTY_LEVELS).astype(np.uint16)
    os.makedirs(os.path.join(split_dir, CERTAINTY), exist_ok=True)
    atomic_write(certainty_path(split_dir, name),
                 lambda f: np.savez_compressed(f, prob=stored, label=label.astype(np.uint8)), binary=True)


def read_certainty(split_dir: str, name: str, meta: SplitMeta):
    """(prob float32 (H, W) in [0, 1], label int64 (H, W)) of a frame, or None when the split has no certainty
    maps; DataError naming the file when it is unreadable, of another size than image_size, or its labels are no
    classes of the split."""
    path = certainty_path(split_dir, name)
    if not os.path.exists(path):
        return None
    expected = f"expected prob (H, W) uint16 and label (H, W) uint8 of {meta.image_size[0]}x{meta.image_size[1]}"
    try:
        with np.load(path, allow_pickle=False) as npz:
            prob, label = (npz[k] if k in npz.files else None for k in ("prob", "label"))
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise DataError(f"{path}: unreadable certainty ({err}); {expected}") from None
    if prob is None or label is None or prob.dtype != np.uint16 or label.dtype != np.uint8 or \
            prob.shape != tuple(meta.image_size) or label.shape != prob.shape:
        got = ", ".join(f"{k} {a.dtype} {a.shape}" for k, a in (("prob", prob), ("label", label)) if a is not None)
        raise DataError(f"{path}: holds {got or 'neither prob nor label'}; {expected}")
    bad = foreign_ids(label.astype(np.int64), len(meta.classes))
    if bad:
        raise DataError(f"{path}: label holds {ids_message(bad, len(meta.classes))}")
    return prob.astype(np.float32) / CERTAINTY_LEVELS, label.astype(np.int64)


def _read_png(path: str, flags: int, size: Optional[Sequence[int]], what: str) -> np.ndarray:
    if not os.path.exists(path):
        raise DataError(f"{path}: missing {what}")
    array = cv2.imread(path, flags)
    if array is None:
        raise DataError(f"{path}: not a readable PNG ({what})")
    if size is not None and tuple(array.shape[:2]) != tuple(size):
        raise DataError(f"{path}: {what} is {array.shape[1]}x{array.shape[0]}, expected {size[1]}x{size[0]}")
    return array


def frame_path(split_dir: str, folder: str, name: str, ext: str = ".png") -> str:
    return os.path.join(split_dir, folder, name + ext)


def read_rgb(split_dir: str, name: str, meta: SplitMeta, folder: str = "rgb") -> np.ndarray:
    """(H, W, 3) uint8 RGB, of the split's image_size: an image of another size is
    its own fault, not that of the maps read after it. `folder` RIGHT: the right view."""
    path = frame_path(split_dir, folder, name)
    bgr = _read_png(path, cv2.IMREAD_COLOR, meta.image_size, "right view" if folder == RIGHT else "RGB image")
    if bgr.ndim != 3 or bgr.shape[2] != 3:
        raise DataError(f"{path}: not a 3-channel image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def has_right_views(split_dir: str) -> bool:
    return os.path.isdir(os.path.join(split_dir, RIGHT))


def check_stereo(split_dir: str, meta: SplitMeta) -> None:
    """DataError naming the split's meta.json when a frame has no baseline (its
    own nor the split's): a split with right views needs one for every frame."""
    missing = [n for n in meta.names if meta.frame_baseline(n) is None]
    if missing:
        raise DataError(f"{meta_path(split_dir)}: {len(missing)} of {len(meta.names)} frames have no baseline "
                        f"(first {missing[0]}), but the split has right views ({RIGHT}/): set the split's "
                        f"\"baseline\" or each frame's, in metres")


def read_depth(split_dir: str, name: str, meta: SplitMeta) -> np.ndarray:
    """(H, W) float32 metres, 0 = none (everywhere in a split without depth)."""
    size = tuple(meta.image_size)
    npy = frame_path(split_dir, "depth", name, ".npy")
    if not meta.has_depth:
        return np.zeros(size, np.float32)
    if os.path.exists(npy):
        try:
            depth = np.load(npy).astype(np.float32)
        except (OSError, ValueError) as err:
            raise DataError(f"{npy}: unreadable depth: {err}") from None
        if depth.shape != size:
            raise DataError(f"{npy}: depth is {depth.shape}, expected {size}")
        return np.where(np.isfinite(depth) & (depth > 0), depth, 0).astype(np.float32)
    png = frame_path(split_dir, "depth", name)
    raw = _read_png(png, cv2.IMREAD_UNCHANGED, size, "depth")
    if raw.dtype != np.uint16 or raw.ndim != 2:
        raise DataError(f"{png}: depth must be a 16-bit single-channel PNG, got {raw.dtype} with shape {raw.shape}")
    return raw.astype(np.float32) / meta.depth_scale


def read_semantic(split_dir: str, name: str, meta: SplitMeta) -> np.ndarray:
    """(H, W) int64 class ids as stored, -1 = ignore (255); not checked against the classes."""
    path = frame_path(split_dir, "semantic", name)
    semantic = _read_png(path, cv2.IMREAD_UNCHANGED, meta.image_size, "semantic labels")
    if semantic.ndim != 2:
        raise DataError(f"{path}: labels must be single-channel")
    semantic = semantic.astype(np.int64)
    semantic[semantic == 255] = -1
    return semantic


def foreign_ids(semantic: np.ndarray, num_classes: int) -> List[int]:
    """The ids of a semantic map (-1 = ignore) that are no class of a split of
    `num_classes`: [] after a min and a max in the usual case."""
    if semantic.size == 0 or (semantic.min() >= -1 and semantic.max() < num_classes):
        return []
    values = np.unique(semantic)
    return [int(v) for v in values[(values < -1) | (values >= num_classes)]]


def ids_message(ids: Sequence[int], num_classes: int) -> str:
    shown = ", ".join(str(255 if v == -1 else v) for v in ids[:8]) + (", ..." if len(ids) > 8 else "")
    return f"class ids {shown} outside the split's {num_classes} classes (0-{num_classes - 1}; 255 = ignore)"


def read_sample(split_dir: str, name: str, meta: SplitMeta) -> Dict[str, np.ndarray]:
    """The arrays of one frame: rgb (H, W, 3) uint8, depth (H, W) float32 metres
    (0 = none, and everywhere in a split without depth), semantic (H, W) int64 (-1 =
    ignore, everywhere in a split without labels), instance (H, W) int64 (0 = none).
    Every map must have the split's image_size, and every class id be a class of it."""
    rgb = read_rgb(split_dir, name, meta)
    depth = read_depth(split_dir, name, meta)
    size = tuple(meta.image_size)
    if not meta.has_labels:
        return dict(rgb=rgb, depth=depth, semantic=np.full(size, -1, np.int64), instance=np.zeros(size, np.int64))
    semantic = read_semantic(split_dir, name, meta)
    # Checked here, cheaply: an id past the classes would fail deep in a loss, or not at all.
    bad = foreign_ids(semantic, len(meta.classes))
    if bad:
        raise DataError(f"{frame_path(split_dir, 'semantic', name)}: {ids_message(bad, len(meta.classes))}")
    return dict(rgb=rgb, depth=depth, semantic=semantic, instance=read_instance(split_dir, name, meta))


def read_instance(split_dir: str, name: str, meta: SplitMeta) -> np.ndarray:
    """(H, W) int64 instance ids, 0 = none."""
    path = frame_path(split_dir, "instance", name)
    instance = _read_png(path, cv2.IMREAD_UNCHANGED, meta.image_size, "instance ids")
    if instance.ndim != 2:
        raise DataError(f"{path}: instance ids must be single-channel")
    return instance.astype(np.int64)
