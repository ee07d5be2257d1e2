// Per-pixel arithmetic of every desc_ops operator, written once for the CPU
// kernels and the CUDA kernels (docs/ops.md). Everything here is
// a pure function of its arguments so that the CPU tests also check the
// arithmetic the GPU path runs.
#pragma once

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define DESC_HD __host__ __device__ __forceinline__
#define DESC_HDV DESC_HD
#else
#define DESC_HD inline
// The formulas the CPU's AVX2 / AVX-512 row loops take on vectors: inlined
// there, never called out of line.
#if defined(__GNUC__)
#define DESC_HDV __attribute__((always_inline)) inline
#else
#define DESC_HDV inline
#endif
#endif

namespace desc_ops {
namespace math {

// Overloads instead of templates: the ::f-suffixed functions are declared
// for host and device alike, std:: versions are not usable in device code
// everywhere.
DESC_HD float sqrt_(float x) { return ::sqrtf(x); }
DESC_HD double sqrt_(double x) { return ::sqrt(x); }
DESC_HD float abs_(float x) { return ::fabsf(x); }
DESC_HD double abs_(double x) { return ::fabs(x); }
DESC_HD bool isfinite_(float x) { return isfinite(x); }
DESC_HD bool isfinite_(double x) { return isfinite(x); }
DESC_HD float floor_(float x) { return ::floorf(x); }
DESC_HD double floor_(double x) { return ::floor(x); }

// fast_exp's reduced form: exp(x) = 2^n exp(r) with r = x - n ln2 (ln2 in
// two parts, Cody and Waite) and exp(r) = 1 + r + r^2 P(r), |r| <= ln2 / 2.
// T is float or a vector of floats (the CPU's vexp, csrc/cpu/simd.h), so
// that both evaluate the very same expression.
template <typename T>
DESC_HDV T exp_reduced_poly(T x, T fn) {
  T r = x - fn * 0.693359375f;
  r = r - fn * -2.12194440e-4f;
  T p = T{} + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  return p * r * r + r + 1.0f;
}

// exp on float without branches, so that the CPU row loops vectorise (glibc's
// expf is a call per element) and the GPU runs the same arithmetic. Cephes'
// expf: range reduction x = n ln2 + r, |r| <= ln2 / 2, then a degree-6
// polynomial; relative error below 2e-7 on [-87.3, 88.3], inputs clamped to
// that range (exp(-87.3) ~ 1e-38 stands in for 0).
DESC_HD float fast_exp(float x) {
  const float in = x;
  x = in == in ? x : 0.f;  // NaN: converting it to int below would be undefined
  x = x < -87.3f ? -87.3f : x;
  x = x > 88.3f ? 88.3f : x;
  const float t = x * 1.44269504088896341f;
  const int n = static_cast<int>(t + (t >= 0.f ? 0.5f : -0.5f));
  const float p = exp_reduced_poly(x, static_cast<float>(n));
  const int bits = (n + 127) << 23;  // 2^n
#if defined(__CUDA_ARCH__)
  const float scale = __int_as_float(bits);
#else
  float scale;
  memcpy(&scale, &bits, sizeof(scale));
#endif
  return in == in ? p * scale : in;
}
// float64 is for gradcheck and references, not speed.
DESC_HD double fast_exp(double x) { return ::exp(x); }

// fast_exp for arguments <= 0 (or NaN): the same values. The CPU's vector
// versions of it and of abs_ are declared here and defined in csrc/cpu/simd.h,
// so that the formulas below serve its row loops as they serve CUDA threads.
DESC_HD float exp_nonpositive(float x) { return fast_exp(x); }
DESC_HD double exp_nonpositive(double x) { return fast_exp(x); }
#if !defined(__CUDACC__) && !defined(__HIPCC__)
template <typename V>
DESC_HDV V exp_nonpositive(V x);
template <typename V>
DESC_HDV V abs_(V x);
#endif

// sign(0) = sign(NaN) = 0 (docs/ops.md §0). T is a float or a vector of
// floats (the CPU kernels' vector row loops), so that the CPU kernels take
// the sign the CUDA kernels take.
template <typename T>
DESC_HDV T sign(T x) {
  const T zero{}, one = zero + 1;
  return x > zero ? one : (x < zero ? -one : zero);
}

// Replicated border: coordinates clamped into [0, n).
DESC_HD int64_t clamp_index(int64_t i, int64_t n) {
  return i < 0 ? 0 : (i >= n ? n - 1 : i);
}

// ---------------------------------------------------------------------------
// §1 confidence map
// ---------------------------------------------------------------------------

// Y = 0.299 R + 0.587 G + 0.114 B.
template <typename acc_t>
DESC_HD acc_t luminance(acc_t r, acc_t g, acc_t b) {
  return acc_t(0.299) * r + acc_t(0.587) * g + acc_t(0.114) * b;
}

// 3x3 Sobel magnitude from the nine luminance taps around a pixel, named by
// row (t = y-1, m = y, b = y+1) and column (l = x-1, c = x, r = x+1), with
// coordinates already clamped by the caller.
template <typename acc_t>
DESC_HD acc_t sobel_magnitude(acc_t tl, acc_t tc, acc_t tr, acc_t ml, acc_t mr,
                              acc_t bl, acc_t bc, acc_t br) {
  const acc_t gx = (tr + acc_t(2) * mr + br) - (tl + acc_t(2) * ml + bl);
  const acc_t gy = (bl + acc_t(2) * bc + br) - (tl + acc_t(2) * tc + tr);
  return sqrt_(gx * gx + gy * gy);
}

// e(p) = exp(-edge_weight * m(p)).
template <typename acc_t>
DESC_HD acc_t edge_term(acc_t strength, acc_t edge_weight) {
  return fast_exp(-edge_weight * strength);
}

// The softmax maximum of one pixel is 1 / sum_k exp(z_k - max_k z_k): a
// first pass over the C logits finds the max (and the argmax, the lowest
// index among ties: strict comparison), a second sums fast_exp(z_k - max).
// s = (q - 1/C) / (1 - 1/C) with q = 1 / sum_exp; s = 1 for C == 1.
template <typename acc_t>
DESC_HD acc_t logit_semantic_term(acc_t sum_exp, int64_t num_classes) {
  if (num_classes <= 1) return acc_t(1);
  const acc_t uniform = acc_t(1) / static_cast<acc_t>(num_classes);
  return (acc_t(1) / sum_exp - uniform) / (acc_t(1) - uniform);
}

// s for a label map: 0 on ignored pixels, 1 - boundary_weight where an
// in-image 4-neighbour differs, 1 elsewhere. `labels` points at the image
// (H x W, row-major).
template <typename acc_t, typename index_t>
DESC_HD acc_t label_semantic_term(const index_t* labels, int64_t y, int64_t x,
                                  int64_t H, int64_t W, index_t ignore_index,
                                  acc_t boundary_weight) {
  const index_t* p = labels + y * W + x;
  const index_t c = *p;
  if (c == ignore_index) return acc_t(0);
  const bool boundary = (y > 0 && p[-W] != c) || (y + 1 < H && p[W] != c) ||
                        (x > 0 && p[-1] != c) || (x + 1 < W && p[1] != c);
  return boundary ? acc_t(1) - boundary_weight : acc_t(1);
}

// Whether `cls` is one of the `n` classes in `ignored` (a handful at most).
DESC_HD bool is_ignored_class(int64_t cls, const int64_t* ignored, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if (ignored[i] == cls) return true;
  }
  return false;
}

// ---------------------------------------------------------------------------
// §2 consistency loss
// ---------------------------------------------------------------------------

// One pixel of weight * |depth - depth_sem| (acc_t: a float or a vector of them).
template <typename acc_t>
DESC_HDV acc_t weighted_l1(acc_t weight, acc_t depth, acc_t depth_sem) {
  return weight * abs_(depth - depth_sem);
}

// d/d depth of the above times `scale` (grad_output / normaliser).
template <typename acc_t>
DESC_HDV acc_t weighted_l1_grad(acc_t scale, acc_t weight, acc_t depth,
                               acc_t depth_sem) {
  return scale * weight * sign(depth - depth_sem);
}

// ---------------------------------------------------------------------------
// §4 instance prior
// ---------------------------------------------------------------------------

// Pseudo-depth z = focal * height / pixel_height, clamped to [0, max_depth]
// when has_max_depth; `dz_dheight` receives focal / pixel_height, or 0 where
// the clamp is active (as torch.clamp: the bounds themselves pass gradient).
template <typename acc_t>
DESC_HD acc_t pseudo_depth(acc_t focal, acc_t height, int64_t pixel_height,
                           bool has_max_depth, acc_t max_depth,
                           acc_t* dz_dheight) {
  const acc_t scale = focal / static_cast<acc_t>(pixel_height);
  const acc_t z = scale * height;
  // The gradient of torch.clamp: 0 where the clamp acts, boundaries included.
  if (has_max_depth && (z <= acc_t(0) || z >= max_depth)) {
    *dz_dheight = acc_t(0);
    return z <= acc_t(0) ? acc_t(0) : max_depth;
  }
  *dz_dheight = scale;
  return z;
}

// A depth counts towards an instance's mean and median when finite and > 0.
template <typename acc_t>
DESC_HD bool valid_depth(acc_t d) {
  return isfinite_(d) && d > acc_t(0);
}

// ---------------------------------------------------------------------------
// §5 smoothness
// ---------------------------------------------------------------------------

// w = exp(-mean_c |I_c(p) - I_c(q)|) from the channel sum of |differences|
// (T: acc_t or a vector of it), the mean a product with -1/C: a vector
// division is the slowest operation of the CPU's loop.
template <typename acc_t, typename T>
DESC_HDV T edge_aware_weight(T abs_diff_sum, int64_t channels) {
  return exp_nonpositive(abs_diff_sum * static_cast<acc_t>(-1.0 / static_cast<double>(channels)));
}

// ---------------------------------------------------------------------------
// §7 stereo photometric loss
// ---------------------------------------------------------------------------

// The sampling position of pixel column x: u = x - fb / z with z = max(depth,
// 0) + 1e-6 (the official code divides by depth + 1e-6; a negative depth is
// taken as 0, a sample far outside the image). `du_ddepth` receives
// fb / z^2 where depth >= 0 (torch.clamp's gradient), else 0. NaN propagates.
template <typename acc_t>
DESC_HDV acc_t stereo_position(acc_t x, acc_t depth, acc_t focal_baseline, acc_t* du_ddepth) {
  const bool clamped = depth < acc_t(0);
  const acc_t z = (clamped ? acc_t(0) : depth) + acc_t(1e-6);
  const acc_t disparity = focal_baseline / z;
  *du_ddepth = clamped ? acc_t(0) : disparity / z;
  return x - disparity;
}

// The two taps of a linear sample of a row of n pixels at position u, the
// row extended by zeros on both sides: pixels x0 and x0 + 1 with weights
// 1 - w1 and w1, x0 = floor(u) (at an integer u the slope is then the right
// difference, as grid_sample's). u is first clamped to [-2, n + 1], where
// both taps are zeros already: values and slopes are unchanged and the
// index cannot overflow. A NaN u gives w1 = NaN (a NaN sample).
template <typename acc_t, typename index_t>
DESC_HDV void linear_taps(acc_t u, acc_t n, index_t* x0, acc_t* w1) {
  const acc_t lo = acc_t(-2), hi = n + acc_t(1);
  const bool nan = !(u == u);
  const acc_t v = nan ? acc_t(0) : (u < lo ? lo : (u > hi ? hi : u));
  const acc_t f = floor_(v);
  *x0 = static_cast<index_t>(f);
  *w1 = nan ? u : v - f;
}

// Pixel i of a row of n pixels, 0 outside it.
template <typename acc_t, typename scalar_t>
DESC_HD acc_t row_pixel(const scalar_t* row, int64_t n, int64_t i) {
  return i >= 0 && i < n ? static_cast<acc_t>(row[i]) : acc_t(0);
}

// The sample (1 - w1) v0 + w1 v1 and its slope d/du = v1 - v0.
template <typename acc_t, typename scalar_t>
DESC_HD acc_t linear_sample(const scalar_t* row, int64_t n, int64_t x0, acc_t w1, acc_t* slope) {
  const acc_t v0 = row_pixel<acc_t>(row, n, x0), v1 = row_pixel<acc_t>(row, n, x0 + 1);
  *slope = v1 - v0;
  return v0 + w1 * (v1 - v0);
}

// Reflection of a coordinate one step outside [0, n): -1 -> 1, n -> n - 2
// (torch's "reflect" padding of width 1).
DESC_HD int64_t reflect_index(int64_t i, int64_t n) {
  return i < 0 ? -i : (i >= n ? 2 * (n - 1) - i : i);
}

// The window centres q whose 3x3 window holds pixel p, along one axis of n
// pixels, each as often as the window holds p: q in {p-1, p, p+1} where q
// has an SSIM value ([1, n-2] without padding, [0, n) with reflection) and,
// with reflection, the border centre once more where its reflected tap is p
// (p = 1: q = 0; p = n - 2: q = n - 1). Returns how many (at most 5).
DESC_HD int ssim_centres(int64_t p, int64_t n, bool reflect, int64_t* q) {
  const int64_t lo = reflect ? 0 : 1, hi = reflect ? n - 1 : n - 2;
  int k = 0;
  for (int64_t c = p - 1; c <= p + 1; ++c) {
    if (c >= lo && c <= hi) q[k++] = c;
  }
  if (reflect && p == 1) q[k++] = 0;
  if (reflect && p == n - 2) q[k++] = n - 1;
  return k;
}

constexpr double kSsimC1 = 0.01 * 0.01;
constexpr double kSsimC2 = 0.03 * 0.03;

// The dissimilarity s = clamp((1 - SSIM) / 2, 0, 1) of one channel's 3x3
// window from its nine-pixel sums of x, y, x^2, y^2 and xy (means: the sums
// / 9, as avg_pool2d; variances E[x^2] - E[x]^2).
//
// With `k` (d loss / d s) it also gives the gradient: the window's pixel p
// gets (a + 2 b y_p + c x_p) / 9 d loss / d y_p, with a = k dS/dE[y] (total,
// through the variances), b = k dS/dvar(y), c = k dS/dcov(x, y); 0 where the
// clamp acts (torch.clamp's gradient: the bounds themselves pass).
template <typename acc_t>
DESC_HDV acc_t ssim_dissimilarity(acc_t sx, acc_t sy, acc_t sxx, acc_t syy, acc_t sxy, acc_t k = acc_t(0),
                                 acc_t* a = nullptr, acc_t* b = nullptr, acc_t* c = nullptr) {
  const acc_t mx = sx / acc_t(9), my = sy / acc_t(9);
  const acc_t vx = sxx / acc_t(9) - mx * mx, vy = syy / acc_t(9) - my * my, cxy = sxy / acc_t(9) - mx * my;
  const acc_t c1 = acc_t(kSsimC1), c2 = acc_t(kSsimC2);
  const acc_t n1 = acc_t(2) * mx * my + c1, n2 = acc_t(2) * cxy + c2;
  const acc_t d1 = mx * mx + my * my + c1, d2 = vx + vy + c2;
  const acc_t ssim = (n1 * n2) / (d1 * d2);
  const acc_t s = (acc_t(1) - ssim) / acc_t(2);
  if (a != nullptr) {
    const acc_t ks = (s >= acc_t(0) && s <= acc_t(1)) ? -k / acc_t(2) : acc_t(0);  // k ds/dSSIM
    const acc_t d = d1 * d2;
    const acc_t g_cov = acc_t(2) * n1 / d;                                   // dSSIM/dcov
    const acc_t g_var = -ssim / d2;                                          // dSSIM/dvar(y)
    const acc_t g_mean = acc_t(2) * mx * n2 / d - acc_t(2) * my * ssim / d1;  // at fixed variances
    *a = ks * (g_mean - acc_t(2) * my * g_var - mx * g_cov);
    *b = ks * g_var;
    *c = ks * g_cov;
  }
  return s < acc_t(0) ? acc_t(0) : (s > acc_t(1) ? acc_t(1) : s);
}

}  // namespace math
}  // namespace desc_ops
