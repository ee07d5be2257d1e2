"""Fake (meta) kernels and autograd of the compiled operators.

The schemas live in csrc/ops.cpp; the fakes here give every output's shape
and dtype without computing, so that ``torch.compile(fullgraph=True)`` traces
the operators, and ``register_autograd`` wires each forward op to its
backward op, saving only what the requested gradients need.
"""
from __future__ import annotations

import torch
from torch import Tensor

from . import _backend

ops = torch.ops.desc_ops


def _acc(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _scalar(like: Tensor, dtype=None) -> Tensor:
    return like.new_empty((), dtype=dtype or like.dtype)


# ----------------------------------------------------------------------- fakes


def _confidence_map_fake(semantic, image, edges, edge_weight, boundary_weight, ignore_index, ignore_classes):
    if semantic.is_floating_point():
        B, _, H, W = semantic.shape
        dtype = semantic.dtype
    else:
        B, H, W = semantic.shape
        dtype = image.dtype if image is not None else edges.dtype if edges is not None else torch.float32
    return semantic.new_empty((B, 1, H, W), dtype=dtype)


def _consistency_loss_fake(depth, depth_sem, weight, reduction):
    loss = torch.empty_like(depth) if reduction == "none" else _scalar(depth)
    return loss, _scalar(depth, _acc(depth.dtype))


def _semantic_consistency_loss_fake(depth, depth_sem, semantic, image, edges, edge_weight, boundary_weight,
                                    ignore_index, ignore_classes, reduction):
    loss, norm = _consistency_loss_fake(depth, depth_sem, depth, reduction)
    return loss, torch.empty_like(depth), norm


def _consistency_loss_backward_fake(grad, depth, depth_sem, weight, norm, reduction):
    return torch.empty_like(depth), torch.empty_like(depth)


def _instance_stats_fake(instance_ids, num_instances, depth, validate):
    B = instance_ids.shape[0]
    K = num_instances
    count = instance_ids.new_empty((B, K), dtype=torch.long)
    box = instance_ids.new_empty((B, K, 4), dtype=torch.long)
    if depth is None:
        empty = instance_ids.new_empty((0,), dtype=torch.float32)
        return count, box, instance_ids.new_empty((0,), dtype=torch.long), empty, empty.clone()
    return count, box, count.new_empty((B, K)), depth.new_empty((B, K)), depth.new_empty((B, K))


def _instance_prior_loss_fake(depth, instance_ids, heights, focal, min_pixels, max_depth, reduction, validate):
    acc = _acc(depth.dtype)
    B, K = heights.shape
    return (_scalar(depth), depth.new_empty((B, K), dtype=acc), depth.new_empty((B, K), dtype=acc),
            depth.new_empty((B, K), dtype=torch.long), _scalar(depth, acc))


def _instance_prior_loss_backward_fake(grad, depth, instance_ids, z, dz_dh, sign_sum, norm):
    return torch.empty_like(depth), z.new_empty(z.shape, dtype=depth.dtype)


def _smoothness_loss_fake(depth, image):
    return _scalar(depth)


def _smoothness_loss_backward_fake(grad, depth, image):
    return torch.empty_like(depth)


# --------------------------------------------------------------------- autograd


def _consistency_setup(ctx, inputs, output):
    depth, depth_sem, weight, reduction = inputs
    _, norm = output
    ctx.mark_non_differentiable(norm)
    ctx.reduction = reduction
    if any(ctx.needs_input_grad[:2]):
        ctx.save_for_backward(depth, depth_sem, weight, norm)


def _consistency_backward(ctx, grad, _grad_norm):
    depth, depth_sem, weight, norm = ctx.saved_tensors
    gd, gs = ops.consistency_loss_backward(grad, depth, depth_sem, weight, norm, ctx.reduction)
    return (gd if ctx.needs_input_grad[0] else None, gs if ctx.needs_input_grad[1] else None, None, None)


def _semantic_consistency_setup(ctx, inputs, output):
    depth, depth_sem = inputs[:2]
    _, confidence, norm = output
    ctx.mark_non_differentiable(confidence, norm)
    ctx.reduction = inputs[-1]
    if any(ctx.needs_input_grad[:2]):
        ctx.save_for_backward(depth, depth_sem, confidence, norm)


def _semantic_consistency_backward(ctx, grad, _grad_confidence, _grad_norm):
    depth, depth_sem, confidence, norm = ctx.saved_tensors
    gd, gs = ops.consistency_loss_backward(grad, depth, depth_sem, confidence, norm, ctx.reduction)
    return (gd if ctx.needs_input_grad[0] else None, gs if ctx.needs_input_grad[1] else None) + (None,) * 8


def _prior_setup(ctx, inputs, output):
    depth, instance_ids = inputs[:2]
    _, z, dz_dh, sign_sum, norm = output
    ctx.mark_non_differentiable(z, dz_dh, sign_sum, norm)
    if ctx.needs_input_grad[0] or ctx.needs_input_grad[2]:
        ctx.save_for_backward(depth, instance_ids, z, dz_dh, sign_sum, norm)


def _prior_backward(ctx, grad, *_):
    depth, instance_ids, z, dz_dh, sign_sum, norm = ctx.saved_tensors
    gd, gh = ops.instance_prior_loss_backward(grad, depth, instance_ids, z, dz_dh, sign_sum, norm)
    return (gd if ctx.needs_input_grad[0] else None, None,
            gh if ctx.needs_input_grad[2] else None) + (None,) * 5


def _smoothness_setup(ctx, inputs, output):
    if ctx.needs_input_grad[0]:
        ctx.save_for_backward(*inputs)


def _smoothness_backward(ctx, grad):
    depth, image = ctx.saved_tensors
    return ops.smoothness_loss_backward(grad, depth, image), None


def register() -> None:
    fakes = {
        "confidence_map": _confidence_map_fake,
        "consistency_loss": _consistency_loss_fake,
        "semantic_consistency_loss": _semantic_consistency_loss_fake,
        "consistency_loss_backward": _consistency_loss_backward_fake,
        "instance_stats": _instance_stats_fake,
        "instance_prior_loss": _instance_prior_loss_fake,
        "instance_prior_loss_backward": _instance_prior_loss_backward_fake,
        "smoothness_loss": _smoothness_loss_fake,
        "smoothness_loss_backward": _smoothness_loss_backward_fake,
    }
    for name, fake in fakes.items():
        torch.library.register_fake(f"desc_ops::{name}", fake)
    torch.library.register_autograd("desc_ops::consistency_loss", _consistency_backward,
                                    setup_context=_consistency_setup)
    torch.library.register_autograd("desc_ops::semantic_consistency_loss", _semantic_consistency_backward,
                                    setup_context=_semantic_consistency_setup)
    torch.library.register_autograd("desc_ops::instance_prior_loss", _prior_backward, setup_context=_prior_setup)
    torch.library.register_autograd("desc_ops::smoothness_loss", _smoothness_backward,
                                    setup_context=_smoothness_setup)


if _backend.extension_available():
    register()
