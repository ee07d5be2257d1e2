"""DepthDataset on small hand-made splits: where a random crop may fall, the
instance limit and its message, the per-frame focal, a split without frames."""
import os
import re

import numpy as np
import pytest
import torch

from desc_train.data.dataset import Augment, DepthDataset
from desc_train.data.layout import DataError, SplitMeta, write_meta, write_sample

H, W = 8, 12


def make_split(path, instance=None, frames=None, focal=30.0, rgb=None, semantic=None):
    """One frame "a" whose depth is 1 + 16 y + x metres (so a crop's first pixel
    tells where it was cut), class 0 everywhere (or `semantic`), and `instance`
    (0 = none)."""
    y, x = np.mgrid[:H, :W]
    depth = (1 + 16 * y + x).astype(np.float32)
    write_sample(path, "a", np.zeros((H, W, 3), np.uint8) if rgb is None else rgb, depth,
                 np.zeros((H, W), np.uint8) if semantic is None else semantic,
                 np.zeros((H, W), np.int64) if instance is None else instance)
    write_meta(path, SplitMeta("source", [f"c{i}" for i in range(8)], [0], focal, [H, W],
                               frames={"a": {}} if frames is None else frames))
    return path


def test_random_crop_falls_at_every_offset_and_only_there(tmp_path):
    """crop (5, 8) of 8x12: every top 0..3 and left 0..4 occurs over epochs, none
    outside, and each crop is the frame's pixels at its offset."""
    split = make_split(str(tmp_path / "s"))
    ds = DepthDataset(split, augment=Augment(crop=(5, 8)))
    full = DepthDataset(split)[0]["depth"]
    seen = set()
    for epoch in range(300):
        ds.epoch = epoch
        depth = ds[0]["depth"]
        assert depth.shape == (1, 5, 8)
        top, left = divmod(int(depth[0, 0, 0]) - 1, 16)
        assert torch.equal(depth, full[:, top:top + 5, left:left + 8])
        seen.add((top, left))
    assert {t for t, _ in seen} == set(range(4)) and {left for _, left in seen} == set(range(5))


def test_instances_up_to_max_instances(tmp_path):
    """Instance id 0 is no instance; max_instances (32 by default) instances fit,
    one more is refused naming the frame's instance map (counted as instances
    whether or not the frame has background)."""
    ids = np.zeros((H, W), np.int64)
    ids.reshape(-1)[:32] = np.arange(1, 33)  # 32 instances, the rest background
    item = DepthDataset(make_split(str(tmp_path / "fits"), ids))[0]
    assert item["instance_ids"].shape == (H, W) and item["instance_class"].shape == (32,)
    assert sorted(item["instance_ids"].unique().tolist()) == list(range(-1, 32))
    assert (item["instance_ids"].reshape(-1)[32:] == -1).all()
    ids = (np.arange(H * W) % 33 + 1).reshape(H, W)  # 33 instances over every pixel: no background to count
    split = make_split(str(tmp_path / "over"), ids)
    with pytest.raises(DataError, match="^" + re.escape(os.path.join(split, "instance", "a.png")) +
                       ": 33 instances, more than max_instances=32$"):
        DepthDataset(split)[0]
    assert DepthDataset(split, max_instances=33)[0]["instance_class"].shape == (33,)


def test_frame_focal_over_the_split_focal(tmp_path):
    split = make_split(str(tmp_path / "s"), frames={"a": {"focal": 50.0}}, focal=30.0)
    assert DepthDataset(split)[0]["focal"].item() == 50.0


def test_split_without_frames_is_refused(tmp_path):
    split = str(tmp_path / "empty")
    write_meta(split, SplitMeta("source", ["x"], [0], 30.0, [H, W], frames={}))
    with pytest.raises(DataError, match="^" + re.escape(os.path.join(split, "meta.json")) + ": lists no frames$"):
        DepthDataset(split)


def test_item_values_image_scale_and_instance_classes(tmp_path):
    """The image is rgb / 255 in (3, H, W); each slot's class is the most frequent
    label over its pixels (a one-pixel instance too), -1 for unused slots."""
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[0, 0] = (255, 51, 0)  # red, green, blue
    semantic = np.zeros((H, W), np.uint8)
    ids = np.zeros((H, W), np.int64)
    ids[2:5, 1:4] = 4  # nine pixels: six of class 3, three of class 5
    semantic[2:4, 1:4], semantic[4, 1:4] = 3, 5
    ids[6, 9] = 9  # one pixel, of the frame's largest class
    semantic[6, 9] = 7
    item = DepthDataset(make_split(str(tmp_path / "s"), ids, rgb=rgb, semantic=semantic))[0]
    assert item["image"].shape == (3, H, W) and item["image"][:, 0, 0].tolist() == pytest.approx([1.0, 0.2, 0.0])
    assert item["image"].dtype == torch.float32 and item["image"].sum().item() == pytest.approx(1.2)
    assert item["instance_class"].tolist() == [3, 7] + [-1] * 30
    assert item["instance_ids"][3, 2].item() == 0 and item["instance_ids"][6, 9].item() == 1


def test_class_ids_outside_the_split_s_classes_are_refused_naming_the_file(tmp_path):
    """A frame whose semantic map holds ids past the split's classes (8 here: 0-7)
    stops with one line naming the file and the ids, not a traceback deep in a
    loss; 255 (ignore) is no class and fine."""
    semantic = np.zeros((H, W), np.uint8)
    semantic[0, :3] = 255
    assert (DepthDataset(make_split(str(tmp_path / "ok"), semantic=semantic))[0]["semantic"][0, :3] == -1).all()
    semantic[1, 1], semantic[2, 2] = 8, 40
    split = make_split(str(tmp_path / "bad"), semantic=semantic)
    with pytest.raises(DataError) as err:
        DepthDataset(split)[0]
    assert str(err.value) == (f"{os.path.join(split, 'semantic', 'a.png')}: class ids 8, 40 outside the split's 8 "
                              f"classes (0-7; 255 = ignore)")
