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


def make_split(path, instance=None, frames=None, focal=30.0):
    """One frame "a" whose depth is 1 + 16 y + x metres (so a crop's first pixel
    tells where it was cut), class 0 everywhere, and `instance` (0 = none)."""
    y, x = np.mgrid[:H, :W]
    depth = (1 + 16 * y + x).astype(np.float32)
    write_sample(path, "a", np.zeros((H, W, 3), np.uint8), depth, np.zeros((H, W), np.uint8),
                 np.zeros((H, W), np.int64) if instance is None else instance)
    write_meta(path, SplitMeta("source", ["x"], [0], focal, [H, W], frames={"a": {}} if frames is None else frames))
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
