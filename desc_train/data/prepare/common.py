"""What every ``desc-train prepare`` converter shares.

A converter lists its frames as ``(name, job)`` pairs and gives a top-level
function ``read(job) -> Frame`` that loads one frame at the source's native size
(it runs in worker processes, so ``job`` must pickle). ``write_split`` then resizes
each frame to the split size (a stereo frame's right view as its image), scales its
intrinsics, writes it in the layout of
``desc_train.data.layout`` with a per-frame record, and writes ``meta.json`` last
and atomically: an interrupted run leaves no ``meta.json`` (the split is not
usable) and a rerun skips the frames whose record exists.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from tqdm import tqdm

from ...config import FOLDER_NAME, MAX_SIDE, is_folder_name
from ...errors import WORKERS, Bounds, argument, parse_hxw, shown
from ..layout import (DEPTH_SCALE, DataError, SplitMeta, atomic_write, intrinsics_problem, meta_path, write_gt,
                      write_meta, write_sample)

RECORDS = ".prepare"  # per-frame records of a split being written; gone once meta.json is
MAX_SHOWN = 20  # errors printed of a failed run


@dataclass
class Frame:
    """One frame as a converter read it, at the source's native size (H0, W0)."""

    name: str
    src: str  # the source file, relative to the dataset root
    rgb: np.ndarray  # (H0, W0, 3) uint8 RGB
    K: Sequence[float]  # fx, fy, cx, cy in pixels at (H0, W0)
    depth: Optional[np.ndarray] = None  # (H0, W0) metres, 0 = none
    semantic: Optional[np.ndarray] = None  # (H0, W0) layout class ids, 255 = ignore
    instance: Optional[np.ndarray] = None  # (H0, W0) instance ids, 0 = none
    gt: Optional[np.ndarray] = None  # native-size evaluation ground truth, metres, 0 = none
    rgb_right: Optional[np.ndarray] = None  # (H0, W0, 3) the other view of a stereo pair (extra holds its baseline)
    extra: Dict[str, Any] = field(default_factory=dict)  # more of the frame's meta.json record


def listed(lines: Sequence[str]) -> str:
    """Lines as an indented list, the first MAX_SHOWN of them and a count of the rest."""
    more = f"\n  ... and {len(lines) - MAX_SHOWN} more" if len(lines) > MAX_SHOWN else ""
    return "\n  " + "\n  ".join(lines[:MAX_SHOWN]) + more


def raise_all(errors: Sequence[str], headline: str) -> None:
    """Raises one DataError listing every error of a run (all of them, not just the first)."""
    if errors:
        raise DataError(f"{headline}:{listed(errors)}")


# ---------------------------------------------------------------- arguments
def parse_size(text: str):
    """``HxW`` (multiples of 16, what the U-Nets take) or ``native``."""
    if text == "native":
        return None
    try:
        h, w = parse_hxw(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 192x640 or be 'native', got {shown(text)}") from None
    if h < 16 or w < 16 or h % 16 or w % 16 or h > MAX_SIDE or w > MAX_SIDE:
        raise argparse.ArgumentTypeError(f"size must be multiples of 16 (the networks' input) from 16 to {MAX_SIDE}, "
                                         f"got {shown(text)}")
    return h, w


parse_workers = argument(WORKERS)
parse_positive = argument(Bounds(1))  # --limit, frame counts
parse_length = argument(Bounds(0, integer=False, open_lo=True))  # metres, pixels


def parse_split(text: str) -> str:
    """A split's folder name, right under --out: a path could write outside it."""
    if not is_folder_name(text):
        raise argparse.ArgumentTypeError(f"expected {FOLDER_NAME}, got {shown(text)}")
    return text


def add_common_arguments(p: argparse.ArgumentParser, size: str = "192x640", root: bool = True) -> None:
    if root:
        p.add_argument("--root", required=True, help="the dataset as downloaded and extracted")
    p.add_argument("--out", required=True, help="root of the prepared dataset (desc_train's layout)")
    p.add_argument("--split", required=True, type=parse_split,
                   help="split folder to write under --out, e.g. source_train (a folder name, not a path)")
    p.add_argument("--size", type=parse_size, default=size,
                   help="HxW of the stored frames, multiples of 16, or 'native'")
    p.add_argument("--workers", type=parse_workers, default=None,
                   help="processes (default: the CPU count, at most 8)")
    p.add_argument("--limit", type=parse_positive, default=None,
                   help="convert the first N frames only, N >= 1 (a trial run)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a finished split, or restart an interrupted one instead of resuming it")


def sha256_lines(lines: Iterable[str]) -> str:
    return hashlib.sha256("".join(line.rstrip("\n") + "\n" for line in lines).encode()).hexdigest()


# ---------------------------------------------------------------- geometry
def check_intrinsics(K: Sequence[float], where: str) -> List[float]:
    """[fx, fy, cx, cy] as floats; DataError naming `where` (the calibration file
    and the entry the values came from) unless the focal lengths are finite and
    above 0 and the principal point finite and not negative: meta.json takes no
    NaN, and a focal of 0 or below makes every metric height wrong."""
    try:
        values = [float(v) for v in K]
    except (TypeError, ValueError):
        values = None
    problem = intrinsics_problem(values if values is not None else K)
    if problem:
        raise DataError(f"{where}: intrinsics {problem}")
    return values


def scale_intrinsics(K: Sequence[float], orig: Tuple[int, int], size: Tuple[int, int]) -> List[float]:
    """[fx, fy, cx, cy] at (H0, W0) -> at (H, W): x by W/W0, y by H/H0."""
    (H0, W0), (H, W) = orig, size
    fx, fy, cx, cy = (float(v) for v in K)
    return [fx * W / W0, fy * H / H0, cx * W / W0, cy * H / H0]


def resize_rgb(rgb: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    H, W = size
    if rgb.shape[:2] == (H, W):
        return rgb
    shrink = H < rgb.shape[0] or W < rgb.shape[1]
    return cv2.resize(rgb, (W, H), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def resize_nearest(array: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Depth, labels and ids: no blending across edges."""
    H, W = size
    if array.shape[:2] == (H, W):
        return array
    dtype = array.dtype
    work = array.astype(np.int32) if dtype in (np.int64, np.uint32, np.int32) else array
    return cv2.resize(work, (W, H), interpolation=cv2.INTER_NEAREST).astype(dtype)


# ---------------------------------------------------------------- writing a split
def _record_path(split_dir: str, name: str) -> str:
    return os.path.join(split_dir, RECORDS, name + ".json")


def _write_frame(args) -> Tuple[str, Optional[Dict], Optional[str]]:
    """Reads and writes one frame; returns (name, record, error message)."""
    split_dir, name, job, read, size, depth_scale = args
    try:
        fr: Frame = read(job)
    except DataError as err:
        return name, None, str(err)
    orig = tuple(fr.rgb.shape[:2])
    size = tuple(size) if size is not None else orig
    for key in ("rgb_right", "depth", "semantic", "instance"):
        a = getattr(fr, key)
        if a is not None and a.shape[:2] != orig:
            return name, None, f"{fr.src}: {key} is {a.shape[1]}x{a.shape[0]} but the image is {orig[1]}x{orig[0]}"
    try:  # the reader checked its calibration file; this stops what slipped through
        K = check_intrinsics(scale_intrinsics(check_intrinsics(fr.K, fr.src), orig, size), fr.src)
    except DataError as err:
        return name, None, str(err)
    depth = resize_nearest(fr.depth.astype(np.float32), size) if fr.depth is not None else None
    write_sample(split_dir, name, resize_rgb(fr.rgb, size), depth,
                 resize_nearest(fr.semantic, size) if fr.semantic is not None else None,
                 resize_nearest(fr.instance, size) if fr.instance is not None else None, depth_scale=depth_scale,
                 rgb_right=resize_rgb(fr.rgb_right, size) if fr.rgb_right is not None else None)
    if fr.gt is not None:
        write_gt(split_dir, name, fr.gt)
    record = dict(focal=K[1], K=[round(v, 6) for v in K], orig_size=list(orig), src=fr.src, **fr.extra)
    stats: Dict[str, Any] = dict(size=list(size))
    if depth is not None:
        stats["depth"] = _depth_stats(depth)
    if fr.gt is not None:
        stats["gt"] = _depth_stats(fr.gt)
    if fr.instance is not None:
        stats["instances"] = int(len(np.unique(fr.instance[fr.instance > 0])))
    # Last: a frame with a record is complete (a .tmp a killed run left is rewritten with the frame).
    atomic_write(_record_path(split_dir, name), lambda f: json.dump(dict(record=record, stats=stats), f,
                                                                     allow_nan=False))
    return name, record, None


def _depth_stats(depth: np.ndarray) -> Dict[str, float]:
    valid = depth[np.isfinite(depth) & (depth > 0)]
    if valid.size == 0:
        return dict(valid=0.0)
    return dict(valid=round(valid.size / depth.size, 5), min=float(valid.min()), median=float(np.median(valid)),
                max=float(valid.max()))


def start_split(split_dir: str, overwrite: bool, args: Dict) -> None:
    """Prepares `split_dir` for writing: refuses a finished split unless
    `overwrite`, restarts an interrupted one under other arguments (or with
    `overwrite`), and otherwise resumes it."""
    if os.path.exists(meta_path(split_dir)):
        if not overwrite:
            raise DataError(f"{split_dir} is prepared already (it has a meta.json); pass --overwrite to replace it")
        shutil.rmtree(split_dir)
    keep_records(os.path.join(split_dir, RECORDS), args, overwrite, discard=split_dir)


def keep_records(records: str, args: Dict, restart: bool, discard: str) -> None:
    """Keeps the per-frame records of an interrupted run made with the same `args`
    (so that a rerun resumes it); under other arguments, or with `restart`, removes
    `discard` (the records, or all the run wrote) first. Saves `args` beside the records."""
    saved = os.path.join(records, "args.json")
    if os.path.exists(saved):
        with open(saved) as f:
            same = json.load(f) == json.loads(json.dumps(args))
        if restart or not same:
            shutil.rmtree(discard)
    os.makedirs(records, exist_ok=True)
    atomic_write(saved, lambda f: json.dump(args, f))


def write_split(split_dir: str, frames: Sequence[Tuple[str, Any]], read: Callable[[Any], Frame], *,
                size: Optional[Tuple[int, int]], meta: Dict[str, Any], args: Dict[str, Any],
                workers: Optional[int] = None, overwrite: bool = False, depth_scale: float = DEPTH_SCALE,
                log=print) -> SplitMeta:
    """Converts `frames` (name, job) with `read` into `split_dir` and writes its
    meta.json from `meta` (SplitMeta fields other than focal, image_size and
    frames, which come from the frames). `args` are the converter's arguments:
    a rerun with the same ones resumes, with others it starts afresh. Raises
    DataError listing every frame that failed (nothing is then marked done)."""
    t0 = time.time()
    names = [n for n, _ in frames]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})[:5]
        raise DataError(f"frame names repeat ({', '.join(dup)}): the frame list names some frames twice")
    start_split(split_dir, overwrite, args)
    todo = [(split_dir, n, job, read, size, depth_scale) for n, job in frames
            if not os.path.exists(_record_path(split_dir, n))]
    resumed = len(frames) - len(todo)
    if resumed:
        log(f"{split_dir}: resuming, {resumed} of {len(frames)} frames written already")
    errors: List[str] = []
    workers = max(1, workers or min(os.cpu_count() or 1, 8))
    with tqdm(total=len(frames), initial=resumed, desc=os.path.basename(os.path.normpath(split_dir)),
              unit="frame", leave=False) as bar:
        if workers > 1 and len(todo) > 1:
            with ProcessPoolExecutor(workers) as pool:
                results = pool.map(_write_frame, todo, chunksize=max(1, min(16, len(todo) // (workers * 4))))
                for _, _, err in results:
                    errors += [err] if err else []
                    bar.update(1)
        else:
            for job in todo:
                errors += [e for e in [_write_frame(job)[2]] if e]
                bar.update(1)
    raise_all(errors, f"{len(errors)} of {len(frames)} frames failed (the {len(frames) - len(errors)} others are "
                      f"kept; rerun to resume)")
    records, stats = {}, {}
    for n in names:
        with open(_record_path(split_dir, n)) as f:
            saved = json.load(f)
        records[n], stats[n] = saved["record"], saved["stats"]
    sizes = sorted({tuple(s["size"]) for s in stats.values()})
    if len(sizes) != 1:
        raise DataError(f"{split_dir}: frames of several sizes {sizes}; pass --size HxW")
    counts = [s["instances"] for s in stats.values() if "instances" in s]
    focals = sorted(r["focal"] for r in records.values())
    fields = dict(meta)
    if counts:
        fields["max_instances"] = max(counts)
    split = SplitMeta(focal=float(np.median(focals)), image_size=list(sizes[0]), frames=records,
                      depth_scale=depth_scale, **fields)
    write_meta(split_dir, split)  # last, atomically: a split with a meta.json is complete
    shutil.rmtree(os.path.join(split_dir, RECORDS))
    for line in report(split_dir, split, stats, resumed, time.time() - t0):
        log(line)
    return split


def anisotropy_note(orig: Tuple[int, int], size: Optional[Tuple[int, int]]) -> Optional[str]:
    """A note when resizing scales x and y by more than 1 % apart (fx and fy are scaled apart)."""
    if size is None:
        return None
    sy, sx = size[0] / orig[0], size[1] / orig[1]
    if abs(sx - sy) > 0.01 * max(sx, sy):
        return (f"note: {orig[1]}x{orig[0]} -> {size[1]}x{size[0]} scales x by {sx:.4f} and y by {sy:.4f}; "
                f"fx and fy are scaled apart, and the focal of the height prior is fy")
    return None


def report(split_dir: str, meta: SplitMeta, stats: Dict[str, Dict], resumed: int, seconds: float) -> List[str]:
    """The closing report of a conversion: frames, sizes, focal range, depth and instances."""
    n = len(meta.frames)
    focals = [r["focal"] for r in meta.frames.values()]
    origs = sorted({tuple(r.get("orig_size", meta.image_size)) for r in meta.frames.values()})
    lines = [f"{split_dir}: {n} frames ({n - resumed} written, {resumed} resumed) in {seconds:.1f} s",
             f"  stored size {meta.image_size[0]}x{meta.image_size[1]} from "
             + ", ".join(f"{w}x{h}" for h, w in origs),
             f"  focal (fy at the stored size) {min(focals):.2f} to {max(focals):.2f} px"]
    for key, what in (("depth", "depth"), ("gt", "ground truth (native size)")):
        ds = [s[key] for s in stats.values() if key in s]
        if ds:
            valid = [d for d in ds if d["valid"] > 0]
            if valid:
                lines.append(f"  {what}: min {min(d['min'] for d in valid):.2f} m, median of medians "
                             f"{np.median([d['median'] for d in valid]):.2f} m, max {max(d['max'] for d in valid):.2f} m, "
                             f"valid {100 * np.mean([d['valid'] for d in ds]):.1f} % of pixels")
            else:
                lines.append(f"  {what}: no valid pixel in any frame")
    counts = [s["instances"] for s in stats.values() if "instances" in s]
    if counts:
        hist = np.bincount(counts)
        lines.append(f"  instances per frame: mean {np.mean(counts):.1f}, max {max(counts)}; histogram "
                     + ", ".join(f"{k}: {v}" for k, v in enumerate(hist) if v))
    return lines
