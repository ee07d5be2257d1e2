"""Build of the kernels: desc_ops._C (C++ CPU kernels and the operator schemas)
and, where a CUDA toolkit is found, desc_ops._C_cuda<major> (the CUDA kernels).

    pip install .

Both modules use only the LibTorch stable ABI, targeted at torch 2.10, and
Python's limited API (abi3): the build may use any torch >= 2.10 (pip's isolated
build environment takes the newest) and the result runs on every torch >= 2.10
and every Python >= 3.10 (torch's own floor). The CUDA module is loaded only under a torch built for
the same CUDA major version (desc_ops/_backend.py).

Switches (environment):
  FORCE_CPU=1             build the CPU kernels only
  FORCE_CUDA=1            build the CUDA kernels even if no toolkit was detected
  TORCH_CUDA_ARCH_LIST    GPU architectures (default "8.0;9.0+PTX" when no GPU is visible)
  CUDA_HOME               toolkit root (default /usr/local/cuda when it exists)
  MAX_JOBS                parallel compile jobs
  DEBUG=1                 -O0 -g (and -G -lineinfo for nvcc): kernels a debugger
                          (gdb, cuda-gdb, compute-sanitizer) can step through
By default the CUDA kernels are built when nvcc is found and torch is a CUDA build.
"""
import glob
import os
import re
import subprocess

from setuptools import find_packages, setup

# torch finds the toolkit by `which nvcc`, which on some machines is a wrapper
# outside the toolkit; name the usual root before torch looks.
if "CUDA_HOME" not in os.environ and os.path.exists("/usr/local/cuda/bin/nvcc"):
    os.environ["CUDA_HOME"] = "/usr/local/cuda"

import torch  # noqa: E402  (pyproject.toml's build requirements provide it)
from torch.utils import cpp_extension  # noqa: E402
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension  # noqa: E402

# The oldest torch the binaries run on: the stable headers hide every newer API
# (and any ATen/c10 include) at compile time. pyproject.toml says the same.
TORCH_TARGET = (2, 10)


def _flag(name):
    return os.environ.get(name, "0").lower() in ("1", "true", "yes", "on")


def _with_cuda():
    if _flag("FORCE_CPU"):
        return False
    if _flag("FORCE_CUDA"):
        return True
    return torch.version.cuda is not None and CUDA_HOME is not None


def _nvcc_cuda_major():
    """The CUDA major version of the toolkit that compiles the kernels (it
    names the module: a torch of another major cannot load it)."""
    out = subprocess.run([os.path.join(CUDA_HOME, "bin", "nvcc"), "--version"], capture_output=True, text=True,
                         check=True).stdout
    return int(re.search(r"release (\d+)\.", out).group(1))


class BuildStableExtension(BuildExtension):
    """torch's BuildExtension refuses an nvcc of another CUDA major than the
    torch that builds. That rule is for extensions on torch's C++ ABI; ours
    uses the stable ABI only and links the toolkit's own CUDA runtime, and its
    module name states the CUDA major it needs at run time. pip's isolated build
    environment holds the newest torch wheel, whose CUDA major says nothing of
    the user's torch or toolkit, so the check is skipped."""

    def build_extensions(self):
        check = cpp_extension._check_cuda_version
        cpp_extension._check_cuda_version = lambda *args, **kwargs: None
        try:
            super().build_extensions()
        finally:
            cpp_extension._check_cuda_version = check


def extensions():
    debug = _flag("DEBUG")
    target = f"0x{TORCH_TARGET[0]:02x}{TORCH_TARGET[1]:02x}000000000000"
    # py_limited_api=True: torch's BuildExtension defines Py_LIMITED_API as
    # CPython 3.10, so one cp310-abi3 wheel serves every later Python.
    macros = [("TORCH_TARGET_VERSION", target)]
    # -g0: no debug info (Python's CFLAGS ask for -g, which doubles compile time).
    # -fno-math-errno -fno-trapping-math: sqrt, selects and the branch-free exp
    # of desc_math.h vectorise (no errno or floating-point trap is ever read).
    cxx = ["-O0", "-g"] if debug else ["-O3", "-g0"]
    cxx += ["-fvisibility=hidden", "-fno-math-errno", "-fno-trapping-math", "-Wno-psabi"]
    cpu_sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/cpu/*.cpp"))
    modules = [CppExtension("desc_ops._C", cpu_sources, define_macros=macros, extra_compile_args={"cxx": cxx},
                            py_limited_api=True)]
    summary = "CPU only"
    if _with_cuda():
        if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
            os.environ["TORCH_CUDA_ARCH_LIST"] = "8.0;9.0+PTX"
        major = _nvcc_cuda_major()
        nvcc = ["-O0", "-g", "-G"] if debug else ["-O3"]
        modules.append(CUDAExtension(
            f"desc_ops._C_cuda{major}",
            sorted(glob.glob("csrc/cuda/*.cu") + glob.glob("csrc/cuda/*.cpp")),
            # USE_CUDA: the CUDA parts of the stable C shims (the current stream).
            define_macros=macros + [("USE_CUDA", None), ("DESC_OPS_CUDA_MAJOR", str(major))],
            extra_compile_args={"cxx": cxx, "nvcc": nvcc + ["--expt-relaxed-constexpr", "-lineinfo"]},
            py_limited_api=True,
        ))
        summary = f"CUDA {major} at {CUDA_HOME}, TORCH_CUDA_ARCH_LIST={os.environ.get('TORCH_CUDA_ARCH_LIST')}"
    print(f"desc_ops build: torch {torch.__version__} headers, stable ABI target torch "
          f"{TORCH_TARGET[0]}.{TORCH_TARGET[1]}, {summary}" + (", DEBUG (-O0 -g)" if debug else ""), flush=True)
    return modules


setup(
    packages=find_packages(include=["desc_ops", "desc_ops.*", "desc_train", "desc_train.*"]),
    ext_modules=extensions(),
    cmdclass={"build_ext": BuildStableExtension},
    options={"bdist_wheel": {"py_limited_api": "cp310"}},
)
