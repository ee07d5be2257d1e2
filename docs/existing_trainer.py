"""DESC's target losses added to a monodepth2-shaped trainer (docs/existing_trainer.md).

A depth network whose outputs are a dict of sigmoid disparities per scale, as
monodepth2's DepthDecoder returns them, is trained on labelled source frames;
after a warm-up, desc_ops.DESCLoss adds the consistency with a semantic depth
network and the instance prior on unlabelled target frames.

    desc-train generate --out data/bench --source 64 --target 64 --test 0
    python docs/existing_trainer.py --data data/bench --steps 200

Everything desc-specific is marked "DESC:"; the rest stands for your trainer.
"""
from __future__ import annotations

import argparse
import itertools

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

import desc_ops
from desc_train.data.dataset import DepthDataset
from desc_train.models import HeightNet, instance_features, semantic_input
from desc_train.train import edge_map

SCALES = range(4)
MIN_DEPTH, MAX_DEPTH = 0.1, 80.0


class DispNet(nn.Module):
    """Stands for monodepth2's ResnetEncoder + DepthDecoder: a dict of
    disparities in (0, 1) at four scales, ("disp", 0) the finest."""

    def __init__(self, in_channels: int, width: int = 16):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ELU(),
                                  nn.Conv2d(width, width, 3, padding=1), nn.ELU())
        self.heads = nn.ModuleList(nn.Conv2d(width, 1, 3, padding=1) for _ in SCALES)

    def forward(self, x):
        f = self.stem(x)
        return {("disp", s): torch.sigmoid(self.heads[s](F.avg_pool2d(f, 2 ** s) if s else f)) for s in SCALES}


def disp_to_depth(disp):
    """monodepth2's conversion of a sigmoid output to depth (metres here: the
    source labels are metric, so the network learns metric depth)."""
    min_disp, max_disp = 1 / MAX_DEPTH, 1 / MIN_DEPTH
    return 1 / (min_disp + (max_disp - min_disp) * disp)


def depths(outputs):
    # DESC: DESCLoss wants depth in metres, one map per scale, finest first (not a dict).
    return [disp_to_depth(outputs[("disp", s)]) for s in SCALES]


def supervised(preds, depth):
    valid = depth > 0
    return sum(F.interpolate(p, size=depth.shape[-2:], mode="bilinear", align_corners=False)[valid]
               .sub(depth[valid]).abs().mean() for p in preds)


def train(data: str, steps: int = 200, warmup: int = 100, batch_size: int = 4, max_instances: int = 16,
          min_instance_rows: int = 4, seed: int = 0, log=print):
    """Trains the three networks; returns the total loss of each step."""
    torch.manual_seed(seed)
    source = DepthDataset(f"{data}/source_train", max_instances=max_instances, seed=seed)
    target = DepthDataset(f"{data}/target_train", max_instances=max_instances, seed=seed)
    num_classes = len(source.meta.classes)
    g_rgb = DispNet(3)  # your depth network
    g_sem = DispNet(num_classes + 1)  # DESC: the same network on one-hot semantics + an edge channel
    g_h = HeightNet(num_classes + 7)  # DESC: instance class, box and mask shape -> metres
    params = itertools.chain(g_rgb.parameters(), g_sem.parameters(), g_h.parameters())
    optimizer = torch.optim.Adam(params, lr=1e-3)
    desc_loss = desc_ops.DESCLoss(consistency_weight=1.0, instance_weight=0.1, smoothness_weight=1e-3,
                                  max_depth=MAX_DEPTH)

    def batches(dataset):
        while True:
            yield from DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True)

    src_iter, tgt_iter = batches(source), batches(target)
    history = []
    for step in range(steps):
        src, tgt = next(src_iter), next(tgt_iter)  # images are in [0, 1] already (divide 8-bit images by 255)
        H, W = src["image"].shape[-2:]
        # Source: depth supervision of both depth networks.
        loss = supervised(depths(g_rgb(src["image"])), src["depth"])
        loss = loss + supervised(depths(g_sem(semantic_input(src["semantic"], num_classes, edge_map(src["image"])))),
                                 src["depth"])
        # DESC: G_h learns metric heights from the source ground truth, h = Z * pixel_height / f.
        st = desc_ops.instance_stats(src["instance_ids"], max_instances, src["depth"])
        heights = desc_ops.instance_heights(st, src["focal"])
        labelled = torch.isfinite(heights) & (st.pixel_height >= min_instance_rows) & (src["instance_class"] >= 0)
        predicted = g_h(instance_features(st, src["instance_class"], num_classes, H, W))
        loss = loss + (predicted - heights)[labelled].abs().sum() / labelled.sum().clamp(min=1)
        if step >= warmup:
            # DESC: the target terms, once both depth networks and G_h mean something. The ids are
            # compact slots with -1 for no instance (DepthDataset used relabel_instances(..., background=0)).
            tgt_stats = desc_ops.instance_stats(tgt["instance_ids"], max_instances)
            tgt_heights = g_h(instance_features(tgt_stats, tgt["instance_class"], num_classes, H, W))
            # No prior from instances too short for G_h's height to mean anything (NaN: slot unused).
            tgt_heights = tgt_heights.masked_fill(tgt_stats.pixel_height < min_instance_rows, float("nan"))
            sem_in = semantic_input(tgt["semantic"], num_classes, edge_map(tgt["image"]))
            out = desc_loss(depths(g_rgb(tgt["image"])), depth_sem=depths(g_sem(sem_in)), semantic=tgt["semantic"],
                            image=tgt["image"], instance_ids=tgt["instance_ids"], heights=tgt_heights,
                            focal=tgt["focal"])
            loss = loss + out.total
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.append(loss.detach().item())
        if log and (step % 50 == 0 or step == steps - 1):
            log(f"step {step}: loss {history[-1]:.4f}")
    return history


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="root with source_train/ and target_train/ (desc-train generate)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--warmup", type=int, default=100, help="source-only steps before the DESC terms")
    args = p.parse_args()
    train(args.data, steps=args.steps, warmup=args.warmup)
