// Argument checks and normalisers of smoothness_loss (docs/ops.md §5), shared by the
// CPU and CUDA kernels.
#pragma once

#include <string>
#include <utility>

#include "checks.h"

namespace desc_ops {

// reduction: "mean" (the loss) or "none" (the per-pixel map of its terms).
inline void check_smoothness_args(const Tensor& depth, const Tensor& image, const std::string& reduction = "mean") {
  DESC_CHECK(reduction == "mean" || reduction == "none", "reduction must be 'none' or 'mean', got '", reduction,
             "'");
  check_depth(depth);
  check_same_device(image, "image", depth, "depth");
  check_same_dtype(image, "image", depth, "depth");
  DESC_CHECK(image.dim() == 4 && image.size(0) == depth.size(0) && image.size(1) >= 1 &&
                 image.size(2) == depth.size(2) && image.size(3) == depth.size(3),
             "image must have shape [", depth.size(0), ", C, ", depth.size(2), ", ", depth.size(3),
             "], got ", describe(image));
  check_not_empty(depth, reduction);
}

inline void check_smoothness_backward_args(const Tensor& grad, const Tensor& depth, const Tensor& image,
                                           const std::string& reduction = "mean") {
  check_smoothness_args(depth, image, reduction);
  check_grad(grad, depth, reduction);
}

// 1 / number of terms of the x and y means; 0 for an empty term.
template <typename acc_t>
std::pair<acc_t, acc_t> smoothness_term_scales(int64_t B, int64_t H, int64_t W) {
  const int64_t nx = B * H * (W - 1), ny = B * (H - 1) * W;
  return {nx > 0 ? acc_t(1) / static_cast<acc_t>(nx) : acc_t(0),
          ny > 0 ? acc_t(1) / static_cast<acc_t>(ny) : acc_t(0)};
}

}  // namespace desc_ops
