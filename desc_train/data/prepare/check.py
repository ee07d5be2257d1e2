"""Check a prepared root: every split's files, sizes, focal lengths, classes,
depth scale, instance counts and evaluation ground truth, before hours of
training find a problem in a DataLoader worker.

Fails (exit 1) on: a meta.json field of the wrong kind (a focal of 0, NaN or
negative, a list where a number belongs); a missing file; a focal length outside
0.1-10 image widths; splits labelling different classes; instance classes that are
not classes; class ids in a semantic map that are no class of its split (every
frame's map is decoded: one bad frame is enough to stop a training run); source
depth whose median exceeds 200 m or whose maximum is under 1 m (a wrong scale); a
test split (one with an evaluation protocol in meta.json) without ground truth for
every frame; a stereo split (one with rgb_right/) without a right view or a baseline
for every frame, or with a right view of another size; certainty maps that the label source
promises missing, or (of the sampled frames) unreadable. Reports the rest (frames, sizes, focal range, depth statistics of
--frames sampled frames, the share of depth at max_depth, instances per frame,
splits still without labels).
"""
from __future__ import annotations

import os
from typing import List, Tuple

import numpy as np

from ..layout import (RIGHT, DataError, SplitMeta, certainty_path, check_stereo, foreign_ids, frame_path, gt_path,
                      has_right_views, ids_message, read_certainty, read_depth, read_gt, read_instance, read_meta,
                      read_rgb, read_semantic)
from .common import parse_positive

# Focal length in image widths: outside, the intrinsics were not read right (normalised,
# in millimetres, or of another size). KITTI's is 0.58 widths, Cityscapes' 1.1.
FOCAL_RANGE = (0.1, 10.0)
SAMPLED = 64  # frames whose depth is decoded for the statistics
SHOWN = 5  # frames named of those with foreign class ids


def add_arguments(p) -> None:
    p.add_argument("root", help="root of a prepared dataset (folders with meta.json)")
    p.add_argument("--frames", type=parse_positive, default=SAMPLED,
                   help="frames per split decoded for depth statistics (at least 1)")


def splits_of(root: str) -> List[str]:
    if not os.path.isdir(root):
        raise DataError(f"{root}: no such folder")
    found = sorted(d for d in os.listdir(root) if os.path.exists(os.path.join(root, d, "meta.json")))
    if not found:
        raise DataError(f"{root}: holds no split (no folder with a meta.json); prepare one with desc-train prepare")
    return [os.path.join(root, d) for d in found]


def _missing_files(split: str, meta: SplitMeta) -> List[str]:
    folders = ["rgb"] + [RIGHT] * has_right_views(split) + ["depth"] * meta.has_depth + \
        ["semantic", "instance"] * meta.has_labels
    missing = []
    for name in meta.names:
        for folder in folders:
            png = os.path.join(split, folder, name + ".png")
            if not os.path.exists(png) and not (folder == "depth" and os.path.exists(png[:-4] + ".npy")):
                missing.append(png)
        if meta.eval and not os.path.exists(gt_path(split, name)):
            missing.append(gt_path(split, name))
        if _has_certainty(meta) and not os.path.exists(certainty_path(split, name)):
            missing.append(certainty_path(split, name))
    return missing


def _has_certainty(meta: SplitMeta) -> bool:
    """Whether the split's labeller wrote certainty maps (prepare segment --logits)."""
    return meta.has_labels and bool((meta.label_source or {}).get("certainty"))


def _foreign_class_ids(split: str, meta: SplitMeta) -> List[str]:
    """The problem, if any, of frames whose semantic map holds ids that are no class
    of the split (255 = ignore is one): every frame is decoded, since the
    trainer stops at the first such frame it draws, however rare."""
    bad = {}
    for name in meta.names:
        try:
            ids = foreign_ids(read_semantic(split, name, meta), len(meta.classes))
        except DataError as err:  # unreadable, or of another size: named as it is
            return [str(err)]
        if ids:
            bad[name] = ids
    if not bad:
        return []
    first = "; ".join(f"{frame_path(split, 'semantic', n)}: {ids_message(ids, len(meta.classes))}"
                      for n, ids in list(bad.items())[:SHOWN])
    more = f"; and {len(bad) - SHOWN} more frames" if len(bad) > SHOWN else ""
    return [f"{split}: {len(bad)} of {len(meta.names)} frames have class ids outside its classes: {first}{more}"]


def _sampled_depth(split: str, sample: List[str], meta: SplitMeta) -> np.ndarray:
    """The depth of the sampled frames, their RGB and instance maps decoded too
    (a map unreadable or of another size than image_size stops here, named)."""
    depths = []
    for name in sample:
        read_rgb(split, name, meta)
        if meta.has_labels:
            read_instance(split, name, meta)
        depths.append(read_depth(split, name, meta).ravel())
    return np.concatenate(depths)


def sample_of(names: List[str], frames: int) -> List[str]:
    """`frames` names spread evenly over `names`."""
    return [names[i] for i in np.linspace(0, len(names) - 1, min(frames, len(names))).astype(int)] if names else []


def _stereo_problems(split: str, meta: SplitMeta, lines: List[str], sample: List[str]) -> List[str]:
    """The problems of a split with right views: a frame without a baseline, a
    sampled right view unreadable or of another size (a missing one is among the
    missing files). Adds the baseline range to `lines`."""
    try:
        check_stereo(split, meta)
    except DataError as err:
        return [str(err)]
    baselines = [meta.frame_baseline(n) for n in meta.names]
    lines.append(f"  stereo: right views, baseline {min(baselines):.4f} to {max(baselines):.4f} m")
    for name in sample:
        if os.path.exists(frame_path(split, RIGHT, name)):
            try:
                read_rgb(split, name, meta, RIGHT)
            except DataError as err:  # unreadable, or of another size: named as it is
                return [str(err)]
    return []


def check_split(split: str, frames: int = SAMPLED) -> Tuple[List[str], List[str]]:
    """(report lines, problems) of one split."""
    meta = read_meta(split)
    lines, problems = [], []
    names = meta.names
    focals = [meta.frame_focal(n) for n in names] or [meta.focal]
    lines.append(f"{split}: {meta.domain}, {len(names)} frames at {meta.image_size[0]}x{meta.image_size[1]}, "
                 f"focal {min(focals):.1f} to {max(focals):.1f} px, {len(meta.classes)} classes, "
                 f"depth {'yes' if meta.has_depth else 'no'}, labels {'yes' if meta.has_labels else 'not yet'}")
    if not names:
        problems.append(f"{split}: lists no frames")
    lo, hi = (r * meta.image_size[1] for r in FOCAL_RANGE)
    if min(focals) < lo or max(focals) > hi:
        problems.append(f"{split}: focal {min(focals):.1f} to {max(focals):.1f} px is outside {lo:g}-{hi:g} px "
                        f"({FOCAL_RANGE[0]:g} to {FOCAL_RANGE[1]:g} image widths): intrinsics of another size, "
                        f"normalised or in millimetres?")
    bad = [c for c in meta.instance_classes if not 0 <= c < len(meta.classes)]
    if bad:
        problems.append(f"{split}: instance classes {bad} are not class ids (0-{len(meta.classes) - 1})")
    missing = _missing_files(split, meta)
    if missing:
        problems.append(f"{split}: {len(missing)} files missing, first {missing[0]}")
    if not meta.has_labels:
        lines.append("  no semantic and instance maps yet: add them with desc-train prepare segment (or prepare "
                     "panoptic) before training")
    if meta.max_instances is not None:
        lines.append(f"  at most {meta.max_instances} instances in a frame (the trainer takes at least as many slots)")
    sample = sample_of(names, frames)
    if has_right_views(split) and names:
        problems += _stereo_problems(split, meta, lines, sample)
    if meta.has_depth and sample and not missing:
        depth = _sampled_depth(split, sample, meta)
        valid = depth[depth > 0]
        if valid.size == 0:
            problems.append(f"{split}: no depth in {len(sample)} sampled frames")
        else:
            med, top = float(np.median(valid)), float(valid.max())
            line = f"  depth over {len(sample)} frames: median {med:.2f} m, max {top:.2f} m"
            if meta.max_depth:
                line += f", {100 * np.mean(valid >= meta.max_depth - 1e-3):.1f} % at max_depth {meta.max_depth:g} m"
            lines.append(line)
            if med > 200 or top < 1:
                problems.append(f"{split}: depth median {med:.1f} m, max {top:.2f} m: not metres (wrong depth_scale "
                                f"or converted depth?)")
    if meta.has_labels and names and not missing:
        problems += _foreign_class_ids(split, meta)
        if _has_certainty(meta):
            for name in sample:  # unreadable, of another size or with foreign classes: named
                read_certainty(split, name, meta)
    if meta.eval:
        lines.append(f"  evaluation: ground truth {meta.eval.get('gt_kind')}, crop {meta.eval.get('crop')}, "
                     f"caps {meta.eval.get('caps')}")
        if sample and not missing:
            gts = [read_gt(split, n) for n in sample[:8]]
            if all(g is not None and not (g > 0).any() for g in gts):
                problems.append(f"{split}: the sampled ground-truth maps hold no depth")
    return lines, problems


def check_root(root: str, frames: int = SAMPLED) -> Tuple[List[str], List[str]]:
    lines, problems = [], []
    metas = {}
    for split in splits_of(root):
        try:
            more, bad = check_split(split, frames)
            metas[split] = read_meta(split)
        except DataError as err:
            more, bad = [], [str(err)]
        lines += more
        problems += bad
    labelled = {s: m for s, m in metas.items() if m.has_labels}
    if len({tuple(m.classes) for m in labelled.values()}) > 1:
        problems.append("splits label different classes: " + "; ".join(
            f"{os.path.basename(s)} {len(m.classes)} classes" for s, m in labelled.items()))
    return lines, problems


def main(args) -> int:
    lines, problems = check_root(args.root, args.frames)
    for line in lines:
        print(line)
    if problems:
        raise DataError(f"{len(problems)} problems:\n  " + "\n  ".join(problems))
    print(f"{args.root}: ok")
    return 0
