// smoothness_loss and its backward on the CPU (spec §5). The backward
// recomputes the edge-aware weights from the image instead of saving two
// maps of them: one extra read of the image against two saved maps.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "../desc_math.h"
#include "../smoothness_loss.h"

namespace desc_ops {
namespace cpu {
namespace {

// Edge-aware weights between pixel p and pixel p + offset of a (C, H, W) image
// whose plane stride is HW, for n consecutive pixels starting at p.
template <typename scalar_t, typename acc_t>
void edge_weights(const scalar_t* image, int64_t C, int64_t HW, int64_t offset, int64_t n,
                  acc_t* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = acc_t(0);
  for (int64_t c = 0; c < C; ++c) {
    const scalar_t* p = image + c * HW;
    for (int64_t i = 0; i < n; ++i) {
      out[i] += math::abs_(static_cast<acc_t>(p[i]) - static_cast<acc_t>(p[i + offset]));
    }
  }
  for (int64_t i = 0; i < n; ++i) out[i] = math::edge_aware_weight(out[i], C);
}

at::Tensor smoothness_loss_cpu(const at::Tensor& depth_in, const at::Tensor& image_in) {
  check_smoothness_args(depth_in, image_in);
  TORCH_CHECK_VALUE(depth_in.numel() > 0, "depth is empty (", describe(depth_in),
                    "): smoothness_loss is a mean over its pixels");
  const at::Tensor depth = depth_in.contiguous();
  const at::Tensor image = image_in.contiguous();
  const int64_t B = depth.size(0), C = image.size(1), H = depth.size(2), W = depth.size(3);
  at::Tensor loss = at::empty({}, depth.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, depth.scalar_type(), "smoothness_loss", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* d_p = depth.data_ptr<scalar_t>();
    const scalar_t* i_p = image.data_ptr<scalar_t>();
    std::vector<acc_t> partial_x(B * H, acc_t(0)), partial_y(B * H, acc_t(0));
    at::parallel_for(0, B * H, std::max<int64_t>(1, 8192 / W), [&](int64_t begin, int64_t end) {
      std::vector<acc_t> w(W);
      for (int64_t r = begin; r < end; ++r) {
        const int64_t b = r / H, y = r % H;
        const scalar_t* d = d_p + r * W;
        const scalar_t* img = i_p + b * C * H * W + y * W;
        acc_t sx = 0, sy = 0;
        edge_weights(img, C, H * W, 1, W - 1, w.data());
        for (int64_t x = 0; x + 1 < W; ++x) {
          sx += math::abs_(static_cast<acc_t>(d[x]) - static_cast<acc_t>(d[x + 1])) * w[x];
        }
        if (y + 1 < H) {
          edge_weights(img, C, H * W, W, W, w.data());
          for (int64_t x = 0; x < W; ++x) {
            sy += math::abs_(static_cast<acc_t>(d[x]) - static_cast<acc_t>(d[x + W])) * w[x];
          }
        }
        partial_x[r] = sx;
        partial_y[r] = sy;
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
  check_smoothness_args(depth_in, image_in);
  TORCH_CHECK_VALUE(grad.numel() == 1, "grad must have one element, got ", describe(grad));
  const at::Tensor depth = depth_in.contiguous();
  const at::Tensor image = image_in.contiguous();
  const int64_t B = depth.size(0), C = image.size(1), H = depth.size(2), W = depth.size(3);
  at::Tensor grad_depth = at::empty_like(depth);
  if (depth.numel() == 0) return grad_depth;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, depth.scalar_type(), "smoothness_loss_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const acc_t g = static_cast<acc_t>(grad.item<double>());
    const auto [ax, ay] = smoothness_term_scales<acc_t>(B, H, W);
    const acc_t gx = g * ax, gy = g * ay;
    const scalar_t* d_p = depth.data_ptr<scalar_t>();
    const scalar_t* i_p = image.data_ptr<scalar_t>();
    scalar_t* g_p = grad_depth.data_ptr<scalar_t>();
    at::parallel_for(0, B * H, std::max<int64_t>(1, 8192 / W), [&](int64_t begin, int64_t end) {
      std::vector<acc_t> wx(W), wup(W), wdown(W);
      for (int64_t r = begin; r < end; ++r) {
        const int64_t b = r / H, y = r % H;
        const scalar_t* d = d_p + r * W;
        const scalar_t* img = i_p + b * C * H * W + y * W;
        edge_weights(img, C, H * W, 1, W - 1, wx.data());
        if (y > 0) edge_weights(img - W, C, H * W, W, W, wup.data());
        if (y + 1 < H) edge_weights(img, C, H * W, W, W, wdown.data());
        for (int64_t x = 0; x < W; ++x) {
          const acc_t dc = static_cast<acc_t>(d[x]);
          acc_t v = 0;
          // d|d(x) - d(x+1)| / d d(x) and d|d(x-1) - d(x)| / d d(x), likewise along y.
          if (x + 1 < W) v += gx * wx[x] * math::sign(dc - static_cast<acc_t>(d[x + 1]));
          if (x > 0) v -= gx * wx[x - 1] * math::sign(static_cast<acc_t>(d[x - 1]) - dc);
          if (y + 1 < H) v += gy * wdown[x] * math::sign(dc - static_cast<acc_t>(d[x + W]));
          if (y > 0) v -= gy * wup[x] * math::sign(static_cast<acc_t>(d[x - W]) - dc);
          g_p[r * W + x] = static_cast<scalar_t>(v);
        }
      }
    });
  });
  return grad_depth;
}

}  // namespace

TORCH_LIBRARY_IMPL(desc_ops, CPU, m) {
  m.impl("smoothness_loss", &smoothness_loss_cpu);
  m.impl("smoothness_loss_backward", &smoothness_loss_backward_cpu);
}

}  // namespace cpu
}  // namespace desc_ops
