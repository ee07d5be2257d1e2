"""Contact sheets: the colourings of depth, labels and instances, and where each
tile lands on the sheet."""
import cv2
import numpy as np
import pytest

from desc_train.data.classes import LABEL_COLORS
from desc_train.data.layout import SplitMeta, write_meta, write_sample
from desc_train.data.sheet import colorize_depth, colorize_instances, colorize_labels, contact_sheet

H, W = 6, 10


def _magma(level):
    """The RGB colour the magma map gives the 8-bit level."""
    bgr = cv2.applyColorMap(np.array([[level]], np.uint8), cv2.COLORMAP_MAGMA)
    return bgr[0, 0, ::-1]


def test_depth_colours_inverse_depth_with_near_saturating_and_none_black():
    depth = np.array([[0.0, -1.0, 0.5, 2.0, 8.0, 32.0]], np.float32)
    rgb = colorize_depth(depth)
    assert rgb.shape == (1, 6, 3) and rgb.dtype == np.uint8
    assert (rgb[0, :2] == 0).all()  # no depth
    # 2 m and nearer saturate; beyond, sqrt(2 / depth) of the map.
    np.testing.assert_array_equal(rgb[0, 2], _magma(255))
    np.testing.assert_array_equal(rgb[0, 3], _magma(255))
    np.testing.assert_array_equal(rgb[0, 4], _magma(127))  # sqrt(0.25) = 0.5
    np.testing.assert_array_equal(rgb[0, 5], _magma(63))  # sqrt(1 / 16) = 0.25
    assert int(rgb[0, 4].sum()) > int(rgb[0, 5].sum())  # near is brighter


def test_tiny_depths_do_not_divide_by_zero():
    rgb = colorize_depth(np.array([[1e-9]], np.float32))
    np.testing.assert_array_equal(rgb[0, 0], _magma(255))


def test_labels_take_the_palette_and_unknown_ids_are_black():
    k = len(LABEL_COLORS)
    semantic = np.array([[0, 3, k - 1, -1, k, 255]])
    rgb = colorize_labels(semantic)
    assert rgb.shape == (1, 6, 3) and rgb.dtype == np.uint8
    for x, label in enumerate((0, 3, k - 1)):
        np.testing.assert_array_equal(rgb[0, x], LABEL_COLORS[label])
    assert (rgb[0, 3:] == 0).all()


def test_instances_get_fixed_bright_colours_and_no_instance_is_black():
    ids = np.array([[0, 1, 2, 1, 5]], np.uint16)
    rgb = colorize_instances(ids)
    assert rgb.shape == (1, 5, 3) and rgb.dtype == np.uint8
    assert (rgb[0, 0] == 0).all()
    np.testing.assert_array_equal(rgb[0, 1], rgb[0, 3])
    assert not np.array_equal(rgb[0, 1], rgb[0, 2])
    assert (rgb[0, [1, 2, 4]] >= 60).all()  # never near black
    np.testing.assert_array_equal(colorize_instances(ids), rgb)  # the same on every call


def _split(root, name, frames):
    split = str(root / name)
    rng = np.random.default_rng(len(name))
    write_meta(split, SplitMeta(domain="target", classes=["road", "car"], instance_classes=[1], focal=10.0,
                                image_size=[H, W], frames={f: {} for f in frames}))
    for f in frames:
        write_sample(split, f, rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
                     depth=rng.uniform(1, 40, (H, W)).astype(np.float32),
                     semantic=rng.integers(0, 2, (H, W)), instance=rng.integers(0, 3, (H, W)))
    return split


def test_sheet_places_rgb_depth_labels_and_instances_per_frame(tmp_path):
    from desc_train.data.layout import read_meta, read_sample

    a = _split(tmp_path, "alpha", ["f0", "f1", "f2"])
    b = _split(tmp_path, "beta", ["g0"])
    path = contact_sheet([a, b], str(tmp_path / "out" / "sheet.png"), per_split=2)
    sheet = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
    bar, tile_h, tile_w = 14, H + 4, W + 4
    assert sheet.shape == (3 * (bar + tile_h), 4 * tile_w, 3)  # 2 frames of alpha, 1 of beta
    for row, (split, name) in enumerate([(a, "f0"), (a, "f1"), (b, "g0")]):
        s = read_sample(split, name, read_meta(split))
        top = row * (bar + tile_h)
        band = sheet[top:top + bar]
        assert (band < 128).any() and (band == 255).mean() > 0.5  # a caption, dark on white
        tiles = [s["rgb"], colorize_depth(s["depth"]), colorize_labels(s["semantic"]),
                 colorize_instances(s["instance"])]
        for i, tile in enumerate(tiles):
            cell = sheet[top + bar:top + bar + tile_h, i * tile_w:(i + 1) * tile_w]
            np.testing.assert_array_equal(cell[2:-2, 2:-2], tile, err_msg=f"{name} tile {i}")
            border = np.ones(cell.shape[:2], bool)
            border[2:-2, 2:-2] = False
            assert (cell[border] == 255).all()


def test_sheet_shows_four_frames_of_a_split_by_default(tmp_path):
    many = _split(tmp_path, "many", [f"f{i}" for i in range(6)])
    sheet = cv2.imread(contact_sheet([many], str(tmp_path / "s.png")))
    assert sheet.shape[0] == 4 * (14 + H + 4)


def test_sheet_without_frames_or_unwritable_says_so(tmp_path):
    empty = _split(tmp_path, "empty", [])
    with pytest.raises(ValueError, match=r"no frames in \[.*empty'\]"):
        contact_sheet([empty], str(tmp_path / "s.png"))
    a = _split(tmp_path, "alpha", ["f0"])
    with pytest.raises(OSError, match=r"s\.notanimage: could not be written \(an image name"):
        contact_sheet([a], str(tmp_path / "s.notanimage"))
