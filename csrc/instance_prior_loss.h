// Argument checks of instance_prior_loss (spec §4), shared by the CPU and
// CUDA kernels.
#pragma once

#include <string>

#include "checks.h"
#include "instance_ids.h"

namespace desc_ops {

// Returns K, the number of slots.
inline int64_t check_prior_args(const at::Tensor& depth, const at::Tensor& ids, const at::Tensor& heights,
                                const std::string& reduction, bool validate) {
  check_reduction(reduction, /*allow_none=*/false);
  check_depth(depth);
  const int64_t B = depth.size(0), H = depth.size(2), W = depth.size(3);
  check_same_device(ids, "instance_ids", depth, "depth");
  check_same_device(heights, "heights", depth, "depth");
  check_same_dtype(heights, "heights", depth, "depth");
  TORCH_CHECK_VALUE(heights.dim() == 2 && heights.size(0) == B, "heights must have shape [", B, ", K], got ",
                    describe(heights));
  const int64_t K = heights.size(1);
  check_instance_ids(ids, K, validate);
  check_plane(ids, "instance_ids", B, H, W);
  return K;
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
