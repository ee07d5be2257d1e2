"""torch.compile(fullgraph=True) of every public operator (the registry's
first core sample of each, tests/operators.py) and of the DESCLoss module:
no graph break, the eager results and gradients."""
import pytest
import torch

import desc_ops
from helpers import assert_close, leaf
from operators import OPS, outputs

pytestmark = pytest.mark.compile


def _calls(device):
    return {op.name: op.kwargs(op.core[0], device, torch.float32) for op in OPS.values()}


def _forward(calls, leaves):
    """Every output of every operator; `leaves` replace the differentiable arguments."""
    return [t for name, kw in calls.items() for _, t in outputs(OPS[name].fn(**dict(kw, **leaves[name])))]


def _results(fn, calls):
    leaves = {op.name: {k: leaf(calls[op.name][k]) for k in op.differentiable} for op in OPS.values()}
    out = fn(calls, leaves)
    losses = sum(o.sum() for o in outputs_of_losses(out, calls))
    flat = [t for name in calls for t in leaves[name].values()]
    return out + list(torch.autograd.grad(losses, flat))


def outputs_of_losses(out, calls):
    """The first output of each differentiable operator, out of `_forward`'s list."""
    i, losses = 0, []
    for name, kw in calls.items():
        n = len(outputs(OPS[name].fn(**kw)))
        if OPS[name].differentiable:
            losses.append(out[i])
        i += n
    return losses


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compile_fullgraph(device, backend):
    torch._dynamo.reset()
    calls = _calls(device)
    compiled = torch.compile(_forward, fullgraph=True, backend=backend)
    got, want = _results(compiled, calls), _results(_forward, calls)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert_close(a.double(), b.double(), torch.float32)


def test_compile_fullgraph_modules(device):
    torch._dynamo.reset()
    calls = _calls(device)
    semantic, prior = calls["semantic_consistency_loss"], calls["instance_prior_loss"]
    loss_fn = desc_ops.DESCLoss(ignore_classes=[2])

    def step(depth):
        out = loss_fn(depth, depth_sem=semantic["depth_sem"], semantic=semantic["semantic"], image=semantic["image"],
                      instance_ids=prior["instance_ids"], heights=prior["heights"], focal=30.0)
        return out.total

    d = leaf(semantic["depth"])
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    assert_close(compiled(d), step(d))
