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
// pixel owns its sample, so there is nothing to scatter. The row loops are
// built per ISA (simd.h): the sampling is a gather, the rest elementwise.

#include <algorithm>
#include <string>
#include <vector>

#include "../desc_math.h"
#include "../stereo_photometric_loss_checks.h"
#include "simd.h"

namespace desc_ops {
namespace cpu {
namespace {

constexpr int kMoments = 5;  // sums of x, y, x^2, y^2, xy over a window (x: image, y: warped)

// ------------------------------------------------------------ row loops

// The taps of every pixel of a depth row: index x0 + 2 into the other row
// padded with zeros (sample_row), weight w1, and du / d depth (if du).
template <typename scalar_t, int B, typename acc_t = opmath_t<scalar_t>>
DESC_OPS_ALWAYS_INLINE void row_taps_body(const scalar_t* __restrict__ d, acc_t fb, int64_t W,
                                          int32_t* __restrict__ idx, acc_t* __restrict__ w1,
                                          acc_t* __restrict__ du) {
  const acc_t n = static_cast<acc_t>(W);
  for (int64_t x = 0; x < W; ++x) {
    acc_t du_dd;
    const acc_t u = math::stereo_position<acc_t>(static_cast<acc_t>(x), static_cast<acc_t>(d[x]), fb, &du_dd);
    int32_t x0;
    math::linear_taps<acc_t>(u, n, &x0, &w1[x]);
    idx[x] = x0 + 2;
    if (du != nullptr) du[x] = du_dd;
  }
}
DESC_OPS_ISA_VARIANTS(row_taps, row_taps_body,
                      (const scalar_t* d, acc_t fb, int64_t W, int32_t* idx, acc_t* w1, acc_t* du),
                      (d, fb, W, idx, w1, du))

// One channel of a warped row and (if slope) its slopes: math::linear_sample
// with the zeros outside the row as padding, so every tap is a plain load.
template <typename scalar_t, int B, typename acc_t = opmath_t<scalar_t>>
DESC_OPS_ALWAYS_INLINE void sample_row_body(const scalar_t* __restrict__ src, int64_t W,
                                            const int32_t* __restrict__ idx, const acc_t* __restrict__ w1,
                                            acc_t* __restrict__ pad, acc_t* __restrict__ y,
                                            acc_t* __restrict__ slope) {
  // Taps reach from x0 = -2 to x0 + 1 = W + 2 (linear_taps' clamp): two zeros on the left, three on the right.
  pad[0] = pad[1] = pad[W + 2] = pad[W + 3] = pad[W + 4] = acc_t(0);
  for (int64_t j = 0; j < W; ++j) pad[j + 2] = static_cast<acc_t>(src[j]);
  for (int64_t x = 0; x < W; ++x) {
    const acc_t v0 = pad[idx[x]], v1 = pad[idx[x] + 1];
    y[x] = v0 + w1[x] * (v1 - v0);
    if (slope != nullptr) slope[x] = v1 - v0;
  }
}
DESC_OPS_ISA_VARIANTS(sample_row, sample_row_body,
                      (const scalar_t* src, int64_t W, const int32_t* idx, const acc_t* w1, acc_t* pad, acc_t* y,
                       acc_t* slope),
                      (src, W, idx, w1, pad, y, slope))

// The image row in acc (xi) and the horizontal 3-tap sums of the five
// moments (m, five rows of W), columns reflected at the borders (without
// padding the border columns are never read).
template <typename scalar_t, int B, typename acc_t = opmath_t<scalar_t>>
DESC_OPS_ALWAYS_INLINE void moments_row_body(const scalar_t* __restrict__ img, const acc_t* __restrict__ y,
                                             int64_t W, acc_t* __restrict__ xi, acc_t* __restrict__ m) {
  for (int64_t x = 0; x < W; ++x) xi[x] = static_cast<acc_t>(img[x]);
  const auto taps = [](const acc_t* a, const acc_t* b, int64_t l, int64_t c, int64_t r, acc_t* out, int64_t W_,
                       int64_t x) {
    out[x] = a[l] + a[c] + a[r];
    out[W_ + x] = b[l] + b[c] + b[r];
    out[2 * W_ + x] = a[l] * a[l] + a[c] * a[c] + a[r] * a[r];
    out[3 * W_ + x] = b[l] * b[l] + b[c] * b[c] + b[r] * b[r];
    out[4 * W_ + x] = a[l] * b[l] + a[c] * b[c] + a[r] * b[r];
  };
  taps(xi, y, W > 1 ? 1 : 0, 0, W > 1 ? 1 : 0, m, W, 0);
  for (int64_t x = 1; x + 1 < W; ++x) {
    m[x] = xi[x - 1] + xi[x] + xi[x + 1];
    m[W + x] = y[x - 1] + y[x] + y[x + 1];
    m[2 * W + x] = xi[x - 1] * xi[x - 1] + xi[x] * xi[x] + xi[x + 1] * xi[x + 1];
    m[3 * W + x] = y[x - 1] * y[x - 1] + y[x] * y[x] + y[x + 1] * y[x + 1];
    m[4 * W + x] = xi[x - 1] * y[x - 1] + xi[x] * y[x] + xi[x + 1] * y[x + 1];
  }
  if (W > 1) taps(xi, y, W - 2, W - 1, W - 2, m, W, W - 1);
}
DESC_OPS_ISA_VARIANTS(moments_row, moments_row_body,
                      (const scalar_t* img, const acc_t* y, int64_t W, acc_t* xi, acc_t* m), (img, y, W, xi, m))

// Sum of n values in lanes (simd.h).
template <int B, typename acc_t>
DESC_OPS_ALWAYS_INLINE acc_t lane_sum(const acc_t* __restrict__ v, int64_t n) {
  constexpr int N = kLanes<acc_t, B>;
  Vec<acc_t, B> total{};
  int64_t x = 0;
  for (; x + N <= n; x += N) total += vload<acc_t, B>(v + x);
  if (x < n) total += vload_part<acc_t, B>(v + x, n - x);
  return lane_reduce(total);
}

// Sum over x of |xi - y| and, with `map`, map += scale |xi - y|.
template <typename scalar_t, int B, typename acc_t = opmath_t<scalar_t>>
DESC_OPS_ALWAYS_INLINE void l1_row_body(const acc_t* __restrict__ xi, const acc_t* __restrict__ y, int64_t W,
                                        acc_t scale, acc_t* __restrict__ map, acc_t* __restrict__ e,
                                        acc_t* sum) {
  for (int64_t x = 0; x < W; ++x) e[x] = math::abs_(xi[x] - y[x]);
  if (map != nullptr) {
    for (int64_t x = 0; x < W; ++x) map[x] += scale * e[x];
  }
  *sum = lane_sum<B>(e, W);
}
DESC_OPS_ISA_VARIANTS(l1_row, l1_row_body,
                      (const acc_t* xi, const acc_t* y, int64_t W, acc_t scale, acc_t* map, acc_t* e, acc_t* sum),
                      (xi, y, W, scale, map, e, sum))

// The windows centred on columns [lo, hi) of a row, from the moment rows
// above (u), of (c) and below (d): s into `s`, its sum, and with `map`,
// map += scale s. With `k` (d loss / d s per column), instead the gradient
// coefficients a, b, c (math::ssim_dissimilarity) into abc (three rows of
// W, 0 outside [lo, hi)).
template <typename scalar_t, int B, typename acc_t = opmath_t<scalar_t>>
DESC_OPS_ALWAYS_INLINE void windows_row_body(const acc_t* __restrict__ u, const acc_t* __restrict__ c,
                                             const acc_t* __restrict__ d, int64_t W, int64_t lo, int64_t hi,
                                             acc_t scale, acc_t* __restrict__ map, acc_t* __restrict__ s,
                                             acc_t* sum, const acc_t* __restrict__ k, acc_t* __restrict__ abc) {
  if (k == nullptr) {
    for (int64_t x = lo; x < hi; ++x) {
      s[x] = math::ssim_dissimilarity<acc_t>(u[x] + c[x] + d[x], u[W + x] + c[W + x] + d[W + x],
                                             u[2 * W + x] + c[2 * W + x] + d[2 * W + x],
                                             u[3 * W + x] + c[3 * W + x] + d[3 * W + x],
                                             u[4 * W + x] + c[4 * W + x] + d[4 * W + x]);
    }
    if (map != nullptr) {
      for (int64_t x = lo; x < hi; ++x) map[x] += scale * s[x];
    }
    *sum = lane_sum<B>(s + lo, hi - lo);
    return;
  }
  for (int64_t x = 0; x < 3 * W; ++x) abc[x] = acc_t(0);
  for (int64_t x = lo; x < hi; ++x) {
    math::ssim_dissimilarity<acc_t>(u[x] + c[x] + d[x], u[W + x] + c[W + x] + d[W + x],
                                    u[2 * W + x] + c[2 * W + x] + d[2 * W + x],
                                    u[3 * W + x] + c[3 * W + x] + d[3 * W + x],
                                    u[4 * W + x] + c[4 * W + x] + d[4 * W + x], k[x], &abc[x], &abc[W + x],
                                    &abc[2 * W + x]);
  }
}
DESC_OPS_ISA_VARIANTS(windows_row, windows_row_body,
                      (const acc_t* u, const acc_t* c, const acc_t* d, int64_t W, int64_t lo, int64_t hi,
                       acc_t scale, acc_t* map, acc_t* s, acc_t* sum, const acc_t* k, acc_t* abc),
                      (u, c, d, W, lo, hi, scale, map, s, sum, k, abc))

// Each column's sum of src over the window centres that hold it
// (math::ssim_centres): x - 1, x, x + 1 away from the borders.
template <typename scalar_t, int B, typename acc_t = opmath_t<scalar_t>>
DESC_OPS_ALWAYS_INLINE void centre_sum_body(const acc_t* __restrict__ src, int64_t W, bool reflect,
                                            acc_t* __restrict__ dst) {
  const int64_t inner_end = std::max<int64_t>(2, W - 2);
  for (int64_t x = 2; x < inner_end; ++x) dst[x] = src[x - 1] + src[x] + src[x + 1];
  for (int64_t x = 0; x < W; x = (x == 1 ? inner_end : x + 1)) {
    int64_t qs[5];
    const int n = math::ssim_centres(x, W, reflect, qs);
    acc_t v = 0;
    for (int i = 0; i < n; ++i) v += src[qs[i]];
    dst[x] = v;
  }
}
DESC_OPS_ISA_VARIANTS(centre_sum, centre_sum_body, (const acc_t* src, int64_t W, bool reflect, acc_t* dst),
                      (src, W, reflect, dst))

// row += d loss / d warped * slope for one channel: the windows' part from
// the coefficient sums abc (three rows of W), the L1 part l1 sign(y - x).
template <typename scalar_t, int B, typename acc_t = opmath_t<scalar_t>>
DESC_OPS_ALWAYS_INLINE void gradient_row_body(const acc_t* __restrict__ xi, const acc_t* __restrict__ y,
                                              const acc_t* __restrict__ slope, const acc_t* __restrict__ abc,
                                              const acc_t* __restrict__ l1, int64_t W, acc_t* __restrict__ row) {
  for (int64_t x = 0; x < W; ++x) {
    const acc_t d_warped =
        (abc[x] + acc_t(2) * abc[W + x] * y[x] + abc[2 * W + x] * xi[x]) / acc_t(9) + l1[x] * math::sign(y[x] - xi[x]);
    row[x] += d_warped * slope[x];
  }
}
DESC_OPS_ISA_VARIANTS(gradient_row, gradient_row_body,
                      (const acc_t* xi, const acc_t* y, const acc_t* slope, const acc_t* abc, const acc_t* l1,
                       int64_t W, acc_t* row),
                      (xi, y, slope, abc, l1, W, row))

// out = row * du, rounded to scalar_t.
template <typename scalar_t, int B, typename acc_t = opmath_t<scalar_t>>
DESC_OPS_ALWAYS_INLINE void scaled_store_body(const acc_t* __restrict__ row, const acc_t* __restrict__ du, int64_t W,
                                              scalar_t* __restrict__ out) {
  constexpr int N = kLanes<acc_t, B>;
  int64_t x = 0;
  for (; x + N <= W; x += N) vstore(out + x, Vec<acc_t, B>(vload<acc_t, B>(row + x) * vload<acc_t, B>(du + x)));
  if (x < W) {
    vstore_part(out + x, Vec<acc_t, B>(vload_part<acc_t, B>(row + x, W - x) * vload_part<acc_t, B>(du + x, W - x)),
                W - x);
  }
}
DESC_OPS_ISA_VARIANTS(scaled_store, scaled_store_body, (const acc_t* row, const acc_t* du, int64_t W, scalar_t* out),
                      (row, du, W, out))

// ------------------------------------------------------------ bands

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

// A thread's rows: three (slot r % 3) of what the windows read, per channel
// the image row, the warped row and its five moment rows, and for the
// backward the slopes and du / d depth; and the taps of the row being warped.
template <typename acc_t>
struct RowRing {
  int64_t C, W;
  bool backward;
  std::vector<acc_t> xi, warped, slope, du, moments, w1, pad;
  std::vector<int32_t> idx;

  RowRing(int64_t C_, int64_t W_, bool backward_)
      : C(C_), W(W_), backward(backward_), xi(3 * C_ * W_), warped(3 * C_ * W_),
        slope(backward_ ? 3 * C_ * W_ : 0), du(backward_ ? 3 * W_ : 0), moments(3 * C_ * kMoments * W_), w1(W_),
        pad(W_ + 5), idx(W_) {}
  acc_t* X(int64_t r, int64_t c) { return &xi[((r % 3) * C + c) * W]; }
  acc_t* Y(int64_t r, int64_t c) { return &warped[((r % 3) * C + c) * W]; }
  acc_t* S(int64_t r, int64_t c) { return &slope[((r % 3) * C + c) * W]; }
  acc_t* D(int64_t r) { return &du[(r % 3) * W]; }
  acc_t* M(int64_t r, int64_t c) { return &moments[((r % 3) * C + c) * kMoments * W]; }

  // Warps row r of `im` and adds up its window taps.
  template <typename scalar_t>
  void fill(const StereoImage<scalar_t, acc_t>& im, int64_t r) {
    row_taps<scalar_t>(im.depth + r * W, im.fb, W, idx.data(), w1.data(), backward ? D(r) : nullptr);
    for (int64_t c = 0; c < C; ++c) {
      sample_row<scalar_t>(im.other + (c * im.H + r) * W, W, idx.data(), w1.data(), pad.data(), Y(r, c),
                           backward ? S(r, c) : nullptr);
      moments_row<scalar_t>(im.left_row(c, r), Y(r, c), W, X(r, c), M(r, c));
    }
  }
};

// The SSIM centres of an axis: [1, n - 2] without padding, [0, n) with it.
inline bool has_ssim(int64_t q, int64_t n, bool reflect) { return reflect ? (q >= 0 && q < n) : (q >= 1 && q + 1 < n); }

// The forward over rows [ya, yb) of one image: per row the sums of s and of
// |image - warped|, and with `map` the (H, W) map of the image.
template <typename scalar_t, typename acc_t>
void forward_band(const StereoImage<scalar_t, acc_t>& im, int64_t ya, int64_t yb, acc_t* ssim_sum, acc_t* l1_sum,
                  scalar_t* map, acc_t ssim_scale, acc_t l1_scale) {
  const int64_t H = im.H, W = im.W;
  RowRing<acc_t> ring(im.C, W, /*backward=*/false);
  std::vector<acc_t> row(map != nullptr ? W : 0), s(W);
  acc_t* map_row = map != nullptr ? row.data() : nullptr;
  const int64_t lo = im.reflect ? 0 : 1, hi = im.reflect ? W : W - 1;
  int64_t next = std::max<int64_t>(0, ya - 1);
  for (int64_t y = ya; y < yb; ++y) {
    for (; next <= std::min(y + 1, H - 1); ++next) ring.fill(im, next);
    std::fill(row.begin(), row.end(), acc_t(0));
    const bool windows = has_ssim(y, H, im.reflect);
    const int64_t up = math::reflect_index(y - 1, H), down = math::reflect_index(y + 1, H);
    acc_t l1 = 0, ss = 0;
    for (int64_t c = 0; c < im.C; ++c) {
      acc_t part;
      l1_row<scalar_t>(ring.X(y, c), ring.Y(y, c), W, l1_scale, map_row, s.data(), &part);
      l1 += part;
      if (windows) {
        windows_row<scalar_t>(ring.M(up, c), ring.M(y, c), ring.M(down, c), W, lo, hi, ssim_scale, map_row,
                              s.data(), &part, static_cast<const acc_t*>(nullptr), static_cast<acc_t*>(nullptr));
        ss += part;
      }
    }
    ssim_sum[y] = ss;
    l1_sum[y] = l1;
    if (map != nullptr) {
      for (int64_t x = 0; x < W; ++x) map[y * W + x] = static_cast<scalar_t>(row[x]);
    }
  }
}

// The upstream gradient: one number, or (reduction "none") a map.
template <typename scalar_t, typename acc_t>
struct Upstream {
  acc_t scalar;
  const scalar_t* map;  // H x W of this image, or nullptr

  // Row y of scale * upstream.
  void row(int64_t y, int64_t W, acc_t scale, acc_t* out) const {
    for (int64_t x = 0; x < W; ++x) out[x] = scale * (map != nullptr ? static_cast<acc_t>(map[y * W + x]) : scalar);
  }
};

// The backward over rows [ya, yb) of one image.
template <typename scalar_t, typename acc_t>
void backward_band(const StereoImage<scalar_t, acc_t>& im, int64_t ya, int64_t yb, Upstream<scalar_t, acc_t> g,
                   acc_t ssim_scale, acc_t l1_scale, scalar_t* grad) {
  const int64_t C = im.C, H = im.H, W = im.W;
  RowRing<acc_t> ring(C, W, /*backward=*/true);
  // Per coefficient row (slot q % 3) and channel: a, b, c summed over the
  // window centres of each column (three rows of W).
  std::vector<acc_t> coef(3 * C * 3 * W), abc(3 * W), sums(3 * W), k(W), l1(W), row(W);
  const auto K = [&](int64_t q, int64_t c) { return &coef[((q % 3) * C + c) * 3 * W]; };
  const int64_t lo = im.reflect ? 0 : 1, hi = im.reflect ? W : W - 1;

  const auto coefficients = [&](int64_t q) {
    g.row(q, W, ssim_scale, k.data());
    const int64_t up = math::reflect_index(q - 1, H), down = math::reflect_index(q + 1, H);
    for (int64_t c = 0; c < C; ++c) {
      windows_row<scalar_t>(ring.M(up, c), ring.M(q, c), ring.M(down, c), W, lo, hi, acc_t(0),
                            static_cast<acc_t*>(nullptr), static_cast<acc_t*>(nullptr),
                            static_cast<acc_t*>(nullptr), k.data(), abc.data());
      for (int j = 0; j < 3; ++j) centre_sum<scalar_t>(abc.data() + j * W, W, im.reflect, K(q, c) + j * W);
    }
  };

  const auto gradient_of_row = [&](int64_t p) {
    int64_t qs[5];
    const int n = math::ssim_centres(p, H, im.reflect, qs);
    g.row(p, W, l1_scale, l1.data());
    std::fill(row.begin(), row.end(), acc_t(0));
    for (int64_t c = 0; c < C; ++c) {
      std::fill(sums.begin(), sums.end(), acc_t(0));
      for (int i = 0; i < n; ++i) {
        const acc_t* src = K(qs[i], c);
        for (int64_t x = 0; x < 3 * W; ++x) sums[x] += src[x];
      }
      gradient_row<scalar_t>(ring.X(p, c), ring.Y(p, c), ring.S(p, c), sums.data(), l1.data(), W, row.data());
    }
    scaled_store<scalar_t>(row.data(), ring.D(p), W, grad + p * W);
  };

  // Row p needs the coefficients of rows p - 1 .. p + 1, and those the
  // windows of rows p - 2 .. p + 2.
  int64_t next = std::max<int64_t>(0, ya - 2);
  for (int64_t q = std::max<int64_t>(0, ya - 1); q <= std::min(yb, H); ++q) {
    if (q < H) {
      for (; next <= std::min(q + 1, H - 1); ++next) ring.fill(im, next);
      if (has_ssim(q, H, im.reflect)) coefficients(q);
    }
    if (q - 1 >= ya && q - 1 < yb) gradient_of_row(q - 1);
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
  const StereoArgs a = make_stereo_args(depth_in, image_in, other_in, fb_in, alpha, ssim, reduction);
  const Tensor &depth = a.depth, &image = a.image, &other = a.other, &fb = a.focal_baseline;
  const int64_t B = a.B, C = a.C, H = a.H, W = a.W;
  const bool reflect = a.reflect, none = a.none;
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
  const StereoArgs a = make_stereo_backward_args(grad_in, depth_in, image_in, other_in, fb_in, alpha, ssim, reduction);
  const Tensor &depth = a.depth, &image = a.image, &other = a.other, &fb = a.focal_baseline;
  const int64_t B = a.B, C = a.C, H = a.H, W = a.W;
  const bool reflect = a.reflect, none = a.none;
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
