// Checks of instance id maps shared by the instance operators (docs/ops.md §3, §4),
// on any device.
#pragma once

#include <ATen/ATen.h>

#include <optional>

#include "checks.h"

namespace desc_ops {

// `instance_ids` is (B, H, W) int32/int64. With `validate`, every id must be
// -1 or in [0, num_instances); on CUDA this costs one device-to-host read of
// two numbers, which validate=false skips (such pixels are then ignored).
inline void check_instance_ids(const at::Tensor& instance_ids, int64_t num_instances,
                               bool validate) {
  check_index(instance_ids, "instance_ids");
  TORCH_CHECK_VALUE(instance_ids.dim() == 3, "instance_ids must have shape [B, H, W], got ",
                    describe(instance_ids));
  TORCH_CHECK_VALUE(num_instances >= 0, "num_instances must be >= 0, got ", num_instances);
  if (!validate || instance_ids.numel() == 0) return;
  const auto [lo, hi] = at::aminmax(instance_ids);
  const at::Tensor range = at::stack({lo, hi}).to(at::kCPU, at::kLong);  // the one host read
  const int64_t lo_v = range.data_ptr<int64_t>()[0], hi_v = range.data_ptr<int64_t>()[1];
  TORCH_CHECK_VALUE(lo_v >= -1 && hi_v < num_instances,
                    "instance_ids must be -1 (no instance) or a slot in [0, ", num_instances,
                    "), found values in [", lo_v, ", ", hi_v, "]");
}

// The arguments of instance_stats; returns whether depth was given.
inline bool check_stats_args(const at::Tensor& instance_ids, int64_t num_instances,
                             const std::optional<at::Tensor>& depth, bool validate) {
  check_instance_ids(instance_ids, num_instances, validate);
  const bool has_depth = depth.has_value() && depth->defined();
  if (has_depth) {
    check_floating(*depth, "depth");
    check_same_device(*depth, "depth", instance_ids, "instance_ids");
    check_map(*depth, "depth", instance_ids.size(0), instance_ids.size(1), instance_ids.size(2));
  }
  return has_depth;
}

// Focal length per image, (B,), in the accumulation dtype of `like`.
inline at::Tensor focal_per_image(const at::Tensor& focal, int64_t B, const at::Tensor& like) {
  const auto dtype = opmath_dtype(like.scalar_type());
  TORCH_CHECK_VALUE(focal.dim() == 0 || (focal.dim() == 1 && (focal.size(0) == B || focal.size(0) == 1)),
                    "focal must be a scalar or have shape [", B, "], got ", describe(focal));
  check_same_device(focal, "focal", like, "depth");
  // to() would take a bool as 0 or 1 and drop a complex number's imaginary part.
  TORCH_CHECK_VALUE(!focal.is_complex() && focal.scalar_type() != at::kBool, "focal must be real, got ",
                    describe(focal));
  return focal.to(dtype).reshape({-1}).expand({B}).contiguous();
}

}  // namespace desc_ops
