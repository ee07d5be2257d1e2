"""Every operator with each dimension of size 0 (batch, classes, height, width,
instance slots), on both backends: the kernels define every output whatever
the sizes (docs/ops.md §0), so they give what the reference gives (or refuse
with the same message), and the same bits on every call (memory left
uninitialised would differ from call to call)."""
import pytest
import torch

import desc_ops

from helpers import assert_close

SIZES = dict(B=2, C=3, H=4, W=5, K=3)


def _inputs(device, B, C, H, W, K):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(-1, max(K, 1), (B, H, W), generator=g)
    if K == 0:
        ids.fill_(-1)
    return dict(
        depth=(torch.rand(B, 1, H, W, generator=g) * 40 + 1).to(device).requires_grad_(),
        depth_sem=(torch.rand(B, 1, H, W, generator=g) * 40 + 1).to(device),
        weight=torch.rand(B, 1, H, W, generator=g).to(device),
        logits=torch.randn(B, C, H, W, generator=g).to(device),
        labels=torch.randint(-1, max(C, 1), (B, H, W), generator=g).to(device),
        image=torch.rand(B, 3, H, W, generator=g).to(device),
        image_other=torch.rand(B, 3, H, W, generator=g).to(device),
        ids=ids.to(device),
        heights=(torch.rand(B, K, generator=g) + 1).to(device).requires_grad_(),
        focal=torch.full((B,), 100.0, device=device),
        K=K,
    )


CALLS = {
    "confidence_map, labels": lambda x: desc_ops.confidence_map(x["labels"], image=x["image"]),
    "confidence_map, logits": lambda x: desc_ops.confidence_map(x["logits"], image=x["image"]),
    "consistency_loss, none": lambda x: desc_ops.consistency_loss(x["depth"], x["depth_sem"], x["weight"],
                                                                  reduction="none"),
    "consistency_loss, mean": lambda x: desc_ops.consistency_loss(x["depth"], x["depth_sem"], x["weight"]),
    "semantic_consistency_loss, none": lambda x: desc_ops.semantic_consistency_loss(
        x["depth"], x["depth_sem"], x["logits"], image=x["image"], reduction="none"),
    "semantic_consistency_loss, labels": lambda x: desc_ops.semantic_consistency_loss(
        x["depth"], x["depth_sem"], x["labels"], image=x["image"]),
    "instance_stats": lambda x: tuple(desc_ops.instance_stats(x["ids"], x["K"], x["depth"].detach())),
    "instance_stats, no depth": lambda x: tuple(t for t in desc_ops.instance_stats(x["ids"], x["K"]) if t is not None),
    "instance_prior_loss": lambda x: desc_ops.instance_prior_loss(x["depth"], x["ids"], x["heights"], x["focal"],
                                                                  max_depth=80.0),
    "smoothness_loss": lambda x: desc_ops.smoothness_loss(x["depth"], x["image"]),
    "stereo_photometric_loss": lambda x: desc_ops.stereo_photometric_loss(x["depth"], x["image"], x["image_other"],
                                                                          x["focal"] / 10),
    "stereo_photometric_loss, none": lambda x: desc_ops.stereo_photometric_loss(
        x["depth"], x["image"], x["image_other"], x["focal"] / 10, ssim="reflect", reduction="none"),
}


def _outcome(call, x):
    """The outputs and the gradients they give (to depth and heights), or the
    ValueError's message."""
    try:
        out = CALLS[call](x)
    except ValueError as err:
        return str(err)
    outs = out if isinstance(out, tuple) else (out,)
    grads = ()
    if outs[0].requires_grad:
        leaves = [t for t in (x["depth"], x["heights"]) if t.requires_grad]
        grads = torch.autograd.grad(outs[0].float().sum(), leaves, allow_unused=True, materialize_grads=True)
    return tuple(t.detach().cpu() for t in outs + tuple(grads))


@pytest.mark.parametrize("zero", list(SIZES))
@pytest.mark.parametrize("call", list(CALLS))
def test_every_operator_with_a_dimension_of_size_0(device, call, zero):
    sizes = dict(SIZES, **{zero: 0})
    got = {}
    for run, backend in enumerate(["reference", "extension", "extension"]):
        desc_ops.set_backend(backend)
        got[run] = _outcome(call, _inputs(device, **sizes))
    want, first, second = got[0], got[1], got[2]
    if isinstance(want, str):
        assert first == want and second == want
        return
    assert len(first) == len(want)
    for a, b, w in zip(first, second, want):
        assert a.shape == w.shape and a.dtype == w.dtype
        assert torch.equal(a.nan_to_num(-7.0), b.nan_to_num(-7.0))
        if a.is_floating_point():
            assert_close(a, w)
        else:
            assert torch.equal(a, w)
