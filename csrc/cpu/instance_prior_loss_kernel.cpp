// instance_prior_loss and its backward on the CPU (docs/ops.md §4).
//
// Forward: per image, the boxes of the slots (instance_boxes.h), the
// pseudo-depth of each used slot, then one pass over the pixels for the L1 sum
// (per-row partials, added in row order) and the integer sign sum per slot
// that the gradient to the heights needs.
#include <ATen/Parallel.h>
#include <torch/library.h>

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
template <typename scalar_t, int B, typename acc_t = at::opmath_type<scalar_t>>
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

// The gradient of one image, every run written once: s sign(d - z) on the
// runs of used slots, 0 elsewhere (ids outside [0, K), unused slots).
template <typename scalar_t, int B, typename acc_t = at::opmath_type<scalar_t>>
DESC_OPS_ALWAYS_INLINE void runs_grad_body(const scalar_t* __restrict__ d_b, int64_t W, int64_t K, const Run* runs,
                                           int64_t n_runs, const acc_t* z, acc_t s, scalar_t* __restrict__ g_b) {
  constexpr int N = kLanes<acc_t, B>;
  for (int64_t r = 0; r < n_runs; ++r) {
    const Run& run = runs[r];
    const acc_t zk = run.k >= 0 && run.k < K ? z[run.k] : std::numeric_limits<acc_t>::quiet_NaN();
    const scalar_t* d = d_b + run.y * W + run.x0;
    scalar_t* g = g_b + run.y * W + run.x0;
    const int64_t n = run.x1 - run.x0;
    int64_t i = 0;
    if (zk != zk) {
      const Vec<acc_t, B> zero{};
      for (; i + N <= n; i += N) vstore(g + i, zero);
      if (i < n) vstore_part(g + i, zero, n - i);
      continue;
    }
    for (; i + N <= n; i += N) vstore(g + i, Vec<acc_t, B>(s * math::sign(Vec<acc_t, B>(vload<acc_t, B>(d + i) - zk))));
    if (i < n) {
      vstore_part(g + i, Vec<acc_t, B>(s * math::sign(Vec<acc_t, B>(vload_part<acc_t, B>(d + i, n - i) - zk))), n - i);
    }
  }
}
DESC_OPS_ISA_VARIANTS(runs_grad, runs_grad_body,
                      (const scalar_t* d_b, int64_t W, int64_t K, const Run* runs, int64_t n_runs, const acc_t* z,
                       acc_t s, scalar_t* g_b),
                      (d_b, W, K, runs, n_runs, z, s, g_b))

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> instance_prior_loss_cpu(
    const at::Tensor& depth_in, const at::Tensor& ids_in, const at::Tensor& heights_in,
    const at::Tensor& focal_in, int64_t min_pixels, std::optional<double> max_depth,
    c10::string_view reduction_sv, bool validate) {
  const std::string reduction(reduction_sv);
  const int64_t K = check_prior_args(depth_in, ids_in, heights_in, max_depth, reduction, validate);
  const int64_t B = depth_in.size(0), H = depth_in.size(2), W = depth_in.size(3);
  const at::Tensor depth = depth_in.contiguous();
  const at::Tensor ids = ids_in.contiguous();
  const at::Tensor heights = heights_in.contiguous();
  const at::Tensor focal = focal_per_image(focal_in, B, depth);
  const auto acc_dtype = focal.scalar_type();
  const auto long_opts = ids.options().dtype(at::kLong);
  at::Tensor count = at::empty({B, K}, long_opts);
  at::Tensor box = at::empty({B, K, 4}, long_opts);
  at::Tensor z = at::empty({B, K}, depth.options().dtype(acc_dtype));
  at::Tensor dz_dh = at::empty({B, K}, depth.options().dtype(acc_dtype));
  at::Tensor sign_sum = at::zeros({B, K}, long_opts);
  at::Tensor loss = at::empty({}, depth.options());
  at::Tensor norm = at::empty({}, depth.options().dtype(acc_dtype));

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, depth.scalar_type(), "instance_prior_loss", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    AT_DISPATCH_INDEX_TYPES(ids.scalar_type(), "instance_prior_loss_ids", [&] {
      const index_t* ids_p = ids.data_ptr<index_t>();
      const scalar_t* d_p = depth.data_ptr<scalar_t>();
      const scalar_t* h_p = heights.data_ptr<scalar_t>();
      const acc_t* f_p = focal.data_ptr<acc_t>();
      int64_t* count_p = count.data_ptr<int64_t>();
      int64_t* box_p = box.data_ptr<int64_t>();
      acc_t* z_p = z.data_ptr<acc_t>();
      acc_t* dz_p = dz_dh.data_ptr<acc_t>();
      int64_t* sign_p = sign_sum.data_ptr<int64_t>();
      const bool has_max = max_depth.has_value();
      const acc_t max_d = has_max ? static_cast<acc_t>(*max_depth) : acc_t(0);
      std::vector<acc_t> image_sum(B, acc_t(0));
      std::vector<int64_t> image_pixels(B, 0);

      at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
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
      if (reduction == "mean") {
        // N == 0: no used slot, the loss and its gradients are exactly 0.
        const acc_t n = pixels > 0 ? static_cast<acc_t>(pixels) : acc_t(1);
        norm.fill_(n);
        loss.fill_(pixels > 0 ? total / n : acc_t(0));
      } else {
        norm.fill_(acc_t(1));
        loss.fill_(total);
      }
    });
  });
  return {loss, z, dz_dh, sign_sum, norm};
}

std::tuple<at::Tensor, at::Tensor> instance_prior_loss_backward_cpu(
    const at::Tensor& grad, const at::Tensor& depth_in, const at::Tensor& ids_in,
    const at::Tensor& z_in, const at::Tensor& dz_dh, const at::Tensor& sign_sum,
    const at::Tensor& norm) {
  check_prior_backward_args(grad, depth_in, ids_in, z_in, dz_dh, sign_sum, norm);
  const at::Tensor depth = depth_in.contiguous();
  const at::Tensor ids = ids_in.contiguous();
  const at::Tensor z = z_in.contiguous();
  const int64_t K = z.size(1), HW = depth.size(2) * depth.size(3);
  at::Tensor grad_heights = prior_heights_grad(grad, norm, dz_dh, sign_sum, depth.scalar_type());
  const at::Tensor scale = grad.to(z.scalar_type()) / norm;
  at::Tensor grad_depth = at::empty_like(depth);
  if (depth.numel() == 0) return {grad_depth, grad_heights};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, depth.scalar_type(), "instance_prior_loss_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    AT_DISPATCH_INDEX_TYPES(ids.scalar_type(), "instance_prior_loss_backward_ids", [&] {
      const acc_t s = scale.item<acc_t>();
      const index_t* ids_p = ids.data_ptr<index_t>();
      const scalar_t* d_p = depth.data_ptr<scalar_t>();
      const acc_t* z_p = z.data_ptr<acc_t>();
      scalar_t* g_p = grad_depth.data_ptr<scalar_t>();
      const int64_t B = depth.size(0), H = depth.size(2), W = depth.size(3);
      at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
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

TORCH_LIBRARY_IMPL(desc_ops, CPU, m) {
  m.impl("instance_prior_loss", &instance_prior_loss_cpu);
  m.impl("_instance_prior_loss_backward", &instance_prior_loss_backward_cpu);
}

}  // namespace cpu
}  // namespace desc_ops
