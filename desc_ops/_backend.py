"""Which implementation runs the public functions: the compiled kernels
(``extension``, the default) or the plain-PyTorch ``reference``.

Chosen by ``DESC_OPS_BACKEND=reference|extension`` at import, or later with
``desc_ops.set_backend``. A missing extension is an error unless the reference
was asked for: a silent fallback would make a user believe the kernels run.
"""
from __future__ import annotations

import os

import torch

BACKENDS = ("extension", "reference")

_BUILD_HINT = (
    "desc_ops: the compiled extension desc_ops._C could not be loaded ({err}).\n"
    "Build it against the installed torch from the repository root:\n"
    "    pip install --no-build-isolation -e .\n"
    "(add FORCE_CPU=1 for a CPU-only build), or run the plain-PyTorch reference with\n"
    "    DESC_OPS_BACKEND=reference"
)

_requested = os.environ.get("DESC_OPS_BACKEND", "extension").strip().lower() or "extension"
if _requested not in BACKENDS:
    raise ImportError(f"DESC_OPS_BACKEND must be one of {BACKENDS}, got {_requested!r}")

try:
    from . import _C  # noqa: F401  (importing it registers the operators)

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


def built_cuda_version():
    """CUDA version the extension was compiled with, as ``"13.0"``, or None
    for a CPU-only build (or no extension)."""
    if not extension_available():
        return None
    v = torch.ops.desc_ops._cuda_version()
    return None if v < 0 else f"{v // 1000}.{(v % 1000) // 10}"


def _check_cuda_version() -> None:
    built = built_cuda_version()
    if built is None or torch.version.cuda is None:
        return
    if built.split(".")[0] != torch.version.cuda.split(".")[0]:
        raise ImportError(
            f"desc_ops._C was compiled with CUDA {built} but torch uses CUDA {torch.version.cuda}: "
            "rebuild with `pip install --no-build-isolation -e .`"
        )


_check_cuda_version()
