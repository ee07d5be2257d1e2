"""Every public operator (desc_ops.functional.__all__) is in the registry of
sample inputs (tests/operators.py), the error table (tests/test_errors.py
VALID), the benchmark (benchmarks/losses.py OPS) and docs/ops.md (a section
heading naming it); the registry's samples cover each value of the operator's
options."""
import inspect
import os
import re
import sys

import pytest
import torch

import desc_ops
from desc_ops import _args, functional
from operators import OPS, PUBLIC

ROOT = os.path.join(os.path.dirname(__file__), "..")


def _benchmark_ops():
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    try:
        import losses
    finally:
        sys.path.pop(0)
    return losses.OPS


def _documented():
    with open(os.path.join(ROOT, "docs", "ops.md")) as f:
        headings = [line for line in f if line.startswith("#")]
    return {name for name in PUBLIC if any(re.search(rf"\b{name}\b", h) for h in headings)}


def test_every_public_operator_is_registered_tested_benchmarked_and_documented():
    from test_errors import VALID
    public = set(functional.__all__)
    assert len(public) == 7 and all(callable(getattr(desc_ops, name)) for name in public)
    assert set(OPS) == public, "tests/operators.py"
    assert set(VALID) == public, "tests/test_errors.py VALID"
    assert set(_benchmark_ops()) == public, "benchmarks/losses.py OPS"
    assert _documented() == public, "docs/ops.md section headings"


@pytest.mark.parametrize("name", PUBLIC)
def test_samples_cover_every_value_of_the_options(name):
    """Every reduction the operator takes, every ssim mode, labels and logits,
    every dtype, a float64 sample for gradcheck when it has gradients."""
    op = OPS[name]
    params = inspect.signature(op.fn).parameters
    seen = {key: {s.options.get(key, params[key].default if key in params else None) for s in op.samples}
            for key in ("reduction", "ssim", "kind")}
    if "reduction" in params:
        taken = {r for r in _args.REDUCTIONS if _accepts(op, r)}
        assert seen["reduction"] == taken and len(taken) >= 2
    if "ssim" in params:
        assert seen["ssim"] == set(_args.SSIM_MODES)
    if "semantic" in params:
        assert {k.rstrip("0123456789") for k in seen["kind"] if k} == {"logits", "labels"}
    assert {d for s in op.samples for d in op.sample_dtypes(s)} == set(op.dtypes)
    sizes = [s.size() for s in op.samples]
    assert any(s["H"] * s["W"] == 1 for s in sizes) or name == "stereo_photometric_loss"  # 1x1 where allowed
    assert any(s["H"] % 2 and s["W"] % 2 for s in sizes)  # odd sizes


def _accepts(op, reduction):
    kwargs = op.kwargs(op.core[0], "cpu", torch.float32)
    try:
        op.fn(**dict(kwargs, reduction=reduction))
    except ValueError:
        return False
    return True
