// The confidence map (docs/ops.md §1) on the GPU: one thread per pixel over 32x8
// tiles of one image. The luminance of the tile and its one-pixel halo is
// computed once into shared memory, so each Sobel tap is a shared-memory read
// rather than three global reads. What a pixel's confidence is used for is the
// Sink's business (write it, or fold it into a loss and reduce).
#pragma once

#include "../confidence_checks.h"
#include "../desc_math.h"
#include "cuda_utils.cuh"

namespace desc_ops {
namespace cuda {

constexpr int kTileW = 32;
constexpr int kTileH = 8;
static_assert(kTileW * kTileH == kThreads, "one tile is one block");

template <typename scalar_t, typename index_t>
struct ConfidenceView {
  using scalar_type = scalar_t;
  using index_type = index_t;
  using acc_t = opmath_t<scalar_t>;
  const scalar_t* logits;
  const index_t* labels;
  const scalar_t* image;
  const scalar_t* edges;
  const int64_t* ignored;
  int64_t num_ignored;
  int64_t image_channels;
  int64_t C, H, W;
  acc_t edge_weight, boundary_weight;
  index_t ignore_index;

  static ConfidenceView make(const ConfidenceArgs& a) {
    ConfidenceView v;
    v.logits = a.logits.defined() ? a.logits.const_data_ptr<scalar_t>() : nullptr;
    v.labels = a.labels.defined() ? a.labels.const_data_ptr<index_t>() : nullptr;
    v.image = a.image.defined() ? a.image.const_data_ptr<scalar_t>() : nullptr;
    v.edges = a.edges.defined() ? a.edges.const_data_ptr<scalar_t>() : nullptr;
    v.ignored = a.ignore.const_data_ptr<int64_t>();
    v.num_ignored = a.ignore.numel();
    v.image_channels = a.image.defined() ? a.image.size(1) : 0;
    v.C = a.C;
    v.H = a.H;
    v.W = a.W;
    v.edge_weight = static_cast<acc_t>(a.edge_weight);
    v.boundary_weight = static_cast<acc_t>(a.boundary_weight);
    v.ignore_index = static_cast<index_t>(a.ignore_index);
    return v;
  }
};

// The tiles of a B x H x W map, numbered image by image, row of tiles by row
// of tiles, in a flat grid: gridDim.y and gridDim.z stop at 65535, a flat
// gridDim.x at 2^31 - 1 tiles. Block i's partial sits at row i.
inline int64_t tile_blocks(int64_t B, int64_t H, int64_t W) {
  return B * ((H + kTileH - 1) / kTileH) * ((W + kTileW - 1) / kTileW);
}

inline dim3 tile_grid(int64_t B, int64_t H, int64_t W) {
  const int64_t blocks = tile_blocks(B, H, W);
  DESC_CHECK(blocks <= INT_MAX, "the CUDA kernels take at most 2^31 - 1 tiles of ", kTileH, " x ", kTileW,
             " pixels, got B=", B, ", H=", H, ", W=", W);
  return dim3(static_cast<unsigned>(blocks));
}

struct TileOrigin {
  int64_t b, y0, x0;
};

// Image and top-left pixel of this block's tile.
__device__ __forceinline__ TileOrigin tile_origin(int64_t H, int64_t W) {
  const int64_t tiles_x = (W + kTileW - 1) / kTileW, tiles_y = (H + kTileH - 1) / kTileH;
  const int64_t t = blockIdx.x;
  return {t / (tiles_x * tiles_y), (t / tiles_x) % tiles_y * kTileH, t % tiles_x * kTileW};
}

// Every thread of the block calls sink(b, y, x, inside, c) exactly once, so a
// sink may synchronise the block (to reduce).
template <typename scalar_t, typename index_t, typename Sink>
__global__ void __launch_bounds__(kThreads) confidence_tile_kernel(const ConfidenceView<scalar_t, index_t> v,
                                                                   Sink sink) {
  using acc_t = opmath_t<scalar_t>;
  __shared__ acc_t lum[kTileH + 2][kTileW + 2];
  const int64_t H = v.H, W = v.W, HW = H * W;
  const auto [b, y0, x0] = tile_origin(H, W);
  const int tx = threadIdx.x, ty = threadIdx.y;

  if (v.image != nullptr) {
    const scalar_t* img = v.image + b * v.image_channels * HW;
    for (int i = ty * kTileW + tx; i < (kTileH + 2) * (kTileW + 2); i += kThreads) {
      const int ly = i / (kTileW + 2), lx = i % (kTileW + 2);
      const int64_t p = math::clamp_index(y0 + ly - 1, H) * W + math::clamp_index(x0 + lx - 1, W);
      lum[ly][lx] = v.image_channels == 1
                        ? static_cast<acc_t>(img[p])
                        : math::luminance(static_cast<acc_t>(img[p]), static_cast<acc_t>(img[HW + p]),
                                          static_cast<acc_t>(img[2 * HW + p]));
    }
    __syncthreads();
  }

  const int64_t y = y0 + ty, x = x0 + tx;
  const bool inside = y < H && x < W;
  acc_t c = 0;
  if (inside) {
    const int64_t p = y * W + x;
    int64_t cls;
    if (v.logits != nullptr) {
      const scalar_t* z = v.logits + b * v.C * HW + p;
      acc_t mx = static_cast<acc_t>(z[0]);
      cls = 0;
      for (int64_t k = 1; k < v.C; ++k) {
        const acc_t zk = static_cast<acc_t>(z[k * HW]);
        if (zk > mx) {
          mx = zk;
          cls = k;
        }
      }
      // The second read of the C logits hits L1: the tile's logits were just read.
      acc_t sum = 0;
      for (int64_t k = 0; k < v.C; ++k) sum += math::fast_exp(static_cast<acc_t>(z[k * HW]) - mx);
      c = math::logit_semantic_term(sum, v.C);
    } else {
      const index_t* labels = v.labels + b * HW;
      c = math::label_semantic_term(labels, y, x, H, W, v.ignore_index, v.boundary_weight);
      cls = static_cast<int64_t>(labels[p]);
    }
    if (v.num_ignored > 0 && math::is_ignored_class(cls, v.ignored, v.num_ignored)) c = acc_t(0);
    if (v.image != nullptr) {
      const int ly = ty + 1, lx = tx + 1;
      const acc_t m = math::sobel_magnitude(lum[ly - 1][lx - 1], lum[ly - 1][lx], lum[ly - 1][lx + 1],
                                            lum[ly][lx - 1], lum[ly][lx + 1], lum[ly + 1][lx - 1],
                                            lum[ly + 1][lx], lum[ly + 1][lx + 1]);
      c *= math::edge_term(m, v.edge_weight);
    } else if (v.edges != nullptr) {
      c *= math::edge_term(static_cast<acc_t>(v.edges[b * HW + p]), v.edge_weight);
    }
  }
  sink(b, y, x, inside, c);
}

// Calls f(ConfidenceView<scalar_t, index_t>) for the dtypes of `a`.
template <typename F>
void dispatch_confidence_view(const ConfidenceArgs& a, const F& f) {
  DESC_DISPATCH_FLOATING(a.dtype, "confidence_map_cuda", [&] {
    if (a.labels.defined() && a.labels.scalar_type() == kInt) {
      f(ConfidenceView<scalar_t, int32_t>::make(a));
    } else {
      f(ConfidenceView<scalar_t, int64_t>::make(a));
    }
  });
}

}  // namespace cuda
}  // namespace desc_ops
