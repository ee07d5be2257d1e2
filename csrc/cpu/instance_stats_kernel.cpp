// instance_stats on the CPU (docs/ops.md §3): counts, boxes, and the mean and exact
// lower median of the valid depths of every instance slot, one image per task.
//
// One walk over the runs of an image gathers the valid depths of each slot;
// the median is a radix select inside each slot: O(H W) per image.

#include <string.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "../desc_math.h"
#include "../instance_checks.h"
#include "instance_boxes.h"

namespace desc_ops {
namespace cpu {
namespace {

// The exact k-th smallest of v[0, n) (0 <= k < n), for values that are all
// finite and > 0 (valid depths). float: a radix select on the bit patterns,
// which positive floats order like the values (the histogram's passes do
// not branch on the data, unlike nth_element's partitions); double:
// nth_element. v is reordered.
inline float kth_positive(float* v, int64_t n, int64_t k, std::vector<uint32_t>& hist) {
  uint32_t lo = std::numeric_limits<uint32_t>::max(), hi = 0;
  for (int64_t i = 0; i < n; ++i) {
    uint32_t b;
    memcpy(&b, v + i, sizeof(b));
    lo = std::min(lo, b);
    hi = std::max(hi, b);
  }
  if (lo == hi) return v[0];
  // About n / 4 buckets (16 to 1024) of 2^shift consecutive bit patterns
  // from lo, counted in four interleaved histograms (consecutive values
  // often share a bucket: one histogram would chain the increments).
  const uint32_t target = static_cast<uint32_t>(std::min<int64_t>(1024, std::max<int64_t>(16, n / 4)));
  int shift = 0;
  while (((hi - lo) >> shift) >= target) ++shift;
  const uint32_t buckets = ((hi - lo) >> shift) + 1;
  hist.assign(4 * buckets, 0);
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    for (int q = 0; q < 4; ++q) {
      uint32_t b;
      memcpy(&b, v + i + q, sizeof(b));
      ++hist[q * buckets + ((b - lo) >> shift)];
    }
  }
  for (; i < n; ++i) {
    uint32_t b;
    memcpy(&b, v + i, sizeof(b));
    ++hist[(b - lo) >> shift];
  }
  for (uint32_t c = 0; c < buckets; ++c) hist[c] += hist[buckets + c] + hist[2 * buckets + c] + hist[3 * buckets + c];
  uint32_t j = 0;
  int64_t before = 0;
  while (before + hist[j] <= k) before += hist[j++];
  // The values of bucket j to the front, then the exact select among them.
  int64_t m = 0;
  for (int64_t t = 0; t < n; ++t) {
    uint32_t b;
    memcpy(&b, v + t, sizeof(b));
    v[m] = v[t];
    m += ((b - lo) >> shift) == j;
  }
  std::nth_element(v, v + (k - before), v + m);
  return v[k - before];
}
inline double kth_positive(double* v, int64_t n, int64_t k, std::vector<uint32_t>&) {
  std::nth_element(v, v + k, v + n);
  return v[k];
}

// Per-thread buffers: the valid depths of every slot, grown as needed and
// kept from image to image.
template <typename acc_t>
struct DepthScratch {
  std::vector<std::vector<acc_t>> values;
  std::vector<int64_t> used;
  std::vector<double> sum;
  std::vector<uint32_t> hist;
};

// count, box, valid_count, mean and median of one image, in one walk over its
// runs (instance_boxes.h); `depth` may be null when the image has no pixels.
// Not inlined into the parallel loop: inlined there, GCC made the walk 4-5 %
// slower (4x192x640, random ids). The sums of a slot are taken
// run by run in float64 (a run's partial, in four interleaved sums, then
// added to the slot's); the median is the exact lower median of the slot's
// valid depths.
template <typename scalar_t, typename index_t>
__attribute__((noinline)) void stats_image(const index_t* ids, const scalar_t* depth, int64_t H, int64_t W, int64_t K,
                                           int64_t* count, int64_t* box, int64_t* valid_count, scalar_t* mean,
                                           scalar_t* median, DepthScratch<opmath_t<scalar_t>>& s) {
  using acc_t = opmath_t<scalar_t>;
  clear_boxes(K, count, box);
  if (static_cast<int64_t>(s.values.size()) < K) s.values.resize(K);
  s.used.assign(K, 0);
  s.sum.assign(K, 0.0);
  for_each_run(ids, H, W, K, [&](int64_t k, int64_t y, int64_t x0, int64_t x1) {
    int64_t* bk = box + 4 * k;
    const int64_t len = x1 - x0;
    count[k] += len;
    bk[0] = std::min(bk[0], y);  // rows come in order, so y_max is the last y
    bk[1] = y;
    bk[2] = std::min(bk[2], x0);
    bk[3] = std::max(bk[3], x1 - 1);
    std::vector<acc_t>& vals = s.values[k];
    if (static_cast<int64_t>(vals.size()) < s.used[k] + len) {
      vals.resize(std::max<int64_t>(2 * static_cast<int64_t>(vals.size()), s.used[k] + len));
    }
    const scalar_t* d = depth + y * W + x0;
    acc_t* out = vals.data() + s.used[k];
    int64_t n = 0, i = 0;
    // Four partial sums (pixels i mod 4), added in a fixed order: no chain
    // of dependent float64 additions through the run.
    double part[4] = {0.0, 0.0, 0.0, 0.0};
    for (; i + 4 <= len; i += 4) {
      for (int j = 0; j < 4; ++j) {
        const acc_t v = static_cast<acc_t>(d[i + j]);
        const bool valid = math::valid_depth(v);
        out[n] = v;
        n += valid;
        part[j] += valid ? static_cast<double>(v) : 0.0;
      }
    }
    for (int j = 0; i < len; ++i, ++j) {
      const acc_t v = static_cast<acc_t>(d[i]);
      const bool valid = math::valid_depth(v);
      out[n] = v;
      n += valid;
      part[j] += valid ? static_cast<double>(v) : 0.0;
    }
    const double sum = (part[0] + part[1]) + (part[2] + part[3]);
    s.used[k] += n;
    s.sum[k] += sum;
  });
  for (int64_t k = 0; k < K; ++k) {
    if (count[k] == 0) box[4 * k + 0] = box[4 * k + 2] = -1;
  }
  const scalar_t nan = std::numeric_limits<scalar_t>::quiet_NaN();
  for (int64_t k = 0; k < K; ++k) {
    const int64_t n = s.used[k];
    valid_count[k] = n;
    if (n == 0) {
      mean[k] = median[k] = nan;
      continue;
    }
    mean[k] = static_cast<scalar_t>(s.sum[k] / static_cast<double>(n));
    median[k] = static_cast<scalar_t>(kth_positive(s.values[k].data(), n, (n - 1) / 2, s.hist));
  }
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> instance_stats_cpu(
    const Tensor& ids_in, int64_t K, const std::optional<Tensor>& depth_opt,
    bool validate) {
  const bool has_depth = check_stats_args(ids_in, K, depth_opt, validate);
  const int64_t B = ids_in.size(0), H = ids_in.size(1), W = ids_in.size(2);
  const Tensor ids = as_contiguous(ids_in);
  const Device device = ids.device();
  Tensor count = empty({B, K}, kLong, device);
  Tensor box = empty({B, K, 4}, kLong, device);
  Tensor valid_count, mean, median;
  Tensor depth;
  if (has_depth) {
    depth = as_contiguous(*depth_opt);
    valid_count = empty({B, K}, kLong, device);
    mean = empty({B, K}, depth.scalar_type(), device);
    median = empty({B, K}, depth.scalar_type(), device);
  } else {
    valid_count = empty({0}, kLong, device);
    mean = empty({0}, kFloat, device);
    median = empty({0}, kFloat, device);
  }
  if (B * K == 0) return {count, box, valid_count, mean, median};

  DESC_DISPATCH_INDEX(ids.scalar_type(), "instance_stats", [&] {
    const index_t* ids_p = ids.const_data_ptr<index_t>();
    // Without depth the float kernel runs with no depth pointer.
    const ScalarType dtype = has_depth ? depth.scalar_type() : kFloat;
    DESC_DISPATCH_FLOATING(dtype, "instance_stats_depth", [&] {
      const scalar_t* d_p = has_depth ? depth.const_data_ptr<scalar_t>() : nullptr;
      int64_t* count_p = count.mutable_data_ptr<int64_t>();
      int64_t* box_p = box.mutable_data_ptr<int64_t>();
      int64_t* valid_p = has_depth ? valid_count.mutable_data_ptr<int64_t>() : nullptr;
      scalar_t* mean_p = has_depth ? mean.mutable_data_ptr<scalar_t>() : nullptr;
      scalar_t* median_p = has_depth ? median.mutable_data_ptr<scalar_t>() : nullptr;
      torch::stable::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
        DepthScratch<opmath_t<scalar_t>> scratch;
        for (int64_t b = begin; b < end; ++b) {
          if (!has_depth) {
            instance_boxes_image(ids_p + b * H * W, H, W, K, count_p + b * K, box_p + b * K * 4);
            continue;
          }
          stats_image(ids_p + b * H * W, d_p + b * H * W, H, W, K, count_p + b * K, box_p + b * K * 4,
                      valid_p + b * K, mean_p + b * K, median_p + b * K, scratch);
        }
      });
    });
  });
  return {count, box, valid_count, mean, median};
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(desc_ops, CPU, m) { m.impl("instance_stats", TORCH_BOX(&instance_stats_cpu)); }

}  // namespace cpu
}  // namespace desc_ops
