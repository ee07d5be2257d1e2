// smoothness_loss and its backward on the CPU (docs/ops.md §5), one image row at a
// time in branch-free loops (vectorised; AVX2 for float where available). The
// backward recomputes the edge-aware weights from the image instead of saving
// two maps of them: one extra read of the image against two saved maps.

#include <algorithm>
#include <string>
#include <vector>

#include "../desc_math.h"
#include "../smoothness_loss_checks.h"
#include "simd.h"

namespace desc_ops {
namespace cpu {
namespace {

// The edge-aware weights of n pixels from p to the pixels `offset` further
// on: w = exp(-mean_c |I_c(p) - I_c(p + offset)|) (math::edge_aware_weight),
// for a (C, H, W) image `img` with plane stride HW; `m` of the N lanes valid.
// kC > 0 is C known at compile time (the channel loop unrolled).
template <typename scalar_t, typename acc_t, int B, int kC>
DESC_OPS_ALWAYS_INLINE Vec<acc_t, B> edge_weights(const scalar_t* img, int64_t C_, int64_t HW, int64_t offset,
                                                  int64_t m) {
  constexpr int N = kLanes<acc_t, B>;
  const int64_t C = kC > 0 ? kC : C_;
  Vec<acc_t, B> a{};
  for (int64_t c = 0; c < C; ++c) {
    const scalar_t* p = img + c * HW;
    if (m == N) {
      a += vabs(vload<acc_t, B>(p) - vload<acc_t, B>(p + offset));
    } else {
      a += vabs(vload_part<acc_t, B>(p, m) - vload_part<acc_t, B>(p + offset, m));
    }
  }
  return math::edge_aware_weight<acc_t>(a, C);
}

template <typename scalar_t, int B, int kC, typename acc_t>
DESC_OPS_ALWAYS_INLINE void weighted_abs_sum_impl(const scalar_t* __restrict__ d, const scalar_t* __restrict__ img,
                                                  int64_t C, int64_t HW, int64_t offset, int64_t n, acc_t* out,
                                                  acc_t* __restrict__ t, Vec<acc_t, B> sum) {
  constexpr int N = kLanes<acc_t, B>;
  int64_t x = 0;
  for (; x + N <= n; x += N) {
    const Vec<acc_t, B> w = edge_weights<scalar_t, acc_t, B, kC>(img + x, C, HW, offset, N);
    const Vec<acc_t, B> diff = vload<acc_t, B>(d + x) - vload<acc_t, B>(d + x + offset);
    sum += vabs(diff) * w;
    if (t != nullptr) vstore(t + x, Vec<acc_t, B>(w * math::sign(diff)));
  }
  if (x < n) {
    const int64_t m = n - x;
    const Vec<acc_t, B> w = edge_weights<scalar_t, acc_t, B, kC>(img + x, C, HW, offset, m);
    const Vec<acc_t, B> diff = vload_part<acc_t, B>(d + x, m) - vload_part<acc_t, B>(d + x + offset, m);
    sum += vabs(diff) * w;
    if (t != nullptr) vstore_part(t + x, Vec<acc_t, B>(w * math::sign(diff)), m);
  }
  *out = lane_reduce(sum);
}

// Sum over x < n of |d(x) - d(x + offset)| w(x), in lanes (simd.h); with
// `t`, also t(x) = w(x) sign(d(x) - d(x + offset)), what the gradient needs.
template <typename scalar_t, int B, typename acc_t = opmath_t<scalar_t>>
DESC_OPS_ALWAYS_INLINE void weighted_abs_sum_body(const scalar_t* __restrict__ d, const scalar_t* __restrict__ img,
                                                  int64_t C, int64_t HW, int64_t offset, int64_t n, acc_t* out,
                                                  acc_t* __restrict__ t) {
  const Vec<acc_t, B> zero{};
  if (C == 3) return weighted_abs_sum_impl<scalar_t, B, 3>(d, img, C, HW, offset, n, out, t, zero);  // RGB
  if (C == 1) return weighted_abs_sum_impl<scalar_t, B, 1>(d, img, C, HW, offset, n, out, t, zero);
  weighted_abs_sum_impl<scalar_t, B, 0>(d, img, C, HW, offset, n, out, t, zero);
}
DESC_OPS_ISA_VARIANTS(weighted_abs_sum, weighted_abs_sum_body,
                      (const scalar_t* d, const scalar_t* img, int64_t C, int64_t HW, int64_t offset, int64_t n,
                       acc_t* out, acc_t* t),
                      (d, img, C, HW, offset, n, out, t))

// Both terms of one row in one pass (the pixels at x are loaded once for
// the neighbour to the right and the one below): sx = sum_x<W-1 |dx| wx and,
// if the row has rows below it in its image, sy = sum_x<W |dy| wy, with the
// same lanes as weighted_abs_sum (so the same bits); with tx / td, also the
// signed terms w sign(d).
template <typename scalar_t, int B, int kC, typename acc_t>
DESC_OPS_ALWAYS_INLINE void row_terms_impl(const scalar_t* __restrict__ d, const scalar_t* __restrict__ img,
                                           int64_t C, int64_t HW, int64_t W, int64_t rows_below, acc_t* sx,
                                           acc_t* sy, acc_t* __restrict__ tx, acc_t* __restrict__ td) {
  constexpr int N = kLanes<acc_t, B>;
  if (rows_below == 0) {
    weighted_abs_sum_impl<scalar_t, B, kC>(d, img, C, HW, 1, W - 1, sx, tx, Vec<acc_t, B>{});
    *sy = acc_t(0);
    return;
  }
  Vec<acc_t, B> sum_x{}, sum_y{};
  // The row below is in the cache (it was read a row ago as the row itself
  // was): the next row's pass reads the one after it from memory, fetched
  // here a row early so that its four streams (three channels and depth)
  // do not stall that pass (12-18% of the forward at 8x384x1280 on a
  // 2-core AVX-512 machine; with it the pass runs at the speed of its
  // arithmetic, two exps per pixel).
  const bool fetch = rows_below >= 2;
  int64_t x = 0;
  for (; x + N <= W - 1; x += N) {
    if (fetch) {
      for (int64_t c = 0; c < (kC > 0 ? kC : C); ++c) __builtin_prefetch(img + c * HW + 2 * W + x);
      __builtin_prefetch(d + 2 * W + x);
    }
    const Vec<acc_t, B> wx = edge_weights<scalar_t, acc_t, B, kC>(img + x, C, HW, 1, N);
    const Vec<acc_t, B> wy = edge_weights<scalar_t, acc_t, B, kC>(img + x, C, HW, W, N);
    const Vec<acc_t, B> here = vload<acc_t, B>(d + x);
    const Vec<acc_t, B> dx = here - vload<acc_t, B>(d + x + 1);
    const Vec<acc_t, B> dy = here - vload<acc_t, B>(d + x + W);
    sum_x += vabs(dx) * wx;
    sum_y += vabs(dy) * wy;
    if (tx != nullptr) {
      vstore(tx + x, Vec<acc_t, B>(wx * math::sign(dx)));
      vstore(td + x, Vec<acc_t, B>(wy * math::sign(dy)));
    }
  }
  // The rest (fewer than N + 1 pixels) term by term, the lanes continuing.
  acc_t rx, ry;
  weighted_abs_sum_impl<scalar_t, B, kC>(d + x, img + x, C, HW, 1, W - 1 - x, &rx, tx != nullptr ? tx + x : nullptr,
                                         sum_x);
  weighted_abs_sum_impl<scalar_t, B, kC>(d + x, img + x, C, HW, W, W - x, &ry, td != nullptr ? td + x : nullptr,
                                         sum_y);
  *sx = rx;
  *sy = ry;
}

template <typename scalar_t, int B, typename acc_t = opmath_t<scalar_t>>
DESC_OPS_ALWAYS_INLINE void row_terms_body(const scalar_t* d, const scalar_t* img, int64_t C, int64_t HW, int64_t W,
                                           int64_t rows_below, acc_t* sx, acc_t* sy, acc_t* tx, acc_t* td) {
  if (C == 3) return row_terms_impl<scalar_t, B, 3>(d, img, C, HW, W, rows_below, sx, sy, tx, td);
  if (C == 1) return row_terms_impl<scalar_t, B, 1>(d, img, C, HW, W, rows_below, sx, sy, tx, td);
  row_terms_impl<scalar_t, B, 0>(d, img, C, HW, W, rows_below, sx, sy, tx, td);
}
DESC_OPS_ISA_VARIANTS(row_terms, row_terms_body,
                      (const scalar_t* d, const scalar_t* img, int64_t C, int64_t HW, int64_t W, int64_t rows_below,
                       acc_t* sx, acc_t* sy, acc_t* tx, acc_t* td),
                      (d, img, C, HW, W, rows_below, sx, sy, tx, td))

// t(x) = w(x) sign(d(x) - d(x + offset)) for x < n.
template <typename scalar_t, typename acc_t>
void signed_weights(const scalar_t* d, const scalar_t* img, int64_t C, int64_t HW, int64_t offset, int64_t n,
                    acc_t* t) {
  acc_t unused;
  weighted_abs_sum<scalar_t>(d, img, C, HW, offset, n, &unused, t);
}

// out = g u, rounded to scalar_t, for n elements of the saved unit gradient.
template <typename scalar_t, int B, typename acc_t = opmath_t<scalar_t>>
DESC_OPS_ALWAYS_INLINE void scale_body(const acc_t* __restrict__ u, acc_t g, int64_t n, scalar_t* __restrict__ out) {
  constexpr int N = kLanes<acc_t, B>;
  int64_t i = 0;
  for (; i + N <= n; i += N) vstore(out + i, Vec<acc_t, B>(g * vload<acc_t, B>(u + i)));
  if (i < n) vstore_part(out + i, Vec<acc_t, B>(g * vload_part<acc_t, B>(u + i, n - i)), n - i);
}
DESC_OPS_ISA_VARIANTS(scale_unit_grad, scale_body, (const acc_t* u, acc_t g, int64_t n, scalar_t* out),
                      (u, g, n, out))

// One row of the gradient from the signed weighted differences to the right
// (tx, W + 1 long with a 0 at both ends), below (td) and above (tu):
// gx (tx[x+1] - tx[x]) + gy (td[x] - tu[x]).
template <typename scalar_t, int B, typename acc_t = opmath_t<scalar_t>>
DESC_OPS_ALWAYS_INLINE void grad_row_body(const acc_t* __restrict__ tx, const acc_t* __restrict__ td,
                                          const acc_t* __restrict__ tu, acc_t gx, acc_t gy, int64_t W,
                                          scalar_t* __restrict__ out) {
  constexpr int N = kLanes<acc_t, B>;
  int64_t x = 0;
  for (; x + N <= W; x += N) {
    const Vec<acc_t, B> g = gx * (vload<acc_t, B>(tx + x + 1) - vload<acc_t, B>(tx + x)) +
                         gy * (vload<acc_t, B>(td + x) - vload<acc_t, B>(tu + x));
    vstore<scalar_t>(out + x, g);
  }
  if (x < W) {
    const int64_t m = W - x;
    const Vec<acc_t, B> g = gx * (vload_part<acc_t, B>(tx + x + 1, m) - vload_part<acc_t, B>(tx + x, m)) +
                         gy * (vload_part<acc_t, B>(td + x, m) - vload_part<acc_t, B>(tu + x, m));
    vstore_part<scalar_t>(out + x, g, m);
  }
}
DESC_OPS_ISA_VARIANTS(grad_row, grad_row_body,
                      (const acc_t* tx, const acc_t* td, const acc_t* tu, acc_t gx, acc_t gy, int64_t W, scalar_t* out),
                      (tx, td, tu, gx, gy, W, out))

// The signed weighted differences of row r (b, y): tx[x + 1] = wx sign(dx) for
// x < W - 1 (tx[0] = tx[W] = 0) and td[x] = wy sign(dy) (0 on the last row).
template <typename scalar_t, typename acc_t>
void row_signed_terms(const scalar_t* d, const scalar_t* img, int64_t C, int64_t H, int64_t W, int64_t y, acc_t* tx,
                      acc_t* td) {
  acc_t unused_x, unused_y;
  tx[0] = tx[W] = acc_t(0);
  row_terms<scalar_t>(d, img, C, H * W, W, H - 1 - y, &unused_x, &unused_y, tx + 1, td);
  if (y + 1 == H) std::fill(td, td + W, acc_t(0));
}

// reduction "none": the map of every pixel's terms, |dx| wx + |dy| wy (each
// 0 past the last column or row), as (wx sign(dx)) dx + (wy sign(dy)) dy.
Tensor smoothness_map_cpu(const Tensor& depth, const Tensor& image) {
  const int64_t B = depth.size(0), C = image.size(1), H = depth.size(2), W = depth.size(3);
  Tensor map = empty_as(depth);
  if (depth.numel() == 0) return map;
  DESC_DISPATCH_FLOATING(depth.scalar_type(), "smoothness_loss", [&] {
    using acc_t = opmath_t<scalar_t>;
    const scalar_t* d_p = depth.const_data_ptr<scalar_t>();
    const scalar_t* i_p = image.const_data_ptr<scalar_t>();
    scalar_t* m_p = map.mutable_data_ptr<scalar_t>();
    torch::stable::parallel_for(0, B * H, std::max<int64_t>(1, 8192 / W), [&](int64_t begin, int64_t end) {
      std::vector<acc_t> tx(W + 1), td(W);
      for (int64_t r = begin; r < end; ++r) {
        const int64_t b = r / H, y = r % H;
        const scalar_t* d = d_p + r * W;
        row_signed_terms<scalar_t>(d, i_p + b * C * H * W + y * W, C, H, W, y, tx.data(), td.data());
        for (int64_t x = 0; x < W; ++x) {
          const acc_t here = static_cast<acc_t>(d[x]);
          const acc_t right = x + 1 < W ? here - static_cast<acc_t>(d[x + 1]) : acc_t(0);
          const acc_t down = y + 1 < H ? here - static_cast<acc_t>(d[x + W]) : acc_t(0);
          m_p[r * W + x] = static_cast<scalar_t>(tx[x + 1] * right + td[x] * down);
        }
      }
    });
  });
  return map;
}

// Its backward for an upstream map g: g(p) (wx sign(dx))(p) - g(p - x)(...)(p - x)
// + g(p) (wy sign(dy))(p) - g(p - y)(...)(p - y), terms past the borders dropped.
Tensor smoothness_map_backward_cpu(const Tensor& grad_in, const Tensor& depth, const Tensor& image) {
  const int64_t B = depth.size(0), C = image.size(1), H = depth.size(2), W = depth.size(3);
  Tensor grad_depth = empty_as(depth);
  if (depth.numel() == 0) return grad_depth;
  const Tensor grad = as_contiguous(to_dtype(grad_in, depth.scalar_type()));
  DESC_DISPATCH_FLOATING(depth.scalar_type(), "smoothness_loss_backward", [&] {
    using acc_t = opmath_t<scalar_t>;
    const scalar_t* d_p = depth.const_data_ptr<scalar_t>();
    const scalar_t* i_p = image.const_data_ptr<scalar_t>();
    const scalar_t* g_p = grad.const_data_ptr<scalar_t>();
    scalar_t* out_p = grad_depth.mutable_data_ptr<scalar_t>();
    torch::stable::parallel_for(0, B * H, std::max<int64_t>(1, 8192 / W), [&](int64_t begin, int64_t end) {
      // The terms to the row below are those from the row above for the
      // next row: carried, except at the chunk's first row (as the mean's backward).
      std::vector<acc_t> tx(W + 1), below(W), above(W);
      acc_t* td = below.data();
      acc_t* tu = above.data();
      const int64_t HW = H * W;
      for (int64_t r = begin; r < end; ++r) {
        const int64_t b = r / H, y = r % H;
        const scalar_t* d = d_p + r * W;
        const scalar_t* img = i_p + b * C * HW + y * W;
        if (y > 0 && r == begin) signed_weights<scalar_t>(d - W, img - W, C, HW, W, W, tu);
        row_signed_terms<scalar_t>(d, img, C, H, W, y, tx.data(), td);
        const scalar_t* g = g_p + r * W;
        for (int64_t x = 0; x < W; ++x) {
          acc_t v = static_cast<acc_t>(g[x]) * (tx[x + 1] + td[x]);
          if (x > 0) v -= static_cast<acc_t>(g[x - 1]) * tx[x];
          if (y > 0) v -= static_cast<acc_t>(g[x - W]) * tu[x];
          out_p[r * W + x] = static_cast<scalar_t>(v);
        }
        std::swap(td, tu);
      }
    });
  });
  return grad_depth;
}

Tensor smoothness_loss_cpu(const Tensor& depth_in, const Tensor& image_in, const std::string& reduction) {
  check_smoothness_args(depth_in, image_in, reduction);
  const Tensor depth = as_contiguous(depth_in);
  const Tensor image = as_contiguous(image_in);
  if (reduction == "none") return smoothness_map_cpu(depth, image);
  const int64_t B = depth.size(0), C = image.size(1), H = depth.size(2), W = depth.size(3);
  Tensor loss = empty({}, depth.scalar_type(), depth.device());
  DESC_DISPATCH_FLOATING(depth.scalar_type(), "smoothness_loss", [&] {
    using acc_t = opmath_t<scalar_t>;
    const scalar_t* d_p = depth.const_data_ptr<scalar_t>();
    const scalar_t* i_p = image.const_data_ptr<scalar_t>();
    // Row partials added in row order: the sum does not depend on the threads.
    std::vector<acc_t> partial_x(B * H, acc_t(0)), partial_y(B * H, acc_t(0));
    torch::stable::parallel_for(0, B * H, std::max<int64_t>(1, 8192 / W), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const int64_t b = r / H, y = r % H;
        const scalar_t* d = d_p + r * W;
        const scalar_t* img = i_p + b * C * H * W + y * W;
        row_terms<scalar_t>(d, img, C, H * W, W, H - 1 - y, &partial_x[r], &partial_y[r], static_cast<acc_t*>(nullptr),
                            static_cast<acc_t*>(nullptr));
      }
    });
    acc_t sx = 0, sy = 0;
    for (int64_t r = 0; r < B * H; ++r) {
      sx += partial_x[r];
      sy += partial_y[r];
    }
    const auto [ax, ay] = smoothness_term_scales<acc_t>(B, H, W);
    *loss.mutable_data_ptr<scalar_t>() = static_cast<scalar_t>(sx * ax + sy * ay);
  });
  return loss;
}

Tensor smoothness_loss_backward_cpu(const Tensor& grad, const Tensor& depth_in, const Tensor& image_in,
                                    const std::string& reduction) {
  check_smoothness_backward_args(grad, depth_in, image_in, reduction);
  const Tensor depth = as_contiguous(depth_in);
  const Tensor image = as_contiguous(image_in);
  if (reduction == "none") return smoothness_map_backward_cpu(grad, depth, image);
  const int64_t B = depth.size(0), C = image.size(1), H = depth.size(2), W = depth.size(3);
  Tensor grad_depth = empty_as(depth);
  DESC_DISPATCH_FLOATING(depth.scalar_type(), "smoothness_loss_backward", [&] {
    using acc_t = opmath_t<scalar_t>;
    const acc_t g = static_cast<acc_t>(item(grad));
    const auto [ax, ay] = smoothness_term_scales<acc_t>(B, H, W);
    const acc_t gx = g * ax, gy = g * ay;
    const scalar_t* d_p = depth.const_data_ptr<scalar_t>();
    const scalar_t* i_p = image.const_data_ptr<scalar_t>();
    scalar_t* g_p = grad_depth.mutable_data_ptr<scalar_t>();
    torch::stable::parallel_for(0, B * H, std::max<int64_t>(1, 8192 / W), [&](int64_t begin, int64_t end) {
      // The terms to the row below are those from the row above for the
      // next row: computed once and carried, except at the chunk's first row.
      std::vector<acc_t> tx(W + 1, acc_t(0)), below(W), above(W);
      acc_t* td = below.data();
      acc_t* tu = above.data();
      const int64_t HW = H * W;
      for (int64_t r = begin; r < end; ++r) {
        const int64_t b = r / H, y = r % H;
        const scalar_t* d = d_p + r * W;
        const scalar_t* img = i_p + b * C * HW + y * W;
        if (y == 0) {
          std::fill(tu, tu + W, acc_t(0));
        } else if (r == begin) {
          signed_weights<scalar_t>(d - W, img - W, C, HW, W, W, tu);
        }
        acc_t unused_x, unused_y;
        row_terms<scalar_t>(d, img, C, HW, W, H - 1 - y, &unused_x, &unused_y, tx.data() + 1, td);  // tx[0] = tx[W] = 0
        if (y + 1 == H) std::fill(td, td + W, acc_t(0));
        grad_row<scalar_t>(tx.data(), td, tu, gx, gy, W, g_p + r * W);
        std::swap(td, tu);
      }
    });
  });
  return grad_depth;
}

// The training forward: the loss as smoothness_loss_cpu (bit for bit) and
// the gradient for an upstream 1, in acc, (B, 1, H, W): u = ax (tx[x+1] -
// tx[x]) + ay (td[x] - tu[x]) from the weights and signs the loss computes
// anyway, so that the backward is one multiplication per pixel and never
// recomputes a weight. For an upstream g the backward returns g u; the
// recomputing backward returns (g ax) (...) + (g ay) (...), equal for g = 1.
std::tuple<Tensor, Tensor> smoothness_loss_train_cpu(const Tensor& depth_in, const Tensor& image_in) {
  check_smoothness_args(depth_in, image_in);
  const Tensor depth = as_contiguous(depth_in);
  const Tensor image = as_contiguous(image_in);
  const int64_t B = depth.size(0), C = image.size(1), H = depth.size(2), W = depth.size(3);
  Tensor loss = empty({}, depth.scalar_type(), depth.device());
  Tensor unit = empty_as(depth, opmath_dtype(depth.scalar_type()));
  DESC_DISPATCH_FLOATING(depth.scalar_type(), "smoothness_loss_train", [&] {
    using acc_t = opmath_t<scalar_t>;
    const scalar_t* d_p = depth.const_data_ptr<scalar_t>();
    const scalar_t* i_p = image.const_data_ptr<scalar_t>();
    acc_t* u_p = unit.mutable_data_ptr<acc_t>();
    const auto [ax, ay] = smoothness_term_scales<acc_t>(B, H, W);
    std::vector<acc_t> partial_x(B * H, acc_t(0)), partial_y(B * H, acc_t(0));
    torch::stable::parallel_for(0, B * H, std::max<int64_t>(1, 8192 / W), [&](int64_t begin, int64_t end) {
      std::vector<acc_t> tx(W + 1, acc_t(0)), below(W), above(W);
      acc_t* td = below.data();
      acc_t* tu = above.data();
      const int64_t HW = H * W;
      acc_t unused;
      for (int64_t r = begin; r < end; ++r) {
        const int64_t b = r / H, y = r % H;
        const scalar_t* d = d_p + r * W;
        const scalar_t* img = i_p + b * C * HW + y * W;
        if (y == 0) {
          std::fill(tu, tu + W, acc_t(0));
        } else if (r == begin) {
          weighted_abs_sum<scalar_t>(d - W, img - W, C, HW, W, W, &unused, tu);
        }
        row_terms<scalar_t>(d, img, C, HW, W, H - 1 - y, &partial_x[r], &partial_y[r], tx.data() + 1, td);
        if (y + 1 == H) std::fill(td, td + W, acc_t(0));
        grad_row<acc_t>(tx.data(), td, tu, ax, ay, W, u_p + r * W);
        std::swap(td, tu);
      }
    });
    acc_t sx = 0, sy = 0;
    for (int64_t r = 0; r < B * H; ++r) {
      sx += partial_x[r];
      sy += partial_y[r];
    }
    *loss.mutable_data_ptr<scalar_t>() = static_cast<scalar_t>(sx * ax + sy * ay);
  });
  return {loss, unit};
}

Tensor smoothness_loss_backward_saved_cpu(const Tensor& grad, const Tensor& unit_in,
                                              ScalarType dtype) {
  check_depth(unit_in, "unit_grad");
  check_scalar_grad(grad, unit_in);
  DESC_CHECK(is_floating(dtype) && unit_in.scalar_type() == opmath_dtype(dtype),
             "unit_grad must have the accumulation dtype of ", dtype_name(dtype), ", got ", describe(unit_in));
  const Tensor unit = as_contiguous(unit_in);
  Tensor grad_depth = empty_as(unit, dtype);
  DESC_DISPATCH_FLOATING(dtype, "smoothness_loss_backward_saved", [&] {
    using acc_t = opmath_t<scalar_t>;
    const acc_t g = static_cast<acc_t>(item(grad));
    const acc_t* u_p = unit.const_data_ptr<acc_t>();
    scalar_t* g_p = grad_depth.mutable_data_ptr<scalar_t>();
    const int64_t n = unit.numel(), block = 16384;
    torch::stable::parallel_for(0, (n + block - 1) / block, 1, [&](int64_t begin, int64_t end) {
      const int64_t i = begin * block, m = std::min(end * block, n) - i;
      scale_unit_grad<scalar_t>(u_p + i, g, m, g_p + i);
    });
  });
  return grad_depth;
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(desc_ops, CPU, m) {
  m.impl("smoothness_loss", TORCH_BOX(&smoothness_loss_cpu));
  m.impl("_smoothness_loss_backward", TORCH_BOX(&smoothness_loss_backward_cpu));
  m.impl("_smoothness_loss_train", TORCH_BOX(&smoothness_loss_train_cpu));
  m.impl("_smoothness_loss_backward_saved", TORCH_BOX(&smoothness_loss_backward_saved_cpu));
}

}  // namespace cpu
}  // namespace desc_ops
