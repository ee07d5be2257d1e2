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
so DESC's collision of the two id spaces (car and blanket both 2) disappears; void is 255. The maps, the
instances, resuming and meta.json follow ``labels`` (shared with ``prepare segment``).
"""
from __future__ import annotations

import json
import os
import posixpath
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from functools import partial
from typing import Dict, Iterable, Iterator, List, NamedTuple, Optional, Tuple

import cv2
import numpy as np

from .. import coco
from ..layout import DataError, SplitMeta, meta_path
from .common import listed, parse_workers
from .labels import Segment, Settings, add_label_arguments, label_split, open_split, write_labels

RUN_INFO = "run.json"  # written beside detectron2 predictions by tools/run_panoptic_fpn.py: the model and settings


# ---------------------------------------------------------------- segments
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


def label_frame(job: Job) -> Tuple[str, Optional[str]]:
    """Converts and writes one frame's maps and its record; returns (name, error message)."""
    try:
        seg, segments = read_prediction(job)
        write_labels(job.split_dir, job.name, seg, segments, job.settings, job.where)
    except DataError as err:
        return job.name, str(err)
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
def add_arguments(p) -> None:
    p.add_argument("--predictions", required=True,
                   help="coco: the panoptic JSON (PNGs in the folder named as its stem) or a folder holding both; "
                        "detectron2: the folder of NAME.npz files")
    p.add_argument("--format", required=True, choices=["coco", "detectron2"], help="how the predictions are stored")
    add_label_arguments(p, score_help="thing segments scoring less are no instances (DESC: 0.8); segments without "
                                      "score are kept")
    p.add_argument("--match", choices=["name", "src"], default="name",
                   help="name: prediction file stem = frame name; src: prediction path = the frame's source path "
                        "(or a trailing part of it) without extension")
    p.add_argument("--workers", type=parse_workers, default=None,
                   help="processes; when not given, the CPU count, at most 8")


def run_jobs(jobs: List[Job], workers: Optional[int]) -> Iterator[Optional[str]]:
    """Labels the frames of `jobs` in `workers` processes; yields each frame's error message, or None."""
    workers = max(1, workers or min(os.cpu_count() or 1, 8))
    with ExitStack() as stack:
        mapper = map
        if workers > 1 and len(jobs) > 1:
            pool = stack.enter_context(ProcessPoolExecutor(workers))
            mapper = partial(pool.map, chunksize=max(1, min(16, len(jobs) // (workers * 4))))
        for _, err in mapper(label_frame, jobs):
            yield err


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
    split_dir, meta, settings = open_split(args)
    jobs = {j.name: j for j in make_jobs(args, meta, split_dir, settings)}  # before anything is written
    label_source = dict(kind="panoptic", format=args.format, predictions=os.path.abspath(args.predictions),
                        score_thresh=args.score_thresh, instance_classes=list(settings.instance_classes),
                        max_instances=args.max_instances, match=args.match)
    model = _model_info(args)
    if model is not None:
        label_source["model"] = model
    return label_split(split_dir, meta, settings, label_source, overwrite=args.overwrite,
                       label=lambda names: run_jobs([jobs[n] for n in names], args.workers),
                       source=f"from {args.format} predictions")
