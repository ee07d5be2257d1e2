"""desc-train prepare vkitti: fabricated Virtual KITTI 1.3.1 and 2.0.3 trees in the
releases' formats (uint16 centimetre depth with sky at 65535, PNG or JPEG RGB,
scenegt colours with their encoding file, classgt colours with colors.txt,
instancegt palette PNGs checked against bbox.txt, intrinsic.txt), converted
through the command line and read back with the layout's readers."""
import argparse
import dataclasses
import hashlib
import os
import re
import shutil
import struct
import zlib

import cv2
import numpy as np
import pytest

from desc_train.cli import main as cli_main
from desc_train.data import coco
from desc_train.data.dataset import DepthDataset
from desc_train.data.layout import read_meta, read_sample
from desc_train.data.prepare import vkitti

NATIVE = (375, 1242)  # (H, W) of the real frames
SMALL = (60, 200)  # fabricated frames of most tests (converted with --allow-size)
OUT_SIZE = ["--size", "48x160"]

# Regions of every fabricated frame: 0 the top third (sky), 1-4 the quarters of the rest.
SKY, LEFT, MID_LEFT, MID_RIGHT, RIGHT = range(5)
DEPTH_CM = {SKY: 65535, LEFT: 1234, MID_LEFT: 1234, MID_RIGHT: 9000, RIGHT: 9000}

V1_COLOURS = [("Sky", (90, 200, 255)), ("Car:3", (200, 10, 10)), ("Road", (100, 60, 100)),
              ("Van:7", (10, 10, 180)), ("Pole", (255, 130, 0)), ("Building", (140, 140, 140)),
              ("Car:5", (201, 10, 10))]
V1_REGIONS = {SKY: "Sky", LEFT: "Car:3", MID_LEFT: "Road", MID_RIGHT: "Van:7", RIGHT: "Pole"}
V2_COLOURS = [("Terrain", (210, 0, 200)), ("Sky", (90, 200, 255)), ("Road", (100, 60, 100)), ("Pole", (255, 130, 0)),
              ("Truck", (160, 60, 60)), ("Car", (255, 127, 80)), ("Van", (0, 139, 139)), ("Undefined", (0, 0, 0))]
V2_REGIONS = {SKY: "Sky", LEFT: "Car", MID_LEFT: "Road", MID_RIGHT: "Truck", RIGHT: "Pole"}
V2_TRACKS = {LEFT: 3, MID_RIGHT: 1}  # region -> track id; instancegt stores track + 1
V2_FOCAL = {0: (700.0, 700.0, 600.0, 180.0), 1: (810.5, 810.5, 630.0, 190.0)}  # not vKITTI's 725: must be read


# ---------------------------------------------------------------- fabricating the releases' files
def regions(size):
    H, W = size
    r = np.empty((H, W), np.uint8)
    r[:, :] = np.minimum(np.arange(W) * 4 // W, 3)[None, :] + 1
    r[: H // 3] = SKY
    return r


def at(size, region):
    """A pixel in the middle of `region` at `size`, far from its borders."""
    H, W = size
    return (H // 6, W // 2) if region == SKY else (2 * H // 3, (2 * (region - 1) + 1) * W // 8)


def paint(size, table, dtype=np.uint8):
    r = regions(size)
    return np.asarray(table, dtype)[r]


def mkdirs_write(path, image):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(path, image)


def write_depth(path, size):
    mkdirs_write(path, paint(size, [DEPTH_CM[i] for i in range(5)], np.uint16))


def rgb_colour(region, seed):
    """The RGB colour of a region of the fabricated frame `seed`."""
    return [40 * region + 9 * seed, 30 + 20 * region, 200 - 30 * region]


def write_rgb(path, size, seed):
    mkdirs_write(path, paint(size, [rgb_colour(i, seed) for i in range(5)])[..., ::-1])


def write_colours(path, size, colours, names):
    """A label image whose regions have the colours of `names` (region -> category)."""
    lookup = dict(colours)
    mkdirs_write(path, paint(size, [lookup[names[i]] for i in range(5)])[..., ::-1])


def palette(i):
    return ((53 * i + 17) % 256, (101 * i + 3) % 256, (29 * i + 200) % 256)  # never the index itself


def write_palette_png(path, indices):
    """An 8-bit palette PNG (colour type 3) with the given indices."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    H, W = indices.shape
    rows = b"".join(b"\x00" + row.tobytes() for row in indices.astype(np.uint8))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", W, H, 8, 3, 0, 0, 0))
                + chunk(b"PLTE", bytes(v for i in range(256) for v in palette(i)))
                + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def write_text(path, lines):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def make_v1(root, worlds=("0001",), variations=("clone",), frames=2, size=SMALL, renamed=False, labels=False):
    top = {"rgb": "rgb", "depth": "depth", "scenegt": "scenegt"} if renamed else \
        {"rgb": "vkitti_1.3.1_rgb", "depth": "vkitti_1.3.1_depthgt", "scenegt": "vkitti_1.3.1_scenegt"}
    for w in worlds:
        for v in variations:
            for n in range(frames):
                write_rgb(os.path.join(root, top["rgb"], w, v, f"{n:05d}.png"), size, n)
                write_depth(os.path.join(root, top["depth"], w, v, f"{n:05d}.png"), size)
                if labels:
                    write_colours(os.path.join(root, top["scenegt"], w, v, f"{n:05d}.png"), size, V1_COLOURS,
                                  V1_REGIONS)
            if labels:
                write_text(os.path.join(root, top["scenegt"], f"{w}_{v}_scenegt_rgb_encoding.txt"),
                           ["Category(:id) r g b"] + [f"{c} {r} {g} {b}" for c, (r, g, b) in V1_COLOURS])
    return str(root)


def make_v2(root, scenes=("Scene01",), variations=("clone",), frames=2, cameras=(0, 1), size=SMALL, merged=False,
            lower=False, labels=False, shift=0):
    """A 2.0.3 tree: the archives' folders, or one merged tree; `lower` spells the
    folders in lower case (as the release's README does); `shift` adds to every
    instancegt index (a decoding bbox.txt must refute)."""
    def name(text):
        return text.lower() if lower else text

    def top(archive):
        return str(root) if merged else os.path.join(root, name(f"vkitti_2.0.3_{archive}"))

    inst = np.zeros(5, np.uint8)
    inst[RIGHT] = 9  # a non-vehicle region: its index must not make an instance
    for region, track in V2_TRACKS.items():
        inst[region] = track + 1 + shift
    counts = {track: int((regions(size) == region).sum()) for region, track in V2_TRACKS.items()}
    for s in scenes:
        for v in variations:
            def frame_file(archive, folder, camera, pattern, n):
                return os.path.join(top(archive), name(s), v, "frames", name(folder), name(f"Camera_{camera}"),
                                    pattern.format(n))
            intrinsic, bbox = ["frame cameraID K[0,0] K[1,1] K[0,2] K[1,2]"], \
                ["frame cameraID trackID left right top bottom number_pixels truncation_ratio occupancy_ratio "
                 "isMoving"]
            for n in range(frames):
                for c in cameras:
                    write_rgb(frame_file("rgb", "rgb", c, "rgb_{:05d}.jpg", n), size, n + 3 * c)
                    write_depth(frame_file("depth", "depth", c, "depth_{:05d}.png", n), size)
                    intrinsic.append(f"{n} {c} " + " ".join(str(k) for k in V2_FOCAL[c]))
                    bbox += [f"{n} {c} {t} 0 10 20 30 {p} 0.0 1.0 False" for t, p in sorted(counts.items())]
                    if labels:
                        write_colours(frame_file("classSegmentation", "classSegmentation", c, "classgt_{:05d}.png", n),
                                      size, V2_COLOURS, V2_REGIONS)
                        write_palette_png(frame_file("instanceSegmentation", "instanceSegmentation", c,
                                                     "instancegt_{:05d}.png", n), inst[regions(size)])
            text = os.path.join(top("textgt"), name(s), v)
            write_text(os.path.join(text, "intrinsic.txt"), intrinsic)
            write_text(os.path.join(text, "bbox.txt"), bbox)
            write_text(os.path.join(text, "colors.txt"),
                       ["Category r g b"] + [f"{c} {r} {g} {b}" for c, (r, g, b) in V2_COLOURS])
    return str(root)


# ---------------------------------------------------------------- running the converter
def prepare(src, out, *extra, split="source_train"):
    return cli_main(["prepare", "vkitti", "--root", str(src), "--out", str(out), "--split", split, "--workers", "1",
                     *extra])


def converted(src, out, *extra, split="source_train"):
    assert prepare(src, out, *extra, split=split) == 0
    return os.path.join(out, split), read_meta(os.path.join(out, split))


def failure(capsys, src, out, *extra):
    capsys.readouterr()
    assert prepare(src, out, *extra) == 1
    return capsys.readouterr().err


def depth_at(split_dir, meta, name, size):
    depth = read_sample(split_dir, name, meta)["depth"]
    return {region: float(depth[at(size, region)]) for region in (SKY, LEFT, MID_RIGHT)}


# ---------------------------------------------------------------- Virtual KITTI 1.3.1
def test_v1_depth_in_metres_focal_and_names(tmp_path):
    """Real-size frames: centimetres to metres, sky and far depth clamped to 80 m,
    the focal 725 scaled to 192 rows, DESC's frame names; in worker processes."""
    src = make_v1(tmp_path / "src", worlds=("0001", "0002"), variations=("clone", "fog"), size=NATIVE)
    split, meta = converted(src, tmp_path / "out", "--workers", "2")
    assert meta.names == [f"{w}_{v}_{n:05d}" for w in ("0001", "0002") for v in ("clone", "fog") for n in (0, 1)]
    assert meta.image_size == [192, 640] and meta.domain == "source"
    assert meta.has_depth and not meta.has_labels and meta.max_depth == 80.0
    assert meta.dataset["name"] == "vkitti" and meta.dataset["version"] == "1.3.1"
    assert meta.dataset["layout"] == "archives" and meta.dataset["list_sha256"] is None
    assert meta.dataset["converter"] == "desc-train prepare vkitti" and meta.label_source is None
    assert meta.dataset["root"] == meta.dataset["args"]["root"] == os.path.abspath(src)
    assert meta.dataset["args"]["limit"] is None and meta.dataset["args"]["max_depth"] == 80.0
    assert meta.dataset["args"]["sky"] == "clamp"
    record = meta.frames["0002_fog_00001"]
    assert record["src"] == os.path.join("vkitti_1.3.1_rgb", "0002", "fog", "00001.png")
    assert record["orig_size"] == [375, 1242]
    np.testing.assert_allclose(record["K"], [725 * 640 / 1242, 725 * 192 / 375, 620.5 * 640 / 1242, 187 * 192 / 375],
                               rtol=1e-6)
    assert meta.frame_focal("0001_clone_00000") == pytest.approx(371.2) == meta.focal  # the split's: the median
    assert depth_at(split, meta, "0002_fog_00001", (192, 640)) == {
        SKY: 80.0, LEFT: pytest.approx(12.34, rel=1e-6), MID_RIGHT: 80.0}
    rgb = read_sample(split, "0002_fog_00001", meta)["rgb"]
    assert rgb[at((192, 640), MID_LEFT)].tolist() == rgb_colour(MID_LEFT, 1)
    item = DepthDataset(split)[0]
    assert float(item["focal"]) == pytest.approx(371.2)
    assert float(item["depth"].max()) == 80.0 and (item["semantic"] == -1).all()


def test_v1_sky_ignore_and_constant_focal(tmp_path):
    src = make_v1(tmp_path / "src", frames=1)
    split, meta = converted(src, tmp_path / "out", *OUT_SIZE, "--allow-size", "--sky", "ignore",
                            "--focal", "725.0087")
    assert depth_at(split, meta, "0001_clone_00000", (48, 160)) == {
        SKY: 0.0, LEFT: pytest.approx(12.34, rel=1e-6), MID_RIGHT: 80.0}
    assert meta.frame_focal("0001_clone_00000") == pytest.approx(725.0087 * 48 / 375)
    # --focal replaces fx and fy; the principal point stays Virtual KITTI's (620.5, 187) at 1242x375.
    assert meta.frames["0001_clone_00000"]["K"] == pytest.approx(
        [725.0087 * 160 / 1242, 725.0087 * 48 / 375, 620.5 * 160 / 1242, 187.0 * 48 / 375], rel=1e-5)


def test_a_max_depth_below_a_metre_is_allowed(tmp_path):
    src = make_v1(tmp_path / "src", frames=1)
    split, meta = converted(src, tmp_path / "out", *OUT_SIZE, "--allow-size", "--max-depth", "0.5")
    assert meta.max_depth == 0.5 and depth_at(split, meta, "0001_clone_00000", (48, 160))[SKY] == 0.5


def test_v1_renamed_tree_lists_and_filters(tmp_path, monkeypatch):
    """DESC's rgb/ + depth/ tree; --list restricts the frames and is recognised by its
    hash, --exclude-list converts the rest, --worlds and --variations select."""
    src = make_v1(tmp_path / "src", worlds=("0001", "0002"), variations=("clone", "rain"), frames=2, renamed=True)
    listed = ["0002/rain/00001", "0001/clone/00000", "0002/clone/00001"]
    lines = [f"rgb/{p}.png depth/{p}.png" for p in listed]
    write_text(str(tmp_path / "train.txt"), lines)
    digest = hashlib.sha256("".join(f"rgb/{p}.png\n" for p in sorted(listed)).encode()).hexdigest()
    monkeypatch.setitem(vkitti.KNOWN_LISTS, digest, "fixture list")
    split, meta = converted(src, tmp_path / "out", *OUT_SIZE, "--allow-size", "--list", str(tmp_path / "train.txt"))
    assert meta.names == sorted(p.replace("/", "_") for p in listed)
    assert meta.dataset["layout"] == "renamed" and meta.dataset["version"] == "1.3.1"
    assert meta.dataset["list_sha256"] == digest and meta.dataset["list_name"] == "fixture list"
    monkeypatch.delitem(vkitti.KNOWN_LISTS, digest)
    _, rest = converted(src, tmp_path / "out", *OUT_SIZE, "--allow-size", "--exclude-list",
                        str(tmp_path / "train.txt"), split="rest")
    assert rest.names == sorted({f"{w}_{v}_{n:05d}" for w in ("0001", "0002") for v in ("clone", "rain")
                                 for n in (0, 1)} - set(meta.names))
    assert rest.dataset["list_sha256"] == digest and rest.dataset["list_name"] is None
    _, some = converted(src, tmp_path / "out", *OUT_SIZE, "--allow-size", "--worlds", "2", "--variations", "rain",
                        split="some")
    assert some.names == ["0002_rain_00000", "0002_rain_00001"]
    _, both = converted(src, tmp_path / "out", *OUT_SIZE, "--allow-size", "--worlds", "1,0002",  # a comma list
                        "--variations", "rain,", "clone", split="both")
    assert both.names == sorted(f"{w}_{v}_{n:05d}" for w in ("0001", "0002") for v in ("clone", "rain") for n in (0, 1))


def test_v1_ground_truth_labels(tmp_path):
    src = make_v1(tmp_path / "src", frames=1, labels=True)
    split, meta = converted(src, tmp_path / "out", *OUT_SIZE, "--allow-size", "--labels", "gt")
    assert meta.has_labels and meta.classes == coco.CLASSES and meta.instance_classes == [coco.class_id("car")]
    assert meta.label_source["kind"] == "gt" and meta.label_source["mapping"]["Van"] == "car"
    assert meta.max_instances == 2
    s = read_sample(split, "0001_clone_00000", meta)
    size = (48, 160)
    expected = {SKY: ("sky-other-merged", 0), LEFT: ("car", 4), MID_LEFT: ("road", 0), MID_RIGHT: ("car", 8),
                RIGHT: (None, 0)}
    for region, (name, instance) in expected.items():
        assert s["semantic"][at(size, region)] == (coco.class_id(name) if name else -1), region
        assert s["instance"][at(size, region)] == instance, region
    item = DepthDataset(split)[0]
    assert sorted(item["instance_class"][item["instance_class"] >= 0].tolist()) == [2, 2]


# ---------------------------------------------------------------- Virtual KITTI 2.0.3
def test_v2_intrinsics_names_and_cameras(tmp_path):
    """Per-frame intrinsics from intrinsic.txt, JPEG frames, Camera_1 only with --camera 1."""
    src = make_v2(tmp_path / "src", variations=("clone", "15-deg-left"))
    split, meta = converted(src, tmp_path / "out", *OUT_SIZE, "--allow-size")
    assert meta.names == [f"Scene01_{v}_c0_{n:05d}" for v in ("15-deg-left", "clone") for n in (0, 1)]
    assert meta.dataset["version"] == "2.0.3" and meta.dataset["layout"] == "archives"
    fx, fy, cx, cy = V2_FOCAL[0]
    np.testing.assert_allclose(meta.frames["Scene01_clone_c0_00001"]["K"],
                               [fx * 160 / 1242, fy * 48 / 375, cx * 160 / 1242, cy * 48 / 375], rtol=1e-5)
    assert meta.frames["Scene01_clone_c0_00001"]["src"] == os.path.join(
        "vkitti_2.0.3_rgb", "Scene01", "clone", "frames", "rgb", "Camera_0", "rgb_00001.jpg")
    assert depth_at(split, meta, "Scene01_clone_c0_00000", (48, 160)) == {
        SKY: 80.0, LEFT: pytest.approx(12.34, rel=1e-6), MID_RIGHT: 80.0}
    _, right = converted(src, tmp_path / "out", *OUT_SIZE, "--allow-size", "--camera", "1", "--variations", "clone",
                         split="right")
    assert right.names == ["Scene01_clone_c1_00000", "Scene01_clone_c1_00001"]
    rgb = read_sample(os.path.join(tmp_path, "out", "right"), "Scene01_clone_c1_00001", right)["rgb"]
    np.testing.assert_allclose(rgb[at((48, 160), LEFT)], rgb_colour(LEFT, 1 + 3), atol=4)  # JPEG
    assert right.frame_focal("Scene01_clone_c1_00000") == pytest.approx(V2_FOCAL[1][1] * 48 / 375)


def test_v2_list_of_rgb_paths(tmp_path):
    src = make_v2(tmp_path / "src", cameras=(0,), frames=3)
    write_text(str(tmp_path / "list.txt"), ["vkitti_2.0.3_rgb/Scene01/clone/frames/rgb/Camera_0/rgb_00002.jpg",
                                            "Scene01/clone/frames/rgb/Camera_0/rgb_00000.jpg"])
    _, meta = converted(src, tmp_path / "out", *OUT_SIZE, "--allow-size", "--list", str(tmp_path / "list.txt"))
    assert meta.names == ["Scene01_clone_c0_00000", "Scene01_clone_c0_00002"]


def test_v2_list_lines_of_the_other_camera_are_passed_over(tmp_path):
    src = make_v2(tmp_path / "src", cameras=(0, 1), frames=2)
    write_text(str(tmp_path / "list.txt"), ["Scene01/clone/frames/rgb/Camera_0/rgb_00000.jpg",
                                            "Scene01/clone/frames/rgb/Camera_1/rgb_00001.jpg",
                                            "Scene01/clone/frames/rgb/Camera_0/rgb_00001.jpg"])
    _, meta = converted(src, tmp_path / "out", *OUT_SIZE, "--allow-size", "--camera", "1",
                        "--list", str(tmp_path / "list.txt"))
    assert meta.names == ["Scene01_clone_c1_00001"]


def test_v2_merged_lower_case_tree_with_labels(tmp_path):
    """One merged tree spelt in lower case; classgt colours and instancegt palette
    indices (track + 1) become COCO-133 classes and instance ids."""
    src = make_v2(tmp_path / "src", frames=1, cameras=(0,), merged=True, lower=True, labels=True)
    split, meta = converted(src, tmp_path / "out", *OUT_SIZE, "--allow-size", "--labels", "gt")
    assert meta.names == ["Scene01_clone_c0_00000"] and meta.dataset["layout"] == "merged"
    assert meta.instance_classes == [coco.class_id("car"), coco.class_id("truck")]
    s = read_sample(split, "Scene01_clone_c0_00000", meta)
    expected = {SKY: ("sky-other-merged", 0), LEFT: ("car", 4), MID_LEFT: ("road", 0), MID_RIGHT: ("truck", 2),
                RIGHT: (None, 0)}
    for region, (name, instance) in expected.items():
        assert s["semantic"][at((48, 160), region)] == (coco.class_id(name) if name else -1), region
        assert s["instance"][at((48, 160), region)] == instance, region



def test_v2_instancegt_resaved_as_grey_levels_reads_the_same(tmp_path):
    """instancegt indices re-saved as an 8-bit grey image (mode L) keep their
    values, so they decode as the palette PNG does."""
    from PIL import Image

    src = make_v2(tmp_path / "src", frames=1, cameras=(0,), labels=True)
    _, meta = converted(src, tmp_path / "palette", *OUT_SIZE, "--allow-size", "--labels", "gt")
    path = os.path.join(src, "vkitti_2.0.3_instanceSegmentation", "Scene01", "clone", "frames",
                        "instanceSegmentation", "Camera_0", "instancegt_00000.png")
    with Image.open(path) as im:
        assert im.mode == "P"
        Image.fromarray(np.asarray(im), "L").save(path)
    split, grey = converted(src, tmp_path / "grey", *OUT_SIZE, "--allow-size", "--labels", "gt")
    a = read_sample(str(tmp_path / "palette" / "source_train"), meta.names[0], meta)
    b = read_sample(split, grey.names[0], grey)
    assert (b["instance"] > 0).any()
    np.testing.assert_array_equal(a["instance"], b["instance"])
    np.testing.assert_array_equal(a["semantic"], b["semantic"])

# ---------------------------------------------------------------- resuming
def _interrupted(tmp_path, capsys, worlds):
    """A 1.3.1 tree whose last frame's depth is unreadable, converted into
    tmp_path/out (failing there, the frames before it written). Returns the tree,
    the conversion's arguments and the function that repairs the frame."""
    src = make_v1(tmp_path / "src", worlds=worlds, frames=2)
    bad = os.path.join(src, "vkitti_1.3.1_depthgt", worlds[-1], "clone", "00001.png")
    good = cv2.imread(bad, cv2.IMREAD_UNCHANGED)
    cv2.imwrite(bad, np.zeros((*SMALL, 3), np.uint8))
    args = [*OUT_SIZE, "--allow-size"]
    assert bad in failure(capsys, src, tmp_path / "out", *args)
    return src, args, lambda: cv2.imwrite(bad, good)


def test_interrupted_run_resumes_and_finished_split_needs_overwrite(tmp_path, capsys):
    src, args, repair = _interrupted(tmp_path, capsys, ("0001", "0002"))
    split = os.path.join(tmp_path, "out", "source_train")
    assert not os.path.exists(os.path.join(split, "meta.json"))
    kept = os.path.join(split, "rgb", "0001_clone_00000.png")
    stamp = os.stat(kept).st_mtime_ns
    repair()
    assert prepare(src, tmp_path / "out", *args, "--workers", "2") == 0  # the process count is no reason to restart
    assert "resuming, 3 of 4 frames written already" in capsys.readouterr().out
    assert os.stat(kept).st_mtime_ns == stamp and len(read_meta(split).names) == 4
    assert "--overwrite" in failure(capsys, src, tmp_path / "out", *args)
    assert prepare(src, tmp_path / "out", *args, "--overwrite") == 0
    assert "(4 written, 0 resumed)" in capsys.readouterr().out


@pytest.mark.parametrize("rerun", [["--sky", "ignore"], ["--overwrite"]], ids=["other-arguments", "overwrite"])
def test_interrupted_run_restarts_under_other_arguments_or_with_overwrite(tmp_path, capsys, rerun):
    """The first frame is written, the second fails; the rerun writes both again."""
    src, args, repair = _interrupted(tmp_path, capsys, ("0001",))
    repair()
    assert prepare(src, tmp_path / "out", *args, *rerun) == 0
    out = capsys.readouterr().out
    assert "resuming" not in out and "(2 written, 0 resumed)" in out


# ---------------------------------------------------------------- errors name the file and the fix
def _rewrite_depth(image):
    def mutate(root):
        cv2.imwrite(os.path.join(root, "vkitti_1.3.1_depthgt", "0001", "clone", "00001.png"), image)
    return mutate


def _remove(*parts):
    def mutate(root):
        path = os.path.join(root, *parts)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    return mutate


def _add_v1_list(root):
    write_text(os.path.join(root, "list.txt"), ["rgb/0001/clone/00000.png depth/0001/clone/00000.png"])


def _add_v1_list_of_both_frames(root):
    write_text(os.path.join(root, "list.txt"), [f"rgb/0001/clone/{n:05d}.png depth/0001/clone/{n:05d}.png"
                                                for n in (0, 1)])


def _add_v2_list(root):
    write_text(os.path.join(root, "list.txt"), ["", "Scene01/clone/frames/rgb/Camera_0/rgb_00000.jpg"])


def _add_list_of_missing_frames(root):
    write_text(os.path.join(root, "list.txt"), ["rgb/0001/clone/00007.png depth/0001/clone/00007.png",
                                                "rgb/0001/clone/00000.png depth/0001/clone/00000.png",
                                                "rgb/0001/clone/00009.png depth/0001/clone/00009.png"])


def _add_bad_list(root):
    write_text(os.path.join(root, "list.txt"), ["rgb/0001/clone/00000.png depth/0001/clone/00000.png",
                                                "images/00000.png depth/00000.png"])


def _add_v1_tree(root):
    make_v1(root, frames=1)


def _rgb_instancegt(root):
    path = os.path.join(root, "vkitti_2.0.3_instanceSegmentation", "Scene01", "clone", "frames",
                        "instanceSegmentation", "Camera_0", "instancegt_00000.png")
    cv2.imwrite(path, cv2.imread(path, cv2.IMREAD_COLOR))  # what re-saving with OpenCV does: colours


def _unknown_class_colour(root):
    path = os.path.join(root, "vkitti_2.0.3_classSegmentation", "Scene01", "clone", "frames", "classSegmentation",
                        "Camera_0", "classgt_00000.png")
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    bgr[:2, :3] = (3, 2, 1)  # B, G, R: the colour 1 2 3, in no colors.txt
    cv2.imwrite(path, bgr)


V1, V2 = dict(version=1), dict(version=2)
ERRORS = {  # case -> (tree, mutation, extra arguments, fragments of the message)
    "uint8 depth": (V1, _rewrite_depth(np.full((*SMALL, 3), 7, np.uint8)), [],
                    ["vkitti_1.3.1_depthgt/0001/clone/00001.png", "16-bit single-channel", "uint8 with 3 channels"]),
    "converted depth": (V1, _rewrite_depth(np.full(SMALL, 255, np.uint16)), [],
                        ["vkitti_1.3.1_depthgt/0001/clone/00001.png", "maximum is 255", "converted depth"]),
    "missing depth frame": (V1, _remove("vkitti_1.3.1_depthgt", "0001", "clone", "00001.png"), [],
                            ["vkitti_1.3.1_depthgt/0001/clone has 1 of the 2 frames of the rgb",
                             "first missing: 00001.png"]),
    "missing 2.0.3 depth frame": (V2, _remove("vkitti_2.0.3_depth", "Scene01", "clone", "frames", "depth", "Camera_0",
                                              "depth_00000.png"), [],
                                  [os.path.join("vkitti_2.0.3_depth", "Scene01", "clone", "frames", "depth",
                                                "Camera_0") + " has 0 of the 1 frames of the rgb",
                                   "first missing: depth_00000.png"]),
    "missing renamed depth": (dict(version=1, renamed=True), _remove("depth"), [],
                              ["has rgb/ but no depth/: download vkitti_1.3.1_depthgt.tar and extract it beside the "
                               "RGB (as depth/ or vkitti_1.3.1_depthgt/)"]),
    "missing scenegt for labels": (dict(version=1, labels=True), _remove("vkitti_1.3.1_scenegt"), ["--labels", "gt"],
                                   ["has vkitti_1.3.1_rgb/ but no vkitti_1.3.1_scenegt/: download "
                                    "vkitti_1.3.1_scenegt.tar and extract it beside the RGB\n"]),
    "max depth 0": (V1, None, ["--max-depth", "0"], ["argument --max-depth: expected a finite number > 0, got '0'"]),
    "missing 1.3.1 depth archive": (V1, _remove("vkitti_1.3.1_depthgt"), [],
                                    ["no vkitti_1.3.1_depthgt/", "download vkitti_1.3.1_depthgt.tar"]),
    "missing 2.0.3 depth archive": (V2, _remove("vkitti_2.0.3_depth"), [],
                                    ["no vkitti_2.0.3_depth/", "download vkitti_2.0.3_depth.tar"]),
    "missing intrinsic.txt": (V2, _remove("vkitti_2.0.3_textgt", "Scene01", "clone", "intrinsic.txt"), [],
                              ["vkitti_2.0.3_textgt/Scene01/clone/intrinsic.txt missing", "--focal 725.0087"]),
    "no colors.txt": (dict(version=2, labels=True), _remove("vkitti_2.0.3_textgt", "Scene01", "clone", "colors.txt"),
                      ["--labels", "gt"], ["vkitti_2.0.3_textgt/Scene01/clone/colors.txt missing: --labels gt needs "
                                           "the classgt colours (from the vkitti_2.0.3_textgt or classSegmentation "
                                           "archive)"]),
    "no scenegt encoding": (dict(version=1, labels=True),
                            _remove("vkitti_1.3.1_scenegt", "0001_clone_scenegt_rgb_encoding.txt"), ["--labels", "gt"],
                            ["0001_clone_scenegt_rgb_encoding.txt missing: --labels gt needs the scenegt colour "
                             "encoding (from vkitti_1.3.1_scenegt.tar)"]),
    "listed frames missing": (V1, _add_list_of_missing_frames, ["--list", "{root}/list.txt"],
                              ["vkitti_1.3.1_rgb/0001/clone/00007.png: missing (named by",
                               "vkitti_1.3.1_rgb/0001/clone/00009.png: missing (named by"]),
    "1.3.1 list on 2.0.3": (V2, _add_v1_list, ["--list", "{root}/list.txt"],
                            ["list.txt line 1", "rgb/0001/clone/00000.png (Virtual KITTI 1.3.1",
                             "is Virtual KITTI 2.0.3"]),
    "2.0.3 list on 1.3.1": (V1, _add_v2_list, ["--list", "{root}/list.txt"],
                            ["list.txt line 2: --list names Scene01/clone/frames/rgb/Camera_0/rgb_00000.jpg "
                             "(Virtual KITTI 2.0.3 layout) but", "is Virtual KITTI 1.3.1 (rgb/<world>/<variation>/"]),
    "not a list": (V1, _add_bad_list, ["--list", "{root}/list.txt"],
                   ["list.txt line 2: 'images/00000.png' is not a Virtual KITTI RGB path; expected DESC's list "
                    "format 'rgb/<world>/<variation>/<frame>.png depth/<world>/<variation>/<frame>.png'"]),
    "unreadable list": (V1, None, ["--list", "{root}/nowhere.txt"], ["nowhere.txt: cannot read the list: "]),
    "camera 1 of 1.3.1": (V1, None, ["--camera", "1"], ["--camera 1: Virtual KITTI 1.3.1 has one camera"]),
    "no frames chosen": (V1, None, ["--worlds", "0009", "0010"],
                         ["src: no frames to convert (camera 0, worlds 0009 0010, variations all)\n"]),
    "no frames left by the list": (V1, _add_v1_list_of_both_frames,
                                   ["--exclude-list", "{root}/list.txt", "--variations", "clone"],
                                   ["src: no frames to convert (camera 0, worlds all, variations clone, --list ",
                                    "list.txt)\n"]),
    "both releases": (V2, _add_v1_tree, [], ["1.3.1 (vkitti_1.3.1_rgb/)", "2.0.3 (vkitti_2.0.3_rgb/)",
                                             "--version 1.3.1 or --version 2.0.3"]),
    "shifted palette": (dict(version=2, labels=True, shift=1), None, ["--labels", "gt"],
                        ["Camera_0/instancegt_00000.png: instancegt decoding does not match",
                         "vkitti_2.0.3_textgt/Scene01/clone/bbox.txt number_pixels for track 1",
                         "counted 0 pixels of value 2", "shifted"]),
    "unknown class colour": (dict(version=2, labels=True), _unknown_class_colour, ["--labels", "gt"],
                             ["Camera_0/classgt_00000.png: 6 pixels have colours not in",
                              "vkitti_2.0.3_textgt/Scene01/clone/colors.txt (first: 1 2 3)", "same world/variation"]),
    "instancegt re-saved as colour": (dict(version=2, labels=True), _rgb_instancegt, ["--labels", "gt"],
                                      ["instancegt_00000.png: expected an 8-bit palette PNG (mode P)", "got RGB"]),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_errors_name_the_file_and_the_fix(tmp_path, capsys, case):
    tree, mutate, extra, fragments = ERRORS[case]
    options = dict(tree)
    root = str(tmp_path / "src")
    if options.pop("version") == 1:
        make_v1(root, **options)
    else:
        make_v2(root, cameras=(0,), frames=1, **options)
    if mutate:
        mutate(root)
    err = failure(capsys, root, tmp_path / "out", *OUT_SIZE, "--allow-size", *(a.format(root=root) for a in extra))
    assert "desc-train prepare vkitti: error:" in err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def test_limit_and_categories_without_a_coco_class(tmp_path, capsys):
    """--limit converts the first frames in name order; the categories of the
    colour tables (of every world and variation) that have no COCO class are
    named, sorted, in a note."""
    src = make_v2(tmp_path / "src", variations=("clone", "fog"), frames=2, cameras=(0,), labels=True)
    for variation, names in (("clone", ("Zeppelin", "Kite", "Airship")), ("fog", ("Dirigible", "Blimp", "Kite"))):
        with open(os.path.join(src, "vkitti_2.0.3_textgt", "Scene01", variation, "colors.txt"), "a") as f:
            f.writelines(f"{name} {n} {n} {n}\n" for n, name in enumerate(names, start=1))
    _, every = converted(src, tmp_path / "all", *OUT_SIZE, "--allow-size")
    capsys.readouterr()
    _, meta = converted(src, tmp_path / "out", *OUT_SIZE, "--allow-size", "--labels", "gt", "--limit", "3")
    assert len(every.names) == 4 and meta.names == sorted(every.names)[:3] and meta.dataset["args"]["limit"] == 3
    note = "note: categories Airship, Blimp, Dirigible, Kite, Zeppelin have no COCO class; labelled ignore (255)\n"
    assert note in capsys.readouterr().out
    converted(src, tmp_path / "tall", "--size", "64x160", "--allow-size", "--limit", "1")
    assert "scales x by 0.1288 and y by 0.1707" in capsys.readouterr().out  # from 1242x375


def test_real_size_is_required_unless_allowed(tmp_path, capsys):
    src = make_v1(tmp_path / "src", frames=1, size=(376, 1241))
    err = failure(capsys, src, tmp_path / "out")
    assert "vkitti_1.3.1_rgb/0001/clone/00000.png: image is 1241x376 but Virtual KITTI frames are 1242x375" in err
    assert "--allow-size" in err
    _, meta = converted(src, tmp_path / "out", "--allow-size")
    assert meta.frame_focal("0001_clone_00000") == pytest.approx(371.2)


def test_colour_tables_parse_and_refuse_edited_files(tmp_path):
    def table(*lines):
        path = tmp_path / "t.txt"
        path.write_text("\n".join(lines) + "\n")
        return str(path)

    path = table("Category(:id) r g b", "", "Sky 90 200 255", "Car:3 200 0 1", "Van:7 1 2 3", "Bogus 0 0 9")
    t = vkitti.colour_table(path)
    assert t.path == path and t.unmapped == ("Bogus",)
    assert t.keys.tolist() == [9, (1 << 16) | (2 << 8) | 3, (90 << 16) | (200 << 8) | 255, (200 << 16) | 1]
    assert t.keys.dtype == np.int64 and t.classes.dtype == np.uint8 and t.instances.dtype == np.int64
    car, sky = coco.class_id("car"), coco.class_id("sky-other-merged")
    assert t.classes.tolist() == [coco.IGNORE % 256, car, sky, car]
    assert t.instances.tolist() == [0, 8, 0, 4] and t.vehicle.tolist() == [False, True, False, True]
    assert vkitti.read_table(table("1 2 3 4"), 4) == ([], [["1", "2", "3", "4"]])  # no header row

    empty = vkitti.colour_table(table("Category r g b"))
    assert empty.keys.shape == (0,) and empty.keys.dtype == np.int64 and empty.vehicle.dtype == bool
    mistakes = {
        ("Category r g b", "Sky 1 2"): "t.txt: a row with 3 fields (Sky 1 2), expected 4",
        ("Category r g b", "Sky 1 2 x"): "t.txt: expected rows 'Category[:trackID] r g b', got Sky 1 2 x",
        ("Category r g b", "Car:3 1 2 3", "Van:3 4 5 6"):
            "t.txt: track 3 is both Car and Van; track ids must be unique in a sequence",
        ("Category r g b", "Sky 1 2 3", "Road 1 2 3"): "t.txt: a colour appears twice",
    }
    for lines, message in mistakes.items():
        with pytest.raises(vkitti.DataError, match=re.escape(message)):
            vkitti.colour_table(table(*lines))
    with pytest.raises(vkitti.DataError, match=re.escape(f"{tmp_path / 'none.txt'}: unreadable")):
        vkitti.read_table(str(tmp_path / "none.txt"), 4)


def test_bbox_pixel_counts_of_one_frame_and_camera(tmp_path):
    header = "frame cameraID trackID left right top bottom number_pixels truncation_ratio occupancy_ratio isMoving"
    rows = [f"{f} {c} {t} 0 10 20 30 {100 * f + 10 * c + t} 0.0 1.0 False" for f in (0, 1) for c in (0, 1)
            for t in (0, 4)]
    path = tmp_path / "bbox.txt"
    path.write_text("\n".join([header, *rows]) + "\n")
    assert vkitti.read_bbox_pixels(str(path), 1, 0) == {0: 100, 4: 104}
    assert vkitti.read_bbox_pixels(str(path), 0, 1) == {0: 10, 4: 14}
    assert vkitti.read_bbox_pixels(str(path), 2, 0) == {}
    path.write_text("frame cameraID trackID left right top bottom pixels\n0 0 1 0 1 2 3 4\n")
    with pytest.raises(vkitti.DataError, match=re.escape(
            f"{path}: the header lacks frame, cameraID, trackID or number_pixels (got frame cameraID trackID left "
            f"right top bottom pixels)")):
        vkitti.read_bbox_pixels(str(path), 0, 0)
    path.write_text("0 0 1 0 1 2 3 4\n")
    with pytest.raises(vkitti.DataError, match=re.escape("(got no header)")):
        vkitti.read_bbox_pixels(str(path), 0, 0)


def test_depth_decoding_units_sky_clamp_and_refusals():
    far, below = vkitti.FAR, vkitti.CONVERTED_BELOW
    raw = np.array([[150, 2000, far], [below, 9000, 0]], np.uint16)
    clamp = vkitti.decode_depth(raw, "d.png", 80.0, "clamp")
    assert clamp.dtype == np.float32
    np.testing.assert_array_equal(clamp, np.float32([[1.5, 20.0, 80.0], [10.0, 80.0, 0.0]]))
    ignore = vkitti.decode_depth(raw, "d.png", 80.0, "ignore")
    np.testing.assert_array_equal(ignore, np.float32([[1.5, 20.0, 0.0], [10.0, 80.0, 0.0]]))  # sky: no depth
    # A maximum of exactly CONVERTED_BELOW centimetres is still raw depth; one less is not.
    assert vkitti.decode_depth(np.uint16([[below]]), "d.png", 80.0, "clamp")[0, 0] == 10.0
    with pytest.raises(vkitti.DataError, match=rf"d\.png: depth maximum is {below - 1} and no pixel reaches"):
        vkitti.decode_depth(np.uint16([[below - 1]]), "d.png", 80.0, "clamp")
    with pytest.raises(vkitti.DataError, match=r"d\.png: depth must be a 16-bit .* got uint8 with 1 channel; "):
        vkitti.decode_depth(np.full((2, 3), 7, np.uint8), "d.png", 80.0, "clamp")
    with pytest.raises(vkitti.DataError, match=r"got uint16 with 3 channels; "):
        vkitti.decode_depth(np.full((2, 3, 3), far, np.uint16), "d.png", 80.0, "clamp")


def test_frame_reader_names_the_unreadable_image(tmp_path):
    rgb, depth = str(tmp_path / "rgb.png"), str(tmp_path / "depth.png")
    job = vkitti.Job(name="0001_clone_00000", root=str(tmp_path), rgb=rgb, depth=depth, K=(725.0, 725.0, 620.5, 187.0),
                     max_depth=80.0, sky="clamp", allow_size=True)
    with pytest.raises(vkitti.DataError, match=r"rgb\.png: missing or not a readable image \(RGB image\)"):
        vkitti.read_frame(job)
    cv2.imwrite(rgb, np.zeros((4, 6, 3), np.uint8))
    with pytest.raises(vkitti.DataError, match=r"depth\.png: missing or not a readable image \(depth\)"):
        vkitti.read_frame(job)
    cv2.imwrite(depth, np.full((4, 6), vkitti.FAR, np.uint16))
    frame = vkitti.read_frame(job)
    assert frame.name == "0001_clone_00000" and frame.src == "rgb.png" and frame.rgb.shape == (4, 6, 3)
    assert (frame.depth == 80.0).all()


def _label_job(tmp_path, bgr, instances=None):
    labels = str(tmp_path / "classgt.png")
    cv2.imwrite(labels, bgr)
    key = vkitti._colour_key
    table = vkitti.Colours(path="colors.txt", keys=np.array([key(10, 20, 30), key(200, 0, 0)]),
                           classes=np.array([3, 5], np.uint8), instances=np.array([0, 0]),
                           vehicle=np.array([False, True]), unmapped=())
    return vkitti.Job(name="f", root=str(tmp_path), rgb="", depth="", K=(1.0, 1.0, 0.0, 0.0), max_depth=80.0,
                      sky="clamp", allow_size=True, labels=labels, colours=table, instances=instances)


def test_label_colours_decode_to_classes_and_vehicle_tracks(tmp_path):
    rgb = np.array([[[10, 20, 30], [200, 0, 0], [200, 0, 0]], [[10, 20, 30], [10, 20, 30], [200, 0, 0]]], np.uint8)
    semantic, instance = vkitti.decode_labels(_label_job(tmp_path, rgb[..., ::-1]))
    np.testing.assert_array_equal(semantic, [[3, 5, 5], [3, 3, 5]])
    assert (instance == 0).all()
    tracks = np.array([[1, 2, 3], [4, 5, 6]], np.uint8)
    write_palette_png(str(tmp_path / "instancegt.png"), tracks)
    semantic, instance = vkitti.decode_labels(_label_job(tmp_path, rgb[..., ::-1], str(tmp_path / "instancegt.png")))
    np.testing.assert_array_equal(instance, [[0, 2, 3], [0, 0, 6]])  # tracks on vehicle colours only
    write_palette_png(str(tmp_path / "instancegt.png"), tracks[:1])
    with pytest.raises(vkitti.DataError, match=r"instancegt\.png: 3x1 but .*classgt\.png is 3x2$"):
        vkitti.decode_labels(_label_job(tmp_path, rgb[..., ::-1], str(tmp_path / "instancegt.png")))


def test_label_colours_not_in_the_table_are_counted_and_the_first_named(tmp_path):
    # (1, 2, 3) sorts before every key of the table, (255, 255, 255) after.
    rgb = np.array([[[10, 20, 30], [1, 2, 3], [255, 255, 255]], [[255, 255, 255], [10, 20, 30], [1, 2, 3]]],
                   np.uint8)
    with pytest.raises(vkitti.DataError, match=r"classgt\.png: 4 pixels have colours not in colors\.txt "
                                               r"\(first: 1 2 3\); the label image and its colour table"):
        vkitti.decode_labels(_label_job(tmp_path, rgb[..., ::-1]))
    with pytest.raises(vkitti.DataError, match=r"2 pixels have colours not in colors\.txt \(first: 255 255 255\)"):
        vkitti.decode_labels(_label_job(tmp_path, _only_white(rgb)[..., ::-1]))
    job = dataclasses.replace(_label_job(tmp_path, rgb), labels=str(tmp_path / "nothing.png"))
    with pytest.raises(vkitti.DataError, match=r"nothing\.png: missing or not a readable image \(class colours\)"):
        vkitti.decode_labels(job)


def test_label_colours_with_an_empty_or_one_entry_table(tmp_path):
    rgb = np.full((2, 3, 3), (10, 20, 30), np.uint8)
    job = _label_job(tmp_path, rgb[..., ::-1])
    first = {field: getattr(job.colours, field)[:1] for field in ("keys", "classes", "instances", "vehicle")}
    semantic, _ = vkitti.decode_labels(dataclasses.replace(job, colours=dataclasses.replace(job.colours, **first)))
    assert (semantic == 3).all()
    rgb[0, 0] = (255, 255, 255)  # after the one key
    job = dataclasses.replace(_label_job(tmp_path, rgb[..., ::-1]), colours=dataclasses.replace(job.colours, **first))
    with pytest.raises(vkitti.DataError, match=r"1 pixels have colours not in colors\.txt \(first: 255 255 255\)"):
        vkitti.decode_labels(job)
    empty = {field: value[:0] for field, value in first.items()}
    with pytest.raises(vkitti.DataError, match=r"classgt\.png: 6 pixels have colours not in colors\.txt "
                                               r"\(first: 255 255 255\)"):
        vkitti.decode_labels(dataclasses.replace(job, colours=dataclasses.replace(job.colours, **empty)))


def _only_white(rgb):
    """The frame with (1, 2, 3) repainted in a known colour: only the white pixels are unknown."""
    out = rgb.copy()
    out[(rgb == [1, 2, 3]).all(-1)] = [10, 20, 30]
    return out


def test_recorded_arguments_are_those_that_decide_the_content(tmp_path):
    args = argparse.Namespace(run=print, command="prepare", dataset="vkitti", workers=4, overwrite=True, limit=3,
                              root="rel/root", out=str(tmp_path), size=(48, 160), list="l.txt", exclude_list=None,
                              version="2.0.3", sky="clamp")
    assert vkitti.conversion_args(args) == dict(root=os.path.abspath("rel/root"), out=str(tmp_path), size=[48, 160],
                                                list=os.path.abspath("l.txt"), exclude_list=None, version="2.0.3",
                                                sky="clamp")
    args.size, args.list, args.exclude_list = None, None, "x.txt"
    recorded = vkitti.conversion_args(args)
    assert recorded["size"] == "native" and recorded["list"] is None
    assert recorded["exclude_list"] == os.path.abspath("x.txt")


def test_text_files_are_looked_for_in_textgt_first_then_the_other_tops(tmp_path):
    root = str(tmp_path)
    text, rgb = os.path.join(root, "vkitti_2.0.3_textgt"), os.path.join(root, "vkitti_2.0.3_rgb")
    for top in (text, rgb):
        os.makedirs(os.path.join(top, "Scene01", "clone"))
    write_text(os.path.join(rgb, "Scene01", "clone", "intrinsic.txt"), ["in rgb"])
    source = vkitti.Source(vkitti.Tree(root), "2.0.3", "archives", {"rgb": rgb, "text": text, "depth": None})
    found = os.path.join(rgb, "Scene01", "clone", "intrinsic.txt")
    assert source.text_file("scene01", "CLONE", "intrinsic.txt") == (found, found)  # any case, any top
    write_text(os.path.join(text, "Scene01", "clone", "intrinsic.txt"), ["in textgt"])
    source = vkitti.Source(vkitti.Tree(root), "2.0.3", "archives", {"rgb": rgb, "text": text, "depth": None})
    found = os.path.join(text, "Scene01", "clone", "intrinsic.txt")
    assert source.text_file("Scene01", "clone", "intrinsic.txt") == (found, found)  # textgt wins
    # Missing: where it belongs, in textgt, or where textgt would be extracted.
    assert source.text_file("Scene01", "clone", "bbox.txt") == (None, os.path.join(text, "Scene01", "clone",
                                                                                    "bbox.txt"))
    bare = vkitti.Source(vkitti.Tree(root), "2.0.3", "archives", {"rgb": None, "text": None})
    assert bare.text_file("Scene02", "fog", "bbox.txt") == (
        None, os.path.join(root, "vkitti_2.0.3_textgt", "Scene02", "fog", "bbox.txt"))


def test_release_detection_names_what_it_looked_for(tmp_path):
    with pytest.raises(vkitti.DataError, match=r"nowhere: no such folder \(--root is the folder the Virtual KITTI "
                                               r"archives were extracted in\)$"):
        vkitti.detect(str(tmp_path / "nowhere"), "auto")
    with pytest.raises(vkitti.DataError, match=r": no Virtual KITTI found; expected vkitti_1\.3\.1_rgb/ \+ "
                                               r"vkitti_1\.3\.1_depthgt/ \(1\.3\.1 archives\), rgb/<world>/"):
        vkitti.detect(str(tmp_path), "auto")
    v1 = make_v1(tmp_path / "one", frames=1)
    assert vkitti.detect(str(v1), "auto").version == "1.3.1" == vkitti.detect(str(v1), "1.3.1").version
    with pytest.raises(vkitti.DataError, match=r"one: --version 2\.0\.3 but no vkitti_2\.0\.3_rgb/ or "
                                               r"Scene01/clone/frames/ there; check --root$"):
        vkitti.detect(str(v1), "2.0.3")
    v2 = make_v2(tmp_path / "two", cameras=(0,), frames=1, merged=True)
    assert vkitti.detect(str(v2), "2.0.3").layout == "merged"
    with pytest.raises(vkitti.DataError, match=r"two: --version 1\.3\.1 but no vkitti_1\.3\.1_rgb/ or rgb/<world>/ "
                                               r"there; check --root$"):
        vkitti.detect(str(v2), "1.3.1")
    make_v1(tmp_path / "two", frames=1)
    with pytest.raises(vkitti.DataError, match=r"two holds Virtual KITTI 1\.3\.1 \(vkitti_1\.3\.1_rgb/\) and 2\.0\.3 "
                                               r"\(Scene\*/ folders\): pass --version 1\.3\.1 or --version 2\.0\.3$"):
        vkitti.detect(str(v2), "auto")


def test_version_may_be_named_and_worlds_listed(tmp_path):
    """--version auto, 1.3.1 or 2.0.3 (the release found must match); --worlds takes several;
    --sky is clamp or ignore; --focal replaces the release's focal length (at its native size)."""
    v1 = make_v1(tmp_path / "v1", worlds=("0001", "0002", "0006"))
    _, meta = converted(v1, tmp_path / "a", *OUT_SIZE, "--allow-size", "--version", "auto", "--worlds", "0001", "0006")
    assert sorted({n.split("_")[0] for n in meta.names}) == ["0001", "0006"]
    _, meta = converted(v1, tmp_path / "b", *OUT_SIZE, "--allow-size", "--version", "1.3.1", "--worlds", "0002",
                        "--sky", "clamp", "--focal", "700")
    assert meta.dataset["version"] == "1.3.1" and {n.split("_")[0] for n in meta.names} == {"0002"}
    np.testing.assert_allclose(meta.frames["0002_clone_00000"]["K"][:2], [700 * 160 / 1242, 700 * 48 / 375], rtol=1e-6)
    for wrong in (["--sky", "black"], ["--camera", "2"], ["--labels", "all"]):
        assert prepare(v1, tmp_path / "d", *wrong) == 1
    v2 = make_v2(tmp_path / "v2", cameras=(0,))
    _, meta = converted(v2, tmp_path / "c", *OUT_SIZE, "--allow-size", "--version", "2.0.3", "--camera", "0",
                        "--labels", "none")
    assert meta.dataset["version"] == "2.0.3"


@pytest.mark.parametrize("row, problem", [
    ("0 0 nan 700.0 600.0 180.0", "must be finite, got fx nan"),
    ("0 0 700.0 0 600.0 180.0", "focal lengths fx 700.0 and fy 0.0 must be above 0"),
    ("0 0 -700.0 700.0 600.0 180.0", "focal lengths fx -700.0 and fy 700.0 must be above 0"),
    ("0 0 700.0 700.0 inf 180.0", "must be finite, got cx inf"),
])
def test_intrinsics_that_are_not_finite_and_positive_name_intrinsic_txt(tmp_path, capsys, row, problem):
    """A focal of 0, below 0 or NaN in intrinsic.txt stops the conversion naming the
    file and the row, and no meta.json is written (NaN is not even JSON)."""
    src = make_v2(tmp_path / "src", cameras=(0,), frames=1)
    path = os.path.join(src, "vkitti_2.0.3_textgt", "Scene01", "clone", "intrinsic.txt")
    write_text(path, ["frame cameraID K[0,0] K[1,1] K[0,2] K[1,2]", row])
    err = failure(capsys, src, tmp_path / "out", *OUT_SIZE, "--allow-size")
    assert err == f"desc-train prepare vkitti: error: {path}: frame 0 camera 0: intrinsics {problem}\n"
    assert not os.path.exists(tmp_path / "out" / "source_train" / "meta.json")
