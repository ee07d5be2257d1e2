// Per-image walks over instance maps on the CPU (docs/ops.md §3, §4), shared by
// instance_stats and instance_prior_loss.
//
// Instance masks are made of long horizontal runs of one id, so the walks
// visit runs, not pixels: per-slot bookkeeping happens once per run, and the
// per-pixel work inside a run is a plain loop over contiguous memory.
#pragma once

#include <stdint.h>

#include <algorithm>
#include <limits>
#include <vector>

namespace desc_ops {
namespace cpu {

// Calls f(k, y, x_begin, x_end) for every maximal run [x_begin, x_end) of
// row y whose id k is a slot in [0, K). Other ids (-1, or anything when
// validation was skipped) are not instances; with all_runs, f sees their
// runs too (k = the id, which may be negative).
template <typename index_t, typename F>
inline void for_each_run(const index_t* ids, int64_t H, int64_t W, int64_t K, const F& f, bool all_runs = false) {
  for (int64_t y = 0; y < H; ++y) {
    const index_t* row = ids + y * W;
    int64_t x = 0;
    while (x < W) {
      const index_t id = row[x];
      const int64_t begin = x;
      // Eight ids per test while the run lasts (one branch per eight), then one by one.
      while (x + 8 <= W && ((row[x] ^ id) | (row[x + 1] ^ id) | (row[x + 2] ^ id) | (row[x + 3] ^ id) |
                            (row[x + 4] ^ id) | (row[x + 5] ^ id) | (row[x + 6] ^ id) | (row[x + 7] ^ id)) == 0) {
        x += 8;
      }
      while (x < W && row[x] == id) ++x;
      const int64_t k = static_cast<int64_t>(id);
      if (all_runs || (k >= 0 && k < K)) f(k, y, begin, x);
    }
  }
}

// One run of slot k: row y, columns [x0, x1).
struct Run {
  int64_t k, y, x0, x1;
};

// The runs of one image (as for_each_run visits them) into `runs`.
template <typename index_t>
void collect_runs(const index_t* ids, int64_t H, int64_t W, int64_t K, std::vector<Run>& runs, bool all_runs) {
  runs.clear();
  for_each_run(ids, H, W, K, [&](int64_t k, int64_t y, int64_t x0, int64_t x1) { runs.push_back({k, y, x0, x1}); },
               all_runs);
}

// Every slot empty: count 0, and a box that any pixel's min/max replaces
// (the caller turns the boxes of empty slots into -1 afterwards).
inline void clear_boxes(int64_t K, int64_t* count, int64_t* box) {
  constexpr int64_t kBig = std::numeric_limits<int64_t>::max();
  for (int64_t k = 0; k < K; ++k) {
    count[k] = 0;
    box[4 * k + 0] = kBig;
    box[4 * k + 1] = -1;
    box[4 * k + 2] = kBig;
    box[4 * k + 3] = -1;
  }
}

// count[k] and box[4k..4k+3] = (y_min, y_max, x_min, x_max) of one image;
// empty slots get count 0 and a box of -1. With `runs`, the runs of the
// slots are also recorded there (one walk for both).
template <typename index_t>
void instance_boxes_image(const index_t* ids, int64_t H, int64_t W, int64_t K, int64_t* count, int64_t* box,
                          std::vector<Run>* runs = nullptr) {
  if (runs != nullptr) runs->clear();
  clear_boxes(K, count, box);
  for_each_run(ids, H, W, K, [&](int64_t k, int64_t y, int64_t x0, int64_t x1) {
    int64_t* bk = box + 4 * k;
    count[k] += x1 - x0;
    bk[0] = std::min(bk[0], y);  // rows come in order, so y_max is the last y
    bk[1] = y;
    bk[2] = std::min(bk[2], x0);
    bk[3] = std::max(bk[3], x1 - 1);
    if (runs != nullptr) runs->push_back({k, y, x0, x1});
  });
  for (int64_t k = 0; k < K; ++k) {
    if (count[k] == 0) box[4 * k + 0] = box[4 * k + 2] = -1;
  }
}

}  // namespace cpu
}  // namespace desc_ops
