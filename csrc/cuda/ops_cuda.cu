// CUDA kernels of desc_ops register here (TORCH_LIBRARY_IMPL(desc_ops, CUDA,
// m)). None yet: this file keeps the CUDA build path compiling so that the
// kernels only need adding.
#include <torch/library.h>

#include "../desc_math.h"

TORCH_LIBRARY_IMPL(desc_ops, CUDA, m) {}
