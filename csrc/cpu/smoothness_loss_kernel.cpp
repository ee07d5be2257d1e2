// smoothness_loss and its backward on the CPU (docs/ops.md §5), one image row at a
// time in branch-free loops (vectorised; AVX2 for float where available). The
// backward recomputes the edge-aware weights from the image instead of saving
// two maps of them: one extra read of the image against two saved maps.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "../desc_math.h"
#include "../smoothness_loss_checks.h"
#include "simd.h"

namespace desc_ops {
namespace cpu {
namespace {

// w[i] = exp(-mean_c |I_c(p + i) - I_c(p + i + offset)|) for n pixels from p
// of a (C, H, W) image with plane stride HW.
template <typename scalar_t, typename acc_t>
DESC_OPS_ALWAYS_INLINE void edge_weights(const scalar_t* image, int64_t C, int64_t HW, int64_t offset, int64_t n,
                                         acc_t* __restrict__ w) {
  for (int64_t i = 0; i < n; ++i) w[i] = acc_t(0);
  for (int64_t c = 0; c < C; ++c) {
    const scalar_t* p = image + c * HW;
    for (int64_t i = 0; i < n; ++i) w[i] += math::abs_(static_cast<acc_t>(p[i]) - static_cast<acc_t>(p[i + offset]));
  }
  for (int64_t i = 0; i < n; ++i) w[i] = math::edge_aware_weight(w[i], C);
}

// One row's sums of |dx| wx (x < W-1) and, if `down`, of |dy| wy.
template <typename scalar_t, typename acc_t>
DESC_OPS_ALWAYS_INLINE void forward_row_body(const scalar_t* d, const scalar_t* img, int64_t C, int64_t HW, int64_t W,
                                             bool down, acc_t* __restrict__ w, acc_t* __restrict__ t, acc_t* sx,
                                             acc_t* sy) {
  edge_weights(img, C, HW, 1, W - 1, w);
  for (int64_t x = 0; x + 1 < W; ++x) {
    t[x] = math::abs_(static_cast<acc_t>(d[x]) - static_cast<acc_t>(d[x + 1])) * w[x];
  }
  *sx = lane_sum(t, W - 1);
  *sy = 0;
  if (!down) return;
  edge_weights(img, C, HW, W, W, w);
  for (int64_t x = 0; x < W; ++x) t[x] = math::abs_(static_cast<acc_t>(d[x]) - static_cast<acc_t>(d[x + W])) * w[x];
  *sy = lane_sum(t, W);
}

// One row of the gradient. With the signed weighted differences to the right
// (tx, padded with a 0 at both ends), below (td) and above (tu), a pixel's
// gradient is gx (tx[x+1] - tx[x]) + gy (td[x] - tu[x]).
template <typename scalar_t, typename acc_t>
DESC_OPS_ALWAYS_INLINE void backward_row_body(const scalar_t* d, const scalar_t* img, int64_t C, int64_t HW,
                                              int64_t W, bool up, bool down, acc_t gx, acc_t gy,
                                              acc_t* __restrict__ w, acc_t* __restrict__ tx, acc_t* __restrict__ td,
                                              acc_t* __restrict__ tu, scalar_t* __restrict__ out) {
  edge_weights(img, C, HW, 1, W - 1, w);
  tx[0] = tx[W] = acc_t(0);
  for (int64_t x = 0; x + 1 < W; ++x) {
    tx[x + 1] = w[x] * math::sign(static_cast<acc_t>(d[x]) - static_cast<acc_t>(d[x + 1]));
  }
  for (int64_t x = 0; x < W; ++x) td[x] = tu[x] = acc_t(0);
  if (down) {
    edge_weights(img, C, HW, W, W, w);
    for (int64_t x = 0; x < W; ++x) td[x] = w[x] * math::sign(static_cast<acc_t>(d[x]) - static_cast<acc_t>(d[x + W]));
  }
  if (up) {
    edge_weights(img - W, C, HW, W, W, w);
    for (int64_t x = 0; x < W; ++x) tu[x] = w[x] * math::sign(static_cast<acc_t>(d[x - W]) - static_cast<acc_t>(d[x]));
  }
  for (int64_t x = 0; x < W; ++x) out[x] = static_cast<scalar_t>(gx * (tx[x + 1] - tx[x]) + gy * (td[x] - tu[x]));
}

#ifdef DESC_OPS_HAS_AVX2_DISPATCH
DESC_OPS_AVX2 void forward_row_avx2(const float* d, const float* img, int64_t C, int64_t HW, int64_t W, bool down,
                                    float* w, float* t, float* sx, float* sy) {
  forward_row_body(d, img, C, HW, W, down, w, t, sx, sy);
}
DESC_OPS_AVX2 void backward_row_avx2(const float* d, const float* img, int64_t C, int64_t HW, int64_t W, bool up,
                                     bool down, float gx, float gy, float* w, float* tx, float* td, float* tu,
                                     float* out) {
  backward_row_body(d, img, C, HW, W, up, down, gx, gy, w, tx, td, tu, out);
}
#endif

template <typename scalar_t, typename acc_t>
void forward_row(const scalar_t* d, const scalar_t* img, int64_t C, int64_t HW, int64_t W, bool down, acc_t* w,
                 acc_t* t, acc_t* sx, acc_t* sy) {
#ifdef DESC_OPS_HAS_AVX2_DISPATCH
  if constexpr (std::is_same_v<scalar_t, float>) {
    if (cpu_has_avx2()) return forward_row_avx2(d, img, C, HW, W, down, w, t, sx, sy);
  }
#endif
  forward_row_body(d, img, C, HW, W, down, w, t, sx, sy);
}

template <typename scalar_t, typename acc_t>
void backward_row(const scalar_t* d, const scalar_t* img, int64_t C, int64_t HW, int64_t W, bool up, bool down,
                  acc_t gx, acc_t gy, acc_t* w, acc_t* tx, acc_t* td, acc_t* tu, scalar_t* out) {
#ifdef DESC_OPS_HAS_AVX2_DISPATCH
  if constexpr (std::is_same_v<scalar_t, float>) {
    if (cpu_has_avx2()) return backward_row_avx2(d, img, C, HW, W, up, down, gx, gy, w, tx, td, tu, out);
  }
#endif
  backward_row_body(d, img, C, HW, W, up, down, gx, gy, w, tx, td, tu, out);
}

at::Tensor smoothness_loss_cpu(const at::Tensor& depth_in, const at::Tensor& image_in) {
  check_smoothness_args(depth_in, image_in);
  const at::Tensor depth = depth_in.contiguous();
  const at::Tensor image = image_in.contiguous();
  const int64_t B = depth.size(0), C = image.size(1), H = depth.size(2), W = depth.size(3);
  at::Tensor loss = at::empty({}, depth.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, depth.scalar_type(), "smoothness_loss", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* d_p = depth.data_ptr<scalar_t>();
    const scalar_t* i_p = image.data_ptr<scalar_t>();
    // Row partials added in row order: the sum does not depend on the threads.
    std::vector<acc_t> partial_x(B * H, acc_t(0)), partial_y(B * H, acc_t(0));
    at::parallel_for(0, B * H, std::max<int64_t>(1, 8192 / W), [&](int64_t begin, int64_t end) {
      std::vector<acc_t> w(W), t(W);
      for (int64_t r = begin; r < end; ++r) {
        const int64_t b = r / H, y = r % H;
        forward_row(d_p + r * W, i_p + b * C * H * W + y * W, C, H * W, W, y + 1 < H, w.data(), t.data(),
                    &partial_x[r], &partial_y[r]);
      }
    });
    acc_t sx = 0, sy = 0;
    for (int64_t r = 0; r < B * H; ++r) {
      sx += partial_x[r];
      sy += partial_y[r];
    }
    const auto [ax, ay] = smoothness_term_scales<acc_t>(B, H, W);
    loss.fill_(sx * ax + sy * ay);
  });
  return loss;
}

at::Tensor smoothness_loss_backward_cpu(const at::Tensor& grad, const at::Tensor& depth_in,
                                        const at::Tensor& image_in) {
  check_smoothness_backward_args(grad, depth_in, image_in);
  const at::Tensor depth = depth_in.contiguous();
  const at::Tensor image = image_in.contiguous();
  const int64_t B = depth.size(0), C = image.size(1), H = depth.size(2), W = depth.size(3);
  at::Tensor grad_depth = at::empty_like(depth);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, depth.scalar_type(), "smoothness_loss_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const acc_t g = static_cast<acc_t>(grad.item<double>());
    const auto [ax, ay] = smoothness_term_scales<acc_t>(B, H, W);
    const acc_t gx = g * ax, gy = g * ay;
    const scalar_t* d_p = depth.data_ptr<scalar_t>();
    const scalar_t* i_p = image.data_ptr<scalar_t>();
    scalar_t* g_p = grad_depth.data_ptr<scalar_t>();
    at::parallel_for(0, B * H, std::max<int64_t>(1, 8192 / W), [&](int64_t begin, int64_t end) {
      std::vector<acc_t> w(W), tx(W + 1), td(W), tu(W);
      for (int64_t r = begin; r < end; ++r) {
        const int64_t b = r / H, y = r % H;
        backward_row(d_p + r * W, i_p + b * C * H * W + y * W, C, H * W, W, y > 0, y + 1 < H, gx, gy, w.data(),
                     tx.data(), td.data(), tu.data(), g_p + r * W);
      }
    });
  });
  return grad_depth;
}

}  // namespace

TORCH_LIBRARY_IMPL(desc_ops, CPU, m) {
  m.impl("smoothness_loss", &smoothness_loss_cpu);
  m.impl("_smoothness_loss_backward", &smoothness_loss_backward_cpu);
}

}  // namespace cpu
}  // namespace desc_ops
