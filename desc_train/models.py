"""The networks of DESC: U-Net depth networks with four output scales (G_rgb on
images, G_sem on one-hot semantics plus an edge channel) and the instance height
network G_h, batched over every instance slot of a batch."""
from __future__ import annotations

from typing import List

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MAX_DEPTH = 80.0  # metres = MAX_DEPTH / 2 * (tanh + 1), as the official implementation
SCALES = 4  # output scales of the U-Nets


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ELU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ELU(inplace=True),
    )


class DepthUNet(nn.Module):
    """A 4-level U-Net. ``forward`` returns depth in metres at 4 scales, full
    resolution first: ``[(B, 1, H, W), (B, 1, H/2, W/2), (B, 1, H/4, W/4), (B, 1, H/8, W/8)]``.
    H and W must be multiples of 16."""

    def __init__(self, in_channels: int, width: int = 16, max_depth: float = MAX_DEPTH):
        super().__init__()
        w = [width, 2 * width, 4 * width, 8 * width, 16 * width]
        self.max_depth = max_depth
        self.enc = nn.ModuleList([_block(in_channels, w[0])] + [_block(w[i], w[i + 1]) for i in range(SCALES)])
        self.up = nn.ModuleList([nn.Conv2d(w[i + 1], w[i], 1) for i in range(SCALES)])
        self.dec = nn.ModuleList([_block(2 * w[i], w[i]) for i in range(SCALES)])
        self.heads = nn.ModuleList([nn.Conv2d(w[i], 1, 3, padding=1) for i in range(SCALES)])

    def forward(self, x: Tensor) -> List[Tensor]:
        if x.shape[-1] % 16 or x.shape[-2] % 16:
            raise ValueError(f"input height and width must be multiples of 16, got {tuple(x.shape[-2:])}")
        skips = []
        for i, block in enumerate(self.enc):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        outputs = []
        for i in reversed(range(SCALES)):
            x = F.interpolate(self.up[i](x), scale_factor=2, mode="nearest")
            x = self.dec[i](torch.cat([x, skips[i]], dim=1))
            outputs.append(self.max_depth / 2 * (torch.tanh(self.heads[i](x)) + 1))
        return outputs[::-1]


def semantic_input(semantic: Tensor, num_classes: int, edges: Tensor) -> Tensor:
    """G_sem's input: one-hot labels (ignored pixels all zero) and an edge channel."""
    one_hot = F.one_hot(semantic.clamp(min=0), num_classes).permute(0, 3, 1, 2).float()
    one_hot = one_hot * (semantic >= 0).unsqueeze(1)
    return torch.cat([one_hot, edges.float()], dim=1)


class HeightNet(nn.Module):
    """G_h: the metric height of every instance slot from what it looks like in
    the segmentation (class, box, size), for a whole batch at once: features
    (B, K, F) in, heights (B, K) in metres out (softplus, so positive)."""

    def __init__(self, num_features: int, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(num_features, hidden), nn.ELU(), nn.Linear(hidden, hidden), nn.ELU(),
                                 nn.Linear(hidden, 1))

    def forward(self, features: Tensor) -> Tensor:
        return F.softplus(self.net(features).squeeze(-1) + 1.0)


def instance_features(stats, instance_class: Tensor, num_classes: int, H: int, W: int) -> Tensor:
    """Features of every slot from desc_ops.instance_stats (no Python loop): the
    class one-hot, the box normalised by the image size, its aspect, and the
    mask's fill of the box. (B, K, num_classes + 7); unused slots are zeros."""
    used = (stats.count > 0) & (instance_class >= 0)
    cls = F.one_hot(instance_class.clamp(min=0), num_classes).float()
    ph = stats.pixel_height.float()
    pw = (stats.x_max - stats.x_min + 1).float().clamp(min=0)
    box = torch.stack([stats.y_min.float() / H, stats.y_max.float() / H, stats.x_min.float() / W,
                       stats.x_max.float() / W, ph / H, pw / W,
                       stats.count.float() / (ph * pw).clamp(min=1)], dim=-1)
    return torch.cat([cls, box], dim=-1) * used.unsqueeze(-1)
