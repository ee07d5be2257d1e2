// confidence_map on the CPU (docs/ops.md §1).

#include "confidence_rows.h"

namespace desc_ops {
namespace cpu {
namespace {

Tensor confidence_map_cpu(const Tensor& semantic, const std::optional<Tensor>& image,
                              const std::optional<Tensor>& edges, double edge_weight,
                              double boundary_weight, int64_t ignore_index,
                              const std::optional<Tensor>& ignore_classes) {
  const ConfidenceArgs a = make_confidence_args(semantic, image, edges, edge_weight,
                                                boundary_weight, ignore_index, ignore_classes);
  Tensor out = empty({a.B, 1, a.H, a.W}, a.dtype, semantic.device());
  if (out.numel() == 0) return out;
  dispatch_confidence_rows(a, [&](const auto& rows) {
    using Rows = std::decay_t<decltype(rows)>;
    using scalar_t = typename Rows::scalar_t;
    using acc_t = typename Rows::acc_t;
    scalar_t* out_p = out.mutable_data_ptr<scalar_t>();
    const int64_t H = a.H, W = a.W;
    torch::stable::parallel_for(0, a.B * H, row_grain(W), [&](int64_t begin, int64_t end) {
      typename Rows::Scratch scratch(W);
      std::vector<acc_t> c(W);
      for (int64_t r = begin; r < end; ++r) {
        rows.row(r / H, r % H, c.data(), scratch);
        store_row<scalar_t>(c.data(), W, out_p + r * W);
      }
    });
  });
  return out;
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(desc_ops, CPU, m) { m.impl("confidence_map", TORCH_BOX(&confidence_map_cpu)); }

}  // namespace cpu
}  // namespace desc_ops
