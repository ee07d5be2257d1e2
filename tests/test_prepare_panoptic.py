"""desc-train prepare panoptic: COCO panoptic results and Detectron2 outputs become the semantic and instance maps
of a prepared split, in the 133 COCO panoptic classes. The predictions are fabricated in their real formats (RGB-id
PNGs written by OpenCV, npz files of Detectron2's output) on a tiny split written with the layout functions."""
import argparse
import json
import os
import re

import cv2
import numpy as np
import pytest

from desc_train import cli
from desc_train.data import coco
from desc_train.data.dataset import DepthDataset
from desc_train.data.layout import SplitMeta, read_meta, read_sample, write_meta, write_sample
from desc_train.data.prepare import labels as labelling
from desc_train.data.prepare import panoptic

H, W = 32, 64  # the split's size
SRC = {"f0": "drive_a/image_02/data/0000000001.png", "f1": "drive_b/image_02/data/0000000001.png"}
ROAD, CAR, PERSON = 100, 2, 0  # layout ids of COCO road (149), car (3), person (1)
CAR_ID = 1 + 2 * 256 + 3 * 65536  # R, G and B all used: decoded with swapped channels it is another id


@pytest.fixture
def root(tmp_path):
    """A prepared split target_train (two frames, no labels yet), as the dataset converters leave it."""
    split = tmp_path / "data" / "target_train"
    for name in SRC:
        write_sample(str(split), name, rgb=np.zeros((H, W, 3), np.uint8))
    frames = {n: dict(focal=50.0, src=src, orig_size=[H, W]) for n, src in SRC.items()}
    write_meta(str(split), SplitMeta(domain="target", classes=[], instance_classes=[], focal=50.0,
                                     image_size=[H, W], frames=frames, has_depth=False, has_labels=False))
    return tmp_path


def run(root, *extra, predictions="pred/panoptic.json", fmt="coco"):
    return cli.main(["prepare", "panoptic", "--predictions", str(root / predictions), "--out", str(root / "data"),
                     "--split", "target_train", "--format", fmt, "--workers", "1", *extra])


def labels(root, name):
    split = str(root / "data" / "target_train")
    s = read_sample(split, name, read_meta(split))
    return s["semantic"], s["instance"]


# ---------------------------------------------------------------- COCO panoptic results
def id2rgb(ids):
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8)


def coco_f0():
    """32x64: road on top, then a car, a crowd of cars, a person and a void corner."""
    ids = np.zeros((H, W), np.int64)
    ids[:8] = 261
    ids[8:, :32] = CAR_ID
    ids[8:, 32:48] = 7
    ids[8:20, 48:] = 9
    segments = [dict(id=261, category_id=149, iscrowd=0), dict(id=CAR_ID, category_id=3, iscrowd=0),
                dict(id=7, category_id=3, iscrowd=1), dict(id=9, category_id=1, iscrowd=0, score=0.95)]
    return ids, segments


def coco_f1():
    """64x128, twice the split's size. Nearest resizing keeps rows and columns 0, 2, 4, ...: a car on the even
    columns of the top rows stays, a person (the largest instance, 1) on odd columns and odd rows is lost, a truck
    block (instance 2) stays; blending the car (3) with the person (1) would make it the truck (2)."""
    ids = np.full((2 * H, 2 * W), 261, np.int64)
    ids[:24, ::2], ids[:24, 1::2] = 11, 12
    ids[41::2, :120] = 12
    ids[24:40] = 13
    return ids, [dict(id=261, category_id=149, iscrowd=0), dict(id=11, category_id=3, iscrowd=0, score=0.9),
                 dict(id=12, category_id=1, iscrowd=0, score=0.9), dict(id=13, category_id=8, iscrowd=0)]


def write_coco(root, frames, categories=None):
    """A COCO panoptic JSON and its PNG folder, the PNGs written by OpenCV (BGR order) as tools do."""
    pngs = root / "pred" / "panoptic"
    pngs.mkdir(parents=True, exist_ok=True)
    annotations = []
    for i, (stem, (ids, segments)) in enumerate(frames.items()):
        image = ids if ids.ndim == 2 and ids.dtype == np.uint8 else cv2.cvtColor(id2rgb(ids), cv2.COLOR_RGB2BGR)
        assert cv2.imwrite(str(pngs / f"{stem}.png"), image)
        annotations.append(dict(image_id=i, file_name=f"{stem}.png", segments_info=segments))
    if categories is None:
        categories = [dict(id=c, name=n, isthing=int(c <= 90)) for c, n in coco.THINGS + coco.STUFF]
    (root / "pred" / "panoptic.json").write_text(json.dumps(dict(annotations=annotations, categories=categories)))


def test_coco_ids_classes_instances_and_meta(root, capsys):
    write_coco(root, {"f0": coco_f0(), "f1": coco_f1()})
    ids, _ = coco_f0()
    np.testing.assert_array_equal(panoptic.read_coco_png(str(root / "pred" / "panoptic" / "f0.png")), ids)
    assert run(root, "--workers", "2") == 0
    semantic, instance = labels(root, "f0")
    assert (semantic[:8] == ROAD).all() and (semantic[8:, :48] == CAR).all()  # crowds keep their class
    assert (semantic[8:20, 48:] == PERSON).all() and (semantic[20:, 48:] == -1).all()  # void reads as ignore
    assert (instance[8:, :32] == 1).all() and (instance[8:20, 48:] == 2).all()  # by decreasing area
    assert (instance[:8] == 0).all() and (instance[8:, 32:48] == 0).all() and (instance[20:, 48:] == 0).all()
    meta = read_meta(str(root / "data" / "target_train"))
    assert meta.has_labels and meta.classes == coco.CLASSES and meta.instance_classes == list(range(80))
    assert meta.max_instances == 2 and meta.frames["f0"]["src"] == SRC["f0"]
    assert meta.label_source["kind"] == "panoptic" and meta.label_source["format"] == "coco"
    assert meta.label_source["score_thresh"] == 0.8
    assert not os.path.exists(root / "data" / "target_train" / labelling.RECORDS)
    out = capsys.readouterr().out
    assert "labelled 2 frames" in out and "1 crowds, 0 of other classes" in out and "1 lost in resizing" in out
    item = DepthDataset(str(root / "data" / "target_train"), max_instances=4)[0]
    car, person = item["instance_ids"][20, 10], item["instance_ids"][10, 50]
    assert item["instance_class"][car] == CAR and item["instance_class"][person] == PERSON


def test_larger_predictions_resized_with_nearest(root):
    ids, segments = coco_f0()
    wider = np.pad(ids, ((0, 0), (0, 1)))  # 32x65, 1.6 % wider than the split: within the tolerance
    write_coco(root, {"f0": (wider, segments), "f1": coco_f1()})
    assert run(root, predictions="pred") == 0  # the folder holding the JSON and the PNG folder
    semantic, instance = labels(root, "f0")
    assert (semantic[:8] == ROAD).all() and (semantic[8:, :48] == CAR).all() and (instance[8:, :32] == 1).all()
    semantic, instance = labels(root, "f1")
    assert (semantic[:12] == CAR).all() and (semantic[12:20] == 7).all() and (semantic[20:] == ROAD).all()
    # the lost person's id is given to the truck, then the car's: 1..N by decreasing area again
    assert (instance[:12] == 2).all() and (instance[12:20] == 1).all() and (instance[20:] == 0).all()



@pytest.mark.parametrize("extra", [[], ["a.json", "b.json", "c.json", "d.json", "e.json", "f.json"]])
def test_a_folder_without_exactly_one_json_names_what_it_holds(root, capsys, extra):
    write_coco(root, {"f0": coco_f0(), "f1": coco_f1()})
    for name in extra:
        (root / "pred" / name).write_text("{}")
    if not extra:
        os.remove(root / "pred" / "panoptic.json")
    assert run(root, predictions="pred") == 1
    err = capsys.readouterr().err
    listed = ", ".join(sorted(extra + ["panoptic.json"])[:5]) if extra else "none"
    count = len(extra) + 1 if extra else 0
    assert f"{root / 'pred'}: holds {count} JSON files ({listed}); pass the panoptic JSON itself" in err

def test_max_instances_keeps_the_largest(root, capsys):
    write_coco(root, {"f0": coco_f0(), "f1": coco_f1()})
    assert run(root, "--max-instances", "1") == 0
    _, instance = labels(root, "f0")
    assert (instance[8:, :32] == 1).all() and (instance[8:20, 48:] == 0).all()
    _, instance = labels(root, "f1")  # the cut comes after resizing: the lost person takes no place
    assert (instance[:12] == 0).all() and (instance[12:20] == 1).all()
    assert "2 beyond --max-instances 1 (in 2 of 2 frames)" in capsys.readouterr().out


@pytest.mark.parametrize("classes, expected", [("vehicles", [1, 2, 3, 5, 6, 7]), ("car,7", [2, 7])])
def test_instance_classes_drop_other_things(root, classes, expected):
    write_coco(root, {"f0": coco_f0(), "f1": coco_f1()})
    assert run(root, "--instance-classes", classes) == 0
    semantic, instance = labels(root, "f0")
    assert (semantic[8:20, 48:] == PERSON).all() and (instance[8:20, 48:] == 0).all()
    assert (instance[8:, :32] == 1).all()
    assert read_meta(str(root / "data" / "target_train")).instance_classes == expected


def test_instance_classes_are_things():
    assert labelling.instance_classes("person, car") == (0, 2)
    with pytest.raises(argparse.ArgumentTypeError, match="not a thing class"):
        labelling.instance_classes("road")


# ---------------------------------------------------------------- Detectron2 outputs
def write_npz(path, seg, segments):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, panoptic_seg=seg.astype(np.int32), segments_info=np.array(json.dumps(segments)))


def detectron2_f0():
    """Contiguous ids: stuff 1 (banner) and 53 (rug-merged) on top, a car (thing 2), a person scoring 0.6."""
    seg = np.zeros((H, W), np.int32)
    seg[:4], seg[4:8], seg[8:, :32], seg[8:20, 48:] = 2, 3, 1, 4
    return seg, [dict(id=1, isthing=True, score=0.99, category_id=2, instance_id=0),
                 dict(id=2, isthing=False, category_id=1, area=256),
                 dict(id=3, isthing=False, category_id=53, area=256),
                 dict(id=4, isthing=True, score=0.6, category_id=0, instance_id=1)]


def test_detectron2_contiguous_ids_and_score_threshold(root, capsys):
    pred = root / "npz"
    write_npz(pred / "f0.npz", *detectron2_f0())
    write_npz(pred / "f1.npz", *detectron2_f0())
    (pred / panoptic.RUN_INFO).write_text(json.dumps(dict(model="Panoptic FPN", input_size=[368, 1232])))
    assert run(root, predictions="npz", fmt="detectron2") == 0
    semantic, instance = labels(root, "f0")
    assert (semantic[:4] == 80).all() and (semantic[4:8] == 132).all() and (semantic[8:, :32] == CAR).all()
    assert (semantic[8:20, 48:] == PERSON).all() and (semantic[20:, 32:] == -1).all()
    assert (instance[8:, :32] == 1).all() and (instance[8:20, 48:] == 0).all()  # 0.6 < 0.8
    assert "2 below --score-thresh 0.8" in capsys.readouterr().out
    meta = read_meta(str(root / "data" / "target_train"))
    assert meta.max_instances == 1 and meta.label_source["model"]["input_size"] == [368, 1232]
    assert {k: v for k, v in meta.label_source.items() if k != "model"} == dict(
        kind="panoptic", format="detectron2", predictions=str(pred), score_thresh=0.8,
        instance_classes=meta.instance_classes, max_instances=32, match="name")  # the --max-instances default

    assert run(root, "--score-thresh", "0.5", predictions="npz", fmt="detectron2") == 1
    assert (f"{os.path.join(str(root / 'data' / 'target_train'), 'meta.json')}: the split has labels already (from "
            f"panoptic); pass --overwrite to replace them") in capsys.readouterr().err
    seg, segments = detectron2_f0()
    write_npz(pred / "f1.npz", seg, segments[:3])  # the person's segment is missing
    assert run(root, "--score-thresh", "0.5", "--overwrite", predictions="npz", fmt="detectron2") == 1
    assert "f1.npz: segment id 4 appears" in capsys.readouterr().err
    # a replacement cut short leaves the split unlabelled, not labelled with half-replaced maps
    assert not read_meta(str(root / "data" / "target_train")).has_labels
    write_npz(pred / "f1.npz", seg, segments)
    assert run(root, "--score-thresh", "0.5", predictions="npz", fmt="detectron2") == 0
    assert (labels(root, "f0")[1][8:20, 48:] == 2).all()
    assert read_meta(str(root / "data" / "target_train")).label_source["score_thresh"] == 0.5


def test_match_src_uses_the_source_folders(root, capsys):
    seg, segments = detectron2_f0()
    other = np.full_like(seg, 2)  # all banner
    write_npz(root / "npz" / "drive_a" / "image_02" / "data" / "0000000001.npz", seg, segments)
    write_npz(root / "npz" / "drive_b" / "image_02" / "data" / "0000000001.npz", other, segments)
    assert run(root, "--match", "src", predictions="npz", fmt="detectron2") == 0
    assert (labels(root, "f0")[0][8:, :32] == CAR).all() and (labels(root, "f1")[0] == 80).all()

    flat = root / "flat"
    write_npz(flat / "0000000001.npz", seg, segments)  # one bare stem for two frames
    assert run(root, "--match", "src", "--overwrite", predictions="flat", fmt="detectron2") == 1
    assert "prediction 0000000001 matches frames f0, f1" in capsys.readouterr().err


# ---------------------------------------------------------------- errors
def single_channel(root):
    write_coco(root, {"f0": (np.full((H, W), 3, np.uint8), []), "f1": coco_f1()})
    return [f"{root / 'pred' / 'panoptic' / 'f0.png'} is single-channel", "looks like a semantic map"]


def unknown_segment(root):
    ids, segments = coco_f0()
    write_coco(root, {"f0": (ids, segments[1:]), "f1": coco_f1()})
    return [f"{root / 'pred' / 'panoptic.json'}, f0.png: segment id 261 appears in the map but not in segments_info"]


def bad_category(root):
    ids, segments = coco_f0()
    segments[0]["category_id"] = 12
    write_coco(root, {"f0": (ids, segments), "f1": coco_f1()})
    return ["panoptic.json, f0.png: category_id 12 is not a COCO panoptic id"]


def aspect_mismatch(root):
    ids = np.zeros((H + 1, W), np.int64)  # 3 % off
    write_coco(root, {"f0": coco_f0(), "f1": (ids, [])})
    return ["panoptic.json, f1.png: prediction is 33x64 (aspect 1.94) but the split is 32x64 (2.00)"]


def missing_frame(root):
    write_coco(root, {"f0": coco_f0()})
    return ["1 of 2 frames missing", f"no prediction for frame f1 (looked for file_name f1.png in "
                                      f"{root / 'pred' / 'panoptic.json'})",
            "; --match src matches the frames' source paths"]


def two_frames_fail(root):
    ids, segments = coco_f0()
    write_coco(root, {"f0": (np.full((H, W), 3, np.uint8), []), "f1": (ids, segments[1:])})
    return ["2 of 2 frames failed", "f0.png is single-channel", "f1.png: segment id 261"]


def repeated_segment(root):
    ids, segments = coco_f0()
    write_coco(root, {"f0": (ids, segments + segments[:1]), "f1": coco_f1()})
    return ["panoptic.json, f0.png: segment id 261 is listed twice in segments_info"]


def other_label_set(root):
    write_coco(root, {"f0": coco_f0(), "f1": coco_f1()}, categories=[dict(id=3, name="bicycle", isthing=1)])
    return ["category 3 is 'bicycle' here but 'car' in COCO panoptic"]


def category_not_an_object(root):
    write_coco(root, {"f0": coco_f0(), "f1": coco_f1()}, categories=[1, dict(id=3, name="car", isthing=1)])
    return ["panoptic.json: a category is 1, not an object: expected a COCO panoptic JSON"]


def not_prepared(root):
    write_coco(root, {"f0": coco_f0(), "f1": coco_f1()})
    os.remove(root / "data" / "target_train" / "meta.json")
    return [f"{root / 'data' / 'target_train' / 'meta.json'}: missing: prepare the split first"]


@pytest.mark.parametrize("case", [single_channel, unknown_segment, bad_category, aspect_mismatch, missing_frame,
                                  two_frames_fail, repeated_segment, other_label_set, category_not_an_object,
                                  not_prepared])
def test_errors_name_the_file_and_leave_meta_unchanged(root, capsys, case):
    meta = root / "data" / "target_train" / "meta.json"
    before = meta.read_bytes()
    expected = case(root)
    assert run(root, "--workers", "2") == 1
    err = capsys.readouterr().err
    for text in expected:
        assert text in err
    if meta.exists():
        assert meta.read_bytes() == before


def fail_on_f1(root, capsys):
    ids, segments = coco_f0()
    write_coco(root, {"f0": coco_f0(), "f1": (ids, segments[1:])})
    assert run(root) == 1
    assert "1 of 2 frames failed" in capsys.readouterr().err
    assert not read_meta(str(root / "data" / "target_train")).has_labels
    write_coco(root, {"f0": coco_f0(), "f1": coco_f0()})


def test_a_missing_npz_is_named_with_the_src_hint(root, capsys):
    pred = root / "npz"
    pred.mkdir()
    write_npz(pred / "f0.npz", *detectron2_f0())
    assert run(root, "--match", "src", predictions="npz", fmt="detectron2") == 1
    err = capsys.readouterr().err
    assert f"looked for {pred / 'f1.npz'}" not in err and "(looked for " + str(pred) in err
    assert "; the path without extension may also be a trailing part of the source path, such as its stem" in err


def test_a_failed_run_resumes(root, capsys):
    fail_on_f1(root, capsys)
    assert run(root) == 0
    out = capsys.readouterr().out
    assert "resuming, 1 of 2 frames labelled already" in out and "(1 written, 1 resumed)" in out
    assert (labels(root, "f1")[0][:8] == ROAD).all()


@pytest.mark.parametrize("extra", [["--overwrite"], ["--max-instances", "5"]])
def test_a_failed_run_restarts_on_overwrite_or_other_arguments(root, capsys, extra):
    fail_on_f1(root, capsys)
    assert run(root, *extra) == 0
    out = capsys.readouterr().out
    assert "resuming" not in out and "(2 written, 0 resumed)" in out


def test_threshold_and_count_arguments_take_their_bounds():
    assert labelling._fraction("0") == 0.0 and labelling._fraction("1") == 1.0 and labelling._fraction("0.5") == 0.5
    for text in ("-0.1", "1.01"):
        with pytest.raises(argparse.ArgumentTypeError, match=rf"a score threshold lies in \[0, 1\], got {text}"):
            labelling._fraction(text)
    assert labelling._count("1") == 1 and labelling._count(str(labelling.MAX_ID)) == labelling.MAX_ID
    for text in ("0", str(labelling.MAX_ID + 1), "x", "-1"):
        with pytest.raises(argparse.ArgumentTypeError,
                           match=rf"expected an integer in 1-{labelling.MAX_ID} \(instance maps are 16-bit\), "
                                 rf"got '{text}'"):
            labelling._count(text)


def test_detectron2_category_ids_take_their_contiguous_bounds():
    def segment(cat, isthing):
        return panoptic.detectron2_segment(dict(id=7, category_id=cat, isthing=isthing, score=0.9), "f.npz")

    for cat in (0, 79):
        s = segment(cat, True)
        assert (s.label, s.isthing, s.id) == (coco.thing_from_contiguous(cat), True, 7)
    for cat in (1, 53):
        s = segment(cat, False)
        assert (s.label, s.isthing) == (coco.stuff_from_contiguous(cat), False)
    for cat, isthing in ((80, True), (-1, True), (0, False), (54, False), ("3", True), (2.0, False)):
        kind = "thing" if isthing else "stuff"
        with pytest.raises(panoptic.DataError, match=rf"f.npz: category_id {cat!r} of a {kind} segment is not a "
                                                     r"contiguous Detectron2 id \(things 0-79, stuff 1-53\)"):
            segment(cat, isthing)
    for key in ("category_id", "isthing", "id"):
        info = dict(id=7, category_id=3, isthing=True)
        del info[key]
        with pytest.raises(panoptic.DataError, match=f"f.npz.*{key}"):
            panoptic.detectron2_segment(info, "f.npz")


def test_detectron2_npz_mistakes_name_the_file_and_the_expected_output(tmp_path):
    fix = ("expected Detectron2's panoptic output: panoptic_seg (H, W) int32 and segments_info as a JSON string, "
           "as tools/run_panoptic_fpn.py writes")
    seg = np.zeros((4, 5), np.int32)
    good = tmp_path / "good.npz"
    np.savez(good, panoptic_seg=seg, segments_info=np.array(json.dumps([dict(id=1)])))
    got, info = panoptic.read_detectron2(str(good))
    assert got.dtype == np.int32 and got.shape == (4, 5) and info == [dict(id=1)]
    cases = {
        "one.npz": (dict(panoptic_seg=seg), "holds panoptic_seg; "),
        "empty.npz": ({}, "holds nothing; "),
        "other.npz": (dict(segments_info=np.array("[]")), "holds segments_info; "),
        "pickled.npz": (dict(panoptic_seg=seg, segments_info=np.array([{"id": 1}], dtype=object)), "unreadable ("),
        "float.npz": (dict(panoptic_seg=seg.astype(np.float32), segments_info=np.array("[]")),
                      "panoptic_seg is float32 (4, 5); "),
        "text.npz": (dict(panoptic_seg=seg, segments_info=np.array("not json")), "segments_info is not a JSON string; "),
        "dict.npz": (dict(panoptic_seg=seg, segments_info=np.array("{}")), "segments_info holds dict, not a list; "),
    }
    for name, (arrays, text) in cases.items():
        np.savez(tmp_path / name, **arrays)
        with pytest.raises(panoptic.DataError) as err:
            panoptic.read_detectron2(str(tmp_path / name))
        assert str(err.value).startswith(f"{tmp_path / name}: {text}") and str(err.value).endswith(fix), err.value


def test_label_maps_classes_instances_fates_and_counts():
    from desc_train.data.classes import BUILDING, CAR, PERSON, ROAD

    S = labelling.Segment
    segments = [S(7, ROAD, False, None, False), S(3, CAR, True, 0.9, False),
                S(5, CAR, True, 0.5, False),  # a score equal to the threshold is kept
                S(9, CAR, True, 0.4, False), S(11, PERSON, True, 0.99, True), S(12, BUILDING, True, 0.8, False)]
    seg = np.array([[0, 0, 7, 7, 7, 7],
                    [3, 3, 3, 3, 3, 3],
                    [5, 5, 5, 9, 9, 11],
                    [11, 11, 12, 12, 12, 12]])
    settings = labelling.Settings(size=(4, 6), score_thresh=0.5, instance_classes=(CAR, PERSON), max_instances=10)
    semantic, instance, counts = labelling.label_maps(seg, segments, settings, "p.png")
    label = {0: coco.IGNORE, 7: ROAD, 3: CAR, 5: CAR, 9: CAR, 11: PERSON, 12: BUILDING}
    assert semantic.dtype == np.uint8 and semantic.shape == seg.shape
    np.testing.assert_array_equal(semantic, np.vectorize(label.get)(seg))
    # Instances by decreasing area: segment 3 (6 pixels), then 5 (3); the others are no instance.
    np.testing.assert_array_equal(instance, np.vectorize({3: 1, 5: 2}.get)(seg, 0))
    assert counts == {"crowd": 1, "other_class": 1, "low_score": 1, "segments": 6, "void": 2 / 24}
    assert [labelling.instance_fate(s, settings) for s in segments[1:]] == \
        ["kept", "kept", "low_score", "crowd", "other_class"]
    # A file without scores keeps every thing segment of an instance class.
    assert labelling.instance_fate(S(1, CAR, True, None, False), settings) == "kept"


def test_label_maps_refuse_segments_missing_from_segments_info():
    segments = [labelling.Segment(7, 0, False, None, False)]
    settings = labelling.Settings(size=(1, 4), score_thresh=0.5, instance_classes=(5,), max_instances=10)
    with pytest.raises(panoptic.DataError, match=r"^p\.png: segment id 4 appears in the map but not in "):
        labelling.label_maps(np.array([[0, 7, 4, 7]]), segments, settings, "p.png")
    with pytest.raises(panoptic.DataError, match=r"^p\.png: segment id 4 \(and 1 more\) appears"):
        labelling.label_maps(np.array([[4, 7, 8, 7]]), segments, settings, "p.png")
    with pytest.raises(panoptic.DataError, match=r"^p\.png: segment id 4 \(and 2 more\) appears"):
        labelling.label_maps(np.array([[4, 7, 8, 9]]), segments, settings, "p.png")


def test_aspect_check_allows_two_percent():
    labelling.check_aspect("p.png", (100, 305), (100, 300))  # 1.7 % wider
    labelling.check_aspect("p.png", (100, 295), (100, 300))
    labelling.check_aspect("p.png", (200, 600), (100, 300))  # only the aspect matters
    with pytest.raises(panoptic.DataError, match=r"^p\.png: prediction is 100x307 \(aspect 3\.07\) but the split "
                                                 r"is 100x300 \(3\.00\): predictions must be made on the frames' "
                                                 r"whole source images"):
        labelling.check_aspect("p.png", (100, 307), (100, 300))


def _coco_json(folder, content, name="panoptic_val.json", pngs=True):
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    with open(path, "w") as f:
        f.write(content if isinstance(content, str) else json.dumps(content))
    if pngs:
        os.makedirs(os.path.splitext(path)[0], exist_ok=True)
    return path


ANN = {"file_name": "a.png", "segments_info": []}
COCO_ERRORS = {  # case: (JSON content, the error after the JSON's path)
    "not JSON": ("{oops", r": not readable JSON: Expecting property name"),
    "a list": ([ANN], r": no 'annotations' list: expected a COCO panoptic JSON$"),
    "no annotations": ({"images": []}, r": no 'annotations' list: expected a COCO panoptic JSON$"),
    "no file_name": ({"annotations": [{"segments_info": []}]},
                     r": an annotation lacks file_name or segments_info \(got \{'segments_info': \[\]\}\)$"),
    "no segments_info": ({"annotations": [{"file_name": "a.png"}]},
                         r": an annotation lacks file_name or segments_info \(got \{'file_name': 'a.png'\}\)$"),
    "not a dict": ({"annotations": ["a.png"]}, r": an annotation lacks file_name or segments_info \(got a.png\)$"),
    "long": ({"annotations": [{"file_name": "x" * 100}]},  # shown to its first 80 characters
             r": an annotation lacks file_name or segments_info \(got \{'file_name': '" + "x" * 65 + r"\)$"),
    "twice": ({"annotations": [ANN, dict(ANN, file_name="./a.jpg")]}, r": two annotations for \./a\.jpg$"),
    "other labels": ({"annotations": [], "categories": [{"id": 1, "name": "car"}]},
                     r": category 1 is 'car' here but 'person' in COCO panoptic"),
}


@pytest.mark.parametrize("case", list(COCO_ERRORS))
def test_coco_json_mistakes_are_named(tmp_path, case):
    content, message = COCO_ERRORS[case]
    path = _coco_json(str(tmp_path), content)
    with pytest.raises(panoptic.DataError, match="^" + re.escape(path) + message):
        panoptic.coco_index(path)


def test_coco_json_and_its_png_folder_are_found(tmp_path):
    path = _coco_json(str(tmp_path / "a"), {"annotations": [ANN]})
    assert panoptic.coco_index(path) == (path, path[:-5], {panoptic._key("a.png"): ANN})
    assert panoptic.coco_index(str(tmp_path / "a")) == (path, path[:-5], {panoptic._key("a.png"): ANN})
    # A folder holding the JSON and the PNGs side by side.
    flat = _coco_json(str(tmp_path / "b"), {"annotations": [ANN]}, pngs=False)
    assert panoptic.coco_index(str(tmp_path / "b"))[:2] == (flat, str(tmp_path / "b"))
    with pytest.raises(panoptic.DataError, match="^" + re.escape(flat[:-5]) + r": missing: the PNGs of "
                       + re.escape(flat) + r" belong in the folder named as its stem, beside it"):
        panoptic.coco_index(flat)
    missing = str(tmp_path / "c" / "none.json")
    os.makedirs(missing[:-5])
    with pytest.raises(panoptic.DataError, match="^" + re.escape(missing) + r": missing \(--predictions names a "
                                                                            r"COCO panoptic JSON or a folder"):
        panoptic.coco_index(missing)
    os.makedirs(tmp_path / "d")
    with pytest.raises(panoptic.DataError, match=r"d: holds 0 JSON files \(none\); pass the panoptic JSON itself"):
        panoptic.coco_index(str(tmp_path / "d"))
    _coco_json(str(tmp_path / "b"), {"annotations": []}, name="second.json", pngs=False)
    with pytest.raises(panoptic.DataError, match=r"b: holds 2 JSON files \(panoptic_val\.json, second\.json\); pass "
                                                 r"the panoptic JSON itself as --predictions$"):
        panoptic.coco_index(str(tmp_path / "b"))


COCO_PNGS = {  # case: (what is at the path, the error after it)
    "missing": (None, r": missing \(the JSON's file_name names it; the PNGs belong in the folder named as the "
                      r"JSON's stem\)$"),
    "not an image": (b"\x89PNG not really", r": not a readable PNG$"),
    "grey": (np.zeros((2, 3), np.uint8), r" is single-channel: COCO panoptic PNGs are RGB-encoded ids \(R \+ 256 G "
                                         r"\+ 65536 B\); this looks like a semantic map$"),
    "RGBA": (np.zeros((2, 3, 4), np.uint8), r": 4 channels of uint8; COCO panoptic PNGs are 8-bit RGB"),
    "16-bit": (np.zeros((2, 3, 3), np.uint16), r": 3 channels of uint16; COCO panoptic PNGs are 8-bit RGB"),
}


@pytest.mark.parametrize("case", list(COCO_PNGS))
def test_coco_png_mistakes_are_named(tmp_path, case):
    content, message = COCO_PNGS[case]
    path = str(tmp_path / "f.png")
    if isinstance(content, bytes):
        (tmp_path / "f.png").write_bytes(content)
    elif content is not None:
        cv2.imwrite(path, content)
    with pytest.raises(panoptic.DataError, match="^" + re.escape(path) + message):
        panoptic.read_coco_png(path)


def test_coco_png_ids_are_r_plus_256_g_plus_65536_b(tmp_path):
    rgb = np.array([[[1, 2, 3], [255, 0, 0]]], np.uint8)
    cv2.imwrite(str(tmp_path / "f.png"), rgb[..., ::-1])
    ids = panoptic.read_coco_png(str(tmp_path / "f.png"))
    assert ids.dtype == np.int32 and ids.tolist() == [[1 + 256 * 2 + 65536 * 3, 255]]


def test_a_segment_listed_twice_is_named(tmp_path):
    cv2.imwrite(str(tmp_path / "f.png"), np.zeros((2, 3, 3), np.uint8))
    info = [{"id": 3, "category_id": 1}, {"id": 5, "category_id": 1}, {"id": 5, "category_id": 2}]
    settings = labelling.Settings(size=(2, 3), score_thresh=0.5, instance_classes=(0,), max_instances=10)
    job = panoptic.Job(split_dir="", name="f", format="coco", path=str(tmp_path / "f.png"), segments_info=info,
                       where="frame f", settings=settings)
    with pytest.raises(panoptic.DataError, match=r"^frame f: segment id 5 is listed twice in segments_info$"):
        panoptic.read_prediction(job)
    with pytest.raises(panoptic.DataError, match=r"^frame f: .*category_id"):  # the segment's errors name the frame
        panoptic.read_prediction(job._replace(segments_info=[{"id": 3}]))
    seg, segments = panoptic.read_prediction(job._replace(segments_info=info[:2]))
    assert seg.shape == (2, 3) and [s.id for s in segments] == [3, 5]


def test_labels_of_an_unrecorded_source_are_refused_too(tmp_path):
    split = str(tmp_path / "s")
    meta = SplitMeta(domain="target", classes=["a"], instance_classes=[], focal=1.0, image_size=[2, 2],
                     has_labels=True)
    write_meta(split, meta)
    with pytest.raises(panoptic.DataError, match=r"the split has labels already \(from an unrecorded source\); "
                                                 r"pass --overwrite to replace them$"):
        labelling.start_labels(split, meta, False, {})
    labelling.start_labels(split, meta, True, {})
    assert read_meta(split).has_labels is False  # unlabelled until the new maps are all written


def test_coco_segments_things_stuff_and_mistakes():
    last_thing, first_stuff = 90, 92  # COCO panoptic ids: things 1-90, stuff 92-200, with gaps
    thing = panoptic.coco_segment({"id": 7, "category_id": last_thing, "score": 0.5}, "frame f")
    stuff = panoptic.coco_segment({"id": 8, "category_id": first_stuff, "iscrowd": 1}, "frame f")
    assert thing == labelling.Segment(7, coco.NUM_THINGS - 1, True, 0.5, False)
    assert stuff == labelling.Segment(8, coco.NUM_THINGS, False, None, True)
    with pytest.raises(panoptic.DataError, match=r"^frame f: category_id 91 is not a COCO panoptic id \(ids are "
                                                 r"1-200 with gaps: things 1-90, stuff 92-200\); only predictions"):
        panoptic.coco_segment({"id": 1, "category_id": 91}, "frame f")
    with pytest.raises(panoptic.DataError, match=r"^frame f: a segments_info entry lacks 'category_id' "
                                                 r"\(got \{'id': 1\}\)$"):
        panoptic.coco_segment({"id": 1}, "frame f")
    with pytest.raises(panoptic.DataError, match=r"^frame f: a segments_info entry lacks 'id'"):
        panoptic.coco_segment({"category_id": 1}, "frame f")


def test_report_lines():
    settings = labelling.Settings(size=(48, 160), score_thresh=0.7, instance_classes=(0,), max_instances=2)
    base = {"crowd": 0, "other_class": 0, "low_score": 0, "vanished": 0, "beyond_max": 0}
    counts = {"a": dict(base, segments=4, instances=2, void=0.25, crowd=1, beyond_max=3, vanished=1),
              "b": dict(base, segments=6, instances=0, void=0.05, low_score=2, other_class=1),
              "c": dict(base, segments=5, instances=2, void=0.0)}
    assert labelling.report("s", "from coco predictions", counts, 1, settings, 2.0) == [
        "s: labelled 3 frames from coco predictions (2 written, 1 resumed) in 2.0 s",
        "  segments per frame: mean 5.0, max 6; void 10.0 % of pixels",
        "  instances per frame: mean 1.3, max 2; histogram 0: 1, 2: 2",
        "  things without an instance: 2 below --score-thresh 0.7, 1 crowds, 1 of other classes, 3 beyond "
        "--max-instances 2 (in 1 of 3 frames), 1 lost in resizing to 48x160"]


def test_a_frame_record_counts_instances_lost_in_resizing_and_beyond_the_maximum(tmp_path):
    seg = np.zeros((4, 8), np.int64)
    seg[:2, :4], seg[2:, :4], seg[2:, 4:] = 11, 12, 13  # three cars of 8 pixels
    seg[1, 5] = 14  # one pixel: gone at half size
    rgb = np.stack([seg % 256, seg // 256, seg // 65536], -1).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "f.png"), rgb[..., ::-1])
    info = [{"id": i, "category_id": 3, "score": 0.9} for i in (11, 12, 13, 14)]  # COCO 3: car
    settings = labelling.Settings(size=(2, 4), score_thresh=0.5, instance_classes=(coco.class_id("car"),),
                                 max_instances=2)
    os.makedirs(tmp_path / "s" / labelling.RECORDS / "frames")
    job = panoptic.Job(split_dir=str(tmp_path / "s"), name="f", format="coco", path=str(tmp_path / "f.png"),
                       segments_info=info, where="f.png", settings=settings)
    assert panoptic.label_frame(job) == ("f", None)
    with open(labelling.record_path(str(tmp_path / "s"), "f")) as f:
        record = json.load(f)
    assert (record["instances"], record["vanished"], record["beyond_max"]) == (2, 1, 1)
    assert panoptic.label_frame(job._replace(settings=settings._replace(max_instances=5))) == ("f", None)
    with open(labelling.record_path(str(tmp_path / "s"), "f")) as f:
        record = json.load(f)
    assert (record["instances"], record["vanished"], record["beyond_max"]) == (3, 1, 0)
    assert not os.path.exists(labelling.record_path(str(tmp_path / "s"), "f") + ".tmp")


def test_instance_classes_argument():
    assert labelling.instance_classes("all") == tuple(range(coco.NUM_THINGS))
    assert labelling.instance_classes("car, person,2") == tuple(sorted({coco.class_id("car"), coco.class_id("person"),
                                                                        2}))
    assert labelling.instance_classes(str(coco.NUM_THINGS - 1)) == (coco.NUM_THINGS - 1,)
    for bad in (str(coco.NUM_THINGS), "road", "carz"):  # a stuff id, a stuff name, no class
        with pytest.raises(argparse.ArgumentTypeError, match=rf"^'{bad}' is not a thing class: instances are things"):
            labelling.instance_classes(bad)


def test_prediction_keys_ignore_the_extension_and_the_separator():
    assert panoptic._key("a\\b\\c.png") == panoptic._key("a/b/c.jpg") == "a/b/c"
    assert panoptic._key("./a//b.npz") == "a/b"
