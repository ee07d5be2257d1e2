// instance_stats on the CPU (docs/ops.md §3): counts, boxes, and the mean and exact
// lower median of the valid depths of every instance slot, one image per task.
//
// The median uses a counting sort of the valid depths by slot (two walks over
// the runs of the image) and nth_element inside each slot: O(H W) per image.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "../desc_math.h"
#include "../instance_checks.h"
#include "instance_boxes.h"

namespace desc_ops {
namespace cpu {
namespace {

template <typename scalar_t, typename index_t>
void depth_stats_image(const index_t* ids, const scalar_t* depth, int64_t H, int64_t W, int64_t K,
                       int64_t* valid_count, scalar_t* mean, scalar_t* median) {
  using acc_t = at::opmath_type<scalar_t>;
  // Sums of up to a million depths: double keeps the mean exact to float32
  // rounding whatever the instance size.
  std::vector<double> sum(K, 0.0);
  std::fill(valid_count, valid_count + K, 0);
  for_each_run(ids, H, W, K, [&](int64_t k, int64_t y, int64_t x0, int64_t x1) {
    const scalar_t* d = depth + y * W + x0;
    const int64_t len = x1 - x0;
    int64_t n = 0;
    double s = 0.0;
    for (int64_t i = 0; i < len; ++i) {
      const acc_t v = static_cast<acc_t>(d[i]);
      const bool valid = math::valid_depth(v);
      n += valid;
      s += valid ? static_cast<double>(v) : 0.0;
    }
    valid_count[k] += n;
    sum[k] += s;
  });
  // Counting sort of the valid depths by slot, then nth_element in each slot.
  std::vector<int64_t> start(K + 1, 0);
  for (int64_t k = 0; k < K; ++k) start[k + 1] = start[k] + valid_count[k];
  std::vector<acc_t> sorted(start[K]);
  std::vector<int64_t> cursor(start.begin(), start.end() - 1);
  for_each_run(ids, H, W, K, [&](int64_t k, int64_t y, int64_t x0, int64_t x1) {
    const scalar_t* d = depth + y * W + x0;
    const int64_t len = x1 - x0;
    acc_t* out = sorted.data() + cursor[k];
    int64_t n = 0;
    for (int64_t i = 0; i < len; ++i) {
      const acc_t v = static_cast<acc_t>(d[i]);
      if (math::valid_depth(v)) out[n++] = v;
    }
    cursor[k] += n;
  });
  const scalar_t nan = std::numeric_limits<scalar_t>::quiet_NaN();
  for (int64_t k = 0; k < K; ++k) {
    const int64_t n = valid_count[k];
    if (n == 0) {
      mean[k] = median[k] = nan;
      continue;
    }
    mean[k] = static_cast<scalar_t>(sum[k] / static_cast<double>(n));
    auto first = sorted.begin() + start[k];
    auto mid = first + (n - 1) / 2;
    std::nth_element(first, mid, first + n);
    median[k] = static_cast<scalar_t>(*mid);
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> instance_stats_cpu(
    const at::Tensor& ids_in, int64_t K, const std::optional<at::Tensor>& depth_opt,
    bool validate) {
  const bool has_depth = check_stats_args(ids_in, K, depth_opt, validate);
  const int64_t B = ids_in.size(0), H = ids_in.size(1), W = ids_in.size(2);
  const at::Tensor ids = ids_in.contiguous();
  const auto long_opts = ids.options().dtype(at::kLong);
  at::Tensor count = at::empty({B, K}, long_opts);
  at::Tensor box = at::empty({B, K, 4}, long_opts);
  at::Tensor valid_count, mean, median;
  at::Tensor depth;
  if (has_depth) {
    depth = depth_opt->contiguous();
    valid_count = at::empty({B, K}, long_opts);
    mean = at::empty({B, K}, depth.options());
    median = at::empty({B, K}, depth.options());
  } else {
    valid_count = at::empty({0}, long_opts);
    mean = at::empty({0}, ids.options().dtype(at::kFloat));
    median = at::empty({0}, ids.options().dtype(at::kFloat));
  }
  if (B * K == 0) return {count, box, valid_count, mean, median};

  AT_DISPATCH_INDEX_TYPES(ids.scalar_type(), "instance_stats", [&] {
    const index_t* ids_p = ids.data_ptr<index_t>();
    at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        instance_boxes_image(ids_p + b * H * W, H, W, K, count.data_ptr<int64_t>() + b * K,
                             box.data_ptr<int64_t>() + b * K * 4);
      }
    });
    if (!has_depth) return;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, depth.scalar_type(), "instance_stats_depth", [&] {
      at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
        for (int64_t b = begin; b < end; ++b) {
          depth_stats_image(ids_p + b * H * W, depth.data_ptr<scalar_t>() + b * H * W, H, W, K,
                            valid_count.data_ptr<int64_t>() + b * K,
                            mean.data_ptr<scalar_t>() + b * K, median.data_ptr<scalar_t>() + b * K);
        }
      });
    });
  });
  return {count, box, valid_count, mean, median};
}

}  // namespace

TORCH_LIBRARY_IMPL(desc_ops, CPU, m) { m.impl("instance_stats", &instance_stats_cpu); }

}  // namespace cpu
}  // namespace desc_ops
