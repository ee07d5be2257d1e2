"""desc_train.evaluate on real-data test splits: ground truth at its native size
(several sizes in one split), bilinear upsampling, the Garg and Cityscapes crops,
both caps, NumPy's median, held against an independent NumPy implementation."""
import json
import os

import numpy as np
import pytest
import torch

import protocol_numpy
from desc_train.cli import main as cli
from desc_train.data import DepthDataset
from desc_train.data.layout import SplitMeta, write_gt, write_meta, write_sample
from desc_train.evaluate import (cityscapes_crop_mask, evaluate_split, finest_depth, frame_metrics, median,
                                 protocol_of, results_table)
from desc_train.models import DepthUNet

NATIVE = [(75, 248), (74, 245), (75, 248)]  # two sizes in one split, as KITTI's dates
EVAL = {"gt_kind": "velodyne_x", "crop": "garg", "caps": [[0.001, 80], [1, 50]], "list": "test_files.txt",
        "list_sha256": "ab" * 32}


def make_test_split(path, seed=0):
    rng = np.random.default_rng(seed)
    frames = {}
    for i, (H, W) in enumerate(NATIVE):
        name = f"frame{i}"
        write_sample(path, name, rng.integers(0, 256, (32, 96, 3), dtype=np.uint8))
        gt = rng.uniform(0.5, 90, (H, W)).astype(np.float32)
        gt[rng.random((H, W)) < 0.7] = 0  # sparse, as projected LiDAR
        write_gt(path, name, gt)
        frames[name] = {"focal": 30.0, "orig_size": [H, W]}
    write_meta(path, SplitMeta("target", ["x"], [], 30.0, [32, 96], frames=frames, has_depth=False,
                               has_labels=False, eval=EVAL))
    return path


@pytest.fixture
def split(tmp_path):
    return make_test_split(str(tmp_path / "target_test"))


def net_predictions(net, path):
    ds = DepthDataset(path)
    with torch.no_grad():
        preds = net(torch.stack([ds[i]["image"] for i in range(len(ds))]))[0][:, 0].numpy()
    gts = [np.load(f"{path}/gt/{n}.npy") for n in ds.names]
    return preds, gts


@pytest.mark.parametrize("median_scaling", [False, True], ids=["plain", "median"])
def test_native_size_protocol_matches_numpy(split, median_scaling):
    torch.manual_seed(0)
    net = DepthUNet(3, 4).eval()
    result = evaluate_split(net, split, median_scaling=median_scaling)
    preds, gts = net_predictions(net, split)
    assert result["protocol"]["gt_size"] == "native" and result["protocol"]["crop"] == "garg"
    for (lo, hi), key in (((0.001, 80), "0.001-80m"), ((1, 50), "1-50m")):
        expected = protocol_numpy.evaluate(preds, gts, lo=lo, hi=hi, median_scaling=median_scaling,
                                           crop_name="garg")
        assert result["images"][key] == 3
        for k, v in expected.items():
            assert result["metrics"][key][k] == pytest.approx(v, rel=1e-6, abs=1e-6), (key, k)


def test_crop_and_caps_reach_the_metrics(split):
    torch.manual_seed(0)
    net = DepthUNet(3, 4).eval()
    garg = evaluate_split(net, split)["metrics"]
    none = evaluate_split(net, split, crop=None)["metrics"]
    assert garg["0.001-80m"]["abs_rel"] != pytest.approx(none["0.001-80m"]["abs_rel"])
    assert garg["0.001-80m"]["abs_rel"] != pytest.approx(garg["1-50m"]["abs_rel"])
    one = evaluate_split(net, split, caps=[(2.0, 40.0)])
    assert list(one["metrics"]) == ["2-40m"]


def test_median_is_numpys():
    x = torch.tensor([4.0, 1.0, 3.0, 2.0])
    assert median(x).item() == 2.5 == np.median(x.numpy())
    assert median(torch.tensor([5.0, 1.0, 3.0])).item() == 3.0
    # Median scaling with an even count of valid pixels: the ratio uses both middle values.
    gt = torch.tensor([[1.0, 2.0, 3.0, 10.0]])
    pred = torch.tensor([[1.0, 1.0, 1.0, 1.0]])
    m = frame_metrics(pred, gt, median_scaling=True)
    p = np.full(4, 2.5)
    assert m["abs_rel"] == pytest.approx(np.mean(np.abs(gt.numpy()[0] - p) / gt.numpy()[0]), rel=1e-7)


def test_cityscapes_crop_is_manydepths_on_768x2048():
    mask = cityscapes_crop_mask(768, 2048)
    expected = torch.zeros(768, 2048, dtype=torch.bool)
    expected[256:, 192:1856] = True
    assert mask.dtype == torch.bool and torch.equal(mask, expected)
    assert np.array_equal(mask.numpy(), protocol_numpy.crop("cityscapes", 768, 2048))
    # The same fractions at any size: rows from H/3, columns [3W/32, 29W/32).
    big = cityscapes_crop_mask(3072, 16384)
    assert big[1024:, 1536:14848].all() and big.sum() == (3072 - 1024) * (14848 - 1536)


def test_evaluate_command_states_the_protocol(split, tmp_path, capsys):
    net = DepthUNet(3, 4)  # evaluate reads G_rgb alone from a checkpoint
    torch.save({"g_rgb": net.state_dict(), "g_sem": {}, "g_h": {}, "config": {"width": 4}}, tmp_path / "c.pt")
    out = tmp_path / "r.json"
    assert cli(["evaluate", str(tmp_path / "c.pt"), split, "--median-scaling", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "velodyne_x at native size" in text and "crop garg" in text and "median scaling on" in text
    assert "test_files.txt sha256 abababababab" in text and "| 1-50m | 3 |" in text
    saved = json.loads(out.read_text())
    assert saved["protocol"]["median_scaling"] is True and set(saved["metrics"]) == {"0.001-80m", "1-50m"}


def test_evaluate_command_options_reach_the_evaluation(split, tmp_path, capsys):
    from desc_train.config import Config

    torch.manual_seed(0)
    net = DepthUNet(3, Config.width)
    # A checkpoint without a config is read at the default width.
    torch.save({"g_rgb": net.state_dict(), "g_sem": {}, "g_h": {}}, tmp_path / "c.pt")
    args = ["evaluate", str(tmp_path / "c.pt"), split, "--device", "cpu", "--json"]
    assert cli(args + [str(tmp_path / "a.json"), "--cap", "1,20", "--cap", "0.5,30", "--crop", "none"]) == 0
    text = capsys.readouterr().out
    assert "| 1-20m |" in text and "| 0.5-30m |" in text and "crop garg" not in text
    assert cli(args + [str(tmp_path / "b.json"), "--cap", "1,20"]) == 0
    a, b = (json.loads((tmp_path / n).read_text()) for n in ("a.json", "b.json"))
    assert set(a["metrics"]) == {"1-20m", "0.5-30m"} and set(b["metrics"]) == {"1-20m"}
    assert a["protocol"]["crop"] is None and b["protocol"]["crop"] == "garg"
    assert a["metrics"]["1-20m"] != b["metrics"]["1-20m"]  # the crop leaves out pixels
    assert "crop garg" in capsys.readouterr().out


def test_crop_masks_are_made_on_the_device(device):
    from desc_train.evaluate import garg_crop_mask

    for make in (garg_crop_mask, cityscapes_crop_mask):
        mask = make(48, 160, device=device)
        assert mask.device.type == torch.device(device).type and mask.dtype == torch.bool and mask.any()


def test_g_rgb_is_loaded_onto_the_device_in_eval_mode(device, tmp_path):
    from desc_train.train import CheckpointError, load_g_rgb

    torch.save({"g_rgb": DepthUNet(3, 4).state_dict(), "g_sem": {}, "g_h": {}, "config": {"width": 4}},
               tmp_path / "c.pt")
    net = load_g_rgb(str(tmp_path / "c.pt"), device)
    assert {p.device.type for p in net.parameters()} == {torch.device(device).type} and not net.training
    # Weights of another width: refused naming the file (torch's own message lists every tensor).
    torch.save({"g_rgb": DepthUNet(3, 8).state_dict(), "g_sem": {}, "g_h": {}, "config": {"width": 4}},
               tmp_path / "wide.pt")
    with pytest.raises(CheckpointError, match=r"wide\.pt: its g_rgb weights do not fit the network \(another width\?\)$"):
        load_g_rgb(str(tmp_path / "wide.pt"), device)


def test_predictions_are_floored_at_a_millimetre():
    gt = torch.tensor([[2.0, 4.0]])
    m = frame_metrics(torch.zeros(1, 2), gt)  # then clamped into the cap's minimum, 1e-3
    assert np.isfinite(m["rmse_log"]) and m["rmse_log"] == pytest.approx(np.sqrt(np.mean(np.log([2e3, 4e3]) ** 2)))
    m = frame_metrics(torch.zeros(1, 2), gt, median_scaling=True)  # 0 / 0 without the floor
    assert m["abs_rel"] == pytest.approx((1 / 2 + 1 / 4) / 2)  # both scaled to median(gt) = 3


def test_frames_of_any_size_are_evaluated(tmp_path):
    """A split kept at its native size (not a multiple of 16) is padded for the
    network and the prediction cropped back to the frame."""
    torch.manual_seed(0)
    net = DepthUNet(3, 4).eval()
    for H, W in ((37, 90), (32, 90), (37, 96)):  # both sides, the width only, the height only
        images = torch.rand(2, 3, H, W)
        with torch.no_grad():
            out = finest_depth(net, images)
            padded = net(torch.nn.functional.pad(images, (0, -W % 16, 0, -H % 16), mode="replicate"))[0]
        assert out.shape == (2, 1, H, W) and torch.equal(out, padded[..., :H, :W])
    split = str(tmp_path / "native")
    write_sample(split, "a", np.zeros((37, 90, 3), np.uint8), np.full((37, 90), 5.0, np.float32))
    write_meta(split, SplitMeta("target", ["x"], [], 30.0, [37, 90], frames={"a": {}}, has_labels=False))
    assert evaluate_split(net, split)["images"]["0.001-80m"] == 1


def test_protocol_record_and_its_table(split, tmp_path):
    """The protocol written beside the figures: the split's eval record with the
    caller's choices over it, the defaults where a split has none, and the
    table's heading lines that state it."""
    p = protocol_of(split, median_scaling=False)
    assert p == dict(split=os.path.abspath(split), frames=3, gt_kind="velodyne_x", gt_size="native", crop="garg",
                     caps=[[0.001, 80], [1, 50]], median_scaling=False, list="test_files.txt", list_sha256="ab" * 32)
    assert protocol_of(split, median_scaling=True, caps=[(2.0, 30.0)], crop=None) == dict(
        p, median_scaling=True, caps=[[2.0, 30.0]], crop=None)
    metrics = {k: 0.125 * (i + 1) for i, k in enumerate(("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3"))}
    table = results_table(dict(protocol=p, metrics={"0.001-80m": metrics}, images={"0.001-80m": 3}))
    assert table.split("\n") == [
        f"split {os.path.abspath(split)} (3 frames, list test_files.txt sha256 abababababab)",
        "ground truth velodyne_x at native size; crop garg; median scaling off",
        "",
        "| cap | images | abs_rel | sq_rel | rmse | rmse_log | a1 | a2 | a3 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        "| 0.001-80m | 3 | 0.1250 | 0.2500 | 0.3750 | 0.5000 | 0.6250 | 0.7500 | 0.8750 |"]

    plain = str(tmp_path / "plain")  # no eval record, depth stored with the frames
    write_sample(plain, "a", np.zeros((16, 16, 3), np.uint8), np.full((16, 16), 5.0, np.float32))
    write_meta(plain, SplitMeta("target", ["x"], [], 30.0, [16, 16], frames={"a": {}}, has_labels=False))
    q = protocol_of(plain, median_scaling=True)
    assert q == dict(split=os.path.abspath(plain), frames=1, gt_kind="stored depth", gt_size="stored", crop=None,
                     caps=[[0.001, 80.0], [1.0, 50.0]], median_scaling=True, list=None, list_sha256=None)
    write_meta(plain, SplitMeta("target", ["x"], [], 30.0, [16, 16], frames={"a": {}}, has_labels=False,
                                eval={"caps": [[0.5, 20.0]]}))
    assert protocol_of(plain, median_scaling=True) == dict(q, caps=[[0.5, 20.0]])  # the split's own caps
    assert results_table(dict(protocol=q, metrics={}, images={})).split("\n")[:2] == [
        f"split {os.path.abspath(plain)} (1 frames)",
        "ground truth stored depth at stored size; crop none; median scaling on"]
