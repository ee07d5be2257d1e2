"""desc-train prepare check: a sound root passes; each problem it exists to catch
fails it, naming the split and what is wrong."""
import dataclasses
import os

import numpy as np
import pytest

from desc_train.cli import main as cli
from desc_train.data import generate_benchmark
from desc_train.data.layout import read_meta, read_sample, write_gt, write_meta
from desc_train.data.prepare.check import FOCAL_RANGE, check_split


@pytest.fixture
def root(tmp_path):
    root = str(tmp_path / "data")
    generate_benchmark(root, {"source_train": 3, "target_test": 2}, seed=2, size=(32, 64), workers=1, log=None)
    return root


def edit(root, split, **fields):
    path = os.path.join(root, split)
    write_meta(path, dataclasses.replace(read_meta(path), **fields))


def failure(capsys, root):
    assert cli(["prepare", "check", root]) == 1
    return capsys.readouterr().err


def test_a_sound_root_passes(root, capsys):
    os.makedirs(os.path.join(root, "notes"))  # a folder without meta.json is no split
    assert cli(["prepare", "check", root]) == 0
    out = capsys.readouterr().out
    assert "source_train: source, 3 frames at 32x64" in out and out.strip().endswith(f"{root}: ok")


def test_frames_sets_how_many_frames_the_depth_statistics_decode(root, capsys):
    assert cli(["prepare", "check", root, "--frames", "2"]) == 0
    out = capsys.readouterr().out
    assert "  depth over 2 frames: median" in out and "  depth over 3 frames" not in out


def test_prepare_needs_a_dataset(capsys):
    assert cli(["prepare"]) == 1
    assert capsys.readouterr().err == "desc-train prepare: error: the following arguments are required: dataset\n"


def test_focal_outside_the_plausible_range(root, capsys):
    meta = read_meta(os.path.join(root, "source_train"))
    edit(root, "source_train", frames={n: dict(f, focal=0.58) for n, f in meta.frames.items()})  # normalised
    assert "source_train: focal 0.6 to 0.6 px is outside 6.4-640 px" in failure(capsys, root)


def test_missing_file(root, capsys):
    os.remove(os.path.join(root, "source_train", "instance", "000001.png"))
    assert "1 files missing, first" in failure(capsys, root)


def test_depth_of_the_wrong_scale(root, capsys):
    edit(root, "source_train", depth_scale=0.5)  # every depth read 512 times too far
    assert "source_train: depth median" in failure(capsys, root)


def test_instance_classes_must_be_classes(root, capsys):
    edit(root, "source_train", instance_classes=[5, 40])
    assert "instance classes [40] are not class ids (0-7)" in failure(capsys, root)


def test_splits_must_share_their_classes(root, capsys):
    meta = read_meta(os.path.join(root, "target_test"))
    edit(root, "target_test", classes=meta.classes + ["extra"])
    assert "splits label different classes" in failure(capsys, root)


def test_test_split_needs_ground_truth_for_every_frame(root, capsys):
    split = os.path.join(root, "target_test")
    edit(root, "target_test", eval={"gt_kind": "velodyne_x", "crop": "garg", "caps": [[0.001, 80]]})
    write_gt(split, "000000", np.ones((40, 80), np.float32))
    assert "gt/000001.npy" in failure(capsys, root)
    write_gt(split, "000001", np.zeros((40, 80), np.float32))
    write_gt(split, "000000", np.zeros((40, 80), np.float32))
    assert "the sampled ground-truth maps hold no depth" in failure(capsys, root)
    write_gt(split, "000001", np.full((40, 80), 0.5, np.float32))  # any depth above 0 is depth
    assert cli(["prepare", "check", root]) == 0


def test_no_split_at_all(tmp_path, capsys):
    assert "holds no split" in failure(capsys, str(tmp_path))


def test_error_lists_show_the_first_twenty_and_count_the_rest():
    from desc_train.data.prepare.common import MAX_SHOWN, listed

    assert MAX_SHOWN == 20
    assert listed(["a", "b"]) == "\n  a\n  b"
    text = listed([f"e{i}" for i in range(25)])
    assert text.split("\n  ")[1:21] == [f"e{i}" for i in range(20)]
    assert text.endswith("\n  e19\n  ... and 5 more")
    assert "more" not in listed([f"e{i}" for i in range(20)])  # exactly MAX_SHOWN: nothing cut


def test_depth_as_npy_counts_and_a_missing_depth_is_named(root, capsys):
    split = os.path.join(root, "source_train")
    meta = read_meta(split)
    name = meta.names[1]
    depth = read_sample(split, name, meta)["depth"]
    np.save(os.path.join(split, "depth", name + ".npy"), depth.astype(np.float32))
    os.remove(os.path.join(split, "depth", name + ".png"))
    assert cli(["prepare", "check", root]) == 0  # depth/NAME.npy stands in for the PNG
    out = capsys.readouterr().out
    assert "depth yes, labels yes" in out
    os.remove(os.path.join(split, "depth", name + ".npy"))
    err = failure(capsys, root)
    assert f"1 files missing, first {os.path.join(split, 'depth', name + '.png')}" in err


def test_split_report_states_what_it_measured(root):
    """check_split's report, each figure recomputed here from the files."""
    split = os.path.join(root, "source_train")
    edit(root, "source_train", max_depth=20.0, max_instances=5)
    meta = read_meta(split)
    lines, problems = check_split(split)
    assert problems == []
    focals = [meta.frame_focal(n) for n in meta.names]
    assert lines[0] == (f"{split}: source, 3 frames at 32x64, focal {min(focals):.1f} to {max(focals):.1f} px, "
                        f"{len(meta.classes)} classes, depth yes, labels yes")
    assert lines[1] == "  at most 5 instances in a frame (the trainer takes at least as many slots)"
    depth = np.concatenate([read_sample(split, n, meta)["depth"].ravel() for n in meta.names])
    valid = depth[depth > 0]
    assert lines[2] == (f"  depth over 3 frames: median {np.median(valid):.2f} m, max {valid.max():.2f} m, "
                        f"{100 * np.mean(valid >= 20.0 - 1e-3):.1f} % at max_depth 20 m")
    assert 0 < np.mean(valid >= 20.0 - 1e-3) < 1 and len(lines) == 3  # the clamp share is neither 0 nor all

    test = os.path.join(root, "target_test")
    edit(root, "target_test", eval=dict(gt_kind="velodyne", crop="garg", caps=[[0.001, 80]]), has_labels=False)
    lines, _ = check_split(test)
    assert lines[0].endswith(f"depth {'yes' if read_meta(test).has_depth else 'no'}, labels not yet")
    assert ("  no semantic and instance maps yet: add them with desc-train prepare segment (or prepare "
            "panoptic) before training") in lines
    assert lines[-1] == "  evaluation: ground truth velodyne, crop garg, caps [[0.001, 80]]"

    edit(root, "source_train", frames={})
    lines, problems = check_split(split)
    assert problems[0] == f"{split}: lists no frames"


def test_a_broken_split_is_named_and_the_others_still_checked(root, capsys):
    meta = os.path.join(root, "target_test", "meta.json")
    with open(meta, "w") as f:
        f.write("{not json")
    assert cli(["prepare", "check", root]) == 1
    out, err = capsys.readouterr()
    assert f"{meta}: unreadable" in err
    assert "source_train: source, 3 frames" in out  # the sound split is still reported
    assert cli(["prepare", "check", str(os.path.join(root, "nowhere"))]) == 1
    assert f"{os.path.join(root, 'nowhere')}: no such folder" in capsys.readouterr().err


def _set_depth(root, split, value):
    """Every frame of the split at one depth (as depth/NAME.npy)."""
    path = os.path.join(root, split)
    for name in read_meta(path).names:
        np.save(os.path.join(path, "depth", name + ".npy"), np.full((32, 64), value, np.float32))


@pytest.mark.parametrize("value, problem", [(200.0, None), (1.0, None), (200.5, "depth median 200.5 m"),
                                            (0.99, "max 0.99 m: not metres"),
                                            (0.0, "source_train: no depth in 3 sampled frames")])
def test_depth_scale_limits(root, value, problem):
    _set_depth(root, "source_train", value)
    _, problems = check_split(os.path.join(root, "source_train"))
    if problem is None:
        assert problems == []
    else:
        assert any(problem in p for p in problems), problems


def test_focal_and_instance_class_limits_are_inclusive(root):
    split = os.path.join(root, "source_train")
    meta = read_meta(split)
    lo, hi = FOCAL_RANGE[0] * 64, FOCAL_RANGE[1] * 64
    names = meta.names
    edit(root, "source_train", frames={n: dict(meta.frames[n], focal=f) for n, f in zip(names, (lo, hi, hi))},
         instance_classes=[0, len(meta.classes) - 1])
    assert check_split(split)[1] == []
    edit(root, "source_train", frames={n: dict(meta.frames[n], focal=hi * 1.01) for n in names},
         instance_classes=[len(meta.classes)])
    problems = check_split(split)[1]
    assert problems[0].endswith("is outside 6.4-640 px (0.1 to 10 image widths): intrinsics of another size, "
                                "normalised or in millimetres?")
    assert problems[1].endswith(f"instance classes [{len(meta.classes)}] are not class ids "
                                f"(0-{len(meta.classes) - 1})")
    edit(root, "source_train", has_depth=False)
    assert check_split(split)[0][0].endswith("depth no, labels yes")


def test_depth_statistics_of_a_frame_record():
    from desc_train.data.prepare.common import _depth_stats

    depth = np.array([[0.0, np.nan, 1.0, 0.5], [np.inf, -2.0, 4.0, 3.0]], np.float32)
    assert _depth_stats(depth) == dict(valid=0.5, min=0.5, median=2.0, max=4.0)  # finite and > 0 only
    assert _depth_stats(np.array([[1.0, 0, 0]], np.float32))["valid"] == 0.33333  # 5 decimals
    assert _depth_stats(np.array([[7.0]], np.float32)) == dict(valid=1.0, min=7.0, median=7.0, max=7.0)
    assert _depth_stats(np.zeros((2, 2), np.float32)) == dict(valid=0.0)


def test_prepare_help_states_each_default_once(capsys):
    """`desc-train prepare DATASET --help` appends an option's default to its help,
    a size as HxW, except where the help states it, for flags and required
    options, and where there is none."""
    with pytest.raises(SystemExit) as done:
        cli(["prepare", "vkitti", "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps at the terminal's width
    assert "multiples of 16, or 'native' (default: 192x640)" in text
    assert "(auto: from its folder names) (default: auto)" in text
    assert "--workers WORKERS processes (default: the CPU count, at most 8) --limit" in text  # stated: not twice
    assert "--root ROOT the dataset as downloaded and extracted --out" in text  # required
    assert "resuming it --version" in text  # --overwrite: a flag, no default appended
    assert "(None: all) --variations" in text  # default None


def test_help_formatter_on_every_kind_of_default():
    import argparse

    from desc_train.data.prepare import _Defaults

    p = argparse.ArgumentParser(prog="x", formatter_class=_Defaults)
    p.add_argument("--size", default=(96, 320), help="HxW")
    p.add_argument("--stated", default=3, help="three (default)")
    p.add_argument("--needed", default=4, required=True, help="given always")
    p.add_argument("--n", default=5, help="a number")
    text = " ".join(p.format_help().split())
    assert "--size SIZE HxW (default: 96x320)" in text
    assert "--stated STATED three (default) --needed" in text
    assert "--needed NEEDED given always --n" in text
    assert text.endswith("--n N a number (default: 5)")


def _raw_meta(root, split, **fields):
    """Edits a split's meta.json as another tool might (NaN included): write_meta would refuse."""
    import json

    path = os.path.join(root, split, "meta.json")
    with open(path) as f:
        raw = json.load(f)
    raw.update(fields)
    with open(path, "w") as f:
        json.dump(raw, f)
    return path


@pytest.mark.parametrize("fields, named", [
    (dict(focal=float("nan")), "focal must be a finite number of pixels above 0, got nan"),
    (dict(focal=-70.0), "focal must be a finite number of pixels above 0, got -70.0"),
    (dict(image_size=[32]), "image_size must be [H, W], two positive integers, got [32]"),
])
def test_meta_json_of_non_finite_or_misshapen_fields_fails(root, capsys, fields, named):
    path = _raw_meta(root, "source_train", **fields)
    err = failure(capsys, root)
    assert f"{path}: {named}" in err
    assert "target_test" not in err  # the sound split is not blamed


def test_a_nan_frame_focal_fails(root, capsys):
    meta = read_meta(os.path.join(root, "source_train"))
    frames = {n: dict(f) for n, f in meta.frames.items()}
    frames[meta.names[2]]["focal"] = float("nan")
    path = _raw_meta(root, "source_train", frames=frames)
    assert f"{path}: frames.{meta.names[2]}.focal must be a finite number of pixels above 0, got nan" in \
        failure(capsys, root)


def _label(root, split, name, values):
    """Puts class ids `values` into the first pixels of a frame's semantic map."""
    import cv2

    path = os.path.join(root, split, "semantic", name + ".png")
    semantic = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    semantic.reshape(-1)[:len(values)] = values
    cv2.imwrite(path, semantic)
    return path


def test_class_ids_outside_the_classes_fail_in_any_frame(root, capsys):
    """Every frame's map is decoded, not a sample: the last frame's stray id fails
    the check even when --frames decodes one frame's depth; 255 (ignore) is no
    stray id."""
    split = os.path.join(root, "source_train")
    names = read_meta(split).names
    _label(root, "source_train", names[0], [255, 7])
    assert cli(["prepare", "check", root, "--frames", "1"]) == 0
    capsys.readouterr()
    path = _label(root, "source_train", names[-1], [8, 9, 200, 8])
    assert cli(["prepare", "check", root, "--frames", "1"]) == 1
    err = capsys.readouterr().err
    assert (f"{split}: 1 of 3 frames have class ids outside its classes: {path}: class ids 8, 9, 200 outside the "
            f"split's 8 classes (0-7; 255 = ignore)") in err
    _label(root, "source_train", names[0], [12])
    problems = check_split(split)[1]
    assert len(problems) == 1 and problems[0].startswith(f"{split}: 2 of 3 frames have class ids outside")
    assert f"{os.path.join(split, 'semantic', names[0])}.png: class ids 12 outside" in problems[0]


def test_certainty_maps_the_label_source_promises_must_be_there_and_readable(root, capsys):
    from desc_train.data.layout import certainty_path, write_certainty

    split = os.path.join(root, "source_train")
    meta = read_meta(split)
    edit(root, "source_train", label_source=dict(kind="segment", certainty=True))
    assert f"1 problems:\n  {split}: 3 files missing, first {certainty_path(split, meta.names[0])}" in \
        failure(capsys, root)
    for name in meta.names:
        write_certainty(split, name, np.full(meta.image_size, 0.9), np.zeros(meta.image_size, np.uint8))
    assert cli(["prepare", "check", root]) == 0
    open(certainty_path(split, meta.names[-1]), "wb").write(b"not a zip")
    assert f"{certainty_path(split, meta.names[-1])}: unreadable certainty" in failure(capsys, root)
