"""torch.library.opcheck of every compiled operator (and the CPU training
forms) on the core samples: schema, fake kernel, autograd registration and
AOT dispatch agree with the kernels."""
import pytest
import torch

from helpers import leaf
from operators import OPS

FORMS = [pytest.param(op, None, id=op.name) for op in OPS.values()] + [
    pytest.param(op, op.training_form, id=op.training_form) for op in OPS.values() if op.training_form]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("op, form", FORMS)
def test_opcheck(device, op, form, dtype):
    if form and device.type != "cpu":
        pytest.skip("the training forms are CPU operators")
    operator = getattr(torch.ops.desc_ops, form).default if form else op.operator
    checked = 0
    for sample in op.core:
        kwargs = op.kwargs(sample, device, dtype, smooth=True)
        args = op.schema_args({k: leaf(v) if k in op.differentiable else v for k, v in kwargs.items()})
        # The smoothness training form has no reduction: the mean only.
        if form and len(args) > len(operator._schema.arguments):
            if args[len(operator._schema.arguments):] != ("mean",):
                continue
            args = args[:len(operator._schema.arguments)]
        torch.library.opcheck(operator, args)
        checked += 1
    assert checked
