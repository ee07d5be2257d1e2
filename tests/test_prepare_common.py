"""The converters' shared pieces (desc_train.data.prepare.common): list hashes,
image resizing, and the per-frame checks before a frame is written."""
import hashlib

import cv2
import numpy as np
import pytest

from desc_train.data.prepare.common import Frame, _write_frame, resize_rgb, sha256_lines


def test_list_hash_is_of_the_lines_each_ended_by_one_newline():
    want = hashlib.sha256(b"a b\nc\n").hexdigest()
    assert sha256_lines(["a b\n", "c"]) == sha256_lines(["a b", "c\n"]) == want
    assert sha256_lines(["\na b", "c"]) != want  # leading newlines are content


def test_rgb_is_area_averaged_down_and_bilinear_up():
    rgb = np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8)
    assert resize_rgb(rgb, (30, 50)) is rgb
    for size, mode in (((12, 20), cv2.INTER_AREA), ((30, 20), cv2.INTER_AREA), ((60, 100), cv2.INTER_LINEAR)):
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
