"""The networks of DESC: U-Net depth networks with four output scales (G_rgb on
images, G_sem on one-hot semantics plus an edge channel), the instance height
network G_h, batched over every instance slot of a batch, and the learned scale
of the instance prior."""
from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from desc_ops.reference import sobel_magnitude

from .config import MAX_DEPTH  # metres = MAX_DEPTH / 2 * (tanh + 1), as the official implementation
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


def edge_map(image: Tensor) -> Tensor:
    """G_sem's edge channel: Sobel magnitude of the luminance, squashed to [0, 1)."""
    y = 0.299 * image[:, 0:1] + 0.587 * image[:, 1:2] + 0.114 * image[:, 2:3]
    return torch.tanh(2.0 * sobel_magnitude(y))


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


class PriorScale(nn.Module):
    """The official code's learned scale ``s`` of the instance prior (initial value
    1): the pseudo-depth ``z = f H / h`` of each instance becomes
    ``clamp(z, 0, max_depth * s) / s`` with the bound held constant (the official
    code reads it with ``s.item()``), and the trainer multiplies the instance term
    by ``s``. ``forward`` returns the heights ``H'`` whose pseudo-depth is that
    target, ``min(H, max_depth * s * h / f) / s``, for ``instance_prior_loss``
    without a clamp of its own. Heights are positive (G_h's softplus), so the
    lower bound 0 never acts; NaN (no prior) stays NaN, and gives ``s`` no gradient."""

    def __init__(self, max_depth: float = MAX_DEPTH):
        super().__init__()
        self.max_depth = max_depth
        self.s = nn.Parameter(torch.ones(()))

    def forward(self, heights: Tensor, pixel_height: Tensor, focal: Tensor) -> Tensor:
        bound = self.max_depth * self.s.detach() * pixel_height.to(heights.dtype) / focal.to(heights.dtype)[:, None]
        prior = ~torch.isnan(heights)
        # NaN kept out of the division: its gradient to s would be NaN * 0.
        scaled = heights.masked_fill(~prior, 0.0).clamp(max=bound) / self.s
        return torch.where(prior, scaled, heights)


def to_image_range(image: Tensor, image_range: Sequence[float]) -> Tensor:
    """RGB in [0, 1] mapped onto ``image_range = (lo, hi)``: ``lo + (hi - lo) * image``;
    (-1, 1) is the official ``Normalize(mean=0.5, std=0.5)``; (0, 1), the image itself."""
    lo, hi = image_range
    return image if (lo, hi) == (0.0, 1.0) else image * (hi - lo) + lo


class ImageRangeInput(nn.Module):
    """`net`, trained on images in `image_range`, taking RGB in [0, 1] as the
    evaluation and the pictures give it."""

    def __init__(self, net: nn.Module, image_range: Sequence[float]):
        super().__init__()
        self.net = net
        self.image_range = tuple(float(v) for v in image_range)

    def forward(self, image: Tensor):
        return self.net(to_image_range(image, self.image_range))


def rgb_input(net: nn.Module, image_range: Sequence[float]) -> nn.Module:
    """`net` taking RGB in [0, 1]: itself when it was trained on [0, 1], else wrapped in ImageRangeInput."""
    return net if tuple(image_range) == (0.0, 1.0) else ImageRangeInput(net, image_range)
