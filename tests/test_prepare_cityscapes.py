"""desc-train prepare cityscapes on a tiny Cityscapes tree written in the real
formats: names, the bottom crop, intrinsics at the stored size, depth from
disparity, the label and instance mapping, both folder layouts, and errors that
name the file and the fix."""
import argparse
import json
import os
import re

import cv2
import numpy as np
import pytest

from desc_train.cli import main as cli_main
from desc_train.data import coco
from desc_train.data.dataset import DepthDataset
from desc_train.data.layout import read_gt, read_meta, read_sample
from desc_train.data.prepare import cityscapes
from desc_train.data.prepare.common import sha256_lines

H0, W0 = 128, 256  # the fabricated frames; the bottom quarter (32 rows) is the ego vehicle
KEPT = 96
CAM = dict(fx=400.0, fy=410.0, u0=130.0, v0=60.0, baseline=0.2)
EGO = (255, 0, 0)  # RGB of the ego-vehicle rows
NAME = "val_frankfurt_000000_000294"
# (row, column) of the disparity values and the depth each gives: p = 0 none, p = 1 is d = 0,
# p = 257 is d = 1 px, p = 1025 is d = 4 px.
DISPARITY = {(10, 20): (0, 0.0), (20, 30): (1, 0.0), (40, 50): (257, 0.2 * 400.0),
             (60, 70): (1025, 0.2 * 400.0 / 4)}
EGO_DISPARITY = 2  # d = 1/256 px below row KEPT: a depth of thousands of metres if the crop missed it


def _png(path, array):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(str(path), array)


def _folder(root, kind, zipped):
    return os.path.join(root, f"{kind}_trainvaltest", kind) if zipped else os.path.join(root, kind)


def left_image():
    """BGR, a different value in each channel (and along the columns) so that a swap shows."""
    bgr = np.zeros((H0, W0, 3), np.uint8)
    bgr[..., 0], bgr[..., 1], bgr[..., 2] = 30, 40 + np.arange(W0) % 50, 150
    bgr[KEPT:] = EGO[::-1]
    return bgr


def frame_file(root, kind, suffix, subset="val", city="frankfurt", stem="frankfurt_000000_000294", zipped=False):
    """Where Cityscapes keeps a frame's file of one kind (leftImg8bit, camera, ...)."""
    return os.path.join(_folder(root, kind, zipped), subset, city, stem + suffix)


def make_frame(root, subset="val", city="frankfurt", stem="frankfurt_000000_000294", zipped=False,
               camera=True, disparity=np.uint16, labels=True):
    """Writes one Cityscapes frame: image, camera json, disparity and gtFine maps."""
    def path(kind, suffix):
        return frame_file(root, kind, suffix, subset, city, stem, zipped)

    bgr = left_image()
    _png(path("leftImg8bit", "_leftImg8bit.png"), bgr)
    if camera:
        os.makedirs(os.path.dirname(path("camera", "_camera.json")), exist_ok=True)
        with open(path("camera", "_camera.json"), "w") as f:
            json.dump({"extrinsic": {"baseline": CAM["baseline"], "pitch": 0.04, "roll": 0.0, "x": 1.7, "y": 0.1,
                                     "yaw": 0.0, "z": 1.2},
                       "intrinsic": {k: CAM[k] for k in ("fx", "fy", "u0", "v0")}}, f)
    if disparity is not None:
        p = np.full((H0, W0), 513, np.uint16)
        for (r, c), (value, _) in DISPARITY.items():
            p[r, c] = value
        p[KEPT:] = EGO_DISPARITY
        _png(path("disparity", "_disparity.png"), p.astype(disparity))
    if labels:
        label_ids = np.zeros((H0, W0), np.uint8)  # 0: unlabeled
        label_ids[:16] = 23  # sky
        label_ids[16:48, :64] = 7  # road
        label_ids[16:48, 64:128] = 8  # sidewalk
        label_ids[48:80, :] = 26  # car: two objects and an uninstanced car group
        label_ids[48:80, 200:232] = 29  # caravan: an object without a COCO class
        label_ids[80:96, :32] = 25  # rider
        label_ids[KEPT:] = 1  # ego vehicle
        instance_ids = label_ids.astype(np.uint16)
        instance_ids[48:80, 0:64] = 26001
        instance_ids[48:80, 64:128] = 26002
        instance_ids[48:80, 200:232] = 29001
        instance_ids[80:96, :32] = 25001
        _png(path("gtFine", "_gtFine_labelIds.png"), label_ids)
        _png(path("gtFine", "_gtFine_instanceIds.png"), instance_ids)


def prepare(root, out, *extra):
    return cli_main(["prepare", "cityscapes", "--root", str(root), "--out", str(out), "--split", "target",
                     "--subset", "val", "--size", "48x128", "--workers", "1", *extra])


@pytest.mark.parametrize("zipped", [False, True], ids=["plain", "zip-named"])
def test_disparity_ground_truth_crop_and_intrinsics(tmp_path, zipped):
    make_frame(tmp_path / "cs", zipped=zipped, labels=False)
    assert prepare(tmp_path / "cs", tmp_path / "out", "--gt", "disparity") == 0
    split = str(tmp_path / "out" / "target")
    meta = read_meta(split)
    assert meta.names == [NAME] and meta.domain == "target" and not meta.has_depth and not meta.has_labels
    assert meta.eval == {"gt_kind": "disparity", "crop": "cityscapes", "caps": [[0.001, 80]]}
    assert meta.dataset["name"] == "cityscapes" and meta.dataset["subsets"] == ["val"]
    assert meta.dataset["args"]["crop_bottom"] == 0.25
    args = dict(meta.dataset["args"])
    assert os.path.samefile(args.pop("root"), tmp_path / "cs")
    assert args == dict(subset=["val"], gt="disparity", labels="none", crop_bottom=0.25, size=[48, 128], limit=None,
                        stereo=False)
    assert meta.has_depth is False and meta.has_labels is False and meta.label_source is None
    assert meta.dataset["converter"] == "desc-train prepare cityscapes"
    assert os.path.samefile(meta.dataset["root"], tmp_path / "cs") and meta.instance_classes == []
    assert meta.dataset["list_sha256"] == sha256_lines([NAME])
    # A finished split is replaced only when asked.
    assert prepare(tmp_path / "cs", tmp_path / "out", "--gt", "disparity") == 1
    assert prepare(tmp_path / "cs", tmp_path / "out", "--gt", "disparity", "--overwrite") == 0
    frame = meta.frames[NAME]
    # 96x256 -> 48x128 halves both axes; cutting rows from the bottom moves no principal point.
    assert frame["K"] == pytest.approx([CAM["fx"] / 2, CAM["fy"] / 2, CAM["u0"] / 2, CAM["v0"] / 2])
    assert meta.frame_focal(NAME) == pytest.approx(CAM["fy"] / 2)
    assert frame["orig_size"] == [KEPT, W0] and frame["baseline"] == CAM["baseline"]
    assert frame["src"] == os.path.join(os.path.relpath(_folder("", "leftImg8bit", zipped)), "val", "frankfurt",
                                        "frankfurt_000000_000294_leftImg8bit.png")
    gt = read_gt(split, NAME)
    assert gt.shape == (KEPT, W0)  # native size, less the ego vehicle
    for (r, c), (_, depth) in DISPARITY.items():
        assert gt[r, c] == pytest.approx(depth, rel=1e-6)
    assert gt.max() == pytest.approx(CAM["baseline"] * CAM["fx"], rel=1e-6)  # no ego row left
    sample = read_sample(split, NAME, meta)
    assert sample["rgb"].shape == (48, 128, 3) and not (sample["rgb"][..., 0] > 200).any()
    assert (sample["depth"] == 0).all() and (sample["semantic"] == -1).all()
    item = DepthDataset(split)[0]
    assert item["image"].shape == (3, 48, 128) and float(item["focal"]) == pytest.approx(CAM["fy"] / 2)


def test_labels_map_to_coco_and_instances(tmp_path):
    make_frame(tmp_path / "cs", disparity=None)
    assert prepare(tmp_path / "cs", tmp_path / "out", "--labels", "gt", "--size", "96x256") == 0
    split = str(tmp_path / "out" / "target")
    meta = read_meta(split)
    assert meta.has_labels and meta.eval is None and read_gt(split, NAME) is None
    assert {k: v for k, v in meta.dataset["args"].items() if k != "root"} == dict(
        subset=["val"], gt="none", labels="gt", crop_bottom=0.25, size=[96, 256], limit=None, stereo=False)
    assert meta.classes == coco.CLASSES
    assert meta.instance_classes == sorted(coco.class_id(n) for n in
                                           ("person", "bicycle", "car", "motorcycle", "bus", "train", "truck"))
    assert meta.label_source["kind"] == "gt" and meta.label_source["mapping"]["rider"] == "person"
    s = read_sample(split, NAME, meta)
    np.testing.assert_array_equal(s["rgb"], left_image()[:KEPT, :, ::-1])  # RGB at the native size, no ego rows
    sem, inst = s["semantic"], s["instance"]
    assert sem.shape == (KEPT, W0)
    car, person = coco.class_id("car"), coco.class_id("person")
    assert sem[0, 0] == coco.class_id("sky-other-merged") and sem[20, 10] == coco.class_id("road")
    assert sem[20, 100] == coco.class_id("pavement-merged") and sem[20, 200] == -1  # unlabeled
    assert (sem[48:80, :200] == car).all() and (sem[48:80, 200:232] == -1).all()  # caravan has no class
    assert inst[50, 10] == 26001 and inst[50, 100] == 26002 and inst[50, 150] == 0  # the group: car, no object
    assert inst[50, 210] == 0 and inst[85, 10] == 25001
    assert set(np.unique(inst)) == {0, 25001, 26001, 26002}
    item = DepthDataset(split, max_instances=4)[0]
    assert sorted(item["instance_class"].tolist()) == [-1, person, car, car]


def test_class_mapping_values():
    ids = np.array([7, 8, 11, 12, 13, 19, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33], np.uint8)
    expected = [100, 123, 129, 131, 117, 9, 116, 125, 119, 0, 0, 2, 7, 5, 6, 3, 1]
    assert cityscapes.semantic_from_label_ids(ids).tolist() == expected
    others = np.array([i for i in range(256) if i not in ids], np.uint8)
    assert (cityscapes.semantic_from_label_ids(others) == 255).all()
    # The table behind it, built once at import.
    table = cityscapes._label_table()
    assert table.dtype == np.uint8 and table.shape == (256,)
    assert table[ids].tolist() == expected and (table[others] == 255).all()


def test_a_subset_without_left_images_names_the_folder_and_the_archive(tmp_path):
    os.makedirs(tmp_path / "leftImg8bit" / "val" / "frankfurt")
    (tmp_path / "leftImg8bit" / "val" / "frankfurt" / "notes.txt").write_text("")
    with pytest.raises(cityscapes.DataError, match=r"^" + re.escape(os.path.join(str(tmp_path / "leftImg8bit"), "val"))
                       + r": holds no CITY/\*_leftImg8bit\.png: extract leftImg8bit_trainvaltest\.zip completely$"):
        cityscapes.left_images(str(tmp_path / "leftImg8bit"), "val")


def test_disparity_decoding():
    p = np.array([0, 1, 2, 257, 1025], np.uint16)
    depth = cityscapes.disparity_to_depth(p, fx=400.0, baseline=0.2)
    assert depth.dtype == np.float32
    assert depth.tolist() == pytest.approx([0, 0, 80 * 256, 80, 20])


def test_anisotropic_size_is_noted_and_limit_keeps_the_first(tmp_path, capsys):
    make_frame(tmp_path / "cs", subset="train", city="aachen", stem="aachen_000000_000019", labels=False)
    make_frame(tmp_path / "cs", subset="train", city="bochum", stem="bochum_000000_000313", labels=False)
    code = cli_main(["prepare", "cityscapes", "--root", str(tmp_path / "cs"), "--out", str(tmp_path / "out"),
                     "--split", "t", "--subset", "train", "--size", "48x192", "--workers", "1", "--limit", "1"])
    assert code == 0
    assert "scales x by 0.7500 and y by 0.5000" in capsys.readouterr().out
    meta = read_meta(str(tmp_path / "out" / "t"))
    assert meta.names == ["train_aachen_000000_000019"]
    assert meta.frames["train_aachen_000000_000019"]["K"][:2] == pytest.approx([CAM["fx"] * 0.75, CAM["fy"] / 2])


def test_interrupted_run_resumes_under_the_same_arguments_only(tmp_path, capsys):
    for city, stem in (("aachen", "aachen_000000_000019"), ("bochum", "bochum_000000_000313")):
        make_frame(tmp_path / "cs", subset="train", city=city, stem=stem, labels=False)
    bad = frame_file(str(tmp_path / "cs"), "leftImg8bit", "_leftImg8bit.png", "train", "bochum", "bochum_000000_000313")
    good = open(bad, "rb").read()
    open(bad, "wb").write(good[:64])

    def run(*extra):
        capsys.readouterr()
        code = cli_main(["prepare", "cityscapes", "--root", str(tmp_path / "cs"), "--out", str(tmp_path / "out"),
                         "--split", "t", "--subset", "train", "--size", "48x128", "--workers", "1", *extra])
        return code, capsys.readouterr().out

    assert run()[0] == 1
    open(bad, "wb").write(good)
    code, out = run("--crop-bottom", "0.5")
    assert code == 0 and "resuming" not in out and "(2 written, 0 resumed)" in out


ERRORS = {  # case: (make_frame arguments, folder whose file is missing, prepare arguments, texts of the error)
    "no disparity": (dict(disparity=None), "disparity", ["--gt", "disparity"],
                     ["frankfurt_000000_000294_disparity.png", "missing", "disparity_trainvaltest.zip"]),
    "no camera": (dict(camera=False), "camera", [],
                  ["frankfurt_000000_000294_camera.json", "missing", "camera_trainvaltest.zip", "0.22 m"]),
    "8-bit disparity": (dict(disparity=np.uint8), None, ["--gt", "disparity"],
                        ["frankfurt_000000_000294_disparity.png", "16-bit", "d*256 + 1"]),
    "test labels": (dict(), None, ["--subset", "test", "--labels", "gt"],
                    [os.path.join("gtFine", "test"), "private", "without --labels gt"]),
    "train_extra labels": (dict(), None, ["--subset", "train_extra", "--labels", "gt"],
                           [os.path.join("gtFine", "train_extra"), "coarse labels only", "without --labels gt",
                            "desc-train prepare panoptic"]),
    "no frames asked": (dict(), None, ["--limit", "0"], ["argument --limit: expected a positive integer, got '0'"]),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_errors_name_the_file_and_the_fix(tmp_path, capsys, case):
    make, folder, extra, texts = ERRORS[case]
    make_frame(tmp_path / "cs", **make)
    if folder:  # the folder is there, the frame's file is not
        os.makedirs(tmp_path / "cs" / folder / "val" / "frankfurt", exist_ok=True)
    assert prepare(tmp_path / "cs", tmp_path / "out", *extra) == 1
    err = capsys.readouterr().err
    for text in texts:
        assert text in err
    assert not (tmp_path / "out" / "target" / "meta.json").exists()


SPOILED = {  # case: (file, what becomes of it (None: removed), prepare arguments, the error)
    "unreadable left image": (("leftImg8bit", "_leftImg8bit.png"), "truncate", [],
                              "_leftImg8bit.png: not a readable PNG (left image): extract "
                              "leftImg8bit_trainvaltest.zip again"),
    "no label ids": (("gtFine", "_gtFine_labelIds.png"), None, ["--labels", "gt"],
                     "_gtFine_labelIds.png: missing label ids: download gtFine_trainvaltest.zip, or convert "
                     "without --labels gt"),
    "label ids of another size": (("gtFine", "_gtFine_labelIds.png"), np.zeros((64, 128), np.uint8),
                                  ["--labels", "gt"], "_gtFine_labelIds.png: label ids is 128x64 but the image is "
                                                      "256x128"),
    "no instance ids": (("gtFine", "_gtFine_instanceIds.png"), None, ["--labels", "gt"],
                        "_gtFine_instanceIds.png: missing instance ids: download gtFine_trainvaltest.zip"),
    "instance ids of another size": (("gtFine", "_gtFine_instanceIds.png"), np.zeros((64, 128), np.uint16),
                                     ["--labels", "gt"], "_gtFine_instanceIds.png: instance ids is 128x64 but"),
    "disparity of another size": (("disparity", "_disparity.png"), np.zeros((64, 128), np.uint16),
                                  ["--gt", "disparity"], "_disparity.png: disparity (stored as d*256 + 1) is "
                                                         "128x64 but the image is 256x128"),
}


@pytest.mark.parametrize("case", list(SPOILED))
def test_spoiled_files_are_named_with_the_fix(tmp_path, capsys, case):
    (kind, suffix), spoil, extra, message = SPOILED[case]
    make_frame(tmp_path / "cs")
    path = frame_file(str(tmp_path / "cs"), kind, suffix)
    if isinstance(spoil, str):  # "truncate": the PNG header is whole, the pixels are not
        with open(path, "rb") as f:
            head = f.read(64)
        with open(path, "wb") as f:
            f.write(head)
    else:
        os.remove(path)
        if spoil is not None:
            _png(path, spoil)
    assert prepare(tmp_path / "cs", tmp_path / "out", *extra) == 1
    assert message in capsys.readouterr().err


def test_missing_camera_of_train_extra_names_its_own_archive(tmp_path, capsys):
    make_frame(tmp_path / "cs", subset="train_extra", camera=False, labels=False)
    os.makedirs(tmp_path / "cs" / "camera" / "train_extra" / "frankfurt")
    assert prepare(tmp_path / "cs", tmp_path / "out", "--subset", "train_extra") == 1
    err = capsys.readouterr().err
    assert "frankfurt_000000_000294_camera.json" in err and "camera_trainextra.zip" in err


def test_missing_subset_folder_names_the_archive(tmp_path, capsys):
    make_frame(tmp_path / "cs", labels=False)
    assert prepare(tmp_path / "cs", tmp_path / "out", "--subset", "train") == 1
    err = capsys.readouterr().err
    assert os.path.join("leftImg8bit", "train") in err and "leftImg8bit_trainvaltest.zip" in err


@pytest.mark.parametrize("argument", [["--subset", "val,bogus"], ["--crop-bottom", "1"], ["--gt", "lidar"],
                                      ["--labels", "coarse"]])
def test_bad_arguments_are_refused(tmp_path, capsys, argument):
    assert prepare(tmp_path, tmp_path / "out", *argument) == 1
    assert capsys.readouterr().err.startswith(f"desc-train prepare cityscapes: error: argument {argument[0]}: ")


def test_a_missing_root_is_named(tmp_path, capsys):
    assert prepare(tmp_path / "nowhere", tmp_path / "out") == 1
    assert f"{tmp_path / 'nowhere'}: no such folder (--root is the folder the Cityscapes archives" in \
        capsys.readouterr().err


def test_crop_fraction_and_png_header(tmp_path):
    assert cityscapes.parse_crop("0") == 0.0 and cityscapes.parse_crop("0.25") == 0.25
    assert cityscapes.parse_crop("0.999") == 0.999
    for text in ("1", "-0.1", "x", "nan"):
        with pytest.raises(argparse.ArgumentTypeError, match=rf"--crop-bottom is a fraction of the height in "
                                                            rf"\[0, 1\), got '{text}'"):
            cityscapes.parse_crop(text)
    png = tmp_path / "a.png"
    cv2.imwrite(str(png), np.zeros((7, 300), np.uint8))
    assert cityscapes.png_size(str(png)) == (7, 300)
    for name, data in {"short.png": png.read_bytes()[:23], "jpeg.png": b"\xff\xd8" + png.read_bytes()[2:],
                       "no-ihdr.png": png.read_bytes()[:12] + b"IDAT" + png.read_bytes()[16:]}.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(cityscapes.DataError, match=f"{tmp_path / name}: not a PNG file"):
            cityscapes.png_size(str(tmp_path / name))
    with pytest.raises(cityscapes.DataError, match=f"{tmp_path / 'none.png'}: unreadable"):
        cityscapes.png_size(str(tmp_path / "none.png"))


def test_subsets_and_their_archives():
    assert cityscapes.parse_subsets("val") == ["val"] and cityscapes.parse_subsets(" train, val ,") == ["train", "val"]
    assert cityscapes.archive("leftImg8bit", "train_extra") == "leftImg8bit_trainextra"
    assert cityscapes.archive("leftImg8bit", "val") == "leftImg8bit_trainvaltest"
    with pytest.raises(argparse.ArgumentTypeError, match=r"a subset is named twice in 'val,val'"):
        cityscapes.parse_subsets("val,val")
    with pytest.raises(argparse.ArgumentTypeError,
                       match=rf"subsets are {', '.join(cityscapes.SUBSETS)} \(comma-separated\), got 'val;train'"):
        cityscapes.parse_subsets("val;train")


def test_missing_train_extra_folder_names_its_own_archive(tmp_path, capsys):
    make_frame(tmp_path / "cs", labels=False)
    assert prepare(tmp_path / "cs", tmp_path / "out", "--subset", "train_extra") == 1
    err = capsys.readouterr().err
    looked = " or ".join(os.path.join(str(tmp_path / "cs"), c, "train_extra")
                         for c in ("leftImg8bit", os.path.join("leftImg8bit_trainextra", "leftImg8bit")))
    assert f"{looked}: missing: download leftImg8bit_trainextra.zip and extract it into {tmp_path / 'cs'}" in err


def test_native_size_is_recorded_as_such(tmp_path):
    make_frame(tmp_path / "cs", labels=False)
    assert cli_main(["prepare", "cityscapes", "--root", str(tmp_path / "cs"), "--out", str(tmp_path / "out"),
                     "--split", "target", "--subset", "val", "--size", "native", "--workers", "1"]) == 0
    meta = read_meta(str(tmp_path / "out" / "target"))
    assert meta.dataset["args"]["size"] == "native" and tuple(meta.image_size) == (KEPT, W0)


def test_camera_json_is_checked(tmp_path):
    path = str(tmp_path / "c_camera.json")

    def camera(**changes):
        cam = {"intrinsic": dict(fx=400.0, fy=410.0, u0=0.0, v0=60.0), "extrinsic": dict(baseline=0.2)}
        for key, value in changes.items():
            part = "extrinsic" if key == "baseline" else "intrinsic"
            if value is None:
                del cam[part][key]
            else:
                cam[part][key] = value
        with open(path, "w") as f:
            json.dump(cam, f)
        return cityscapes.read_camera(path, "camera_trainvaltest")

    assert camera() == ([400.0, 410.0, 0.0, 60.0], 0.2)  # a principal point at 0 is fine
    assert camera(fx=1.0, fy=1.0)[0][:2] == [1.0, 1.0]
    for bad in (dict(fx=0.0), dict(fy=-1.0), dict(baseline=0.0)):
        with pytest.raises(cityscapes.DataError, match=r"c_camera\.json: focal lengths \[.*\] and baseline .* must be "
                                                       r"positive: extract camera_trainvaltest\.zip again$"):
            camera(**bad)
    with pytest.raises(cityscapes.DataError, match=r"c_camera\.json: expected a camera json with intrinsic fx, fy, "
                                                   r"u0, v0 and extrinsic baseline \(KeyError: 'v0'\): extract "
                                                   r"camera_trainvaltest\.zip again$"):
        camera(v0=None)


@pytest.mark.parametrize("subset, text", [("test", "gtFine/test labels are placeholders"),
                                          ("train_extra", "train_extra has coarse labels only")])
def test_private_labels_are_refused_naming_the_folder(tmp_path, subset, text):
    with pytest.raises(cityscapes.DataError, match="^" + re.escape(os.path.join(str(tmp_path), "gtFine", subset))
                       + ": " + re.escape(text)):
        cityscapes.refuse_private_labels(str(tmp_path), ["val", subset])
    cityscapes.refuse_private_labels(str(tmp_path), ["train", "val"])


@pytest.mark.parametrize("changes", [dict(fx=float("nan")), dict(fy=float("inf")), dict(baseline=float("nan"))])
def test_camera_json_of_non_finite_focal_or_baseline_is_refused(tmp_path, changes):
    """json reads NaN and Infinity, which meta.json must not hold: refused as a
    focal or baseline of 0 is, naming the camera json."""
    path = str(tmp_path / "c_camera.json")
    cam = {"intrinsic": dict(fx=400.0, fy=410.0, u0=0.0, v0=60.0), "extrinsic": dict(baseline=0.2)}
    for key, value in changes.items():
        cam["extrinsic" if key == "baseline" else "intrinsic"][key] = value
    with open(path, "w") as f:
        json.dump(cam, f)
    with pytest.raises(cityscapes.DataError, match=r"c_camera\.json: focal lengths \[.*\] and baseline .* must be "
                                                   r"positive: extract camera_trainvaltest\.zip again$"):
        cityscapes.read_camera(path, "camera_trainvaltest")
    cam["intrinsic"].update(fx=400.0, fy=410.0, u0=float("nan"))
    cam["extrinsic"]["baseline"] = 0.2
    with open(path, "w") as f:
        json.dump(cam, f)
    with pytest.raises(cityscapes.DataError, match=r"c_camera\.json: principal point u0, v0 \[nan, 60\.0\] must be "
                                                   r"finite and not negative"):
        cityscapes.read_camera(path, "camera_trainvaltest")
