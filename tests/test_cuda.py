"""The kernels under CUDA graphs and on another stream. The CUDA kernels
against the CPU kernels: tests/test_op_cuda.py; every other test file runs on
CUDA too (the `device` fixture) whenever a GPU is present."""
import pytest
import torch

import desc_ops

from helpers import assert_close, leaf

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _inputs(dtype, B=3, C=19, H=70, W=300, K=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(-1, K, (B, H, W), generator=g)
    return dict(
        depth=(torch.rand(B, 1, H, W, generator=g) * 60 + 1).to(dtype),
        depth_sem=(torch.rand(B, 1, H, W, generator=g) * 60 + 1).to(dtype),
        logits=torch.randn(B, C, H, W, generator=g).to(dtype),
        labels=torch.randint(-1, C, (B, H, W), generator=g),
        image=torch.rand(B, 3, H, W, generator=g).to(dtype),
        image_other=torch.rand(B, 3, H, W, generator=g).to(dtype),
        focal_baseline=torch.rand(B, generator=g) * 120,
        ids=ids,
        heights=(torch.rand(B, K, generator=g) * 2 + 0.5).to(dtype),
        focal=torch.full((B,), 200.0),
    )


def _run_all(x, device):
    x = {k: v.to(device) for k, v in x.items()}
    d, s, h = leaf(x["depth"]), leaf(x["depth_sem"]), leaf(x["heights"])
    K = x["heights"].shape[1]
    out = {
        "conf_logits": desc_ops.confidence_map(x["logits"], image=x["image"], ignore_classes=[3]),
        "conf_labels": desc_ops.confidence_map(x["labels"], image=x["image"]),
        "fused": desc_ops.semantic_consistency_loss(d, s, x["logits"], image=x["image"]),
        "fused_labels": desc_ops.semantic_consistency_loss(d, s, x["labels"], reduction="sum"),
        "plain": desc_ops.consistency_loss(d, s, x["image"][:, :1], reduction="mean"),
        "prior": desc_ops.instance_prior_loss(d, x["ids"], h, x["focal"], max_depth=80.0),
        "smooth": desc_ops.smoothness_loss(d, x["image"]),
        "stereo": desc_ops.stereo_photometric_loss(d, x["image"], x["image_other"], x["focal_baseline"]),
        "stereo_map": desc_ops.stereo_photometric_loss(d, x["image"], x["image_other"], x["focal_baseline"],
                                                       ssim="reflect", reduction="none"),
    }
    total = (out["fused"] + out["fused_labels"] * 1e-6 + out["plain"] + out["prior"] + out["smooth"] + out["stereo"]
             + (out["stereo_map"] * x["image"][:, 1:2]).mean())
    out["grad_depth"], out["grad_depth_sem"], out["grad_heights"] = torch.autograd.grad(total, (d, s, h))
    st = desc_ops.instance_stats(x["ids"], K, x["depth"])
    out.update({f"stats_{k}": v for k, v in st._asdict().items()})
    return {k: v.cpu() for k, v in out.items()}


@pytest.mark.compile
def test_cuda_graphs_reduce_overhead():
    """mode="reduce-overhead" captures CUDA graphs: the kernels must run on the
    current stream and never synchronise (validate=False skips the id check)."""
    torch._dynamo.reset()
    x = {k: v.cuda() for k, v in _inputs(torch.float32, B=2, H=64, W=96).items()}

    def step(d, h):
        return (desc_ops.semantic_consistency_loss(d, x["depth_sem"], x["logits"], image=x["image"])
                + desc_ops.instance_prior_loss(d, x["ids"], h, x["focal"], validate=False)
                + desc_ops.smoothness_loss(d, x["image"])
                + desc_ops.stereo_photometric_loss(d, x["image"], x["image_other"], x["focal_baseline"]))

    compiled = torch.compile(step, fullgraph=True, mode="reduce-overhead")
    for _ in range(3):  # warm-up, record, replay
        d, h = leaf(x["depth"]), leaf(x["heights"])
        got = compiled(d, h)
        got_grads = torch.autograd.grad(got, (d, h))
    d, h = leaf(x["depth"]), leaf(x["heights"])
    want = step(d, h)
    want_grads = torch.autograd.grad(want, (d, h))
    assert_close(got, want)
    for a, b in zip(got_grads, want_grads):
        assert_close(a, b)


def test_other_stream():
    x = _inputs(torch.float32, B=2, H=32, W=48)
    want = _run_all(x, "cuda")
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        got = _run_all(x, "cuda")
    torch.cuda.synchronize()
    for name in want:
        assert torch.equal(got[name].nan_to_num(-1), want[name].nan_to_num(-1)), name
