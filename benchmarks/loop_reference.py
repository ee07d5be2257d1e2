"""The original DESC way of computing instance priors, re-created as a
benchmark provider: a Python loop over images and instances, one
``torch.median`` and one device-to-host read per instance.

This mirrors how the official implementation labels instance heights and
builds the pseudo-depth loss (per-instance masks, ``nonzero`` for the box,
``.item()`` on every scalar); it is what desc-ops' batched kernels replace.
"""
import torch

from desc_ops.instances import InstanceStats


def instance_stats_loop(instance_ids, num_instances, depth):
    B = instance_ids.shape[0]
    K = num_instances
    cpu_long = dict(dtype=torch.long)
    count = torch.zeros(B, K, **cpu_long)
    box = torch.full((B, K, 4), -1, **cpu_long)
    valid_count = torch.zeros(B, K, **cpu_long)
    mean = torch.full((B, K), float("nan"), dtype=depth.dtype)
    median = torch.full((B, K), float("nan"), dtype=depth.dtype)
    for b in range(B):
        for k in range(K):
            mask = instance_ids[b] == k
            n = int(mask.sum().item())  # device sync, as in the original
            if n == 0:
                continue
            ys, xs = torch.nonzero(mask, as_tuple=True)
            count[b, k] = n
            box[b, k] = torch.stack([ys.min(), ys.max(), xs.min(), xs.max()]).cpu()
            d = depth[b, 0][mask]
            d = d[torch.isfinite(d) & (d > 0)]
            valid_count[b, k] = d.numel()
            if d.numel():
                median[b, k] = torch.median(d).item()
                mean[b, k] = d.double().mean().item()
    dev = instance_ids.device
    return InstanceStats.from_box(count.to(dev), box.to(dev), valid_count.to(dev), mean.to(dev), median.to(dev))


def instance_prior_loss_loop(depth, instance_ids, heights, focal, min_pixels=1, max_depth=None):
    B, K = heights.shape
    total = depth.new_zeros((), dtype=torch.float32)
    pixels = 0
    for b in range(B):
        f = float(focal[b]) if torch.is_tensor(focal) and focal.dim() else float(focal)
        for k in range(K):
            mask = instance_ids[b] == k
            n = int(mask.sum().item())  # device sync per instance
            if n < max(min_pixels, 1) or not torch.isfinite(heights[b, k]).item():
                continue
            ys = torch.nonzero(mask, as_tuple=True)[0]
            h = int((ys.max() - ys.min()).item()) + 1
            z = f * heights[b, k].float() / h
            if max_depth is not None:
                z = z.clamp(0, max_depth)
            total = total + (depth[b, 0][mask].float() - z).abs().sum()
            pixels += n
    return (total / max(pixels, 1)).to(depth.dtype)
