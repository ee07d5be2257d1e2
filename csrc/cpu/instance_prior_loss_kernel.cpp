// instance_prior_loss and its backward on the CPU (docs/ops.md §4).
//
// Forward: per image, the boxes of the slots (instance_boxes.h), the
// pseudo-depth of each used slot, then one pass over the pixels for the L1 sum
// (per-row partials, added in row order) and the integer sign sum per slot
// that the gradient to the heights needs.

#include <limits>
#include <vector>

#include "../desc_math.h"
#include "../instance_prior_loss_checks.h"
#include "instance_boxes.h"
#include "simd.h"

namespace desc_ops {
namespace cpu {
namespace {

// The runs of one image against the pseudo-depths z of its slots (NaN:
// unused, skipped): row_sum[y] += sum |d - z| of each run (in lanes added in a
// fixed tree, simd.h), sgn[k] += sum sign(d - z) (exact: small integers in
// float lanes).
template <typename scalar_t, int B, typename acc_t = opmath_t<scalar_t>>
DESC_OPS_ALWAYS_INLINE void runs_l1_body(const scalar_t* __restrict__ d_b, int64_t W, const Run* runs, int64_t n_runs,
                                         const acc_t* z, acc_t* row_sum, int64_t* sgn) {
  constexpr int N = kLanes<acc_t, B>;
  for (int64_t r = 0; r < n_runs; ++r) {
    const Run& run = runs[r];
    const acc_t zk = z[run.k];
    if (zk != zk) continue;
    const scalar_t* d = d_b + run.y * W + run.x0;
    const int64_t n = run.x1 - run.x0;
    Vec<acc_t, B> sum{}, signs{};
    int64_t i = 0;
    for (; i + N <= n; i += N) {
      const Vec<acc_t, B> diff = vload<acc_t, B>(d + i) - zk;
      sum += vabs(diff);
      signs += math::sign(diff);
    }
    if (i < n) {
      // Lanes past the run read z: a difference of 0 adds nothing.
      const Vec<acc_t, B> diff = vload_part<acc_t, B>(d + i, n - i, zk) - zk;
      sum += vabs(diff);
      signs += math::sign(diff);
    }
    row_sum[run.y] += lane_reduce(sum);
    sgn[run.k] += static_cast<int64_t>(lane_reduce(signs));
  }
}
DESC_OPS_ISA_VARIANTS(runs_l1, runs_l1_body,
                      (const scalar_t* d_b, int64_t W, const Run* runs, int64_t n_runs, const acc_t* z, acc_t* row_sum,
                       int64_t* sgn),
                      (d_b, W, runs, n_runs, z, row_sum, sgn))

// One image, every run written once: on the runs of used slots s sign(d - z)
// (the gradient) or, with kAbs, |d - z| (reduction "none"'s map); 0 elsewhere
// (ids outside [0, K), unused slots).
template <bool kAbs, typename scalar_t, int B, typename acc_t>
DESC_OPS_ALWAYS_INLINE void runs_write(const scalar_t* __restrict__ d_b, int64_t W, int64_t K, const Run* runs,
                                       int64_t n_runs, const acc_t* z, acc_t s, scalar_t* __restrict__ out_b) {
  constexpr int N = kLanes<acc_t, B>;
  for (int64_t r = 0; r < n_runs; ++r) {
    const Run& run = runs[r];
    const acc_t zk = run.k >= 0 && run.k < K ? z[run.k] : std::numeric_limits<acc_t>::quiet_NaN();
    const scalar_t* d = d_b + run.y * W + run.x0;
    scalar_t* out = out_b + run.y * W + run.x0;
    const int64_t n = run.x1 - run.x0;
    int64_t i = 0;
    if (zk != zk) {
      const Vec<acc_t, B> zero{};
      for (; i + N <= n; i += N) vstore(out + i, zero);
      if (i < n) vstore_part(out + i, zero, n - i);
      continue;
    }
    for (; i + N <= n; i += N) {
      const Vec<acc_t, B> diff = vload<acc_t, B>(d + i) - zk;
      vstore(out + i, kAbs ? vabs(diff) : Vec<acc_t, B>(s * math::sign(diff)));
    }
    if (i < n) {
      const Vec<acc_t, B> diff = vload_part<acc_t, B>(d + i, n - i) - zk;
      vstore_part(out + i, kAbs ? vabs(diff) : Vec<acc_t, B>(s * math::sign(diff)), n - i);
    }
  }
}

template <typename scalar_t, int B, typename acc_t = opmath_t<scalar_t>>
DESC_OPS_ALWAYS_INLINE void runs_grad_body(const scalar_t* d_b, int64_t W, int64_t K, const Run* runs, int64_t n_runs,
                                           const acc_t* z, acc_t s, scalar_t* g_b) {
  runs_write<false, scalar_t, B>(d_b, W, K, runs, n_runs, z, s, g_b);
}
DESC_OPS_ISA_VARIANTS(runs_grad, runs_grad_body,
                      (const scalar_t* d_b, int64_t W, int64_t K, const Run* runs, int64_t n_runs, const acc_t* z,
                       acc_t s, scalar_t* g_b),
                      (d_b, W, K, runs, n_runs, z, s, g_b))

template <typename scalar_t, int B, typename acc_t = opmath_t<scalar_t>>
DESC_OPS_ALWAYS_INLINE void runs_map_body(const scalar_t* d_b, int64_t W, int64_t K, const Run* runs, int64_t n_runs,
                                          const acc_t* z, scalar_t* m_b) {
  runs_write<true, scalar_t, B>(d_b, W, K, runs, n_runs, z, acc_t(0), m_b);
}
DESC_OPS_ISA_VARIANTS(runs_map, runs_map_body,
                      (const scalar_t* d_b, int64_t W, int64_t K, const Run* runs, int64_t n_runs, const acc_t* z,
                       scalar_t* m_b),
                      (d_b, W, K, runs, n_runs, z, m_b))

// The backward of the map for an upstream map g, one image: g sign(d - z) on
// the runs of used slots (0 elsewhere), and into slot_sum[k] the sum of those
// values over slot k, run by run in image order (the gradient to its height
// is -dz_dh times it).
template <typename scalar_t, typename index_t, typename acc_t>
void map_grad_image(const scalar_t* d_b, const scalar_t* g_b, const index_t* ids_b, int64_t H, int64_t W, int64_t K,
                    const acc_t* z, scalar_t* out_b, acc_t* slot_sum) {
  for (int64_t k = 0; k < K; ++k) slot_sum[k] = acc_t(0);
  for_each_run(ids_b, H, W, K, [&](int64_t k, int64_t y, int64_t x0, int64_t x1) {
    const acc_t zk = k >= 0 && k < K ? z[k] : std::numeric_limits<acc_t>::quiet_NaN();
    acc_t sum = 0;
    for (int64_t i = y * W + x0; i < y * W + x1; ++i) {
      const acc_t v = zk == zk ? static_cast<acc_t>(g_b[i]) * math::sign(static_cast<acc_t>(d_b[i]) - zk) : acc_t(0);
      out_b[i] = static_cast<scalar_t>(v);
      sum += v;
    }
    if (zk == zk) slot_sum[k] += sum;
  }, /*all_runs=*/true);
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> instance_prior_loss_cpu(
    const Tensor& depth_in, const Tensor& ids_in, const Tensor& heights_in,
    const Tensor& focal_in, int64_t min_pixels, std::optional<double> max_depth,
    const std::string& reduction, bool validate) {
  const int64_t K = check_prior_args(depth_in, ids_in, heights_in, max_depth, reduction, validate);
  const int64_t B = depth_in.size(0), H = depth_in.size(2), W = depth_in.size(3);
  const Tensor depth = as_contiguous(depth_in);
  const Tensor ids = as_contiguous(ids_in);
  const Tensor heights = as_contiguous(heights_in);
  const Tensor focal = focal_per_image(focal_in, B, depth);
  const auto acc_dtype = focal.scalar_type();
  const Device device = depth.device();
  Tensor count = empty({B, K}, kLong, device);
  Tensor box = empty({B, K, 4}, kLong, device);
  Tensor z = empty({B, K}, acc_dtype, device);
  Tensor dz_dh = empty({B, K}, acc_dtype, device);
  Tensor sign_sum = zeros({B, K}, kLong, device);
  const bool none = reduction == "none";
  Tensor loss = none ? empty_as(depth) : empty({}, depth.scalar_type(), device);
  Tensor norm = empty({}, acc_dtype, device);

  DESC_DISPATCH_FLOATING(depth.scalar_type(), "instance_prior_loss", [&] {
    using acc_t = opmath_t<scalar_t>;
    DESC_DISPATCH_INDEX(ids.scalar_type(), "instance_prior_loss_ids", [&] {
      const index_t* ids_p = ids.const_data_ptr<index_t>();
      const scalar_t* d_p = depth.const_data_ptr<scalar_t>();
      const scalar_t* h_p = heights.const_data_ptr<scalar_t>();
      const acc_t* f_p = focal.const_data_ptr<acc_t>();
      int64_t* count_p = count.mutable_data_ptr<int64_t>();
      int64_t* box_p = box.mutable_data_ptr<int64_t>();
      acc_t* z_p = z.mutable_data_ptr<acc_t>();
      acc_t* dz_p = dz_dh.mutable_data_ptr<acc_t>();
      int64_t* sign_p = sign_sum.mutable_data_ptr<int64_t>();
      const bool has_max = max_depth.has_value();
      const acc_t max_d = has_max ? static_cast<acc_t>(*max_depth) : acc_t(0);
      scalar_t* map_p = none ? loss.mutable_data_ptr<scalar_t>() : nullptr;
      std::vector<acc_t> image_sum(B, acc_t(0));
      std::vector<int64_t> image_pixels(B, 0);

      torch::stable::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
        std::vector<Run> runs;
        for (int64_t b = begin; b < end; ++b) {
          const index_t* ids_b = ids_p + b * H * W;
          int64_t* cnt = count_p + b * K;
          instance_boxes_image(ids_b, H, W, K, cnt, box_p + b * K * 4, &runs);
          for (int64_t k = 0; k < K; ++k) {
            const acc_t h = static_cast<acc_t>(h_p[b * K + k]);
            if (cnt[k] >= min_pixels && cnt[k] > 0 && math::isfinite_(h) && math::isfinite_(f_p[b])) {
              const int64_t pixel_height = box_p[(b * K + k) * 4 + 1] - box_p[(b * K + k) * 4] + 1;
              z_p[b * K + k] = math::pseudo_depth(f_p[b], h, pixel_height, has_max, max_d, dz_p + b * K + k);
              image_pixels[b] += cnt[k];
            } else {
              z_p[b * K + k] = std::numeric_limits<acc_t>::quiet_NaN();  // unused slot
              dz_p[b * K + k] = acc_t(0);
            }
          }
          // L1 and sign sums run by run: one z lookup per run. Row partials keep
          // the float32 sum accurate.
          int64_t* sgn = sign_p + b * K;
          std::vector<acc_t> row_sum(H, acc_t(0));
          runs_l1<scalar_t>(d_p + b * H * W, W, runs.data(), static_cast<int64_t>(runs.size()), z_p + b * K,
                            row_sum.data(), sgn);
          if (none) {
            collect_runs(ids_b, H, W, K, runs, /*all_runs=*/true);
            runs_map<scalar_t>(d_p + b * H * W, W, K, runs.data(), static_cast<int64_t>(runs.size()), z_p + b * K,
                               map_p + b * H * W);
          }
          acc_t total = 0;
          for (int64_t y = 0; y < H; ++y) total += row_sum[y];
          image_sum[b] = total;
        }
      });

      acc_t total = 0;
      int64_t pixels = 0;
      for (int64_t b = 0; b < B; ++b) {
        total += image_sum[b];
        pixels += image_pixels[b];
      }
      if (none) {
        *norm.mutable_data_ptr<acc_t>() = acc_t(1);
      } else if (reduction == "mean") {
        // N == 0: no used slot, the loss and its gradients are exactly 0.
        const acc_t n = pixels > 0 ? static_cast<acc_t>(pixels) : acc_t(1);
        *norm.mutable_data_ptr<acc_t>() = n;
        *loss.mutable_data_ptr<scalar_t>() = static_cast<scalar_t>(pixels > 0 ? total / n : acc_t(0));
      } else {
        *norm.mutable_data_ptr<acc_t>() = acc_t(1);
        *loss.mutable_data_ptr<scalar_t>() = static_cast<scalar_t>(total);
      }
    });
  });
  return {loss, z, dz_dh, sign_sum, norm};
}

// reduction "none": the gradients for an upstream map.
std::tuple<Tensor, Tensor> prior_map_backward_cpu(const Tensor& grad_in, const Tensor& depth, const Tensor& ids,
                                                  const Tensor& z, const Tensor& dz_dh_in) {
  const int64_t B = depth.size(0), H = depth.size(2), W = depth.size(3), K = z.size(1), HW = H * W;
  const Tensor grad = as_contiguous(to_dtype(grad_in, depth.scalar_type()));
  const Tensor dz_dh = as_contiguous(dz_dh_in);
  Tensor grad_depth = empty_as(depth);
  Tensor grad_heights = empty_as(dz_dh, depth.scalar_type());
  DESC_DISPATCH_FLOATING(depth.scalar_type(), "instance_prior_loss_backward", [&] {
    using acc_t = opmath_t<scalar_t>;
    DESC_DISPATCH_INDEX(ids.scalar_type(), "instance_prior_loss_backward_ids", [&] {
      const index_t* ids_p = ids.const_data_ptr<index_t>();
      const scalar_t* d_p = depth.const_data_ptr<scalar_t>();
      const scalar_t* g_p = grad.const_data_ptr<scalar_t>();
      const acc_t* z_p = z.const_data_ptr<acc_t>();
      const acc_t* dz_p = dz_dh.const_data_ptr<acc_t>();
      scalar_t* gd_p = grad_depth.mutable_data_ptr<scalar_t>();
      scalar_t* gh_p = grad_heights.mutable_data_ptr<scalar_t>();
      torch::stable::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
        std::vector<acc_t> slot_sum(K);
        for (int64_t b = begin; b < end; ++b) {
          map_grad_image(d_p + b * HW, g_p + b * HW, ids_p + b * HW, H, W, K, z_p + b * K, gd_p + b * HW,
                         slot_sum.data());
          for (int64_t k = 0; k < K; ++k) gh_p[b * K + k] = static_cast<scalar_t>(-(dz_p[b * K + k] * slot_sum[k]));
        }
      });
    });
  });
  return {grad_depth, grad_heights};
}

std::tuple<Tensor, Tensor> instance_prior_loss_backward_cpu(
    const Tensor& grad, const Tensor& depth_in, const Tensor& ids_in,
    const Tensor& z_in, const Tensor& dz_dh, const Tensor& sign_sum,
    const Tensor& norm, const std::string& reduction) {
  check_prior_backward_args(grad, depth_in, ids_in, z_in, dz_dh, sign_sum, norm, reduction);
  const Tensor depth = as_contiguous(depth_in);
  const Tensor ids = as_contiguous(ids_in);
  const Tensor z = as_contiguous(z_in);
  if (reduction == "none") return prior_map_backward_cpu(grad, depth, ids, z, dz_dh);
  const int64_t K = z.size(1), HW = depth.size(2) * depth.size(3);
  Tensor grad_heights = prior_heights_grad(grad, norm, dz_dh, sign_sum, depth.scalar_type());
  Tensor grad_depth = empty_as(depth);
  if (depth.numel() == 0) return {grad_depth, grad_heights};
  DESC_DISPATCH_FLOATING(depth.scalar_type(), "instance_prior_loss_backward", [&] {
    using acc_t = opmath_t<scalar_t>;
    DESC_DISPATCH_INDEX(ids.scalar_type(), "instance_prior_loss_backward_ids", [&] {
      const acc_t s = static_cast<acc_t>(item(grad)) / static_cast<acc_t>(item(norm));
      const index_t* ids_p = ids.const_data_ptr<index_t>();
      const scalar_t* d_p = depth.const_data_ptr<scalar_t>();
      const acc_t* z_p = z.const_data_ptr<acc_t>();
      scalar_t* g_p = grad_depth.mutable_data_ptr<scalar_t>();
      const int64_t B = depth.size(0), H = depth.size(2), W = depth.size(3);
      torch::stable::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
        std::vector<Run> runs;
        for (int64_t b = begin; b < end; ++b) {
          collect_runs(ids_p + b * HW, H, W, K, runs, /*all_runs=*/true);
          runs_grad<scalar_t>(d_p + b * HW, W, K, runs.data(), static_cast<int64_t>(runs.size()), z_p + b * K, s,
                              g_p + b * HW);
        }
      });
    });
  });
  return {grad_depth, grad_heights};
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(desc_ops, CPU, m) {
  m.impl("instance_prior_loss", TORCH_BOX(&instance_prior_loss_cpu));
  m.impl("_instance_prior_loss_backward", TORCH_BOX(&instance_prior_loss_backward_cpu));
}

}  // namespace cpu
}  // namespace desc_ops
