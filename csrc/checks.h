// Argument checks shared by the CPU and CUDA entry points. The Python layer
// validates first with friendlier messages; these guard memory safety for
// anyone calling torch.ops.desc_ops.* directly. TORCH_CHECK_VALUE raises a
// Python ValueError.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>

#include <string>

namespace desc_ops {

inline std::string describe(const at::Tensor& t) {
  std::string s = "shape [";
  for (int64_t i = 0; i < t.dim(); ++i) {
    if (i) s += ", ";
    s += std::to_string(t.size(i));
  }
  return s + "] and dtype " + std::string(c10::toString(t.scalar_type()));
}

inline void check_floating(const at::Tensor& t, const char* name) {
  TORCH_CHECK_VALUE(at::isFloatingType(t.scalar_type()), name,
                    " must be a floating tensor, got ", describe(t));
}

inline void check_index(const at::Tensor& t, const char* name) {
  TORCH_CHECK_VALUE(t.scalar_type() == at::kInt || t.scalar_type() == at::kLong,
                    name, " must be an int32 or int64 tensor, got ", describe(t));
}

inline void check_same_device(const at::Tensor& a, const char* a_name,
                              const at::Tensor& b, const char* b_name) {
  TORCH_CHECK_VALUE(a.device() == b.device(), a_name, " is on ", a.device(),
                    " but ", b_name, " is on ", b.device());
}

inline void check_same_dtype(const at::Tensor& a, const char* a_name,
                             const at::Tensor& b, const char* b_name) {
  TORCH_CHECK_VALUE(a.scalar_type() == b.scalar_type(), a_name, " has dtype ",
                    a.scalar_type(), " but ", b_name, " has dtype ",
                    b.scalar_type());
}

// The dtype sums run in for a floating dtype (at::opmath_type, as a ScalarType).
inline at::ScalarType opmath_dtype(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

// A floating depth map (B, 1, H, W), the first argument of most operators.
inline void check_depth(const at::Tensor& t, const char* name = "depth") {
  check_floating(t, name);
  TORCH_CHECK_VALUE(t.dim() == 4 && t.size(1) == 1, name, " must have shape [B, 1, H, W], got ",
                    describe(t));
}

// A per-pixel map (B, 1, H, W) matching `like` (B, *, H, W) or (B, H, W).
inline void check_map(const at::Tensor& t, const char* name, int64_t B,
                      int64_t H, int64_t W) {
  TORCH_CHECK_VALUE(t.dim() == 4 && t.size(0) == B && t.size(1) == 1 &&
                        t.size(2) == H && t.size(3) == W,
                    name, " must have shape [", B, ", 1, ", H, ", ", W,
                    "], got ", describe(t));
}

// A map read pixel by pixel beside `depth`: its device, dtype and shape.
inline void check_map_like(const at::Tensor& t, const char* name, const at::Tensor& depth) {
  check_same_device(t, name, depth, "depth");
  check_same_dtype(t, name, depth, "depth");
  check_map(t, name, depth.size(0), depth.size(2), depth.size(3));
}

inline void check_plane(const at::Tensor& t, const char* name, int64_t B,
                        int64_t H, int64_t W) {
  TORCH_CHECK_VALUE(t.dim() == 3 && t.size(0) == B && t.size(1) == H &&
                        t.size(2) == W,
                    name, " must have shape [", B, ", ", H, ", ", W, "], got ",
                    describe(t));
}

// A reduction over no pixels has no value (docs/ops.md §0).
inline void check_not_empty(const at::Tensor& depth, const std::string& reduction) {
  TORCH_CHECK_VALUE(reduction == "none" || depth.numel() > 0, "depth is empty (", describe(depth),
                    "): reduction '", reduction, "' needs pixels");
}

// The incoming gradient of a reduced loss: one element on the device of `like`.
inline void check_scalar_grad(const at::Tensor& grad, const at::Tensor& like) {
  check_same_device(grad, "grad", like, "depth");
  TORCH_CHECK_VALUE(grad.numel() == 1, "grad of a reduced loss must have one element, got ", describe(grad));
}

// The normaliser a forward returned: one element of the accumulation dtype.
inline void check_norm(const at::Tensor& norm, const at::Tensor& depth) {
  check_same_device(norm, "norm", depth, "depth");
  const auto acc = opmath_dtype(depth.scalar_type());
  TORCH_CHECK_VALUE(norm.numel() == 1 && norm.scalar_type() == acc, "norm must be one ", c10::toString(acc),
                    " element (the forward's output), got ", describe(norm));
}

inline void check_reduction(const std::string& reduction, bool allow_none) {
  TORCH_CHECK_VALUE(reduction == "mean" || reduction == "sum" ||
                        (allow_none && reduction == "none"),
                    "reduction must be ", allow_none ? "'none', " : "",
                    "'mean' or 'sum', got '", reduction, "'");
}

}  // namespace desc_ops
