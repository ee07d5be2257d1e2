"""Semantic and instance maps of a prepared split from panoptic predictions (Detectron2's Panoptic FPN, as DESC
runs it online, or any COCO panoptic result), in the 133 COCO panoptic classes.

DESC labels both domains with the same detector (Panoptic FPN R101 on COCO, thresholds 0.8), so run this on the
source split as well as the target: the source dataset's own labels are another label source. The split must be
prepared already (its meta.json present, typically without labels); each frame needs exactly one prediction,
matched by file stem = frame name, or with ``--match src`` by the frame's source path.

Two formats are read. ``coco``: a panoptic JSON (``annotations`` with ``file_name`` and ``segments_info``,
category ids of the COCO dataset) and its folder of PNGs whose pixels encode segment ids as R + 256 G + 65536 B;
``--predictions`` names the JSON (the PNGs in the folder named as its stem, beside it) or a folder holding both.
``detectron2``: one ``NAME.npz`` per frame with ``panoptic_seg`` (int32 segment ids, 0 = void) and
``segments_info`` (a JSON string of Detectron2's list: id, isthing, score, contiguous category_id), as
tools/run_panoptic_fpn.py writes.

Classes: Detectron2's contiguous thing id t (0-79) is class t, its contiguous stuff id s (1-53) is class 79 + s,
so DESC's collision of the two id spaces (car and blanket both 2) disappears; void is 255. Instances: the
thing segments scoring at least ``--score-thresh`` (segments without a score are kept), not crowds, of
``--instance-classes``, numbered 1..N by decreasing area; past ``--max-instances`` the smallest are dropped and
counted. Things that make no instance keep their class in the semantic map. Both maps are resized with nearest
neighbour to the split's size (the aspect ratios must agree within 2 %). A deviation from DESC: the layout holds
one non-overlapping instance map, so the parts of overlapping Mask R-CNN instances that the panoptic combination
hides are lost, where DESC's height prior sees whole masks.

meta.json is rewritten last and atomically (has_labels true, the classes, the instance classes, the most
instances of a frame, the label source): a run cut short leaves the split unlabelled, and a rerun with the same
arguments resumes it.
"""
from __future__ import annotations

import argparse
import json
import os
import posixpath
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from functools import partial
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import cv2
import numpy as np
from tqdm import tqdm

from .. import coco
from ..layout import DataError, SplitMeta, atomic_write, meta_path, read_meta, write_meta, write_sample
from .common import keep_records, listed, parse_split, parse_workers, resize_nearest

RECORDS = ".panoptic"  # per-frame records of a labelling run; gone once meta.json says has_labels
VOID = 0  # the segment id of unlabelled pixels in both formats
ASPECT_TOLERANCE = 0.02  # DESC's detector input 368x1232 and network input 192x640 differ by 0.3 %
MAX_ID = 65535  # instance maps are 16-bit PNGs
RUN_INFO = "run.json"  # written beside detectron2 predictions by tools/run_panoptic_fpn.py: the model and settings


# ---------------------------------------------------------------- segments
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


class Job(NamedTuple):
    split_dir: str
    name: str
    format: str
    path: str  # the PNG (coco) or the npz (detectron2)
    segments_info: Optional[List[Dict]]  # coco: the annotation's list; detectron2: inside the npz
    where: str  # how an error names the prediction
    settings: Settings


def _required(info: Dict, key: str, where: str):
    if not isinstance(info, dict) or key not in info:
        raise DataError(f"{where}: a segments_info entry lacks {key!r} (got {info!r})")
    return info[key]


def coco_segment(info: Dict, where: str) -> Segment:
    """A segment of a COCO panoptic annotation (category ids of the COCO dataset)."""
    cat = _required(info, "category_id", where)
    if cat not in coco.FROM_COCO_ID:
        raise DataError(f"{where}: category_id {cat} is not a COCO panoptic id (ids are 1-200 with gaps: things "
                        f"1-90, stuff 92-200); only predictions in the 133 COCO panoptic classes can be converted")
    label = coco.FROM_COCO_ID[cat]
    return _segment(info, label, label < coco.NUM_THINGS, where)


def detectron2_segment(info: Dict, where: str) -> Segment:
    """A segment of Detectron2's panoptic output (contiguous thing ids 0-79, stuff ids 1-53)."""
    cat, isthing = _required(info, "category_id", where), bool(_required(info, "isthing", where))
    if isthing and isinstance(cat, int) and 0 <= cat < coco.NUM_THINGS:
        label = coco.thing_from_contiguous(cat)
    elif not isthing and isinstance(cat, int) and 1 <= cat <= len(coco.STUFF):
        label = coco.stuff_from_contiguous(cat)
    else:
        raise DataError(f"{where}: category_id {cat!r} of a {'thing' if isthing else 'stuff'} segment is not a "
                        f"contiguous Detectron2 id (things 0-79, stuff 1-53); COCO dataset ids need --format coco")
    return _segment(info, label, isthing, where)


def _segment(info: Dict, label: int, isthing: bool, where: str) -> Segment:
    score = info.get("score")
    return Segment(int(_required(info, "id", where)), label, isthing, None if score is None else float(score),
                   bool(info.get("iscrowd", 0)))


# ---------------------------------------------------------------- reading predictions
def decode_ids(bgr: np.ndarray) -> np.ndarray:
    """Segment ids R + 256 G + 65536 B of an RGB-encoded panoptic PNG as OpenCV loads it (channels B, G, R)."""
    b, g, r = (bgr[..., c].astype(np.int32) for c in range(3))
    return r + 256 * g + 65536 * b


def read_coco_png(path: str) -> np.ndarray:
    """The (H, W) int32 segment ids of a COCO panoptic PNG."""
    if not os.path.exists(path):
        raise DataError(f"{path}: missing (the JSON's file_name names it; the PNGs belong in the folder named as "
                        f"the JSON's stem)")
    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DataError(f"{path}: not a readable PNG")
    if image.ndim == 2:
        raise DataError(f"{path} is single-channel: COCO panoptic PNGs are RGB-encoded ids (R + 256 G + 65536 B); "
                        f"this looks like a semantic map")
    if image.shape[2] != 3 or image.dtype != np.uint8:
        raise DataError(f"{path}: {image.shape[2]} channels of {image.dtype}; COCO panoptic PNGs are 8-bit RGB "
                        f"(ids R + 256 G + 65536 B)")
    return decode_ids(image)


def read_detectron2(path: str) -> Tuple[np.ndarray, List[Dict]]:
    """(panoptic_seg, segments_info) of a frame's npz."""
    fix = ("expected Detectron2's panoptic output: panoptic_seg (H, W) int32 and segments_info as a JSON string, "
           "as tools/run_panoptic_fpn.py writes")
    try:
        with np.load(path, allow_pickle=False) as npz:
            files = list(npz.files)
            seg = npz["panoptic_seg"] if "panoptic_seg" in files else None
            info = npz["segments_info"] if "segments_info" in files else None
    except (OSError, ValueError) as err:  # allow_pickle=False refuses pickled lists of dicts
        raise DataError(f"{path}: unreadable ({err}); {fix}") from None
    if seg is None or info is None:  # outside the try: DataError is a ValueError
        raise DataError(f"{path}: holds {', '.join(files) or 'nothing'}; {fix}")
    if seg.ndim != 2 or not np.issubdtype(seg.dtype, np.integer):
        raise DataError(f"{path}: panoptic_seg is {seg.dtype} {seg.shape}; {fix}")
    try:
        text = info.item()
        segments = json.loads(text.decode() if isinstance(text, bytes) else text)
    except (ValueError, AttributeError, TypeError):
        raise DataError(f"{path}: segments_info is not a JSON string; {fix}") from None
    if not isinstance(segments, list):
        raise DataError(f"{path}: segments_info holds {type(segments).__name__}, not a list; {fix}")
    return seg.astype(np.int32), segments


def read_prediction(job: Job) -> Tuple[np.ndarray, List[Segment]]:
    """A frame's segment id map at the prediction's size and its segments in layout classes."""
    if job.format == "coco":
        seg, infos, parse = read_coco_png(job.path), job.segments_info, coco_segment
    else:
        (seg, infos), parse = read_detectron2(job.path), detectron2_segment
    segments = [parse(info, job.where) for info in infos]
    ids = [s.id for s in segments]
    if len(set(ids)) != len(ids):
        twice = sorted({i for i in ids if ids.count(i) > 1})
        raise DataError(f"{job.where}: segment id {twice[0]} is listed twice in segments_info")
    return seg, segments


# ---------------------------------------------------------------- conversion
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


def _record_path(split_dir: str, name: str) -> str:
    return os.path.join(split_dir, RECORDS, "frames", name + ".json")


def label_frame(job: Job) -> Tuple[str, Optional[str]]:
    """Converts and writes one frame's maps and its record; returns (name, error message)."""
    try:
        seg, segments = read_prediction(job)
        check_aspect(job.where, seg.shape, job.settings.size)
        semantic, instance, counts = label_maps(seg, segments, job.settings, job.where)
    except DataError as err:
        return job.name, str(err)
    size, most, made = job.settings.size, job.settings.max_instances, int(instance.max())
    instance, visible = keep_largest(resize_nearest(instance, size), most)
    counts.update(instances=min(visible, most), vanished=made - visible, beyond_max=max(0, visible - most))
    write_sample(job.split_dir, job.name, None, semantic=resize_nearest(semantic, size), instance=instance)
    # Last: a frame with a record is complete (a .tmp a killed run left is rewritten with the frame).
    atomic_write(_record_path(job.split_dir, job.name), lambda f: json.dump(counts, f))
    return job.name, None


# ---------------------------------------------------------------- finding predictions
def _key(path: str) -> str:
    """A path without its extension, with forward slashes: what frames and predictions are matched on."""
    return posixpath.splitext(posixpath.normpath(path.replace("\\", "/")))[0]


def coco_index(predictions: str) -> Tuple[str, str, Dict[str, Dict]]:
    """(json path, PNG folder, {file key: annotation}) of a COCO panoptic result."""
    if os.path.isdir(predictions):
        found = sorted(f for f in os.listdir(predictions) if f.endswith(".json"))
        if len(found) != 1:
            raise DataError(f"{predictions}: holds {len(found)} JSON files ({', '.join(found[:5]) or 'none'}); "
                            f"pass the panoptic JSON itself as --predictions")
        path = os.path.join(predictions, found[0])
        beside = os.path.join(predictions, os.path.splitext(found[0])[0])
        pngs = beside if os.path.isdir(beside) else predictions
    else:
        path = predictions
        pngs = os.path.splitext(predictions)[0]
        if not os.path.isdir(pngs):
            raise DataError(f"{pngs}: missing: the PNGs of {path} belong in the folder named as its stem, beside it "
                            f"(panoptic_val2017.json -> panoptic_val2017/)")
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise DataError(f"{path}: missing (--predictions names a COCO panoptic JSON or a folder holding it)") from None
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: not readable JSON: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise DataError(f"{path}: no 'annotations' list: expected a COCO panoptic JSON")
    check_categories(path, data.get("categories") or [])
    annotations: Dict[str, Dict] = {}
    for ann in data["annotations"]:
        if not isinstance(ann, dict) or "file_name" not in ann or not isinstance(ann.get("segments_info"), list):
            raise DataError(f"{path}: an annotation lacks file_name or segments_info (got {str(ann)[:80]})")
        key = _key(ann["file_name"])
        if key in annotations:
            raise DataError(f"{path}: two annotations for {ann['file_name']}")
        annotations[key] = ann
    return path, pngs, annotations


def check_categories(path: str, categories: Iterable[Dict]) -> None:
    """Refuses a JSON whose categories are not objects, or name COCO panoptic ids differently: another label set
    that reuses them."""
    for cat in categories:
        if not isinstance(cat, dict):
            raise DataError(f"{path}: a category is {cat!r}, not an object: expected a COCO panoptic JSON")
        layout = coco.FROM_COCO_ID.get(cat.get("id"))
        if layout is not None and "name" in cat and cat["name"] != coco.CLASSES[layout]:
            raise DataError(f"{path}: category {cat['id']} is {cat['name']!r} here but {coco.CLASSES[layout]!r} in "
                            f"COCO panoptic: these predictions use another label set; only the 133 COCO panoptic "
                            f"classes can be converted")


def detectron2_index(predictions: str) -> Dict[str, str]:
    """{file key: npz path} of the npz files under a folder."""
    if not os.path.isdir(predictions):
        raise DataError(f"{predictions}: not a folder; --format detectron2 reads a folder of NAME.npz files "
                        f"(tools/run_panoptic_fpn.py writes them)")
    index = {}
    for folder, _, files in os.walk(predictions):
        for f in files:
            if f.endswith(".npz"):
                path = os.path.join(folder, f)
                index[_key(os.path.relpath(path, predictions))] = path
    return index


def candidates(meta: SplitMeta, name: str, match: str, where: str) -> List[str]:
    """The prediction keys that may hold a frame, best first: its name, or its source path and each trailing
    part of it (a prediction tree may mirror the dataset from any level, down to bare file stems)."""
    if match == "name":
        return [name]
    src = meta.frames[name].get("src")
    if not src:
        raise DataError(f"{where}: frame {name} has no src: --match src needs a split written by desc-train "
                        f"prepare (or use --match name)")
    parts = _key(src).split("/")
    return ["/".join(parts[i:]) for i in range(len(parts))]


def match_frames(meta: SplitMeta, keys: Iterable[str], match: str, where: str,
                 looked: str) -> Dict[str, str]:
    """{frame name: prediction key}; raises DataError naming the frames without a prediction and the
    predictions claimed by two frames."""
    keys = set(keys)
    found, missing = {}, []
    for name in meta.names:
        hit = next((k for k in candidates(meta, name, match, where) if k in keys), None)
        if hit is None:
            missing.append(name)
        else:
            found[name] = hit
    if missing:
        lines = [f"no prediction for frame {n} (looked for {looked.format(key=candidates(meta, n, match, where)[0])})"
                 for n in missing]
        hint = ("; --match src matches the frames' source paths" if match == "name" else
                "; the path without extension may also be a trailing part of the source path, such as its stem")
        raise DataError(f"{len(missing)} of {len(meta.names)} frames missing (every frame needs a prediction{hint}):"
                        + listed(lines))
    owners: Dict[str, List[str]] = {}
    for name, key in found.items():
        owners.setdefault(key, []).append(name)
    shared = [f"prediction {k} matches frames {', '.join(v)}" for k, v in owners.items() if len(v) > 1]
    if shared:
        raise DataError(f"{len(shared)} predictions match several frames (their paths must tell the frames apart: "
                        f"mirror the dataset's folders):" + listed(shared))
    return found


def make_jobs(args, meta: SplitMeta, split_dir: str, settings: Settings) -> List[Job]:
    """One job per frame of the split, its prediction found, or DataError listing the frames without one."""
    where = meta_path(split_dir)
    if args.format == "coco":
        path, pngs, annotations = coco_index(args.predictions)
        found = match_frames(meta, annotations, args.match, where, f"file_name {{key}}.png in {path}")
        return [Job(split_dir, n, "coco", os.path.join(pngs, annotations[k]["file_name"]),
                    annotations[k]["segments_info"], f"{path}, {annotations[k]['file_name']}", settings)
                for n, k in found.items()]
    index = detectron2_index(args.predictions)
    found = match_frames(meta, index, args.match, where, os.path.join(args.predictions, "{key}.npz"))
    return [Job(split_dir, n, "detectron2", index[k], None, index[k], settings) for n, k in found.items()]


# ---------------------------------------------------------------- the run
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


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--predictions", required=True,
                   help="coco: the panoptic JSON (PNGs in the folder named as its stem) or a folder holding both; "
                        "detectron2: the folder of NAME.npz files")
    p.add_argument("--out", required=True, help="root of the prepared dataset (desc_train's layout)")
    p.add_argument("--split", required=True, type=parse_split,
                   help="the prepared split to label, e.g. target_train (a folder name under --out)")
    p.add_argument("--format", required=True, choices=["coco", "detectron2"], help="how the predictions are stored")
    p.add_argument("--score-thresh", type=_fraction, default=0.8,
                   help="thing segments scoring less are no instances (DESC: 0.8); segments without score are kept")
    p.add_argument("--instance-classes", type=instance_classes, default="all",
                   help="things that become instances: all (DESC), vehicles (for sources without people, such as "
                        "Virtual KITTI), or a list of names or ids, e.g. car,person")
    p.add_argument("--max-instances", type=_count, default=32,
                   help="instances kept per frame, the largest first; the rest are dropped and counted")
    p.add_argument("--match", choices=["name", "src"], default="name",
                   help="name: prediction file stem = frame name; src: prediction path = the frame's source path "
                        "(or a trailing part of it) without extension")
    p.add_argument("--workers", type=parse_workers, default=None,
                   help="processes; when not given, the CPU count, at most 8")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the labels of a labelled split, or restart an interrupted run instead of resuming it")


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
    os.makedirs(os.path.join(records, "frames"), exist_ok=True)


def run_jobs(jobs: List[Job], workers: Optional[int], desc: str) -> List[str]:
    """Runs the frames not done yet; returns the error messages of those that failed."""
    errors: List[str] = []
    workers = max(1, workers or min(os.cpu_count() or 1, 8))
    with ExitStack() as stack:
        mapper = map
        if workers > 1 and len(jobs) > 1:
            pool = stack.enter_context(ProcessPoolExecutor(workers))
            mapper = partial(pool.map, chunksize=max(1, min(16, len(jobs) // (workers * 4))))
        for _, err in tqdm(mapper(label_frame, jobs), total=len(jobs), desc=desc, unit="frame", leave=False):
            errors += [err] if err else []
    return errors


def report(split_dir: str, fmt: str, counts: Dict[str, Dict], resumed: int, settings: Settings,
           seconds: float) -> List[str]:
    """The closing report: frames, segments and instances per frame, things that became no instance."""
    def total(key: str) -> int:
        return sum(c[key] for c in counts.values())

    n = len(counts)
    segs, inst = [c["segments"] for c in counts.values()], [c["instances"] for c in counts.values()]
    hist = np.bincount(inst)
    crowded = sum(c["beyond_max"] > 0 for c in counts.values())
    return [f"{split_dir}: labelled {n} frames from {fmt} predictions ({n - resumed} written, {resumed} resumed) "
            f"in {seconds:.1f} s",
            f"  segments per frame: mean {np.mean(segs):.1f}, max {max(segs)}; void "
            f"{100 * np.mean([c['void'] for c in counts.values()]):.1f} % of pixels",
            f"  instances per frame: mean {np.mean(inst):.1f}, max {max(inst)}; histogram "
            + ", ".join(f"{k}: {v}" for k, v in enumerate(hist) if v),
            f"  things without an instance: {total('low_score')} below --score-thresh {settings.score_thresh:g}, "
            f"{total('crowd')} crowds, {total('other_class')} of other classes, {total('beyond_max')} beyond "
            f"--max-instances {settings.max_instances} (in {crowded} of {n} frames), {total('vanished')} lost in "
            f"resizing to {settings.size[0]}x{settings.size[1]}"]


def _model_info(args) -> Optional[Dict]:
    """The model and settings tools/run_panoptic_fpn.py recorded beside its predictions, if any."""
    path = os.path.join(args.predictions, RUN_INFO)
    if args.format != "detectron2" or not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not readable JSON ({err}); delete it or rewrite it with tools/run_panoptic_fpn.py")


def main(args) -> int:
    t0 = time.time()
    split_dir = os.path.join(args.out, args.split)
    if not os.path.exists(meta_path(split_dir)):
        raise DataError(f"{meta_path(split_dir)}: missing: prepare the split first (desc-train prepare vkitti, kitti "
                        f"or cityscapes), then label it")
    meta = read_meta(split_dir)
    if not meta.frames:
        raise DataError(f"{meta_path(split_dir)}: lists no frames")
    H, W = meta.image_size
    settings = Settings((int(H), int(W)), args.score_thresh, tuple(args.instance_classes), args.max_instances)
    jobs = make_jobs(args, meta, split_dir, settings)
    label_source = dict(kind="panoptic", format=args.format, predictions=os.path.abspath(args.predictions),
                        score_thresh=args.score_thresh, instance_classes=list(settings.instance_classes),
                        max_instances=args.max_instances, match=args.match)
    model = _model_info(args)
    if model is not None:
        label_source["model"] = model
    start_labels(split_dir, meta, args.overwrite, label_source)
    todo = [j for j in jobs if not os.path.exists(_record_path(split_dir, j.name))]
    resumed = len(jobs) - len(todo)
    if resumed:
        print(f"{split_dir}: resuming, {resumed} of {len(jobs)} frames labelled already")
    errors = run_jobs(todo, args.workers, os.path.basename(os.path.normpath(split_dir)))
    if errors:
        raise DataError(f"{len(errors)} of {len(jobs)} frames failed (the split stays unlabelled and the frames "
                        f"labelled are kept: fix these and rerun to resume):" + listed(errors))
    counts = {}
    for name in meta.names:
        with open(_record_path(split_dir, name)) as f:
            counts[name] = json.load(f)
    meta.has_labels = True
    meta.classes = list(coco.CLASSES)
    meta.instance_classes = list(settings.instance_classes)
    meta.max_instances = max(c["instances"] for c in counts.values())
    meta.label_source = label_source
    write_meta(split_dir, meta)  # last, atomically: a split whose meta.json says has_labels is complete
    shutil.rmtree(os.path.join(split_dir, RECORDS))
    for line in report(split_dir, args.format, counts, resumed, settings, time.time() - t0):
        print(line)
    return 0
