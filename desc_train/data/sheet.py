"""Contact sheets: RGB | depth | labels | instances for a few frames of one or
more splits, so a person can see the data and the domain gap."""
from __future__ import annotations

import os
from typing import Sequence

import cv2
import numpy as np

from .classes import LABEL_COLORS
from .layout import read_meta, read_sample


def colorize_depth(depth: np.ndarray) -> np.ndarray:
    """Inverse depth through a colour map (near is bright); no depth is black. (H, W, 3) uint8 RGB."""
    valid = depth > 0
    inv = np.where(valid, 1.0 / np.maximum(depth, 1e-3), 0.0)
    scaled = np.clip(inv / (1.0 / 2.0), 0, 1)  # 2 m and nearer saturate
    scaled = np.sqrt(scaled)  # spread the far range
    rgb = cv2.cvtColor(cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_MAGMA), cv2.COLOR_BGR2RGB)
    rgb[~valid] = 0
    return rgb


def colorize_labels(semantic: np.ndarray) -> np.ndarray:
    out = np.zeros(semantic.shape + (3,), np.uint8)
    ok = (semantic >= 0) & (semantic < len(LABEL_COLORS))
    out[ok] = LABEL_COLORS[semantic[ok]]
    return out


def colorize_instances(instance: np.ndarray) -> np.ndarray:
    ids = instance.astype(np.int64)
    rng = np.random.default_rng(7)
    palette = rng.integers(60, 256, (int(ids.max()) + 1, 3)).astype(np.uint8)
    palette[0] = 0
    return palette[ids]


def contact_sheet(split_dirs: Sequence[str], path: str, per_split: int = 4) -> str:
    """Writes a PNG with per_split rows per split: RGB | depth | labels | instances."""
    rows = []
    for split in split_dirs:
        meta = read_meta(split)
        for name in meta.names[:per_split]:
            s = read_sample(split, name, meta)
            tiles = [s["rgb"], colorize_depth(s["depth"]), colorize_labels(s["semantic"]),
                     colorize_instances(s["instance"])]
            row = np.concatenate([np.pad(t, ((2, 2), (2, 2), (0, 0)), constant_values=255) for t in tiles], axis=1)
            label = f"{os.path.basename(os.path.normpath(split))}/{name} ({meta.domain})"
            bar = np.full((14, row.shape[1], 3), 255, np.uint8)
            cv2.putText(bar, label, (4, 11), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
            rows.append(np.concatenate([bar, row], axis=0))
    if not rows:
        raise ValueError(f"no frames in {list(split_dirs)}")
    sheet = np.concatenate(rows, axis=0)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        written = cv2.imwrite(path, cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    except cv2.error:  # OpenCV has no writer for the name's extension
        written = False
    if not written:
        raise OSError(f"{path}: could not be written (an image name such as sheet.png is needed)")
    return path
