"""Build of desc_ops._C, the C++ (and CUDA) kernels, against the installed torch.

    pip install --no-build-isolation -e .

Switches (environment):
  FORCE_CPU=1             build the CPU kernels only
  FORCE_CUDA=1            build the CUDA kernels even if torch.cuda.is_available() is False
  TORCH_CUDA_ARCH_LIST    GPU architectures (default here "8.0;9.0+PTX" when no GPU is visible)
  CUDA_HOME               toolkit root (default /usr/local/cuda when it exists)
  MAX_JOBS                parallel compile jobs
  DEBUG=1                 -O0 -g (and -G -lineinfo for nvcc): kernels a debugger
                          (gdb, cuda-gdb, compute-sanitizer) can step through
By default the CUDA kernels are built when torch is a CUDA build and nvcc is found.
"""
import glob
import os
import sys

from setuptools import find_packages, setup

# torch finds the toolkit by `which nvcc`, which on some machines is a wrapper
# outside the toolkit; name the usual root before torch looks.
if "CUDA_HOME" not in os.environ and os.path.exists("/usr/local/cuda/bin/nvcc"):
    os.environ["CUDA_HOME"] = "/usr/local/cuda"

try:
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
except ImportError:
    sys.exit(
        "desc-ops compiles against the torch you run it with: install torch first, then\n"
        "    pip install --no-build-isolation .\n"
        "(an isolated build would compile against another torch and fail at import)."
    )

ROOT = os.path.dirname(os.path.abspath(__file__))


def _flag(name):
    return os.environ.get(name, "0").lower() in ("1", "true", "yes", "on")


def _with_cuda():
    if _flag("FORCE_CPU"):
        return False
    if _flag("FORCE_CUDA"):
        return True
    return torch.version.cuda is not None and CUDA_HOME is not None


def _cuda_extra_includes():
    """The minimal toolkit on some machines lacks the cuBLAS/cuSPARSE/cuSOLVER
    headers that ATen/cuda/CUDAContext.h includes; the nvidia-* wheels that a
    CUDA torch depends on ship them."""
    if os.path.exists(os.path.join(CUDA_HOME, "include", "cusparse.h")):
        return []
    try:
        import nvidia
    except ImportError:
        return []
    found = []
    for base in nvidia.__path__:
        found += glob.glob(os.path.join(base, "*", "include", "cusparse.h"))
    return sorted({os.path.dirname(p) for p in found})


def extensions():
    sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/cpu/*.cpp"))
    # -g0: no debug info (Python's CFLAGS ask for -g, which doubles compile time).
    # -fno-math-errno -fno-trapping-math: sqrt, selects and the branch-free exp
    # of desc_math.h vectorise (no errno or floating-point trap is ever read).
    debug = _flag("DEBUG")
    cxx = ["-O0", "-g"] if debug else ["-O3", "-g0"]
    cxx += ["-fopenmp", "-fvisibility=hidden", "-fno-math-errno", "-fno-trapping-math", "-Wno-psabi"]
    # -fopenmp makes at::parallel_for (inline in torch's OpenMP builds) run in
    # parallel; the extension then uses the libgomp torch has already loaded.
    link = ["-fopenmp"]
    macros = []
    with_cuda = _with_cuda()
    if with_cuda:
        if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
            os.environ["TORCH_CUDA_ARCH_LIST"] = "8.0;9.0+PTX"
        sources += sorted(glob.glob("csrc/cuda/*.cu"))
        macros.append(("WITH_CUDA", None))
        ext = CUDAExtension
        nvcc = ["-O0", "-g", "-G"] if debug else ["-O3"]
        extra = {"cxx": cxx, "nvcc": nvcc + ["--expt-relaxed-constexpr", "-lineinfo"]}
        include_dirs = _cuda_extra_includes()
    else:
        ext = CppExtension
        extra = {"cxx": cxx}
        include_dirs = []
    print(
        f"desc_ops build: torch {torch.__version__}, "
        + (
            f"CUDA {torch.version.cuda} at {CUDA_HOME}, "
            f"TORCH_CUDA_ARCH_LIST={os.environ.get('TORCH_CUDA_ARCH_LIST')}"
            if with_cuda
            else "CPU only"
        )
        + (", DEBUG (-O0 -g)" if debug else ""),
        flush=True,
    )
    return [
        ext(
            "desc_ops._C",
            sources,
            include_dirs=include_dirs,
            define_macros=macros,
            extra_compile_args=extra,
            extra_link_args=link,
        )
    ]


setup(
    packages=find_packages(include=["desc_ops", "desc_ops.*", "desc_train", "desc_train.*"]),
    ext_modules=extensions(),
    cmdclass={"build_ext": BuildExtension},
)
