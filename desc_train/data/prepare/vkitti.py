"""Converts Virtual KITTI 1.3.1 or 2.0.3 into a source split: RGB, depth in metres
clamped to --max-depth, per-frame intrinsics, and optionally the ground-truth
classes (COCO-133 ids) and vehicle instances.

Accepted trees under --root (folder names match case-insensitively):

    1.3.1 archives     vkitti_1.3.1_rgb/0001/clone/00046.png, vkitti_1.3.1_depthgt/...,
                       vkitti_1.3.1_scenegt/... (+ 0001_clone_scenegt_rgb_encoding.txt)
    DESC's renaming    rgb/0001/clone/00046.png, depth/..., scenegt/...
    2.0.3 archives     vkitti_2.0.3_rgb/Scene01/clone/frames/rgb/Camera_0/rgb_00046.jpg,
                       vkitti_2.0.3_depth/.../frames/depth/Camera_0/depth_00046.png,
                       vkitti_2.0.3_classSegmentation/.../classgt_00046.png,
                       vkitti_2.0.3_instanceSegmentation/.../instancegt_00046.png,
                       vkitti_2.0.3_textgt/Scene01/clone/{intrinsic,bbox,colors}.txt
    2.0.3 merged       every archive extracted into one Scene01/clone/... tree

Depth is centimetres in 16-bit PNGs with the far plane (sky) at 65535: it becomes
metres, sky becomes --max-depth (--sky clamp, what DESC trains on) or no depth
(--sky ignore), and every depth beyond --max-depth is clamped to it, as DESC does
before its loss. Intrinsics are fx = fy = 725, cx = 620.5, cy = 187 for 1.3.1 and
the per-frame rows of intrinsic.txt for 2.0.3 (--focal F replaces both by a
constant); the stored focal is fy at the stored size.

--list takes DESC's list format (``rgb/<world>/<variation>/<frame>.png
depth/...``, one frame a line) and recognises DESC's train list and GASDA's
held-out list by their hash; --exclude-list converts every other frame. Frames
are named 0001_clone_00046 (1.3.1) and Scene01_clone_c0_00046 (2.0.3).

--labels none leaves the labels to ``desc-train prepare panoptic`` (what DESC
does: it segments the source images with Panoptic FPN). --labels gt maps the
dataset's own classes to the COCO-133 ids of desc_train.data.coco and takes the
vehicle instances from scenegt colours (1.3.1) or the instancegt palette PNGs
(2.0.3, value v = track v - 1, checked against bbox.txt).
"""
from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Set, Tuple

import cv2
import numpy as np

from .. import coco
from ...config import MAX_DEPTH
from ..layout import DataError
from .common import check_intrinsics
from ...errors import Bounds, argument
from .common import (Frame, add_common_arguments, anisotropy_note, parse_length, scale_intrinsics, raise_all,
                     sha256_lines, write_split)

NATIVE = (375, 1242)  # (H, W) of every Virtual KITTI frame; the intrinsics refer to it
CM_PER_METRE = 100.0  # the depth PNGs' unit
FAR = 65535  # the far plane, 655.35 m: sky and other points at infinity
# Raw centimetre depth always reaches beyond 10 m somewhere (the road ahead, or the
# sky at 65535); a whole frame below it is depth re-encoded in metres or 8 bits.
CONVERTED_BELOW = 1000

# sha256 (common.sha256_lines) of a list's sorted rgb paths -> the list's name.
KNOWN_LISTS = {
    "36f46e180c20ddfe4c27b351194285810cb01b872f339236aa23af81684731ad": "DESC vKITTI train list (20,760 frames)",
    "7577a0bc3003fd548203a70243892dbb6d2dbfaea868f69ffb99203efe2abf43": "GASDA vKITTI held-out list (500 frames)",
}

# Virtual KITTI category -> COCO-133 class name (None: ignore). A choice: vKITTI's
# classes have no exact COCO counterparts for signs, poles and clutter.
TO_COCO: Dict[str, Optional[str]] = {
    "Road": "road", "Sky": "sky-other-merged", "Building": "building-other-merged", "Tree": "tree-merged",
    "Vegetation": "tree-merged", "Terrain": "grass-merged", "GuardRail": "fence-merged",
    "TrafficLight": "traffic light", "Car": "car", "Van": "car", "Truck": "truck",
    "TrafficSign": None, "Pole": None, "Misc": None, "Undefined": None,
}
VEHICLES = ("Car", "Van", "Truck")  # the categories with track ids

DOWNLOADS = {"vkitti_2.0.3_textgt": "vkitti_2.0.3_textgt.tar.gz"}  # the others are <top>.tar
RENAMED = {"rgb": "rgb", "depth": "depth", "scenegt": "scenegt"}  # DESC/GASDA's names for 1.3.1


@dataclass(frozen=True)
class Release:
    """What one release of Virtual KITTI is on disk: the rest of the converter reads
    these instead of testing the version."""

    version: str
    archives: Dict[str, str]  # component -> top folder of its archive
    world: str  # world number -> folder name
    # component -> (folders between <world>/<variation>/ and the files, file name pattern);
    # "{camera}" in a folder is the camera number
    files: Dict[str, Tuple[Tuple[str, ...], str]]
    frame: str  # the stored frame's name, from world, variation, camera and number
    labels: str  # the component of the class map (--labels gt)
    instances: Optional[str]  # the component of the instance map, None: instances come from the class map's colours
    # the class colour table: (the component whose folder holds it, None: the text files; its name; what it is)
    colours: Tuple[Optional[str], str, str]
    K: Optional[Tuple[float, float, float, float]]  # constant intrinsics, None: per frame from intrinsic.txt
    cameras: int
    list_line: "re.Pattern[str]"  # an RGB path of a --list (world, variation, camera if any, frame)
    layout: str  # an RGB path, for messages
    expected: str  # the folders that show the release, for messages

    def folder(self, component: str, camera: int) -> Tuple[str, ...]:
        return tuple(part.format(camera=camera) for part in self.files[component][0])


_V1_FILES = ((), "{:05d}.png")
V1 = Release(
    version="1.3.1",
    archives={"rgb": "vkitti_1.3.1_rgb", "depth": "vkitti_1.3.1_depthgt", "scenegt": "vkitti_1.3.1_scenegt"},
    world="{:04d}", files={"rgb": _V1_FILES, "depth": _V1_FILES, "scenegt": _V1_FILES},
    frame="{world}_{variation}_{number:05d}", labels="scenegt", instances=None,
    colours=("scenegt", "{world}_{variation}_scenegt_rgb_encoding.txt",
             "the scenegt colour encoding (from vkitti_1.3.1_scenegt.tar)"),
    K=(725.0, 725.0, 620.5, 187.0), cameras=1,
    list_line=re.compile(r"^(?:rgb|vkitti_1\.3\.1_rgb)/(?P<world>\d{4})/(?P<variation>[^/]+)/(?P<frame>\d+)\.png$",
                         re.I),
    layout="rgb/<world>/<variation>/%05d.png", expected="vkitti_1.3.1_rgb/ or rgb/<world>/")
V2 = Release(
    version="2.0.3",
    archives={"rgb": "vkitti_2.0.3_rgb", "depth": "vkitti_2.0.3_depth",
              "classgt": "vkitti_2.0.3_classSegmentation", "instancegt": "vkitti_2.0.3_instanceSegmentation",
              "text": "vkitti_2.0.3_textgt"},
    world="Scene{:02d}",
    files={"rgb": (("frames", "rgb", "Camera_{camera}"), "rgb_{:05d}.jpg"),
           "depth": (("frames", "depth", "Camera_{camera}"), "depth_{:05d}.png"),
           "classgt": (("frames", "classSegmentation", "Camera_{camera}"), "classgt_{:05d}.png"),
           "instancegt": (("frames", "instanceSegmentation", "Camera_{camera}"), "instancegt_{:05d}.png")},
    frame="{world}_{variation}_c{camera}_{number:05d}", labels="classgt", instances="instancegt",
    colours=(None, "colors.txt", "the classgt colours (from the vkitti_2.0.3_textgt or classSegmentation archive)"),
    K=None, cameras=2,
    list_line=re.compile(r"(?:^|/)scene(?P<world>\d+)/(?P<variation>[^/]+)/frames/rgb/camera_(?P<camera>\d+)/"
                         r"rgb_(?P<frame>\d+)\.jpg$", re.I),
    layout="SceneXX/<variation>/frames/rgb/Camera_0/rgb_%05d.jpg",
    expected="vkitti_2.0.3_rgb/ or Scene01/clone/frames/")
RELEASES = {r.version: r for r in (V1, V2)}


# ---------------------------------------------------------------- arguments
def _names(values: Sequence[str]) -> List[str]:
    return [v for text in values for v in text.split(",") if v]


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common_arguments(p)
    p.add_argument("--version", choices=["auto", *RELEASES], default="auto",
                   help="the Virtual KITTI release under --root (auto: from its folder names)")
    chosen = p.add_mutually_exclusive_group()
    chosen.add_argument("--list", default=None,
                        help="convert the frames of this list (DESC format: rgb/<world>/<variation>/<frame>.png "
                             "depth/...; 2.0.3 rgb paths are accepted too)")
    chosen.add_argument("--exclude-list", default=None, help="convert every frame except those of this list")
    p.add_argument("--worlds", nargs="+", default=None,
                   help="worlds to convert, e.g. 0001 0002 or Scene01,Scene02 (None: all)")
    p.add_argument("--variations", nargs="+", default=None,
                   help="variations to convert, e.g. clone fog (None: all)")
    p.add_argument("--camera", type=argument(Bounds(0, 1)), default=0, metavar="{0,1}",
                   help="2.0.3 camera (0 left, 1 right); 1.3.1 has camera 0 only")
    p.add_argument("--max-depth", type=parse_length, default=MAX_DEPTH, help="metres every depth is clamped to")
    p.add_argument("--sky", choices=["clamp", "ignore"], default="clamp",
                   help="sky (the far plane): --max-depth metres (DESC), or no depth")
    p.add_argument("--labels", choices=["none", "gt"], default="none",
                   help="none: labels come later from 'prepare panoptic' (DESC); gt: the dataset's own "
                        "classes and vehicle instances")
    p.add_argument("--focal", type=parse_length, default=None,
                   help="constant fx = fy at 1242x375 instead of 725 (1.3.1) or intrinsic.txt (2.0.3)")
    p.add_argument("--allow-size", action="store_true",
                   help="accept frames other than 1242x375 (the intrinsics are scaled with the size)")


# ---------------------------------------------------------------- the source tree
class Tree:
    """Case-insensitive paths under the dataset root, each folder listed once."""

    def __init__(self, root: str):
        self.root = root
        self._listed: Dict[str, Dict[str, str]] = {}
        self._numbered: Dict[Tuple[str, str], Dict[int, str]] = {}

    def entries(self, folder: str) -> Dict[str, str]:
        """Lower-case name -> name of the entries of `folder` (empty when it is none)."""
        if folder not in self._listed:
            try:
                self._listed[folder] = {e.lower(): e for e in os.listdir(folder)}
            except (FileNotFoundError, NotADirectoryError):
                self._listed[folder] = {}
        return self._listed[folder]

    def path(self, folder: str, *parts: str) -> str:
        """`folder`/`parts` with each part spelt as on disk where it exists (as given where not)."""
        for part in parts:
            folder = os.path.join(folder, self.entries(folder).get(part.lower(), part))
        return folder

    def find(self, folder: str, *parts: str) -> Optional[str]:
        path = self.path(folder, *parts)
        return path if os.path.exists(path) else None

    def numbers(self, folder: str, pattern: str) -> Dict[int, str]:
        """Frame number -> file name of the files of `folder` named like `pattern` ("rgb_{:05d}.jpg")."""
        if (folder, pattern) not in self._numbered:  # a list asks once per frame
            head, tail = pattern.split("{:05d}")
            rx = re.compile(re.escape(head.lower()) + r"(\d+)" + re.escape(tail.lower()) + "$")
            matches = ((rx.match(low), name) for low, name in self.entries(folder).items())
            self._numbered[(folder, pattern)] = {int(m.group(1)): name for m, name in matches if m}
        return self._numbered[(folder, pattern)]


@dataclass
class Source:
    """A detected Virtual KITTI tree: its version, how it is laid out ("archives",
    "renamed" or "merged") and the top folder of each component (None where that
    archive is not extracted)."""

    tree: Tree
    version: str
    layout: str
    tops: Dict[str, Optional[str]]

    @property
    def root(self) -> str:
        return self.tree.root

    @property
    def release(self) -> Release:
        return RELEASES[self.version]

    def top_name(self, component: str) -> str:
        return (RENAMED if self.layout == "renamed" else self.release.archives)[component]

    def world_name(self, number: int) -> str:
        return self.release.world.format(number)

    def group_dir(self, component: str, world: str, variation: str, camera: int) -> str:
        top = self.tops[component] or os.path.join(self.root, self.top_name(component))
        return self.tree.path(top, world, variation, *self.release.folder(component, camera))

    def pattern(self, component: str) -> str:
        return self.release.files[component][1]

    def text_file(self, world: str, variation: str, name: str) -> Tuple[Optional[str], str]:
        """(the file if found, else None; where it belongs) for a 2.0.3 text file of a
        scene and variation, looked for in textgt first, then under the other tops."""
        tops = [self.tops.get("text")] + [t for c, t in self.tops.items() if c != "text"]
        for top in [t for t in tops if t]:
            found = self.tree.find(top, world, variation, name)
            if found:
                return found, found
        home = self.tops.get("text") or os.path.join(self.root, V2.archives["text"])
        return None, self.tree.path(home, world, variation, name)


def _world_number(name: str) -> Optional[int]:
    """0001 -> 1, Scene01 -> 1; None for other names."""
    m = re.fullmatch(r"(?:scene)?(\d+)", name.lower())
    return int(m.group(1)) if m else None


def _detect_v1(tree: Tree) -> Optional[Source]:
    archives = V1.archives
    if tree.find(tree.root, archives["rgb"]):
        return Source(tree, V1.version, "archives", {c: tree.find(tree.root, t) for c, t in archives.items()})
    rgb = tree.find(tree.root, "rgb")
    if rgb and any(re.fullmatch(r"\d{4}", e) for e in tree.entries(rgb)):
        return Source(tree, V1.version, "renamed",
                      {c: tree.find(tree.root, t) or tree.find(tree.root, archives[c]) for c, t in RENAMED.items()})
    return None


def _detect_v2(tree: Tree) -> Optional[Source]:
    archives = V2.archives
    if tree.find(tree.root, archives["rgb"]):
        return Source(tree, V2.version, "archives", {c: tree.find(tree.root, t) for c, t in archives.items()})
    for low, name in tree.entries(tree.root).items():
        scene = os.path.join(tree.root, name)
        if re.fullmatch(r"scene\d+", low) and any(tree.find(scene, v, "frames") for v in tree.entries(scene)):
            return Source(tree, V2.version, "merged", {c: tree.root for c in archives})
    return None


def detect(root: str, version: str) -> Source:
    """The Virtual KITTI tree under `root` ("auto": whichever release is there)."""
    if not os.path.isdir(root):
        raise DataError(f"{root}: no such folder (--root is the folder the Virtual KITTI archives were extracted in)")
    tree = Tree(root)
    found = {V1.version: _detect_v1(tree), V2.version: _detect_v2(tree)}
    if version == "auto":
        present = [s for s in found.values() if s]
        if len(present) == 2:
            raise DataError(f"{root} holds Virtual KITTI 1.3.1 ({_describe(present[0])}) and 2.0.3 "
                            f"({_describe(present[1])}): pass --version 1.3.1 or --version 2.0.3")
        if not present:
            raise DataError(f"{root}: no Virtual KITTI found; expected vkitti_1.3.1_rgb/ + vkitti_1.3.1_depthgt/ "
                            f"(1.3.1 archives), rgb/<world>/<variation>/ + depth/ (DESC's renaming), "
                            f"vkitti_2.0.3_rgb/ + vkitti_2.0.3_depth/ (2.0.3 archives) or Scene01/clone/frames/ "
                            f"(2.0.3 extracted into one tree)")
        return present[0]
    if not found[version]:
        raise DataError(f"{root}: --version {version} but no {RELEASES[version].expected} there; check --root")
    return found[version]


def _describe(source: Source) -> str:
    if source.layout == "merged":
        return "Scene*/ folders"
    return f"{source.top_name('rgb')}/"


def check_components(source: Source, components: Sequence[str]) -> None:
    """Raises DataError when the archive of a needed component is not extracted."""
    for component in components:
        if source.tops.get(component) is None:
            name, archive = source.top_name(component), source.release.archives[component]
            renamed = f" (as {name}/ or {archive}/)" if name != archive else ""
            raise DataError(f"{source.root} has {source.top_name('rgb')}/ but no {name}/: download "
                            f"{DOWNLOADS.get(archive, archive + '.tar')} and extract it beside the RGB{renamed}")


# ---------------------------------------------------------------- frames to convert
Key = Tuple[str, str, int, int]  # world ("0001" or "Scene01"), variation, camera, frame number


@dataclass
class Selection:
    """The frames a --list or --exclude-list names, and its provenance."""

    keys: Set[Key]
    exclude: bool
    sha256: str
    name: Optional[str]


def read_list(path: str, source: Source, exclude: bool) -> Selection:
    """The frames of a list file (DESC format for 1.3.1, rgb paths for 2.0.3)."""
    try:
        with open(path) as f:
            lines = [(i + 1, line.split()[0]) for i, line in enumerate(f) if line.strip()]
    except OSError as err:
        raise DataError(f"{path}: cannot read the list: {err}") from None
    keys: Set[Key] = set()
    release = source.release
    for number, rgb in lines:
        found = release.list_line.search(rgb)
        other = next((r for r in RELEASES.values() if r is not release and r.list_line.search(rgb)), None)
        if other is not None:
            # DESC's list is of 1.3.1: with 2.0.3, say where that list belongs
            advice = f"; use the {other.version} release with this list, or a list of {release.version} frames" \
                if other is V1 else ""
            raise DataError(f"{path} line {number}: --list names {rgb} (Virtual KITTI {other.version} layout) but "
                            f"{source.root} is Virtual KITTI {release.version} ({release.layout}){advice}")
        if found:
            camera = int(found.groupdict().get("camera") or 0)  # 1.3.1 has camera 0 only
            keys.add((source.world_name(int(found["world"])), found["variation"], camera, int(found["frame"])))
        else:
            raise DataError(f"{path} line {number}: {rgb!r} is not a Virtual KITTI RGB path; expected DESC's list "
                            f"format 'rgb/<world>/<variation>/<frame>.png depth/<world>/<variation>/<frame>.png'")
    digest = sha256_lines(sorted(rgb for _, rgb in lines))
    return Selection(keys, exclude, digest, KNOWN_LISTS.get(digest))


@dataclass
class Group:
    """The frames to convert of one world (scene), variation and camera."""

    world: str
    variation: str
    camera: int
    numbers: List[int]


def _wanted(name: str, chosen: Optional[Sequence[str]], normalise) -> bool:
    return chosen is None or normalise(name) in {normalise(c) for c in chosen}


def rgb_frames(source: Source, camera: int) -> Dict[Tuple[str, str], List[int]]:
    """(world, variation) -> the frame numbers of the RGB of `camera`, for every
    world and variation on disk."""
    tree, top = source.tree, source.tops["rgb"]
    found = {}
    for world in sorted(tree.entries(top).values()):
        number = _world_number(world)
        if number is None:
            continue
        for variation in sorted(tree.entries(os.path.join(top, world)).values()):
            folder = source.group_dir("rgb", world, variation, camera)
            numbers = sorted(tree.numbers(folder, source.pattern("rgb")))
            if numbers:
                found[(source.world_name(number), variation)] = numbers
    return found


def listed_frames(source: Source, selection: Selection, camera: int,
                  list_path: str) -> Tuple[Dict[Tuple[str, str], List[int]], List[str]]:
    """(world, variation) -> the frame numbers a list names for `camera`, and an
    error for each named frame without RGB."""
    found: Dict[Tuple[str, str], List[int]] = {}
    errors = []
    for world, variation, cam, number in sorted(selection.keys):
        if cam != camera:
            continue
        folder = source.group_dir("rgb", world, variation, cam)
        if number in source.tree.numbers(folder, source.pattern("rgb")):
            found.setdefault((world, variation), []).append(number)
        else:
            errors.append(f"{os.path.join(folder, source.pattern('rgb').format(number))}: missing (named by "
                          f"{list_path})")
    return found, errors


def select_groups(source: Source, args, selection: Optional[Selection]) -> Tuple[List[Group], List[str]]:
    """The groups of frames to convert (the list's, or all but the excluded ones, of
    the chosen worlds and variations), and an error per listed frame without RGB."""
    errors: List[str] = []
    if selection is not None and not selection.exclude:
        frames, errors = listed_frames(source, selection, args.camera, args.list)
    else:
        excluded = selection.keys if selection is not None else set()
        frames = {key: [n for n in numbers if (*key, args.camera, n) not in excluded]
                  for key, numbers in rgb_frames(source, args.camera).items()}
    worlds = _names(args.worlds) if args.worlds else None
    variations = _names(args.variations) if args.variations else None
    groups = [Group(world, variation, args.camera, numbers) for (world, variation), numbers in sorted(frames.items())
              if numbers and _wanted(world, worlds, _world_number) and _wanted(variation, variations, str.lower)]
    return groups, errors


def check_group_files(source: Source, group: Group, component: str) -> Optional[str]:
    """An error when `component` lacks a frame of `group` that the RGB has."""
    folder = source.group_dir(component, group.world, group.variation, group.camera)
    if not os.path.isdir(folder):
        return f"{folder}: missing (the {component} of {group.world}/{group.variation}); extract its archive completely"
    have = source.tree.numbers(folder, source.pattern(component))
    lacking = [n for n in group.numbers if n not in have]
    if not lacking:
        return None
    rgb = source.tree.numbers(source.group_dir("rgb", group.world, group.variation, group.camera),
                              source.pattern("rgb"))
    return (f"{folder} has {len(have)} of the {len(rgb)} frames of the rgb (first missing: "
            f"{source.pattern(component).format(lacking[0])})")


# ---------------------------------------------------------------- intrinsics and labels tables
def read_table(path: str, columns: int) -> Tuple[List[str], List[List[str]]]:
    """The header (a first row without any number; [] when there is none) and the
    rows of a whitespace-separated text file whose rows have `columns` or more fields."""
    try:
        with open(path) as f:
            rows = [line.split() for line in f if line.strip()]
    except OSError as err:
        raise DataError(f"{path}: unreadable: {err}") from None
    header = rows.pop(0) if rows and not any(_is_number(v) for v in rows[0]) else []
    bad = [r for r in rows if len(r) < columns]
    if bad:
        raise DataError(f"{path}: a row with {len(bad[0])} fields ({' '.join(bad[0])}), expected {columns}")
    return header, rows


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def read_intrinsics(path: str) -> Dict[Tuple[int, int], Tuple[float, ...]]:
    """(frame, camera) -> (fx, fy, cx, cy) from a 2.0.3 intrinsic.txt; DataError
    naming the file and the row of a focal that is not finite and above 0."""
    try:
        table = {(int(r[0]), int(r[1])): tuple(float(v) for v in r[2:6]) for r in read_table(path, 6)[1]}
    except ValueError:
        raise DataError(f"{path}: expected rows 'frame cameraID fx fy cx cy' of numbers") from None
    for (frame, camera), K in table.items():
        check_intrinsics(K, f"{path}: frame {frame} camera {camera}")
    return table


@dataclass
class Colours:
    """A colour-coded label image's table: sorted 24-bit colours (r << 16 | g << 8 | b)
    with each one's layout class id, instance id (0 = none) and vehicle flag."""

    path: str
    keys: np.ndarray
    classes: np.ndarray
    instances: np.ndarray
    vehicle: np.ndarray
    unmapped: Tuple[str, ...]


def _colour_key(r, g, b):
    return (np.asarray(r, np.int64) << 16) | (np.asarray(g, np.int64) << 8) | np.asarray(b, np.int64)


def colour_table(path: str) -> Colours:
    """The table of a 1.3.1 scenegt encoding file (``Category[:trackID] r g b``) or a
    2.0.3 colors.txt (``Category r g b``). Instance ids are track + 1."""
    entries, unmapped, tracks = [], set(), {}
    for row in read_table(path, 4)[1]:
        category, _, track = row[0].partition(":")
        try:
            key = int(_colour_key(*(int(v) for v in row[-3:])))
        except ValueError:
            raise DataError(f"{path}: expected rows 'Category[:trackID] r g b', got {' '.join(row)}") from None
        if category not in TO_COCO:
            unmapped.add(category)
        name = TO_COCO.get(category)
        instance = int(track) + 1 if track and category in VEHICLES else 0
        if instance and tracks.setdefault(instance, category) != category:
            raise DataError(f"{path}: track {track} is both {tracks[instance]} and {category}; track ids must be "
                            f"unique in a sequence (is this file edited?)")
        entries.append((key, coco.class_id(name) if name else coco.IGNORE, instance, category in VEHICLES))
    entries.sort()
    if len({e[0] for e in entries}) != len(entries):
        raise DataError(f"{path}: a colour appears twice")
    keys, classes, instances, vehicle = (np.array(c) for c in zip(*entries)) if entries else ([],) * 4
    return Colours(path, np.asarray(keys, np.int64), np.asarray(classes, np.uint8),
                   np.asarray(instances, np.int64), np.asarray(vehicle, bool), tuple(sorted(unmapped)))


def read_bbox_pixels(path: str, frame: int, camera: int) -> Dict[int, int]:
    """trackID -> number_pixels of a frame and camera in a 2.0.3 bbox.txt."""
    header, rows = read_table(path, 8)
    try:
        col = {name: header.index(name) for name in ("frame", "cameraID", "trackID", "number_pixels")}
    except ValueError:
        raise DataError(f"{path}: the header lacks frame, cameraID, trackID or number_pixels (got "
                        f"{' '.join(header) or 'no header'})") from None
    return {int(r[col["trackID"]]): int(r[col["number_pixels"]]) for r in rows
            if int(r[col["frame"]]) == frame and int(r[col["cameraID"]]) == camera}


# ---------------------------------------------------------------- reading one frame
@dataclass(frozen=True)
class Job:
    """Everything needed to read one frame (it travels to the worker processes)."""

    name: str
    root: str
    rgb: str
    depth: str
    K: Tuple[float, ...]  # at NATIVE
    max_depth: float
    sky: str
    allow_size: bool
    labels: Optional[str] = None  # the colour-coded class image (scenegt or classgt)
    colours: Optional[Colours] = None
    instances: Optional[str] = None  # 2.0.3 instancegt palette PNG


def read_frame(job: Job) -> Frame:
    """One frame at its native size: RGB, depth in metres, intrinsics, labels."""
    rgb = _read_image(job.rgb, cv2.IMREAD_COLOR, "RGB image")
    H0, W0 = rgb.shape[:2]
    if (H0, W0) != NATIVE and not job.allow_size:
        raise DataError(f"{job.rgb}: image is {W0}x{H0} but Virtual KITTI frames are {NATIVE[1]}x{NATIVE[0]}; "
                        f"pass --allow-size to convert anyway (intrinsics scale with the size)")
    depth = decode_depth(_read_image(job.depth, cv2.IMREAD_UNCHANGED, "depth"), job.depth, job.max_depth, job.sky)
    semantic = instance = None
    if job.labels:
        semantic, instance = decode_labels(job)
    return Frame(name=job.name, src=os.path.relpath(job.rgb, job.root), rgb=cv2.cvtColor(rgb, cv2.COLOR_BGR2RGB),
                 K=scale_intrinsics(job.K, NATIVE, (H0, W0)), depth=depth, semantic=semantic, instance=instance)


def _read_image(path: str, flags: int, what: str) -> np.ndarray:
    image = cv2.imread(path, flags)
    if image is None:
        raise DataError(f"{path}: missing or not a readable image ({what})")
    return image


def decode_depth(raw: np.ndarray, path: str, max_depth: float, sky: str) -> np.ndarray:
    """Metres from Virtual KITTI's uint16 centimetres: the far plane (65535) becomes
    `max_depth` (sky "clamp") or 0 = no depth ("ignore"); every depth is clamped to
    `max_depth`."""
    if raw.dtype != np.uint16 or raw.ndim != 2:
        channels = 1 if raw.ndim == 2 else raw.shape[2]
        raise DataError(f"{path}: depth must be a 16-bit single-channel PNG (Virtual KITTI stores centimetres as "
                        f"uint16, 65535 = sky); got {raw.dtype} with {channels} channel{'s' * (channels > 1)}; "
                        f"point --root at the original vkitti_*_depth folders")
    if int(raw.max()) < CONVERTED_BELOW:
        raise DataError(f"{path}: depth maximum is {int(raw.max())} and no pixel reaches {FAR}: this looks like "
                        f"converted depth (Virtual KITTI raw depth is centimetres with sky at {FAR}); point --root "
                        f"at the original vkitti_*_depth folders")
    metres = np.minimum(raw.astype(np.float32) / CM_PER_METRE, max_depth)
    if sky == "ignore":
        metres[raw == FAR] = 0.0
    return metres


def decode_labels(job: Job) -> Tuple[np.ndarray, np.ndarray]:
    """Layout class ids (255 = ignore) and instance ids (0 = none) of a frame."""
    bgr = _read_image(job.labels, cv2.IMREAD_COLOR, "class colours")
    table = job.colours
    key = _colour_key(bgr[..., 2], bgr[..., 1], bgr[..., 0])
    index = np.clip(np.searchsorted(table.keys, key), 0, max(len(table.keys) - 1, 0))
    known = table.keys[index] == key if len(table.keys) else np.zeros(key.shape, bool)
    if not known.all():
        r, g, b = (int(v) for v in (key[~known][0] >> 16, (key[~known][0] >> 8) & 255, key[~known][0] & 255))
        raise DataError(f"{job.labels}: {int((~known).sum())} pixels have colours not in {table.path} (first: "
                        f"{r} {g} {b}); the label image and its colour table must come from the same "
                        f"world/variation")
    semantic = table.classes[index]
    if job.instances is None:
        return semantic, table.instances[index]
    tracks = read_palette_png(job.instances).astype(np.int64)
    if tracks.shape != semantic.shape:
        raise DataError(f"{job.instances}: {tracks.shape[1]}x{tracks.shape[0]} but {job.labels} is "
                        f"{semantic.shape[1]}x{semantic.shape[0]}")
    return semantic, np.where(table.vehicle[index], tracks, 0)


def read_palette_png(path: str) -> np.ndarray:
    """The palette indices of an 8-bit palette PNG."""
    try:
        from PIL import Image
    except ImportError:
        raise DataError(f"{path}: reading palette indices needs Pillow; pip install desc-ops[data]") from None
    try:
        with Image.open(path) as image:
            image.load()
            mode, indices = image.mode, np.array(image)
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: missing or not a readable PNG (instancegt): {err}") from None
    if mode not in ("P", "L"):  # L: indices re-saved as grey levels, same values
        raise DataError(f"{path}: expected an 8-bit palette PNG (mode P) of instance indices; got {mode} (a "
                        f"re-saved colour image?); use the files of vkitti_2.0.3_instanceSegmentation.tar")
    return indices


def check_instance_decoding(source: Source, group: Group, job: Job) -> None:
    """Raises DataError unless each track t of bbox.txt covers as many pixels of
    value t + 1 in the group's first instancegt as its number_pixels says."""
    bbox, expected = source.text_file(group.world, group.variation, "bbox.txt")
    if bbox is None:
        raise DataError(f"{expected} missing: --labels gt checks the instancegt decoding against it; extract "
                        f"vkitti_2.0.3_textgt.tar.gz")
    counts = np.bincount(read_palette_png(job.instances).ravel().astype(np.int64), minlength=256)
    number = group.numbers[0]
    for track, pixels in sorted(read_bbox_pixels(bbox, number, group.camera).items()):
        counted = int(counts[track + 1]) if track + 1 < len(counts) else 0
        if counted != pixels:
            raise DataError(f"{job.instances}: instancegt decoding does not match {bbox} number_pixels for track "
                            f"{track} of frame {number} (counted {counted} pixels of value {track + 1}, the file "
                            f"says {pixels}): the palette indices may be shifted; report this file")


# ---------------------------------------------------------------- jobs
@dataclass
class Plan:
    """The frames to write and what the split's meta.json says about their labels."""

    jobs: List[Tuple[str, Job]]
    instance_classes: Set[int]
    unmapped: Set[str]


def frame_name(source: Source, group: Group, number: int) -> str:
    return source.release.frame.format(world=group.world, variation=group.variation, camera=group.camera,
                                       number=number)


def group_intrinsics(source: Source, group: Group, focal: Optional[float]):
    """A function frame number -> (fx, fy, cx, cy) at NATIVE for the group."""
    if focal is not None:
        K = tuple(check_intrinsics((focal, focal, V1.K[2], V1.K[3]), "--focal"))
        return lambda n: K
    if source.release.K is not None:
        return lambda n: source.release.K
    path, expected = source.text_file(group.world, group.variation, "intrinsic.txt")
    if path is None:
        raise DataError(f"{expected} missing: vKITTI 2 intrinsics are per frame; extract vkitti_2.0.3_textgt.tar.gz "
                        f"(or pass --focal 725.0087 to use the constant)")
    table = read_intrinsics(path)

    def lookup(n: int):
        if (n, group.camera) not in table:
            raise DataError(f"{path}: no row for frame {n} camera {group.camera}")
        return table[(n, group.camera)]
    return lookup


def group_colours(source: Source, group: Group) -> Colours:
    component, name, what = source.release.colours
    name = name.format(world=group.world, variation=group.variation)
    if component is not None:
        path = source.tree.path(source.tops[component], name)
    else:
        found, path = source.text_file(group.world, group.variation, name)
        path = found or path
    if not os.path.exists(path):
        raise DataError(f"{path} missing: --labels gt needs {what}")
    return colour_table(path)


def classes_with_instances(colours: Colours, palette: bool) -> Set[int]:
    """The layout classes that get instance ids: every vehicle category when the ids
    come from a palette of track ids (2.0.3), else those with track ids in the table."""
    has = colours.vehicle if palette else colours.instances > 0
    return {int(c) for c in colours.classes[has] if c != coco.IGNORE}


def plan_frames(source: Source, groups: Sequence[Group], args) -> Plan:
    """The jobs of every frame of `groups`; checks the instance decoding of 2.0.3 on
    each group's first frame."""
    gt = args.labels == "gt"
    jobs, instance_classes, unmapped = [], set(), set()
    for group in groups:
        intrinsics = group_intrinsics(source, group, args.focal)
        colours = group_colours(source, group) if gt else None
        if colours is not None:
            unmapped |= set(colours.unmapped)
            instance_classes |= classes_with_instances(colours, palette=source.release.instances is not None)
        folder = {c: source.group_dir(c, group.world, group.variation, group.camera)
                  for c in ("rgb", "depth", "scenegt", "classgt", "instancegt") if c in source.tops}
        file = {c: os.path.join(d, source.pattern(c)) for c, d in folder.items()}
        for i, n in enumerate(group.numbers):
            labels = file[source.release.labels].format(n) if gt else None
            instances = file[source.release.instances].format(n) if gt and source.release.instances else None
            job = Job(name=frame_name(source, group, n), root=source.root, rgb=file["rgb"].format(n),
                      depth=file["depth"].format(n), K=tuple(intrinsics(n)), max_depth=args.max_depth, sky=args.sky,
                      allow_size=args.allow_size, labels=labels, colours=colours, instances=instances)
            if instances and i == 0:
                check_instance_decoding(source, group, job)
            jobs.append((job.name, job))
    return Plan(jobs, instance_classes, unmapped)


def label_components(source: Source, labels: str) -> List[str]:
    if labels != "gt":
        return []
    release = source.release
    return [release.labels] + ([release.instances] if release.instances else [])


# ---------------------------------------------------------------- the command
def conversion_args(args) -> Dict:
    """The arguments that decide the split's content (a rerun with others restarts it)."""
    skip = {"run", "command", "dataset", "workers", "overwrite", "limit"}
    out = {k: v for k, v in vars(args).items() if k not in skip}
    out["root"] = os.path.abspath(args.root)
    out["size"] = list(args.size) if args.size is not None else "native"
    for key in ("list", "exclude_list"):
        out[key] = os.path.abspath(out[key]) if out[key] else None
    return out


def main(args) -> int:
    if args.max_depth <= 0:
        raise DataError(f"--max-depth must be positive, got {args.max_depth}")
    source = detect(args.root, args.version)
    if source.release.cameras == 1 and args.camera != 0:
        raise DataError("--camera 1: Virtual KITTI 1.3.1 has one camera (0); Camera_1 is a 2.0.3 folder")
    components = ["depth"] + label_components(source, args.labels)
    check_components(source, ["rgb"] + components)
    list_path = args.list or args.exclude_list
    selection = read_list(list_path, source, exclude=bool(args.exclude_list)) if list_path else None
    groups, errors = select_groups(source, args, selection)
    errors += [e for g in groups for c in components for e in [check_group_files(source, g, c)] if e]
    raise_all(errors, f"frames that cannot be converted ({len(errors)})")
    if not groups:
        worlds, variations = (" ".join(chosen or ["all"]) for chosen in (args.worlds, args.variations))
        raise DataError(f"{args.root}: no frames to convert (camera {args.camera}, worlds {worlds}, "
                        f"variations {variations}" + (f", --list {list_path})" if list_path else ")"))
    plan = plan_frames(source, groups, args)
    jobs = sorted(plan.jobs, key=lambda job: job[0])[:args.limit or None]
    if selection is not None:
        print(f"{list_path}: {selection.name or 'a list not recognised'} ({len(selection.keys)} frames, sha256 "
              f"{selection.sha256[:12]}...)")
    if plan.unmapped:
        print(f"note: categories {', '.join(sorted(plan.unmapped))} have no COCO class; labelled ignore (255)")
    note = anisotropy_note(NATIVE, args.size)
    if note:
        print(note)
    converted = conversion_args(args)
    meta = dict(
        domain="source", classes=list(coco.CLASSES), instance_classes=sorted(plan.instance_classes),
        has_depth=True, has_labels=args.labels == "gt", max_depth=float(args.max_depth),
        dataset=dict(name="vkitti", version=source.version, layout=source.layout, root=converted["root"],
                     converter="desc-train prepare vkitti", args=dict(converted, limit=args.limit),
                     list_sha256=selection.sha256 if selection else None,
                     list_name=selection.name if selection else None),
        label_source=dict(kind="gt", mapping=dict(TO_COCO)) if args.labels == "gt" else None,
    )
    # Stored as Virtual KITTI stores it, in centimetres: the conversion loses nothing.
    write_split(os.path.join(args.out, args.split), jobs, read_frame, size=args.size, meta=meta, args=converted,
                workers=args.workers, overwrite=args.overwrite, depth_scale=CM_PER_METRE)
    return 0
