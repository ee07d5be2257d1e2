// stereo_photometric_loss and its backward on the CPU (docs/ops.md §7).
//
// Each thread walks a band of rows of one image. A row is warped once (the
// other image sampled along it, with the slope of each sample) and its
// horizontal 3-tap sums of the five window moments (x, y, x^2, y^2, xy per
// channel) are kept for three rows, so that a row of SSIM values is three
// additions per moment away: no warped image and no SSIM map is ever
// written out. The backward keeps three rows of the windows' gradient
// coefficients (math::ssim_dissimilarity) summed over the taps each pixel
// belongs to, and gives each pixel its own depth's gradient: every depth
// pixel owns its sample, so there is nothing to scatter.

#include <algorithm>
#include <string>
#include <vector>

#include "../desc_math.h"
#include "../stereo_photometric_loss_checks.h"

namespace desc_ops {
namespace cpu {
namespace {

constexpr int kMoments = 5;  // sums of x, y, x^2, y^2, xy over a window (x: image, y: warped)

template <typename scalar_t, typename acc_t>
struct StereoImage {
  const scalar_t* depth;  // H x W
  const scalar_t* left;   // C x H x W, the image the loss compares with
  const scalar_t* other;  // C x H x W, the image sampled
  acc_t fb;
  int64_t C, H, W;
  bool reflect;

  const scalar_t* left_row(int64_t c, int64_t r) const { return left + (c * H + r) * W; }
};

// Three rows (slot r % 3) of what the windows read: the warped values, and
// for the backward their slopes d warped / du and du / d depth.
template <typename acc_t>
struct RowRing {
  int64_t C, W;
  std::vector<acc_t> warped, slope, du, moments;
  std::vector<int64_t> x0;
  std::vector<acc_t> w1;

  RowRing(int64_t C_, int64_t W_, bool backward)
      : C(C_), W(W_), warped(3 * C_ * W_), slope(backward ? 3 * C_ * W_ : 0), du(backward ? 3 * W_ : 0),
        moments(3 * kMoments * C_ * W_), x0(W_), w1(W_) {}
  acc_t* Y(int64_t r, int64_t c) { return &warped[((r % 3) * C + c) * W]; }
  acc_t* S(int64_t r, int64_t c) { return &slope[((r % 3) * C + c) * W]; }
  acc_t* D(int64_t r) { return &du[(r % 3) * W]; }
  acc_t* M(int64_t r, int m, int64_t c) { return &moments[(((r % 3) * kMoments + m) * C + c) * W]; }
};

// Warps row r and adds up its horizontal window taps (columns reflected at
// the borders; without padding the border columns are never read).
template <typename scalar_t, typename acc_t>
void warp_row(const StereoImage<scalar_t, acc_t>& im, RowRing<acc_t>& ring, int64_t r) {
  const int64_t W = im.W;
  const bool backward = !ring.du.empty();
  const scalar_t* d = im.depth + r * W;
  acc_t* du = backward ? ring.D(r) : nullptr;
  for (int64_t x = 0; x < W; ++x) {
    acc_t du_dd;
    const acc_t u = math::stereo_position<acc_t>(x, static_cast<acc_t>(d[x]), im.fb, &du_dd);
    math::linear_taps<acc_t>(u, W, &ring.x0[x], &ring.w1[x]);
    if (backward) du[x] = du_dd;
  }
  for (int64_t c = 0; c < im.C; ++c) {
    const scalar_t* src = im.other + (c * im.H + r) * W;
    acc_t* y = ring.Y(r, c);
    acc_t* s = backward ? ring.S(r, c) : nullptr;
    for (int64_t x = 0; x < W; ++x) {
      acc_t slope;
      y[x] = math::linear_sample<acc_t>(src, W, ring.x0[x], ring.w1[x], &slope);
      if (backward) s[x] = slope;
    }
    const scalar_t* img = im.left_row(c, r);
    acc_t* m[kMoments];
    for (int k = 0; k < kMoments; ++k) m[k] = ring.M(r, k, c);
    const auto taps = [&](int64_t x, int64_t l, int64_t rr) {
      const acc_t a0 = static_cast<acc_t>(img[l]), a1 = static_cast<acc_t>(img[x]), a2 = static_cast<acc_t>(img[rr]);
      const acc_t b0 = y[l], b1 = y[x], b2 = y[rr];
      m[0][x] = a0 + a1 + a2;
      m[1][x] = b0 + b1 + b2;
      m[2][x] = a0 * a0 + a1 * a1 + a2 * a2;
      m[3][x] = b0 * b0 + b1 * b1 + b2 * b2;
      m[4][x] = a0 * b0 + a1 * b1 + a2 * b2;
    };
    taps(0, 1, W > 1 ? 1 : 0);
    for (int64_t x = 1; x + 1 < W; ++x) taps(x, x - 1, x + 1);
    if (W > 1) taps(W - 1, W - 2, W - 2);
  }
}

// The SSIM centres of an axis: [1, n - 2] without padding, [0, n) with it.
inline bool has_ssim(int64_t q, int64_t n, bool reflect) { return reflect ? (q >= 0 && q < n) : (q >= 1 && q + 1 < n); }

// Calls f(x, s_c) for every SSIM centre x of row q, channel c, with the
// window's moments (rows reflected at the borders).
template <typename scalar_t, typename acc_t, typename F>
void for_windows(const StereoImage<scalar_t, acc_t>& im, RowRing<acc_t>& ring, int64_t q, int64_t c, F&& f) {
  const int64_t up = math::reflect_index(q - 1, im.H), down = math::reflect_index(q + 1, im.H);
  const acc_t* m[3][kMoments];
  for (int k = 0; k < kMoments; ++k) {
    m[0][k] = ring.M(up, k, c);
    m[1][k] = ring.M(q, k, c);
    m[2][k] = ring.M(down, k, c);
  }
  const int64_t lo = im.reflect ? 0 : 1, hi = im.reflect ? im.W : im.W - 1;
  for (int64_t x = lo; x < hi; ++x) {
    acc_t s[kMoments];
    for (int k = 0; k < kMoments; ++k) s[k] = m[0][k][x] + m[1][k][x] + m[2][k][x];
    f(x, s);
  }
}

// The forward over rows [ya, yb) of one image: row sums, and with `map` the
// (H, W) map alpha/C sum_c s + (1 - alpha)/C sum_c |.| of the image.
template <typename scalar_t, typename acc_t>
void forward_band(const StereoImage<scalar_t, acc_t>& im, int64_t ya, int64_t yb, acc_t* ssim_sum, acc_t* l1_sum,
                  scalar_t* map, acc_t ssim_scale, acc_t l1_scale) {
  RowRing<acc_t> ring(im.C, im.W, /*backward=*/false);
  std::vector<acc_t> row(map != nullptr ? im.W : 0);
  int64_t next = std::max<int64_t>(0, ya - 1);
  for (int64_t y = ya; y < yb; ++y) {
    for (; next <= std::min(y + 1, im.H - 1); ++next) warp_row(im, ring, next);
    acc_t l1 = 0, ss = 0;
    std::fill(row.begin(), row.end(), acc_t(0));
    const bool windows = has_ssim(y, im.H, im.reflect);
    for (int64_t c = 0; c < im.C; ++c) {
      const scalar_t* img = im.left_row(c, y);
      const acc_t* w = ring.Y(y, c);
      for (int64_t x = 0; x < im.W; ++x) {
        const acc_t e = math::abs_(static_cast<acc_t>(img[x]) - w[x]);
        l1 += e;
        if (map != nullptr) row[x] += l1_scale * e;
      }
      if (windows) {
        for_windows(im, ring, y, c, [&](int64_t x, const acc_t* s) {
          const acc_t v = math::ssim_dissimilarity<acc_t>(s[0], s[1], s[2], s[3], s[4]);
          ss += v;
          if (map != nullptr) row[x] += ssim_scale * v;
        });
      }
    }
    ssim_sum[y] = ss;
    l1_sum[y] = l1;
    if (map != nullptr) {
      for (int64_t x = 0; x < im.W; ++x) map[y * im.W + x] = static_cast<scalar_t>(row[x]);
    }
  }
}

// The upstream gradient: one number, or (reduction "none") a map.
template <typename scalar_t, typename acc_t>
struct Upstream {
  acc_t scalar;
  const scalar_t* map;  // H x W of this image, or nullptr
  acc_t at(int64_t y, int64_t x, int64_t W) const {
    return map != nullptr ? static_cast<acc_t>(map[y * W + x]) : scalar;
  }
};

// The backward over rows [ya, yb) of one image.
template <typename scalar_t, typename acc_t>
void backward_band(const StereoImage<scalar_t, acc_t>& im, int64_t ya, int64_t yb, Upstream<scalar_t, acc_t> g,
                   acc_t ssim_scale, acc_t l1_scale, scalar_t* grad) {
  const int64_t C = im.C, H = im.H, W = im.W;
  RowRing<acc_t> ring(C, W, /*backward=*/true);
  // Per coefficient row (slot q % 3), coefficient (a, b, c) and channel: the
  // sum over the window centres of each column (ssim_centres).
  std::vector<acc_t> coef(3 * 3 * C * W), centre(3 * W);
  const auto K = [&](int64_t q, int k, int64_t c) { return &coef[(((q % 3) * 3 + k) * C + c) * W]; };
  std::vector<acc_t> row(W);

  const auto coefficients = [&](int64_t q) {
    for (int64_t c = 0; c < C; ++c) {
      std::fill(centre.begin(), centre.end(), acc_t(0));
      for_windows(im, ring, q, c, [&](int64_t x, const acc_t* s) {
        const acc_t k = ssim_scale * g.at(q, x, W);
        math::ssim_dissimilarity<acc_t>(s[0], s[1], s[2], s[3], s[4], k, &centre[x], &centre[W + x],
                                        &centre[2 * W + x]);
      });
      for (int k = 0; k < 3; ++k) {
        const acc_t* src = &centre[k * W];
        acc_t* dst = K(q, k, c);
        const auto tap_sum = [&](int64_t x) {
          int64_t qs[5];
          const int n = math::ssim_centres(x, W, im.reflect, qs);
          acc_t v = 0;
          for (int i = 0; i < n; ++i) v += src[qs[i]];
          dst[x] = v;
        };
        // Away from the borders the centres are x - 1, x, x + 1 in both modes.
        const int64_t inner_end = std::max<int64_t>(2, W - 2);
        for (int64_t x = 0; x < std::min<int64_t>(2, W); ++x) tap_sum(x);
        for (int64_t x = 2; x < inner_end; ++x) dst[x] = src[x - 1] + src[x] + src[x + 1];
        for (int64_t x = inner_end; x < W; ++x) tap_sum(x);
      }
    }
  };

  const auto gradient_row = [&](int64_t p) {
    int64_t qs[5];
    const int n = math::ssim_centres(p, H, im.reflect, qs);
    std::fill(row.begin(), row.end(), acc_t(0));
    for (int64_t c = 0; c < C; ++c) {
      const scalar_t* img = im.left_row(c, p);
      const acc_t* y = ring.Y(p, c);
      const acc_t* slope = ring.S(p, c);
      const acc_t* ka[5];
      const acc_t* kb[5];
      const acc_t* kc[5];
      for (int i = 0; i < n; ++i) {
        ka[i] = K(qs[i], 0, c);
        kb[i] = K(qs[i], 1, c);
        kc[i] = K(qs[i], 2, c);
      }
      for (int64_t x = 0; x < W; ++x) {
        acc_t a = 0, b = 0, cc = 0;
        for (int i = 0; i < n; ++i) {
          a += ka[i][x];
          b += kb[i][x];
          cc += kc[i][x];
        }
        const acc_t xi = static_cast<acc_t>(img[x]), yi = y[x];
        const acc_t d_warped = (a + acc_t(2) * b * yi + cc * xi) / acc_t(9) +
                               l1_scale * g.at(p, x, W) * math::sign(yi - xi);
        row[x] += d_warped * slope[x];
      }
    }
    const acc_t* du = ring.D(p);
    for (int64_t x = 0; x < W; ++x) grad[p * W + x] = static_cast<scalar_t>(row[x] * du[x]);
  };

  // Row p needs the coefficients of rows p - 1 .. p + 1, and those the
  // windows of rows p - 2 .. p + 2.
  int64_t next = std::max<int64_t>(0, ya - 2);
  for (int64_t q = std::max<int64_t>(0, ya - 1); q <= std::min(yb, H); ++q) {
    if (q < H) {
      for (; next <= std::min(q + 1, H - 1); ++next) warp_row(im, ring, next);
      if (has_ssim(q, H, im.reflect)) coefficients(q);
    }
    if (q - 1 >= ya && q - 1 < yb) gradient_row(q - 1);
  }
}

// Calls f(b, ya, yb) for the bands of images that rows [begin, end) of the
// batch (b * H + y) cover.
template <typename F>
void for_bands(int64_t begin, int64_t end, int64_t H, F&& f) {
  for (int64_t r = begin; r < end;) {
    const int64_t b = r / H, ya = r % H, yb = std::min(H, ya + (end - r));
    f(b, ya, yb);
    r += yb - ya;
  }
}

inline int64_t row_grain(int64_t W) { return std::max<int64_t>(8, 16384 / std::max<int64_t>(W, 1)); }

template <typename scalar_t, typename acc_t>
StereoImage<scalar_t, acc_t> image_of(const Tensor& depth, const Tensor& image, const Tensor& other,
                                      const acc_t* fb, int64_t b, bool reflect) {
  const int64_t C = image.size(1), H = depth.size(2), W = depth.size(3);
  return {depth.const_data_ptr<scalar_t>() + b * H * W, image.const_data_ptr<scalar_t>() + b * C * H * W,
          other.const_data_ptr<scalar_t>() + b * C * H * W, fb[b], C, H, W, reflect};
}

Tensor stereo_photometric_loss_cpu(const Tensor& depth_in, const Tensor& image_in, const Tensor& other_in,
                                   const Tensor& fb_in, double alpha, const std::string& ssim,
                                   const std::string& reduction) {
  check_stereo_args(depth_in, image_in, other_in, fb_in, alpha, ssim, reduction);
  const Tensor depth = as_contiguous(depth_in), image = as_contiguous(image_in), other = as_contiguous(other_in);
  const Tensor fb = as_contiguous(fb_in);
  const int64_t B = depth.size(0), C = image.size(1), H = depth.size(2), W = depth.size(3);
  const bool reflect = ssim == "reflect", none = reduction == "none";
  Tensor out = none ? empty_as(depth) : empty({}, depth.scalar_type(), depth.device());
  if (depth.numel() == 0) return out;
  DESC_DISPATCH_FLOATING(depth.scalar_type(), "stereo_photometric_loss", [&] {
    using acc_t = opmath_t<scalar_t>;
    const auto scales = stereo_scales<acc_t>(B, C, H, W, alpha, reflect, reduction);
    const acc_t* fb_p = fb.const_data_ptr<acc_t>();
    scalar_t* map = none ? out.mutable_data_ptr<scalar_t>() : nullptr;
    // Row sums added in row order: the total does not depend on the threads.
    std::vector<acc_t> ssim_sum(B * H), l1_sum(B * H);
    torch::stable::parallel_for(0, B * H, row_grain(W), [&](int64_t begin, int64_t end) {
      for_bands(begin, end, H, [&](int64_t b, int64_t ya, int64_t yb) {
        const auto im = image_of<scalar_t, acc_t>(depth, image, other, fb_p, b, reflect);
        forward_band(im, ya, yb, &ssim_sum[b * H], &l1_sum[b * H], map != nullptr ? map + b * H * W : nullptr,
                     scales.ssim, scales.l1);
      });
    });
    if (none) return;
    acc_t s = 0, l = 0;
    for (int64_t r = 0; r < B * H; ++r) {
      s += ssim_sum[r];
      l += l1_sum[r];
    }
    *out.mutable_data_ptr<scalar_t>() = static_cast<scalar_t>(scales.ssim * s + scales.l1 * l);
  });
  return out;
}

Tensor stereo_photometric_loss_backward_cpu(const Tensor& grad_in, const Tensor& depth_in, const Tensor& image_in,
                                            const Tensor& other_in, const Tensor& fb_in, double alpha,
                                            const std::string& ssim, const std::string& reduction) {
  check_stereo_backward_args(grad_in, depth_in, image_in, other_in, fb_in, alpha, ssim, reduction);
  const Tensor depth = as_contiguous(depth_in), image = as_contiguous(image_in), other = as_contiguous(other_in);
  const Tensor fb = as_contiguous(fb_in);
  const int64_t B = depth.size(0), C = image.size(1), H = depth.size(2), W = depth.size(3);
  const bool reflect = ssim == "reflect", none = reduction == "none";
  Tensor grad_depth = empty_as(depth);
  if (depth.numel() == 0) return grad_depth;
  const Tensor grad = none ? as_contiguous(to_dtype(grad_in, depth.scalar_type())) : grad_in;
  DESC_DISPATCH_FLOATING(depth.scalar_type(), "stereo_photometric_loss_backward", [&] {
    using acc_t = opmath_t<scalar_t>;
    const auto scales = stereo_scales<acc_t>(B, C, H, W, alpha, reflect, reduction);
    const acc_t* fb_p = fb.const_data_ptr<acc_t>();
    const acc_t g = none ? acc_t(0) : static_cast<acc_t>(item(grad));
    const scalar_t* g_map = none ? grad.const_data_ptr<scalar_t>() : nullptr;
    scalar_t* out = grad_depth.mutable_data_ptr<scalar_t>();
    torch::stable::parallel_for(0, B * H, row_grain(W), [&](int64_t begin, int64_t end) {
      for_bands(begin, end, H, [&](int64_t b, int64_t ya, int64_t yb) {
        const auto im = image_of<scalar_t, acc_t>(depth, image, other, fb_p, b, reflect);
        const Upstream<scalar_t, acc_t> up{g, g_map != nullptr ? g_map + b * H * W : nullptr};
        backward_band(im, ya, yb, up, scales.ssim, scales.l1, out + b * H * W);
      });
    });
  });
  return grad_depth;
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(desc_ops, CPU, m) {
  m.impl("stereo_photometric_loss", TORCH_BOX(&stereo_photometric_loss_cpu));
  m.impl("_stereo_photometric_loss_backward", TORCH_BOX(&stereo_photometric_loss_backward_cpu));
}

}  // namespace cpu
}  // namespace desc_ops
