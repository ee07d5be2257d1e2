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

namespace desc_ops {
namespace cpu {
namespace {

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
        for (int64_t b = begin; b < end; ++b) {
          const index_t* ids_b = ids_p + b * H * W;
          int64_t* cnt = count_p + b * K;
          instance_boxes_image(ids_b, H, W, K, cnt, box_p + b * K * 4);
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
          const scalar_t* d_b = d_p + b * H * W;
          for_each_run(ids_b, H, W, K, [&](int64_t k, int64_t y, int64_t x0, int64_t x1) {
            const acc_t zk = z_p[b * K + k];
            if (zk != zk) return;  // NaN marks an unused slot
            const scalar_t* d = d_b + y * W + x0;
            const int64_t len = x1 - x0;
            acc_t s = 0;
            int64_t signs = 0;
            for (int64_t i = 0; i < len; ++i) {
              const acc_t diff = static_cast<acc_t>(d[i]) - zk;
              s += math::abs_(diff);
              signs += static_cast<int64_t>(math::sign(diff));
            }
            row_sum[y] += s;
            sgn[k] += signs;
          });
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
        for (int64_t b = begin; b < end; ++b) {
          scalar_t* g_b = g_p + b * HW;
          std::fill(g_b, g_b + HW, scalar_t(0));
          for_each_run(ids_p + b * HW, H, W, K, [&](int64_t k, int64_t y, int64_t x0, int64_t x1) {
            const acc_t zk = z_p[b * K + k];
            if (zk != zk) return;
            const scalar_t* d = d_p + b * HW + y * W + x0;
            scalar_t* g = g_b + y * W + x0;
            const int64_t len = x1 - x0;
            for (int64_t i = 0; i < len; ++i) g[i] = static_cast<scalar_t>(s * math::sign(static_cast<acc_t>(d[i]) - zk));
          });
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
