// The confidence map (docs/ops.md §1) on the CPU, evaluated one image row at a time
// so that the luminance of the three rows a Sobel row needs is computed once
// per row instead of once per tap, and so that nothing the size of the image
// (softmax, Sobel) is ever materialised.
#pragma once


#include <algorithm>
#include <type_traits>
#include <vector>

#include "../confidence_checks.h"
#include "../desc_math.h"
#include "simd.h"

namespace desc_ops {
namespace cpu {

// Per pixel of a row of logits (channel stride HW): mx = max_k z_k and
// sum = sum_k exp(z_k - mx) (k in order), N pixels at a time in vectors: the
// C rows of a chunk are read twice, the second time from L1.
// Channel k of the N pixels at z (m of them valid).
template <typename acc_t, int B, typename scalar_t>
DESC_OPS_ALWAYS_INLINE Vec<acc_t, B> load_channel(const scalar_t* z, int64_t k, int64_t HW, int64_t m) {
  return m == kLanes<acc_t, B> ? vload<acc_t, B>(z + k * HW) : vload_part<acc_t, B>(z + k * HW, m);
}

template <typename scalar_t, int B, typename acc_t>
DESC_OPS_ALWAYS_INLINE void softmax_max_sum_body(const scalar_t* __restrict__ z, int64_t C, int64_t HW, int64_t W,
                                                 acc_t* __restrict__ mx, acc_t* __restrict__ sum) {
  constexpr int N = kLanes<acc_t, B>;
  for (int64_t x = 0; x < W; x += N) {
    const int64_t m = std::min<int64_t>(N, W - x);
    Vec<acc_t, B> hi = load_channel<acc_t, B>(z + x, 0, HW, m);
    for (int64_t k = 1; k < C; ++k) {
      const Vec<acc_t, B> v = load_channel<acc_t, B>(z + x, k, HW, m);
      hi = v > hi ? v : hi;
    }
    Vec<acc_t, B> s{};
    for (int64_t k = 0; k < C; ++k) s += vexp(Vec<acc_t, B>(load_channel<acc_t, B>(z + x, k, HW, m) - hi));
    if (m == N) {
      vstore(mx + x, hi);
      vstore(sum + x, s);
    } else {
      vstore_part(mx + x, hi, m);
      vstore_part(sum + x, s, m);
    }
  }
}

// out[x] *= exp(-edge_weight * Sobel magnitude) for a row, from the luminance
// of the rows above (t), at (m) and below (d); the interior columns need no
// clamping, so their loop vectorises.
template <typename acc_t>
DESC_OPS_ALWAYS_INLINE void sobel_edge_body(const acc_t* __restrict__ t, const acc_t* __restrict__ m,
                                                           const acc_t* __restrict__ d, int64_t W, acc_t edge_weight,
                                                           acc_t* __restrict__ out) {
  for (int64_t x = 1; x + 1 < W; ++x) {
    const acc_t strength =
        math::sobel_magnitude(t[x - 1], t[x], t[x + 1], m[x - 1], m[x + 1], d[x - 1], d[x], d[x + 1]);
    out[x] *= math::edge_term(strength, edge_weight);
  }
  const int64_t borders[2] = {0, W - 1};
  for (int64_t i = 0; i < (W > 1 ? 2 : 1); ++i) {
    const int64_t x = borders[i], l = math::clamp_index(x - 1, W), r = math::clamp_index(x + 1, W);
    out[x] *= math::edge_term(math::sobel_magnitude(t[l], t[x], t[r], m[l], m[r], d[l], d[x], d[r]), edge_weight);
  }
}

// out[0, n) = v rounded to scalar_t (as static_cast), vectorised.
template <typename scalar_t, int B, typename acc_t = opmath_t<scalar_t>>
DESC_OPS_ALWAYS_INLINE void store_row_body(const acc_t* __restrict__ v, int64_t n, scalar_t* __restrict__ out) {
  constexpr int N = kLanes<acc_t, B>;
  int64_t i = 0;
  for (; i + N <= n; i += N) vstore<scalar_t>(out + i, vload<acc_t, B>(v + i));
  if (i < n) vstore_part<scalar_t>(out + i, vload_part<acc_t, B>(v + i, n - i), n - i);
}
DESC_OPS_ISA_VARIANTS(store_row, store_row_body, (const acc_t* v, int64_t n, scalar_t* out), (v, n, out))

// The row loops in the widest build the CPU has (float and bfloat16).
DESC_OPS_ISA_VARIANTS(softmax_max_sum_row, softmax_max_sum_body,
                      (const scalar_t* z, int64_t C, int64_t HW, int64_t W, acc_t* mx, acc_t* sum),
                      (z, C, HW, W, mx, sum))

template <typename scalar_t, int B, typename acc_t = opmath_t<scalar_t>>
DESC_OPS_ALWAYS_INLINE void sobel_edge_typed_body(const acc_t* t, const acc_t* m, const acc_t* d, int64_t W,
                                                  acc_t edge_weight, acc_t* out) {
  sobel_edge_body(t, m, d, W, edge_weight, out);
}
DESC_OPS_ISA_VARIANTS(sobel_edge_row, sobel_edge_typed_body,
                      (const acc_t* t, const acc_t* m, const acc_t* d, int64_t W, acc_t edge_weight, acc_t* out),
                      (t, m, d, W, edge_weight, out))

template <typename scalar_t_, typename index_t>
class ConfidenceRows {
 public:
  using scalar_t = scalar_t_;
  using acc_t = opmath_t<scalar_t>;

  // Per-thread buffers, a few rows long.
  struct Scratch {
    explicit Scratch(int64_t W)
        : max(W), sum_exp(W), argmax(W), lum_top(W), lum_mid(W), lum_bottom(W) {}
    std::vector<acc_t> max, sum_exp;
    std::vector<int32_t> argmax;
    std::vector<acc_t> lum_top, lum_mid, lum_bottom;
  };

  explicit ConfidenceRows(const ConfidenceArgs& a)
      : C_(a.C), H_(a.H), W_(a.W),
        edge_weight_(static_cast<acc_t>(a.edge_weight)),
        boundary_weight_(static_cast<acc_t>(a.boundary_weight)),
        ignore_index_(static_cast<index_t>(a.ignore_index)),
        num_ignored_(a.ignore.numel()),
        ignored_(a.ignore.const_data_ptr<int64_t>()) {
    if (a.logits.defined()) logits_ = a.logits.const_data_ptr<scalar_t>();
    if (a.labels.defined()) labels_ = a.labels.const_data_ptr<index_t>();
    if (a.image.defined()) {
      image_ = a.image.const_data_ptr<scalar_t>();
      image_channels_ = a.image.size(1);
    }
    if (a.edges.defined()) edges_ = a.edges.const_data_ptr<scalar_t>();
  }

  int64_t width() const { return W_; }

  // out[x] = c(b, y, x) for the W pixels of row y of image b.
  void row(int64_t b, int64_t y, acc_t* out, Scratch& s) const {
    const int64_t HW = H_ * W_;
    if (logits_ != nullptr) {
      // Channel-outer loops over the row: contiguous, branch-free, vectorised.
      const scalar_t* z = logits_ + b * C_ * HW + y * W_;
      acc_t* mx = s.max.data();
      acc_t* sum = s.sum_exp.data();
      softmax_max_sum_row<scalar_t>(z, C_, HW, W_, mx, sum);
      for (int64_t x = 0; x < W_; ++x) out[x] = math::logit_semantic_term(sum[x], C_);
      if (num_ignored_ > 0) {
        // The argmax (the lowest index holding the max) only where classes are ignored.
        int32_t* arg = s.argmax.data();
        for (int64_t x = 0; x < W_; ++x) arg[x] = -1;
        for (int64_t k = 0; k < C_; ++k) {
          const scalar_t* zk = z + k * HW;
          for (int64_t x = 0; x < W_; ++x) {
            if (arg[x] < 0 && static_cast<acc_t>(zk[x]) == mx[x]) arg[x] = static_cast<int32_t>(k);
          }
        }
        for (int64_t x = 0; x < W_; ++x) {
          if (math::is_ignored_class(arg[x], ignored_, num_ignored_)) out[x] = acc_t(0);
        }
      }
    } else {
      const index_t* labels = labels_ + b * HW;
      for (int64_t x = 0; x < W_; ++x) {
        const bool ignored =
            num_ignored_ > 0 &&
            math::is_ignored_class(static_cast<int64_t>(labels[y * W_ + x]), ignored_,
                                   num_ignored_);
        out[x] = ignored ? acc_t(0)
                         : math::label_semantic_term(labels, y, x, H_, W_, ignore_index_,
                                                     boundary_weight_);
      }
    }

    if (image_ != nullptr) {
      luminance_row(b, math::clamp_index(y - 1, H_), s.lum_top.data());
      luminance_row(b, y, s.lum_mid.data());
      luminance_row(b, math::clamp_index(y + 1, H_), s.lum_bottom.data());
      sobel_edge_row<scalar_t>(s.lum_top.data(), s.lum_mid.data(), s.lum_bottom.data(), W_, edge_weight_, out);
    } else if (edges_ != nullptr) {
      const scalar_t* e = edges_ + b * HW + y * W_;
      for (int64_t x = 0; x < W_; ++x) {
        out[x] *= math::edge_term(static_cast<acc_t>(e[x]), edge_weight_);
      }
    }
  }

 private:
  void luminance_row(int64_t b, int64_t y, acc_t* out) const {
    const int64_t HW = H_ * W_;
    const scalar_t* p = image_ + b * image_channels_ * HW + y * W_;
    if (image_channels_ == 1) {
      for (int64_t x = 0; x < W_; ++x) out[x] = static_cast<acc_t>(p[x]);
      return;
    }
    for (int64_t x = 0; x < W_; ++x) {
      out[x] = math::luminance(static_cast<acc_t>(p[x]), static_cast<acc_t>(p[HW + x]),
                               static_cast<acc_t>(p[2 * HW + x]));
    }
  }

  int64_t C_, H_, W_;
  acc_t edge_weight_, boundary_weight_;
  index_t ignore_index_;
  int64_t num_ignored_;
  const int64_t* ignored_;
  const scalar_t* logits_ = nullptr;
  const index_t* labels_ = nullptr;
  const scalar_t* image_ = nullptr;
  int64_t image_channels_ = 0;
  const scalar_t* edges_ = nullptr;
};

// Calls f(ConfidenceRows<scalar_t, index_t>) for the dtypes of `a`.
template <typename F>
void dispatch_confidence_rows(const ConfidenceArgs& a, const F& f) {
  DESC_DISPATCH_FLOATING(a.dtype, "confidence_map", [&] {
    if (a.labels.defined() && a.labels.scalar_type() == kInt) {
      f(ConfidenceRows<scalar_t, int32_t>(a));
    } else {
      f(ConfidenceRows<scalar_t, int64_t>(a));
    }
  });
}

// Rows per parallel task: enough work per task to amortise scheduling.
inline int64_t row_grain(int64_t W) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(W, 1)); }

}  // namespace cpu
}  // namespace desc_ops
