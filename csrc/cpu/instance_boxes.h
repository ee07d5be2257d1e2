// Per-image pixel counts and tight boxes of instance slots on the CPU
// (spec §3), shared by instance_stats and instance_prior_loss.
#pragma once

#include <stdint.h>

#include <algorithm>
#include <limits>

namespace desc_ops {
namespace cpu {

// Box layout per slot: y_min, y_max, x_min, x_max. Ids outside [0, K) are
// not instances (-1, or anything when validation was skipped). Empty slots
// get count 0 and a box of -1.
template <typename index_t>
void instance_boxes_image(const index_t* ids, int64_t H, int64_t W, int64_t K, int64_t* count,
                          int64_t* box) {
  constexpr int64_t kBig = std::numeric_limits<int64_t>::max();
  for (int64_t k = 0; k < K; ++k) {
    count[k] = 0;
    box[4 * k + 0] = kBig;
    box[4 * k + 1] = -1;
    box[4 * k + 2] = kBig;
    box[4 * k + 3] = -1;
  }
  for (int64_t y = 0; y < H; ++y) {
    const index_t* row = ids + y * W;
    for (int64_t x = 0; x < W; ++x) {
      const int64_t k = static_cast<int64_t>(row[x]);
      if (k < 0 || k >= K) continue;
      int64_t* bk = box + 4 * k;
      ++count[k];
      bk[0] = std::min(bk[0], y);  // rows come in order, so y_max is the last y
      bk[1] = y;
      bk[2] = std::min(bk[2], x);
      bk[3] = std::max(bk[3], x);
    }
  }
  for (int64_t k = 0; k < K; ++k) {
    if (count[k] == 0) box[4 * k + 0] = box[4 * k + 2] = -1;
  }
}

}  // namespace cpu
}  // namespace desc_ops
