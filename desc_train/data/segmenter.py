"""A simulated semantic segmenter for target images: the labels a real network
would give, made imperfect the way real ones are: boundaries that wander by a
pixel or two, patches of wrong labels, and small (far) instances missed."""
from __future__ import annotations

import cv2
import numpy as np

from .classes import INSTANCE_CLASSES

MIN_INSTANCE_ROWS = 8  # instances shorter than this are missed (as small as a segmenter misses)


def _smooth_field(rng: np.random.Generator, H: int, W: int, amplitude: float, scale: float) -> np.ndarray:
    noise = rng.standard_normal((max(2, int(H / scale)), max(2, int(W / scale)))).astype(np.float32)
    return cv2.resize(noise, (W, H), interpolation=cv2.INTER_CUBIC) * amplitude


def simulate_segmenter(scene, rng: np.random.Generator, jitter: float = 0.8, noise_patches: int = 3,
                       min_rows: int = MIN_INSTANCE_ROWS):
    """Returns (semantic uint8, instance uint16) as a segmenter would predict them."""
    H, W = scene.semantic.shape
    semantic = scene.semantic.copy()
    instance = scene.instance.copy()
    # Missed small instances: their pixels get the label of what is behind them.
    for obj in scene.objects:
        m = instance == obj.instance
        rows = np.nonzero(m.any(axis=1))[0]
        if rows.size and rows.max() - rows.min() + 1 < min_rows:
            semantic[m] = scene.background[m]
            instance[m] = 0
    # Boundary jitter: a smooth random displacement of the label maps.
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
    map_x = xs + _smooth_field(rng, H, W, jitter, 8.0)
    map_y = ys + _smooth_field(rng, H, W, jitter, 8.0)
    semantic = cv2.remap(semantic, map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
    instance = cv2.remap(instance, map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
    # Label noise: a few blobs take the label of a nearby pixel.
    for _ in range(rng.integers(0, noise_patches + 1)):
        cy, cx = rng.integers(0, H), rng.integers(0, W)
        r = rng.uniform(2, max(3, H / 12))
        blob = (ys - cy) ** 2 + (xs - cx) ** 2 < r * r
        sy = int(np.clip(cy + rng.integers(-3 * r, 3 * r + 1), 0, H - 1))
        sx = int(np.clip(cx + rng.integers(-3 * r, 3 * r + 1), 0, W - 1))
        semantic[blob] = semantic[sy, sx]
    # Instance pixels must carry an instance class.
    instance[~np.isin(semantic, INSTANCE_CLASSES)] = 0
    return semantic, instance


def simulate_logits(semantic: np.ndarray, num_classes: int, rng: np.random.Generator,
                    confidence: float = 4.0, noise: float = 0.8) -> np.ndarray:
    """Per-class logits (C, H, W) float16 a segmenter could have produced for
    `semantic`: the label wins everywhere, by a margin that shrinks within a
    few pixels of a class boundary (where real segmenters are unsure), with
    noise on top. Ignored pixels (255) get flat logits."""
    H, W = semantic.shape
    labels = semantic.astype(np.int64)
    valid = labels < num_classes
    boundary = np.zeros((H, W), np.uint8)
    boundary[:, 1:] |= (labels[:, 1:] != labels[:, :-1]).astype(np.uint8)
    boundary[1:, :] |= (labels[1:, :] != labels[:-1, :]).astype(np.uint8)
    # Distance to the nearest boundary, in pixels (0 on it).
    dist = cv2.distanceTransform((1 - boundary).astype(np.uint8), cv2.DIST_L2, 3)
    margin = confidence * (1 - np.exp(-dist / 2.0)) + 0.5
    logits = rng.normal(0, noise, (num_classes, H, W)).astype(np.float32)
    ys, xs = np.nonzero(valid)
    logits[labels[ys, xs], ys, xs] += margin[ys, xs]
    return logits.astype(np.float16)
