"""Which implementation runs the public functions: the compiled kernels
(``extension``, the default) or the plain-PyTorch ``reference``.

Chosen by ``DESC_OPS_BACKEND=reference|extension`` at import, or later with
``desc_ops.set_backend``. A missing extension is an error unless the reference
was asked for: a silent fallback would make a user believe the kernels run.

The compiled kernels are two modules, both on the LibTorch stable ABI (one
build runs on every torch >= 2.10): ``desc_ops._C`` (the operators and their
CPU kernels) and ``desc_ops._C_cuda<major>`` (the CUDA kernels, built where a
CUDA toolkit was found). The CUDA module links the CUDA runtime of its major
version, so it is loaded only under a torch built for that major; elsewhere a
CUDA tensor given to an operator gets one error that says why and how to
rebuild (``cuda_error``).
"""
from __future__ import annotations

import glob
import importlib
import os
import re

import torch

BACKENDS = ("extension", "reference")

_BUILD_HINT = (
    "desc_ops: the compiled extension desc_ops._C could not be loaded ({err}).\n"
    "Build it from the repository root (any torch >= 2.10 builds it):\n"
    "    pip install .\n"
    "(add FORCE_CPU=1 for a CPU-only build), or run the plain-PyTorch reference with\n"
    "    DESC_OPS_BACKEND=reference"
)

_requested = os.environ.get("DESC_OPS_BACKEND", "extension").strip().lower() or "extension"
if _requested not in BACKENDS:
    raise ImportError(f"DESC_OPS_BACKEND must be one of {BACKENDS}, got {_requested!r}")

try:
    from . import _C  # noqa: F401  (importing it registers the operators and their CPU kernels)

    EXTENSION_ERROR = None
except ImportError as err:  # pragma: no cover - exercised only without a build
    EXTENSION_ERROR = err
    if _requested == "extension":
        raise ImportError(_BUILD_HINT.format(err=err)) from err

_current = _requested


def extension_available() -> bool:
    return EXTENSION_ERROR is None


def backend() -> str:
    """The backend the public functions run: ``"extension"`` or ``"reference"``."""
    return _current


def use_reference() -> bool:
    return _current == "reference"


def set_backend(name: str) -> None:
    """Switch the public functions to ``"extension"`` or ``"reference"``."""
    global _current
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    if name == "extension" and not extension_available():
        raise ImportError(_BUILD_HINT.format(err=EXTENSION_ERROR))
    _current = name


# ------------------------------------------------------------------ CUDA kernels

# The operators a CUDA tensor can reach (csrc/ops.cpp).
OPERATORS = (
    "confidence_map", "consistency_loss", "semantic_consistency_loss", "_consistency_loss_backward",
    "_consistency_loss_train", "_semantic_consistency_loss_train", "_consistency_loss_backward_signed",
    "instance_stats", "instance_prior_loss", "_instance_prior_loss_backward", "smoothness_loss",
    "_smoothness_loss_backward", "_smoothness_loss_train", "_smoothness_loss_backward_saved",
    "stereo_photometric_loss", "_stereo_photometric_loss_backward",
)


def built_cuda_majors() -> list[int]:
    """The CUDA major versions of the CUDA kernel modules installed beside
    ``desc_ops._C`` (``_C_cuda13...`` gives 13)."""
    found = glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)), "_C_cuda*"))
    majors = {int(m.group(1)) for p in found if (m := re.match(r"_C_cuda(\d+)\.", os.path.basename(p)))}
    return sorted(majors)


def cuda_plan(torch_cuda: str | None, built: list[int]) -> tuple[int | None, str | None]:
    """Which CUDA module to load, and otherwise why a CUDA tensor cannot run:
    ``(major, None)``, ``(None, message)``, or ``(None, None)`` under a torch
    without CUDA (no CUDA tensor can exist there)."""
    if torch_cuda is None:
        return None, None
    major = int(torch_cuda.split(".")[0])
    if major in built:
        return major, None
    fix = (f"rebuild with a CUDA {major} toolkit (CUDA_HOME=/path/to/cuda-{major}): "
           "`pip install --force-reinstall --no-deps --no-cache-dir .` (FORCE_CUDA=1 where no GPU is visible)")
    if not built:
        return None, f"desc_ops was built without CUDA kernels and torch uses CUDA {torch_cuda}: {fix}"
    have = ", ".join(str(b) for b in built)
    return None, f"desc_ops's CUDA kernels were built for CUDA {have} but torch uses CUDA {torch_cuda}: {fix}"


_cuda_module = None
CUDA_ERROR: str | None = None  # why CUDA tensors cannot run, where they cannot
_refusals = None  # the torch.library.Library holding the refusing CUDA kernels


def _refuse_cuda(message: str) -> None:
    """CUDA kernels that raise `message` for every operator, so that a CUDA
    tensor never meets the dispatcher's generic "could not run" error."""
    global _refusals

    def refuse(*args, **kwargs):
        raise RuntimeError(message)

    _refusals = torch.library.Library("desc_ops", "IMPL")
    for name in OPERATORS:
        _refusals.impl(name, refuse, "CUDA")


def _load_cuda() -> None:
    global _cuda_module, CUDA_ERROR, _refusals
    if _refusals is not None:  # loaded before (the tests load again under another torch.version.cuda)
        _refusals._destroy()
        _refusals = None
    major, CUDA_ERROR = cuda_plan(torch.version.cuda, built_cuda_majors())
    _cuda_module = None
    if major is not None:
        try:
            _cuda_module = importlib.import_module(f"{__package__}._C_cuda{major}")
        except ImportError as err:
            CUDA_ERROR = f"desc_ops's CUDA kernels could not be loaded ({err})"
    if CUDA_ERROR is not None:
        _refuse_cuda(CUDA_ERROR)


def built_cuda_version() -> str | None:
    """CUDA version of the loaded CUDA kernels, as ``"13.0"``, or None where
    none is loaded (a CPU-only build, a torch without CUDA, or another CUDA
    major: ``desc_ops._backend.CUDA_ERROR`` says which)."""
    if _cuda_module is None:
        return None
    v = _cuda_module.CUDA_VERSION
    return f"{v // 1000}.{(v % 1000) // 10}"


if extension_available():
    _load_cuda()
