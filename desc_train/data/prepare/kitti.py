"""KITTI raw frames named by a list into desc_train's layout: target training
frames (RGB only), or test frames with their native-size evaluation ground truth
(the Eigen split of DESC, monodepth2 and T2Net).

The list names frames of ``ROOT/<date>/<date>_drive_<nnnn>_sync/image_0{2,3}/data/``
in one of three formats, told apart by their column count: monodepth2
(``<date>/<drive> <frame> l|r``), DESC/GASDA (``<left png> <right png> <date>
<velodyne bin>``) and T2Net (``<left png> <right png>``). Frames are named
``<drive>_<frame:010d>_<l|r>``. Intrinsics, image size and stereo baseline come
from each date's ``calib_cam_to_cam.txt`` (``P_rect_02``, ``S_rect_02``,
``P_rect_03``); the stored focal is fy at the stored size.

``--stereo`` (left frames only) also stores each frame's right view, the image_03
frame of the same instant, resized as its image_02 frame, in ``rgb_right/``, with
the frame's baseline: camera 3's x position less camera 2's, each ``-P_rect[0, 3]
/ P_rect[0, 0]`` (about 0.54 m; camera 3 sits to the right).

Ground truth (``gt/NAME.npy``, metres at the image's native size, 0 = none):
``npz``, the Eigen export ``gt_depths.npz`` whose entry i belongs to list line i;
``velodyne``, the projection of the raw scans (``kitti_calib``), velodyne x by
default or camera z; ``annotated``, the improved ground truth of
``data_depth_annotated.zip`` (uint16 PNG, metres x 256). ``meta.eval`` records
the kind, the Garg crop and the two caps of the protocol. The split has no depth
(``has_depth`` false: DESC never supervises the target) and no labels yet
(``desc-train prepare panoptic`` adds them).
"""
from __future__ import annotations

import argparse
import os
import pickle
import re
import zipfile
from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from ...errors import UserError
from .. import coco
from ...config import MAX_DEPTH
from ..layout import DataError
from .common import check_intrinsics
from .kitti_calib import CAM_TO_CAM
from .common import Frame, add_common_arguments, anisotropy_note, sha256_lines, write_split
from .kitti_calib import (DEPTH_KINDS, Camera, load_camera, load_velo_to_cam, missing_scan, project_depth,
                          read_velodyne, velo_to_image)

# sha256 of the list's frames as "<date>/<drive> <frame:010d>" lines (one per frame, either
# camera), so that a list is recognised whatever its format.
IN_ORDER = {  # lines in the list's order
    "f59c5968aa64f8d08d77460756c1fd01554fb5ad8d0d5e0160f90d4cc48b2331":
        "Eigen test (697 frames; monodepth2 splits/eigen/test_files.txt, DESC datasets/kitti/test.txt)",
}
SORTED = {  # lines sorted
    "b5a7d8c13dc5ec4ea69a681de6bfdfda7d5431d68957843ed61e89bde9d5f241": "Eigen train (22,600 frames)",
}
FORMATS = {"t2net": 2, "monodepth2": 3, "desc": 4}  # list format -> columns
CAMERA_OF_SIDE = {"l": 2, "r": 3}
GARG_CROP = "garg"
CAPS = [[0.001, MAX_DEPTH], [1.0, 50.0]]  # (min, max) metres: the 80 m and DESC's "following T2Net" 50 m tables
ANNOTATED_FOLDERS = ("train", "val")  # the top folders of data_depth_annotated.zip

_DATE = r"\d{4}_\d{2}_\d{2}"
_DRIVE_FOLDER = re.compile(rf"^(?P<date>{_DATE})/(?P<drive>(?P=date)_drive_\d{{4}}_sync)/?$")
_IMAGE_PATH = re.compile(rf"(?:^|/)(?P<date>{_DATE})/(?P<drive>(?P=date)_drive_\d{{4}}_sync)/image_0(?P<cam>[23])"
                         rf"/data/(?P<frame>\d+)\.(?P<ext>\w+)$")


@dataclass(frozen=True)
class Entry:
    """One image a list names."""

    index: int  # the list line, from 0 (= the entry of gt_depths.npz)
    date: str
    drive: str
    frame: int
    side: str  # l = image_02, r = image_03
    ext: Optional[str] = None  # the extension the list names, if it names one

    @property
    def cam(self) -> int:
        return CAMERA_OF_SIDE[self.side]

    @property
    def name(self) -> str:
        return f"{self.drive}_{self.frame:010d}_{self.side}"

    @property
    def key(self) -> str:
        return f"{self.date}/{self.drive} {self.frame:010d}"

    def path(self, folder: str, ext: str) -> str:
        """A file of this frame relative to the KITTI raw root, e.g. image_02/data or velodyne_points/data."""
        return f"{self.date}/{self.drive}/{folder}/data/{self.frame:010d}.{ext}"

    def image(self, ext: str) -> str:
        return self.path(f"image_0{self.cam}", ext)


# ---------------------------------------------------------------- the list
def _monodepth2_entries(index: int, cols: Sequence[str], where: str) -> List[Entry]:
    folder, frame, side = cols
    m = _DRIVE_FOLDER.match(folder)
    if not m or not frame.isdigit() or side not in CAMERA_OF_SIDE:
        raise DataError(f"{where}: expected '<date>/<date>_drive_<nnnn>_sync <frame> l|r' (monodepth2 format), "
                        f"got {' '.join(cols)!r}")
    return [Entry(index, m["date"], m["drive"], int(frame), side)]


def _pair_entries(index: int, cols: Sequence[str], where: str) -> List[Entry]:
    out = []
    for path in cols[:2]:
        m = _IMAGE_PATH.search(path)
        if not m:
            raise DataError(f"{where}: expected image paths '<date>/<drive>/image_0{{2,3}}/data/<frame>.png' in "
                            f"the first two columns, got {path!r}")
        side = "l" if m["cam"] == "2" else "r"
        out.append(Entry(index, m["date"], m["drive"], int(m["frame"]), side, m["ext"].lower()))
    if [e.side for e in out] != ["l", "r"] or out[0].key != out[1].key:
        raise DataError(f"{where}: the two columns must be image_02 and image_03 of one frame, got "
                        f"{' '.join(cols[:2])!r}")
    return out


def read_list(path: str, fmt: str = "auto") -> Tuple[str, List[Entry], int]:
    """The list's format, its entries (pair formats give both images of a line)
    and its number of lines."""
    try:
        with open(path) as f:
            lines = [line.split() for line in f if line.strip()]
    except OSError as err:
        raise DataError(f"{path}: unreadable list: {err}") from None
    if not lines:
        raise DataError(f"{path}: the list is empty")
    if fmt == "auto":
        by_columns = {n: name for name, n in FORMATS.items()}
        fmt = by_columns.get(len(lines[0]))
        if fmt is None:
            raise DataError(f"{path}: line 1 has {len(lines[0])} columns; expected 3 (monodepth2), 4 (DESC/GASDA) "
                            f"or 2 (T2Net)")
    parse = _monodepth2_entries if fmt == "monodepth2" else _pair_entries
    entries: List[Entry] = []
    for i, cols in enumerate(lines):
        where = f"{path} line {i + 1}"
        if len(cols) != FORMATS[fmt]:
            raise DataError(f"{where}: {len(cols)} columns, but the list is in {fmt} format ({FORMATS[fmt]} columns)")
        entries += parse(i, cols, where)
    return fmt, entries, len(lines)


def list_identity(entries: Sequence[Entry]) -> Dict[str, Optional[str]]:
    """The hashes of the list's frames (in order, and sorted) and the name of the
    published split they match, if any."""
    keys = list(dict.fromkeys(e.key for e in entries))
    in_order, in_sorted = sha256_lines(keys), sha256_lines(sorted(keys))
    return dict(list_sha256=in_order, list_sha256_sorted=in_sorted,
                list_name=IN_ORDER.get(in_order) or SORTED.get(in_sorted))


def select_sides(entries: Sequence[Entry], side: str, fmt: str, log=print) -> List[Entry]:
    """The entries of the cameras `side` asks for; a note when a monodepth2 list
    loses lines (lists of pairs name both cameras on every line, by design)."""
    kept = [e for e in entries if e.side in side]
    dropped = [e for e in entries if e.side not in side]
    if dropped and fmt == "monodepth2":
        other = dropped[0].side
        why = "DESC trains on image_02 only" if side == "l" else f"--side {side} keeps image_0{CAMERA_OF_SIDE[side]}"
        log(f"note: --list has {len(dropped)} of {len(entries)} lines with side {other} "
            f"(image_0{CAMERA_OF_SIDE[other]}; monodepth2 eigen_full lists both cameras); {why}, so they are skipped "
            f"(--side lr keeps them)")
    return kept


# ---------------------------------------------------------------- files
def image_sources(root: str, entries: Sequence[Entry], ext: str) -> List[str]:
    """Each entry's image path relative to `root`; DataError when any is missing."""
    paths = [e.image((e.ext or "png") if ext == "auto" else ext) for e in entries]
    missing = [(e, p) for e, p in zip(entries, paths) if not os.path.exists(os.path.join(root, p))]
    if not missing:
        return paths
    entry, first = missing[0]
    full = os.path.join(root, first)
    stem, have = os.path.splitext(full)
    other = "jpg" if have.lower() == ".png" else "png"
    if os.path.exists(f"{stem}.{other}"):
        why = ("monodepth2 converts KITTI to JPEG" if other == "jpg" else "the list names JPEG files")
        after = " (metrics then differ slightly from PNG-trained models)" if other == "jpg" else ""
        raise DataError(f"{full} missing but {os.path.basename(stem)}.{other} exists ({why}); "
                        f"pass --ext {other}{after}")
    raise DataError(f"{full} missing ({len(missing)} of {len(entries)} images are): extract {entry.drive}.zip "
                    f"(KITTI raw, synced+rectified) into {root}")


def load_cameras(root: str, entries: Sequence[Entry]) -> Dict[Tuple[str, int], Camera]:
    """The calibrated camera of every (date, camera) the entries use; DataError
    naming the calibration file of a focal that is not finite and above 0, or of
    a baseline that is not finite and above 0 (camera 3 is the right one)."""
    with np.errstate(divide="ignore", invalid="ignore"):  # a focal of 0: refused below, no warning first
        cameras = {(d, c): load_camera(root, d, c) for d, c in sorted({(e.date, e.cam) for e in entries})}
    for (date, cam), camera in cameras.items():
        path = os.path.join(root, date, CAM_TO_CAM)
        check_intrinsics(camera.K, f"{path}: P_rect_0{cam}")
        if not (np.isfinite(camera.baseline) and camera.baseline > 0):
            raise DataError(f"{path}: P_rect_02 and P_rect_03 give a baseline of {camera.baseline} m; camera 3 "
                            f"(image_03) must sit to the right of camera 2, a finite distance away")
    return cameras


def read_rgb(path: str, camera: Camera) -> np.ndarray:
    """The RGB image at `path`, which must have the size of its date's calibration."""
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise DataError(f"{path}: not a readable image")
    H0, W0 = camera.size
    if bgr.shape[:2] != (H0, W0):
        raise DataError(f"{path} is {bgr.shape[1]}x{bgr.shape[0]} but S_rect_0{camera.cam} of {camera.date} says "
                        f"{W0}x{H0}: wrong calibration folder?")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


# ---------------------------------------------------------------- ground truth of one frame
@dataclass
class NpzGt:
    """An entry of gt_depths.npz (its shape was checked against the frame)."""

    depth: np.ndarray

    def load(self, camera: Camera) -> np.ndarray:
        return self.depth


@dataclass
class VelodyneGt:
    path: str
    projection: np.ndarray  # (3, 4) velodyne -> image
    kind: str

    def load(self, camera: Camera) -> np.ndarray:
        return project_depth(read_velodyne(self.path), self.projection, camera.size, self.kind)


@dataclass
class AnnotatedGt:
    path: str

    def load(self, camera: Camera) -> np.ndarray:
        raw = cv2.imread(self.path, cv2.IMREAD_UNCHANGED)
        if raw is None:
            raise DataError(f"{self.path}: not a readable PNG")
        if raw.dtype != np.uint16 or raw.ndim != 2:
            raise DataError(f"{self.path}: annotated depth must be a 16-bit single-channel PNG (metres x 256), got "
                            f"{raw.dtype} with shape {raw.shape}")
        if raw.shape != camera.size:
            raise DataError(f"{self.path} is {raw.shape[1]}x{raw.shape[0]} but S_rect_0{camera.cam} of "
                            f"{camera.date} says {camera.size[1]}x{camera.size[0]}")
        return raw.astype(np.float32) / 256.0


@dataclass
class Job:
    """What a worker needs to read one frame."""

    name: str
    root: str
    src: str  # the image, relative to root
    camera: Camera
    index: int
    gt: Optional[object] = None  # NpzGt, VelodyneGt or AnnotatedGt
    right: Optional[Tuple[str, Camera]] = None  # --stereo: the right view (relative to root) and its camera


def read_frame(job: Job) -> Frame:
    rgb = read_rgb(os.path.join(job.root, job.src), job.camera)
    gt = job.gt.load(job.camera) if job.gt is not None else None
    frame = Frame(name=job.name, src=job.src, rgb=rgb, K=job.camera.K, gt=gt, extra=dict(list_index=job.index))
    if job.right is not None:
        src, camera = job.right
        frame.rgb_right = read_rgb(os.path.join(job.root, src), camera)
        frame.extra["baseline"] = job.camera.baseline
    return frame


# ---------------------------------------------------------------- ground truth of the split
def velodyne_gt(root: str, entries: Sequence[Entry], cameras: Dict, kind: str) -> List[VelodyneGt]:
    """Per entry, the projection of its velodyne scan."""
    scans = [e.path("velodyne_points", "bin") for e in entries]
    missing = [s for s in scans if not os.path.exists(os.path.join(root, s))]
    if missing:
        raise missing_scan(os.path.join(root, missing[0]), f"{len(missing)} of {len(scans)} scans are missing")
    projections = {(d, c): velo_to_image(cam, load_velo_to_cam(root, d)) for (d, c), cam in cameras.items()}
    return [VelodyneGt(os.path.join(root, s), projections[e.date, e.cam], kind) for e, s in zip(entries, scans)]


def read_npz(path: str, lines: int) -> List[np.ndarray]:
    """The maps of a gt_depths.npz (``data``: an object array of 2-D maps or a
    3-D array), one per list line."""
    if not os.path.exists(path):
        raise DataError(f"{path} missing: pass the gt_depths.npz that monodepth2's export_gt_depth.py --split eigen "
                        f"writes (DESC distributes it too), or use --gt velodyne")
    # np.load with allow_pickle unpickles a file that is no zip archive: refuse it before.
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path}: not a readable .npz: not a zip archive")
    try:
        with np.load(path, allow_pickle=True) as npz:  # pickled: the ragged maps are an object array
            data = npz["data"]
    except KeyError:
        raise DataError(f"{path}: no 'data' array (monodepth2's export saves the maps as data=...)") from None
    except (OSError, ValueError, EOFError, pickle.UnpicklingError) as err:
        raise DataError(f"{path}: not a readable .npz: {err}") from None
    if data.ndim not in (1, 3) or (data.ndim == 1 and data.dtype != object):
        raise DataError(f"{path}: 'data' must be an object array of 2-D depth maps or a 3-D array, got "
                        f"{data.dtype} {data.shape}")
    if len(data) != lines:
        hint = (": this is the eigen_benchmark export; use --gt annotated, or export with --split eigen"
                if len(data) == 652 else "")
        raise DataError(f"{path} holds {len(data)} maps but the list has {lines} lines (entry i belongs to line i)"
                        f"{hint}")
    return [np.asarray(m, dtype=np.float32) for m in data]


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    """The fraction of the pixels with depth in either map where both agree to
    1 mm, outside the first and last columns (where the published export merges
    neighbouring pixels)."""
    a, b = a[:, 1:-1], b[:, 1:-1]
    either = (a > 0) | (b > 0)
    if not either.any():
        return 1.0
    return float(np.mean(np.abs(a[either] - b[either]) <= 1e-3))


def npz_gt(root: str, path: str, lines: int, entries: Sequence[Entry], cameras: Dict, kind: str,
           log=print) -> List[NpzGt]:
    """Per entry, its map of the npz, checked for shape, and for its first and
    last entry against a fresh projection when the scans are there."""
    right = [e for e in entries if e.side != "l"]
    if right:
        raise DataError(f"{path} holds image_02 ground truth, but the frames include image_03 ones "
                        f"({right[0].name}); pass --side l, or --gt velodyne")
    maps = read_npz(path, lines)
    for e in entries:
        cam, m = cameras[e.date, e.cam], maps[e.index]
        if m.shape != cam.size:
            shape = "x".join(str(v) for v in m.shape[::-1])
            raise DataError(f"{path} entry {e.index} is {shape} but list line {e.index + 1} ({e.key}) is "
                            f"{cam.size[1]}x{cam.size[0]} (S_rect_02 of {e.date}): the npz does not follow this "
                            f"list's order")
    checked = [e for e in dict.fromkeys([entries[0], entries[-1]])
               if os.path.exists(os.path.join(root, e.path("velodyne_points", "bin")))]
    for e, fresh in zip(checked, velodyne_gt(root, checked, cameras, kind)):
        share = _agreement(maps[e.index], fresh.load(cameras[e.date, e.cam]))
        if share < 0.99:
            raise DataError(f"{path} entry {e.index} is not the {kind} projection of {fresh.path} (only "
                            f"{100 * share:.1f} % of its pixels agree): the npz does not follow this list's order, "
                            f"or holds another kind of depth (--gt-depth)")
    if not checked:
        log(f"note: no velodyne scan beside the frames; {path} was checked by size only")
    return [NpzGt(maps[e.index]) for e in entries]


def annotated_gt(root: str, entries: Sequence[Entry]) -> List[AnnotatedGt]:
    """Per entry, its PNG of data_depth_annotated.zip under `root` (train/ or val/
    folders, or drives inside the raw date folders)."""
    out = []
    for e in entries:
        rel = f"{e.drive}/proj_depth/groundtruth/image_0{e.cam}/{e.frame:010d}.png"
        places = [os.path.join(root, top, rel) for top in ANNOTATED_FOLDERS + (e.date, "")]
        found = next((p for p in places if os.path.exists(p)), None)
        if found is None:
            raise DataError(f"{places[0]} missing (also looked in {', '.join(ANNOTATED_FOLDERS[1:] + (e.date, ''))}"
                            f" under {root}): --gt annotated needs data_depth_annotated.zip extracted into "
                            f"--annotated-root; it covers 652 of the 697 Eigen test frames (the eigen_benchmark list)")
        out.append(AnnotatedGt(found))
    return out


def ground_truth_mode(args) -> Tuple[str, Optional[str]]:
    """(--gt resolved, the ground-truth kind of meta.eval or None)."""
    gt = args.gt or ("npz" if args.gt_npz else "none")
    if gt == "npz" and not args.gt_npz:
        raise UserError("--gt npz needs --gt-npz FILE (the gt_depths.npz of monodepth2's export_gt_depth.py)")
    if args.gt_npz and gt != "npz":
        raise UserError(f"--gt-npz is read with --gt npz only, not with --gt {gt}")
    kind = {"none": None, "annotated": "annotated"}.get(gt, args.gt_depth)
    return gt, kind


# ---------------------------------------------------------------- the command
def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common_arguments(p, size="192x640")
    p.add_argument("--list", required=True,
                   help="frames to convert: monodepth2 (<date>/<drive> <frame> l|r), DESC/GASDA (<left> <right> "
                        "<date> <velodyne>) or T2Net (<left> <right>) lines")
    p.add_argument("--list-format", choices=["auto", "monodepth2", "desc", "t2net"], default="auto",
                   help="format of --list (auto: by its column count)")
    p.add_argument("--side", choices=["l", "r", "lr"], default="l",
                   help="cameras to convert: l = image_02 (DESC), r = image_03")
    p.add_argument("--ext", choices=["auto", "png", "jpg"], default="auto",
                   help="image extension (auto: what the list names, else png)")
    p.add_argument("--gt", choices=["none", "npz", "velodyne", "annotated"], default=None,
                   help="evaluation ground truth; unset: npz when --gt-npz is given, else none")
    p.add_argument("--gt-npz", default=None, help="gt_depths.npz of the list (entry i = list line i)")
    p.add_argument("--gt-depth", choices=DEPTH_KINDS, default="velodyne_x",
                   help="depth of velodyne ground truth: velodyne x (Eigen, DESC, monodepth2) or camera z (GASDA)")
    p.add_argument("--annotated-root", default=None,
                   help="where data_depth_annotated.zip is extracted; unset: --root")
    p.add_argument("--stereo", action="store_true",
                   help="also store each left frame's right view (image_03) and the baseline, for the stereo term")


def _provenance(args, fmt: str, lines: int, identity: Dict, cameras: Dict) -> Dict:
    calibration = {f"{d} image_0{c}": dict(size=list(cam.size), K=[float(v) for v in cam.K],
                                           baseline=cam.baseline) for (d, c), cam in cameras.items()}
    return dict(name="KITTI raw", root=os.path.abspath(args.root), converter="desc-train prepare kitti",
                args=_arguments(args), list=os.path.basename(args.list), list_format=fmt, list_lines=lines,
                **identity, calibration=calibration)


def _arguments(args) -> Dict:
    """The arguments that decide what is written (a rerun with other ones starts afresh)."""
    out = {k: v for k, v in vars(args).items() if k not in ("run", "workers", "limit", "overwrite")}
    for key in ("root", "list", "gt_npz", "annotated_root"):
        out[key] = os.path.abspath(out[key]) if out.get(key) else out.get(key)
    out["size"] = list(args.size) if args.size else None
    return out


def stereo_sources(root: str, entries: Sequence[Entry], ext: str,
                   cameras: Dict[Tuple[str, int], Camera]) -> List[Tuple[str, Camera]]:
    """Per left entry, its right view (the image_03 frame, relative to `root`) and
    camera 3; DataError when an image is missing, or a date's camera 3 has another
    size or intrinsics than its camera 2 (the disparity f b / Z needs one camera
    matrix)."""
    right = [replace(e, side="r") for e in entries]
    right_cameras = load_cameras(root, right)
    for (date, _), camera in right_cameras.items():
        left = cameras[date, 2]
        if not np.allclose(camera.K, left.K, rtol=1e-6, atol=0) or camera.size != left.size:
            shown = [f"fx, fy, cx, cy {', '.join(f'{v:g}' for v in c.K)} at {c.size[1]}x{c.size[0]}"
                     for c in (camera, left)]
            raise DataError(f"{os.path.join(root, date, CAM_TO_CAM)}: camera 3 (P_rect_03, S_rect_03: {shown[0]}) "
                            f"differs from camera 2 ({shown[1]}): --stereo needs both rectified alike")
    return [(src, right_cameras[e.date, e.cam]) for e, src in zip(right, image_sources(root, right, ext))]


def main(args) -> int:
    gt, kind = ground_truth_mode(args)
    if args.stereo and args.side != "l":
        raise UserError(f"--stereo stores the right view (image_03) of each left frame (image_02): it takes --side l, "
                        f"not --side {args.side}")
    fmt, entries, lines = read_list(args.list, args.list_format)
    identity = list_identity(entries)
    print(f"{args.list}: {lines} lines, {fmt} format, " + (f"recognised as {identity['list_name']}"
          if identity["list_name"] else f"not a published split (sha256 {identity['list_sha256'][:12]}...)"))
    entries = select_sides(entries, args.side, fmt)
    if args.limit is not None:
        entries = entries[:args.limit]
    if not entries:
        raise DataError(f"{args.list}: no frame of side {args.side} to convert")
    cameras = load_cameras(args.root, entries)
    sources = image_sources(args.root, entries, args.ext)
    rights = stereo_sources(args.root, entries, args.ext, cameras) if args.stereo else [None] * len(entries)
    if gt == "npz":
        gts: List = npz_gt(args.root, args.gt_npz, lines, entries, cameras, kind)
    elif gt == "velodyne":
        gts = velodyne_gt(args.root, entries, cameras, kind)
    elif gt == "annotated":
        gts = annotated_gt(args.annotated_root or args.root, entries)
    else:
        gts = [None] * len(entries)
    for size in sorted({cam.size for cam in cameras.values()}):
        note = anisotropy_note(size, args.size)
        if note:
            print(note)
    jobs = [(e.name, Job(e.name, args.root, src, cameras[e.date, e.cam], e.index, g, right))
            for e, src, g, right in zip(entries, sources, gts, rights)]
    evaluation = None if kind is None else dict(gt_kind=kind, crop=GARG_CROP, caps=CAPS,
                                                list=os.path.basename(args.list), list_sha256=identity["list_sha256"])
    meta = dict(domain="target", classes=list(coco.CLASSES), instance_classes=[],
                baseline=float(np.median([cameras[e.date, e.cam].baseline for e in entries])),
                has_depth=False, has_labels=False, dataset=_provenance(args, fmt, lines, identity, cameras),
                eval=evaluation)
    write_split(os.path.join(args.out, args.split), jobs, read_frame, size=args.size, meta=meta,
                args=dict(_arguments(args), list_sha256=identity["list_sha256"]), workers=args.workers,
                overwrite=args.overwrite)
    return 0
