// Argument checks of instance_prior_loss (docs/ops.md §4), shared by the CPU and
// CUDA kernels.
#pragma once

#include <optional>
#include <string>

#include "checks.h"
#include "instance_checks.h"

namespace desc_ops {

// Returns K, the number of slots.
inline int64_t check_prior_args(const Tensor& depth, const Tensor& ids, const Tensor& heights,
                                std::optional<double> max_depth, const std::string& reduction, bool validate) {
  check_reduction(reduction, /*allow_none=*/true);
  check_depth(depth);
  check_not_empty(depth, reduction);
  DESC_CHECK(!max_depth.has_value() || *max_depth >= 0.0, "max_depth must be >= 0, got ",
             max_depth.value_or(0.0));
  const int64_t B = depth.size(0), H = depth.size(2), W = depth.size(3);
  check_same_device(ids, "instance_ids", depth, "depth");
  check_same_device(heights, "heights", depth, "depth");
  check_same_dtype(heights, "heights", depth, "depth");
  DESC_CHECK(heights.dim() == 2 && heights.size(0) == B, "heights must have shape [", B, ", K], got ",
             describe(heights));
  const int64_t K = heights.size(1);
  check_plane(ids, "instance_ids", B, H, W);
  check_instance_ids(ids, K, validate);
  return K;
}

// The backward reads what the forward returned: check it still fits depth.
inline void check_prior_backward_args(const Tensor& grad, const Tensor& depth, const Tensor& ids,
                                      const Tensor& z, const Tensor& dz_dh, const Tensor& sign_sum,
                                      const Tensor& norm, const std::string& reduction) {
  check_reduction(reduction, /*allow_none=*/true);
  check_depth(depth);
  check_grad(grad, depth, reduction);
  check_index(ids, "instance_ids");
  check_same_device(ids, "instance_ids", depth, "depth");
  check_plane(ids, "instance_ids", depth.size(0), depth.size(2), depth.size(3));
  check_norm(norm, depth);
  const auto acc = norm.scalar_type();
  const int64_t B = depth.size(0);
  DESC_CHECK(z.dim() == 2 && z.size(0) == B && z.scalar_type() == acc, "z must have shape [", B,
             ", K] and dtype ", dtype_name(acc), ", got ", describe(z));
  const int64_t K = z.size(1);
  DESC_CHECK(dz_dh.sizes().equals(z.sizes()) && dz_dh.scalar_type() == acc, "dz_dh must have shape [", B, ", ",
             K, "] and dtype ", dtype_name(acc), ", got ", describe(dz_dh));
  DESC_CHECK(sign_sum.sizes().equals(z.sizes()) && sign_sum.scalar_type() == kLong,
             "sign_sum must have shape [", B, ", ", K, "] and dtype Long, got ", describe(sign_sum));
  check_same_device(z, "z", depth, "depth");
  check_same_device(dz_dh, "dz_dh", depth, "depth");
  check_same_device(sign_sum, "sign_sum", depth, "depth");
}

// d/d heights = -(grad / N) * (focal / h) * sum_p sign(depth(p) - z): B*K
// numbers from what the forward saved, in acc, rounded to `dtype`. On the CPU
// a loop; on other devices tensor ops of the same arithmetic (no host read of
// grad or N).
inline Tensor prior_heights_grad(const Tensor& grad, const Tensor& norm, const Tensor& dz_dh,
                                 const Tensor& sign_sum_in, ScalarType dtype) {
  const ScalarType acc = dz_dh.scalar_type();
  if (!dz_dh.is_cpu()) {
    const Tensor scale = desc_ops::div(to_dtype(grad, acc), norm);
    return to_dtype(desc_ops::neg(desc_ops::mul(desc_ops::mul(scale, dz_dh), to_dtype(sign_sum_in, acc))), dtype);
  }
  const Tensor dz = as_contiguous(dz_dh), sign_sum = as_contiguous(sign_sum_in);
  Tensor out = empty_as(dz, dtype);
  DESC_DISPATCH_FLOATING(dtype, "instance_prior_loss_backward", [&] {
    using acc_t = opmath_t<scalar_t>;
    const acc_t scale = static_cast<acc_t>(item(grad)) / static_cast<acc_t>(item(norm));
    const acc_t* dz_p = dz.const_data_ptr<acc_t>();
    const int64_t* sign_p = sign_sum.const_data_ptr<int64_t>();
    scalar_t* out_p = out.mutable_data_ptr<scalar_t>();
    for (int64_t i = 0; i < dz.numel(); ++i) {
      out_p[i] = static_cast<scalar_t>(-(scale * dz_p[i]) * static_cast<acc_t>(sign_p[i]));
    }
  });
  return out;
}

}  // namespace desc_ops
