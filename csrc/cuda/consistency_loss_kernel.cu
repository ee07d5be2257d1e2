// consistency_loss, the fused semantic_consistency_loss and their common
// backward on the GPU (docs/ops.md §2).
//
// The fused forward reads depth, depth_sem, the C logits (or the labels) and
// the image once, writes the confidence (what the backward needs) and one
// (S, W) partial per 32 x 8 tile; a single-block pass adds the partials in
// tile order. consistency_loss runs the same tiles with the weight as input.
// The backward is one elementwise pass.
#include "../consistency_loss_checks.h"
#include "confidence_tile.cuh"

namespace desc_ops {
namespace cuda {
namespace {

// Folds each pixel's confidence into the weighted L1 and reduces per block.
template <typename scalar_t>
struct WeightedL1Sink {
  using acc_t = opmath_t<scalar_t>;
  const scalar_t* depth;
  const scalar_t* depth_sem;
  scalar_t* confidence;  // null when the confidence is an input
  scalar_t* loss_map;    // reduction "none", else null
  acc_t* partials;
  int64_t H, W;

  __device__ void operator()(int64_t b, int64_t y, int64_t x, bool inside, acc_t c) const {
    acc_t l = 0, w = 0;
    if (inside) {
      const int64_t i = (b * H + y) * W + x;
      const scalar_t c_out = static_cast<scalar_t>(c);
      if (confidence != nullptr) confidence[i] = c_out;
      // The stored (rounded) confidence is the weight, so the fused loss is
      // consistency_loss(confidence_map(...)) exactly.
      w = static_cast<acc_t>(c_out);
      l = math::weighted_l1(w, static_cast<acc_t>(depth[i]), static_cast<acc_t>(depth_sem[i]));
      if (loss_map != nullptr) loss_map[i] = static_cast<scalar_t>(l);
    }
    block_sum2<kThreads>(l, w);
    if (threadIdx.x == 0 && threadIdx.y == 0) {
      const int64_t blk = linear_block();
      partials[2 * blk] = l;
      partials[2 * blk + 1] = w;
    }
  }
};

// consistency_loss: the same tiles and the same sink as the fused kernel, with
// the confidence read from `weight`, so both reduce in one order and the
// fused loss equals consistency_loss(confidence_map(...)) to the bit.
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads) weight_tile_kernel(const scalar_t* __restrict__ weight, int64_t H,
                                                               int64_t W, const WeightedL1Sink<scalar_t> sink) {
  using acc_t = opmath_t<scalar_t>;
  const auto [b, y0, x0] = tile_origin(H, W);
  const int64_t y = y0 + threadIdx.y, x = x0 + threadIdx.x;
  const bool inside = y < H && x < W;
  sink(b, y, x, inside, inside ? static_cast<acc_t>(weight[(b * H + y) * W + x]) : acc_t(0));
}

// (loss, norm) outputs of a reduction (loss is the map for "none").
std::tuple<Tensor, Tensor> loss_outputs(const Tensor& depth, const std::string& reduction) {
  const Tensor loss = reduction == "none" ? empty_as(depth) : empty({}, depth.scalar_type(), depth.device());
  return {loss, empty({}, opmath_dtype(depth.scalar_type()), depth.device())};
}

std::tuple<Tensor, Tensor> consistency_loss_cuda(const Tensor& depth_in, const Tensor& depth_sem_in,
                                                         const Tensor& weight_in, const std::string& reduction) {
  check_consistency_args(depth_in, depth_sem_in, weight_in, reduction);
  const DeviceGuard guard(depth_in.get_device_index());
  const Tensor depth = as_contiguous(depth_in), depth_sem = as_contiguous(depth_sem_in),
                   weight = as_contiguous(weight_in);
  Tensor loss, norm;
  std::tie(loss, norm) = loss_outputs(depth, reduction);
  const int64_t B = depth.size(0), H = depth.size(2), W = depth.size(3);
  DESC_DISPATCH_FLOATING(depth.scalar_type(), "consistency_loss_cuda", [&] {
    using acc_t = opmath_t<scalar_t>;
    const Tensor partials = zeros({tile_blocks(B, H, W), 2}, norm.scalar_type(), norm.device());
    if (depth.numel() > 0) {
      const WeightedL1Sink<scalar_t> sink{depth.const_data_ptr<scalar_t>(),
                                          depth_sem.const_data_ptr<scalar_t>(),
                                          nullptr,
                                          reduction == "none" ? loss.mutable_data_ptr<scalar_t>() : nullptr,
                                          partials.mutable_data_ptr<acc_t>(),
                                          H,
                                          W};
      weight_tile_kernel<scalar_t><<<tile_grid(B, H, W), dim3(kTileW, kTileH), 0, stream()>>>(
          weight.const_data_ptr<scalar_t>(), H, W, sink);
      STD_CUDA_KERNEL_LAUNCH_CHECK();
    }
    launch_finish<scalar_t, acc_t>(partials, finish_for(reduction), loss, norm);
  });
  return {loss, norm};
}

std::tuple<Tensor, Tensor, Tensor> semantic_consistency_loss_cuda(
    const Tensor& depth_in, const Tensor& depth_sem_in, const Tensor& semantic,
    const std::optional<Tensor>& image, const std::optional<Tensor>& edges, double edge_weight,
    double boundary_weight, int64_t ignore_index, const std::optional<Tensor>& ignore_classes,
    const std::string& reduction) {
  const ConfidenceArgs a = semantic_consistency_args(depth_in, depth_sem_in, semantic, image, edges, edge_weight,
                                                     boundary_weight, ignore_index, ignore_classes, reduction);
  const DeviceGuard guard(depth_in.get_device_index());
  const Tensor depth = as_contiguous(depth_in), depth_sem = as_contiguous(depth_sem_in);
  Tensor confidence = empty_as(depth);
  Tensor loss, norm;
  std::tie(loss, norm) = loss_outputs(depth, reduction);
  dispatch_confidence_view(a, [&](const auto& view) {
    using View = std::decay_t<decltype(view)>;
    using scalar_t = typename View::scalar_type;
    using index_t = typename View::index_type;
    using acc_t = opmath_t<scalar_t>;
    const Tensor partials = zeros({tile_blocks(a.B, a.H, a.W), 2}, norm.scalar_type(), norm.device());
    if (depth.numel() > 0) {
      const WeightedL1Sink<scalar_t> sink{depth.const_data_ptr<scalar_t>(),
                                          depth_sem.const_data_ptr<scalar_t>(),
                                          confidence.mutable_data_ptr<scalar_t>(),
                                          reduction == "none" ? loss.mutable_data_ptr<scalar_t>() : nullptr,
                                          partials.mutable_data_ptr<acc_t>(),
                                          a.H,
                                          a.W};
      confidence_tile_kernel<scalar_t, index_t, WeightedL1Sink<scalar_t>>
          <<<tile_grid(a.B, a.H, a.W), dim3(kTileW, kTileH), 0, stream()>>>(view, sink);
      STD_CUDA_KERNEL_LAUNCH_CHECK();
    }
    launch_finish<scalar_t, acc_t>(partials, finish_for(reduction), loss, norm);
  });
  return {loss, confidence, norm};
}

// d/d depth = scale * weight * sign(depth - depth_sem), scale = grad / norm
// (grad per pixel for "none"); d/d depth_sem is its negative.
template <typename scalar_t, typename acc_t>
__global__ void weighted_l1_backward_kernel(const scalar_t* __restrict__ grad, bool grad_is_map,
                                            const acc_t* __restrict__ norm, const scalar_t* __restrict__ depth,
                                            const scalar_t* __restrict__ depth_sem,
                                            const scalar_t* __restrict__ weight, scalar_t* __restrict__ grad_depth,
                                            scalar_t* __restrict__ grad_depth_sem, int64_t n) {
  const acc_t scale = grad_is_map ? acc_t(0) : static_cast<acc_t>(grad[0]) / norm[0];
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * kThreads) {
    const acc_t s = grad_is_map ? static_cast<acc_t>(grad[i]) : scale;
    const acc_t g = math::weighted_l1_grad(s, static_cast<acc_t>(weight[i]), static_cast<acc_t>(depth[i]),
                                           static_cast<acc_t>(depth_sem[i]));
    grad_depth[i] = static_cast<scalar_t>(g);
    grad_depth_sem[i] = static_cast<scalar_t>(-g);
  }
}

std::tuple<Tensor, Tensor> consistency_loss_backward_cuda(const Tensor& grad_in,
                                                                  const Tensor& depth_in,
                                                                  const Tensor& depth_sem_in,
                                                                  const Tensor& weight_in, const Tensor& norm,
                                                                  const std::string& reduction) {
  check_consistency_backward_args(grad_in, depth_in, depth_sem_in, weight_in, norm, reduction);
  const DeviceGuard guard(depth_in.get_device_index());
  const Tensor depth = as_contiguous(depth_in), depth_sem = as_contiguous(depth_sem_in),
                   weight = as_contiguous(weight_in);
  // grad may be an expanded scalar; the map case needs it dense.
  const Tensor grad = as_contiguous(to_dtype(grad_in, depth.scalar_type()));
  Tensor grad_depth = empty_as(depth), grad_depth_sem = empty_as(depth);
  const int64_t n = depth.numel();
  if (n == 0) return {grad_depth, grad_depth_sem};
  DESC_DISPATCH_FLOATING(depth.scalar_type(), "consistency_backward_cuda", [&] {
    using acc_t = opmath_t<scalar_t>;
    weighted_l1_backward_kernel<scalar_t, acc_t><<<grid_for(n), kThreads, 0, stream()>>>(
        grad.const_data_ptr<scalar_t>(), reduction == "none", norm.const_data_ptr<acc_t>(), depth.const_data_ptr<scalar_t>(),
        depth_sem.const_data_ptr<scalar_t>(), weight.const_data_ptr<scalar_t>(), grad_depth.mutable_data_ptr<scalar_t>(),
        grad_depth_sem.mutable_data_ptr<scalar_t>(), n);
    STD_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {grad_depth, grad_depth_sem};
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(desc_ops, CUDA, m) {
  m.impl("consistency_loss", TORCH_BOX(&consistency_loss_cuda));
  m.impl("semantic_consistency_loss", TORCH_BOX(&semantic_consistency_loss_cuda));
  m.impl("_consistency_loss_backward", TORCH_BOX(&consistency_loss_backward_cuda));
}

}  // namespace cuda
}  // namespace desc_ops
