"""Semantic and instance maps of a prepared split from panoptic segments: what ``prepare panoptic`` (predictions
made elsewhere) and ``prepare segment`` (a segmenter run here) share.

A labeller gives, per frame, a map of segment ids (0 = void) and its segments, each with a layout class (one of
the 133 COCO panoptic classes of ``desc_train/data/coco.py``), whether it is a thing, and a score. The rule, stated
here once: the semantic map holds each segment's class, void is 255; the instances are the thing segments scoring
at least ``--score-thresh`` (segments without a score are kept), not crowds, of ``--instance-classes``, numbered
1..N by decreasing area; past ``--max-instances`` the smallest are dropped and counted. Things that make no
instance keep their class in the semantic map. Both maps are resized with nearest neighbour to the split's size
(the aspect ratios must agree within 2 %). The layout holds one non-overlapping instance map: where DESC's height
prior sees whole, overlapping Mask R-CNN masks, it sees the visible parts.

A run resumes: each frame's maps are written before its record (``SPLIT/.panoptic/frames/NAME.json``, its
counts), and a rerun with the same arguments skips the frames with a record. meta.json is rewritten last and
atomically (has_labels true, the classes, the instance classes, the most instances of a frame, the label
source): a run cut short leaves the split unlabelled. A fresh run (other arguments, or ``--overwrite``) removes
the segmenter certainty maps of an earlier labelling, which would no longer match the new maps.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from typing import Any, Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from .. import coco
from ..layout import CERTAINTY, DataError, SplitMeta, atomic_write, meta_path, read_meta, write_meta, write_sample
from .common import keep_records, listed, parse_split, resize_nearest

RECORDS = ".panoptic"  # per-frame records of a labelling run; gone once meta.json says has_labels
VOID = 0  # the segment id of unlabelled pixels
ASPECT_TOLERANCE = 0.02  # DESC's detector input 368x1232 and network input 192x640 differ by 0.3 %
MAX_ID = 65535  # instance maps are 16-bit PNGs


class Segment(NamedTuple):
    id: int  # the segment id in the map
    label: int  # layout class id
    isthing: bool
    score: Optional[float]  # None: a file without scores (ground-truth style), kept whatever the threshold
    iscrowd: bool


class Settings(NamedTuple):
    size: Tuple[int, int]  # the split's (H, W)
    score_thresh: float
    instance_classes: Tuple[int, ...]
    max_instances: int


# ---------------------------------------------------------------- one frame
def check_aspect(where: str, shape: Sequence[int], size: Sequence[int]) -> None:
    """Refuses a prediction whose aspect ratio differs from the split's by more than 2 %: it was made on other
    frames, or on a crop."""
    (h, w), (H, W) = shape[:2], size
    if abs((w / h) / (W / H) - 1) > ASPECT_TOLERANCE:
        raise DataError(f"{where}: prediction is {h}x{w} (aspect {w / h:.2f}) but the split is {H}x{W} "
                        f"({W / H:.2f}): predictions must be made on the frames' whole source images")


def instance_fate(s: Segment, settings: Settings) -> str:
    """Why a thing segment is no instance ("crowd", "other_class", "low_score"), or "kept"."""
    if s.iscrowd:
        return "crowd"
    if s.label not in settings.instance_classes:
        return "other_class"
    if s.score is not None and s.score < settings.score_thresh:
        return "low_score"
    return "kept"


def label_maps(seg: np.ndarray, segments: List[Segment], settings: Settings,
               where: str) -> Tuple[np.ndarray, np.ndarray, Dict[str, Any]]:
    """(semantic uint8, instance int32, counts) at the prediction's size: each segment's class (void 255), and
    every thing segment that makes an instance, numbered 1..N by decreasing area."""
    ids, inverse, areas = np.unique(seg, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(seg.shape)
    by_id = {s.id: s for s in segments}
    unknown = [int(i) for i in ids if i != VOID and int(i) not in by_id]
    if unknown:
        more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
        raise DataError(f"{where}: segment id {unknown[0]}{more} appears in the map but not in segments_info: "
                        f"the map and its segments_info belong to different frames or runs")
    present = [by_id.get(int(i)) if i != VOID else None for i in ids]
    semantic = np.array([coco.IGNORE if s is None else s.label for s in present], np.uint8)[inverse]
    fates = {k: instance_fate(s, settings) for k, s in enumerate(present) if s is not None and s.isthing}
    kept = sorted((k for k, f in fates.items() if f == "kept"), key=lambda k: (-areas[k], ids[k]))
    lut = np.zeros(len(ids), np.int32)
    lut[kept] = np.arange(1, len(kept) + 1)
    counts = {f: sum(v == f for v in fates.values()) for f in ("crowd", "other_class", "low_score")}
    counts.update(segments=sum(s is not None for s in present), void=float(areas[ids == VOID].sum() / seg.size))
    return semantic, lut[inverse], counts


def keep_largest(instance: np.ndarray, max_instances: int) -> Tuple[np.ndarray, int]:
    """(uint16 map, instances visible): ids 1..N made 1..M again in their order after resizing lost some small
    instances, then those past `max_instances` dropped."""
    present = np.unique(instance[instance > 0])
    lut = np.zeros(int(instance.max()) + 1, np.int32)
    lut[present] = np.arange(1, len(present) + 1)
    lut[lut > max_instances] = 0
    return lut[instance].astype(np.uint16), len(present)


def record_path(split_dir: str, name: str) -> str:
    return os.path.join(split_dir, RECORDS, "frames", name + ".json")


def write_labels(split_dir: str, name: str, seg: np.ndarray, segments: List[Segment], settings: Settings,
                 where: str) -> None:
    """Converts one frame's segments into its semantic and instance maps at the split's size and writes them, then
    its record; DataError (naming `where`) for segments that do not fit the map or the split."""
    check_aspect(where, seg.shape, settings.size)
    semantic, instance, counts = label_maps(seg, segments, settings, where)
    size, most, made = settings.size, settings.max_instances, int(instance.max())
    instance, visible = keep_largest(resize_nearest(instance, size), most)
    counts.update(instances=min(visible, most), vanished=made - visible, beyond_max=max(0, visible - most))
    write_sample(split_dir, name, None, semantic=resize_nearest(semantic, size), instance=instance)
    # Last: a frame with a record is complete (a .tmp a killed run left is rewritten with the frame).
    atomic_write(record_path(split_dir, name), lambda f: json.dump(counts, f))


# ---------------------------------------------------------------- arguments
def instance_classes(text: str) -> Tuple[int, ...]:
    """``all`` (the 80 things), ``vehicles`` or a comma-separated list of thing names or class ids."""
    if text == "all":
        return tuple(range(coco.NUM_THINGS))
    if text == "vehicles":
        return tuple(sorted(coco.VEHICLES))
    out = set()
    for item in (t.strip() for t in text.split(",")):
        cls = int(item) if item.isdigit() else coco.CLASSES.index(item) if item in coco.CLASSES else None
        if cls is None or not 0 <= cls < coco.NUM_THINGS:
            raise argparse.ArgumentTypeError(
                f"{item!r} is not a thing class: instances are things, names such as car or person, or ids 0-79")
        out.add(cls)
    return tuple(sorted(out))


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0  # refused below, naming the text
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"a score threshold lies in [0, 1], got {text}")
    return value


def _count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_ID:
        raise argparse.ArgumentTypeError(f"expected an integer in 1-{MAX_ID} (instance maps are 16-bit), got {text!r}")
    return int(text)


def add_label_arguments(p: argparse.ArgumentParser, score_help: str) -> None:
    """The arguments of every labeller: the split, the instance rule, --overwrite."""
    p.add_argument("--out", required=True, help="root of the prepared dataset (desc_train's layout)")
    p.add_argument("--split", required=True, type=parse_split,
                   help="the prepared split to label, e.g. target_train (a folder name under --out)")
    p.add_argument("--score-thresh", type=_fraction, default=0.8, help=score_help)
    p.add_argument("--instance-classes", type=instance_classes, default="all",
                   help="things that become instances: all (DESC), vehicles (for sources without people, such as "
                        "Virtual KITTI), or a list of names or ids, e.g. car,person")
    p.add_argument("--max-instances", type=_count, default=32,
                   help="instances kept per frame, the largest first; the rest are dropped and counted")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the labels of a labelled split, or restart an interrupted run instead of resuming it")


# ---------------------------------------------------------------- the run
def open_split(args) -> Tuple[str, SplitMeta, Settings]:
    """(split folder, its meta, the settings of `args`) of the prepared split a labeller names."""
    split_dir = os.path.join(args.out, args.split)
    if not os.path.exists(meta_path(split_dir)):
        raise DataError(f"{meta_path(split_dir)}: missing: prepare the split first (desc-train prepare vkitti, kitti "
                        f"or cityscapes), then label it")
    meta = read_meta(split_dir)
    if not meta.frames:
        raise DataError(f"{meta_path(split_dir)}: lists no frames")
    H, W = meta.image_size
    return split_dir, meta, Settings((int(H), int(W)), args.score_thresh, tuple(args.instance_classes),
                                     args.max_instances)


def start_labels(split_dir: str, meta: SplitMeta, overwrite: bool, args: Dict[str, Any]) -> None:
    """Prepares a split for labelling: refuses a labelled split unless `overwrite` (then marks it unlabelled
    first, so that a run cut short never leaves half-replaced maps marked labelled), and restarts an interrupted
    run under other arguments (or with `overwrite`) instead of resuming it."""
    if meta.has_labels:
        if not overwrite:
            raise DataError(f"{meta_path(split_dir)}: the split has labels already (from "
                            f"{(meta.label_source or {}).get('kind', 'an unrecorded source')}); pass --overwrite to "
                            f"replace them")
        meta.has_labels = False
        write_meta(split_dir, meta)
    records = os.path.join(split_dir, RECORDS)
    keep_records(records, args, overwrite, discard=records)
    if not os.path.isdir(os.path.join(records, "frames")):  # a fresh start: an earlier labelling's certainty goes
        shutil.rmtree(os.path.join(split_dir, CERTAINTY), ignore_errors=True)
    os.makedirs(os.path.join(records, "frames"), exist_ok=True)


def label_split(split_dir: str, meta: SplitMeta, settings: Settings, label_source: Dict[str, Any], *,
                label: Callable[[List[str]], Iterable[Optional[str]]], source: str, overwrite: bool = False,
                limit: Optional[int] = None, log=print) -> int:
    """Labels the frames of a split that have no record yet with `label(names)`, which writes each frame (through
    write_labels) and yields None, or the message of a frame that failed, per name. Then, if every frame is
    labelled, writes meta.json and prints the report; `source` says where the labels come from ("from coco
    predictions"). `label_source` is recorded in meta.json and decides whether a rerun resumes. `limit`: label
    the first N frames only, a trial that leaves the split unlabelled (a rerun without it resumes)."""
    t0 = time.time()
    names = meta.names[:limit]
    start_labels(split_dir, meta, overwrite, label_source)
    todo = [n for n in names if not os.path.exists(record_path(split_dir, n))]
    resumed = len(names) - len(todo)
    if resumed:
        log(f"{split_dir}: resuming, {resumed} of {len(names)} frames labelled already")
    errors = [err for err in tqdm(label(todo), total=len(todo), desc=os.path.basename(os.path.normpath(split_dir)),
                                  unit="frame", leave=False) if err]
    if errors:
        raise DataError(f"{len(errors)} of {len(names)} frames failed (the split stays unlabelled and the frames "
                        f"labelled are kept: fix these and rerun to resume):" + listed(errors))
    counts = {}
    for name in names:
        with open(record_path(split_dir, name)) as f:
            counts[name] = json.load(f)
    lines = report(split_dir, source, counts, resumed, settings, time.time() - t0)
    if len(names) < len(meta.names):
        lines.append(f"  a trial of {len(names)} of {len(meta.names)} frames (--limit): the split stays unlabelled; "
                     f"rerun without --limit to label the rest (these are kept)")
    else:
        meta.has_labels = True
        meta.classes = list(coco.CLASSES)
        meta.instance_classes = list(settings.instance_classes)
        meta.max_instances = max(c["instances"] for c in counts.values())
        meta.label_source = label_source
        write_meta(split_dir, meta)  # last, atomically: a split whose meta.json says has_labels is complete
        shutil.rmtree(os.path.join(split_dir, RECORDS))
    for line in lines:
        log(line)
    return 0


def report(split_dir: str, source: str, counts: Dict[str, Dict], resumed: int, settings: Settings,
           seconds: float) -> List[str]:
    """The closing report: frames, segments and instances per frame, things that became no instance."""
    def total(key: str) -> int:
        return sum(c[key] for c in counts.values())

    n = len(counts)
    segs, inst = [c["segments"] for c in counts.values()], [c["instances"] for c in counts.values()]
    hist = np.bincount(inst)
    crowded = sum(c["beyond_max"] > 0 for c in counts.values())
    return [f"{split_dir}: labelled {n} frames {source} ({n - resumed} written, {resumed} resumed) in {seconds:.1f} s",
            f"  segments per frame: mean {np.mean(segs):.1f}, max {max(segs)}; void "
            f"{100 * np.mean([c['void'] for c in counts.values()]):.1f} % of pixels",
            f"  instances per frame: mean {np.mean(inst):.1f}, max {max(inst)}; histogram "
            + ", ".join(f"{k}: {v}" for k, v in enumerate(hist) if v),
            f"  things without an instance: {total('low_score')} below --score-thresh {settings.score_thresh:g}, "
            f"{total('crowd')} crowds, {total('other_class')} of other classes, {total('beyond_max')} beyond "
            f"--max-instances {settings.max_instances} (in {crowded} of {n} frames), {total('vanished')} lost in "
            f"resizing to {settings.size[0]}x{settings.size[1]}"]
