// instance_prior_loss and its backward on the GPU (docs/ops.md §4), for the whole
// batch at once with no host loop and no device-to-host read (the optional
// id validation aside).
//
// Forward: boxes (instance_boxes.cuh); one thread per slot for the
// pseudo-depth; one pass over the pixels for per-block L1 partials and the
// integer sign sums per slot (privatised per block in shared memory); a
// single-block pass adds the partials in order and counts N. Backward: one
// elementwise pass, and B*K tensor ops for the heights.
#include "../instance_prior_loss_checks.h"
#include "instance_boxes.cuh"

namespace desc_ops {
namespace cuda {
namespace {

template <typename scalar_t, typename acc_t>
__global__ void pseudo_depth_kernel(const int64_t* __restrict__ count, const int64_t* __restrict__ box,
                                    const scalar_t* __restrict__ heights, const acc_t* __restrict__ focal, int64_t K,
                                    int64_t slots, int64_t min_pixels, bool has_max, acc_t max_depth,
                                    acc_t* __restrict__ z, acc_t* __restrict__ dz_dh) {
  for (int64_t s = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; s < slots;
       s += static_cast<int64_t>(gridDim.x) * kThreads) {
    const acc_t h = static_cast<acc_t>(heights[s]);
    if (count[s] >= min_pixels && count[s] > 0 && math::isfinite_(h) && math::isfinite_(focal[s / K])) {
      const int64_t pixel_height = box[4 * s + 1] - box[4 * s] + 1;
      z[s] = math::pseudo_depth(focal[s / K], h, pixel_height, has_max, max_depth, dz_dh + s);
    } else {
      z[s] = std::numeric_limits<acc_t>::quiet_NaN();  // unused slot
      dz_dh[s] = acc_t(0);
    }
  }
}

template <typename scalar_t, typename index_t, typename acc_t, bool kShared>
__global__ void __launch_bounds__(kThreads) prior_forward_kernel(const scalar_t* __restrict__ depth,
                                                                 const index_t* __restrict__ ids,
                                                                 const acc_t* __restrict__ z, int64_t HW, int64_t K,
                                                                 ull* __restrict__ sign_sum,
                                                                 acc_t* __restrict__ partials,
                                                                 scalar_t* __restrict__ map) {
  extern __shared__ int s_sign[];
  const auto [b, begin, end] = block_chunk(HW);
  if (kShared) {
    for (int64_t k = threadIdx.x; k < K; k += kThreads) s_sign[k] = 0;
    __syncthreads();
  }
  acc_t total = 0;
  for (int64_t p = begin + threadIdx.x; p < end; p += kThreads) {
    const int64_t k = static_cast<int64_t>(ids[b * HW + p]);
    const acc_t zk = k >= 0 && k < K ? z[b * K + k] : std::numeric_limits<acc_t>::quiet_NaN();
    if (map != nullptr) {  // reduction "none": every pixel written, 0 off the used slots
      map[b * HW + p] = static_cast<scalar_t>(zk == zk ? math::abs_(static_cast<acc_t>(depth[b * HW + p]) - zk)
                                                        : acc_t(0));
    }
    if (zk != zk) continue;  // no instance, or an unused slot (NaN)
    const acc_t diff = static_cast<acc_t>(depth[b * HW + p]) - zk;
    total += math::abs_(diff);
    const int sgn = static_cast<int>(math::sign(diff));
    if (sgn != 0) {
      if (kShared) {
        atomicAdd(s_sign + k, sgn);
      } else {
        atomicAdd(sign_sum + b * K + k, static_cast<ull>(static_cast<long long>(sgn)));
      }
    }
  }
  acc_t unused = 0;
  block_sum2<kThreads>(total, unused);
  if (kShared) {
    for (int64_t k = threadIdx.x; k < K; k += kThreads) {
      // Two's complement: adding a negative as unsigned wraps to the right sum.
      if (s_sign[k] != 0) atomicAdd(sign_sum + b * K + k, static_cast<ull>(static_cast<long long>(s_sign[k])));
    }
  }
  if (threadIdx.x == 0) {
    const int64_t blk = linear_block();
    partials[2 * blk] = total;
    partials[2 * blk + 1] = acc_t(0);
  }
}

// Single block: S from the partials in block order, N from the used slots.
template <typename scalar_t, typename acc_t>
__global__ void prior_finish_kernel(const acc_t* __restrict__ partials, int64_t blocks,
                                    const int64_t* __restrict__ count, const acc_t* __restrict__ z, int64_t slots,
                                    bool mean, scalar_t* __restrict__ loss, acc_t* __restrict__ norm) {
  __shared__ long long smem_n[kThreads];
  acc_t s = 0, unused = 0;
  for (int64_t i = threadIdx.x; i < blocks; i += kThreads) s += partials[2 * i];
  long long pixels = 0;
  for (int64_t i = threadIdx.x; i < slots; i += kThreads) {
    if (z[i] == z[i]) pixels += count[i];
  }
  block_sum2<kThreads>(s, unused);
  pixels = block_sum<kThreads>(pixels, smem_n);
  if (threadIdx.x != 0) return;
  if (loss == nullptr) {  // reduction "none": the loss is the map
    *norm = acc_t(1);
  } else if (mean) {
    // N == 0: no used slot, the loss and its gradients are exactly 0.
    const acc_t n = pixels > 0 ? static_cast<acc_t>(pixels) : acc_t(1);
    *norm = n;
    *loss = static_cast<scalar_t>(pixels > 0 ? s / n : acc_t(0));
  } else {
    *norm = acc_t(1);
    *loss = static_cast<scalar_t>(s);
  }
}

// The gradient to depth for an upstream scalar over the norm, or with
// `slot_sum` (reduction "none") for an upstream map, whose per-pixel values
// are also summed per slot into slot_sum (float atomics: the one result of
// desc_ops that is not bitwise reproducible, docs/ops.md §4).
template <typename scalar_t, typename index_t, typename acc_t>
__global__ void prior_backward_kernel(const scalar_t* __restrict__ grad, const acc_t* __restrict__ norm,
                                      const scalar_t* __restrict__ depth, const index_t* __restrict__ ids,
                                      const acc_t* __restrict__ z, int64_t HW, int64_t K, int64_t n,
                                      scalar_t* __restrict__ grad_depth, acc_t* __restrict__ slot_sum) {
  const bool per_pixel = slot_sum != nullptr;
  const acc_t scale = per_pixel ? acc_t(0) : static_cast<acc_t>(grad[0]) / norm[0];
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * kThreads) {
    const int64_t k = static_cast<int64_t>(ids[i]);
    acc_t g = 0;
    if (k >= 0 && k < K) {
      const int64_t s = (i / HW) * K + k;
      const acc_t zk = z[s];
      if (zk == zk) {
        g = (per_pixel ? static_cast<acc_t>(grad[i]) : scale) * math::sign(static_cast<acc_t>(depth[i]) - zk);
        if (per_pixel && g != acc_t(0)) atomicAdd(slot_sum + s, g);
      }
    }
    grad_depth[i] = static_cast<scalar_t>(g);
  }
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> instance_prior_loss_cuda(
    const Tensor& depth_in, const Tensor& ids_in, const Tensor& heights_in, const Tensor& focal_in,
    int64_t min_pixels, std::optional<double> max_depth, const std::string& reduction, bool validate) {
  const int64_t K = check_prior_args(depth_in, ids_in, heights_in, max_depth, reduction, validate);
  const DeviceGuard guard(depth_in.get_device_index());
  const int64_t B = depth_in.size(0), HW = depth_in.size(2) * depth_in.size(3);
  const Tensor depth = as_contiguous(depth_in), ids = as_contiguous(ids_in), heights = as_contiguous(heights_in);
  const Tensor focal = focal_per_image(focal_in, B, depth);
  const ScalarType acc_dtype = focal.scalar_type();
  const Device device = depth.device();
  Tensor count = empty({B, K}, kLong, device), box = empty({B, K, 4}, kLong, device);
  Tensor z = empty({B, K}, acc_dtype, device), dz_dh = empty({B, K}, acc_dtype, device);
  Tensor sign_sum = zeros({B, K}, kLong, device);
  const bool none = reduction == "none";
  Tensor loss = none ? empty_as(depth) : empty({}, depth.scalar_type(), device);
  Tensor norm = empty({}, acc_dtype, device);
  const dim3 grid = chunk_grid(B, HW);
  const int64_t blocks = chunk_blocks(B, HW);
  DESC_DISPATCH_FLOATING(depth.scalar_type(), "instance_prior_loss_cuda", [&] {
    using acc_t = opmath_t<scalar_t>;
    DESC_DISPATCH_INDEX(ids.scalar_type(), "instance_prior_loss_cuda_ids", [&] {
      instance_boxes_cuda<index_t, scalar_t>(ids, nullptr, K, count, box, Tensor());
      const int64_t slots = B * K;
      if (slots > 0) {
        pseudo_depth_kernel<scalar_t, acc_t><<<grid_for(slots), kThreads, 0, stream()>>>(
            count.mutable_data_ptr<int64_t>(), box.mutable_data_ptr<int64_t>(), heights.const_data_ptr<scalar_t>(),
            focal.const_data_ptr<acc_t>(), K, slots, min_pixels, max_depth.has_value(),
            static_cast<acc_t>(max_depth.value_or(0.0)), z.mutable_data_ptr<acc_t>(), dz_dh.mutable_data_ptr<acc_t>());
        STD_CUDA_KERNEL_LAUNCH_CHECK();
      }
      const Tensor partials = zeros({blocks, 2}, acc_dtype, device);
      scalar_t* map_p = none ? loss.mutable_data_ptr<scalar_t>() : nullptr;
      if (none && (slots == 0 || HW == 0) && loss.numel() > 0) {
        STD_CUDA_CHECK(cudaMemsetAsync(map_p, 0, loss.numel() * sizeof(scalar_t), stream()));  // no instance pixel
      }
      if (slots > 0 && HW > 0) {
        auto* sign_p = reinterpret_cast<ull*>(sign_sum.mutable_data_ptr<int64_t>());
        if (K <= kMaxSharedSlots) {
          prior_forward_kernel<scalar_t, index_t, acc_t, true><<<grid, kThreads, K * sizeof(int), stream()>>>(
              depth.const_data_ptr<scalar_t>(), ids.const_data_ptr<index_t>(), z.mutable_data_ptr<acc_t>(), HW, K, sign_p,
              partials.mutable_data_ptr<acc_t>(), map_p);
        } else {
          prior_forward_kernel<scalar_t, index_t, acc_t, false><<<grid, kThreads, 0, stream()>>>(
              depth.const_data_ptr<scalar_t>(), ids.const_data_ptr<index_t>(), z.mutable_data_ptr<acc_t>(), HW, K, sign_p,
              partials.mutable_data_ptr<acc_t>(), map_p);
        }
        STD_CUDA_KERNEL_LAUNCH_CHECK();
      }
      prior_finish_kernel<scalar_t, acc_t><<<1, kThreads, 0, stream()>>>(
          partials.mutable_data_ptr<acc_t>(), blocks, count.mutable_data_ptr<int64_t>(), z.mutable_data_ptr<acc_t>(), slots,
          reduction == "mean", none ? nullptr : loss.mutable_data_ptr<scalar_t>(), norm.mutable_data_ptr<acc_t>());
      STD_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return {loss, z, dz_dh, sign_sum, norm};
}

std::tuple<Tensor, Tensor> instance_prior_loss_backward_cuda(const Tensor& grad_in,
                                                                     const Tensor& depth_in,
                                                                     const Tensor& ids_in, const Tensor& z_in,
                                                                     const Tensor& dz_dh,
                                                                     const Tensor& sign_sum,
                                                                     const Tensor& norm,
                                                                     const std::string& reduction) {
  check_prior_backward_args(grad_in, depth_in, ids_in, z_in, dz_dh, sign_sum, norm, reduction);
  const DeviceGuard guard(depth_in.get_device_index());
  const Tensor depth = as_contiguous(depth_in), ids = as_contiguous(ids_in), z = as_contiguous(z_in);
  const Tensor grad = as_contiguous(to_dtype(grad_in, depth.scalar_type()));
  const int64_t K = z.size(1), HW = depth.size(2) * depth.size(3), n = depth.numel();
  const bool none = reduction == "none";
  // "none": the per-slot sums of g sign(d - z), which the kernel fills.
  const Tensor slot_sum = none ? zeros(z.sizes(), z.scalar_type(), z.device()) : Tensor();
  Tensor grad_depth = empty_as(depth);
  if (n > 0) {
    DESC_DISPATCH_FLOATING(depth.scalar_type(), "prior_backward_cuda", [&] {
      using acc_t = opmath_t<scalar_t>;
      DESC_DISPATCH_INDEX(ids.scalar_type(), "prior_backward_cuda_ids", [&] {
        prior_backward_kernel<scalar_t, index_t, acc_t><<<grid_for(n), kThreads, 0, stream()>>>(
            grad.const_data_ptr<scalar_t>(), norm.const_data_ptr<acc_t>(), depth.const_data_ptr<scalar_t>(),
            ids.const_data_ptr<index_t>(), z.const_data_ptr<acc_t>(), HW, K, n, grad_depth.mutable_data_ptr<scalar_t>(),
            none ? slot_sum.mutable_data_ptr<acc_t>() : nullptr);
        STD_CUDA_KERNEL_LAUNCH_CHECK();
      });
    });
  }
  const Tensor grad_heights =
      none ? to_dtype(desc_ops::neg(desc_ops::mul(dz_dh, slot_sum)), depth.scalar_type())
           : prior_heights_grad(grad, norm, dz_dh, sign_sum, depth.scalar_type());
  return {grad_depth, grad_heights};
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(desc_ops, CUDA, m) {
  m.impl("instance_prior_loss", TORCH_BOX(&instance_prior_loss_cuda));
  m.impl("_instance_prior_loss_backward", TORCH_BOX(&instance_prior_loss_backward_cuda));
}

}  // namespace cuda
}  // namespace desc_ops
