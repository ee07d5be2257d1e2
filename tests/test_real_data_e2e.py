"""From fabricated real-format trees to a table: Virtual KITTI 1.3.1 as the source,
KITTI raw as the target and its test split (Eigen ground-truth npz, two image sizes),
Detectron2 panoptic predictions for both training splits, `prepare check`, the
three stages of `desc-train train`, and `desc-train evaluate`, whose metrics must
equal an independent NumPy implementation of the protocol."""
import json
import os

import numpy as np
import pytest
import torch

import protocol_numpy
from desc_train.cli import main as cli
from desc_train.data import DepthDataset
from desc_train.data.layout import read_meta
from desc_train.train import load_g_rgb
from test_prepare_kitti import FRAMES, SIZES, make_tree, monodepth2_list, name
from test_prepare_vkitti import make_v1

SIZE = "48x160"  # both sources are about 3.3:1
TINY = ["width=4", "batch_size=2", "iters_source=1", "iters_sem=1", "iters_joint=2", "log_every=1"]


def write_predictions(split_dir, out):
    """A Detectron2 panoptic prediction per frame: road (stuff), sky (stuff) and one
    car (thing, score 0.95), at the split's size."""
    os.makedirs(out, exist_ok=True)
    H, W = read_meta(split_dir).image_size
    for i, frame in enumerate(read_meta(split_dir).names):
        seg = np.full((H, W), 1, np.int32)  # sky
        seg[H // 2:] = 2  # road
        top, left = H // 3 + i % 3, W // 4 + 5 * i
        seg[top:top + H // 3, left:left + W // 6] = 3  # the car
        segments = [dict(id=1, isthing=False, category_id=40, area=int((seg == 1).sum())),  # sky-other-merged
                    dict(id=2, isthing=False, category_id=21, area=int((seg == 2).sum())),  # road
                    dict(id=3, isthing=True, score=0.95, category_id=2, instance_id=0)]  # car
        np.savez_compressed(os.path.join(out, frame + ".npz"), panoptic_seg=seg,
                            segments_info=np.array(json.dumps(segments)))


def gt_npz(kitti_root, path):
    """The Eigen export's format: an object array of native-size maps in list order."""
    rng = np.random.default_rng(5)
    maps = []
    for date, _, _ in FRAMES:
        gt = rng.uniform(0.5, 90, SIZES[date]).astype(np.float32)
        gt[rng.random(gt.shape) < 0.8] = 0  # sparse, as projected LiDAR
        maps.append(gt)
    data = np.empty(len(maps), object)
    data[:] = maps
    np.savez_compressed(path, data=data)
    return maps


def test_vkitti_to_kitti_from_trees_to_table(tmp_path, capsys):
    vk = make_v1(str(tmp_path / "vkitti"), worlds=("0001", "0002"), frames=2)
    make_tree(tmp_path / "kitti", scans=False)
    kitti = str(tmp_path / "kitti")
    root = str(tmp_path / "prepared")
    lst = str(monodepth2_list(tmp_path / "eigen_test.txt"))
    gts = gt_npz(kitti, str(tmp_path / "gt_depths.npz"))
    prep = ["--out", root, "--size", SIZE, "--workers", "1"]
    assert cli(["prepare", "vkitti", "--root", vk, "--split", "source_train", "--allow-size", *prep]) == 0
    assert cli(["prepare", "kitti", "--root", kitti, "--split", "target_train", "--list", lst, *prep]) == 0
    assert cli(["prepare", "kitti", "--root", kitti, "--split", "target_test", "--list", lst,
                "--gt-npz", str(tmp_path / "gt_depths.npz"), *prep]) == 0
    assert cli(["prepare", "check", root]) == 0
    assert "no semantic and instance maps yet: add them with desc-train prepare segment (or prepare panoptic)" in capsys.readouterr().out
    for split in ("source_train", "target_train"):
        write_predictions(os.path.join(root, split), str(tmp_path / "preds" / split))
        assert cli(["prepare", "panoptic", "--predictions", str(tmp_path / "preds" / split), "--out", root,
                    "--split", split, "--format", "detectron2", "--workers", "1"]) == 0
    capsys.readouterr()
    assert cli(["prepare", "check", root]) == 0
    assert capsys.readouterr().out.strip().endswith(f"{root}: ok")

    run = str(tmp_path / "run")
    assert cli(["train", *[a for s in TINY + [f"data={root}", f"out={run}"] for a in ("--set", s)]]) == 0
    steps = [json.loads(line) for line in open(os.path.join(run, "log.jsonl"))]
    assert [s["stage"] for s in steps] == ["source_only", "semantic", "joint", "joint"]
    assert steps[-1]["instance_prior"] > 0 and steps[-1]["consistency"] > 0  # the panoptic labels reach the terms

    # evaluate, against the protocol in NumPy on the npz itself (not the converter's gt/)
    net = load_g_rgb(os.path.join(run, "joint.pt"))
    ds = DepthDataset(os.path.join(root, "target_test"))
    assert ds.names == sorted(name(f) for f in FRAMES)
    by_name = {name(f): g for f, g in zip(FRAMES, gts)}
    with torch.no_grad():
        preds = net(torch.stack([ds[i]["image"] for i in range(len(ds))]))[0][:, 0].numpy()
    for median in (False, True):
        out = str(tmp_path / f"eval_{median}.json")
        assert cli(["evaluate", os.path.join(run, "joint.pt"), os.path.join(root, "target_test"), "--json", out]
                   + ["--median-scaling"] * median) == 0
        result = json.load(open(out))
        protocol = result["protocol"]
        assert (protocol["gt_kind"], protocol["gt_size"], protocol["crop"], protocol["median_scaling"]) == \
            ("velodyne_x", "native", "garg", median)
        assert protocol["list_sha256"] == read_meta(os.path.join(root, "target_test")).eval["list_sha256"]
        for (lo, hi), key in (((0.001, 80.0), "0.001-80m"), ((1.0, 50.0), "1-50m")):
            expected = protocol_numpy.evaluate(preds, [by_name[n] for n in ds.names], lo=lo, hi=hi,
                                               median_scaling=median, crop_name="garg")
            for k, v in expected.items():
                assert result["metrics"][key][k] == pytest.approx(v, rel=1e-6, abs=1e-6), (median, key, k)
    train_results = json.load(open(os.path.join(run, "results.json")))
    assert train_results["median_scaling_on"]["metrics"] == result["metrics"]
