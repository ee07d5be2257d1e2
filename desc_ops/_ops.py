"""Fake (meta) kernels and autograd of the compiled operators.

The schemas live in csrc/ops.cpp; the fakes here give every output's shape
and dtype without computing, so that ``torch.compile(fullgraph=True)`` traces
the operators, and ``register_autograd`` wires each forward op to its
(private) backward op, saving only what the requested gradients need.

The fakes also refuse arguments on different devices, as the kernels do: a
call that mixes a meta tensor with real ones is dispatched to the fake.
"""
from __future__ import annotations

import torch
from torch import Tensor

from . import _backend
from ._args import _acc_dtype, _same_device

ops = torch.ops.desc_ops


def _scalar(like: Tensor, dtype=None) -> Tensor:
    return like.new_empty((), dtype=dtype or like.dtype)


def _one_device(first: str, ref: Tensor, **others) -> None:
    for name, t in others.items():
        _same_device(ref, first, t, name)


# ----------------------------------------------------------------------- fakes


def _confidence_map_fake(semantic, image, edges, edge_weight, boundary_weight, ignore_index, ignore_classes):
    _one_device("semantic", semantic, image=image, edges=edges)
    if semantic.is_floating_point():
        B, _, H, W = semantic.shape
        dtype = semantic.dtype
    else:
        B, H, W = semantic.shape
        dtype = image.dtype if image is not None else edges.dtype if edges is not None else torch.float32
    return semantic.new_empty((B, 1, H, W), dtype=dtype)


def _consistency_loss_fake(depth, depth_sem, weight, reduction):
    _one_device("depth", depth, depth_sem=depth_sem, weight=weight)
    loss = torch.empty_like(depth) if reduction == "none" else _scalar(depth)
    return loss, _scalar(depth, _acc_dtype(depth.dtype))


def _semantic_consistency_loss_fake(depth, depth_sem, semantic, image, edges, edge_weight, boundary_weight,
                                    ignore_index, ignore_classes, reduction):
    _one_device("depth", depth, depth_sem=depth_sem, semantic=semantic, image=image, edges=edges)
    loss, norm = _consistency_loss_fake(depth, depth_sem, depth, reduction)
    return loss, torch.empty_like(depth), norm


def _consistency_loss_backward_fake(grad, depth, depth_sem, weight, norm, reduction):
    _one_device("depth", depth, grad=grad, depth_sem=depth_sem, weight=weight, norm=norm)
    return torch.empty_like(depth), torch.empty_like(depth)


def _consistency_loss_train_fake(depth, depth_sem, weight, reduction):
    return _consistency_loss_fake(depth, depth_sem, weight, reduction) + (torch.empty_like(depth),)


def _semantic_consistency_loss_train_fake(*args):
    loss, confidence, norm = _semantic_consistency_loss_fake(*args)
    return loss, confidence, norm, torch.empty_like(args[0])


def _consistency_loss_backward_signed_fake(grad, signed_weight, norm, reduction, output_mask):
    _one_device("signed_weight", signed_weight, grad=grad, norm=norm)
    return tuple(torch.empty_like(signed_weight) if m else signed_weight.new_empty((0,)) for m in output_mask)


def _instance_stats_fake(instance_ids, num_instances, depth, validate):
    _one_device("instance_ids", instance_ids, depth=depth)
    B = instance_ids.shape[0]
    K = num_instances
    count = instance_ids.new_empty((B, K), dtype=torch.long)
    box = instance_ids.new_empty((B, K, 4), dtype=torch.long)
    if depth is None:
        empty = instance_ids.new_empty((0,), dtype=torch.float32)
        return count, box, instance_ids.new_empty((0,), dtype=torch.long), empty, empty.clone()
    return count, box, count.new_empty((B, K)), depth.new_empty((B, K)), depth.new_empty((B, K))


def _instance_prior_loss_fake(depth, instance_ids, heights, focal, min_pixels, max_depth, reduction, validate):
    _one_device("depth", depth, instance_ids=instance_ids, heights=heights, focal=focal)
    acc = _acc_dtype(depth.dtype)
    B, K = heights.shape
    loss = torch.empty_like(depth) if reduction == "none" else _scalar(depth)
    return (loss, depth.new_empty((B, K), dtype=acc), depth.new_empty((B, K), dtype=acc),
            depth.new_empty((B, K), dtype=torch.long), _scalar(depth, acc))


def _instance_prior_loss_backward_fake(grad, depth, instance_ids, z, dz_dh, sign_sum, norm, reduction="mean"):
    _one_device("depth", depth, grad=grad, instance_ids=instance_ids, z=z, dz_dh=dz_dh, sign_sum=sign_sum, norm=norm)
    return torch.empty_like(depth), z.new_empty(z.shape, dtype=depth.dtype)


def _smoothness_loss_fake(depth, image, reduction="mean"):
    _one_device("depth", depth, image=image)
    return torch.empty_like(depth) if reduction == "none" else _scalar(depth)


def _smoothness_loss_backward_fake(grad, depth, image, reduction="mean"):
    _one_device("depth", depth, grad=grad, image=image)
    return torch.empty_like(depth)


def _smoothness_loss_train_fake(depth, image):
    _one_device("depth", depth, image=image)
    return _scalar(depth), torch.empty_like(depth, dtype=_acc_dtype(depth.dtype))


def _smoothness_loss_backward_saved_fake(grad, unit_grad, dtype):
    _one_device("unit_grad", unit_grad, grad=grad)
    return torch.empty_like(unit_grad, dtype=dtype)


def _stereo_photometric_loss_fake(depth, image, image_other, focal_baseline, alpha=0.85, ssim="valid",
                                  reduction="mean"):
    _one_device("depth", depth, image=image, image_other=image_other, focal_baseline=focal_baseline)
    return torch.empty_like(depth) if reduction == "none" else _scalar(depth)


def _stereo_photometric_loss_backward_fake(grad, depth, image, image_other, focal_baseline, alpha, ssim, reduction):
    _one_device("depth", depth, grad=grad, image=image, image_other=image_other, focal_baseline=focal_baseline)
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
    gd, gs = ops._consistency_loss_backward(grad, depth, depth_sem, weight, norm, ctx.reduction)
    return (gd if ctx.needs_input_grad[0] else None, gs if ctx.needs_input_grad[1] else None, None, None)


def _semantic_consistency_setup(ctx, inputs, output):
    ctx.set_materialize_grads(False)  # no zero map for the confidence output
    depth, depth_sem = inputs[:2]
    _, confidence, norm = output
    ctx.mark_non_differentiable(confidence, norm)
    ctx.reduction = inputs[-1]
    if any(ctx.needs_input_grad[:2]):
        ctx.save_for_backward(depth, depth_sem, confidence, norm)


def _semantic_consistency_backward(ctx, grad, _grad_confidence, _grad_norm):
    if grad is None:  # only a non-differentiable output was used
        return (None,) * 10
    depth, depth_sem, confidence, norm = ctx.saved_tensors
    gd, gs = ops._consistency_loss_backward(grad, depth, depth_sem, confidence, norm, ctx.reduction)
    return (gd if ctx.needs_input_grad[0] else None, gs if ctx.needs_input_grad[1] else None) + (None,) * 8


# The CPU training forms (desc_ops/functional.py): the forward returns what
# the backward reads, the backward reads nothing else.


def _consistency_train_setup(ctx, inputs, output):
    ctx.set_materialize_grads(False)  # no zero maps for the outputs without a gradient
    _, norm, signed_weight = output
    ctx.mark_non_differentiable(norm, signed_weight)
    ctx.reduction = inputs[-1]
    if any(ctx.needs_input_grad[:2]):
        ctx.save_for_backward(signed_weight, norm)


def _consistency_train_backward(ctx, grad, *_):
    if grad is None:  # only a non-differentiable output was used
        return None, None, None, None
    signed_weight, norm = ctx.saved_tensors
    mask = list(ctx.needs_input_grad[:2])
    gd, gs = ops._consistency_loss_backward_signed(grad, signed_weight, norm, ctx.reduction, mask)
    return (gd if mask[0] else None, gs if mask[1] else None, None, None)


def _semantic_consistency_train_setup(ctx, inputs, output):
    ctx.set_materialize_grads(False)  # no zero maps for the outputs without a gradient
    _, confidence, norm, signed_weight = output
    ctx.mark_non_differentiable(confidence, norm, signed_weight)
    ctx.reduction = inputs[-1]
    if any(ctx.needs_input_grad[:2]):
        ctx.save_for_backward(signed_weight, norm)


def _semantic_consistency_train_backward(ctx, grad, *_):
    if grad is None:
        return (None,) * 10
    signed_weight, norm = ctx.saved_tensors
    mask = list(ctx.needs_input_grad[:2])
    gd, gs = ops._consistency_loss_backward_signed(grad, signed_weight, norm, ctx.reduction, mask)
    return (gd if mask[0] else None, gs if mask[1] else None) + (None,) * 8


def _smoothness_train_setup(ctx, inputs, output):
    ctx.set_materialize_grads(False)  # no zero maps for the outputs without a gradient
    _, unit_grad = output
    ctx.mark_non_differentiable(unit_grad)
    ctx.dtype = inputs[0].dtype
    if ctx.needs_input_grad[0]:
        ctx.save_for_backward(unit_grad)


def _smoothness_train_backward(ctx, grad, _grad_unit):
    if grad is None:
        return None, None
    (unit_grad,) = ctx.saved_tensors
    return ops._smoothness_loss_backward_saved(grad, unit_grad, ctx.dtype), None


def _prior_setup(ctx, inputs, output):
    depth, instance_ids = inputs[:2]
    ctx.reduction = inputs[6]
    _, z, dz_dh, sign_sum, norm = output
    ctx.mark_non_differentiable(z, dz_dh, sign_sum, norm)
    if ctx.needs_input_grad[0] or ctx.needs_input_grad[2]:
        ctx.save_for_backward(depth, instance_ids, z, dz_dh, sign_sum, norm)


def _prior_backward(ctx, grad, *_):
    depth, instance_ids, z, dz_dh, sign_sum, norm = ctx.saved_tensors
    gd, gh = ops._instance_prior_loss_backward(grad, depth, instance_ids, z, dz_dh, sign_sum, norm, ctx.reduction)
    return (gd if ctx.needs_input_grad[0] else None, None,
            gh if ctx.needs_input_grad[2] else None) + (None,) * 5


def _smoothness_setup(ctx, inputs, output):
    depth, image, *rest = inputs
    ctx.reduction = rest[0] if rest else "mean"
    if ctx.needs_input_grad[0]:
        ctx.save_for_backward(depth, image)


def _smoothness_backward(ctx, grad):
    depth, image = ctx.saved_tensors
    return ops._smoothness_loss_backward(grad, depth, image, ctx.reduction), None, None


def _stereo_setup(ctx, inputs, output):
    depth, image, image_other, focal_baseline, *rest = inputs
    ctx.options = tuple(rest) + (0.85, "valid", "mean")[len(rest):]
    if ctx.needs_input_grad[0]:
        ctx.save_for_backward(depth, image, image_other, focal_baseline)


def _stereo_backward(ctx, grad):
    depth, image, image_other, focal_baseline = ctx.saved_tensors
    grad_depth = ops._stereo_photometric_loss_backward(grad, depth, image, image_other, focal_baseline, *ctx.options)
    return (grad_depth,) + (None,) * 6


def register() -> None:
    # pragma: no mutate block
    # (runs once at import, before mutmut switches a mutant on, so its mutants
    # could never be told apart; test_library checks every op's fake and autograd.)
    fakes = {
        "confidence_map": _confidence_map_fake,
        "consistency_loss": _consistency_loss_fake,
        "semantic_consistency_loss": _semantic_consistency_loss_fake,
        "_consistency_loss_backward": _consistency_loss_backward_fake,
        "instance_stats": _instance_stats_fake,
        "instance_prior_loss": _instance_prior_loss_fake,
        "_instance_prior_loss_backward": _instance_prior_loss_backward_fake,
        "smoothness_loss": _smoothness_loss_fake,
        "_smoothness_loss_backward": _smoothness_loss_backward_fake,
        "_consistency_loss_train": _consistency_loss_train_fake,
        "_semantic_consistency_loss_train": _semantic_consistency_loss_train_fake,
        "_consistency_loss_backward_signed": _consistency_loss_backward_signed_fake,
        "_smoothness_loss_train": _smoothness_loss_train_fake,
        "_smoothness_loss_backward_saved": _smoothness_loss_backward_saved_fake,
        "stereo_photometric_loss": _stereo_photometric_loss_fake,
        "_stereo_photometric_loss_backward": _stereo_photometric_loss_backward_fake,
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
    torch.library.register_autograd("desc_ops::stereo_photometric_loss", _stereo_backward,
                                    setup_context=_stereo_setup)
    torch.library.register_autograd("desc_ops::_consistency_loss_train", _consistency_train_backward,
                                    setup_context=_consistency_train_setup)
    torch.library.register_autograd("desc_ops::_semantic_consistency_loss_train",
                                    _semantic_consistency_train_backward,
                                    setup_context=_semantic_consistency_train_setup)
    torch.library.register_autograd("desc_ops::_smoothness_loss_train", _smoothness_train_backward,
                                    setup_context=_smoothness_train_setup)


if _backend.extension_available():
    register()
