// Argument checks shared by the CPU and CUDA entry points. The Python layer
// validates first and raises ValueError; these guard memory safety for anyone
// calling torch.ops.desc_ops.* directly, with the same messages as a
// RuntimeError (DESC_CHECK, docs/ops.md §0).
#pragma once

#include <string>

#include "stable_api.h"

namespace desc_ops {

inline std::string describe(const Tensor& t) {
  std::string s = "shape [";
  for (int64_t i = 0; i < t.dim(); ++i) {
    if (i) s += ", ";
    s += std::to_string(t.size(i));
  }
  return s + "] and dtype " + dtype_name(t.scalar_type());
}

inline void check_floating(const Tensor& t, const char* name) {
  DESC_CHECK(is_floating(t.scalar_type()), name,
             " must be a floating tensor, got ", describe(t));
}

inline void check_index(const Tensor& t, const char* name) {
  DESC_CHECK(t.scalar_type() == kInt || t.scalar_type() == kLong,
             name, " must be an int32 or int64 tensor, got ", describe(t));
}

inline void check_same_device(const Tensor& a, const char* a_name,
                              const Tensor& b, const char* b_name) {
  DESC_CHECK(same_device(a, b), a_name, " is on ", device_name(a.device()), " but ", b_name, " is on ",
             device_name(b.device()));
}

inline void check_same_dtype(const Tensor& a, const char* a_name,
                             const Tensor& b, const char* b_name) {
  DESC_CHECK(a.scalar_type() == b.scalar_type(), a_name, " has dtype ", dtype_name(a.scalar_type()), " but ",
             b_name, " has dtype ", dtype_name(b.scalar_type()));
}

// A floating depth map (B, 1, H, W), the first argument of most operators.
inline void check_depth(const Tensor& t, const char* name = "depth") {
  check_floating(t, name);
  DESC_CHECK(t.dim() == 4 && t.size(1) == 1, name, " must have shape [B, 1, H, W], got ",
             describe(t));
}

// A per-pixel map (B, 1, H, W) matching `like` (B, *, H, W) or (B, H, W).
inline void check_map(const Tensor& t, const char* name, int64_t B,
                      int64_t H, int64_t W) {
  DESC_CHECK(t.dim() == 4 && t.size(0) == B && t.size(1) == 1 &&
                 t.size(2) == H && t.size(3) == W,
             name, " must have shape [", B, ", 1, ", H, ", ", W,
             "], got ", describe(t));
}

// A map read pixel by pixel beside `depth`: its device, dtype and shape.
inline void check_map_like(const Tensor& t, const char* name, const Tensor& depth) {
  check_same_device(t, name, depth, "depth");
  check_same_dtype(t, name, depth, "depth");
  check_map(t, name, depth.size(0), depth.size(2), depth.size(3));
}

inline void check_plane(const Tensor& t, const char* name, int64_t B,
                        int64_t H, int64_t W) {
  DESC_CHECK(t.dim() == 3 && t.size(0) == B && t.size(1) == H &&
                 t.size(2) == W,
             name, " must have shape [", B, ", ", H, ", ", W, "], got ",
             describe(t));
}

// A reduction over no pixels has no value (docs/ops.md §0).
inline void check_not_empty(const Tensor& depth, const std::string& reduction) {
  DESC_CHECK(reduction == "none" || depth.numel() > 0, "depth is empty (", describe(depth),
             "): reduction '", reduction, "' needs pixels");
}

// The incoming gradient of a reduced loss: one element on the device of `like`.
inline void check_scalar_grad(const Tensor& grad, const Tensor& like) {
  check_same_device(grad, "grad", like, "depth");
  DESC_CHECK(grad.numel() == 1, "grad of a reduced loss must have one element, got ", describe(grad));
}

// The incoming gradient of a loss of `reduction`: a map like `depth` for
// "none", else one element.
inline void check_grad(const Tensor& grad, const Tensor& depth, const std::string& reduction) {
  if (reduction != "none") return check_scalar_grad(grad, depth);
  check_same_device(grad, "grad", depth, "depth");
  check_floating(grad, "grad");
  check_map(grad, "grad", depth.size(0), depth.size(2), depth.size(3));
}

// The normaliser a forward returned: one element of the accumulation dtype.
inline void check_norm(const Tensor& norm, const Tensor& depth) {
  check_same_device(norm, "norm", depth, "depth");
  const auto acc = opmath_dtype(depth.scalar_type());
  DESC_CHECK(norm.numel() == 1 && norm.scalar_type() == acc, "norm must be one ", dtype_name(acc),
             " element (the forward's output), got ", describe(norm));
}

inline void check_reduction(const std::string& reduction, bool allow_none) {
  DESC_CHECK(reduction == "mean" || reduction == "sum" ||
                 (allow_none && reduction == "none"),
             "reduction must be ", allow_none ? "'none', " : "",
             "'mean' or 'sum', got '", reduction, "'");
}

}  // namespace desc_ops
