// The confidence map (spec §1) on the CPU, evaluated one image row at a time
// so that the luminance of the three rows a Sobel row needs is computed once
// per row instead of once per tap, and so that nothing the size of the image
// (softmax, Sobel) is ever materialised.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>

#include <vector>

#include "../confidence.h"
#include "../desc_math.h"

namespace desc_ops {
namespace cpu {

template <typename scalar_t_, typename index_t>
class ConfidenceRows {
 public:
  using scalar_t = scalar_t_;
  using acc_t = at::opmath_type<scalar_t>;

  // Per-thread buffers, a few rows long.
  struct Scratch {
    explicit Scratch(int64_t W)
        : softmax(W), lum_top(W), lum_mid(W), lum_bottom(W) {}
    std::vector<math::SoftmaxMax<acc_t>> softmax;
    std::vector<acc_t> lum_top, lum_mid, lum_bottom;
  };

  explicit ConfidenceRows(const ConfidenceArgs& a)
      : C_(a.C), H_(a.H), W_(a.W),
        edge_weight_(static_cast<acc_t>(a.edge_weight)),
        boundary_weight_(static_cast<acc_t>(a.boundary_weight)),
        ignore_index_(static_cast<index_t>(a.ignore_index)),
        num_ignored_(a.ignore.numel()),
        ignored_(a.ignore.data_ptr<int64_t>()) {
    if (a.logits.defined()) logits_ = a.logits.data_ptr<scalar_t>();
    if (a.labels.defined()) labels_ = a.labels.data_ptr<index_t>();
    if (a.image.defined()) {
      image_ = a.image.data_ptr<scalar_t>();
      image_channels_ = a.image.size(1);
    }
    if (a.edges.defined()) edges_ = a.edges.data_ptr<scalar_t>();
  }

  int64_t width() const { return W_; }

  // out[x] = c(b, y, x) for the W pixels of row y of image b.
  void row(int64_t b, int64_t y, acc_t* out, Scratch& s) const {
    const int64_t HW = H_ * W_;
    if (logits_ != nullptr) {
      const scalar_t* z = logits_ + b * C_ * HW + y * W_;
      auto* sm = s.softmax.data();
      for (int64_t x = 0; x < W_; ++x) sm[x].start(static_cast<acc_t>(z[x]));
      for (int64_t k = 1; k < C_; ++k) {
        const scalar_t* zk = z + k * HW;
        for (int64_t x = 0; x < W_; ++x) sm[x].push(static_cast<acc_t>(zk[x]), k);
      }
      for (int64_t x = 0; x < W_; ++x) {
        const bool ignored = num_ignored_ > 0 &&
                             math::is_ignored_class(sm[x].argmax, ignored_, num_ignored_);
        out[x] = ignored ? acc_t(0) : math::logit_semantic_term(sm[x].sum_exp, C_);
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
      const acc_t* t = s.lum_top.data();
      const acc_t* m = s.lum_mid.data();
      const acc_t* d = s.lum_bottom.data();
      for (int64_t x = 0; x < W_; ++x) {
        const int64_t l = math::clamp_index(x - 1, W_);
        const int64_t r = math::clamp_index(x + 1, W_);
        const acc_t strength =
            math::sobel_magnitude(t[l], t[x], t[r], m[l], m[r], d[l], d[x], d[r]);
        out[x] *= math::edge_term(strength, edge_weight_);
      }
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
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.dtype, "confidence_map", [&] {
    if (a.labels.defined() && a.labels.scalar_type() == at::kInt) {
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
