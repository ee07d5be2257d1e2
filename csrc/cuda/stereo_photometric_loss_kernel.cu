// stereo_photometric_loss and its backward on the GPU (docs/ops.md §7).
//
// A block owns a 32x8 tile of pixels of one image. It warps the tile and a
// halo into shared memory (the taps of each cell once, then one channel at
// a time), so every sample is taken once per block and no warped image or
// SSIM map reaches global memory. Forward: a thread adds its pixel's L1 and
// its window's dissimilarity to the block's partials (cuda_utils.cuh: no
// atomics, the same bits every run). Backward: the block also keeps one
// channel's window gradient coefficients for the tile and a one-pixel halo;
// a thread sums those of the windows that hold its pixel and writes its own
// depth's gradient (each depth pixel owns its sample: nothing to scatter).
#include "../desc_math.h"
#include "../stereo_photometric_loss_checks.h"
#include "cuda_utils.cuh"

namespace desc_ops {
namespace cuda {
namespace {

constexpr int kTileW = 32, kTileH = 8;  // kTileW * kTileH == kThreads
static_assert(kTileW * kTileH == kThreads, "one thread per pixel of a tile");

// The image row or column a shared cell of virtual coordinate v holds: one
// step outside the image reflected (the padded windows read those), further
// out clamped (those cells feed no window).
__device__ __forceinline__ int64_t cell_coordinate(int64_t v, int64_t n) {
  return math::clamp_index(math::reflect_index(v, n), n);
}

__device__ __forceinline__ bool has_ssim(int64_t q, int64_t n, bool reflect) {
  return reflect ? (q >= 0 && q < n) : (q >= 1 && q + 1 < n);
}

// The cells of a tile with a halo of `halo` pixels.
template <int halo>
struct Cells {
  static constexpr int W = kTileW + 2 * halo, H = kTileH + 2 * halo, N = W * H;
};

// Fills the taps (x0, w1) of every cell of the tile at (y0, x0) of image b.
template <int halo, typename scalar_t, typename acc_t>
__device__ __forceinline__ void cell_taps(const scalar_t* __restrict__ depth, acc_t fb, int64_t H, int64_t W,
                                          int64_t ty0, int64_t tx0, int64_t* x0s, acc_t* w1s) {
  using Cl = Cells<halo>;
  for (int k = threadIdx.y * kTileW + threadIdx.x; k < Cl::N; k += kThreads) {
    const int64_t r = cell_coordinate(ty0 - halo + k / Cl::W, H), c = cell_coordinate(tx0 - halo + k % Cl::W, W);
    acc_t du_dd;
    const acc_t u = math::stereo_position<acc_t>(static_cast<acc_t>(c), static_cast<acc_t>(depth[r * W + c]), fb,
                                                 &du_dd);
    math::linear_taps<acc_t>(u, static_cast<acc_t>(W), &x0s[k], &w1s[k]);
  }
}

// Fills one channel's warped values and image values of every cell.
template <int halo, typename scalar_t, typename acc_t>
__device__ __forceinline__ void cell_values(const scalar_t* __restrict__ image, const scalar_t* __restrict__ other,
                                            int64_t H, int64_t W, int64_t ty0, int64_t tx0, const int64_t* x0s,
                                            const acc_t* w1s, acc_t* ys, acc_t* is) {
  using Cl = Cells<halo>;
  for (int k = threadIdx.y * kTileW + threadIdx.x; k < Cl::N; k += kThreads) {
    const int64_t r = cell_coordinate(ty0 - halo + k / Cl::W, H), c = cell_coordinate(tx0 - halo + k % Cl::W, W);
    acc_t slope;
    ys[k] = math::linear_sample<acc_t>(other + r * W, W, x0s[k], w1s[k], &slope);
    is[k] = static_cast<acc_t>(image[r * W + c]);
  }
}

// The five moment sums of the 3x3 window whose top-left cell is (i, j).
template <int halo, typename acc_t>
__device__ __forceinline__ void window_sums(const acc_t* ys, const acc_t* is, int i, int j, acc_t* s) {
  using Cl = Cells<halo>;
  for (int m = 0; m < 5; ++m) s[m] = acc_t(0);
  for (int dy = 0; dy < 3; ++dy) {
    for (int dx = 0; dx < 3; ++dx) {
      const int k = (i + dy) * Cl::W + j + dx;
      const acc_t a = is[k], b = ys[k];
      s[0] += a;
      s[1] += b;
      s[2] += a * a;
      s[3] += b * b;
      s[4] += a * b;
    }
  }
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads) stereo_forward_kernel(
    const scalar_t* __restrict__ depth, const scalar_t* __restrict__ image, const scalar_t* __restrict__ other,
    const acc_t* __restrict__ fb, int64_t B, int64_t C, int64_t H, int64_t W, bool reflect, acc_t ssim_scale,
    acc_t l1_scale, acc_t* __restrict__ partials, scalar_t* __restrict__ map) {
  using Cl = Cells<1>;
  __shared__ int64_t x0s[Cl::N];
  __shared__ acc_t w1s[Cl::N], ys[Cl::N], is[Cl::N];
  const int64_t ty0 = static_cast<int64_t>(blockIdx.y) * kTileH, tx0 = static_cast<int64_t>(blockIdx.x) * kTileW;
  const int64_t y = ty0 + threadIdx.y, x = tx0 + threadIdx.x, HW = H * W;
  const bool inside = y < H && x < W;
  const bool windows = inside && has_ssim(y, H, reflect) && has_ssim(x, W, reflect);
  const int centre = (threadIdx.y + 1) * Cl::W + threadIdx.x + 1;
  acc_t ssim_sum = 0, l1_sum = 0;
  for (int64_t b = blockIdx.z; b < B; b += gridDim.z) {
    cell_taps<1>(depth + b * HW, fb[b], H, W, ty0, tx0, x0s, w1s);
    acc_t pixel = 0;
    for (int64_t c = 0; c < C; ++c) {
      __syncthreads();  // the taps are in; the previous channel's cells are read
      const int64_t plane = (b * C + c) * HW;
      cell_values<1>(image + plane, other + plane, H, W, ty0, tx0, x0s, w1s, ys, is);
      __syncthreads();
      if (inside) {
        const acc_t e = math::abs_(is[centre] - ys[centre]);
        l1_sum += e;
        pixel += l1_scale * e;
      }
      if (windows) {
        acc_t s[5];
        window_sums<1>(ys, is, threadIdx.y, threadIdx.x, s);
        const acc_t v = math::ssim_dissimilarity<acc_t>(s[0], s[1], s[2], s[3], s[4]);
        ssim_sum += v;
        pixel += ssim_scale * v;
      }
    }
    if (map != nullptr && inside) map[b * HW + y * W + x] = static_cast<scalar_t>(pixel);
    __syncthreads();  // the next image's taps overwrite these cells
  }
  block_sum2<kThreads>(ssim_sum, l1_sum);
  if (threadIdx.x == 0 && threadIdx.y == 0) {
    const int64_t i = linear_block();
    partials[2 * i] = ssim_sum;
    partials[2 * i + 1] = l1_sum;
  }
}

// `grad`: one element, or (per_pixel) the upstream map.
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads) stereo_backward_kernel(
    const scalar_t* __restrict__ grad, bool per_pixel, const scalar_t* __restrict__ depth,
    const scalar_t* __restrict__ image, const scalar_t* __restrict__ other, const acc_t* __restrict__ fb, int64_t B,
    int64_t C, int64_t H, int64_t W, bool reflect, acc_t ssim_scale, acc_t l1_scale,
    scalar_t* __restrict__ grad_depth) {
  using Cl = Cells<2>;  // a window of the halo-1 ring reads two pixels out
  using Co = Cells<1>;  // the windows that can hold a pixel of the tile
  __shared__ int64_t x0s[Cl::N];
  __shared__ acc_t w1s[Cl::N], ys[Cl::N], is[Cl::N];
  __shared__ acc_t ka[Co::N], kb[Co::N], kc[Co::N];
  const int64_t ty0 = static_cast<int64_t>(blockIdx.y) * kTileH, tx0 = static_cast<int64_t>(blockIdx.x) * kTileW;
  const int64_t y = ty0 + threadIdx.y, x = tx0 + threadIdx.x, HW = H * W;
  const bool inside = y < H && x < W;
  const acc_t g = per_pixel ? acc_t(0) : static_cast<acc_t>(grad[0]);
  const int tid = threadIdx.y * kTileW + threadIdx.x;
  const int centre = (threadIdx.y + 2) * Cl::W + threadIdx.x + 2;
  // The windows holding this pixel, along each axis (math::ssim_centres).
  int64_t qy[5], qx[5];
  const int ny = inside ? math::ssim_centres(y, H, reflect, qy) : 0;
  const int nx = inside ? math::ssim_centres(x, W, reflect, qx) : 0;
  for (int64_t b = blockIdx.z; b < B; b += gridDim.z) {
    cell_taps<2>(depth + b * HW, fb[b], H, W, ty0, tx0, x0s, w1s);
    acc_t du_dd = 0;
    if (inside) {
      math::stereo_position<acc_t>(static_cast<acc_t>(x), static_cast<acc_t>(depth[b * HW + y * W + x]), fb[b],
                                   &du_dd);
    }
    acc_t total = 0;
    for (int64_t c = 0; c < C; ++c) {
      __syncthreads();  // the taps are in; the previous channel's cells are read
      const int64_t plane = (b * C + c) * HW;
      cell_values<2>(image + plane, other + plane, H, W, ty0, tx0, x0s, w1s, ys, is);
      __syncthreads();
      for (int k = tid; k < Co::N; k += kThreads) {
        const int i = k / Co::W, j = k % Co::W;
        const int64_t qr = ty0 - 1 + i, qc = tx0 - 1 + j;
        acc_t a = 0, bb = 0, cc = 0;
        if (has_ssim(qr, H, reflect) && has_ssim(qc, W, reflect)) {
          acc_t s[5];
          window_sums<2>(ys, is, i, j, s);  // the window of centre cell (i + 1, j + 1)
          const acc_t up = per_pixel ? static_cast<acc_t>(grad[b * HW + qr * W + qc]) : g;
          math::ssim_dissimilarity<acc_t>(s[0], s[1], s[2], s[3], s[4], ssim_scale * up, &a, &bb, &cc);
        }
        ka[k] = a;
        kb[k] = bb;
        kc[k] = cc;
      }
      __syncthreads();
      if (inside) {
        acc_t a = 0, bb = 0, cc = 0;
        for (int i = 0; i < ny; ++i) {
          for (int j = 0; j < nx; ++j) {
            const int k = static_cast<int>(qy[i] - (ty0 - 1)) * Co::W + static_cast<int>(qx[j] - (tx0 - 1));
            a += ka[k];
            bb += kb[k];
            cc += kc[k];
          }
        }
        const acc_t yi = ys[centre], xi = is[centre];
        const acc_t up = per_pixel ? static_cast<acc_t>(grad[b * HW + y * W + x]) : g;
        const acc_t d_warped = (a + acc_t(2) * bb * yi + cc * xi) / acc_t(9) + l1_scale * up * math::sign(yi - xi);
        acc_t slope;
        math::linear_sample<acc_t>(other + plane + y * W, W, x0s[centre], w1s[centre], &slope);
        total += d_warped * slope;
      }
    }
    if (inside) grad_depth[b * HW + y * W + x] = static_cast<scalar_t>(total * du_dd);
    __syncthreads();  // the next image's taps overwrite these cells
  }
}

struct Grid {
  dim3 blocks;
  int64_t count;
};

inline Grid tile_grid(int64_t B, int64_t H, int64_t W) {
  const int64_t gx = (W + kTileW - 1) / kTileW, gy = (H + kTileH - 1) / kTileH;
  DESC_CHECK(gy <= 65535, "stereo_photometric_loss: H = ", H, " is beyond the CUDA grid (at most ", 65535 * kTileH,
             " rows)");
  const int64_t gz = std::min<int64_t>(std::max<int64_t>(B, 1), 65535);
  return {dim3(static_cast<unsigned>(gx), static_cast<unsigned>(gy), static_cast<unsigned>(gz)), gx * gy * gz};
}

Tensor stereo_photometric_loss_cuda(const Tensor& depth_in, const Tensor& image_in, const Tensor& other_in,
                                    const Tensor& fb_in, double alpha, const std::string& ssim,
                                    const std::string& reduction) {
  const StereoArgs a = make_stereo_args(depth_in, image_in, other_in, fb_in, alpha, ssim, reduction);
  const DeviceGuard guard(depth_in.get_device_index());
  const Tensor &depth = a.depth, &image = a.image, &other = a.other, &fb = a.focal_baseline;
  const int64_t B = a.B, C = a.C, H = a.H, W = a.W;
  const bool reflect = a.reflect, none = a.none;
  Tensor out = none ? empty_as(depth) : empty({}, depth.scalar_type(), depth.device());
  if (depth.numel() == 0) return out;
  const Grid grid = tile_grid(B, H, W);
  DESC_DISPATCH_FLOATING(depth.scalar_type(), "stereo_photometric_loss_cuda", [&] {
    using acc_t = opmath_t<scalar_t>;
    const ScalarType acc_dtype = opmath_dtype(depth.scalar_type());
    const auto scales = stereo_scales<acc_t>(B, C, H, W, alpha, reflect, reduction);
    const Tensor partials = empty({grid.count, 2}, acc_dtype, depth.device());
    stereo_forward_kernel<scalar_t, acc_t><<<grid.blocks, dim3(kTileW, kTileH), 0, stream()>>>(
        depth.const_data_ptr<scalar_t>(), image.const_data_ptr<scalar_t>(), other.const_data_ptr<scalar_t>(),
        fb.const_data_ptr<acc_t>(), B, C, H, W, reflect, scales.ssim, scales.l1, partials.mutable_data_ptr<acc_t>(),
        none ? out.mutable_data_ptr<scalar_t>() : nullptr);
    STD_CUDA_KERNEL_LAUNCH_CHECK();
    if (!none) {
      const Tensor norm = empty({}, acc_dtype, depth.device());
      launch_finish<scalar_t, acc_t>(partials, Finish::kScaled, out, norm, scales.ssim, scales.l1);
    }
  });
  return out;
}

Tensor stereo_photometric_loss_backward_cuda(const Tensor& grad_in, const Tensor& depth_in, const Tensor& image_in,
                                             const Tensor& other_in, const Tensor& fb_in, double alpha,
                                             const std::string& ssim, const std::string& reduction) {
  const StereoArgs a = make_stereo_backward_args(grad_in, depth_in, image_in, other_in, fb_in, alpha, ssim, reduction);
  const DeviceGuard guard(depth_in.get_device_index());
  const Tensor &depth = a.depth, &image = a.image, &other = a.other, &fb = a.focal_baseline;
  const Tensor grad = as_contiguous(to_dtype(grad_in, depth.scalar_type()));
  const int64_t B = a.B, C = a.C, H = a.H, W = a.W;
  const bool reflect = a.reflect;
  Tensor grad_depth = empty_as(depth);
  if (depth.numel() == 0) return grad_depth;
  const Grid grid = tile_grid(B, H, W);
  DESC_DISPATCH_FLOATING(depth.scalar_type(), "stereo_photometric_loss_backward_cuda", [&] {
    using acc_t = opmath_t<scalar_t>;
    const auto scales = stereo_scales<acc_t>(B, C, H, W, alpha, reflect, reduction);
    stereo_backward_kernel<scalar_t, acc_t><<<grid.blocks, dim3(kTileW, kTileH), 0, stream()>>>(
        grad.const_data_ptr<scalar_t>(), a.none, depth.const_data_ptr<scalar_t>(),
        image.const_data_ptr<scalar_t>(), other.const_data_ptr<scalar_t>(), fb.const_data_ptr<acc_t>(), B, C, H, W,
        reflect, scales.ssim, scales.l1, grad_depth.mutable_data_ptr<scalar_t>());
    STD_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return grad_depth;
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(desc_ops, CUDA, m) {
  m.impl("stereo_photometric_loss", TORCH_BOX(&stereo_photometric_loss_cuda));
  m.impl("_stereo_photometric_loss_backward", TORCH_BOX(&stereo_photometric_loss_backward_cuda));
}

}  // namespace cuda
}  // namespace desc_ops
