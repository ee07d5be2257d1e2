// instance_stats on the GPU (docs/ops.md §3), for the whole batch at once with no
// host loop and no device-to-host read (the optional id validation aside).
//
// Counts, boxes and valid counts: instance_boxes.cuh. Mean and exact lower
// median: the valid depths are grouped by slot and sorted within each slot by
// two stable radix sorts (by depth, then by slot), so that the median of slot
// s is one read at start_s + (n_s - 1) / 2, and the mean a segmented sum of
// the group (a fixed tree per segment, no float atomics).
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

template <typename index_t, typename scalar_t>
void depth_stats_cuda(const Tensor& ids, const Tensor& depth, int64_t K, const Tensor& valid_count,
                      const Tensor& mean, const Tensor& median) {
  using acc_t = opmath_t<scalar_t>;
  const int64_t n = ids.numel(), slots = valid_count.numel();
  DESC_CHECK(n < INT_MAX && slots < INT_MAX, "instance_stats on CUDA takes fewer than 2^31 pixels and slots");
  const Tensor d = reshape(to(depth, opmath_dtype(depth.scalar_type())), {-1});
  const Tensor slot = empty({n}, kLong, ids.device());
  if (n > 0) {
    valid_slot_kernel<index_t, acc_t><<<grid_for(n), kThreads, 0, stream()>>>(
        ids.const_data_ptr<index_t>(), d.mutable_data_ptr<acc_t>(), ids.size(1) * ids.size(2), K, n, slot.mutable_data_ptr<int64_t>());
    STD_CUDA_KERNEL_LAUNCH_CHECK();
  }
  // Sort by depth, then stably by slot: valid depths grouped by slot, ascending.
  const Tensor d_sorted = empty_as(d), slot_by_depth = empty_as(slot);
  const Tensor grouped = empty_as(d), slot_grouped = empty_as(slot);
  int end_bit = 1;
  while ((int64_t(1) << end_bit) <= slots) ++end_bit;  // slot values lie in [0, slots]
  if (n > 0) {
    size_t bytes = 0;
    cub::DeviceRadixSort::SortPairs(nullptr, bytes, d.mutable_data_ptr<acc_t>(), d_sorted.mutable_data_ptr<acc_t>(),
                                    slot.mutable_data_ptr<int64_t>(), slot_by_depth.mutable_data_ptr<int64_t>(), static_cast<int>(n),
                                    0, int(sizeof(acc_t) * 8), stream());
    Tensor temp = scratch_bytes(bytes, ids);
    STD_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
        temp.mutable_data_ptr(), bytes, d.mutable_data_ptr<acc_t>(), d_sorted.mutable_data_ptr<acc_t>(), slot.mutable_data_ptr<int64_t>(),
        slot_by_depth.mutable_data_ptr<int64_t>(), static_cast<int>(n), 0, int(sizeof(acc_t) * 8), stream()));
    bytes = 0;
    cub::DeviceRadixSort::SortPairs(nullptr, bytes, slot_by_depth.mutable_data_ptr<int64_t>(),
                                    slot_grouped.mutable_data_ptr<int64_t>(), d_sorted.mutable_data_ptr<acc_t>(),
                                    grouped.mutable_data_ptr<acc_t>(), static_cast<int>(n), 0, end_bit, stream());
    temp = scratch_bytes(bytes, ids);
    STD_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.mutable_data_ptr(), bytes, slot_by_depth.mutable_data_ptr<int64_t>(),
                                                   slot_grouped.mutable_data_ptr<int64_t>(), d_sorted.mutable_data_ptr<acc_t>(),
                                                   grouped.mutable_data_ptr<acc_t>(), static_cast<int>(n), 0, end_bit,
                                                   stream()));
  }
  const Tensor counts = reshape(valid_count, {-1});
  // stop = cumsum(counts), start = stop - counts.
  const Tensor stop = call_aten<1>("aten::cumsum", "", counts, int64_t{0}, std::optional<ScalarType>())[0];
  const Tensor start = torch::stable::subtract(stop, counts);
  // The means sum in double, as on the CPU: a million float32 depths summed
  // in float32 lose thousands of ulp.
  const Tensor grouped_d = to(grouped, kDouble);
  const Tensor sums = zeros({slots}, kDouble, d.device());
  if (n > 0) {
    size_t bytes = 0;
    cub::DeviceSegmentedReduce::Sum(nullptr, bytes, grouped_d.mutable_data_ptr<double>(), sums.mutable_data_ptr<double>(),
                                    static_cast<int>(slots), start.mutable_data_ptr<int64_t>(), stop.mutable_data_ptr<int64_t>(),
                                    stream());
    const Tensor temp = scratch_bytes(bytes, ids);
    STD_CUDA_CHECK(cub::DeviceSegmentedReduce::Sum(temp.mutable_data_ptr(), bytes, grouped_d.mutable_data_ptr<double>(),
                                                   sums.mutable_data_ptr<double>(), static_cast<int>(slots),
                                                   start.mutable_data_ptr<int64_t>(), stop.mutable_data_ptr<int64_t>(), stream()));
  }
  mean_median_kernel<scalar_t, acc_t><<<grid_for(slots), kThreads, 0, stream()>>>(
      grouped.mutable_data_ptr<acc_t>(), start.mutable_data_ptr<int64_t>(), counts.mutable_data_ptr<int64_t>(), sums.mutable_data_ptr<double>(),
      slots, mean.mutable_data_ptr<scalar_t>(), median.mutable_data_ptr<scalar_t>());
  STD_CUDA_KERNEL_LAUNCH_CHECK();
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> instance_stats_cuda(
    const Tensor& ids_in, int64_t K, const std::optional<Tensor>& depth_opt, bool validate) {
  const bool has_depth = check_stats_args(ids_in, K, depth_opt, validate);
  const DeviceGuard guard(ids_in.get_device_index());
  const int64_t B = ids_in.size(0);
  const Tensor ids = as_contiguous(ids_in);
  const Device device = ids.device();
  Tensor count = empty({B, K}, kLong, device), box = empty({B, K, 4}, kLong, device);
  if (!has_depth) {
    DESC_DISPATCH_INDEX(ids.scalar_type(), "instance_stats_cuda", [&] {
      instance_boxes_cuda<index_t, float>(ids, nullptr, K, count, box, Tensor());
    });
    return {count, box, empty({0}, kLong, device), empty({0}, kFloat, device), empty({0}, kFloat, device)};
  }
  const Tensor depth = as_contiguous(*depth_opt);
  Tensor valid_count = empty({B, K}, kLong, device);
  Tensor mean = empty({B, K}, depth.scalar_type(), device), median = empty({B, K}, depth.scalar_type(), device);
  DESC_DISPATCH_INDEX(ids.scalar_type(), "instance_stats_cuda", [&] {
    DESC_DISPATCH_FLOATING(depth.scalar_type(), "instance_stats_cuda_depth", [&] {
      instance_boxes_cuda<index_t, scalar_t>(ids, depth.const_data_ptr<scalar_t>(), K, count, box, valid_count);
      if (B * K > 0) depth_stats_cuda<index_t, scalar_t>(ids, depth, K, valid_count, mean, median);
    });
  });
  return {count, box, valid_count, mean, median};
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(desc_ops, CUDA, m) { m.impl("instance_stats", TORCH_BOX(&instance_stats_cuda)); }

}  // namespace cuda
}  // namespace desc_ops
