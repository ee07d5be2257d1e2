"""Writes the procedural benchmark in the on-disk layout (layout.py)."""
from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Dict, Iterable, Optional, Tuple

from .classes import CLASSES, INSTANCE_CLASSES
from .generator import BASELINE, VERSION, make_frame
from .layout import SplitMeta, write_logits, write_meta, write_sample

# The default benchmark: labelled source frames, unlabelled target frames for
# training, and labelled target frames held out for evaluation; target_val, frames
# for choosing settings without looking at target_test (desc-train study).
DEFAULT_SPLITS = {"source_train": ("source", 0), "target_train": ("target", 100_000),
                  "target_test": ("target", 200_000), "target_val": ("target", 300_000)}
STEREO_SPLIT = "target_train"  # the split that gets right views when asked for


def _write_range(args) -> Dict[str, Dict]:
    split_dir, domain, seed, first, start, stop, H, W, logits, stereo = args
    frames = {}
    for i in range(start, stop):
        fr = make_frame(seed, domain, first + i, H, W, logits=logits, stereo=stereo)
        name = f"{i:06d}"
        write_sample(split_dir, name, fr["rgb"], fr["depth"], fr["semantic"], fr["instance"],
                     rgb_right=fr.get("rgb_right"))
        if "logits" in fr:
            write_logits(split_dir, name, fr["logits"])
        # The true objects (instance id, class, metric size, depth): ground truth for
        # checks and for evaluating a height predictor; training never reads it.
        objects = [dict(instance=o.instance, cls=o.cls, height=round(o.height, 4), width=round(o.width, 4),
                        X=round(o.X, 4), Z=round(o.Z, 4)) for o in fr["scene"].objects]
        frames[name] = {"focal": fr["scene"].focal, "objects": objects}
    return frames


def generate_split(split_dir: str, domain: str, count: int, *, seed: int = 0, first: int = 0,
                   size: Tuple[int, int] = (96, 320), workers: Optional[int] = None,
                   logits: bool = False, stereo: bool = False) -> SplitMeta:
    """`count` frames of `domain` ("source" or "target") into split_dir; frame i
    is the scene (seed, domain, first + i), whatever the number of workers. With
    `stereo`, also each frame's right view (rgb_right/, from a camera BASELINE
    metres to the right) and the baseline in meta.json."""
    if domain not in ("source", "target"):
        raise ValueError(f"domain must be 'source' or 'target', got {domain!r}")
    H, W = size
    workers = workers or min(os.cpu_count() or 1, 8)
    chunk = max(1, -(-count // (workers * 4)))
    jobs = [(split_dir, domain, seed, first, s, min(count, s + chunk), H, W, logits, stereo)
            for s in range(0, count, chunk)]
    frames: Dict[str, Dict] = {}
    os.makedirs(split_dir, exist_ok=True)
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(workers) as pool:
            for part in pool.map(_write_range, jobs):
                frames.update(part)
    else:
        for job in jobs:
            frames.update(_write_range(job))
    focal = next(iter(frames.values()))["focal"] if frames else 0.0
    meta = SplitMeta(domain=domain, classes=list(CLASSES), instance_classes=list(INSTANCE_CLASSES), focal=focal,
                     image_size=[H, W], frames=frames, baseline=BASELINE if stereo else None,
                     dataset=dict(name="desc_train generator", version=VERSION, seed=seed, first=first))
    write_meta(split_dir, meta)  # last, atomically: a split with a meta.json is complete
    return meta


def generate_benchmark(root: str, counts: Dict[str, int], *, seed: int = 0, size=(96, 320),
                       workers: Optional[int] = None, logits: bool = False, stereo: bool = False,
                       log=print) -> Dict[str, SplitMeta]:
    """The splits of `counts` (names of DEFAULT_SPLITS -> frames) under root;
    `stereo`: target_train also gets right views (what the stereo term trains on)."""
    metas = {}
    for split, count in counts.items():
        domain, first = DEFAULT_SPLITS[split]
        pairs = stereo and split == STEREO_SPLIT
        t = time.time()
        metas[split] = generate_split(os.path.join(root, split), domain, count, seed=seed, first=first, size=size,
                                      workers=workers, logits=logits, stereo=pairs)
        if log:
            log(f"{split}: {count} {domain} frames{' (stereo pairs)' if pairs else ''} at {size[0]}x{size[1]} in "
                f"{time.time() - t:.1f} s")
    return metas


def iter_splits(root: str) -> Iterable[str]:
    for split in DEFAULT_SPLITS:
        if os.path.exists(os.path.join(root, split, "meta.json")):
            yield os.path.join(root, split)
