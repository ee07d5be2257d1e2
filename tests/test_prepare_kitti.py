"""desc-train prepare kitti on a tiny KITTI raw tree written in the real format:
the real 2011_09_26 calibration and a synthetic 1226x370 date, velodyne scans
built so that chosen pixels receive chosen depths, lists in each format, the
Eigen ground-truth npz, and the mistakes users make with these files."""
import hashlib
import os
import re

import cv2
import numpy as np
import pytest

from desc_train.cli import main as cli_main
from desc_train.data import coco
from desc_train.data.layout import DataError, read_gt, read_meta, read_sample
from desc_train.data.prepare import kitti
from desc_train.data.prepare.kitti_calib import (load_camera, load_velo_to_cam, project_depth, read_calib_file,
                                                 velo_to_image)

REAL_DATE = "2011_09_26"  # public calibration values of that day
CAM_TO_CAM = {
    REAL_DATE: """calib_time: 09-Jan-2012 13:57:47
corner_dist: 9.950000e-02
S_rect_00: 1.242000e+03 3.750000e+02
R_rect_00: 9.999239e-01 9.837760e-03 -7.445048e-03 -9.869795e-03 9.999421e-01 -4.278459e-03 7.402527e-03 4.351614e-03 9.999631e-01
S_02: 1.392000e+03 5.120000e+02
S_rect_02: 1.242000e+03 3.750000e+02
P_rect_02: 7.215377e+02 0.000000e+00 6.095593e+02 4.485728e+01 0.000000e+00 7.215377e+02 1.728540e+02 2.163791e-01 0.000000e+00 0.000000e+00 1.000000e+00 2.745884e-03
S_rect_03: 1.242000e+03 3.750000e+02
P_rect_03: 7.215377e+02 0.000000e+00 6.095593e+02 -3.395242e+02 0.000000e+00 7.215377e+02 1.728540e+02 2.199936e+00 0.000000e+00 0.000000e+00 1.000000e+00 2.729905e-03
""",
    "2011_09_30": """calib_time: 01-Jan-2012 00:00:00
S_rect_00: 1.226000e+03 3.700000e+02
R_rect_00: 1 0 0 0 1 0 0 0 1
S_rect_02: 1.226000e+03 3.700000e+02
P_rect_02: 7.0e+02 0 6.0e+02 4.6e+01 0 7.05e+02 1.8e+02 0 0 0 1 0
S_rect_03: 1.226000e+03 3.700000e+02
P_rect_03: 7.0e+02 0 6.0e+02 -3.3e+02 0 7.05e+02 1.8e+02 0 0 0 1 0
""",  # synthetic: a second image size makes the ground truth ragged
}
VELO_TO_CAM = """calib_time: 15-Mar-2012 11:37:16
R: 7.533745e-03 -9.999714e-01 -6.166020e-04 1.480249e-02 7.280733e-04 -9.998902e-01 9.998621e-01 7.523790e-03 1.480755e-02
T: -4.069766e-03 -7.631618e-02 -2.717806e-01
delta_f: 0.000000e+00 0.000000e+00
delta_c: 0.000000e+00 0.000000e+00
"""
SIZES = {REAL_DATE: (375, 1242), "2011_09_30": (370, 1226)}
A = (REAL_DATE, "2011_09_26_drive_0002_sync", 69)
B = (REAL_DATE, "2011_09_26_drive_0002_sync", 70)
C = ("2011_09_30", "2011_09_30_drive_0016_sync", 5)
FRAMES = [A, B, C]
COLOUR = {A: (10, 120, 200), B: (200, 30, 60), C: (90, 90, 20)}  # RGB
CHOSEN = {(200, 600): 8.0, (300, 100): 20.0, (180, 1200): 30.0}  # (row, col) -> velodyne x of frame A


def name(frame, side="l"):
    return f"{frame[1]}_{frame[2]:010d}_{side}"


def projection(root, date):
    return velo_to_image(load_camera(str(root), date), load_velo_to_cam(str(root), date))


def point_on_pixel(P, row, col, depth, kind="velodyne_x"):
    """The velodyne point that P projects onto (row, col) (0-based, after the
    devkit's minus one) with the given velodyne x or camera z."""
    ray = np.array([col + 1.0, row + 1.0, 1.0])
    along, offset = np.linalg.solve(P[:, :3], ray), np.linalg.solve(P[:, :3], -P[:, 3])
    scale = (depth - offset[0]) / along[0] if kind == "velodyne_x" else depth
    return along * scale + offset


def scan_a(P, size):
    """Frame A's scan: the chosen pixels, a farther point on one of them, a point
    behind the sensor (x < 0) on another, and points just off the image."""
    H, W = size
    pts = [point_on_pixel(P, r, c, d) for (r, c), d in CHOSEN.items()]
    pts.append(point_on_pixel(P, 200, 600, 12.0))
    pts.append(point_on_pixel(P, 300, 100, -20.0, "camera_z"))
    pts += [point_on_pixel(P, r, c, 10.0) for r, c in [(100, -1), (100, W), (100, W + 2), (H, 50), (-1, 50)]]
    return np.array([[*p, 0.5] for p in pts], np.float32)


def scan_random(P, seed):
    """Points in front of the car, with repeats along the rays of a tenth of them
    (several points on one pixel), some behind the sensor (x < 0) and some between
    the sensor and the camera plane (x >= 0 but camera z < 0)."""
    rng = np.random.default_rng(seed)
    n = 3000
    pts = np.stack([rng.uniform(2, 70, n), rng.uniform(-25, 25, n), rng.uniform(-2.5, 1.5, n)], 1)
    centre = -np.linalg.solve(P[:, :3], P[:, 3])
    farther = centre + rng.uniform(1.05, 1.6, (n // 10, 1)) * (pts[: n // 10] - centre)
    behind = pts[:200] * [-1, 1, 1]
    near = np.stack([rng.uniform(0, 0.25, 200), rng.uniform(-0.05, 0.05, 200), rng.uniform(-0.05, 0.05, 200)], 1)
    xyz = np.concatenate([pts, farther, behind, near])
    return np.concatenate([xyz, rng.uniform(0, 1, (len(xyz), 1))], 1).astype(np.float32)


def published_loop(points, P, size, kind="velodyne_x"):
    """The Eigen export as published, point by point: the last write wins on a
    pixel, then every group of points sharing the key row * (W - 1) + col - 1 puts
    its minimum on the pixel of its first point, and negative depths become 0."""
    H, W = size
    depth = np.zeros(size)
    groups = {}
    for x, y, z, _ in points.astype(np.float64):
        if x < 0:
            continue
        u, v, w = P @ [x, y, z, 1.0]
        col, row = np.round(u / w) - 1, np.round(v / w) - 1
        if not (0 <= col < W and 0 <= row < H):
            continue
        d = x if kind == "velodyne_x" else w
        depth[int(row), int(col)] = d
        groups.setdefault(row * (W - 1) + col - 1, []).append((int(row), int(col), d))
    for members in groups.values():
        if len(members) > 1:
            depth[members[0][0], members[0][1]] = min(m[2] for m in members)
    depth[depth < 0] = 0
    return depth.astype(np.float32), sum(len(m) > 1 for m in groups.values())


def make_tree(root, frames=FRAMES, ext="png", sizes=None, scans=True):
    """A KITTI raw tree: calibration of each date, images (left and right) and scans."""
    for date in {f[0] for f in frames}:
        os.makedirs(root / date, exist_ok=True)
        (root / date / "calib_cam_to_cam.txt").write_text(CAM_TO_CAM[date])
        (root / date / "calib_velo_to_cam.txt").write_text(VELO_TO_CAM)
    for i, frame in enumerate(frames):
        date, drive, index = frame
        H, W = (sizes or SIZES)[date]
        for cam, colour in ((2, COLOUR[frame]), (3, COLOUR[frame][::-1])):
            folder = root / date / drive / f"image_0{cam}" / "data"
            os.makedirs(folder, exist_ok=True)
            bgr = np.empty((H, W, 3), np.uint8)
            bgr[:] = colour[::-1]
            cv2.imwrite(str(folder / f"{index:010d}.{ext}"), bgr)
        if scans:
            folder = root / date / drive / "velodyne_points" / "data"
            os.makedirs(folder, exist_ok=True)
            P = projection(root, date)
            points = scan_a(P, SIZES[date]) if frame == A else scan_random(P, i)
            points.tofile(folder / f"{index:010d}.bin")
    return root


def scan(root, frame):
    date, drive, index = frame
    path = root / date / drive / "velodyne_points" / "data" / f"{index:010d}.bin"
    return np.fromfile(path, np.float32).reshape(-1, 4)


def monodepth2_list(path, frames=FRAMES, sides="l"):
    path.write_text("".join(f"{d}/{drive} {i} {s}\n" for d, drive, i in frames for s in sides))
    return path


def desc_list(path, frames=FRAMES, ext="png"):
    path.write_text("".join(f"{d}/{drive}/image_02/data/{i:010d}.{ext} {d}/{drive}/image_03/data/{i:010d}.{ext} {d} "
                            f"{d}/{drive}/velodyne_points/data/{i:010d}.bin\n" for d, drive, i in frames))
    return path


def prepare(root, out, lst, *extra, split="target_test"):
    return cli_main(["prepare", "kitti", "--root", str(root), "--out", str(out), "--split", split, "--list", str(lst),
                     "--workers", "1", *extra])


@pytest.fixture
def tree(tmp_path):
    return make_tree(tmp_path / "raw")


# ---------------------------------------------------------------- calibration and projection
def test_calibration_file_keeps_text_and_reads_the_camera(tree):
    calib = read_calib_file(str(tree / REAL_DATE / "calib_cam_to_cam.txt"))
    assert calib["calib_time"] == "09-Jan-2012 13:57:47"  # split at the first ':' only, kept as text
    assert calib["P_rect_02"].shape == (12,) and calib["P_rect_02"][3] == pytest.approx(44.85728)
    cam = load_camera(str(tree), REAL_DATE)
    assert cam.size == (375, 1242)
    np.testing.assert_allclose(cam.K, [721.5377, 721.5377, 609.5593, 172.854])
    assert cam.baseline == pytest.approx(0.532725, abs=1e-6)
    right = load_camera(str(tree), REAL_DATE, 3)
    assert right.K[2] == pytest.approx(609.5593) and right.P_rect[0, 3] == pytest.approx(-339.5242)


def test_calibration_lines_without_a_key_are_passed_over(tmp_path):
    path = tmp_path / "calib.txt"
    path.write_text("a comment, no key\n\nK_00: 1 2 3\nnote\nS_00: 1.392e+03 5.12e+02\n")
    calib = read_calib_file(str(path))
    assert sorted(calib) == ["K_00", "S_00"] and calib["S_00"].tolist() == [1392.0, 512.0]


@pytest.mark.parametrize("line, text", [
    ("T: 1 2\n", "T must hold 3 numbers, got array([1., 2.])"),
    ("T: left of the car\n", "T must hold 3 numbers, got 'left of the car'"),
    ("", "no T line"),
])
def test_calibration_values_of_the_wrong_count_or_kind_are_refused(tree, line, text):
    path = tree / REAL_DATE / "calib_velo_to_cam.txt"
    kept = [k for k in path.read_text().splitlines(keepends=True) if not k.startswith("T:")]
    path.write_text("".join(kept) + line)
    with pytest.raises(DataError) as err:
        load_velo_to_cam(str(tree), REAL_DATE)
    assert str(err.value).startswith(f"{path}: ") and text in str(err.value)


def test_projection_puts_chosen_depths_on_chosen_pixels(tree):
    P, size = projection(tree, REAL_DATE), SIZES[REAL_DATE]
    points = scan(tree, A)
    vx = project_depth(points, P, size, "velodyne_x")
    cz = project_depth(points, P, size, "camera_z")
    # the farther point on (200, 600), the point behind the sensor on (300, 100) and those
    # just off the image (which would wrap onto neighbouring rows) leave no trace
    assert {tuple(p) for p in np.argwhere(vx > 0)} == set(CHOSEN)
    assert {tuple(p) for p in np.argwhere(cz > 0)} == set(CHOSEN)
    for (r, c), d in CHOSEN.items():
        assert vx[r, c] == pytest.approx(d, abs=1e-5)
        expected_z = (P @ [*point_on_pixel(P, r, c, d), 1.0])[2]
        assert cz[r, c] == pytest.approx(expected_z, abs=1e-4)
        assert 0.25 < vx[r, c] - cz[r, c] < 0.35  # velodyne x is ahead of the camera by ~0.27 m


@pytest.mark.parametrize("kind", ["velodyne_x", "camera_z"])
def test_projection_equals_the_published_loop_inside_the_border_columns(tree, kind):
    for frame in (B, C):
        P, size = projection(tree, frame[0]), SIZES[frame[0]]
        expected, repeated = published_loop(scan(tree, frame), P, size, kind)
        got = project_depth(scan(tree, frame), P, size, kind)
        assert repeated > 50 and (expected > 0).sum() > 1000
        np.testing.assert_array_equal(got[:, 1:-1], expected[:, 1:-1])


# ---------------------------------------------------------------- the converter
def test_velodyne_ground_truth_and_split_metadata(tree, tmp_path):
    assert prepare(tree, tmp_path / "out", monodepth2_list(tmp_path / "test.txt"), "--gt", "velodyne") == 0
    split = tmp_path / "out" / "target_test"
    meta = read_meta(str(split))
    assert meta.names == sorted(name(f) for f in FRAMES)
    listed = "".join(f"{d}/{drive} {i:010d}\n" for d, drive, i in FRAMES)
    assert meta.eval == dict(gt_kind="velodyne_x", crop="garg", caps=[[0.001, 80], [1, 50]], list="test.txt",
                             list_sha256=hashlib.sha256(listed.encode()).hexdigest())
    assert (meta.domain, meta.has_depth, meta.has_labels, meta.instance_classes) == ("target", False, False, [])
    assert meta.classes == coco.CLASSES and meta.image_size == [192, 640]
    assert meta.baseline == pytest.approx(0.532725, abs=1e-6)  # the median frame is of 2011_09_26
    rec = meta.frames[name(A)]
    assert rec["focal"] == pytest.approx(721.5377 * 192 / 375)  # fy at the stored size
    np.testing.assert_allclose(rec["K"], [721.5377 * 640 / 1242, 721.5377 * 192 / 375, 609.5593 * 640 / 1242,
                                          172.854 * 192 / 375], rtol=1e-6)
    assert rec["orig_size"] == [375, 1242] and meta.frames[name(C)]["orig_size"] == [370, 1226]
    assert rec["src"] == "2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000069.png"
    assert not os.path.exists(split / "depth")
    for frame in FRAMES:
        P, size = projection(tree, frame[0]), SIZES[frame[0]]
        gt = read_gt(str(split), name(frame))
        assert gt.shape == size
        np.testing.assert_array_equal(gt[:, 1:-1], published_loop(scan(tree, frame), P, size)[0][:, 1:-1])
        sample = read_sample(str(split), name(frame), meta)
        assert sample["rgb"].shape == (192, 640, 3)
        np.testing.assert_array_equal(sample["rgb"][96, 320], COLOUR[frame])
        assert not sample["depth"].any() and (sample["semantic"] == -1).all()
    assert read_gt(str(split), name(A))[200, 600] == pytest.approx(8.0)

    assert prepare(tree, tmp_path / "out", tmp_path / "test.txt", "--gt", "velodyne", "--gt-depth", "camera_z",
                   "--overwrite") == 0
    meta = read_meta(str(split))
    assert meta.eval["gt_kind"] == "camera_z"
    z = read_gt(str(split), name(A))
    assert 0.25 < 8.0 - z[200, 600] < 0.35


def test_right_frames_take_the_right_camera_s_calibration(tree, tmp_path):
    """A list's right frames (side r, image_03) are projected with camera 3's
    P_rect: their ground truth is the scan seen from the right camera."""
    assert prepare(tree, tmp_path / "out", monodepth2_list(tmp_path / "test.txt", [A], sides="r"),
                   "--side", "r", "--gt", "velodyne") == 0
    split = str(tmp_path / "out" / "target_test")
    P = velo_to_image(load_camera(str(tree), A[0], 3), load_velo_to_cam(str(tree), A[0]))
    gt = read_gt(split, name(A, "r"))
    np.testing.assert_array_equal(gt[:, 1:-1], published_loop(scan(tree, A), P, SIZES[A[0]])[0][:, 1:-1])


def test_target_train_without_ground_truth_reads_zero_depth(tree, tmp_path):
    assert prepare(tree, tmp_path / "out", monodepth2_list(tmp_path / "train.txt"), split="target_train") == 0
    split = str(tmp_path / "out" / "target_train")
    meta = read_meta(split)
    assert meta.has_depth is False and meta.eval is None and meta.has_labels is False
    assert not os.path.exists(os.path.join(split, "gt")) and not os.path.exists(os.path.join(split, "depth"))
    sample = read_sample(split, name(C), meta)
    assert sample["depth"].shape == (192, 640) and not sample["depth"].any()
    assert read_gt(split, name(C)) is None
    assert meta.frames[name(C)]["focal"] == pytest.approx(705 * 192 / 370)  # fy, not fx


def reference_npz(root, path, order):
    maps = [published_loop(scan(root, f), projection(root, f[0]), SIZES[f[0]])[0] for f in order]
    data = np.empty(len(maps), dtype=object)  # ragged: one size per date
    data[:] = maps
    np.savez_compressed(path, data=data)
    return maps


def test_npz_entries_are_stored_in_list_order(tree, tmp_path):
    maps = reference_npz(tree, tmp_path / "gt_depths.npz", FRAMES)
    lst = desc_list(tmp_path / "test.txt")
    assert prepare(tree, tmp_path / "out", lst, "--gt-npz", str(tmp_path / "gt_depths.npz")) == 0
    split = str(tmp_path / "out" / "target_test")
    meta = read_meta(split)
    assert meta.eval["gt_kind"] == "velodyne_x" and meta.dataset["list_format"] == "desc"
    ds = meta.dataset
    assert (ds["name"], ds["converter"], ds["list"], ds["list_lines"]) == ("KITTI raw", "desc-train prepare kitti",
                                                                          "test.txt", 3)
    assert ds["root"] == os.path.abspath(tree) and ds["args"]["root"] == os.path.abspath(tree)
    assert ds["args"]["list"] == os.path.abspath(lst) and ds["args"]["size"] == [192, 640]
    assert ds["args"]["gt_npz"] == os.path.abspath(tmp_path / "gt_depths.npz")
    assert not {"run", "workers", "limit", "overwrite"} & set(ds["args"])
    for date in {f[0] for f in FRAMES}:  # the camera of each date
        cam = load_camera(str(tree), date)
        assert ds["calibration"][f"{date} image_02"] == dict(size=list(cam.size), K=list(cam.K),
                                                               baseline=cam.baseline)
    for frame, expected in zip(FRAMES, maps):
        np.testing.assert_array_equal(read_gt(split, name(frame)), expected)
        assert meta.frames[name(frame)]["list_index"] == FRAMES.index(frame)


@pytest.mark.parametrize("order,texts", [
    ([C, B, A], ["entry 0 is 1226x370", "list line 1", "375", "does not follow this list's order"]),
    ([B, A, C], ["entry 0 is not the velodyne_x projection", "0000000069.bin", "does not follow"]),
    ([A, B], ["holds 2 maps but the list has 3 lines"]),
])
def test_npz_of_another_order_or_length_is_refused(tree, tmp_path, capsys, order, texts):
    reference_npz(tree, tmp_path / "gt_depths.npz", order)
    code = prepare(tree, tmp_path / "out", monodepth2_list(tmp_path / "test.txt"), "--gt-npz",
                   str(tmp_path / "gt_depths.npz"))
    err = capsys.readouterr().err
    assert code == 1 and all(t in err for t in texts), err
    assert not os.path.exists(tmp_path / "out" / "target_test" / "meta.json")


def test_list_formats_give_the_same_split(tree, tmp_path, capsys):
    metas = {}
    lists = {"monodepth2": monodepth2_list(tmp_path / "m.txt", sides="lr"), "desc": desc_list(tmp_path / "d.txt")}
    (tmp_path / "t.txt").write_text("".join(" ".join(line.split()[:2]) + "\n"
                                            for line in lists["desc"].read_text().splitlines()))
    lists["t2net"] = tmp_path / "t.txt"
    for fmt, lst in lists.items():
        assert prepare(tree, tmp_path / fmt, lst) == 0
        metas[fmt] = read_meta(str(tmp_path / fmt / "target_test"))
        assert metas[fmt].dataset["list_format"] == fmt
        if fmt == "monodepth2":
            out = capsys.readouterr().out
            assert "3 of 6 lines with side r" in out and "--side lr keeps them" in out
    assert metas["desc"].frames == metas["t2net"].frames
    lines = {n: r.pop("list_index") for n, r in metas["monodepth2"].frames.items()}
    assert lines == {name(f): 2 * i for i, f in enumerate(FRAMES)}  # the l line of each l, r pair
    assert metas["monodepth2"].frames == {n: {k: v for k, v in r.items() if k != "list_index"}
                                          for n, r in metas["desc"].frames.items()}
    # one hash per list of frames, whatever the format: sha256 of "<date>/<drive> <frame:010d>" lines
    frames = "".join(f"{d}/{drive} {i:010d}\n" for d, drive, i in FRAMES)
    assert {m.dataset["list_sha256"] for m in metas.values()} == {hashlib.sha256(frames.encode()).hexdigest()}
    assert prepare(tree, tmp_path / "both", lists["monodepth2"], "--side", "lr") == 0
    both = read_meta(str(tmp_path / "both" / "target_test"))
    assert sorted(both.frames) == sorted([name(f, s) for f in FRAMES for s in "lr"])
    assert both.frames[name(A, "r")]["src"].endswith("image_03/data/0000000069.png")
    rgb = read_sample(str(tmp_path / "both" / "target_test"), name(A, "r"), both)["rgb"]
    np.testing.assert_array_equal(rgb[0, 0], COLOUR[A][::-1])
    assert prepare(tree, tmp_path / "right", lists["monodepth2"], "--side", "r") == 0
    assert sorted(read_meta(str(tmp_path / "right" / "target_test")).frames) == sorted(name(f, "r") for f in FRAMES)
    for fmt, lst in lists.items():  # each format may also be named
        assert prepare(tree, tmp_path / f"named_{fmt}", lst, "--list-format", fmt) == 0
    assert prepare(tree, tmp_path / "defaults_named", lists["desc"], "--ext", "auto", "--gt", "none",
                   "--list-format", "auto", "--side", "l") == 0


def test_published_list_is_recognised_by_its_hash(tree, tmp_path, monkeypatch):
    lst = monodepth2_list(tmp_path / "test.txt")
    assert prepare(tree, tmp_path / "plain", lst) == 0
    meta = read_meta(str(tmp_path / "plain" / "target_test"))
    assert meta.dataset["list_name"] is None
    monkeypatch.setattr(kitti, "IN_ORDER", {meta.dataset["list_sha256"]: "Eigen test"})
    assert prepare(tree, tmp_path / "known", lst) == 0
    assert read_meta(str(tmp_path / "known" / "target_test")).dataset["list_name"] == "Eigen test"
    reordered = monodepth2_list(tmp_path / "other.txt", [B, A, C])  # the test list's hash is of its order
    assert prepare(tree, tmp_path / "reordered", reordered) == 0
    assert read_meta(str(tmp_path / "reordered" / "target_test")).dataset["list_name"] is None
    # Training lists are known by the hash of their sorted frames, in whatever order they come.
    monkeypatch.setattr(kitti, "SORTED", {meta.dataset["list_sha256_sorted"]: "Eigen train"})
    assert prepare(tree, tmp_path / "sorted", reordered) == 0
    assert read_meta(str(tmp_path / "sorted" / "target_test")).dataset["list_name"] == "Eigen train"


def test_limit_converts_the_first_frames_of_the_list(tree, tmp_path):
    assert prepare(tree, tmp_path / "out", monodepth2_list(tmp_path / "test.txt"), "--limit", "2") == 0
    assert sorted(read_meta(str(tmp_path / "out" / "target_test")).frames) == sorted([name(A), name(B)])


def test_lists_of_another_format_empty_or_unreadable_are_named(tree, tmp_path, capsys):
    lst = monodepth2_list(tmp_path / "test.txt")
    assert prepare(tree, tmp_path / "out", lst, "--list-format", "desc") == 1
    assert f"{lst} line 1: 3 columns, but the list is in desc format (4 columns)" in capsys.readouterr().err
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    assert prepare(tree, tmp_path / "out", empty) == 1 and f"{empty}: the list is empty" in capsys.readouterr().err
    assert prepare(tree, tmp_path / "out", tmp_path / "none.txt") == 1
    assert f"{tmp_path / 'none.txt'}: unreadable list: " in capsys.readouterr().err


def test_a_size_of_another_aspect_is_noted(tree, tmp_path, capsys):
    assert prepare(tree, tmp_path / "out", monodepth2_list(tmp_path / "test.txt", [A]), "--size", "192x512") == 0
    assert "scales x by 0.4122 and y by 0.5120" in capsys.readouterr().out  # from 1242x375


def test_interrupted_run_restarts_when_its_list_changed(tree, tmp_path, capsys):
    """A rerun resumes an interrupted split only with the same list content: the
    list's hash is one of the arguments compared, not its path alone."""
    date, drive, index = FRAMES[-1]
    image = tree / date / drive / "image_02" / "data" / f"{index:010d}.png"
    good = image.read_bytes()
    image.write_bytes(b"not a png")
    lst = monodepth2_list(tmp_path / "test.txt")
    assert prepare(tree, tmp_path / "out", lst) == 1
    image.write_bytes(good)
    monodepth2_list(lst, FRAMES[::-1])
    capsys.readouterr()
    assert prepare(tree, tmp_path / "out", lst) == 0
    out = capsys.readouterr().out
    assert "resuming" not in out and f"({len(FRAMES)} written, 0 resumed)" in out


@pytest.mark.parametrize("extra, text", [
    (["--gt", "npz"], "--gt npz needs --gt-npz FILE"),
    (["--gt", "velodyne", "--gt-npz", "gt.npz"], "--gt-npz is read with --gt npz only, not with --gt velodyne"),
])
def test_gt_npz_goes_with_gt_npz_only(tree, tmp_path, capsys, extra, text):
    assert prepare(tree, tmp_path / "out", monodepth2_list(tmp_path / "test.txt"), *extra) == 1
    assert text in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "out" / "target_test" / "meta.json")


@pytest.mark.parametrize("top", ["train", "val", REAL_DATE, ""])
def test_annotated_ground_truth_is_metres_times_256(tree, tmp_path, top):
    """The drive folders are found under train/, val/, the date, or the root itself."""
    folder = tmp_path / "ann" / top / A[1] / "proj_depth" / "groundtruth" / "image_02"
    os.makedirs(folder)
    png = np.zeros(SIZES[REAL_DATE], np.uint16)
    png[150, 700] = 2560
    cv2.imwrite(str(folder / "0000000069.png"), png)
    assert prepare(tree, tmp_path / "out", monodepth2_list(tmp_path / "l.txt", [A]), "--gt", "annotated",
                   "--annotated-root", str(tmp_path / "ann")) == 0
    split = str(tmp_path / "out" / "target_test")
    assert read_meta(split).eval["gt_kind"] == "annotated"
    gt = read_gt(split, name(A))
    assert gt[150, 700] == 10.0 and (gt > 0).sum() == 1


# ---------------------------------------------------------------- mistakes
def test_jpeg_tree_needs_ext_jpg(tmp_path, capsys):
    root = make_tree(tmp_path / "raw", ext="jpg", scans=False)
    lst = monodepth2_list(tmp_path / "test.txt")
    assert prepare(root, tmp_path / "out", lst) == 1
    err = capsys.readouterr().err
    assert "0000000069.png missing but 0000000069.jpg exists" in err and "--ext jpg" in err
    assert prepare(root, tmp_path / "out", lst, "--ext", "jpg") == 0
    meta = read_meta(str(tmp_path / "out" / "target_test"))
    assert meta.frames[name(A)]["src"].endswith("0000000069.jpg")
    rgb = read_sample(str(tmp_path / "out" / "target_test"), name(A), meta)["rgb"]
    assert np.abs(rgb[96, 320].astype(int) - COLOUR[A]).max() <= 3  # JPEG


def test_a_list_naming_jpeg_files_reads_them_without_ext(tmp_path):
    root = make_tree(tmp_path / "raw", frames=[A], ext="jpg", scans=False)
    assert prepare(root, tmp_path / "out", desc_list(tmp_path / "test.txt", [A], ext="JPG")) == 0
    assert read_meta(str(tmp_path / "out" / "target_test")).frames[name(A)]["src"].endswith("0000000069.jpg")


def test_list_of_jpeg_files_over_a_png_tree_says_to_pass_ext_png(tree, tmp_path, capsys):
    assert prepare(tree, tmp_path / "out", desc_list(tmp_path / "test.txt", ext="jpg")) == 1
    err = capsys.readouterr().err
    assert "0000000069.jpg missing but 0000000069.png exists (the list names JPEG files); pass --ext png" in err
    assert prepare(tree, tmp_path / "out", tmp_path / "test.txt", "--ext", "png") == 0


def test_missing_calibration_names_the_archive(tree, tmp_path, capsys):
    os.remove(tree / REAL_DATE / "calib_cam_to_cam.txt")
    assert prepare(tree, tmp_path / "out", monodepth2_list(tmp_path / "test.txt")) == 1
    err = capsys.readouterr().err
    assert f"{REAL_DATE}/calib_cam_to_cam.txt missing" in err and f"{REAL_DATE}_calib.zip" in err


def test_image_size_must_match_the_calibration(tmp_path, capsys):
    root = make_tree(tmp_path / "raw", sizes={REAL_DATE: (376, 1241), "2011_09_30": (370, 1226)}, scans=False)
    assert prepare(root, tmp_path / "out", monodepth2_list(tmp_path / "test.txt")) == 1
    err = capsys.readouterr().err
    assert "0000000069.png is 1241x376 but S_rect_02 of 2011_09_26 says 1242x375" in err
    assert "2 of 3 frames failed" in err


def test_missing_or_truncated_scans_are_refused(tree, tmp_path, capsys):
    lst = monodepth2_list(tmp_path / "test.txt")
    bin_b = tree / B[0] / B[1] / "velodyne_points" / "data" / "0000000070.bin"
    bin_b.write_bytes(bin_b.read_bytes()[:-6])
    assert prepare(tree, tmp_path / "out", lst, "--gt", "velodyne") == 1
    err = capsys.readouterr().err
    assert "0000000070.bin" in err and "not a multiple of 16" in err
    os.remove(bin_b)
    assert prepare(tree, tmp_path / "out", lst, "--gt", "velodyne") == 1
    err = capsys.readouterr().err
    assert "0000000070.bin missing (1 of 3 scans are missing)" in err and "_sync archives" in err


@pytest.mark.parametrize("case", ["missing", "8-bit", "wrong size"])
def test_annotated_ground_truth_mistakes_name_the_file(tree, tmp_path, capsys, case):
    folder = tmp_path / "ann" / "val" / A[1] / "proj_depth" / "groundtruth" / "image_02"
    os.makedirs(folder)
    H, W = SIZES[REAL_DATE]
    png = folder / "0000000069.png"
    if case == "8-bit":
        cv2.imwrite(str(png), np.zeros((H, W), np.uint8))
    elif case == "wrong size":
        cv2.imwrite(str(png), np.zeros((H, W - 2), np.uint16))
    assert prepare(tree, tmp_path / "out", monodepth2_list(tmp_path / "l.txt", [A]), "--gt", "annotated",
                   "--annotated-root", str(tmp_path / "ann")) == 1
    err = capsys.readouterr().err
    if case == "missing":
        assert f"{tmp_path / 'ann'}" in err and "0000000069.png missing (also looked in" in err
        assert "data_depth_annotated.zip" in err and "652 of the 697 Eigen test frames" in err
    elif case == "8-bit":
        assert f"{png}: annotated depth must be a 16-bit single-channel PNG (metres x 256), got uint8" in err
    else:
        assert f"{png} is {W - 2}x{H} but S_rect_02 of {REAL_DATE} says {W}x{H}" in err


@pytest.mark.parametrize("line, text", [
    ("2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000069.png "
     "2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000069.png",
     "the two columns must be image_02 and image_03 of one frame, got "
     "'2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000069.png "
     "2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000069.png'"),
    ("2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000069.png "
     "2011_09_26/2011_09_26_drive_0002_sync/image_03/data/0000000070.png",
     "the two columns must be image_02 and image_03 of one frame"),
    ("images/a.png images/b.png",
     "expected image paths '<date>/<drive>/image_0{2,3}/data/<frame>.png' in the first two columns, got 'images/a.png'"),
])
def test_paired_list_lines_must_name_one_stereo_frame(tree, tmp_path, capsys, line, text):
    lst = tmp_path / "pairs.txt"
    lst.write_text(line + "\n")
    assert prepare(tree, tmp_path / "out", str(lst)) == 1
    err = capsys.readouterr().err
    assert f"{lst} line 1" in err and text in err, err


def test_projection_keeps_points_on_the_first_row_and_column(tree):
    P, size = projection(tree, REAL_DATE), SIZES[REAL_DATE]
    H, W = size
    corners = {(0, 7): 12.0, (9, 0): 14.0, (0, 0): 16.0, (H - 1, W - 1): 18.0}
    points = np.array([[*point_on_pixel(P, r, c, d), 0.5] for (r, c), d in corners.items()], np.float32)
    depth = project_depth(points, P, size)
    assert {tuple(p) for p in np.argwhere(depth > 0)} == set(corners)
    for (r, c), d in corners.items():
        assert depth[r, c] == pytest.approx(d, abs=1e-4)
    with pytest.raises(ValueError, match=r"depth kind must be one of .*, got 'velodyne'"):
        project_depth(points, P, size, "velodyne")


def test_agreement_of_two_depth_maps():
    from desc_train.data.prepare.kitti import _agreement

    a = np.zeros((2, 6), np.float32)
    b = a.copy()
    assert _agreement(a, b) == 1.0  # no depth in either: nothing disagrees
    a[0, 1], b[0, 1] = 0.5, 0.5  # both, equal
    a[0, 2], b[0, 2] = 5.0, 5.0005  # within 1 mm
    a[1, 3] = 0.7  # only in a
    b[1, 4] = 0.3  # only in b
    a[1, 2], b[1, 2] = 2.0, 2.0 + 2e-3  # 2 mm apart
    a[:, 0], a[:, 5] = 9.0, 9.0  # the first and last columns are not compared
    assert _agreement(a, b) == pytest.approx(2 / 5)


def test_missing_scan_message_says_how_many():
    from desc_train.data.prepare.kitti_calib import missing_scan

    assert str(missing_scan("a.bin")).startswith("a.bin missing: velodyne ground truth needs the raw *_sync archives")
    assert str(missing_scan("a.bin", "3 of 697")).startswith("a.bin missing (3 of 697): velodyne ground truth")
    assert str(missing_scan("a.bin")).endswith("or pass --gt-npz gt_depths.npz")


def test_velodyne_reader_names_a_missing_or_truncated_scan(tmp_path):
    from desc_train.data.prepare.kitti_calib import read_velodyne

    path = str(tmp_path / "0000000005.bin")
    with pytest.raises(DataError, match=rf"^{path} missing: velodyne ground truth"):
        read_velodyne(path)
    points = np.arange(12, dtype="<f4").reshape(3, 4)
    points.tofile(path)
    np.testing.assert_array_equal(read_velodyne(path), points)
    with open(path, "ab") as f:
        f.write(b"\0" * 4)
    with pytest.raises(DataError, match=rf"^{path}: 52 bytes is not a multiple of 16"):
        read_velodyne(path)


def test_gt_npz_reading_names_each_mistake(tmp_path):
    from desc_train.data.prepare.kitti import read_npz

    path = str(tmp_path / "gt_depths.npz")
    with pytest.raises(DataError, match=rf"^{re.escape(path)} missing: pass the gt_depths.npz that monodepth2's "):
        read_npz(path, 2)
    np.savez(path, maps=np.zeros((2, 3, 4)))
    with pytest.raises(DataError, match=r": no 'data' array \(monodepth2's export saves the maps as data=\.\.\.\)$"):
        read_npz(path, 2)
    with open(path, "wb") as f:
        f.write(b"not a zip")  # never unpickled
    with pytest.raises(DataError, match=r"gt_depths\.npz: not a readable \.npz: not a zip archive$"):
        read_npz(path, 2)
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        z.writestr("data.npy", b"\x93NUMPY truncated")
    with pytest.raises(DataError, match=r"gt_depths\.npz: not a readable \.npz: "):
        read_npz(path, 2)
    for bad in (np.zeros((2, 3)), np.zeros(2), np.zeros((2, 1, 3, 4))):
        np.savez(path, data=bad)
        with pytest.raises(DataError, match=r": 'data' must be an object array of 2-D depth maps or a 3-D array, "
                                            rf"got float64 \({', '.join(map(str, bad.shape))},?\)$"):
            read_npz(path, 2)
    np.savez(path, data=np.zeros((3, 2, 2)))
    with pytest.raises(DataError, match=r"gt_depths\.npz holds 3 maps but the list has 2 lines \(entry i belongs to "
                                        r"line i\)$"):
        read_npz(path, 2)
    np.savez(path, data=np.zeros((652, 1, 1)))
    with pytest.raises(DataError, match=r"holds 652 maps but the list has 697 lines \(entry i belongs to line i\): "
                                        r"this is the eigen_benchmark export; use --gt annotated"):
        read_npz(path, 697)
    ragged = np.empty(2, object)
    ragged[0], ragged[1] = np.ones((2, 3)), np.full((4, 5), 2.0)
    np.savez(path, data=ragged)
    maps = read_npz(path, 2)
    assert [(m.dtype, m.shape) for m in maps] == [(np.float32, (2, 3)), (np.float32, (4, 5))]
    np.savez(path, data=np.ones((2, 3, 4)))  # a 3-D array: one map per line
    assert [m.shape for m in read_npz(path, 2)] == [(3, 4), (3, 4)]


def test_monodepth2_lines_are_parsed_and_mistakes_named():
    from desc_train.data.prepare.kitti import _monodepth2_entries

    (e,) = _monodepth2_entries(4, ["2011_09_26/2011_09_26_drive_0002_sync", "0000000069", "r"], "t.txt line 5")
    assert (e.index, e.date, e.drive, e.frame, e.side) == (4, "2011_09_26", "2011_09_26_drive_0002_sync", 69, "r")
    for cols in (["2011_09_26/drive_0002", "69", "l"], ["2011_09_26/2011_09_26_drive_0002_sync", "x69", "l"],
                 ["2011_09_26/2011_09_26_drive_0002_sync", "69", "left"]):
        with pytest.raises(DataError, match=r"^t\.txt line 5: expected '<date>/<date>_drive_<nnnn>_sync <frame> l\|r' "
                                            r"\(monodepth2 format\), got '" + re.escape(" ".join(cols)) + "'$"):
            _monodepth2_entries(4, cols, "t.txt line 5")


def test_rgb_reader_names_an_unreadable_image(tmp_path):
    from desc_train.data.prepare.kitti import read_rgb
    from desc_train.data.prepare.kitti_calib import Camera

    camera = Camera("2011_09_26", 2, (2, 3), (1.0, 1.0, 1.0, 1.0), 0.5, np.zeros((3, 4)), np.eye(3))
    path = str(tmp_path / "0000000000.png")
    with pytest.raises(DataError, match=rf"^{re.escape(path)}: not a readable image$"):
        read_rgb(path, camera)
    bgr = np.arange(18, dtype=np.uint8).reshape(2, 3, 3)
    cv2.imwrite(path, bgr)
    np.testing.assert_array_equal(read_rgb(path, camera), bgr[..., ::-1])


def test_recorded_arguments_are_absolute_and_leave_out_the_run_settings():
    import argparse

    from desc_train.data.prepare.kitti import _arguments

    args = argparse.Namespace(run=print, workers=2, limit=5, overwrite=True, root="raw", list="l.txt",
                              gt_npz="g.npz", annotated_root="ann", size=(192, 640), side="l")
    assert _arguments(args) == dict(root=os.path.abspath("raw"), list=os.path.abspath("l.txt"),
                                    gt_npz=os.path.abspath("g.npz"), annotated_root=os.path.abspath("ann"),
                                    size=[192, 640], side="l")
    args.gt_npz, args.annotated_root, args.size = None, "", None
    recorded = _arguments(args)
    assert (recorded["gt_npz"], recorded["annotated_root"], recorded["size"]) == (None, "", None)


def test_npz_ground_truth_is_for_left_frames_and_is_checked_against_the_last_scan(tree, tmp_path, capsys):
    npz, order = tmp_path / "gt_depths.npz", [C, A, B]  # the last two share a date, so a size
    maps = reference_npz(tree, npz, order)
    lst = desc_list(tmp_path / "test.txt", frames=order)
    assert prepare(tree, tmp_path / "out", lst, "--gt-npz", str(npz), "--side", "lr") == 1
    assert (f"{npz} holds image_02 ground truth, but the frames include image_03 ones ({name(C, 'r')}); "
            "pass --side l, or --gt velodyne") in capsys.readouterr().err
    # Only the last entry is wrong (A's map in B's place, same size): the check reads the last scan too.
    data = np.empty(3, dtype=object)
    data[:] = maps[:2] + [maps[1]]
    np.savez_compressed(npz, data=data)
    assert prepare(tree, tmp_path / "out2", lst, "--gt-npz", str(npz)) == 1
    assert f"{npz} entry 2 is not the velodyne_x projection" in capsys.readouterr().err
    # No scans beside the frames: checked by size only, and said so.
    for f in FRAMES:
        os.remove(os.path.join(tree, f[0], f[1], "velodyne_points", "data", f"{f[2]:010d}.bin"))
    assert prepare(tree, tmp_path / "out3", lst, "--gt-npz", str(npz)) == 0
    assert f"note: no velodyne scan beside the frames; {npz} was checked by size only" in capsys.readouterr().out


@pytest.mark.parametrize("fx, problem", [
    ("0.000000e+00", "focal lengths fx 0.0 and fy 721.5377 must be above 0"),
    ("-7.215377e+02", "focal lengths fx -721.5377 and fy 721.5377 must be above 0"),
])
def test_a_focal_that_is_not_finite_and_positive_names_the_calibration_file(tree, tmp_path, capsys, fx, problem):
    """A P_rect_02 of fx 0 or below stops the conversion naming the date's
    calibration file, before any frame is written (and without a warning of a
    division by 0; the calibration reader refuses NaN itself)."""
    path = tree / REAL_DATE / "calib_cam_to_cam.txt"
    path.write_text(path.read_text().replace("P_rect_02: 7.215377e+02", f"P_rect_02: {fx}"))
    assert prepare(tree, tmp_path / "out", monodepth2_list(tmp_path / "test.txt")) == 1
    err = capsys.readouterr().err
    assert err == f"desc-train prepare kitti: error: {path}: P_rect_02: intrinsics {problem}\n"
    assert not os.path.exists(tmp_path / "out" / "target_test")
