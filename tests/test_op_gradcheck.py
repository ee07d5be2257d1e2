"""gradcheck (float64) of every differentiable operator's core samples, on
three paths: the public function on the kernels (on the CPU, the training
forms), on the reference, and the compiled operator itself
(torch.ops.desc_ops.*: its own backward, the one CUDA and torch.compile use)."""
import pytest
import torch

import desc_ops
from helpers import leaf
from operators import DIFFERENTIABLE

PATHS = ["extension", "reference", "operator"]


def _first(result):
    return result[0] if isinstance(result, (tuple, list)) else result


def loss_of(op, kwargs, path, wants):
    """The loss as a function of the arguments in `wants`, on `path`."""
    def loss(*xs):
        kw = dict(kwargs, **dict(zip(wants, xs)))
        if path == "operator":
            return _first(op.operator(*op.schema_args(kw)))
        desc_ops.set_backend(path)
        return _first(op.fn(**kw))
    return loss


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("op, sample", [pytest.param(op, s, id=f"{op.name}-{s.name}")
                                        for op in DIFFERENTIABLE for s in op.core])
def test_gradcheck(device, op, sample, path):
    kwargs = op.kwargs(sample, device, torch.float64, smooth=True)
    inputs = tuple(leaf(kwargs[k]) for k in op.differentiable)
    # The heights' gradient of the prior adds with atomics on CUDA (docs/ops.md §4):
    # a repeated backward may differ in the last bits.
    nondet_tol = 1e-12 if device.type == "cuda" and op.name == "instance_prior_loss" else 0.0
    assert torch.autograd.gradcheck(loss_of(op, kwargs, path, op.differentiable), inputs, nondet_tol=nondet_tol)


@pytest.mark.parametrize("path", ["extension", "operator"])
@pytest.mark.parametrize("op, sample, wants", [
    pytest.param(op, s, (k,), id=f"{op.name}-{s.name}-{k}")
    for op in DIFFERENTIABLE if len(op.differentiable) > 1 for s in op.core for k in op.differentiable])
def test_gradient_of_one_argument_alone(device, op, sample, wants, path):
    """Only one argument asks for a gradient: it gets the reference's (the CPU
    training forms save one map for both inputs; the operators' backward skips
    the other's)."""
    kwargs = op.kwargs(sample, device, torch.float64, smooth=True)
    xs = tuple(leaf(kwargs[k]) for k in wants)
    loss = loss_of(op, kwargs, path, wants)(*xs)
    g = torch.rand(loss.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).to(loss)
    got = torch.autograd.grad(loss, xs, g)
    desc_ops.set_backend("reference")
    want = torch.autograd.grad(loss_of(op, kwargs, "reference", wants)(*xs), xs, g)
    for a, b in zip(got, want):
        assert a.abs().sum() > 0
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
