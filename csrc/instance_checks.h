// Checks of instance id maps shared by the instance operators (docs/ops.md §3, §4),
// on any device.
#pragma once

#include <optional>

#include "checks.h"

namespace desc_ops {

// `instance_ids` is (B, H, W) int32/int64. With `validate`, every id must be
// -1 or in [0, num_instances); on CUDA this costs one device-to-host read of
// two numbers, which validate=false skips (such pixels are then ignored).
inline void check_instance_ids(const Tensor& instance_ids, int64_t num_instances,
                               bool validate) {
  check_index(instance_ids, "instance_ids");
  DESC_CHECK(instance_ids.dim() == 3, "instance_ids must have shape [B, H, W], got ",
             describe(instance_ids));
  DESC_CHECK(num_instances >= 0, "num_instances must be >= 0, got ", num_instances);
  if (!validate || instance_ids.numel() == 0) return;
  const auto [lo_v, hi_v] = min_max(instance_ids);
  DESC_CHECK(lo_v >= -1 && hi_v < num_instances,
             "instance_ids must be -1 (no instance) or a slot in [0, ", num_instances,
             "), found values in [", lo_v, ", ", hi_v, "]");
}

// The arguments of instance_stats; returns whether depth was given.
inline bool check_stats_args(const Tensor& instance_ids, int64_t num_instances,
                             const std::optional<Tensor>& depth, bool validate) {
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
inline Tensor focal_per_image(const Tensor& focal, int64_t B, const Tensor& like) {
  const auto dtype = opmath_dtype(like.scalar_type());
  DESC_CHECK(focal.dim() == 0 || (focal.dim() == 1 && (focal.size(0) == B || focal.size(0) == 1)),
             "focal must be a scalar or have shape [", B, "], got ", describe(focal));
  check_same_device(focal, "focal", like, "depth");
  // to() would take a bool as 0 or 1 and drop a complex number's imaginary part.
  DESC_CHECK(!is_complex(focal.scalar_type()) && focal.scalar_type() != kBool, "focal must be real, got ",
             describe(focal));
  const Tensor f = to_dtype(focal, dtype);
  if (f.dim() == 1 && f.size(0) == B && f.is_contiguous()) return f;
  const Tensor flat = reshape(f, {-1});
  return as_contiguous(flat.size(0) == B ? flat : call_aten<1>("aten::expand", "", flat, Sizes({B}), false)[0]);
}

}  // namespace desc_ops
