"""Mask2Former's inference from raw query outputs (desc_train/data/mask2former.py), against a plain NumPy
implementation of the same rules written here, on hand-made and random query outputs; and the certainty maps
that stand for its semantic scores in the confidence map. No transformers needed."""
import numpy as np
import pytest
import torch

import desc_ops
from desc_train.data import coco
from desc_train.data.dataset import certainty_logits, read_certainty_logits
from desc_train.data.layout import DataError, SplitMeta, certainty_path, read_certainty, write_certainty
from desc_train.data.mask2former import panoptic_inference, resize_masks, semantic_certainty
from desc_train.data.prepare.labels import Segment, Settings, label_maps

C = len(coco.CLASSES)
NO_OBJECT = C
ROAD, SKY, CAR, PERSON, TRUCK = (coco.class_id(n) for n in ("road", "sky-other-merged", "car", "person", "truck"))


# ---------------------------------------------------------------- the reference, in NumPy
def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def reference(class_logits, mask_logits, thresh, overlap=0.8, num_things=80):
    """(semantic (H, W) with 255 void, instance (H, W) numbered by decreasing area, number of segments), by
    Mask2Former's panoptic_inference: the queries taken one by one, the pixels compared one query at a time."""
    p = softmax(class_logits.astype(np.float64))
    sig = 1 / (1 + np.exp(-mask_logits.astype(np.float64)))
    kept = [q for q in range(len(p)) if p[q].argmax() != p.shape[1] - 1 and p[q].max() > thresh]
    H, W = mask_logits.shape[1:]
    owner, best = np.full((H, W), -1), np.full((H, W), -np.inf)
    for q in kept:  # strictly better: the first query wins a tie
        value = p[q].max() * sig[q]
        better = value > best
        owner[better], best[better] = q, value[better]
    semantic, instance = np.full((H, W), 255), np.zeros((H, W), int)
    things, stuff_classes = [], set()
    for q in kept:
        mine = owner == q
        final = mine & (sig[q] >= 0.5)
        if mine.sum() == 0 or (sig[q] >= 0.5).sum() == 0 or final.sum() == 0:
            continue
        if mine.sum() / (sig[q] >= 0.5).sum() < overlap:
            continue
        cls = p[q].argmax()
        semantic[final] = cls
        if cls < num_things:
            things.append((-final.sum(), len(things), final))
        else:
            stuff_classes.add(cls)
    for rank, (_, _, final) in enumerate(sorted(things, key=lambda t: t[:2])):
        instance[final] = rank + 1
    return semantic, instance, len(things) + len(stuff_classes)


def fused_maps(class_logits, mask_logits, thresh):
    """The package's fusion, through the maps every labeller writes (labels.label_maps)."""
    seg, segments = panoptic_inference(torch.from_numpy(class_logits), torch.from_numpy(mask_logits),
                                       num_things=coco.NUM_THINGS, score_thresh=thresh)
    settings = Settings(size=tuple(seg.shape), score_thresh=thresh, instance_classes=tuple(range(coco.NUM_THINGS)),
                        max_instances=100)
    as_segments = [Segment(s.id, s.label, s.label < coco.NUM_THINGS, s.score, False) for s in segments]
    semantic, instance, counts = label_maps(seg.numpy(), as_segments, settings, "test")
    return semantic, instance, counts, segments


def confident(*classes, margin=(4.0,)):
    """Class logits (Q, C + 1): query i is class classes[i], with a softmax maximum set by its margin."""
    logits = np.zeros((len(classes), C + 1), np.float32)
    for q, (cls, m) in enumerate(zip(classes, np.broadcast_to(margin, len(classes)))):
        logits[q, cls] = m + np.log(C)  # probability e^m / (e^m + 1) of this class
    return logits


# ---------------------------------------------------------------- panoptic fusion
def hand_made():
    """12x16. Two road queries (left and right, one stuff segment); two cars, the larger numbered first; a
    person mostly hidden behind a car (dropped by the overlap rule: its pixels stay void); a confident
    no-object query over everything; sky scoring 0.7 (below 0.8); a strip where the best query's mask is
    below 0.5 (void)."""
    H, W = 12, 16
    road_right, road_left, car_small, car_big, person, nothing, sky, faint = range(8)
    class_logits = confident(ROAD, ROAD, CAR, CAR, PERSON, NO_OBJECT, SKY, TRUCK,
                             margin=[5, 4, 6, 5.5, 3, 9, np.log(0.7 / 0.3), 5])
    masks = np.full((8, H, W), -6.0, np.float32)
    masks[road_right, 8:, 8:] = 6
    masks[road_left, 8:, :8] = 6
    masks[car_small, 3:6, 1:4] = 6
    masks[car_big, 2:7, 9:15] = 6
    masks[person, 4:7, 2:5] = 3  # 9 pixels, 4 of them inside the small car, whose score x mask is higher
    masks[nothing] = 8
    masks[sky, :2] = 6
    masks[faint, 7, :] = -0.5  # the faint truck is every query's best on row 7, but below 0.5 there
    return class_logits, masks


def test_hand_made_queries_against_the_reference():
    class_logits, masks = hand_made()
    semantic, instance, counts, segments = fused_maps(class_logits, masks, 0.8)
    expected_semantic, expected_instance, expected_segments = reference(class_logits, masks, 0.8)
    np.testing.assert_array_equal(semantic, expected_semantic)
    np.testing.assert_array_equal(instance, expected_instance)
    assert counts["segments"] == expected_segments
    # what the case is made to show
    assert (semantic[8:] == ROAD).all() and [s.label for s in segments].count(ROAD) == 1  # one stuff segment
    assert (instance[2:7, 9:15] == 1).all() and (instance[3:6, 1:4] == 2).all()  # by decreasing area
    assert (semantic[6, 2:5] == 255).all() and PERSON not in semantic  # the hidden person's pixels: void
    assert (semantic[:2] == 255).all() and (semantic[7] == 255).all()  # sky below 0.8; the faint strip
    assert NO_OBJECT not in [s.label for s in segments]


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("thresh", [0.5, 0.8])
def test_random_queries_against_the_reference(seed, thresh):
    rng = np.random.default_rng(seed)
    Q, H, W = 10, 16, 20
    classes = rng.choice([ROAD, SKY, CAR, PERSON, TRUCK, NO_OBJECT], Q)
    class_logits = confident(*classes, margin=rng.uniform(0, 4, Q)) + rng.normal(0, 0.3, (Q, C + 1))
    # blobs of mixed strength, so that masks overlap, some pixels are nobody's and some queries are hidden
    yy, xx = np.mgrid[:H, :W]
    centres = rng.uniform([0, 0], [H, W], (Q, 2))
    radius = rng.uniform(2, 8, Q)
    dist = np.hypot(yy - centres[:, :1, None], xx - centres[:, 1:, None])
    masks = (rng.uniform(1, 6, (Q, 1, 1)) * (1 - dist / radius[:, None, None])).astype(np.float32)
    semantic, instance, counts, segments = fused_maps(class_logits.astype(np.float32), masks, thresh)
    expected_semantic, expected_instance, expected_segments = reference(class_logits, masks, thresh)
    np.testing.assert_array_equal(semantic, expected_semantic)
    np.testing.assert_array_equal(instance, expected_instance)
    assert counts["segments"] == len(segments) == expected_segments  # no segment without pixels


def test_no_query_kept_is_all_void():
    seg, segments = panoptic_inference(torch.zeros(3, C + 1), torch.ones(3, 4, 5), num_things=coco.NUM_THINGS)
    assert segments == [] and seg.dtype == torch.int32 and seg.shape == (4, 5) and not seg.any()


def test_masks_are_resized_once_bilinearly_as_logits():
    logits = torch.tensor([[[-4.0, 4.0]]])  # (Q=1, 1, 2)
    big = resize_masks(logits, (1, 4))
    assert big.shape == (1, 1, 4) and torch.allclose(big, torch.tensor([[[-4.0, -2.0, 2.0, 4.0]]]))
    assert resize_masks(logits, (1, 2)) is logits


# ---------------------------------------------------------------- certainty
def semseg_numpy(class_logits, mask_logits):
    """Mask2Former's semantic scores (C, H, W), normalised over the classes."""
    p = softmax(class_logits.astype(np.float64))[:, :-1]
    s = np.einsum("qc,qhw->chw", p, 1 / (1 + np.exp(-mask_logits.astype(np.float64))))
    return s / s.sum(0)


def random_outputs(seed, Q=8, H=12, W=16):
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 3, (Q, C + 1)).astype(np.float32), rng.normal(0, 4, (Q, H, W)).astype(np.float32))


def test_semantic_certainty_is_the_maximum_of_the_normalised_scores():
    class_logits, masks = random_outputs(0)
    prob, label = semantic_certainty(torch.from_numpy(class_logits), torch.from_numpy(masks))
    scores = semseg_numpy(class_logits, masks)
    np.testing.assert_allclose(prob.numpy(), scores.max(0), rtol=1e-5)
    np.testing.assert_array_equal(label.numpy(), scores.argmax(0))


def split_with_classes(tmp_path, H, W):
    return str(tmp_path / "s"), SplitMeta(domain="target", classes=list(coco.CLASSES), instance_classes=[],
                                          focal=1.0, image_size=[H, W], has_depth=False)


@pytest.mark.parametrize("seed", range(3))
def test_stored_certainty_gives_the_confidence_map_of_the_full_scores(tmp_path, seed):
    class_logits, masks = random_outputs(seed)
    scores = semseg_numpy(class_logits, masks)
    split, meta = split_with_classes(tmp_path, *masks.shape[1:])
    prob, label = semantic_certainty(torch.from_numpy(class_logits), torch.from_numpy(masks))
    write_certainty(split, "f", prob.numpy(), label.numpy())
    logits = read_certainty_logits(split, "f", meta)
    assert logits.shape == (C, *masks.shape[1:]) and logits.dtype == torch.float32
    full = torch.from_numpy(np.log(scores)).float()[None]
    ignored = [int(v) for v in np.unique(scores.argmax(0))[::2]]  # the pixels of these classes get 0
    for ignore in (None, ignored):
        expected = desc_ops.confidence_map(full, ignore_classes=ignore)
        got = desc_ops.confidence_map(logits[None], ignore_classes=ignore)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)  # 16-bit rounding of q: 7.7e-6
    assert (expected == 0).any() and (expected > 0).any()


def test_certainty_logits_at_the_ends_of_the_range():
    q = torch.tensor([[1.0, 1 / C, 1 / C - 1e-6, 0.5, 0.0]])  # 0: no segmenter writes it, a file may hold it
    label = torch.tensor([[5, 7, 7, 132, 3]])
    logits = certainty_logits(q, label, C)
    assert torch.isfinite(logits).all()
    top, arg = logits.softmax(0).max(0)
    torch.testing.assert_close(top, q.clamp_min(1 / C), atol=1e-6, rtol=0)
    assert arg[0, 0] == 5 and arg[0, 3] == 132
    s = desc_ops.confidence_map(logits[None])[0, 0, 0]
    assert s[0] == 1 and (s[1:3].abs() < 1e-6).all() and s[4] == 0  # below 1/C is as uncertain as 1/C


def test_a_split_without_certainty_reads_none(tmp_path):
    split, meta = split_with_classes(tmp_path, 2, 3)
    assert read_certainty(split, "f", meta) is None and read_certainty_logits(split, "f", meta) is None


def test_bad_certainty_files_are_named(tmp_path):
    split, meta = split_with_classes(tmp_path, 2, 3)
    path = certainty_path(split, "f")
    write_certainty(split, "f", np.full((2, 3), 0.5), np.zeros((2, 3), np.uint8))
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    with pytest.raises(DataError, match=f"^{path}: unreadable certainty"):
        read_certainty(split, "f", meta)
    write_certainty(split, "f", np.full((3, 2), 0.5), np.zeros((3, 2), np.uint8))
    with pytest.raises(DataError, match=rf"^{path}: holds prob uint16 \(3, 2\), label uint8 \(3, 2\); expected "
                                        r"prob \(H, W\) uint16 and label \(H, W\) uint8 of 2x3"):
        read_certainty(split, "f", meta)
    write_certainty(split, "f", np.full((2, 3), 0.5), np.full((2, 3), 140, np.uint8))
    with pytest.raises(DataError, match=f"^{path}: label holds class ids 140 outside the split's 133 classes"):
        read_certainty(split, "f", meta)
    np.savez(path, prob=np.zeros((2, 3), np.uint16))
    with pytest.raises(DataError, match=f"^{path}: holds prob uint16 \\(2, 3\\); expected"):
        read_certainty(split, "f", meta)
