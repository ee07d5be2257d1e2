// confidence_map on the GPU (docs/ops.md §1).
#include "confidence_tile.cuh"

namespace desc_ops {
namespace cuda {
namespace {

template <typename scalar_t>
struct WriteConfidence {
  scalar_t* out;
  int64_t H, W;
  template <typename acc_t>
  __device__ void operator()(int64_t b, int64_t y, int64_t x, bool inside, acc_t c) const {
    if (inside) out[(b * H + y) * W + x] = static_cast<scalar_t>(c);
  }
};

Tensor confidence_map_cuda(const Tensor& semantic, const std::optional<Tensor>& image,
                               const std::optional<Tensor>& edges, double edge_weight, double boundary_weight,
                               int64_t ignore_index, const std::optional<Tensor>& ignore_classes) {
  const ConfidenceArgs a = make_confidence_args(semantic, image, edges, edge_weight, boundary_weight, ignore_index,
                                                ignore_classes);
  const DeviceGuard guard(semantic.get_device_index());
  Tensor out = empty({a.B, 1, a.H, a.W}, a.dtype, semantic.device());
  if (out.numel() == 0) return out;
  dispatch_confidence_view(a, [&](const auto& view) {
    using View = std::decay_t<decltype(view)>;
    using scalar_t = typename View::scalar_type;
    using index_t = typename View::index_type;
    const WriteConfidence<scalar_t> sink{out.mutable_data_ptr<scalar_t>(), a.H, a.W};
    confidence_tile_kernel<scalar_t, index_t, WriteConfidence<scalar_t>>
        <<<tile_grid(a.B, a.H, a.W), dim3(kTileW, kTileH), 0, stream()>>>(view, sink);
    STD_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(desc_ops, CUDA, m) { m.impl("confidence_map", TORCH_BOX(&confidence_map_cuda)); }

}  // namespace cuda
}  // namespace desc_ops
