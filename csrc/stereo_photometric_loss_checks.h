// Argument checks and normalisers of stereo_photometric_loss (docs/ops.md §7),
// shared by the CPU and CUDA kernels.
#pragma once

#include <string>

#include "checks.h"

namespace desc_ops {

inline void check_stereo_args(const Tensor& depth, const Tensor& image, const Tensor& image_other,
                              const Tensor& focal_baseline, double alpha, const std::string& ssim,
                              const std::string& reduction) {
  check_reduction(reduction, /*allow_none=*/true);
  DESC_CHECK(ssim == "valid" || ssim == "reflect", "ssim must be 'valid' or 'reflect', got '", ssim, "'");
  DESC_CHECK(alpha >= 0.0 && alpha <= 1.0, "alpha must be in [0, 1], got ", alpha);
  check_depth(depth);
  const int64_t B = depth.size(0), H = depth.size(2), W = depth.size(3);
  const auto check_image = [&](const Tensor& t, const char* name) {
    check_same_device(t, name, depth, "depth");
    check_same_dtype(t, name, depth, "depth");
    DESC_CHECK(t.dim() == 4 && t.size(0) == B && t.size(1) >= 1 && t.size(2) == H && t.size(3) == W, name,
               " must have shape [", B, ", C, ", H, ", ", W, "], got ", describe(t));
  };
  check_image(image, "image");
  check_image(image_other, "image_other");
  DESC_CHECK(image_other.size(1) == image.size(1), "image_other must have shape [", B, ", ", image.size(1), ", ", H,
             ", ", W, "] like image, got ", describe(image_other));
  check_same_device(focal_baseline, "focal_baseline", depth, "depth");
  const auto acc = opmath_dtype(depth.scalar_type());
  DESC_CHECK(focal_baseline.dim() == 1 && focal_baseline.size(0) == B && focal_baseline.scalar_type() == acc,
             "focal_baseline must be a [", B, "] tensor of dtype ", dtype_name(acc), ", got ",
             describe(focal_baseline));
  const int64_t least = ssim == "valid" ? 3 : 2;
  DESC_CHECK(B == 0 || (H >= least && W >= least), "ssim='", ssim, "' needs H and W of at least ", least,
             ", got depth of ", describe(depth));
  check_not_empty(depth, reduction);
}

// The inputs checked and made contiguous once, for the CPU and CUDA kernels,
// forward and backward.
struct StereoArgs {
  Tensor depth, image, other, focal_baseline;
  int64_t B = 0, C = 0, H = 0, W = 0;
  bool reflect = false;  // ssim == "reflect"
  bool none = false;     // reduction == "none"
};

inline StereoArgs make_stereo_args(const Tensor& depth, const Tensor& image, const Tensor& image_other,
                                   const Tensor& focal_baseline, double alpha, const std::string& ssim,
                                   const std::string& reduction) {
  check_stereo_args(depth, image, image_other, focal_baseline, alpha, ssim, reduction);
  StereoArgs a;
  a.depth = as_contiguous(depth);
  a.image = as_contiguous(image);
  a.other = as_contiguous(image_other);
  a.focal_baseline = as_contiguous(focal_baseline);
  a.B = depth.size(0);
  a.C = image.size(1);
  a.H = depth.size(2);
  a.W = depth.size(3);
  a.reflect = ssim == "reflect";
  a.none = reduction == "none";
  return a;
}

// The backward's inputs: those of the forward, then the incoming gradient.
inline StereoArgs make_stereo_backward_args(const Tensor& grad, const Tensor& depth, const Tensor& image,
                                            const Tensor& image_other, const Tensor& focal_baseline, double alpha,
                                            const std::string& ssim, const std::string& reduction) {
  StereoArgs a = make_stereo_args(depth, image, image_other, focal_baseline, alpha, ssim, reduction);
  check_grad(grad, depth, reduction);
  return a;
}

// How a reduction weighs the two terms: loss = ssim_scale * sum_{c,q} s +
// l1_scale * sum_{c,p} |image - warped|. "mean": each term's own mean; "sum"
// and "none": the map's alpha mean_c s + (1 - alpha) mean_c |.| (summed for
// "sum").
template <typename acc_t>
struct StereoScales {
  acc_t ssim, l1;
};

template <typename acc_t>
StereoScales<acc_t> stereo_scales(int64_t B, int64_t C, int64_t H, int64_t W, double alpha, bool reflect,
                                  const std::string& reduction) {
  const double a = alpha, C_ = static_cast<double>(C);
  if (reduction != "mean") return {static_cast<acc_t>(a / C_), static_cast<acc_t>((1.0 - a) / C_)};
  const double n_ssim = reflect ? double(H) * W : double(H - 2) * (W - 2);
  return {static_cast<acc_t>(a / (B * C_ * n_ssim)), static_cast<acc_t>((1.0 - a) / (B * C_ * H * W))};
}

}  // namespace desc_ops
