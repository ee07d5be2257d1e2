"""desc_train data: the procedural benchmark's geometry, the on-disk layout,
determinism, errors that name the file, and geometry-preserving augmentations."""
import dataclasses
import os
from re import escape as re_escape

import cv2
import numpy as np
import pytest
import torch

import desc_ops
from desc_train.cli import main as cli_main
from desc_train.data import generator as gen
from desc_train.data.classes import BUILDING, CAR, PERSON, ROAD, SIDEWALK
from desc_train.data.dataset import Augment, DepthDataset, crop_frame, flip_frame, resize_frame, to_tensors
from desc_train.data.generate import generate_split
from desc_train.data.layout import DataError, SplitMeta, read_meta, read_sample, write_sample


def _alone(obj, H=96, W=320, pitch=0.0):
    """The object's pixels when drawn on an empty scene."""
    rx, ry = gen.rays(H, W, pitch)
    depth = np.full((H, W), np.inf, np.float32)
    label = np.zeros((H, W), np.uint8)
    inst = np.zeros((H, W), np.uint16)
    u = np.zeros((H, W), np.float32)
    gen._draw_object(obj, rx, ry, depth, label, inst, u, u.copy())
    return inst == obj.instance


@pytest.mark.parametrize("cls,height,Z", [(CAR, 1.5, 8.0), (CAR, 1.8, 23.0), (PERSON, 1.75, 8.0),
                                          (PERSON, 1.6, 31.0), (CAR, 1.4, 55.0)])
def test_object_spans_f_H_over_Z_rows(cls, height, Z):
    H, W = 96, 320
    f, _, _ = gen.camera(H, W)
    mask = _alone(gen.SceneObject(cls, 1, 0.3, Z, height, 1.8 if cls == CAR else 0.5), H, W)
    assert _inside(mask)
    rows = np.nonzero(mask.any(axis=1))[0]
    assert abs((rows.max() - rows.min() + 1) - f * height / Z) <= 1.0


def _inside(mask):
    return not (mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())


def _unoccluded(scene, H, W):
    """Objects seen whole: not hidden in part by a nearer one, nor cut by the image border."""
    return [o for o in scene.objects if np.array_equal(scene.instance == o.instance, _alone(o, H, W, scene.pitch))
            and _inside(scene.instance == o.instance) and (scene.instance == o.instance).any(axis=1).sum() >= 6]


def test_pinhole_relation_through_the_package_ops():
    """instance_stats + instance_heights recover the metric heights of generated objects."""
    H, W = 96, 320
    checked = 0
    for i in range(12):
        fr = gen.make_frame(3, "source", i, H, W)
        scene = fr["scene"]
        inst = torch.from_numpy(scene.instance.astype(np.int64))
        ids, K, original = desc_ops.relabel_instances(inst, return_ids=True)
        st = desc_ops.instance_stats(ids[None], K, torch.from_numpy(scene.depth)[None, None])
        est = desc_ops.instance_heights(st, scene.focal)[0]
        slot_of = {int(v): k for k, v in enumerate(original.tolist()) if v >= 0}
        for o in _unoccluded(scene, H, W):
            rows = int(st.pixel_height[0, slot_of[o.instance]])
            # Within one pixel row of the exact span.
            assert abs(float(est[slot_of[o.instance]]) - o.height) <= o.Z / scene.focal + 1e-4
            assert abs(rows - scene.focal * o.height / o.Z) <= 1.0
            checked += 1
    assert checked >= 10


def test_frames_are_deterministic_and_seeded():
    a = gen.make_frame(5, "target", 17, 48, 160)
    b = gen.make_frame(5, "target", 17, 48, 160)
    c = gen.make_frame(6, "target", 17, 48, 160)
    for key in ("rgb", "depth", "semantic", "instance"):
        assert np.array_equal(a[key], b[key])
    assert not np.array_equal(a["rgb"], c["rgb"])


@pytest.mark.subprocess
def test_split_does_not_depend_on_workers(tmp_path):
    generate_split(str(tmp_path / "one"), "target", 6, seed=2, size=(40, 120), workers=1)
    generate_split(str(tmp_path / "two"), "target", 6, seed=2, size=(40, 120), workers=2)
    for folder in ("rgb", "depth", "semantic", "instance"):
        for name in sorted(os.listdir(tmp_path / "one" / folder)):
            a = cv2.imread(str(tmp_path / "one" / folder / name), cv2.IMREAD_UNCHANGED)
            b = cv2.imread(str(tmp_path / "two" / folder / name), cv2.IMREAD_UNCHANGED)
            assert np.array_equal(a, b), (folder, name)
    assert read_meta(str(tmp_path / "one")).frames == read_meta(str(tmp_path / "two")).frames


def test_split_meta_records_each_frames_true_objects(tmp_path):
    """meta.json lists, per frame, the focal length and the scene's objects: instance
    id, class, metric height and width, lateral position and depth (4 decimals)."""
    frames = generate_split(str(tmp_path / "s"), "target", 3, seed=5, first=7, size=(40, 120), workers=1).frames
    assert frames == read_meta(str(tmp_path / "s")).frames and sorted(frames) == ["000000", "000001", "000002"]
    assert not os.path.exists(tmp_path / "s" / "logits")  # only when asked for
    for i, name in enumerate(sorted(frames)):
        scene = gen.make_frame(5, "target", 7 + i, 40, 120)["scene"]
        assert scene.objects and frames[name]["focal"] == scene.focal
        assert frames[name]["objects"] == [
            dict(instance=o.instance, cls=o.cls, height=round(o.height, 4), width=round(o.width, 4),
                 X=round(o.X, 4), Z=round(o.Z, 4)) for o in scene.objects]
        assert any(o.height != round(o.height, 4) for o in scene.objects)  # the rounding is seen


def test_benchmark_splits_are_disjoint_scenes_of_their_domain(tmp_path):
    """target_train and target_test draw different scenes of the target domain (frame
    i of a split is scene first + i, with first 100,000 apart); meta.json has the
    camera's focal length; no logits unless asked for."""
    from desc_train.data import generate_benchmark

    metas = generate_benchmark(str(tmp_path), {"source_train": 1, "target_train": 1, "target_test": 1}, seed=4,
                               size=(40, 120), workers=1, log=None)
    for split, (domain, first) in {"source_train": ("source", 0), "target_train": ("target", 100_000),
                                   "target_test": ("target", 200_000)}.items():
        want = gen.make_frame(4, domain, first, 40, 120)
        got = read_sample(str(tmp_path / split), "000000", metas[split])
        assert np.array_equal(got["rgb"], want["rgb"]), split
        assert metas[split].domain == domain and metas[split].focal == want["scene"].focal > 0
        assert not os.path.exists(tmp_path / split / "logits")


def test_domains_differ_in_look_not_in_geometry():
    """Per class, the colours of the two looks differ; the depth statistics do not."""
    src = [gen.make_frame(0, "source", i, 48, 160) for i in range(12)]
    tgt = [gen.make_frame(0, "target", i, 48, 160) for i in range(12)]

    def class_colours(frames):
        rgb = np.concatenate([f["rgb"].reshape(-1, 3) for f in frames]).astype(np.float32)
        lab = np.concatenate([f["scene"].semantic.reshape(-1) for f in frames])
        return {c: rgb[lab == c].mean(0) for c in np.unique(lab)}

    a, b = class_colours(src), class_colours(tgt)
    gaps = [np.abs(a[c] - b[c]).mean() for c in a if c in b]
    assert np.mean(gaps) > 20
    depth_src = np.concatenate([f["depth"][f["depth"] > 0] for f in src])
    depth_tgt = np.concatenate([f["depth"][f["depth"] > 0] for f in tgt])
    assert abs(np.median(depth_src) - np.median(depth_tgt)) < 0.5 * np.median(depth_src)


def test_layout_round_trip(tmp_path):
    fr = gen.make_frame(1, "source", 0, 48, 160)
    split = str(tmp_path / "split")
    write_sample(split, "a", fr["rgb"], fr["depth"], fr["semantic"], fr["instance"])
    from desc_train.data.layout import SplitMeta, write_meta
    write_meta(split, SplitMeta("source", ["x"] * 8, [5, 6], fr["scene"].focal, [48, 160], frames={"a": {}}))
    back = read_sample(split, "a", read_meta(split))
    assert np.array_equal(back["rgb"], fr["rgb"])
    assert np.allclose(back["depth"], np.round(fr["depth"] * 256) / 256, atol=1e-6)
    assert np.array_equal(back["semantic"], fr["semantic"].astype(np.int64))
    assert np.array_equal(back["instance"], fr["instance"].astype(np.int64))
    assert (back["depth"].dtype, back["semantic"].dtype, back["instance"].dtype) == (np.float32, np.int64, np.int64)
    os.remove(os.path.join(split, "semantic", "a.png"))  # no labels: -1 everywhere, int64 still
    write_meta(split, SplitMeta("source", ["x"] * 8, [5, 6], fr["scene"].focal, [48, 160], frames={"a": {}},
                                has_labels=False))
    unlabelled = read_sample(split, "a", read_meta(split))
    assert unlabelled["semantic"].dtype == np.int64 and (unlabelled["semantic"] == -1).all()
    item = DepthDataset(split)[0]
    assert item["image"].shape == (3, 48, 160) and item["depth"].shape == (1, 48, 160)
    assert item["focal"].item() == pytest.approx(fr["scene"].focal)
    assert set(item["instance_class"][item["instance_class"] >= 0].tolist()) <= {CAR, PERSON}


def test_bad_files_name_the_file(tmp_path):
    split = str(tmp_path / "bad")
    with pytest.raises(DataError, match="meta.json"):
        read_meta(split)
    generate_split(split, "source", 2, size=(32, 64), workers=1)
    meta = read_meta(split)
    depth = os.path.join(split, "depth", "000000.png")
    with open(depth, "wb") as f:
        f.write(b"not a png")
    with pytest.raises(DataError, match="depth/000000.png"):
        read_sample(split, "000000", meta)
    cv2.imwrite(depth, np.zeros((32, 64), np.uint8))
    with pytest.raises(DataError, match="depth/000000.png.*16-bit"):
        read_sample(split, "000000", meta)
    cv2.imwrite(os.path.join(split, "semantic", "000001.png"), np.zeros((10, 10), np.uint8))
    with pytest.raises(DataError, match="semantic/000001.png.*expected 64x32"):
        read_sample(split, "000001", meta)
    os.remove(os.path.join(split, "instance", "000001.png"))
    cv2.imwrite(os.path.join(split, "semantic", "000001.png"), np.zeros((32, 64), np.uint8))
    with pytest.raises(DataError, match="instance/000001.png: missing"):
        DepthDataset(split)[1]
    with open(os.path.join(split, "meta.json"), "w") as f:
        f.write("{broken")
    with pytest.raises(DataError, match="meta.json: unreadable"):
        DepthDataset(split)


@pytest.mark.parametrize("op", ["flip", "resize_half", "resize_up", "crop"])
def test_augmentations_keep_the_pinhole_relation(op):
    H, W = 96, 320
    for i in range(40):
        fr = gen.make_frame(11, "source", i, H, W)
        scene = fr["scene"]
        objs = [o for o in _unoccluded(scene, H, W) if o.Z < 20]
        if objs:
            break
    o = objs[0]
    s = dict(rgb=fr["rgb"], depth=fr["depth"], semantic=fr["semantic"].astype(np.int64),
             instance=fr["instance"].astype(np.int64), focal=scene.focal, name="x")
    if op == "flip":
        s = flip_frame(s)
    elif op == "resize_half":
        s = resize_frame(s, 0.5)
    elif op == "resize_up":
        s = resize_frame(s, 1.5)
    else:
        ys, xs = np.nonzero(s["instance"] == o.instance)
        top, left = max(0, ys.min() - 5), max(0, xs.min() - 5)
        s = crop_frame(s, top, left, min(H - top, ys.max() - top + 6), min(W - left, xs.max() - left + 6))
    t = to_tensors(s, 32)
    st = desc_ops.instance_stats(t["instance_ids"][None], 32, t["depth"][None])
    est = desc_ops.instance_heights(st, t["focal"])[0]
    slot = int(t["instance_ids"][torch.from_numpy(s["instance"] == o.instance)][0])
    # Within one pixel row (at the new scale) of the true height.
    assert abs(float(est[slot]) - o.height) <= 1.01 * o.Z / float(t["focal"]) + 1e-4
    if op.startswith("resize"):
        assert float(t["focal"]) == pytest.approx(scene.focal * s["depth"].shape[1] / W)
    else:
        assert float(t["focal"]) == pytest.approx(scene.focal)


def test_dataset_augmentation_is_reproducible(tmp_path):
    split = str(tmp_path / "aug")
    generate_split(split, "source", 3, size=(48, 160), workers=1)
    aug = Augment(hflip=0.5, scale=(0.7, 1.2), crop=(32, 96))
    a, b = DepthDataset(split, augment=aug, seed=4)[2], DepthDataset(split, augment=aug, seed=4)[2]
    assert torch.equal(a["image"], b["image"]) and a["image"].shape == (3, 32, 96)


def test_dataset_flip_mirrors_every_map_alike(tmp_path):
    """A flip (hflip=1) mirrors the image, depth, semantics, instance slots and
    logits of a frame together, and keeps the slots' classes and the focal."""
    split = str(tmp_path / "flip")
    generate_split(split, "target", 2, size=(48, 160), workers=1, logits=True)
    for i in range(2):
        plain, flipped = DepthDataset(split)[i], DepthDataset(split, augment=Augment(hflip=1.0))[i]
        assert not torch.equal(plain["image"], flipped["image"])  # not a symmetric frame
        for key in ("image", "depth", "semantic", "instance_ids", "logits"):
            assert torch.equal(flipped[key], torch.flip(plain[key], dims=[-1])), key
        assert (plain["instance_ids"] >= 0).any()
        assert torch.equal(flipped["instance_class"], plain["instance_class"])
        assert flipped["focal"].item() == plain["focal"].item()


def test_cli_generate_and_sheet(tmp_path, capsys):
    out = tmp_path / "bench"
    sheet = tmp_path / "sheet.png"
    assert cli_main(["generate", "--out", str(out), "--source", "3", "--target", "3", "--test", "2",
                     "--size", "32x96", "--workers", "1", "--sheet", str(sheet)]) == 0
    for split in ("source_train", "target_train", "target_test"):
        assert len(read_meta(str(out / split)).names) in (2, 3)
    picture = cv2.imread(str(sheet))
    assert picture is not None and picture.shape[1] == 4 * (96 + 4)
    text = capsys.readouterr().out
    assert f"under {out}" in text and f"wrote {sheet}" in text and "target_test" in text
    assert read_meta(str(out / "target_test")).image_size == [32, 96]


def test_cli_generate_options_reach_the_generator(tmp_path, capsys):
    def generate(name, *extra):
        assert cli_main(["generate", "--out", str(tmp_path / name), "--source", "0", "--target", "1", "--test", "0",
                         "--size", "16x48", "--workers", "1", *extra]) == 0
        return str(tmp_path / name / "target_train")

    plain = generate("plain")
    assert sorted(os.listdir(tmp_path / "plain")) == ["target_train"]  # a count of 0 writes no split
    assert len(read_meta(plain).names) == 1 and read_meta(plain).image_size == [16, 48]
    assert not os.path.isdir(os.path.join(plain, "logits"))
    again, seeded = generate("again"), generate("seeded", "--seed", "5", "--logits")
    name = read_meta(plain).names[0]
    rgb = {s: cv2.imread(os.path.join(s, "rgb", name + ".png")) for s in (plain, again, seeded)}
    assert np.array_equal(rgb[plain], rgb[again]) and not np.array_equal(rgb[plain], rgb[seeded])
    assert os.listdir(os.path.join(seeded, "logits"))
    assert "generated in" in capsys.readouterr().out


def test_simulated_logits(tmp_path):
    split = str(tmp_path / "logits")
    generate_split(split, "target", 2, size=(48, 160), workers=1, logits=True)
    ds = DepthDataset(split, augment=Augment(hflip=1.0, scale=(0.5, 0.5)))
    item = ds[0]
    logits, semantic = item["logits"], item["semantic"]
    assert logits.shape == (8, 24, 80) and logits.dtype == torch.float32  # stored in half precision
    agree = (logits.argmax(0) == semantic)[semantic >= 0].float().mean()
    assert agree > 0.8
    conf = desc_ops.confidence_map(logits[None])[0, 0]
    # Less sure on class boundaries than inside regions.
    boundary = desc_ops.confidence_map(semantic[None], boundary_weight=1.0)[0, 0] == 0
    assert conf[boundary & (semantic >= 0)].mean() < conf[~boundary].mean()
    # Asking for logits changes nothing else.
    assert np.array_equal(gen.make_frame(0, "target", 1, 32, 64)["rgb"],
                          gen.make_frame(0, "target", 1, 32, 64, logits=True)["rgb"])


@pytest.mark.parametrize("factor", [0.5, 1.5, 0.001])
def test_resize_and_crop_treat_every_map_alike(factor):
    """Colour is resampled (area when shrinking, bilinear when growing), depth
    and ids by nearest neighbour (no blend across edges), logits bilinearly;
    a crop cuts every map, logits included, at the same place."""

    g = np.random.default_rng(3)
    H, W = 12, 20
    s = dict(rgb=g.random((H, W, 3)).astype(np.float32), depth=g.random((H, W)).astype(np.float32) * 50,
             semantic=g.integers(-1, 5, (H, W)).astype(np.int64), instance=g.integers(-1, 3, (H, W)).astype(np.int64),
             logits=g.standard_normal((5, H, W)).astype(np.float32), focal=100.0, name="x")
    out = resize_frame(s, factor)
    size = (max(1, round(W * factor)), max(1, round(H * factor)))
    colour = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    np.testing.assert_array_equal(out["rgb"], cv2.resize(s["rgb"], size, interpolation=colour))
    np.testing.assert_array_equal(out["depth"], cv2.resize(s["depth"], size, interpolation=cv2.INTER_NEAREST))
    for key in ("semantic", "instance"):
        assert out[key].dtype == np.int64
        want = cv2.resize(s[key].astype(np.int32), size, interpolation=cv2.INTER_NEAREST)
        np.testing.assert_array_equal(out[key], want)
    logits = cv2.resize(s["logits"].transpose(1, 2, 0), size, interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(out["logits"], logits.reshape(size[1], size[0], -1).transpose(2, 0, 1))
    assert out["focal"] == pytest.approx(100.0 * size[0] / W) and out["name"] == "x"
    assert s["rgb"].shape == (H, W, 3)  # the input is left as it was

    cut = crop_frame(s, 2, 3, 7, 11)
    for key in ("rgb", "depth", "semantic", "instance"):
        np.testing.assert_array_equal(cut[key], s[key][2:9, 3:14])
    np.testing.assert_array_equal(cut["logits"], s["logits"][:, 2:9, 3:14])
    assert cut["focal"] == 100.0


def _labelled_scene(semantic, instance, background, objects):
    H, W = semantic.shape
    zeros = np.zeros((H, W), np.float32)
    return gen.Scene(depth=zeros, semantic=semantic, instance=instance, background=background, objects=objects,
                     focal=100.0, u=zeros, v=zeros.copy(), pitch=0.0)


def test_simulated_segmenter_misses_instances_shorter_than_min_rows():
    """Without jitter or label noise the prediction is the truth, except that an
    instance fewer than min_rows rows tall is missed (its pixels take the label
    behind it); one exactly min_rows tall is kept."""
    from desc_train.data.segmenter import simulate_segmenter

    background = np.full((40, 60), BUILDING, np.uint8)
    background[25:] = ROAD
    semantic, instance = background.copy(), np.zeros((40, 60), np.uint16)
    background[20:24, 30:40] = CAR  # behind the person: a car the segmenter sees, with no instance of its own
    semantic[5:13, 5:15], instance[5:13, 5:15] = CAR, 1  # 8 rows
    semantic[20:27, 30:40], instance[20:27, 30:40] = PERSON, 2  # 7 rows
    objects = [gen.SceneObject(CAR, 1, 0.0, 10.0, 1.5, 1.8), gen.SceneObject(PERSON, 2, 0.0, 12.0, 1.7, 0.6)]
    scene = _labelled_scene(semantic, instance, background, objects)
    sem, inst = simulate_segmenter(scene, np.random.default_rng(0), jitter=0.0, noise_patches=0, min_rows=8)
    want_sem, want_inst = semantic.copy(), instance.copy()
    want_sem[instance == 2], want_inst[instance == 2] = background[instance == 2], 0
    np.testing.assert_array_equal(sem, want_sem)
    np.testing.assert_array_equal(inst, want_inst)
    assert scene.semantic[25, 35] == PERSON  # the scene itself is left as it was


def test_simulated_segmenter_jitter_moves_labels_within_the_image():
    """Boundary jitter displaces the label maps, replicating the image's edge:
    a frame that is one instance of one class everywhere stays so."""
    from desc_train.data.segmenter import simulate_segmenter

    semantic, instance = np.full((40, 60), CAR, np.uint8), np.ones((40, 60), np.uint16)
    scene = _labelled_scene(semantic, instance, np.full((40, 60), ROAD, np.uint8),
                            [gen.SceneObject(CAR, 1, 0.0, 3.0, 1.5, 1.8)])
    sem, inst = simulate_segmenter(scene, np.random.default_rng(0), jitter=3.0, noise_patches=0)
    assert (sem == CAR).all() and (inst == 1).all()


def test_simulated_segmenter_label_noise_is_a_few_small_patches():
    """Label noise: up to noise_patches discs of radius at most max(3, H / 12)
    take one label each; over many frames it changes some pixels, never more
    than those discs hold."""
    from desc_train.data.segmenter import simulate_segmenter

    H, W = 48, 96
    semantic = np.zeros((H, W), np.uint8)
    for x in range(0, W, 6):
        semantic[:, x:x + 3] = SIDEWALK  # stripes: a moved label shows wherever it lands
    scene = _labelled_scene(semantic, np.zeros((H, W), np.uint16), semantic.copy(), [])
    changed = []
    for seed in range(20):
        sem, _ = simulate_segmenter(scene, np.random.default_rng(seed), jitter=0.0, noise_patches=3)
        changed.append(int((sem != semantic).sum()))
    assert max(changed) <= 3 * np.pi * max(3, H / 12) ** 2
    assert sum(c > 0 for c in changed) >= 5


def test_simulated_logits_margin_grows_away_from_boundaries():
    """Without noise: the label's logit is 0.5 on a class boundary and
    confidence (1 - exp(-d/2)) + 0.5 at distance d from it, every other logit
    0; ignored pixels (255, or any label >= C) are flat. With the defaults: noise of std 0.8 and
    a margin of about 4.5 far from any boundary."""

    from desc_train.data.segmenter import simulate_logits

    sem = np.zeros((40, 60), np.uint8)
    sem[:, 30:] = 2  # one vertical boundary between columns 29 and 30
    sem[35:, :5] = 255
    sem[38:, 5:7] = 4  # not one of the 4 classes: flat too
    logits = simulate_logits(sem, 4, np.random.default_rng(0), confidence=3.0, noise=0.0).astype(np.float32)
    assert logits.shape == (4, 40, 60)
    boundary = np.zeros(sem.shape, np.uint8)
    boundary[:, 1:] |= sem[:, 1:] != sem[:, :-1]
    boundary[1:, :] |= sem[1:, :] != sem[:-1, :]
    dist = cv2.distanceTransform((1 - boundary).astype(np.uint8), cv2.DIST_L2, 3)
    valid = sem < 4
    label = np.where(valid, sem, 0).astype(np.int64)
    won = np.take_along_axis(logits, label[None], 0)[0]
    np.testing.assert_allclose(won[valid], (3.0 * (1 - np.exp(-dist / 2.0)) + 0.5)[valid], rtol=1e-3)
    assert won[0, 30] == pytest.approx(0.5, abs=1e-3) and won[0, 29] > 1.0  # the boundary is the right pixel
    others = logits.copy()
    np.put_along_axis(others, label[None], 0.0, 0)
    assert (others == 0).all() and (logits[:, ~valid] == 0).all()

    noisy = simulate_logits(sem, 4, np.random.default_rng(1))
    assert noisy.dtype == np.float16
    noisy = noisy.astype(np.float32)
    assert noisy[1].std() == pytest.approx(0.8, rel=0.05)  # class 1 is nowhere: noise alone
    assert noisy[0][(dist > 20) & (sem == 0)].std() == pytest.approx(0.8, rel=0.1)  # the winner is noisy too
    far = dist > 20
    assert (noisy[0][far & (sem == 0)] - noisy[1][far & (sem == 0)]).mean() == pytest.approx(4.5, abs=0.2)


def test_logits_are_stored_in_half_precision_and_read_as_float32(tmp_path):
    from desc_train.data.layout import read_logits, write_logits

    logits = np.random.default_rng(0).standard_normal((3, 4, 5))  # float64
    write_logits(str(tmp_path), "f", logits)
    assert np.load(tmp_path / "logits" / "f.npy").dtype == np.float16  # half the disk of float32
    back = read_logits(str(tmp_path), "f", (4, 5))
    assert back.dtype == np.float32 and np.array_equal(back, logits.astype(np.float16).astype(np.float32))
    assert read_logits(str(tmp_path), "g", (4, 5)) is None


def test_ground_truth_is_stored_as_float32_metres_with_0_for_none(tmp_path):
    from desc_train.data.layout import read_gt, write_gt

    gt = np.array([[2.5, 0.0, -1.0], [np.nan, np.inf, 80.0]])  # float64
    write_gt(str(tmp_path), "f", gt)
    stored = np.load(str(tmp_path / "gt" / "f.npy"))  # the file itself, as other tools read it
    assert stored.dtype == np.float32
    np.testing.assert_array_equal(stored, np.float32([[2.5, 0, 0], [0, 0, 80.0]]))
    np.testing.assert_array_equal(read_gt(str(tmp_path), "f"), stored)
    assert not os.path.exists(str(tmp_path / "gt" / "f.npy.tmp.npy"))


def test_ground_truth_of_other_tools_is_cleaned_on_reading_and_checked(tmp_path):
    from desc_train.data.layout import read_gt

    os.makedirs(tmp_path / "gt")
    np.save(str(tmp_path / "gt" / "f.npy"), np.array([[2.5, -1.0], [np.nan, np.inf]]))  # float64, unclean
    got = read_gt(str(tmp_path), "f")
    assert got.dtype == np.float32 and np.array_equal(got, np.float32([[2.5, 0], [0, 0]]))
    for bad in (np.zeros((2, 2, 1)), np.zeros((2, 2), np.int32)):
        np.save(str(tmp_path / "gt" / "g.npy"), bad)
        with pytest.raises(DataError, match=f"gt/g.npy: ground truth must be a 2-D float array of metres, got "
                                            f"{bad.dtype} {re_escape(str(bad.shape))}"):
            read_gt(str(tmp_path), "g")


def test_depth_beyond_the_png_range_is_stored_as_the_largest_value(tmp_path):
    """Finite depth beyond the range saturates; infinite, NaN and negative depth is no depth (0)."""
    write_sample(str(tmp_path), "f", None, np.float32([[300.0, 1.0, np.inf, np.nan, -2.0]]), None, None,
                 depth_scale=256.0)
    stored = cv2.imread(str(tmp_path / "depth" / "f.png"), cv2.IMREAD_UNCHANGED)
    assert stored.dtype == np.uint16 and stored.tolist() == [[65535, 256, 0, 0, 0]]


def _one_frame(split):
    write_sample(split, "f", np.zeros((4, 6, 3), np.uint8), np.ones((4, 6), np.float32), np.zeros((4, 6), np.uint8),
                 np.zeros((4, 6), np.uint16))
    return SplitMeta(domain="target", classes=["road"], instance_classes=[], focal=1.0, image_size=[4, 6])


@pytest.mark.parametrize("case, message", [
    ("rgb missing", "rgb/f.png: missing RGB image"),
    ("depth npy of another size", "depth/f.npy: depth is (2, 2), expected (4, 6)"),
    ("depth png of another size", "depth/f.png: depth is 2x2, expected 6x4"),
    ("labels in colour", "semantic/f.png: labels must be single-channel"),
    ("instance ids in colour", "instance/f.png: instance ids must be single-channel"),
])
def test_sample_files_of_the_wrong_kind_are_named(tmp_path, case, message):
    split = str(tmp_path)
    meta = _one_frame(split)
    if case == "rgb missing":
        os.remove(tmp_path / "rgb" / "f.png")
    elif case == "depth npy of another size":
        np.save(str(tmp_path / "depth" / "f.npy"), np.ones((2, 2), np.float32))
    elif case == "depth png of another size":
        cv2.imwrite(str(tmp_path / "depth" / "f.png"), np.ones((2, 2), np.uint16))
    else:
        folder = "semantic" if case == "labels in colour" else "instance"
        cv2.imwrite(str(tmp_path / folder / "f.png"), np.zeros((4, 6, 3), np.uint8))
    with pytest.raises(DataError) as err:
        read_sample(split, "f", meta)
    assert str(err.value) == os.path.join(split, message)


def test_meta_json_lacking_fields_is_named_with_them(tmp_path):
    (tmp_path / "meta.json").write_text('{"classes": ["road"], "instance_classes": [], "image_size": [4, 6]}')
    with pytest.raises(DataError) as err:
        read_meta(str(tmp_path))
    assert str(err.value) == f"{tmp_path / 'meta.json'}: lacks domain, focal"


def test_frame_focal_falls_back_to_the_splits(tmp_path):
    meta = _one_frame(str(tmp_path))
    meta.frames = {"f": {"focal": 5.0}}
    assert (meta.frame_focal("f"), meta.frame_focal("g")) == (5.0, 1.0)


def test_depth_npy_and_missing_depth_read_as_float32_metres(tmp_path):
    split = str(tmp_path)
    meta = _one_frame(split)
    np.save(str(tmp_path / "depth" / "f.npy"), np.float64([[2.5, -1, np.nan, np.inf, 0, 7]] * 4))
    depth = read_sample(split, "f", meta)["depth"]  # the .npy wins over the PNG
    assert depth.dtype == np.float32 and depth[0].tolist() == [2.5, 0, 0, 0, 0, 7]
    none = read_sample(split, "f", dataclasses.replace(meta, has_depth=False))["depth"]
    assert none.dtype == np.float32 and none.shape == (4, 6) and not none.any()


@pytest.mark.parametrize("stored, message", [
    (np.zeros((2, 4, 5), np.float16), "logits of shape (2, 4, 5), expected (C, 4, 6)"),
    (np.zeros((4, 6), np.float16), "logits of shape (4, 6), expected (C, 4, 6)"),
    (None, "unreadable logits"),
])
def test_logits_of_another_shape_or_unreadable_are_named(tmp_path, stored, message):
    from desc_train.data.layout import read_logits

    os.makedirs(tmp_path / "logits")
    path = tmp_path / "logits" / "f.npy"
    if stored is None:
        path.write_bytes(b"not numpy")
    else:
        np.save(str(path), stored)
    with pytest.raises(DataError, match=re_escape(f"{path}: {message}")):
        read_logits(str(tmp_path), "f", (4, 6))


def test_only_folders_with_a_meta_json_are_splits(tmp_path):
    from desc_train.data.generate import iter_splits
    from desc_train.data.layout import SplitMeta, write_meta

    os.makedirs(tmp_path / "source_train")  # a split being written: no meta.json yet
    write_meta(str(tmp_path / "target_test"), SplitMeta(domain="target", classes=["a"], instance_classes=[],
                                                        focal=1.0, image_size=[2, 2]))
    assert list(iter_splits(str(tmp_path))) == [str(tmp_path / "target_test")]


def test_an_rgb_image_of_another_size_is_named_not_the_depth_after_it(tmp_path):
    split = str(tmp_path)
    meta = _one_frame(split)
    cv2.imwrite(str(tmp_path / "rgb" / "f.png"), np.zeros((3, 5, 3), np.uint8))
    with pytest.raises(DataError) as err:
        read_sample(split, "f", meta)
    assert str(err.value) == os.path.join(split, "rgb/f.png: RGB image is 5x3, expected 6x4")


def _meta_json(path, **fields):
    """A meta.json as another tool might write it (NaN included), bypassing write_meta's checks."""
    import json

    raw = dict(domain="target", classes=["road"], instance_classes=[], focal=10.0, image_size=[4, 6],
               frames={"f": {"focal": 10.0, "K": [10.0, 10.0, 3.0, 2.0]}})
    raw.update(fields)
    with open(os.path.join(path, "meta.json"), "w") as f:
        json.dump(raw, f)


@pytest.mark.parametrize("fields, message", [
    (dict(focal=float("nan")), "focal must be a finite number of pixels above 0, got nan"),
    (dict(focal=0), "focal must be a finite number of pixels above 0, got 0"),
    (dict(focal=-725.0), "focal must be a finite number of pixels above 0, got -725.0"),
    (dict(focal=float("inf")), "focal must be a finite number of pixels above 0, got inf"),
    (dict(focal=[725.0, 725.0]), "focal must be a finite number of pixels above 0, got [725.0, 725.0]"),
    (dict(focal="725"), "focal must be a finite number of pixels above 0, got '725'"),
    (dict(focal=True), "focal must be a finite number of pixels above 0, got True"),
    (dict(image_size=[4]), "image_size must be [H, W], two positive integers, got [4]"),
    (dict(image_size="4x6"), "image_size must be [H, W], two positive integers, got '4x6'"),
    (dict(image_size=[4, 0]), "image_size must be [H, W], two positive integers, got [4, 0]"),
    (dict(classes="road"), "classes must be a list of class names, got 'road'"),
    (dict(instance_classes=[1.5]), "instance_classes must be a list of class ids, got [1.5]"),
    (dict(depth_scale=0), "depth_scale must be a finite number above 0, got 0"),
    (dict(has_labels="yes"), "has_labels must be true or false, got 'yes'"),
    (dict(max_instances=-1), "max_instances must be a count or null, got -1"),
    (dict(frames=["f"]), "frames must be an object of frame name -> object, got ['f']"),
    (dict(frames={"f": {"focal": float("nan")}}), "frames.f.focal must be a finite number of pixels above 0, got nan"),
    (dict(frames={"f": {"focal": 0.0}}), "frames.f.focal must be a finite number of pixels above 0, got 0.0"),
    (dict(frames={"f": {"K": [10.0, 10.0, 3.0]}}),
     "frames.f.K must be [fx, fy, cx, cy], four numbers, got [10.0, 10.0, 3.0]"),
    (dict(frames={"f": {"K": [0.0, 10.0, 3.0, 2.0]}}), "frames.f.K focal lengths fx 0.0 and fy 10.0 must be above 0"),
    (dict(frames={"f": {"K": [10.0, 10.0, float("nan"), 2.0]}}), "frames.f.K must be finite, got cx nan"),
])
def test_meta_json_fields_of_the_wrong_kind_are_named(tmp_path, fields, message):
    """One line naming the meta.json and the field, not a traceback later (a list
    where a number belongs) and not a split that trains on NaN focal lengths."""
    _meta_json(str(tmp_path), **fields)
    with pytest.raises(DataError) as err:
        read_meta(str(tmp_path))
    assert str(err.value) == f"{tmp_path / 'meta.json'}: {message}"


def test_meta_json_is_written_strict_and_checked(tmp_path):
    """write_meta refuses what read_meta would (a NaN focal: not even JSON), and
    writes nothing then; a meta.json.tmp a killed write left is replaced."""
    import json

    from desc_train.data.layout import write_meta

    split = str(tmp_path)
    meta = _one_frame(split)
    (tmp_path / "meta.json.tmp").write_text("{half of a meta.js")
    write_meta(split, meta)
    assert sorted(os.listdir(split)) == ["depth", "instance", "meta.json", "rgb", "semantic"]
    for bad in (dict(focal=float("nan")), dict(frames={"f": {"focal": -1.0}})):
        with pytest.raises(DataError, match=re_escape(os.path.join(split, "meta.json"))):
            write_meta(split, dataclasses.replace(meta, **bad))
        assert "NaN" not in (tmp_path / "meta.json").read_text() and not (tmp_path / "meta.json.tmp").exists()
    assert json.loads((tmp_path / "meta.json").read_text())["focal"] == 1.0


def test_a_full_disk_keeps_the_previous_file_and_leaves_no_tmp(tmp_path, monkeypatch):
    import errno
    import json

    import desc_train.data.layout as layout

    split = str(tmp_path)
    meta = _one_frame(split)
    layout.write_meta(split, meta)
    before = (tmp_path / "meta.json").read_text()

    def full_disk(obj, f, **kw):
        f.write('{"domain": "tar')  # part of it reached the disk
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(json, "dump", full_disk)
    with pytest.raises(OSError) as err:
        layout.write_meta(split, dataclasses.replace(meta, focal=2.0))
    assert str(err.value) == (f"{tmp_path / 'meta.json'}: could not be written (No space left on device); the "
                              f"previous file, if any, is kept")
    assert (tmp_path / "meta.json").read_text() == before and not (tmp_path / "meta.json.tmp").exists()
    monkeypatch.undo()
    layout.write_gt(split, "f", np.ones((2, 3), np.float32))
    monkeypatch.setattr(np, "save", lambda f, a: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left")))
    with pytest.raises(OSError, match=re_escape(f"{layout.gt_path(split, 'f')}: could not be written (No space")):
        layout.write_gt(split, "f", np.zeros((2, 3), np.float32))
    monkeypatch.undo()
    assert (layout.read_gt(split, "f") == 1).all() and os.listdir(tmp_path / "gt") == ["f.npy"]


@pytest.mark.parametrize("protocol, message", [
    (dict(caps=[[80, 1e-3]]), "eval.caps must be a list of [min, max] metres, 0 <= min < max, got [[80, 0.001]]"),
    (dict(caps="0.001,80"), "eval.caps must be a list of [min, max] metres, 0 <= min < max, got '0.001,80'"),
    (dict(crop="eigen"), "eval.crop must be null or one of garg, cityscapes, got 'eigen'"),
])
def test_an_evaluation_protocol_of_the_wrong_kind_is_named(tmp_path, protocol, message):
    from desc_train.data.layout import EVAL_CROPS
    from desc_train.evaluate import CROPS

    assert set(EVAL_CROPS) == set(CROPS)
    _meta_json(str(tmp_path), eval=protocol)
    with pytest.raises(DataError) as err:
        read_meta(str(tmp_path))
    assert str(err.value) == f"{tmp_path / 'meta.json'}: {message}"
