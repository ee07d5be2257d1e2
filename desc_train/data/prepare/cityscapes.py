"""Cityscapes frames (the left 8-bit images) as a target split of desc_train's
layout, with optional depth ground truth from the disparity maps and optional
semantic and instance labels from gtFine.

Reads ``ROOT/leftImg8bit/SUBSET/CITY/CITY_SEQ_FRAME_leftImg8bit.png`` with its
``camera/..._camera.json`` (intrinsics fx, fy, u0, v0 and the stereo baseline,
per frame), ``disparity/..._disparity.png`` and ``gtFine/..._gtFine_labelIds.png``
/ ``_gtFine_instanceIds.png``; each folder may also sit inside the folder its
archive extracts to (``leftImg8bit_trainvaltest/leftImg8bit``, ...). The bottom
of every frame shows the ego vehicle: ``--crop-bottom`` rows are cut off before
resizing (cutting from the bottom leaves the intrinsics unchanged). Frames are
named ``SUBSET_CITY_SEQ_FRAME``, e.g. ``val_frankfurt_000000_000294``.

Disparity: a 16-bit value p > 0 is d = (p - 1) / 256 pixels, p = 0 none, and
depth = baseline * fx / d (0 where d <= 0); it is stored at the cropped native
size in gt/ as the evaluation ground truth. Labels: Cityscapes label ids map to
the COCO panoptic classes of ``desc_train.data.coco`` (others are ignored); an
instance id of 1000 or more is an object (its class id times 1000 plus its
number) and is kept as is, a smaller one is a class area without instances.

``--stereo`` also stores each frame's right view,
``rightImg8bit/SUBSET/CITY/CITY_SEQ_FRAME_rightImg8bit.png`` (rectified with the
left one), cropped and resized as the left image, in ``rgb_right/``; the frame's
baseline (the camera json's, about 0.21 m) is recorded with every frame anyway.
"""
from __future__ import annotations

import argparse
import json
import os
import struct
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .. import coco
from ...config import MAX_DEPTH
from ..layout import DataError
from .common import Frame, add_common_arguments, anisotropy_note, sha256_lines, write_split

SUBSETS = ("train", "val", "test", "train_extra")
CROP_BOTTOM = 0.25  # the ego vehicle's share of the frame, as depth evaluations on Cityscapes crop it
# The stored ground truth has lost its bottom already; the evaluator applies the rest of the usual crop.
EVAL = {"gt_kind": "disparity", "crop": "cityscapes", "caps": [[0.001, MAX_DEPTH]]}
SUFFIXES = dict(image="_leftImg8bit.png", camera="_camera.json", disparity="_disparity.png",
                label_ids="_gtFine_labelIds.png", instance_ids="_gtFine_instanceIds.png",
                right="_rightImg8bit.png")
CAMERA_FIX = "the intrinsics and baseline are per frame; do not assume 0.22 m / 2262 px"

# Cityscapes label id -> (Cityscapes name, COCO panoptic class); every other id is ignored.
LABELS: Dict[int, Tuple[str, str]] = {
    7: ("road", "road"), 8: ("sidewalk", "pavement-merged"), 11: ("building", "building-other-merged"),
    12: ("wall", "wall-other-merged"), 13: ("fence", "fence-merged"), 19: ("traffic light", "traffic light"),
    21: ("vegetation", "tree-merged"), 22: ("terrain", "grass-merged"), 23: ("sky", "sky-other-merged"),
    24: ("person", "person"), 25: ("rider", "person"), 26: ("car", "car"), 27: ("truck", "truck"),
    28: ("bus", "bus"), 31: ("train", "train"), 32: ("motorcycle", "motorcycle"), 33: ("bicycle", "bicycle"),
}
INSTANCE_LABELS = range(24, 34)  # the Cityscapes classes annotated per object (person ... bicycle)
KEPT_INSTANCE_LABELS = [i for i in INSTANCE_LABELS if i in LABELS]  # caravan and trailer have no COCO class


def _label_table() -> np.ndarray:
    table = np.full(256, coco.IGNORE, np.uint8)
    for label_id, (_, name) in LABELS.items():
        table[label_id] = coco.class_id(name)
    return table


LABEL_TABLE = _label_table()


def instance_classes() -> List[int]:
    """The layout class ids that Cityscapes annotates per object."""
    return sorted({coco.class_id(LABELS[i][1]) for i in KEPT_INSTANCE_LABELS})


def mapping() -> Dict[str, str]:
    """Cityscapes class name -> COCO panoptic class name, as recorded in meta.json."""
    return {cs: name for cs, name in LABELS.values()}


# ---------------------------------------------------------------- arguments
def parse_subsets(text: str) -> List[str]:
    subsets = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in subsets if s not in SUBSETS]
    if not subsets or bad:
        raise argparse.ArgumentTypeError(f"subsets are {', '.join(SUBSETS)} (comma-separated), got {text!r}")
    if len(set(subsets)) != len(subsets):
        raise argparse.ArgumentTypeError(f"a subset is named twice in {text!r}")
    return subsets


def parse_crop(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"--crop-bottom is a fraction of the height in [0, 1), got {text!r}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common_arguments(p, size="192x512")
    p.add_argument("--subset", type=parse_subsets, required=True,
                   help="Cityscapes subsets to convert: train, val, test, train_extra (comma-separated)")
    p.add_argument("--gt", choices=["none", "disparity"], default="none",
                   help="'disparity': store depth from the disparity maps in gt/ (the evaluation ground truth)")
    p.add_argument("--labels", choices=["none", "gt"], default="none",
                   help="'gt': semantic and instance maps from gtFine, in COCO panoptic classes "
                        "(not for test, whose labels are private)")
    p.add_argument("--crop-bottom", type=parse_crop, default=CROP_BOTTOM,
                   help="fraction of the height cut off at the bottom (the ego vehicle)")
    p.add_argument("--stereo", action="store_true",
                   help="also store each frame's right view (rightImg8bit), for the stereo term")


# ---------------------------------------------------------------- the dataset's folders
def archive(kind: str, subset: str) -> str:
    """The name of the archive that holds `kind` (leftImg8bit, camera, ...) for `subset`."""
    return f"{kind}_{'trainextra' if subset == 'train_extra' else 'trainvaltest'}"


def kind_folder(root: str, kind: str, subset: str) -> str:
    """The folder of `kind` that holds `subset`: ROOT/KIND, or the one inside the
    folder named after its archive; raises DataError naming both when neither has it."""
    candidates = [os.path.join(root, kind), os.path.join(root, archive(kind, subset), kind)]
    for folder in candidates:
        if os.path.isdir(os.path.join(folder, subset)):
            return folder
    looked = " or ".join(os.path.join(c, subset) for c in candidates)
    raise DataError(f"{looked}: missing: download {archive(kind, subset)}.zip and extract it into {root}")


def kept_rows(height: int, crop_bottom: float) -> int:
    """Rows left of `height` once the bottom `crop_bottom` fraction is cut off."""
    return height - int(round(height * crop_bottom))


def png_size(path: str) -> Tuple[int, int]:
    """(H, W) of a PNG from its header, without decoding it."""
    try:
        with open(path, "rb") as f:
            head = f.read(24)
    except OSError as err:
        raise DataError(f"{path}: unreadable: {err}") from None
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise DataError(f"{path}: not a PNG file")
    width, height = struct.unpack(">II", head[16:24])
    return height, width


@dataclass(frozen=True)
class Job:
    """The files of one frame (absolute paths; None when not converted)."""

    name: str
    root: str
    subset: str
    image: str
    camera: str
    crop_bottom: float
    disparity: Optional[str] = None
    label_ids: Optional[str] = None
    instance_ids: Optional[str] = None
    right: Optional[str] = None


def left_images(images: str, subset: str) -> List[Tuple[str, str]]:
    """(city, CITY_SEQ_FRAME) of every left image of `subset` under `images`, sorted."""
    found = []
    for city in sorted(os.listdir(os.path.join(images, subset))):
        folder = os.path.join(images, subset, city)
        if os.path.isdir(folder):
            found += [(city, f[:-len("_leftImg8bit.png")]) for f in sorted(os.listdir(folder))
                      if f.endswith("_leftImg8bit.png")]
    if not found:
        raise DataError(f"{os.path.join(images, subset)}: holds no CITY/*_leftImg8bit.png: "
                        f"extract {archive('leftImg8bit', subset)}.zip completely")
    return found


def list_frames(root: str, subsets: Sequence[str], crop_bottom: float, gt: bool,
                labels: bool, stereo: bool = False) -> List[Tuple[str, Job]]:
    """(name, job) of every left image of `subsets`, in subset, city and frame order."""
    frames = []
    for subset in subsets:
        folders = dict(image=kind_folder(root, "leftImg8bit", subset), camera=kind_folder(root, "camera", subset),
                       disparity=kind_folder(root, "disparity", subset) if gt else None,
                       label_ids=kind_folder(root, "gtFine", subset) if labels else None,
                       instance_ids=kind_folder(root, "gtFine", subset) if labels else None,
                       right=kind_folder(root, "rightImg8bit", subset) if stereo else None)
        for city, stem in left_images(folders["image"], subset):
            files = {key: os.path.join(folder, subset, city, stem + SUFFIXES[key])
                     for key, folder in folders.items() if folder}
            name = f"{subset}_{stem}"
            frames.append((name, Job(name=name, root=root, subset=subset, crop_bottom=crop_bottom, **files)))
    return frames


def refuse_private_labels(root: str, subsets: Sequence[str]) -> None:
    """Raises DataError when labels are asked of a subset without public fine labels."""
    if "test" in subsets:
        where = os.path.join(root, "gtFine", "test")
        raise DataError(f"{where}: gtFine/test labels are placeholders (Cityscapes keeps test labels private): "
                        f"convert test without --labels gt, and label it with desc-train prepare panoptic")
    if "train_extra" in subsets:
        where = os.path.join(root, "gtFine", "train_extra")
        raise DataError(f"{where}: train_extra has coarse labels only (no gtFine): convert it without "
                        f"--labels gt, and label it with desc-train prepare panoptic")


# ---------------------------------------------------------------- one frame
def read_camera(path: str, download: str) -> Tuple[List[float], float]:
    """([fx, fy, u0, v0], baseline in metres) of a Cityscapes camera json;
    `download` names the archive that holds it."""
    if not os.path.exists(path):
        raise DataError(f"{path}: missing camera json: download {download}.zip ({CAMERA_FIX})")
    try:
        with open(path) as f:
            cam = json.load(f)
        K = [float(cam["intrinsic"][k]) for k in ("fx", "fy", "u0", "v0")]
        baseline = float(cam["extrinsic"]["baseline"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(f"{path}: expected a camera json with intrinsic fx, fy, u0, v0 and extrinsic baseline "
                        f"({type(err).__name__}: {err}): extract {download}.zip again") from None
    # "not above 0" also refuses NaN, which json reads and meta.json must not hold.
    if not all(v > 0 and np.isfinite(v) for v in (*K[:2], baseline)):
        raise DataError(f"{path}: focal lengths {K[:2]} and baseline {baseline} must be positive: "
                        f"extract {download}.zip again")
    if not all(v >= 0 and np.isfinite(v) for v in K[2:]):
        raise DataError(f"{path}: principal point u0, v0 {K[2:]} must be finite and not negative: "
                        f"extract {download}.zip again")
    return K, baseline


def read_png(path: str, what: str, fix: str, dtype, shape: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """A single-channel PNG of `dtype` (and `shape` when given); DataError naming
    the file, what it should be and `fix` otherwise."""
    if not os.path.exists(path):
        raise DataError(f"{path}: missing {what}: {fix}")
    array = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if array is None:
        raise DataError(f"{path}: not a readable PNG ({what}): {fix}")
    if array.dtype != dtype or array.ndim != 2:
        raise DataError(f"{path}: {what} must be a {np.dtype(dtype).itemsize * 8}-bit single-channel PNG, got "
                        f"{array.dtype} with shape {array.shape}: {fix}")
    if shape is not None and array.shape != tuple(shape):
        raise DataError(f"{path}: {what} is {array.shape[1]}x{array.shape[0]} but the image is "
                        f"{shape[1]}x{shape[0]}")
    return array


def disparity_to_depth(p: np.ndarray, fx: float, baseline: float) -> np.ndarray:
    """Depth in metres (float32, 0 = none) of Cityscapes' 16-bit disparity p:
    d = (p - 1) / 256 pixels, depth = baseline * fx / d where d > 0."""
    d = (p.astype(np.float64) - 1.0) / 256.0
    depth = np.zeros(p.shape, np.float32)
    valid = d > 0  # p = 0 (no measurement) gives d < 0, p = 1 gives d = 0
    depth[valid] = baseline * fx / d[valid]
    return depth


def semantic_from_label_ids(label_ids: np.ndarray) -> np.ndarray:
    """Cityscapes label ids -> layout class ids (COCO panoptic, 255 = ignore)."""
    return LABEL_TABLE[label_ids]


def instances_from_instance_ids(ids: np.ndarray) -> np.ndarray:
    """Cityscapes instance ids -> layout instance ids (uint16, 0 = none): an
    object (id >= 1000, class id * 1000 + number) of a class with a COCO class
    keeps its id; class areas without instances (id < 1000) and other classes get 0."""
    objects = np.isin(ids // 1000, KEPT_INSTANCE_LABELS)  # an area (id < 1000) is class 0 here: never kept
    return np.where(objects, ids, 0).astype(np.uint16)


def read_image(path: str, kind: str, subset: str, shape: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """The RGB image of `kind` (leftImg8bit, rightImg8bit) at `path`, of `shape`
    when given; DataError naming the file and its archive otherwise."""
    what = f"{'right' if kind == 'rightImg8bit' else 'left'} image"
    if not os.path.exists(path):
        raise DataError(f"{path}: missing {what}: extract {archive(kind, subset)}.zip again")
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise DataError(f"{path}: not a readable PNG ({what}): extract {archive(kind, subset)}.zip again")
    if shape is not None and bgr.shape[:2] != tuple(shape):
        raise DataError(f"{path}: {what} is {bgr.shape[1]}x{bgr.shape[0]} but the left image is "
                        f"{shape[1]}x{shape[0]}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read(job: Job) -> Frame:
    """One Cityscapes frame, its bottom cut off, at the remaining native size."""
    K, baseline = read_camera(job.camera, archive("camera", job.subset))
    rgb = read_image(job.image, "leftImg8bit", job.subset)
    shape = rgb.shape[:2]
    rows = kept_rows(shape[0], job.crop_bottom)
    frame = Frame(name=job.name, src=os.path.relpath(job.image, job.root), rgb=rgb[:rows], K=K,
                  extra=dict(baseline=baseline))
    if job.right:  # the ego vehicle's rows go too: one crop for both views
        frame.rgb_right = read_image(job.right, "rightImg8bit", job.subset, shape)[:rows]
    if job.disparity:
        p = read_png(job.disparity, "disparity (stored as d*256 + 1)", f"download "
                     f"{archive('disparity', job.subset)}.zip, or convert without --gt disparity", np.uint16, shape)
        frame.gt = disparity_to_depth(p[:rows], K[0], baseline)
    if job.label_ids:
        fix = f"download {archive('gtFine', job.subset)}.zip, or convert without --labels gt"
        frame.semantic = semantic_from_label_ids(read_png(job.label_ids, "label ids", fix, np.uint8, shape)[:rows])
        frame.instance = instances_from_instance_ids(
            read_png(job.instance_ids, "instance ids", fix, np.uint16, shape)[:rows])
    return frame


# ---------------------------------------------------------------- the command
def main(args) -> int:
    """Converts the frames of ``args.subset`` into ``args.out/args.split``; 0 on success."""
    root = os.path.abspath(args.root)
    if not os.path.isdir(root):
        raise DataError(f"{root}: no such folder (--root is the folder the Cityscapes archives were extracted into)")
    gt, labels = args.gt == "disparity", args.labels == "gt"
    if labels:
        refuse_private_labels(root, args.subset)
    if args.limit is not None and args.limit < 1:
        raise DataError(f"--limit {args.limit}: expected a positive number of frames")
    frames = list_frames(root, args.subset, args.crop_bottom, gt, labels, args.stereo)[:args.limit]
    first = png_size(frames[0][1].image)
    note = anisotropy_note((kept_rows(first[0], args.crop_bottom), first[1]), args.size)
    if note:
        print(note)
    settings = dict(root=root, subset=list(args.subset), gt=args.gt, labels=args.labels,
                    crop_bottom=args.crop_bottom, size=list(args.size) if args.size else "native",
                    stereo=args.stereo)
    meta = dict(
        domain="target", classes=list(coco.CLASSES), instance_classes=instance_classes() if labels else [],
        has_depth=False, has_labels=labels,
        label_source=dict(kind="gt", mapping=mapping()) if labels else None,
        eval=dict(EVAL) if gt else None,
        dataset=dict(name="cityscapes", root=root, converter="desc-train prepare cityscapes",
                     args={**settings, "limit": args.limit}, subsets=list(args.subset),
                     list_sha256=sha256_lines(name for name, _ in frames)))
    write_split(os.path.join(args.out, args.split), frames, read, size=args.size, meta=meta, args=settings,
                workers=args.workers, overwrite=args.overwrite)
    return 0
