"""Every bad input the spec names raises ValueError naming the argument, on
both backends; direct calls of the compiled operators are guarded too."""
import pytest
import torch

import desc_ops

ops = torch.ops.desc_ops


@pytest.fixture(params=["extension", "reference"])
def impl(request):
    desc_ops.set_backend(request.param)
    return request.param


def _x(B=2, H=4, W=5):
    return torch.rand(B, 1, H, W) + 1


def test_devices_must_match(impl):
    meta = torch.empty(2, 1, 4, 5, device="meta")
    with pytest.raises(ValueError, match="depth_sem is on meta but depth is on cpu"):
        desc_ops.consistency_loss(_x(), meta, _x())
    with pytest.raises(ValueError, match="image"):
        desc_ops.smoothness_loss(_x(), torch.empty(2, 3, 4, 5, device="meta"))
    with pytest.raises(ValueError, match="instance_ids"):
        desc_ops.instance_prior_loss(_x(), torch.zeros(2, 4, 5, dtype=torch.long, device="meta"),
                                     torch.ones(2, 1), 10.0)


def test_shapes(impl):
    with pytest.raises(ValueError, match="depth_sem must have shape"):
        desc_ops.consistency_loss(_x(), _x(H=3), _x())
    with pytest.raises(ValueError, match="weight must have shape"):
        desc_ops.consistency_loss(_x(), _x(), torch.rand(2, 2, 4, 5))
    with pytest.raises(ValueError, match="depth must have shape"):
        desc_ops.smoothness_loss(torch.rand(2, 3, 4, 5), torch.rand(2, 3, 4, 5))
    with pytest.raises(ValueError, match="image must have shape"):
        desc_ops.smoothness_loss(_x(), torch.rand(2, 3, 4, 6))
    with pytest.raises(ValueError, match="image must have shape"):
        desc_ops.confidence_map(torch.zeros(2, 4, 5, dtype=torch.long), image=torch.rand(2, 2, 4, 5))
    with pytest.raises(ValueError, match="edges must have shape"):
        desc_ops.confidence_map(torch.zeros(2, 4, 5, dtype=torch.long), edges=torch.rand(2, 1, 4, 4))
    with pytest.raises(ValueError, match="semantic must cover"):
        desc_ops.semantic_consistency_loss(_x(), _x(), torch.zeros(2, 4, 6, dtype=torch.long))
    with pytest.raises(ValueError, match="semantic labels must have shape"):
        desc_ops.confidence_map(torch.zeros(4, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="instance_ids must have shape"):
        desc_ops.instance_prior_loss(_x(), torch.zeros(2, 4, 4, dtype=torch.long), torch.ones(2, 1), 10.0)
    with pytest.raises(ValueError, match="heights must have shape"):
        desc_ops.instance_prior_loss(_x(), torch.zeros(2, 4, 5, dtype=torch.long), torch.ones(3, 1), 10.0)
    with pytest.raises(ValueError, match="focal must be a scalar or have shape"):
        desc_ops.instance_prior_loss(_x(), torch.zeros(2, 4, 5, dtype=torch.long), torch.ones(2, 1),
                                     torch.ones(3))
    with pytest.raises(ValueError, match="depth must have shape"):
        desc_ops.instance_stats(torch.zeros(2, 4, 5, dtype=torch.long), 1, _x(H=3))


def test_dtypes(impl):
    with pytest.raises(ValueError, match="depth must be a floating tensor"):
        desc_ops.consistency_loss(torch.ones(2, 1, 4, 5, dtype=torch.long), _x(), _x())
    with pytest.raises(ValueError, match="instance_ids must be an integer tensor"):
        desc_ops.instance_stats(torch.zeros(2, 4, 5), 1)
    with pytest.raises(ValueError, match="instance_ids must be an integer tensor"):
        desc_ops.instance_prior_loss(_x(), torch.zeros(2, 4, 5), torch.ones(2, 1), 10.0)
    with pytest.raises(ValueError, match="heights must be a floating tensor"):
        desc_ops.instance_prior_loss(_x(), torch.zeros(2, 4, 5, dtype=torch.long),
                                     torch.ones(2, 1, dtype=torch.long), 10.0)
    with pytest.raises(ValueError, match="image must be a floating tensor"):
        desc_ops.smoothness_loss(_x(), torch.ones(2, 3, 4, 5, dtype=torch.uint8))
    with pytest.raises(ValueError, match="ignore_classes"):
        desc_ops.confidence_map(torch.zeros(2, 4, 5, dtype=torch.long), ignore_classes=torch.ones(2))
    with pytest.raises(ValueError, match="semantic must be a torch.Tensor"):
        desc_ops.confidence_map([[0, 1]])


def test_empty_batch_with_reduction(impl):
    empty = torch.rand(0, 1, 4, 5)
    for reduction in ("mean", "sum"):
        with pytest.raises(ValueError, match="depth is empty"):
            desc_ops.consistency_loss(empty, empty, empty, reduction=reduction)
        with pytest.raises(ValueError, match="depth is empty"):
            desc_ops.semantic_consistency_loss(empty, empty, torch.zeros(0, 4, 5, dtype=torch.long),
                                               reduction=reduction)
        with pytest.raises(ValueError, match="depth is empty"):
            desc_ops.instance_prior_loss(empty, torch.zeros(0, 4, 5, dtype=torch.long), torch.ones(0, 2), 1.0,
                                         reduction=reduction)
    with pytest.raises(ValueError, match="depth is empty"):
        desc_ops.smoothness_loss(empty, torch.rand(0, 3, 4, 5))
    assert desc_ops.consistency_loss(empty, empty, empty, reduction="none").shape == (0, 1, 4, 5)


def test_options(impl):
    with pytest.raises(ValueError, match="reduction"):
        desc_ops.consistency_loss(_x(), _x(), _x(), reduction="max")
    with pytest.raises(ValueError, match="reduction"):
        desc_ops.instance_prior_loss(_x(), torch.zeros(2, 4, 5, dtype=torch.long), torch.ones(2, 1), 1.0,
                                     reduction="none")
    with pytest.raises(ValueError, match="not both"):
        desc_ops.confidence_map(torch.zeros(2, 4, 5, dtype=torch.long), image=torch.rand(2, 3, 4, 5),
                                edges=torch.rand(2, 1, 4, 5))
    with pytest.raises(ValueError, match="num_instances"):
        desc_ops.instance_stats(torch.zeros(2, 4, 5, dtype=torch.long), -1)
    with pytest.raises(ValueError, match="max_depth"):
        desc_ops.instance_prior_loss(_x(), torch.zeros(2, 4, 5, dtype=torch.long), torch.ones(2, 1), 1.0,
                                     max_depth=-1.0)
    with pytest.raises(ValueError, match="instance_ids must be -1"):
        desc_ops.instance_prior_loss(_x(), torch.full((2, 4, 5), 3), torch.ones(2, 1), 1.0)


def test_compiled_ops_check_their_arguments():
    """Direct calls skip the Python checks; the C++ checks still refuse bad shapes."""
    with pytest.raises(ValueError, match="depth_sem"):
        ops.consistency_loss(_x(), _x(H=3), _x(), "mean")
    with pytest.raises(ValueError, match="reduction"):
        ops.consistency_loss(_x(), _x(), _x(), "max")
    with pytest.raises(ValueError, match="instance_ids"):
        ops.instance_stats(torch.full((1, 2, 2), 9), 3, None, True)
    with pytest.raises(ValueError, match="instance_ids"):
        ops.instance_prior_loss(_x(), torch.zeros(2, 4, 4, dtype=torch.long), torch.ones(2, 1),
                                torch.ones(2), 1, None, "mean", True)
    with pytest.raises(ValueError, match="image"):
        ops.smoothness_loss(_x(), torch.rand(2, 3, 4, 6))
    with pytest.raises(ValueError, match="not both"):
        ops.confidence_map(torch.zeros(2, 4, 5, dtype=torch.long), torch.rand(2, 3, 4, 5), torch.rand(2, 1, 4, 5),
                           1.0, 0.5, -1, None)
    with pytest.raises(ValueError, match="edges"):
        ops.semantic_consistency_loss(_x(), _x(), torch.zeros(2, 4, 5, dtype=torch.long), None,
                                      torch.rand(2, 1, 3, 5), 1.0, 0.5, -1, None, "mean")
