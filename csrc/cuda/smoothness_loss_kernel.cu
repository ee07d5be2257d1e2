// smoothness_loss and its backward on the GPU (docs/ops.md §5). Forward: one thread
// per pixel adds its right and lower terms to per-block partials; backward:
// one thread per pixel recomputes the (at most four) weights it touches.
#include "../desc_math.h"
#include "../smoothness_loss_checks.h"
#include "cuda_utils.cuh"

namespace desc_ops {
namespace cuda {
namespace {

// Edge-aware weight between pixel p and p + offset of one image (plane stride HW).
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ acc_t weight_between(const scalar_t* __restrict__ img, int64_t C, int64_t HW, int64_t p,
                                                int64_t offset) {
  acc_t s = 0;
  for (int64_t c = 0; c < C; ++c) {
    s += math::abs_(static_cast<acc_t>(img[c * HW + p]) - static_cast<acc_t>(img[c * HW + p + offset]));
  }
  return math::edge_aware_weight<acc_t>(s, C);
}

// The terms of pixel i (b, p = (y, x)) to its right and below, 0 past the
// last column or row: |dx| wx and |dy| wy.
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ void pixel_terms(const scalar_t* __restrict__ depth, const scalar_t* __restrict__ img,
                                            int64_t C, int64_t H, int64_t W, int64_t i, int64_t p, acc_t& tx,
                                            acc_t& ty) {
  const int64_t HW = H * W, y = p / W, x = p % W;
  const acc_t d = static_cast<acc_t>(depth[i]);
  tx = x + 1 < W ? math::abs_(d - static_cast<acc_t>(depth[i + 1])) * weight_between<scalar_t, acc_t>(img, C, HW, p, 1)
                 : acc_t(0);
  ty = y + 1 < H ? math::abs_(d - static_cast<acc_t>(depth[i + W])) * weight_between<scalar_t, acc_t>(img, C, HW, p, W)
                 : acc_t(0);
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads) smoothness_forward_kernel(const scalar_t* __restrict__ depth,
                                                                      const scalar_t* __restrict__ image, int64_t B,
                                                                      int64_t C, int64_t H, int64_t W,
                                                                      acc_t* __restrict__ partials) {
  const int64_t HW = H * W, n = B * HW;
  acc_t sx = 0, sy = 0;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * kThreads) {
    const int64_t b = i / HW, p = i % HW;
    acc_t tx, ty;
    pixel_terms<scalar_t, acc_t>(depth, image + b * C * HW, C, H, W, i, p, tx, ty);
    sx += tx;
    sy += ty;
  }
  block_sum2<kThreads>(sx, sy);
  if (threadIdx.x == 0) {
    partials[2 * blockIdx.x] = sx;
    partials[2 * blockIdx.x + 1] = sy;
  }
}

// reduction "none": each pixel's own terms, |dx| wx + |dy| wy (0 past the
// last column or row).
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads) smoothness_map_kernel(const scalar_t* __restrict__ depth,
                                                                  const scalar_t* __restrict__ image, int64_t B,
                                                                  int64_t C, int64_t H, int64_t W,
                                                                  scalar_t* __restrict__ map) {
  const int64_t HW = H * W, n = B * HW;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * kThreads) {
    const int64_t b = i / HW, p = i % HW;
    acc_t tx, ty;
    pixel_terms<scalar_t, acc_t>(depth, image + b * C * HW, C, H, W, i, p, tx, ty);
    map[i] = static_cast<scalar_t>(tx + ty);
  }
}

// The gradient for an upstream scalar (the mean: grad[0] times ax or ay) or,
// with `per_pixel`, an upstream map (each term takes the gradient of the pixel
// it belongs to; ax = ay = 1).
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads) smoothness_backward_kernel(const scalar_t* __restrict__ grad,
                                                                       bool per_pixel,
                                                                       const scalar_t* __restrict__ depth,
                                                                       const scalar_t* __restrict__ image, int64_t B,
                                                                       int64_t C, int64_t H, int64_t W, acc_t ax,
                                                                       acc_t ay, scalar_t* __restrict__ grad_depth) {
  const int64_t HW = H * W, n = B * HW;
  const acc_t g = per_pixel ? acc_t(0) : static_cast<acc_t>(grad[0]);
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * kThreads) {
    const int64_t b = i / HW, p = i % HW, y = p / W, x = p % W;
    const scalar_t* img = image + b * C * HW;
    const acc_t dc = static_cast<acc_t>(depth[i]);
    // The upstream gradient of the terms of pixel j.
    const auto g_of = [&](int64_t j) { return per_pixel ? static_cast<acc_t>(grad[j]) : g; };
    acc_t v = 0;
    if (x + 1 < W) {
      v += g_of(i) * ax * weight_between<scalar_t, acc_t>(img, C, HW, p, 1) *
           math::sign(dc - static_cast<acc_t>(depth[i + 1]));
    }
    if (x > 0) {
      v -= g_of(i - 1) * ax * weight_between<scalar_t, acc_t>(img, C, HW, p - 1, 1) *
           math::sign(static_cast<acc_t>(depth[i - 1]) - dc);
    }
    if (y + 1 < H) {
      v += g_of(i) * ay * weight_between<scalar_t, acc_t>(img, C, HW, p, W) *
           math::sign(dc - static_cast<acc_t>(depth[i + W]));
    }
    if (y > 0) {
      v -= g_of(i - W) * ay * weight_between<scalar_t, acc_t>(img, C, HW, p - W, W) *
           math::sign(static_cast<acc_t>(depth[i - W]) - dc);
    }
    grad_depth[i] = static_cast<scalar_t>(v);
  }
}

Tensor smoothness_loss_cuda(const Tensor& depth_in, const Tensor& image_in, const std::string& reduction) {
  check_smoothness_args(depth_in, image_in, reduction);
  const DeviceGuard guard(depth_in.get_device_index());
  const Tensor depth = as_contiguous(depth_in), image = as_contiguous(image_in);
  const int64_t B = depth.size(0), C = image.size(1), H = depth.size(2), W = depth.size(3);
  if (reduction == "none") {
    Tensor map = empty_as(depth);
    if (depth.numel() == 0) return map;
    DESC_DISPATCH_FLOATING(depth.scalar_type(), "smoothness_loss_cuda", [&] {
      smoothness_map_kernel<scalar_t, opmath_t<scalar_t>><<<grid_for(depth.numel()), kThreads, 0, stream()>>>(
          depth.const_data_ptr<scalar_t>(), image.const_data_ptr<scalar_t>(), B, C, H, W,
          map.mutable_data_ptr<scalar_t>());
      STD_CUDA_KERNEL_LAUNCH_CHECK();
    });
    return map;
  }
  Tensor loss = empty({}, depth.scalar_type(), depth.device());
  const int64_t blocks = grid_for(depth.numel());
  DESC_DISPATCH_FLOATING(depth.scalar_type(), "smoothness_loss_cuda", [&] {
    using acc_t = opmath_t<scalar_t>;
    const ScalarType acc_dtype = opmath_dtype(depth.scalar_type());
    const Tensor partials = empty({blocks, 2}, acc_dtype, depth.device());
    const Tensor norm = empty({}, acc_dtype, depth.device());
    smoothness_forward_kernel<scalar_t, acc_t><<<blocks, kThreads, 0, stream()>>>(
        depth.const_data_ptr<scalar_t>(), image.const_data_ptr<scalar_t>(), B, C, H, W, partials.mutable_data_ptr<acc_t>());
    STD_CUDA_KERNEL_LAUNCH_CHECK();
    const auto [ax, ay] = smoothness_term_scales<acc_t>(B, H, W);
    launch_finish<scalar_t, acc_t>(partials, Finish::kScaled, loss, norm, ax, ay);
  });
  return loss;
}

Tensor smoothness_loss_backward_cuda(const Tensor& grad_in, const Tensor& depth_in, const Tensor& image_in,
                                     const std::string& reduction) {
  check_smoothness_backward_args(grad_in, depth_in, image_in, reduction);
  const DeviceGuard guard(depth_in.get_device_index());
  const Tensor depth = as_contiguous(depth_in), image = as_contiguous(image_in);
  const Tensor grad = as_contiguous(to_dtype(grad_in, depth.scalar_type()));
  const int64_t B = depth.size(0), C = image.size(1), H = depth.size(2), W = depth.size(3);
  Tensor grad_depth = empty_as(depth);
  if (depth.numel() == 0) return grad_depth;
  const bool per_pixel = reduction == "none";
  DESC_DISPATCH_FLOATING(depth.scalar_type(), "smoothness_backward_cuda", [&] {
    using acc_t = opmath_t<scalar_t>;
    const auto [ax, ay] = per_pixel ? std::pair<acc_t, acc_t>(1, 1) : smoothness_term_scales<acc_t>(B, H, W);
    smoothness_backward_kernel<scalar_t, acc_t><<<grid_for(depth.numel()), kThreads, 0, stream()>>>(
        grad.const_data_ptr<scalar_t>(), per_pixel, depth.const_data_ptr<scalar_t>(),
        image.const_data_ptr<scalar_t>(), B, C, H, W, ax, ay, grad_depth.mutable_data_ptr<scalar_t>());
    STD_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return grad_depth;
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(desc_ops, CUDA, m) {
  m.impl("smoothness_loss", TORCH_BOX(&smoothness_loss_cuda));
  m.impl("_smoothness_loss_backward", TORCH_BOX(&smoothness_loss_backward_cuda));
}

}  // namespace cuda
}  // namespace desc_ops
