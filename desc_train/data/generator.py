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

A stereo frame adds the view of a second camera BASELINE metres to the right of the
first (same intrinsics, same street rendered again, same look): a point at depth Z
lies exactly f BASELINE / Z pixels further left in it.

Everything is vectorised NumPy over the pixels of an image; a seed fixes everything.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Dict, List, Optional, Tuple

import cv2
import numpy as np

from .classes import BUILDING, CAR, PERSON, ROAD, SIDEWALK, SKY, TERRAIN, VEGETATION
from ..config import MAX_DEPTH

CAMERA_HEIGHT = 1.65  # metres, as KITTI's
FOCAL_PER_WIDTH = 0.58  # KITTI: 721 px over 1242 px
FAR_LIMIT = 250.0  # metres; farther surfaces (near the horizon) get no depth, as the sky
BASELINE = 0.54  # metres from the left camera to the right one of a stereo pair, as KITTI's
# Raised whenever a frame of a given seed changes (a look, the geometry): a split made by another
# version is another benchmark (generate.py records it in meta.json, the demo checks it).
# 2: textures fixed to the surfaces, none periodic but windows and lane markings; sensor noise 0.01.
VERSION = 2


@dataclass
class SceneObject:
    cls: int
    instance: int  # id in the instance map (1, 2, ...)
    X: float  # lateral position of the centre, metres (right positive)
    Z: float  # depth of the front face, metres
    height: float  # metres
    width: float  # metres
    key: int = 0  # the object's place among its scene's candidates: the same in both views of a stereo pair


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


@dataclass
class Street:
    """What a scene's random draws decide, in metres, whatever the camera's place:
    rasterize renders it from a camera at any lateral position."""

    pitch: float
    road_half: float
    offset: float  # lateral position of the road's centre (the first camera is at x = 0)
    walk: float  # sidewalk width
    facades: List[Tuple[float, float, List[Tuple[float, float, int, float, float]]]]
    # per side: (side -1 or +1, plane x, segments (z, length, class, top, ragged amplitude))
    objects: List[SceneObject]  # the candidates, far to near; rasterize numbers the visible ones 1, 2, ...


def sample_scene(rng: np.random.Generator, H: int, W: int) -> Scene:
    return rasterize(draw_street(rng), H, W)


def draw_street(rng: np.random.Generator) -> Street:
    """The random street of a scene (rendering draws nothing more from `rng`)."""
    # Horizon a few pixels off centre: a little camera pitch.
    pitch = float(rng.uniform(-0.03, 0.03))
    road_half = rng.uniform(3.0, 5.5)
    offset = rng.uniform(-1.0, 1.0)  # the camera is not always centred on the road
    walk = rng.uniform(1.5, 3.5)
    facades = []
    for side in (-1.0, 1.0):  # buildings or hedges in segments along z
        x_side = offset + side * (road_half + walk + rng.uniform(0.0, 2.0))
        segments = []
        z = rng.uniform(0.0, 6.0)
        while z < MAX_DEPTH * 1.5:
            length = rng.uniform(6.0, 25.0)
            if rng.random() < 0.7:
                cls, top, ragged = BUILDING, rng.uniform(5.0, 22.0), 0.0
            else:
                cls, top = VEGETATION, rng.uniform(1.5, 5.0)
                ragged = rng.uniform(0.2, 1.0)
            segments.append((z, length, cls, top, ragged))
            z += length + (rng.uniform(0.5, 8.0) if rng.random() < 0.5 else 0.0)
        facades.append((side, x_side, segments))
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
    objects = [SceneObject(cls, 0, float(X), float(Z), Hm, float(Wm), key=k)
               for k, (cls, X, Z, Hm, Wm) in enumerate(sorted(candidates, key=lambda c: -c[2]))]
    return Street(pitch, road_half, offset, walk, facades, objects)


def rasterize(street: Street, H: int, W: int, camera_x: float = 0.0) -> Scene:
    """The exact depth and labels of `street` seen from a camera `camera_x`
    metres to the right of the first one: there a point at depth Z lies
    f camera_x / Z pixels further left."""
    f, _, _ = camera(H, W)
    rx, ry = rays(H, W, street.pitch)
    depth = np.full((H, W), np.inf, np.float32)
    label = np.full((H, W), SKY, np.uint8)
    u = np.zeros((H, W), np.float32)
    v = np.zeros((H, W), np.float32)

    # Ground plane y = CAMERA_HEIGHT: road, sidewalks, then terrain.
    down = ry > 1e-4
    zg = np.where(down, CAMERA_HEIGHT / np.maximum(ry, 1e-4), np.inf).astype(np.float32)
    xg = rx * zg + camera_x
    lateral = np.abs(xg - street.offset)
    ground_label = np.where(lateral < street.road_half, ROAD,
                            np.where(lateral < street.road_half + street.walk, SIDEWALK, TERRAIN))
    hit = down & (zg < depth)
    depth[hit], label[hit] = zg[hit], ground_label[hit]
    u[hit], v[hit] = xg[hit], zg[hit]

    # Facades on planes x = x_side.
    for side, x_side, segments in street.facades:
        on_side = rx * side > 1e-4
        zf = np.where(on_side, (x_side - camera_x) / np.where(on_side, rx, 1.0), np.inf).astype(np.float32)
        zf[zf <= 0] = np.inf
        height_above_ground = CAMERA_HEIGHT - ry * zf  # world height of the ray at the facade
        for z, length, cls, top, ragged in segments:
            seg = (zf >= z) & (zf < z + length) & (height_above_ground >= 0) & (height_above_ground <= top)
            if cls == VEGETATION:  # a ragged top
                wave = 0.6 * (1 + np.sin(np.where(np.isfinite(zf), zf, 0) * 2.3 + side))
                seg &= height_above_ground <= top - wave * ragged
            hit = seg & (zf < depth)
            depth[hit], label[hit] = zf[hit], cls
            u[hit], v[hit] = zf[hit], height_above_ground[hit]

    background = label.copy()
    instance = np.zeros((H, W), np.uint16)
    objects: List[SceneObject] = []
    for candidate in street.objects:
        obj = replace(candidate, instance=len(objects) + 1)
        if _draw_object(obj, rx, ry, depth, label, instance, u, v, camera_x):
            objects.append(obj)
    # Sky, and surfaces beyond what a 16-bit depth PNG holds: no depth.
    depth[~np.isfinite(depth) | (depth > FAR_LIMIT)] = 0.0
    return Scene(depth, label, instance, background, objects, f, u, v, street.pitch)


def _draw_object(obj: SceneObject, rx, ry, depth, label, instance, u, v, camera_x: float = 0.0) -> bool:
    """A fronto-parallel billboard at depth Z standing on the ground; a car's
    cabin is narrower than its body. Returns whether any pixel is visible."""
    Z = obj.Z
    x_world = rx * Z + camera_x
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


GRAIN_CELL = 0.1  # metres between the lattice points of the surface grain
GRAIN_TABLE = 256  # lattice values per side, repeated beyond (a period of 25.6 m)


def surface_grain(u: np.ndarray, v: np.ndarray, table: np.ndarray, cell: float = GRAIN_CELL) -> np.ndarray:
    """Value noise fixed to the surfaces: `table`'s values at the lattice points
    (`cell` metres apart) of the surface coordinates (u, v), blended smoothly
    between them. A point of a surface has the same grain in every view, so the
    views of a stereo pair agree on it, as on real texture; and unlike a periodic
    pattern it matches nowhere else along the row."""
    n = table.shape[0]
    x, y = u / cell, v / cell
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = x - x0, y - y0
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    i, j = x0.astype(np.int64) % n, y0.astype(np.int64) % n
    i1, j1 = (i + 1) % n, (j + 1) % n
    top = table[j, i] * (1 - fx) + table[j, i1] * fx
    bottom = table[j1, i] * (1 - fx) + table[j1, i1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def render(scene: Scene, look: str, rng: np.random.Generator, style: Optional[Dict[Any, Any]] = None) -> np.ndarray:
    """The RGB image (H, W, 3) uint8 of a scene in the source or target look.

    `style` holds the choices that belong to the scene, not to the camera (tint,
    paints, light, haze, blur): the first view rendered with a dict draws them from
    `rng` into it, the other view of a stereo pair takes them from it. The sensor noise
    is per pixel, so each view draws its own; the grain is fixed to the surfaces."""
    style = {} if style is None else style

    def shared(key, draw):
        if key not in style:
            style[key] = draw()
        return style[key]

    H, W = scene.depth.shape
    sem = scene.semantic
    if look == "source":
        img = _SOURCE_PALETTE[sem].copy()
        # Per-instance paint and a plain depth shading.
        for obj in scene.objects:
            m = scene.instance == obj.instance
            img[m] = shared(("paint", obj.key), lambda: rng.uniform(0.1, 0.95, 3).astype(np.float32))
        shade = np.where(scene.depth > 0, 1.0 - 0.25 * np.clip(scene.depth / MAX_DEPTH, 0, 1), 1.0)
        img *= shade[..., None].astype(np.float32)
        return (np.clip(img, 0, 1) * 255).astype(np.uint8)
    if look != "target":
        raise ValueError(f"look must be 'source' or 'target', got {look!r}")
    img = _TARGET_PALETTE[sem].copy()
    img += shared("hue", lambda: rng.uniform(-0.05, 0.05, 3).astype(np.float32))
    # Textures in surface coordinates: asphalt grain, paving, windows, foliage.
    u, v = scene.u, scene.v
    table = shared("grain", lambda: rng.standard_normal((GRAIN_TABLE, GRAIN_TABLE)))
    grain = surface_grain(u, v, table)
    coarse = surface_grain(u + 37.1, v + 11.3, table, cell=0.35)  # blotches: paving, foliage
    tex = np.zeros((H, W), np.float32)
    tex += np.where(sem == ROAD, 0.08 * grain + 0.04 * (np.abs(u - np.round(u / 3.5) * 3.5) < 0.08), 0)
    tex += np.where(sem == SIDEWALK, 0.06 * coarse + 0.03 * grain, 0)
    windows = (np.sin(u * 1.9) > 0.3) & (np.sin(v * 2.1) > 0.2)
    tex += np.where(sem == BUILDING, -0.18 * windows + 0.05 * grain, 0)
    tex += np.where((sem == VEGETATION) | (sem == TERRAIN), 0.1 * coarse + 0.04 * grain, 0)
    img += tex[..., None]
    for obj in scene.objects:
        m = scene.instance == obj.instance
        paint = shared(("paint", obj.key), lambda: rng.uniform(0.05, 0.7, 3).astype(np.float32)
                       if obj.cls == CAR else rng.uniform(0.1, 0.5, 3))
        glass = (scene.v > 0.62 * obj.height) if obj.cls == CAR else np.zeros_like(m)
        img[m] = paint + 0.04 * grain[m, None]  # dirt, reflections, clothing
        img[m & glass] = 0.12 + 0.04 * grain[m & glass, None]
    # Directional light: surfaces facing one side are brighter.
    sun = shared("sun", lambda: rng.uniform(0.75, 1.25))
    img *= np.where(sem == BUILDING, sun, 1.0)[..., None].astype(np.float32)
    # Haze: I = I e^{-beta Z} + A (1 - e^{-beta Z}); the sky is all haze.
    beta = shared("beta", lambda: rng.uniform(0.01, 0.03))
    z = np.where(scene.depth > 0, scene.depth, 300.0).astype(np.float32)
    t = np.exp(-beta * z)[..., None]
    airlight = shared("airlight", lambda: np.float32(rng.uniform(0.7, 0.9)))
    img = img * t + airlight * (1 - t)
    img = cv2.GaussianBlur(img, (0, 0), sigmaX=shared("blur", lambda: rng.uniform(0.6, 1.1)))
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
    r2 = ((xs - W / 2) / (W / 2)) ** 2 + ((ys - H / 2) / (H / 2)) ** 2
    img *= (1 - 0.25 * r2 / 2)[..., None]  # vignetting (of the lens: the same in both cameras)
    img += rng.normal(0, 0.01, img.shape).astype(np.float32)  # sensor noise
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def scene_rng(seed: int, domain: str, index: int, view: int = 0) -> np.random.Generator:
    """Independent streams per (seed, domain, frame): frames can be made in any
    order; view 1 is the per-pixel noise of a stereo pair's right view."""
    key = [seed, {"source": 0, "target": 1}[domain], index]
    return np.random.default_rng(key + [view] if view else key)


def make_frame(seed: int, domain: str, index: int, H: int, W: int, logits: bool = False,
               stereo: bool = False) -> Dict:
    """Scene, picture and the labels a dataset stores for one frame; with
    `logits`, also the simulated segmenter's per-class logits (target only); with
    `stereo`, also ``rgb_right`` and ``scene_right``, the view of a camera
    BASELINE metres to the right (same street, same style), and ``baseline``.
    Neither changes the other outputs."""
    from .classes import CLASSES
    from .segmenter import simulate_logits, simulate_segmenter

    rng = scene_rng(seed, domain, index)
    street = draw_street(rng)
    scene = rasterize(street, H, W)
    style: Dict[Any, Any] = {}
    rgb = render(scene, domain, rng, style)
    semantic, instance = scene.semantic, scene.instance
    out = dict(scene=scene, rgb=rgb, depth=scene.depth)
    if domain == "target":
        semantic, instance = simulate_segmenter(scene, rng)
        if logits:  # drawn last, so that asking for logits changes nothing else
            out["logits"] = simulate_logits(semantic, len(CLASSES), rng)
    out.update(semantic=semantic, instance=instance)
    if stereo:
        right = rasterize(street, H, W, camera_x=BASELINE)
        out.update(scene_right=right, rgb_right=render(right, domain, scene_rng(seed, domain, index, 1), style),
                   baseline=BASELINE)
    return out
