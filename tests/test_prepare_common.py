"""The converters' shared pieces (desc_train.data.prepare.common): list hashes,
image resizing, and the per-frame checks before a frame is written."""
import argparse
import hashlib
import os
import shutil

import cv2
import numpy as np
import pytest

from desc_train.data.layout import DataError, read_meta
from desc_train.data.prepare.common import (Frame, _write_frame, anisotropy_note, parse_size, resize_rgb, sha256_lines,
                                            write_split)


def test_list_hash_is_of_the_lines_each_ended_by_one_newline():
    want = hashlib.sha256(b"a b\nc\n").hexdigest()
    assert sha256_lines(["a b\n", "c"]) == sha256_lines(["a b", "c\n"]) == want
    assert sha256_lines(["\na b", "c"]) != want  # leading newlines are content
    assert sha256_lines(["a b \r\n", "cX"]) == hashlib.sha256(b"a b \r\ncX\n").hexdigest()  # only "\n" is stripped


def test_rgb_is_area_averaged_down_and_bilinear_up():
    rgb = np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8)
    assert resize_rgb(rgb, (30, 50)) is rgb
    for size, mode in (((12, 20), cv2.INTER_AREA), ((30, 20), cv2.INTER_AREA), ((12, 50), cv2.INTER_AREA),
                       ((60, 100), cv2.INTER_LINEAR), ((30, 100), cv2.INTER_LINEAR), ((60, 50), cv2.INTER_LINEAR),
                       ((40, 45), cv2.INTER_AREA)):
        np.testing.assert_array_equal(resize_rgb(rgb, size), cv2.resize(rgb, size[::-1], interpolation=mode))
    assert not np.array_equal(cv2.resize(rgb, (20, 30), interpolation=cv2.INTER_AREA),
                              cv2.resize(rgb, (20, 30), interpolation=cv2.INTER_LINEAR))


@pytest.mark.parametrize("key", ["depth", "semantic", "instance"])
def test_a_map_of_another_size_than_the_image_is_refused(tmp_path, key):
    frame = Frame(name="f", src="rgb/f.png", rgb=np.zeros((4, 6, 3), np.uint8), K=[5.0, 5.0, 3.0, 2.0],
                  **{key: np.zeros((4, 5), np.float32 if key == "depth" else np.uint8)})
    name, record, error = _write_frame((str(tmp_path), "f", None, lambda job: frame, None, 256.0))
    assert (name, record) == ("f", None)
    assert error == f"rgb/f.png: {key} is 5x4 but the image is 6x4"


def _frame(job):
    if job == "bad":
        raise DataError("rgb/bad.png: unreadable")
    return Frame(name=job, src=f"rgb/{job}.png", rgb=np.full((4, 6, 3), 7, np.uint8), K=[5.0, 5.0, 3.0, 2.0],
                 depth=np.ones((4, 6), np.float32))


def _write(split_dir, frames, args, lines, workers=1):
    meta = dict(domain="target", classes=["road"], instance_classes=[])
    return write_split(split_dir, frames, _frame, size=None, meta=meta, args=args, workers=workers, log=lines.append)


def test_repeated_frame_names_are_refused_before_anything_is_written(tmp_path):
    with pytest.raises(DataError, match=r"frame names repeat \(a, b\): the frame list names some frames twice"):
        _write(str(tmp_path / "s"), [("a", "a"), ("b", "b"), ("a", "a"), ("c", "c"), ("b", "b")], {}, [])
    assert not os.path.exists(tmp_path / "s")


def test_a_failed_split_resumes_under_the_same_arguments_and_restarts_under_others(tmp_path):
    split, lines = str(tmp_path / "s"), []
    with pytest.raises(DataError, match="1 of 2 frames failed"):
        _write(split, [("a", "a"), ("b", "bad")], {"size": "native"}, lines, workers=2)
    _write(split, [("a", "a"), ("b", "b")], {"size": "native"}, lines)
    assert f"{split}: resuming, 1 of 2 frames written already" in lines
    shutil.rmtree(split)
    lines.clear()
    with pytest.raises(DataError):
        _write(split, [("a", "a"), ("b", "bad")], {"size": "native"}, lines)
    _write(split, [("a", "a"), ("b", "b")], {"size": [4, 6]}, lines)
    assert not any("resuming" in line for line in lines)
    assert sorted(read_meta(split).frames) == ["a", "b"]


@pytest.mark.parametrize("text, want", [("192x640", (192, 640)), ("16x16", (16, 16)), ("native", None)])
def test_size_is_multiples_of_16_or_native(text, want):
    assert parse_size(text) == want


@pytest.mark.parametrize("text", ["0x32", "32x0", "8x640", "192x630", "192", "axb"])
def test_other_sizes_are_refused(text):
    with pytest.raises(argparse.ArgumentTypeError, match=repr(text)):
        parse_size(text)


def test_anisotropy_note_when_x_and_y_scale_more_than_1_percent_apart():
    assert anisotropy_note((375, 1242), None) is None
    assert anisotropy_note((375, 1242), (375, 1242)) is None
    assert anisotropy_note((100, 200), (50, 100)) is None
    assert anisotropy_note((100, 200), (100, 196)) == (
        "note: 200x100 -> 196x100 scales x by 0.9800 and y by 1.0000; fx and fy are scaled apart, and the focal "
        "of the height prior is fy")


@pytest.mark.parametrize("K, problem", [
    ([float("nan"), 5.0, 3.0, 2.0], "must be finite, got fx nan"),
    ([5.0, 0.0, 3.0, 2.0], "focal lengths fx 5.0 and fy 0.0 must be above 0"),
    ([-5.0, 5.0, 3.0, 2.0], "focal lengths fx -5.0 and fy 5.0 must be above 0"),
    ([5.0, 5.0, -3.0, 2.0], "principal point cx -3.0 and cy 2.0 must not be negative"),
    ([5.0, 5.0, 3.0], "must be [fx, fy, cx, cy], four numbers, got [5.0, 5.0, 3.0]"),
])
def test_intrinsics_that_are_not_finite_and_positive_fail_the_frame_before_it_is_written(tmp_path, K, problem):
    frame = Frame(name="f", src="rgb/f.png", rgb=np.zeros((4, 6, 3), np.uint8), K=K)
    name, record, error = _write_frame((str(tmp_path), "f", None, lambda job: frame, None, 256.0))
    assert (name, record, error) == ("f", None, f"rgb/f.png: intrinsics {problem}")
    assert os.listdir(tmp_path) == []  # nothing of the frame written


def test_a_record_a_killed_run_left_half_written_is_rewritten(tmp_path):
    """A .tmp of a frame record (a write a kill cut short) is no record: the
    frame is converted again and the .tmp replaced; the finished split holds no .tmp."""
    split, lines = str(tmp_path / "s"), []
    with pytest.raises(DataError):
        _write(split, [("a", "a"), ("b", "bad")], {}, lines)
    records = os.path.join(split, ".prepare")
    with open(os.path.join(records, "b.json.tmp"), "w") as f:
        f.write('{"record": {"foc')
    _write(split, [("a", "a"), ("b", "b")], {}, lines)
    assert f"{split}: resuming, 1 of 2 frames written already" in lines
    assert sorted(read_meta(split).frames) == ["a", "b"] and not os.path.exists(records)
    leftovers = [f for _, _, files in os.walk(split) for f in files if f.endswith(".tmp")]
    assert leftovers == []


def test_a_full_disk_during_a_frame_record_fails_in_one_line_and_resumes(tmp_path, monkeypatch):
    import errno
    import json

    import desc_train.data.prepare.common as common

    split, lines = str(tmp_path / "s"), []
    real = json.dump

    def dump(obj, f, **kw):
        if "record" in obj and obj["record"]["src"] == "rgb/b.png":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(obj, f, **kw)

    monkeypatch.setattr(common.json, "dump", dump)
    with pytest.raises(OSError) as err:
        _write(split, [("a", "a"), ("b", "b")], {}, lines)
    record = os.path.join(split, ".prepare", "b.json")
    assert str(err.value) == f"{record}: could not be written (No space left on device); the previous file, if any, " \
                             f"is kept"
    assert not os.path.exists(record + ".tmp") and not os.path.exists(os.path.join(split, "meta.json"))
    monkeypatch.undo()
    _write(split, [("a", "a"), ("b", "b")], {}, lines)  # room again: the rerun resumes
    assert f"{split}: resuming, 1 of 2 frames written already" in lines
    assert sorted(read_meta(split).frames) == ["a", "b"]
