"""Stereo pairs in desc_train's data: the generator's right view (a point at depth
Z moves f b / Z pixels to the left), the converters' right views and baselines
(KITTI raw's image_03, Cityscapes' rightImg8bit), the layout's rules and errors,
prepare check, and DepthDataset's focal_baseline under resize, crop and flip."""
import json
import os
import re

import cv2
import numpy as np
import pytest

from desc_train.cli import main as cli_main
from desc_train.data import generator as gen
from desc_train.data.classes import CAR
from desc_train.data.dataset import Augment, DepthDataset
from desc_train.data.layout import DataError, SplitMeta, read_meta, write_meta, write_sample
from test_prepare_cityscapes import frame_file, left_image
from test_prepare_cityscapes import make_frame as make_cityscapes_frame
from test_prepare_cityscapes import prepare as prepare_cityscapes
from test_prepare_kitti import A, B, C, FRAMES, REAL_DATE, make_tree, monodepth2_list, name
from test_prepare_kitti import prepare as prepare_kitti


def warp(right, depth, fb):
    """`right` (H, W, C) sampled at (y, x - fb / depth) by linear interpolation
    along the row (the convention of desc_ops.stereo_photometric_loss), and where
    that position lies inside the image (and the depth is known)."""
    H, W = depth.shape
    x = np.arange(W)[None, :] - fb / np.where(depth > 0, depth, np.inf)
    x0 = np.clip(np.floor(x).astype(int), 0, W - 2)
    a = (x - x0)[..., None]
    rows = np.arange(H)[:, None]
    right = np.asarray(right, np.float64).reshape(H, W, -1)
    return right[rows, x0] * (1 - a) + right[rows, x0 + 1] * a, (depth > 0) & (x >= 0) & (x <= W - 1)


# ---------------------------------------------------------------- the generator
def test_right_view_moves_each_object_by_f_b_over_Z_pixels():
    """Two cars at depths where f b / Z is 3 and 7 pixels: in the right view each
    one's pixels are its left-view pixels moved exactly that far to the left."""
    H, W = 64, 240
    f = gen.camera(H, W)[0]
    shifts = {0: 3, 1: 7}
    objects = [gen.SceneObject(CAR, 0, X, f * gen.BASELINE / shifts[k], 1.5, 1.8, key=k)
               for k, X in ((0, -3.0), (1, 2.0))]
    street = gen.Street(pitch=0.0, road_half=4.0, offset=0.0, walk=2.0, facades=[], objects=objects)
    left, right = gen.rasterize(street, H, W), gen.rasterize(street, H, W, camera_x=gen.BASELINE)
    for key, k in shifts.items():
        masks = [view.instance == next(o.instance for o in view.objects if o.key == key) for view in (left, right)]
        assert all(m[:, :k + 1].sum() == 0 and m[:, -k - 1:].sum() == 0 and m.sum() > 20 for m in masks)
        np.testing.assert_array_equal(masks[1][:, :W - k], masks[0][:, k:])
        assert (right.depth[masks[1]] == objects[key].Z).all()


def test_rendered_right_view_warped_by_f_b_over_Z_gives_the_left_view():
    """On whole scenes, the right view warped with the left depth and f b
    reproduces the left view wherever both cameras see the same surface: in the
    source look to well under a level on average (the same paints); in the target
    look to the sensor noise, drawn per view (about 3.5 levels on average), since
    its textures are fixed to the surfaces; and a disparity 3 pixels off either way
    is at least twice as far from it (the textures match nowhere else along the
    row: with grain drawn per view, or periodic, it was 1.4-1.5 times)."""
    for domain, index, bound in (("source", 0, 1.0), ("source", 1, 1.0), ("target", 0, 4.5), ("target", 1, 4.5)):
        fr = gen.make_frame(0, domain, index, 64, 200, stereo=True)
        fb = fr["scene"].focal * fr["baseline"]
        assert fr["baseline"] == gen.BASELINE == 0.54
        right_depth, inside = warp(fr["scene_right"].depth, fr["depth"], fb)
        seen = inside & (np.abs(right_depth[..., 0] - fr["depth"]) <= 0.01 * fr["depth"])
        assert seen.sum() >= 0.9 * inside.sum()  # all but occlusion edges
        warped, _ = warp(fr["rgb_right"], fr["depth"], fb)
        error = np.abs(warped - fr["rgb"])[seen].mean()
        assert error < bound, (domain, index)
        if domain == "target":
            for off in (-3, 3):
                depth = np.where(fr["depth"] > 0, fb / (fb / np.where(fr["depth"] > 0, fr["depth"], 1) + off), 0)
                shifted, inside = warp(fr["rgb_right"], depth, fb)
                assert np.abs(shifted - fr["rgb"])[seen & inside & (depth > 0)].mean() > 2 * error, (index, off)


def test_stereo_changes_nothing_of_the_left_frame():
    plain = gen.make_frame(2, "target", 5, 32, 96, logits=True)
    stereo = gen.make_frame(2, "target", 5, 32, 96, logits=True, stereo=True)
    for key in ("rgb", "depth", "semantic", "instance", "logits"):
        np.testing.assert_array_equal(stereo[key], plain[key])
    assert "rgb_right" not in plain and not np.array_equal(stereo["rgb_right"], stereo["rgb"])


def test_generate_stereo_writes_right_views_of_target_train(tmp_path, capsys):
    out = tmp_path / "g"
    assert cli_main(["generate", "--out", str(out), "--source", "1", "--target", "2", "--test", "1",
                     "--size", "32x64", "--workers", "1", "--stereo"]) == 0
    assert "target_train: 2 target frames (stereo pairs) at 32x64" in capsys.readouterr().out
    assert sorted(os.listdir(out / "target_train" / "rgb_right")) == ["000000.png", "000001.png"]
    assert read_meta(str(out / "target_train")).baseline == gen.BASELINE
    stored = cv2.cvtColor(cv2.imread(str(out / "target_train" / "rgb_right" / "000001.png")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(stored, gen.make_frame(0, "target", 100_001, 32, 64, stereo=True)["rgb_right"])
    for split in ("source_train", "target_test"):  # the stereo term trains on target_train only
        assert not os.path.exists(out / split / "rgb_right") and read_meta(str(out / split)).baseline is None
    item = DepthDataset(str(out / "target_train"))[1]
    assert item["focal_baseline"].item() == pytest.approx(gen.camera(32, 64)[0] * 0.54, rel=1e-6)


# ---------------------------------------------------------------- the dataset
H, W, F = 32, 64, 40.0
DISPARITY = {0: 4, 1: 8}  # top half, bottom half of the rows: pixels at fb = 20 (F x 0.5 m)


def exact_pair_split(split, *, baseline=0.5, right=True):
    """Two frames of one exact stereo pair: the top rows at depth 20 / 4 = 5 m, the
    bottom rows at 20 / 8 = 2.5 m, so that the left image at (y, x) is the right one
    at (y, x - d) with d = 4 or 8 (even: a resize by 0.5 keeps the pair exact).
    Frame a has fb = the split's focal x its baseline; frame b has its own K
    (fx 80, twice fy) and baseline (0.25 m): fb = 80 x 0.25, the same 20."""
    rng = np.random.default_rng(0)
    scene = rng.integers(0, 256, (H, W + 8, 3), dtype=np.uint8)
    d = np.where(np.arange(H) < H // 2, DISPARITY[0], DISPARITY[1])
    depth = np.broadcast_to((F * 0.5 / d)[:, None], (H, W))
    view = np.stack([scene[y, d[y]:d[y] + W] for y in range(H)])
    for n in ("a", "b"):
        write_sample(split, n, scene[:, :W].copy(), depth, np.zeros((H, W)), np.zeros((H, W)),
                     rgb_right=view if right else None)
    frames = {"a": {}, "b": {"focal": F, "K": [2 * F, F, 31.5, 15.5], "baseline": 0.25}}
    write_meta(split, SplitMeta(domain="target", classes=["road"], instance_classes=[], focal=F, image_size=[H, W],
                                baseline=baseline, frames=frames))
    return split


@pytest.mark.parametrize("augment, fb", [
    (Augment(), 20.0),
    (Augment(scale=(0.5, 0.5)), 10.0),  # the disparity shrinks with the width
    (Augment(crop=(24, 40)), 20.0),
    (Augment(hflip=1.0), -20.0),  # mirrored, the right camera sits at -baseline
    (Augment(scale=(0.5, 0.5), crop=(12, 24), hflip=1.0), -10.0),
], ids=["plain", "resize", "crop", "flip", "all"])
def test_focal_baseline_warps_the_right_view_onto_the_left_under_each_augmentation(tmp_path, augment, fb):
    ds = DepthDataset(exact_pair_split(str(tmp_path / "s")), augment=augment)
    for i in range(len(ds)):
        item = ds[i]
        assert item["focal_baseline"].dtype == item["image_right"].dtype == item["image"].dtype
        assert item["focal_baseline"].item() == fb and item["image_right"].shape == item["image"].shape
        image = item["image"].permute(1, 2, 0).numpy()
        warped, inside = warp(item["image_right"].permute(1, 2, 0).numpy(), item["depth"][0].numpy(), fb)
        assert inside.mean() > 0.6
        np.testing.assert_array_equal(warped[inside], image[inside])


def test_stereo_is_what_the_split_has_unless_asked(tmp_path):
    plain = exact_pair_split(str(tmp_path / "plain"), right=False, baseline=None)
    assert {"image_right", "focal_baseline"}.isdisjoint(DepthDataset(plain)[0])
    with pytest.raises(DataError, match=re.escape(f"{plain}: has no right views (rgb_right/) for stereo")):
        DepthDataset(plain, stereo=True)
    pairs = exact_pair_split(str(tmp_path / "pairs"))
    assert {"image_right", "focal_baseline"} <= set(DepthDataset(pairs, stereo=True)[0])
    assert {"image_right", "focal_baseline"}.isdisjoint(DepthDataset(pairs, stereo=False)[0])


def test_missing_or_wrong_sized_right_view_is_named(tmp_path):
    split = exact_pair_split(str(tmp_path / "s"))
    ds = DepthDataset(split)
    path = os.path.join(split, "rgb_right", "b.png")
    cv2.imwrite(path, np.zeros((H, W // 2, 3), np.uint8))
    with pytest.raises(DataError, match=re.escape(f"{path}: right view is 32x32, expected 64x32")):
        ds[1]
    os.remove(path)
    with pytest.raises(DataError, match=re.escape(f"{path}: missing right view")):
        ds[1]


def test_a_stereo_split_needs_a_baseline_for_every_frame(tmp_path):
    split = exact_pair_split(str(tmp_path / "s"), baseline=None)  # frame a has none of its own
    with pytest.raises(DataError, match=re.escape(f"{split}/meta.json: 1 of 2 frames have no baseline (first a)")):
        DepthDataset(split)
    assert DepthDataset(split, stereo=False)[0]["focal"].item() == F  # without stereo no baseline is needed


@pytest.mark.parametrize("where, value", [("split", 0), ("split", -0.54), ("split", "0.54"), ("frame", 0),
                                          ("frame", -1.0), ("frame", "NaN")])
def test_a_baseline_must_be_finite_metres_above_0(tmp_path, where, value):
    split = exact_pair_split(str(tmp_path / "s"))
    path = os.path.join(split, "meta.json")
    with open(path) as f:
        raw = json.load(f)
    if where == "split":
        raw["baseline"], field = value, "baseline"
    else:
        raw["frames"]["b"]["baseline"], field = value, "frames.b.baseline"
    text = json.dumps(raw).replace('"NaN"', "NaN")
    with open(path, "w") as f:
        f.write(text)
    with pytest.raises(DataError, match=re.escape(f"{path}: {field} must be a finite number of metres above 0")):
        read_meta(split)


# ---------------------------------------------------------------- prepare kitti --stereo
def pattern(shape, seed):
    return np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)


def test_kitti_stereo_stores_image_03_resized_as_image_02_with_the_calibrated_baseline(tmp_path):
    """Frame A's image_03 is its image_02 with the channels reversed: stored, each
    is still the other reversed (one resize for both). The baselines are those of
    each date's P_rect_02 and P_rect_03: the real 2011_09_26 one, 0.5327 m."""
    tree = make_tree(tmp_path / "raw", scans=False)
    image = pattern((375, 1242), 0)
    folder = tree / REAL_DATE / A[1]
    cv2.imwrite(str(folder / "image_02" / "data" / f"{A[2]:010d}.png"), image)
    cv2.imwrite(str(folder / "image_03" / "data" / f"{A[2]:010d}.png"), image[..., ::-1])
    lst = monodepth2_list(tmp_path / "train.txt")
    assert prepare_kitti(tree, tmp_path / "out", lst, "--stereo", split="target_train") == 0
    split = str(tmp_path / "out" / "target_train")
    meta = read_meta(split)
    baselines = {A: 0.532725, B: 0.532725, C: (330 + 46) / 700}  # -P_rect_03[0,3]/fx less -P_rect_02[0,3]/fx
    for frame, baseline in baselines.items():
        assert meta.frame_baseline(name(frame)) == pytest.approx(baseline, abs=1e-6)
    ds = DepthDataset(split, stereo=True)
    item = ds[ds.names.index(name(A))]
    np.testing.assert_array_equal(item["image_right"].numpy(), item["image"].numpy()[::-1])
    assert item["focal_baseline"].item() == pytest.approx(721.5377 * 640 / 1242 * 0.532725, rel=1e-5)
    assert meta.names == sorted(name(f) for f in FRAMES)  # the right views are no frames of their own
    assert cli_main(["prepare", "check", str(tmp_path / "out")]) == 0


def test_kitti_stereo_mistakes_are_named(tmp_path, capsys):
    tree = make_tree(tmp_path / "raw", frames=[A, C], scans=False)
    lst = monodepth2_list(tmp_path / "train.txt", [A, C])

    def error(*extra):
        assert prepare_kitti(tree, tmp_path / "out", lst, "--stereo", *extra, split="target_train") == 1
        return capsys.readouterr().err

    assert error("--side", "lr") == ("desc-train prepare kitti: error: --stereo stores the right view (image_03) of "
                                     "each left frame (image_02): it takes --side l, not --side lr\n")
    right = tree / C[0] / C[1] / "image_03" / "data" / f"{C[2]:010d}.png"
    os.remove(right)
    assert f"error: {right} missing (1 of 2 images are)" in error()
    calib = tree / C[0] / "calib_cam_to_cam.txt"
    text = calib.read_text()
    calib.write_text(text.replace("P_rect_03: 7.0e+02 0 6.0e+02", "P_rect_03: 7.1e+02 0 6.0e+02"))
    assert f"error: {calib}: camera 3 (P_rect_03, S_rect_03: fx, fy, cx, cy 710, 705, 600, 180 at 1226x370) " \
           f"differs from camera 2" in error()
    calib.write_text(text.replace("-3.3e+02", "3.3e+02"))  # camera 3 left of camera 2
    assert f"error: {calib}: P_rect_02 and P_rect_03 give a baseline of -0.405" in error()
    assert not os.path.exists(tmp_path / "out" / "target_train" / "meta.json")


# ---------------------------------------------------------------- prepare cityscapes --stereo
REAL_CAMERA = {"extrinsic": {"baseline": 0.209313, "pitch": 0.038, "roll": 0.0, "x": 1.7, "y": 0.1, "yaw": -0.0195,
                             "z": 1.22},
               "intrinsic": {"fx": 2262.52, "fy": 2265.3017905988554, "u0": 1096.98, "v0": 513.137}}


def cityscapes_pair(root):
    """A frame whose right view is its left image with the channels reversed, and
    a camera json of real values (baseline 0.209 m)."""
    make_cityscapes_frame(root, disparity=None, labels=False)
    path = frame_file(root, "rightImg8bit", "_rightImg8bit.png")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cv2.imwrite(path, left_image()[..., ::-1])
    with open(frame_file(root, "camera", "_camera.json"), "w") as f:
        json.dump(REAL_CAMERA, f)
    return path


def test_cityscapes_stereo_stores_the_right_view_cropped_and_resized_as_the_left(tmp_path):
    cityscapes_pair(tmp_path / "cs")
    assert prepare_cityscapes(tmp_path / "cs", tmp_path / "out", "--stereo") == 0
    item = DepthDataset(str(tmp_path / "out" / "target"), stereo=True)[0]
    # Reversed channels both ways, and the ego vehicle's red rows cut off the right view too.
    np.testing.assert_array_equal(item["image_right"].numpy(), item["image"].numpy()[::-1])
    assert item["focal_baseline"].item() == pytest.approx(2262.52 * 128 / 256 * 0.209313, rel=1e-5)
    assert cli_main(["prepare", "check", str(tmp_path / "out")]) == 0


def test_cityscapes_stereo_mistakes_are_named(tmp_path, capsys):
    path = cityscapes_pair(tmp_path / "cs")
    cv2.imwrite(path, left_image()[:, :100])
    assert prepare_cityscapes(tmp_path / "cs", tmp_path / "out", "--stereo") == 1
    assert f"{path}: right image is 100x128 but the left image is 256x128" in capsys.readouterr().err
    os.remove(path)
    assert prepare_cityscapes(tmp_path / "cs", tmp_path / "out", "--stereo") == 1
    assert f"{path}: missing right image: extract rightImg8bit_trainvaltest.zip again" in capsys.readouterr().err
    os.rmdir(os.path.dirname(path))
    os.rmdir(os.path.dirname(os.path.dirname(path)))
    assert prepare_cityscapes(tmp_path / "cs", tmp_path / "out", "--stereo") == 1
    assert "rightImg8bit/val: missing: download rightImg8bit_trainvaltest.zip" in capsys.readouterr().err


# ---------------------------------------------------------------- prepare check
def test_check_finds_a_stereo_split_s_missing_or_wrong_right_views_and_baselines(tmp_path, capsys):
    root = tmp_path / "root"
    split = exact_pair_split(str(root / "target_train"))
    assert cli_main(["prepare", "check", str(root)]) == 0
    assert "  stereo: right views, baseline 0.2500 to 0.5000 m" in capsys.readouterr().out
    path = os.path.join(split, "rgb_right", "a.png")
    cv2.imwrite(path, np.zeros((H // 2, W, 3), np.uint8))
    assert cli_main(["prepare", "check", str(root)]) == 1
    assert f"{path}: right view is 64x16, expected 64x32" in capsys.readouterr().err
    os.remove(path)
    assert cli_main(["prepare", "check", str(root)]) == 1
    assert f"1 files missing, first {path}" in capsys.readouterr().err
    exact_pair_split(split, baseline=None)
    assert cli_main(["prepare", "check", str(root)]) == 1
    assert f"{split}/meta.json: 1 of 2 frames have no baseline (first a)" in capsys.readouterr().err
