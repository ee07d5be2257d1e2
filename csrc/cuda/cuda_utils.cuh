// Launch helpers and deterministic reductions shared by the CUDA kernels.
//
// No floating-point atomics anywhere: every floating sum is a fixed tree
// inside a block, written as one partial per block, then added in block order
// by a single-block second pass. The grid of a launch depends only on the
// problem size, so the same inputs give the same bits on the same device.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>

namespace desc_ops {
namespace cuda {

constexpr int kThreads = 256;

// Blocks for a grid-stride loop over n items: enough to fill any current GPU,
// and a function of n alone (so reductions are reproducible across devices
// of different sizes too).
inline int64_t grid_for(int64_t n, int threads = kThreads) {
  return std::max<int64_t>(1, std::min<int64_t>((n + threads - 1) / threads, 4096));
}

inline cudaStream_t stream() { return at::cuda::getCurrentCUDAStream(); }

// Sum over the block's threads (blockDim.x * blockDim.y == BLOCK) in a fixed
// tree; every thread gets the result. `smem` holds BLOCK values.
template <int BLOCK, typename T>
__device__ __forceinline__ T block_sum(T v, T* smem) {
  const int tid = threadIdx.y * blockDim.x + threadIdx.x;
  smem[tid] = v;
  __syncthreads();
#pragma unroll
  for (int s = BLOCK / 2; s > 0; s >>= 1) {
    if (tid < s) smem[tid] += smem[tid + s];
    __syncthreads();
  }
  const T r = smem[0];
  __syncthreads();
  return r;
}

// Two sums at once (a loss and its normaliser).
template <int BLOCK, typename T>
__device__ __forceinline__ void block_sum2(T& a, T& b) {
  __shared__ T smem[BLOCK];
  a = block_sum<BLOCK>(a, smem);
  b = block_sum<BLOCK>(b, smem);
}

__device__ __forceinline__ int64_t linear_block() {
  return (static_cast<int64_t>(blockIdx.z) * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
}

// How the two columns (S, W) of the per-block partials make the loss and its
// normaliser.
enum class Finish : int {
  kMeanByWeight = 0,  // loss = S / W (0 if W == 0), norm = W (1 if W == 0)
  kSum = 1,           // loss = S, norm = 1
  kNone = 2,          // loss is a map written elsewhere, norm = 1
  kScaled = 3,        // loss = S * scale_a + W * scale_b, norm = 1
};

// Single block: adds the partials in block order, writes loss and norm.
template <typename scalar_t, typename acc_t>
__global__ void finish_kernel(const acc_t* __restrict__ partials, int64_t n, Finish mode, acc_t scale_a,
                              acc_t scale_b, scalar_t* __restrict__ loss, acc_t* __restrict__ norm) {
  acc_t s = 0, w = 0;
  for (int64_t i = threadIdx.x; i < n; i += kThreads) {
    s += partials[2 * i];
    w += partials[2 * i + 1];
  }
  block_sum2<kThreads>(s, w);
  if (threadIdx.x != 0) return;
  switch (mode) {
    case Finish::kMeanByWeight:
      *loss = static_cast<scalar_t>(w != acc_t(0) ? s / w : acc_t(0));
      *norm = w != acc_t(0) ? w : acc_t(1);
      break;
    case Finish::kSum:
      *loss = static_cast<scalar_t>(s);
      *norm = acc_t(1);
      break;
    case Finish::kNone:
      *norm = acc_t(1);
      break;
    case Finish::kScaled:
      *loss = static_cast<scalar_t>(s * scale_a + w * scale_b);
      *norm = acc_t(1);
      break;
  }
}

template <typename scalar_t, typename acc_t>
void launch_finish(const at::Tensor& partials, Finish mode, const at::Tensor& loss, const at::Tensor& norm,
                   acc_t scale_a = acc_t(0), acc_t scale_b = acc_t(0)) {
  finish_kernel<scalar_t, acc_t><<<1, kThreads, 0, stream()>>>(
      partials.data_ptr<acc_t>(), partials.size(0), mode, scale_a, scale_b,
      mode == Finish::kNone ? nullptr : loss.data_ptr<scalar_t>(), norm.data_ptr<acc_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

inline Finish finish_for(const std::string& reduction) {
  return reduction == "mean" ? Finish::kMeanByWeight : reduction == "sum" ? Finish::kSum : Finish::kNone;
}

}  // namespace cuda
}  // namespace desc_ops
