"""Panoptic FPN predictions for the frames of a prepared split, with DESC's settings, in the format that
``desc-train prepare panoptic --format detectron2`` reads. Needs Detectron2 and a GPU; not part of desc-ops
and not run by its tests.

DESC labels every frame online with Detectron2's Panoptic FPN (ResNet-101 FPN, COCO panoptic, 3x schedule,
weights model_final_cafdb1.pkl) with the score thresholds of the ROI heads, of RetinaNet and of the panoptic
combination all at 0.8. The detector sees the whole image resized with nearest neighbour to 368x1232, as BGR
0-255, without Detectron2's test-time resizing, and predicts at that size. This script does the same for each
frame of the split (its source image: the dataset root joined with meta.json's ``frames[NAME].src``) and writes

    OUT/NAME.npz   panoptic_seg (H, W) int32 (0 = void) and segments_info, Detectron2's list as a JSON string
                   (id, isthing, score, category_id: contiguous thing ids 0-79, stuff ids 1-53)
    OUT/run.json   the model and the settings, copied into the split's label_source

Frames whose npz exists are skipped (a rerun resumes), unless --overwrite. Example:

    python tools/run_panoptic_fpn.py data/vkitti2kitti/target_train --out preds/target_train
    desc-train prepare panoptic --predictions preds/target_train --out data/vkitti2kitti --split target_train \\
        --format detectron2

For sources of another shape (Cityscapes' 2:1 frames) pass a --size of the split's aspect ratio, e.g. 368x736:
prepare panoptic refuses predictions whose aspect ratio differs from the split's by more than 2 %.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np

CONFIG = "COCO-PanopticSegmentation/panoptic_fpn_R_101_3x.yaml"  # DESC's model, from Detectron2's model zoo
THRESH = 0.8  # DESC's three score thresholds


def parse_size(text: str) -> Tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 368x1232, got {text!r}") from None
    return h, w


def arguments(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("split", help="a prepared split (a folder with meta.json whose frames name their src)")
    p.add_argument("--out", required=True, help="folder for NAME.npz and run.json")
    p.add_argument("--root", default=None,
                   help="the dataset root the frames' src paths are relative to (default: meta.json's dataset.root)")
    p.add_argument("--config", default=CONFIG, help="a Detectron2 config file, or a name in its model zoo")
    p.add_argument("--weights", default=None,
                   help="checkpoint (default: the model zoo's for --config, model_final_cafdb1.pkl for DESC's)")
    p.add_argument("--size", type=parse_size, default=(368, 1232), help="HxW the detector sees (DESC: 368x1232)")
    p.add_argument("--score-thresh", type=float, default=THRESH, help="the three score thresholds (DESC: 0.8)")
    p.add_argument("--batch", type=int, default=4, help="images per forward pass")
    p.add_argument("--device", default="cuda")
    p.add_argument("--overwrite", action="store_true", help="predict frames whose npz exists again")
    return p.parse_args(argv)


def frames_of(split: str, root: Optional[str] = None) -> List[Tuple[str, str]]:
    """(frame name, source image path) of every frame of a prepared split."""
    with open(os.path.join(split, "meta.json")) as f:
        meta = json.load(f)
    root = root or (meta.get("dataset") or {}).get("root")
    if not root:
        sys.exit(f"{split}/meta.json names no dataset root: pass --root")
    out = []
    for name, record in sorted(meta["frames"].items()):
        if "src" not in record:
            sys.exit(f"{split}/meta.json: frame {name} has no src (the split was not written by desc-train prepare)")
        out.append((name, os.path.join(root, record["src"])))
    return out


def build_model(args):
    """Panoptic FPN in evaluation mode with DESC's thresholds, and the settings to record."""
    from detectron2 import model_zoo
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model as build

    cfg = get_cfg()
    zoo = not os.path.exists(args.config)
    cfg.merge_from_file(model_zoo.get_config_file(args.config) if zoo else args.config)
    weights = args.weights or model_zoo.get_checkpoint_url(args.config)
    cfg.MODEL.WEIGHTS = weights
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = args.score_thresh
    cfg.MODEL.RETINANET.SCORE_THRESH_TEST = args.score_thresh
    cfg.MODEL.PANOPTIC_FPN.COMBINE.INSTANCES_CONFIDENCE_THRESH = args.score_thresh
    cfg.MODEL.DEVICE = args.device
    if cfg.INPUT.FORMAT != "BGR":  # DESC feeds OpenCV's BGR; a model trained on RGB would see swapped colours
        sys.exit(f"{args.config} expects {cfg.INPUT.FORMAT} input; this script feeds BGR as DESC does")
    model = build(cfg)
    model.eval()
    DetectionCheckpointer(model).load(weights)
    info = dict(model="Panoptic FPN", config=args.config, weights=weights, input_size=list(args.size),
                input="whole image, nearest resize, BGR 0-255, no test-time resize", score_thresh=args.score_thresh)
    return model, info


def load_image(path: str, size: Tuple[int, int]):
    """(3, H, W) float BGR 0-255 at `size`, resized with nearest neighbour as DESC does."""
    import torch
    import torch.nn.functional as F

    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        sys.exit(f"{path}: missing or not an image (is --root the dataset root of the split's src paths?)")
    image = torch.from_numpy(np.ascontiguousarray(bgr)).permute(2, 0, 1).float()[None]
    return F.interpolate(image, size=size)[0]  # the default mode is nearest, what DESC uses


def save_prediction(path: str, seg, segments_info: List[Dict]) -> None:
    """NAME.npz, written under another name first so that a killed run leaves no half-written file."""
    tmp = path[:-len(".npz")] + ".tmp.npz"
    text = json.dumps(segments_info, default=lambda v: v.item())  # tensors and numpy scalars as numbers
    np.savez_compressed(tmp, panoptic_seg=np.asarray(seg, dtype=np.int32), segments_info=np.array(text))
    os.replace(tmp, path)


def predict(model, frames: List[Tuple[str, str]], out: str, size: Tuple[int, int], batch: int) -> None:
    import torch

    t0 = time.time()
    with torch.no_grad():
        for start in range(0, len(frames), batch):
            chunk = frames[start:start + batch]
            inputs = [dict(image=load_image(src, size), height=size[0], width=size[1]) for _, src in chunk]
            for (name, _), output in zip(chunk, model(inputs)):
                seg, segments_info = output["panoptic_seg"]
                save_prediction(os.path.join(out, name + ".npz"), seg.cpu().numpy(), segments_info)
            done = start + len(chunk)
            print(f"\r{done}/{len(frames)} frames, {done / (time.time() - t0):.1f} per s", end="", flush=True)
    print()


def main(argv=None) -> int:
    args = arguments(argv)
    frames = frames_of(args.split, args.root)
    os.makedirs(args.out, exist_ok=True)
    todo = [(n, src) for n, src in frames
            if args.overwrite or not os.path.exists(os.path.join(args.out, n + ".npz"))]
    print(f"{args.split}: {len(frames)} frames, {len(frames) - len(todo)} predicted already")
    model, info = build_model(args)
    with open(os.path.join(args.out, "run.json"), "w") as f:
        json.dump(info, f, indent=1)
    predict(model, todo, args.out, args.size, args.batch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
