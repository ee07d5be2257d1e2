"""A procedural two-domain street-scene benchmark, made on the spot, no download.

Scenes come from one distribution: a pinhole camera at driving height looks down a
straight street (road, sidewalks, building facades and hedges on both sides, sky) with
cars on the road and pedestrians on the sidewalks, of realistic metric sizes. Geometry is
exact: every pixel's depth is the ray's first hit, and an object of height H at depth Z
spans f H / Z pixel rows. Each scene is rendered in one of two looks:

* ``source``: the clean synthetic look (flat palette, simple shading);
* ``target``: a real look (another palette, textures, directional light, haze that grows
  with depth, blur, sensor noise, vignetting), with labels from a simulated segmenter
  (segmenter.py) instead of the exact ones.

Everything is vectorised NumPy over the pixels of an image; a seed fixes everything.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List

import cv2
import numpy as np

from .classes import BUILDING, CAR, PERSON, ROAD, SIDEWALK, SKY, TERRAIN, VEGETATION

CAMERA_HEIGHT = 1.65  # metres, as KITTI's
FOCAL_PER_WIDTH = 0.58  # KITTI: 721 px over 1242 px
MAX_DEPTH = 80.0
FAR_LIMIT = 250.0  # metres; farther surfaces (near the horizon) get no depth, as the sky


@dataclass
class SceneObject:
    cls: int
    instance: int  # id in the instance map (1, 2, ...)
    X: float  # lateral position of the centre, metres (right positive)
    Z: float  # depth of the front face, metres
    height: float  # metres
    width: float  # metres


@dataclass
class Scene:
    """The exact geometry and labels of one frame."""

    depth: np.ndarray  # (H, W) float32 metres, 0 for sky
    semantic: np.ndarray  # (H, W) uint8
    instance: np.ndarray  # (H, W) uint16, 0 = none
    background: np.ndarray  # (H, W) uint8: the labels without objects (what hides behind them)
    objects: List[SceneObject]
    focal: float
    u: np.ndarray  # (H, W) float32 texture coordinates on each surface (for the target look)
    v: np.ndarray
    pitch: float  # vertical offset of every ray (a little camera pitch)


def camera(H: int, W: int):
    f = FOCAL_PER_WIDTH * W
    return f, (W - 1) / 2.0, (H - 1) / 2.0


def rays(H: int, W: int, pitch: float = 0.0):
    """Camera coordinates of each pixel's ray per unit depth (x right, y down)."""
    f, cx, cy = camera(H, W)
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
    return (xs - cx) / f, (ys - cy) / f + np.float32(pitch)


def sample_scene(rng: np.random.Generator, H: int, W: int) -> Scene:
    f, _, _ = camera(H, W)
    # Horizon a few pixels off centre: a little camera pitch.
    pitch = float(rng.uniform(-0.03, 0.03))
    rx, ry = rays(H, W, pitch)
    depth = np.full((H, W), np.inf, np.float32)
    label = np.full((H, W), SKY, np.uint8)
    u = np.zeros((H, W), np.float32)
    v = np.zeros((H, W), np.float32)

    # Ground plane y = CAMERA_HEIGHT: road, sidewalks, then terrain.
    road_half = rng.uniform(3.0, 5.5)
    offset = rng.uniform(-1.0, 1.0)  # the camera is not always centred on the road
    walk = rng.uniform(1.5, 3.5)
    down = ry > 1e-4
    zg = np.where(down, CAMERA_HEIGHT / np.maximum(ry, 1e-4), np.inf).astype(np.float32)
    xg = rx * zg
    lateral = np.abs(xg - offset)
    ground_label = np.where(lateral < road_half, ROAD, np.where(lateral < road_half + walk, SIDEWALK, TERRAIN))
    hit = down & (zg < depth)
    depth[hit], label[hit] = zg[hit], ground_label[hit]
    u[hit], v[hit] = xg[hit], zg[hit]

    # Facades (buildings or hedges) on planes x = +-X_side, in segments along z.
    for side in (-1.0, 1.0):
        x_side = offset + side * (road_half + walk + rng.uniform(0.0, 2.0))
        on_side = rx * side > 1e-4
        zf = np.where(on_side, x_side / np.where(on_side, rx, 1.0), np.inf).astype(np.float32)
        zf[zf <= 0] = np.inf
        height_above_ground = CAMERA_HEIGHT - ry * zf  # world height of the ray at the facade
        z = rng.uniform(0.0, 6.0)
        while z < MAX_DEPTH * 1.5:
            length = rng.uniform(6.0, 25.0)
            if rng.random() < 0.7:
                cls, top = BUILDING, rng.uniform(5.0, 22.0)
            else:
                cls, top = VEGETATION, rng.uniform(1.5, 5.0)
            seg = (zf >= z) & (zf < z + length) & (height_above_ground >= 0) & (height_above_ground <= top)
            if cls == VEGETATION:  # a ragged top
                ragged = 0.6 * (1 + np.sin(np.where(np.isfinite(zf), zf, 0) * 2.3 + side)) * rng.uniform(0.2, 1.0)
                seg &= height_above_ground <= top - ragged
            hit = seg & (zf < depth)
            depth[hit], label[hit] = zf[hit], cls
            u[hit], v[hit] = zf[hit], height_above_ground[hit]
            z += length + (rng.uniform(0.5, 8.0) if rng.random() < 0.5 else 0.0)

    background = label.copy()
    instance = np.zeros((H, W), np.uint16)
    objects: List[SceneObject] = []
    candidates = []
    for _ in range(rng.integers(2, 9)):  # cars in lanes
        lane = rng.choice([-0.5, 0.5]) * road_half
        candidates.append((CAR, offset + lane + rng.uniform(-0.4, 0.4), rng.uniform(5.0, 60.0),
                           float(np.clip(rng.normal(1.52, 0.12), 1.3, 1.85)), rng.uniform(1.7, 1.95)))
    for _ in range(rng.integers(0, 7)):  # pedestrians on the sidewalks
        side = rng.choice([-1.0, 1.0])
        candidates.append((PERSON, offset + side * (road_half + rng.uniform(0.3, walk - 0.3)),
                           rng.uniform(4.0, 45.0), float(np.clip(rng.normal(1.72, 0.08), 1.5, 1.95)),
                           rng.uniform(0.45, 0.65)))
    # Far to near, so nearer objects occlude farther ones.
    for cls, X, Z, Hm, Wm in sorted(candidates, key=lambda c: -c[2]):
        obj = SceneObject(cls, len(objects) + 1, float(X), float(Z), Hm, float(Wm))
        if _draw_object(obj, rx, ry, depth, label, instance, u, v):
            objects.append(obj)
    # Sky, and surfaces beyond what a 16-bit depth PNG holds: no depth.
    depth[~np.isfinite(depth) | (depth > FAR_LIMIT)] = 0.0
    return Scene(depth, label, instance, background, objects, f, u, v, pitch)


def _draw_object(obj: SceneObject, rx, ry, depth, label, instance, u, v) -> bool:
    """A fronto-parallel billboard at depth Z standing on the ground; a car's
    cabin is narrower than its body. Returns whether any pixel is visible."""
    Z = obj.Z
    x_world = rx * Z
    y_world = ry * Z  # camera y (down) at the billboard plane
    above_ground = CAMERA_HEIGHT - y_world
    inside = (np.abs(x_world - obj.X) <= obj.width / 2) & (above_ground >= 0) & (above_ground <= obj.height)
    if obj.cls == CAR:  # cabin: the top 40% spans the middle 70% of the width
        cabin = above_ground > 0.6 * obj.height
        inside &= ~cabin | (np.abs(x_world - obj.X) <= 0.35 * obj.width)
    else:  # a person narrows above the shoulders
        head = above_ground > 0.85 * obj.height
        inside &= ~head | (np.abs(x_world - obj.X) <= 0.2 * obj.width)
    visible = inside & (Z < depth)
    if not visible.any():
        return False
    depth[visible] = Z
    label[visible] = obj.cls
    instance[visible] = obj.instance
    u[visible] = x_world[visible] - obj.X
    v[visible] = above_ground[visible]
    return True


# ---------------------------------------------------------------------- looks

_SOURCE_PALETTE = np.array([
    [90, 90, 95], [170, 160, 150], [150, 110, 90], [60, 140, 60],
    [120, 180, 240], [200, 30, 30], [240, 200, 60], [120, 160, 90],
], np.float32) / 255.0
_TARGET_PALETTE = np.array([
    [70, 68, 66], [125, 122, 118], [120, 112, 104], [74, 96, 58],
    [205, 215, 222], [80, 84, 96], [96, 72, 70], [104, 112, 80],
], np.float32) / 255.0


def render(scene: Scene, look: str, rng: np.random.Generator) -> np.ndarray:
    """The RGB image (H, W, 3) uint8 of a scene in the source or target look."""
    H, W = scene.depth.shape
    sem = scene.semantic
    if look == "source":
        img = _SOURCE_PALETTE[sem].copy()
        # Per-instance paint and a plain depth shading.
        for obj in scene.objects:
            m = scene.instance == obj.instance
            img[m] = rng.uniform(0.1, 0.95, 3).astype(np.float32)
        shade = np.where(scene.depth > 0, 1.0 - 0.25 * np.clip(scene.depth / MAX_DEPTH, 0, 1), 1.0)
        img *= shade[..., None].astype(np.float32)
        return (np.clip(img, 0, 1) * 255).astype(np.uint8)
    if look != "target":
        raise ValueError(f"look must be 'source' or 'target', got {look!r}")
    img = _TARGET_PALETTE[sem].copy()
    hue = rng.uniform(-0.05, 0.05, 3).astype(np.float32)
    img += hue
    # Textures in surface coordinates: asphalt grain, paving, windows, foliage.
    u, v = scene.u, scene.v
    grain = rng.standard_normal((H, W)).astype(np.float32)
    tex = np.zeros((H, W), np.float32)
    tex += np.where(sem == ROAD, 0.05 * grain + 0.04 * (np.abs(u - np.round(u / 3.5) * 3.5) < 0.08), 0)
    tex += np.where(sem == SIDEWALK, 0.06 * (np.sin(u * 6.0) * np.sin(v * 6.0) > 0.6), 0)
    windows = (np.sin(u * 1.9) > 0.3) & (np.sin(v * 2.1) > 0.2)
    tex += np.where(sem == BUILDING, -0.18 * windows + 0.03 * grain, 0)
    tex += np.where((sem == VEGETATION) | (sem == TERRAIN), 0.09 * np.sin(u * 9.0 + 3 * np.sin(v * 7.0)), 0)
    img += tex[..., None]
    for obj in scene.objects:
        m = scene.instance == obj.instance
        paint = rng.uniform(0.05, 0.7, 3).astype(np.float32) if obj.cls == CAR else rng.uniform(0.1, 0.5, 3)
        glass = (scene.v > 0.62 * obj.height) if obj.cls == CAR else np.zeros_like(m)
        img[m] = paint
        img[m & glass] = 0.12
    # Directional light: surfaces facing one side are brighter.
    sun = rng.uniform(0.75, 1.25)
    img *= np.where(sem == BUILDING, sun, 1.0)[..., None].astype(np.float32)
    # Haze: I = I e^{-beta Z} + A (1 - e^{-beta Z}); the sky is all haze.
    beta = rng.uniform(0.01, 0.03)
    z = np.where(scene.depth > 0, scene.depth, 300.0).astype(np.float32)
    t = np.exp(-beta * z)[..., None]
    airlight = np.float32(rng.uniform(0.7, 0.9))
    img = img * t + airlight * (1 - t)
    img = cv2.GaussianBlur(img, (0, 0), sigmaX=rng.uniform(0.6, 1.1))
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
    r2 = ((xs - W / 2) / (W / 2)) ** 2 + ((ys - H / 2) / (H / 2)) ** 2
    img *= (1 - 0.25 * r2 / 2)[..., None]  # vignetting
    img += rng.normal(0, 0.02, img.shape).astype(np.float32)  # sensor noise
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def scene_rng(seed: int, domain: str, index: int) -> np.random.Generator:
    """Independent streams per (seed, domain, frame): frames can be made in any order."""
    return np.random.default_rng([seed, {"source": 0, "target": 1}[domain], index])


def make_frame(seed: int, domain: str, index: int, H: int, W: int, logits: bool = False) -> Dict:
    """Scene, picture and the labels a dataset stores for one frame; with
    `logits`, also the simulated segmenter's per-class logits (target only)."""
    from .classes import CLASSES
    from .segmenter import simulate_logits, simulate_segmenter

    rng = scene_rng(seed, domain, index)
    scene = sample_scene(rng, H, W)
    rgb = render(scene, domain, rng)
    semantic, instance = scene.semantic, scene.instance
    out = dict(scene=scene, rgb=rgb, depth=scene.depth)
    if domain == "target":
        semantic, instance = simulate_segmenter(scene, rng)
        if logits:  # drawn last, so that asking for logits changes nothing else
            out["logits"] = simulate_logits(semantic, len(CLASSES), rng)
    out.update(semantic=semantic, instance=instance)
    return out
