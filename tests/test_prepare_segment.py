"""desc-train prepare segment: a tiny Mask2Former with our 133 classes and random weights (its class head made
confident), saved to a folder, labels prepared splits; prepare check and a training step take the result. Also
the refusals: another class list, no transformers, a torchvision of another torch, the weights out of reach."""
import json
import os
import sys
import types

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import desc_ops
from desc_train.cli import main as cli
from desc_train.data import coco
from desc_train.data.dataset import read_certainty_logits
from desc_train.data.layout import SplitMeta, read_meta, read_sample, write_meta, write_sample
from desc_train.data.mask2former import panoptic_inference
from desc_train.data.prepare.labels import RECORDS, Segment, Settings, keep_largest, label_maps
from test_mask2former import semseg_numpy

H, W = 48, 160
CAR = coco.class_id("car")
TINY_TRAIN = ["width=4", "batch_size=2", "iters_source=1", "iters_sem=1", "iters_joint=1", "log_every=1"]


def tiny_config(classes):
    from transformers import Mask2FormerConfig, SwinConfig

    swin = SwinConfig(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2],
                      out_features=["stage1", "stage2", "stage3", "stage4"])
    return Mask2FormerConfig(backbone_config=swin, num_queries=20, hidden_dim=32, mask_feature_size=32,
                             feature_size=32, encoder_feedforward_dim=64, dim_feedforward=64, decoder_layers=2,
                             encoder_layers=1, num_attention_heads=2, id2label=dict(enumerate(classes)),
                             label2id={c: i for i, c in enumerate(classes)})


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny model's operations are too small to share: on a busy 2-core machine two threads make its
    forward pass 50-100 times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    pytest.importorskip("transformers")
    from transformers import Mask2FormerForUniversalSegmentation

    torch.manual_seed(0)
    model = Mask2FormerForUniversalSegmentation(tiny_config(coco.CLASSES))
    # Random weights score every class about 1/134 and give every query much the same mask, so that the overlap
    # rule drops them all: make every query a confident car (probability e^8 / (e^8 + 133) = 0.96) with one
    # mask, which the first query then takes, where it is at least 0.5 (a part of each frame that depends on it).
    embedder = next(m for n, m in model.named_modules() if n.endswith("mask_predictor.mask_embedder"))
    last = [m for m in embedder.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        model.class_predictor.weight.zero_()
        model.class_predictor.bias.zero_()
        model.class_predictor.bias[CAR] = 8.0
        last.weight.zero_()
        last.bias.normal_()
    folder = str(tmp_path_factory.mktemp("mask2former"))
    model.save_pretrained(folder)
    return folder


def write_split(root, split, frames=3, depth=False, seed=0):
    """A prepared split without labels, as the converters leave it: smooth random images (and depth)."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, split)
    for i in range(frames):
        rgb = cv2.resize(rng.integers(0, 256, (6, 20, 3), dtype=np.uint8), (W, H), interpolation=cv2.INTER_CUBIC)
        write_sample(folder, f"f{i}", rgb=rgb, depth=rng.uniform(2, 60, (H, W)).astype(np.float32) if depth else None)
    write_meta(folder, SplitMeta(domain="source" if depth else "target", classes=[], instance_classes=[],
                                 focal=100.0, image_size=[H, W], has_depth=depth, has_labels=False,
                                 frames={f"f{i}": dict(focal=100.0, src=f"d/{i}.png") for i in range(frames)}))
    return folder


def segment(root, split, model, *extra):
    return cli(["prepare", "segment", "--out", root, "--split", split, "--model", model, "--device", "cpu", *extra])


def expected_labels(model, split_dir, name, thresh=0.8, size=(H, W)):
    """The frame's maps and scores by hand: the model on the frame alone (at `size`), ImageNet-normalised, the
    masks resized to the split's size, the package's fusion (tested against NumPy in test_mask2former.py)."""
    rgb = cv2.cvtColor(cv2.imread(os.path.join(split_dir, "rgb", name + ".png")), cv2.COLOR_BGR2RGB)
    rgb = cv2.resize(rgb, size[::-1], interpolation=cv2.INTER_LINEAR)
    x = (torch.from_numpy(rgb).permute(2, 0, 1).float() / 255 - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) \
        / torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    with torch.no_grad():
        out = model(pixel_values=x[None])
    masks = F.interpolate(out.masks_queries_logits, size=(H, W), mode="bilinear", align_corners=False)[0]
    seg, found = panoptic_inference(out.class_queries_logits[0], masks, num_things=coco.NUM_THINGS,
                                    score_thresh=thresh)
    settings = Settings((H, W), thresh, tuple(range(coco.NUM_THINGS)), 32)
    semantic, instance, _ = label_maps(seg.numpy(), [Segment(s.id, s.label, s.label < 80, s.score, False)
                                                     for s in found], settings, name)
    scores = semseg_numpy(out.class_queries_logits[0].numpy(), masks.numpy())
    return semantic, keep_largest(instance, 32)[0], scores


@pytest.fixture(scope="module")
def labelled(model_dir, tmp_path_factory):
    """A root whose source and target splits prepare segment labelled (the target with --logits)."""
    root = str(tmp_path_factory.mktemp("data"))
    write_split(root, "source_train", depth=True, seed=1)
    write_split(root, "target_train", seed=2)
    assert segment(root, "source_train", model_dir, "--instance-classes", "vehicles") == 0
    assert segment(root, "target_train", model_dir, "--batch", "2", "--logits") == 0
    return root


def test_the_maps_are_the_fusion_of_each_frame(labelled, model_dir):
    split = os.path.join(labelled, "target_train")
    meta = read_meta(split)
    assert meta.has_labels and meta.classes == coco.CLASSES and meta.instance_classes == list(range(80))
    source = meta.label_source
    assert source["kind"] == "segment" and source["model"] == os.path.abspath(model_dir)
    assert (source["input_size"], source["score_thresh"], source["overlap_thresh"], source["certainty"]) == \
        ([H, W], 0.8, 0.8, True)
    assert source["transformers"] == __import__("transformers").__version__
    from transformers import Mask2FormerForUniversalSegmentation

    model = Mask2FormerForUniversalSegmentation.from_pretrained(model_dir).eval()
    instances = 0
    for name in meta.names:  # batches of 2 over 3 frames: a frame mixed up within a batch shows here
        semantic, instance, scores = expected_labels(model, split, name)
        s = read_sample(split, name, meta)
        np.testing.assert_array_equal(s["semantic"], np.where(semantic == 255, -1, semantic.astype(np.int64)))
        np.testing.assert_array_equal(s["instance"], instance)
        instances += instance.max()
        # the certainty stands for the full semantic scores in the confidence map
        full = torch.from_numpy(np.log(scores)).float()[None]
        got = desc_ops.confidence_map(read_certainty_logits(split, name, meta)[None], ignore_classes=[CAR])
        torch.testing.assert_close(got, desc_ops.confidence_map(full, ignore_classes=[CAR]), atol=2e-5, rtol=0)
    assert instances > 0 and meta.max_instances >= 1
    assert not os.path.exists(os.path.join(split, RECORDS))
    assert not os.path.exists(os.path.join(labelled, "source_train", "certainty"))  # without --logits


def test_the_model_sees_the_frames_at_size_and_the_maps_keep_the_splits(model_dir, tmp_path):
    from transformers import Mask2FormerForUniversalSegmentation

    split = write_split(str(tmp_path), "target_train", frames=2, seed=3)
    assert segment(str(tmp_path), "target_train", model_dir, "--size", "96x320") == 0
    meta = read_meta(split)
    assert meta.label_source["input_size"] == [96, 320]
    model = Mask2FormerForUniversalSegmentation.from_pretrained(model_dir).eval()
    for name in meta.names:
        semantic, instance, _ = expected_labels(model, split, name, size=(96, 320))
        s = read_sample(split, name, meta)
        np.testing.assert_array_equal(s["semantic"], np.where(semantic == 255, -1, semantic.astype(np.int64)))
        np.testing.assert_array_equal(s["instance"], instance)


def test_check_and_a_training_step_take_the_labels(labelled, tmp_path, capsys):
    assert cli(["prepare", "check", labelled]) == 0
    assert capsys.readouterr().out.strip().endswith(f"{labelled}: ok")
    run = str(tmp_path / "run")
    assert cli(["train", *[a for s in TINY_TRAIN + [f"data={labelled}", f"out={run}"] for a in ("--set", s)]]) == 0
    steps = [json.loads(line) for line in open(os.path.join(run, "log.jsonl"))]
    assert [s["stage"] for s in steps] == ["source_only", "semantic", "joint"]
    assert np.isfinite(steps[-1]["loss"])


def test_a_trial_resumes_and_a_relabelling_drops_the_old_certainty(model_dir, tmp_path, capsys):
    root = str(tmp_path)
    split = write_split(root, "target_train")
    assert segment(root, "target_train", model_dir, "--limit", "2", "--logits") == 0
    out = capsys.readouterr().out
    assert "labelled 2 frames" in out and "a trial of 2 of 3 frames (--limit): the split stays unlabelled" in out
    assert not read_meta(split).has_labels and len(os.listdir(os.path.join(split, "certainty"))) == 2
    assert segment(root, "target_train", model_dir, "--logits") == 0
    out = capsys.readouterr().out
    assert "resuming, 2 of 3 frames labelled already" in out and "(1 written, 2 resumed)" in out
    assert read_meta(split).has_labels and len(os.listdir(os.path.join(split, "certainty"))) == 3
    assert segment(root, "target_train", model_dir) == 1
    assert "the split has labels already (from segment); pass --overwrite" in capsys.readouterr().err
    assert segment(root, "target_train", model_dir, "--overwrite") == 0
    assert read_meta(split).label_source["certainty"] is False
    assert not os.path.exists(os.path.join(split, "certainty"))  # maps of the old labels would mislead


def one_line(capsys):
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_a_checkpoint_with_other_classes_is_refused_before_anything_is_written(tmp_path, capsys):
    pytest.importorskip("transformers")
    split = write_split(str(tmp_path), "target_train")
    before = open(os.path.join(split, "meta.json")).read()
    swapped = list(coco.CLASSES)
    swapped[5], swapped[6] = swapped[6], swapped[5]
    ade = ["wall", "building", "sky"] + [f"c{i}" for i in range(147)]
    for classes, diff in ((swapped, "class 5 is 'train' there, 'bus' in COCO panoptic"),
                          (ade, "class 0 is 'wall' there, 'person' in COCO panoptic"),
                          (coco.CLASSES[:80], "it has 80 classes, COCO panoptic 133")):
        folder = str(tmp_path / f"model{len(classes)}")
        tiny_config(classes).save_pretrained(folder)  # the classes are refused before the weights are read
        assert segment(str(tmp_path), "target_train", folder) == 1
        assert f"desc-train prepare segment: error: --model {folder}: not a COCO panoptic checkpoint ({diff}); " \
            in one_line(capsys)
    assert open(os.path.join(split, "meta.json")).read() == before
    assert not os.path.exists(os.path.join(split, RECORDS))


def test_weights_out_of_reach_are_named_with_the_download(tmp_path, capsys, monkeypatch):
    pytest.importorskip("transformers")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # what HF_HUB_OFFLINE=1 sets at import
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "cache"))  # nothing cached
    write_split(str(tmp_path), "target_train")
    assert cli(["prepare", "segment", "--out", str(tmp_path), "--split", "target_train"]) == 1
    line = one_line(capsys)
    assert line.startswith("desc-train prepare segment: error: --model facebook/mask2former-swin-large-coco-panoptic: "
                           "could not be loaded (")
    assert "download it where there is network (hf download facebook/mask2former-swin-large-coco-panoptic" in line
    for folder, what in ((tmp_path / "nowhere", "no such folder"), (tmp_path, "holds no config.json")):
        assert segment(str(tmp_path), "target_train", str(folder)) == 1
        assert f"--model {folder}: {what}; pass a folder of save_pretrained's files" in one_line(capsys)


def broken_transformers(error):
    module = types.ModuleType("transformers")

    def fail(name):
        raise error

    module.__getattr__ = fail
    return module


def wrapped():
    try:
        raise RuntimeError("operator torchvision::nms does not exist")
    except RuntimeError as err:
        try:
            raise ModuleNotFoundError("Could not import module 'Mask2FormerForUniversalSegmentation'") from err
        except ModuleNotFoundError as outer:
            return outer


@pytest.mark.parametrize("module, message", [
    (None, 'needs transformers (import of transformers halted; None in sys.modules): pip install '
           '"desc-ops[segment]" (or pip install "transformers>=4.57")'),
    (broken_transformers(RuntimeError("operator torchvision::nms does not exist")),
     "transformers could not import Mask2Former because torchvision does not fit torch"),
    (broken_transformers(wrapped()), "transformers could not import Mask2Former because torchvision does not fit"),
])
def test_a_missing_or_broken_transformers_says_what_to_install(tmp_path, capsys, monkeypatch, module, message):
    monkeypatch.setitem(sys.modules, "transformers", module)
    write_split(str(tmp_path), "target_train")
    assert segment(str(tmp_path), "target_train", "some/model") == 1
    line = one_line(capsys)
    assert line.startswith(f"desc-train prepare segment: error: {message}"), line
    if module is not None:
        assert line.endswith("pip uninstall torchvision (Mask2Former does not need it), or install the torchvision "
                             "built for this torch\n")


def test_a_size_of_another_aspect_is_refused(tmp_path, capsys):
    write_split(str(tmp_path), "target_train")
    assert segment(str(tmp_path), "target_train", "some/model", "--size", "64x64") == 1
    assert "--size 64x64: aspect 1.00, but the split's frames are 48x160 (3.33): the model would see them " \
           "stretched" in one_line(capsys)
