// Launch helpers and deterministic reductions shared by the CUDA kernels.
//
// No floating-point atomics anywhere: every floating sum is a fixed tree
// inside a block, written as one partial per block, then added in block order
// by a single-block second pass. The grid of a launch depends only on the
// problem size, so the same inputs give the same bits on the same device.
#pragma once

#include <cuda_runtime.h>
#include <torch/csrc/stable/accelerator.h>
#include <torch/csrc/stable/macros.h>

#include <algorithm>
#include <string>

#include "../stable_api.h"

namespace desc_ops {
namespace cuda {

constexpr int kThreads = 256;

// Blocks for a grid-stride loop over n items: enough to fill any current GPU,
// and a function of n alone (so reductions are reproducible across devices
// of different sizes too).
inline int64_t grid_for(int64_t n, int threads = kThreads) {
  return std::max<int64_t>(1, std::min<int64_t>((n + threads - 1) / threads, 4096));
}

using DeviceGuard = torch::stable::accelerator::DeviceGuard;

// The current stream of the current device (a DeviceGuard has made it the
// inputs'): launches on it are ordered with torch's work and CUDA graphs.
inline cudaStream_t stream() {
  void* s = nullptr;
  DESC_SHIM_CHECK(
      aoti_torch_get_current_cuda_stream(torch::stable::accelerator::getCurrentDeviceIndex(), &s));
  return static_cast<cudaStream_t>(s);
}

// Scratch memory of `bytes` bytes (at least 1) on the device of `like`.
inline Tensor scratch_bytes(size_t bytes, const Tensor& like) {
  return empty({static_cast<int64_t>(std::max<size_t>(bytes, 1))}, ScalarType::Byte, like.device());
}

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
void launch_finish(const Tensor& partials, Finish mode, const Tensor& loss, const Tensor& norm,
                   acc_t scale_a = acc_t(0), acc_t scale_b = acc_t(0)) {
  finish_kernel<scalar_t, acc_t><<<1, kThreads, 0, stream()>>>(
      partials.const_data_ptr<acc_t>(), partials.size(0), mode, scale_a, scale_b,
      mode == Finish::kNone ? nullptr : loss.mutable_data_ptr<scalar_t>(), norm.mutable_data_ptr<acc_t>());
  STD_CUDA_KERNEL_LAUNCH_CHECK();
}

inline Finish finish_for(const std::string& reduction) {
  return reduction == "mean" ? Finish::kMeanByWeight : reduction == "sum" ? Finish::kSum : Finish::kNone;
}

}  // namespace cuda
}  // namespace desc_ops
