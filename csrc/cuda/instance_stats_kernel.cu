// instance_stats on the GPU (docs/ops.md §3), for the whole batch at once with no
// host loop and no device-to-host read (the optional id validation aside).
//
// Counts, boxes and valid counts: instance_boxes.cuh. Mean and exact lower
// median: the valid depths are grouped by slot and sorted within each slot by
// two stable radix sorts (by depth, then by slot), so that the median of slot
// s is one read at start_s + (n_s - 1) / 2, and the mean a segmented sum of
// the group (a fixed tree per segment, no float atomics).
#include <torch/library.h>

#include <cub/cub.cuh>

#include "../instance_checks.h"
#include "instance_boxes.cuh"

namespace desc_ops {
namespace cuda {
namespace {

// Slot of each pixel whose depth counts (b * K + k), or B * K for the others.
template <typename index_t, typename acc_t>
__global__ void valid_slot_kernel(const index_t* __restrict__ ids, const acc_t* __restrict__ depth, int64_t HW,
                                  int64_t K, int64_t n, int64_t* __restrict__ slot) {
  const int64_t none = (n / std::max<int64_t>(HW, 1)) * K;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * kThreads) {
    const int64_t k = static_cast<int64_t>(ids[i]);
    slot[i] = (k >= 0 && k < K && math::valid_depth(depth[i])) ? (i / HW) * K + k : none;
  }
}

template <typename scalar_t, typename acc_t>
__global__ void mean_median_kernel(const acc_t* __restrict__ grouped, const int64_t* __restrict__ start,
                                   const int64_t* __restrict__ valid_count, const double* __restrict__ sums,
                                   int64_t slots, scalar_t* __restrict__ mean, scalar_t* __restrict__ median) {
  const acc_t nan = std::numeric_limits<acc_t>::quiet_NaN();
  for (int64_t s = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; s < slots;
       s += static_cast<int64_t>(gridDim.x) * kThreads) {
    const int64_t n = valid_count[s];
    mean[s] = static_cast<scalar_t>(n > 0 ? sums[s] / static_cast<double>(n) : static_cast<double>(nan));
    median[s] = static_cast<scalar_t>(n > 0 ? grouped[start[s] + (n - 1) / 2] : nan);
  }
}

at::Tensor cub_temp(size_t bytes, const at::Tensor& like) {
  return at::empty({static_cast<int64_t>(std::max<size_t>(bytes, 1))}, like.options().dtype(at::kByte));
}

template <typename index_t, typename scalar_t>
void depth_stats_cuda(const at::Tensor& ids, const at::Tensor& depth, int64_t K, const at::Tensor& valid_count,
                      const at::Tensor& mean, const at::Tensor& median) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t n = ids.numel(), slots = valid_count.numel();
  TORCH_CHECK_VALUE(n < INT_MAX && slots < INT_MAX, "instance_stats on CUDA takes fewer than 2^31 pixels and slots");
  const at::Tensor d = depth.to(std::is_same_v<acc_t, double> ? at::kDouble : at::kFloat).reshape({-1});
  const at::Tensor slot = at::empty({n}, ids.options().dtype(at::kLong));
  if (n > 0) {
    valid_slot_kernel<index_t, acc_t><<<grid_for(n), kThreads, 0, stream()>>>(
        ids.data_ptr<index_t>(), d.data_ptr<acc_t>(), ids.size(1) * ids.size(2), K, n, slot.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  // Sort by depth, then stably by slot: valid depths grouped by slot, ascending.
  const at::Tensor d_sorted = at::empty_like(d), slot_by_depth = at::empty_like(slot);
  const at::Tensor grouped = at::empty_like(d), slot_grouped = at::empty_like(slot);
  int end_bit = 1;
  while ((int64_t(1) << end_bit) <= slots) ++end_bit;  // slot values lie in [0, slots]
  if (n > 0) {
    size_t bytes = 0;
    cub::DeviceRadixSort::SortPairs(nullptr, bytes, d.data_ptr<acc_t>(), d_sorted.data_ptr<acc_t>(),
                                    slot.data_ptr<int64_t>(), slot_by_depth.data_ptr<int64_t>(), static_cast<int>(n),
                                    0, int(sizeof(acc_t) * 8), stream());
    at::Tensor temp = cub_temp(bytes, ids);
    C10_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
        temp.data_ptr(), bytes, d.data_ptr<acc_t>(), d_sorted.data_ptr<acc_t>(), slot.data_ptr<int64_t>(),
        slot_by_depth.data_ptr<int64_t>(), static_cast<int>(n), 0, int(sizeof(acc_t) * 8), stream()));
    bytes = 0;
    cub::DeviceRadixSort::SortPairs(nullptr, bytes, slot_by_depth.data_ptr<int64_t>(),
                                    slot_grouped.data_ptr<int64_t>(), d_sorted.data_ptr<acc_t>(),
                                    grouped.data_ptr<acc_t>(), static_cast<int>(n), 0, end_bit, stream());
    temp = cub_temp(bytes, ids);
    C10_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.data_ptr(), bytes, slot_by_depth.data_ptr<int64_t>(),
                                                   slot_grouped.data_ptr<int64_t>(), d_sorted.data_ptr<acc_t>(),
                                                   grouped.data_ptr<acc_t>(), static_cast<int>(n), 0, end_bit,
                                                   stream()));
  }
  const at::Tensor counts = valid_count.reshape({-1});
  const at::Tensor start = counts.cumsum(0) - counts;
  const at::Tensor stop = start + counts;
  // The means sum in double, as on the CPU: a million float32 depths summed
  // in float32 lose thousands of ulp.
  const at::Tensor grouped_d = grouped.to(at::kDouble);
  const at::Tensor sums = at::zeros({slots}, d.options().dtype(at::kDouble));
  if (n > 0) {
    size_t bytes = 0;
    cub::DeviceSegmentedReduce::Sum(nullptr, bytes, grouped_d.data_ptr<double>(), sums.data_ptr<double>(),
                                    static_cast<int>(slots), start.data_ptr<int64_t>(), stop.data_ptr<int64_t>(),
                                    stream());
    const at::Tensor temp = cub_temp(bytes, ids);
    C10_CUDA_CHECK(cub::DeviceSegmentedReduce::Sum(temp.data_ptr(), bytes, grouped_d.data_ptr<double>(),
                                                   sums.data_ptr<double>(), static_cast<int>(slots),
                                                   start.data_ptr<int64_t>(), stop.data_ptr<int64_t>(), stream()));
  }
  mean_median_kernel<scalar_t, acc_t><<<grid_for(slots), kThreads, 0, stream()>>>(
      grouped.data_ptr<acc_t>(), start.data_ptr<int64_t>(), counts.data_ptr<int64_t>(), sums.data_ptr<double>(),
      slots, mean.data_ptr<scalar_t>(), median.data_ptr<scalar_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> instance_stats_cuda(
    const at::Tensor& ids_in, int64_t K, const std::optional<at::Tensor>& depth_opt, bool validate) {
  const bool has_depth = check_stats_args(ids_in, K, depth_opt, validate);
  const c10::cuda::CUDAGuard guard(ids_in.device());
  const int64_t B = ids_in.size(0);
  const at::Tensor ids = ids_in.contiguous();
  const auto long_opts = ids.options().dtype(at::kLong);
  at::Tensor count = at::empty({B, K}, long_opts), box = at::empty({B, K, 4}, long_opts);
  if (!has_depth) {
    AT_DISPATCH_INDEX_TYPES(ids.scalar_type(), "instance_stats_cuda", [&] {
      instance_boxes_cuda<index_t, float>(ids, nullptr, K, count, box, at::Tensor());
    });
    const at::Tensor none = at::empty({0}, ids.options().dtype(at::kFloat));
    return {count, box, at::empty({0}, long_opts), none, none.clone()};
  }
  const at::Tensor depth = depth_opt->contiguous();
  at::Tensor valid_count = at::empty({B, K}, long_opts);
  at::Tensor mean = at::empty({B, K}, depth.options()), median = at::empty({B, K}, depth.options());
  AT_DISPATCH_INDEX_TYPES(ids.scalar_type(), "instance_stats_cuda", [&] {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, depth.scalar_type(), "instance_stats_cuda_depth", [&] {
      instance_boxes_cuda<index_t, scalar_t>(ids, depth.data_ptr<scalar_t>(), K, count, box, valid_count);
      if (B * K > 0) depth_stats_cuda<index_t, scalar_t>(ids, depth, K, valid_count, mean, median);
    });
  });
  return {count, box, valid_count, mean, median};
}

}  // namespace

TORCH_LIBRARY_IMPL(desc_ops, CUDA, m) { m.impl("instance_stats", &instance_stats_cuda); }

}  // namespace cuda
}  // namespace desc_ops
