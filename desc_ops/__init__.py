"""desc-ops: fused C++/CUDA kernels for the losses of DESC (semantic and
edge-guided depth domain adaptation). The contract of every operator is
``docs/ops.md``; ``desc_ops.reference`` is its plain-PyTorch form.

Backend: ``DESC_OPS_BACKEND=extension`` (default: the compiled kernels) or
``reference``; ``desc_ops.backend()`` tells which runs.
"""
from ._backend import backend, built_cuda_version, extension_available, set_backend
from . import _ops  # noqa: F401  (fake kernels and autograd of the compiled ops)
from . import reference
from .functional import (
    confidence_map,
    consistency_loss,
    instance_prior_loss,
    instance_stats,
    semantic_consistency_loss,
    smoothness_loss,
    stereo_photometric_loss,
)
from .instances import InstanceStats, instance_heights, relabel_instances
from .modules import (
    ConsistencyLoss,
    DESCLoss,
    DESCLossOutput,
    InstancePriorLoss,
    SemanticConsistencyLoss,
    SmoothnessLoss,
    StereoPhotometricLoss,
)

__version__ = "0.1.0"

__all__ = [
    "backend",
    "set_backend",
    "extension_available",
    "built_cuda_version",
    "reference",
    "confidence_map",
    "consistency_loss",
    "semantic_consistency_loss",
    "instance_stats",
    "instance_heights",
    "instance_prior_loss",
    "smoothness_loss",
    "stereo_photometric_loss",
    "relabel_instances",
    "InstanceStats",
    "ConsistencyLoss",
    "SemanticConsistencyLoss",
    "InstancePriorLoss",
    "SmoothnessLoss",
    "StereoPhotometricLoss",
    "DESCLoss",
    "DESCLossOutput",
]
