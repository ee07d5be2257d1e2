// Per-slot pixel counts, tight boxes and valid-depth counts of instance maps on
// the GPU (docs/ops.md §3), shared by instance_stats and instance_prior_loss.
//
// A handful of ids over a million pixels is the worst case for global atomics,
// so each block works on a chunk of one image and keeps its own counters in
// shared memory (integer atomics, exact), then merges them into the global
// ones once per slot. Above kMaxSharedSlots slots the counters stay global.
#pragma once

#include <limits>

#include "../desc_math.h"
#include "cuda_utils.cuh"

namespace desc_ops {
namespace cuda {

constexpr int64_t kMaxSharedSlots = 1024;   // 6 int counters per slot: 24 KiB of shared memory
constexpr int64_t kPixelsPerBlock = 16 * kThreads;

// A per-image chunked launch in a flat grid (gridDim.y stops at 65535
// images): block i works on chunk i % chunks of image i / chunks.
inline __host__ __device__ int64_t chunks_per_image(int64_t HW) {
  return HW > kPixelsPerBlock ? (HW + kPixelsPerBlock - 1) / kPixelsPerBlock : 1;
}

inline int64_t chunk_blocks(int64_t B, int64_t HW) { return B * chunks_per_image(HW); }

inline dim3 chunk_grid(int64_t B, int64_t HW) {
  const int64_t blocks = chunk_blocks(B, HW);
  DESC_CHECK(blocks <= INT_MAX, "the CUDA instance kernels take at most 2^31 - 1 chunks of ",
             kPixelsPerBlock, " pixels, got B=", B, " images of ", HW, " pixels");
  return dim3(static_cast<unsigned>(blocks));
}

struct Chunk {
  int64_t b, begin, end;  // image, and its pixels [begin, end)
};

__device__ __forceinline__ Chunk block_chunk(int64_t HW) {
  const int64_t chunks = chunks_per_image(HW);
  const int64_t begin = (static_cast<int64_t>(blockIdx.x) % chunks) * kPixelsPerBlock;
  return {static_cast<int64_t>(blockIdx.x) / chunks, begin, std::min<int64_t>(begin + kPixelsPerBlock, HW)};
}

using ull = unsigned long long;

template <typename index_t, typename scalar_t, bool kShared>
__global__ void __launch_bounds__(kThreads) instance_boxes_kernel(const index_t* __restrict__ ids,
                                                                  const scalar_t* __restrict__ depth, int64_t H,
                                                                  int64_t W, int64_t K, ull* __restrict__ count,
                                                                  long long* __restrict__ box,
                                                                                                         ull* __restrict__ valid_count) {
  using acc_t = opmath_t<scalar_t>;
  extern __shared__ int smem[];
  int* s_count = smem;
  int* s_ymin = smem + K;
  int* s_ymax = smem + 2 * K;
  int* s_xmin = smem + 3 * K;
  int* s_xmax = smem + 4 * K;
  int* s_valid = smem + 5 * K;
  const int64_t HW = H * W;
  const auto [b, begin, end] = block_chunk(HW);
  if (kShared) {
    for (int64_t k = threadIdx.x; k < K; k += kThreads) {
      s_count[k] = 0;
      s_ymin[k] = INT_MAX;
      s_ymax[k] = -1;
      s_xmin[k] = INT_MAX;
      s_xmax[k] = -1;
      s_valid[k] = 0;
    }
    __syncthreads();
  }
  for (int64_t p = begin + threadIdx.x; p < end; p += kThreads) {
    const int64_t k = static_cast<int64_t>(ids[b * HW + p]);
    if (k < 0 || k >= K) continue;
    const int y = static_cast<int>(p / W), x = static_cast<int>(p % W);
    const bool valid = depth != nullptr && math::valid_depth(static_cast<acc_t>(depth[b * HW + p]));
    if (kShared) {
      atomicAdd(s_count + k, 1);
      atomicMin(s_ymin + k, y);
      atomicMax(s_ymax + k, y);
      atomicMin(s_xmin + k, x);
      atomicMax(s_xmax + k, x);
      if (valid) atomicAdd(s_valid + k, 1);
    } else {
      const int64_t s = b * K + k;
      atomicAdd(count + s, ull(1));
      atomicMin(box + 4 * s, static_cast<long long>(y));
      atomicMax(box + 4 * s + 1, static_cast<long long>(y));
      atomicMin(box + 4 * s + 2, static_cast<long long>(x));
      atomicMax(box + 4 * s + 3, static_cast<long long>(x));
      if (valid) atomicAdd(valid_count + s, ull(1));
    }
  }
  if (kShared) {
    __syncthreads();
    for (int64_t k = threadIdx.x; k < K; k += kThreads) {
      if (s_count[k] == 0) continue;
      const int64_t s = b * K + k;
      atomicAdd(count + s, static_cast<ull>(s_count[k]));
      atomicMin(box + 4 * s, static_cast<long long>(s_ymin[k]));
      atomicMax(box + 4 * s + 1, static_cast<long long>(s_ymax[k]));
      atomicMin(box + 4 * s + 2, static_cast<long long>(s_xmin[k]));
      atomicMax(box + 4 * s + 3, static_cast<long long>(s_xmax[k]));
      if (valid_count != nullptr && s_valid[k] > 0) atomicAdd(valid_count + s, static_cast<ull>(s_valid[k]));
    }
  }
}

// Before the walk: counts 0 and boxes that any pixel's min/max replaces
// (after it, boxes_finish_kernel turns those of empty slots into -1).
static __global__ void boxes_init_kernel(int64_t slots, ull* __restrict__ count, long long* __restrict__ box,
                                         ull* __restrict__ valid_count) {
  for (int64_t s = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; s < slots;
       s += static_cast<int64_t>(gridDim.x) * kThreads) {
    count[s] = 0;
    if (valid_count != nullptr) valid_count[s] = 0;
    box[4 * s + 0] = box[4 * s + 2] = std::numeric_limits<long long>::max();
    box[4 * s + 1] = box[4 * s + 3] = -1;
  }
}

static __global__ void boxes_finish_kernel(int64_t slots, const ull* __restrict__ count, long long* __restrict__ box) {
  for (int64_t s = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; s < slots;
       s += static_cast<int64_t>(gridDim.x) * kThreads) {
    if (count[s] == 0) box[4 * s + 0] = box[4 * s + 2] = -1;
  }
}

// count (B, K), box (B, K, 4) and, with depth, valid_count (B, K) of the
// (contiguous) ids; empty slots get a box of -1.
template <typename index_t, typename scalar_t>
void instance_boxes_cuda(const Tensor& ids, const scalar_t* depth, int64_t K, const Tensor& count,
                         const Tensor& box, const Tensor& valid_count) {
  const int64_t B = ids.size(0), H = ids.size(1), W = ids.size(2), slots = B * K;
  if (slots == 0) return;
  ull* valid_p = valid_count.defined() ? reinterpret_cast<ull*>(valid_count.mutable_data_ptr<int64_t>()) : nullptr;
  auto* count_p = reinterpret_cast<ull*>(count.mutable_data_ptr<int64_t>());
  auto* box_p = reinterpret_cast<long long*>(box.mutable_data_ptr<int64_t>());
  boxes_init_kernel<<<grid_for(slots), kThreads, 0, stream()>>>(slots, count_p, box_p, valid_p);
  STD_CUDA_KERNEL_LAUNCH_CHECK();
  if (H * W > 0) {
    DESC_CHECK(H < INT_MAX && W < INT_MAX, "instance_ids must be smaller than 2^31 pixels a side on CUDA");
    const dim3 grid = chunk_grid(B, H * W);
    if (K <= kMaxSharedSlots) {
      instance_boxes_kernel<index_t, scalar_t, true><<<grid, kThreads, 6 * K * sizeof(int), stream()>>>(
          ids.const_data_ptr<index_t>(), depth, H, W, K, count_p, box_p, valid_p);
    } else {
      instance_boxes_kernel<index_t, scalar_t, false>
          <<<grid, kThreads, 0, stream()>>>(ids.const_data_ptr<index_t>(), depth, H, W, K, count_p, box_p, valid_p);
    }
    STD_CUDA_KERNEL_LAUNCH_CHECK();
  }
  boxes_finish_kernel<<<grid_for(slots), kThreads, 0, stream()>>>(slots, count_p, box_p);
  STD_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace cuda
}  // namespace desc_ops
