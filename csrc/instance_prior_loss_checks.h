// Argument checks of instance_prior_loss (docs/ops.md §4), shared by the CPU and
// CUDA kernels.
#pragma once

#include <optional>
#include <string>

#include "checks.h"
#include "instance_checks.h"

namespace desc_ops {

// Returns K, the number of slots.
inline int64_t check_prior_args(const at::Tensor& depth, const at::Tensor& ids, const at::Tensor& heights,
                                std::optional<double> max_depth, const std::string& reduction, bool validate) {
  check_reduction(reduction, /*allow_none=*/false);
  check_depth(depth);
  check_not_empty(depth, reduction);
  TORCH_CHECK_VALUE(!max_depth.has_value() || *max_depth >= 0.0, "max_depth must be >= 0, got ",
                    max_depth.value_or(0.0));
  const int64_t B = depth.size(0), H = depth.size(2), W = depth.size(3);
  check_same_device(ids, "instance_ids", depth, "depth");
  check_same_device(heights, "heights", depth, "depth");
  check_same_dtype(heights, "heights", depth, "depth");
  TORCH_CHECK_VALUE(heights.dim() == 2 && heights.size(0) == B, "heights must have shape [", B, ", K], got ",
                    describe(heights));
  const int64_t K = heights.size(1);
  check_plane(ids, "instance_ids", B, H, W);
  check_instance_ids(ids, K, validate);
  return K;
}

// The backward reads what the forward returned: check it still fits depth.
inline void check_prior_backward_args(const at::Tensor& grad, const at::Tensor& depth, const at::Tensor& ids,
                                      const at::Tensor& z, const at::Tensor& dz_dh, const at::Tensor& sign_sum,
                                      const at::Tensor& norm) {
  check_depth(depth);
  check_scalar_grad(grad, depth);
  check_index(ids, "instance_ids");
  check_same_device(ids, "instance_ids", depth, "depth");
  check_plane(ids, "instance_ids", depth.size(0), depth.size(2), depth.size(3));
  check_norm(norm, depth);
  const auto acc = norm.scalar_type();
  const int64_t B = depth.size(0);
  TORCH_CHECK_VALUE(z.dim() == 2 && z.size(0) == B && z.scalar_type() == acc, "z must have shape [", B,
                    ", K] and dtype ", c10::toString(acc), ", got ", describe(z));
  const int64_t K = z.size(1);
  TORCH_CHECK_VALUE(dz_dh.sizes() == z.sizes() && dz_dh.scalar_type() == acc, "dz_dh must have shape [", B, ", ",
                    K, "] and dtype ", c10::toString(acc), ", got ", describe(dz_dh));
  TORCH_CHECK_VALUE(sign_sum.sizes() == z.sizes() && sign_sum.scalar_type() == at::kLong,
                    "sign_sum must have shape [", B, ", ", K, "] and dtype Long, got ", describe(sign_sum));
  check_same_device(z, "z", depth, "depth");
  check_same_device(dz_dh, "dz_dh", depth, "depth");
  check_same_device(sign_sum, "sign_sum", depth, "depth");
}

// d/d heights = -(grad / N) * (focal / h) * sum_p sign(depth(p) - z): B*K
// numbers from what the forward saved, with tensor ops on the device of the
// inputs (no host read of grad or N).
inline at::Tensor prior_heights_grad(const at::Tensor& grad, const at::Tensor& norm, const at::Tensor& dz_dh,
                                     const at::Tensor& sign_sum, at::ScalarType dtype) {
  const at::Tensor scale = grad.to(dz_dh.scalar_type()) / norm;
  return (-scale * dz_dh * sign_sum.to(dz_dh.scalar_type())).to(dtype);
}

}  // namespace desc_ops
