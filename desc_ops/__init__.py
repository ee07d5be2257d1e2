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


def _version() -> str:
    """The version pyproject.toml states, from the installed package's metadata;
    a source checkout that was never installed reads pyproject.toml itself."""
    from importlib import metadata

    try:
        return metadata.version("desc-ops")
    except metadata.PackageNotFoundError:
        import os
        import re

        pyproject = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pyproject.toml")
        try:
            with open(pyproject, encoding="utf-8") as f:
                found = re.search(r'^version\s*=\s*"([^"]+)"', f.read(), re.MULTILINE)
        except OSError:
            found = None
        return found.group(1) if found else "0+unknown"


__version__ = _version()

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
