// consistency_loss, its fused form semantic_consistency_loss, and their common
// backward on the CPU (docs/ops.md §2).
//
// Sums are taken per image row and the row partials added in row order, so
// the result does not depend on how rows were split between threads.
#include <vector>

#include "../consistency_loss_checks.h"
#include "confidence_rows.h"

namespace desc_ops {
namespace cpu {
namespace {

// One row: sum of weight * |d - s| and of the weights, in Vec lanes added in
// a fixed tree (simd.h); with `map`, the per-pixel losses are also stored,
// with `signed_w` the signed weights weight * sign(d - s) (exact in scalar_t).
template <typename scalar_t, int B, typename acc_t = opmath_t<scalar_t>>
DESC_OPS_ALWAYS_INLINE void l1_row_body(const scalar_t* __restrict__ d, const scalar_t* __restrict__ s,
                                        const scalar_t* __restrict__ w, int64_t n, scalar_t* __restrict__ map,
                                        scalar_t* __restrict__ signed_w, acc_t* out) {
  constexpr int N = kLanes<acc_t, B>;
  const Vec<acc_t, B> one = vsplat<B>(acc_t(1));  // signed_w is the gradient's weight * sign
  Vec<acc_t, B> sum{}, weight_sum{};
  int64_t i = 0;
  for (; i + N <= n; i += N) {
    const Vec<acc_t, B> wv = vload<acc_t, B>(w + i), dv = vload<acc_t, B>(d + i), sv = vload<acc_t, B>(s + i);
    const Vec<acc_t, B> l = math::weighted_l1(wv, dv, sv);
    if (map != nullptr) vstore<scalar_t>(map + i, l);
    if (signed_w != nullptr) vstore<scalar_t>(signed_w + i, math::weighted_l1_grad(one, wv, dv, sv));
    sum += l;
    weight_sum += wv;
  }
  if (i < n) {
    const int64_t m = n - i;
    const Vec<acc_t, B> wv = vload_part<acc_t, B>(w + i, m), dv = vload_part<acc_t, B>(d + i, m),
                        sv = vload_part<acc_t, B>(s + i, m);
    const Vec<acc_t, B> l = math::weighted_l1(wv, dv, sv);
    if (map != nullptr) vstore_part<scalar_t>(map + i, l, m);
    if (signed_w != nullptr) vstore_part<scalar_t>(signed_w + i, math::weighted_l1_grad(one, wv, dv, sv), m);
    sum += l;
    weight_sum += wv;
  }
  out[0] = lane_reduce(sum);
  out[1] = lane_reduce(weight_sum);
}
DESC_OPS_ISA_VARIANTS(l1_row, l1_row_body,
                      (const scalar_t* d, const scalar_t* s, const scalar_t* w, int64_t n, scalar_t* map,
                       scalar_t* signed_w, acc_t* out),
                      (d, s, w, n, map, signed_w, out))

// g = scale * weight * sign(d - s) (math::weighted_l1_grad), with scale the
// upstream scalar over the norm or, with `g_map`, the upstream map; both
// gradients written, the second the exact negation of the first.
template <typename scalar_t, int B, typename acc_t = opmath_t<scalar_t>>
DESC_OPS_ALWAYS_INLINE void l1_grad_body(const scalar_t* __restrict__ d, const scalar_t* __restrict__ s,
                                         const scalar_t* __restrict__ w, const scalar_t* __restrict__ g_map,
                                         acc_t scale, int64_t n, scalar_t* __restrict__ gd,
                                         scalar_t* __restrict__ gs) {
  constexpr int N = kLanes<acc_t, B>;
  int64_t i = 0;
  for (; i + N <= n; i += N) {
    const Vec<acc_t, B> sc = g_map != nullptr ? vload<acc_t, B>(g_map + i) : vsplat<B>(scale);
    const Vec<acc_t, B> g = math::weighted_l1_grad(sc, vload<acc_t, B>(w + i), vload<acc_t, B>(d + i),
                                                   vload<acc_t, B>(s + i));
    vstore<scalar_t>(gd + i, g);
    vstore<scalar_t>(gs + i, -g);
  }
  if (i < n) {
    const int64_t m = n - i;
    const Vec<acc_t, B> sc = g_map != nullptr ? vload_part<acc_t, B>(g_map + i, m) : vsplat<B>(scale);
    const Vec<acc_t, B> g = math::weighted_l1_grad(sc, vload_part<acc_t, B>(w + i, m), vload_part<acc_t, B>(d + i, m),
                                                   vload_part<acc_t, B>(s + i, m));
    vstore_part<scalar_t>(gd + i, g, m);
    vstore_part<scalar_t>(gs + i, Vec<acc_t, B>(-g), m);
  }
}
DESC_OPS_ISA_VARIANTS(l1_grad, l1_grad_body,
                      (const scalar_t* d, const scalar_t* s, const scalar_t* w, const scalar_t* g_map, acc_t scale,
                       int64_t n, scalar_t* gd, scalar_t* gs),
                      (d, s, w, g_map, scale, n, gd, gs))

// The same gradient from the signed weights the training forward saved:
// scale * (weight * sign) equals (scale * weight) * sign bit for bit (sign is
// -1, 0 or 1; only the sign of a zero may differ).
template <typename scalar_t, int B, typename acc_t = opmath_t<scalar_t>>
DESC_OPS_ALWAYS_INLINE void signed_grad_body(const scalar_t* __restrict__ signed_w,
                                             const scalar_t* __restrict__ g_map, acc_t scale, int64_t n,
                                             scalar_t* __restrict__ gd, scalar_t* __restrict__ gs) {
  constexpr int N = kLanes<acc_t, B>;
  int64_t i = 0;
  for (; i + N <= n; i += N) {
    const Vec<acc_t, B> sc = g_map != nullptr ? vload<acc_t, B>(g_map + i) : vsplat<B>(scale);
    const Vec<acc_t, B> g = sc * vload<acc_t, B>(signed_w + i);
    if (gd != nullptr) vstore<scalar_t>(gd + i, g);
    if (gs != nullptr) vstore<scalar_t>(gs + i, -g);
  }
  if (i < n) {
    const int64_t m = n - i;
    const Vec<acc_t, B> sc = g_map != nullptr ? vload_part<acc_t, B>(g_map + i, m) : vsplat<B>(scale);
    const Vec<acc_t, B> g = sc * vload_part<acc_t, B>(signed_w + i, m);
    if (gd != nullptr) vstore_part<scalar_t>(gd + i, g, m);
    if (gs != nullptr) vstore_part<scalar_t>(gs + i, Vec<acc_t, B>(-g), m);
  }
}
DESC_OPS_ISA_VARIANTS(signed_grad, signed_grad_body,
                      (const scalar_t* signed_w, const scalar_t* g_map, acc_t scale, int64_t n, scalar_t* gd,
                       scalar_t* gs),
                      (signed_w, g_map, scale, n, gd, gs))

// Runs the weighted L1 over every row. `weight_row(b, y, scratch)` returns
// the weights of that row as a scalar_t pointer (computing them, and writing
// them somewhere, if need be). Returns (loss, norm) as the op's outputs.
template <typename scalar_t, typename WeightRow>
std::tuple<Tensor, Tensor> weighted_l1_rows(const Tensor& depth,
                                                    const Tensor& depth_sem,
                                                    const std::string& reduction,
                                                    const WeightRow& weight_row,
                                                    scalar_t* signed_w_p = nullptr) {
  using acc_t = opmath_t<scalar_t>;
  const int64_t B = depth.size(0), H = depth.size(2), W = depth.size(3);
  const bool none = reduction == "none";
  Tensor loss = none ? empty_as(depth) : empty({}, depth.scalar_type(), depth.device());
  std::vector<acc_t> partials(2 * B * H);
  const scalar_t* d_p = depth.const_data_ptr<scalar_t>();
  const scalar_t* s_p = depth_sem.const_data_ptr<scalar_t>();
  scalar_t* map_p = none ? loss.mutable_data_ptr<scalar_t>() : nullptr;
  acc_t* part_p = partials.data();

  torch::stable::parallel_for(0, B * H, row_grain(W), [&](int64_t begin, int64_t end) {
    auto scratch = weight_row.scratch();
    for (int64_t r = begin; r < end; ++r) {
      const scalar_t* w = weight_row(r / H, r % H, scratch);
      l1_row<scalar_t>(d_p + r * W, s_p + r * W, w, W, map_p != nullptr ? map_p + r * W : nullptr,
                       signed_w_p != nullptr ? signed_w_p + r * W : nullptr, part_p + 2 * r);
    }
  });

  // Row partials added in row order: the sum does not depend on the threads.
  acc_t total = 0, weight_total = 0;
  for (int64_t r = 0; r < B * H; ++r) {
    total += part_p[2 * r];
    weight_total += part_p[2 * r + 1];
  }
  acc_t norm = 1;
  if (reduction == "mean") {
    // W_tot == 0: every weight is 0, so the loss and its gradients are 0.
    if (weight_total != acc_t(0)) norm = weight_total;
    *loss.mutable_data_ptr<scalar_t>() = static_cast<scalar_t>(weight_total != acc_t(0) ? total / norm : acc_t(0));
  } else if (reduction == "sum") {
    *loss.mutable_data_ptr<scalar_t>() = static_cast<scalar_t>(total);
  }
  Tensor norm_t = empty({}, opmath_dtype(depth.scalar_type()), depth.device());
  *norm_t.mutable_data_ptr<acc_t>() = norm;
  return {loss, norm_t};
}

// Weights read from a map.
template <typename scalar_t>
struct WeightMapRow {
  using acc_t = opmath_t<scalar_t>;
  const scalar_t* weight;
  int64_t H, W;
  int scratch() const { return 0; }
  const scalar_t* operator()(int64_t b, int64_t y, int) const { return weight + (b * H + y) * W; }
};

// Weights computed as the confidence map, rounded to the output dtype (so the
// fused loss equals consistency_loss(confidence_map(...)) exactly) and written
// to `confidence` for the backward.
template <typename Rows>
struct ConfidenceWeightRow {
  using scalar_t = typename Rows::scalar_t;
  using acc_t = typename Rows::acc_t;
  const Rows& rows;
  scalar_t* confidence;
  int64_t H, W;
  struct Scratch {
    explicit Scratch(int64_t W) : rows(W), w(W) {}
    typename Rows::Scratch rows;
    std::vector<acc_t> w;
  };
  Scratch scratch() const { return Scratch(W); }
  const scalar_t* operator()(int64_t b, int64_t y, Scratch& s) const {
    rows.row(b, y, s.w.data(), s.rows);
    scalar_t* c = confidence + (b * H + y) * W;
    store_row(s.w.data(), W, c);
    return c;
  }
};

// The forward ops; `signed_w`, if defined, receives weight * sign(depth -
// depth_sem), all the training forward's backward needs.
std::tuple<Tensor, Tensor> consistency_loss_impl(const Tensor& depth_in, const Tensor& depth_sem_in,
                                                         const Tensor& weight_in, const std::string& reduction,
                                                         Tensor* signed_w) {
  check_consistency_args(depth_in, depth_sem_in, weight_in, reduction);
  const Tensor depth = as_contiguous(depth_in);
  const Tensor depth_sem = as_contiguous(depth_sem_in);
  const Tensor weight = as_contiguous(weight_in);
  if (signed_w != nullptr) *signed_w = empty_as(depth);
  std::tuple<Tensor, Tensor> out;
  DESC_DISPATCH_FLOATING(depth.scalar_type(), "consistency_loss", [&] {
    const WeightMapRow<scalar_t> weight_row{weight.const_data_ptr<scalar_t>(), depth.size(2), depth.size(3)};
    out = weighted_l1_rows<scalar_t>(depth, depth_sem, reduction, weight_row,
                                     signed_w != nullptr ? signed_w->mutable_data_ptr<scalar_t>() : nullptr);
  });
  return out;
}

std::tuple<Tensor, Tensor, Tensor> semantic_consistency_loss_impl(
    const Tensor& depth_in, const Tensor& depth_sem_in, const Tensor& semantic,
    const std::optional<Tensor>& image, const std::optional<Tensor>& edges, double edge_weight,
    double boundary_weight, int64_t ignore_index, const std::optional<Tensor>& ignore_classes,
    const std::string& reduction, Tensor* signed_w) {
  const ConfidenceArgs a = semantic_consistency_args(depth_in, depth_sem_in, semantic, image, edges, edge_weight,
                                                     boundary_weight, ignore_index, ignore_classes, reduction);
  const Tensor depth = as_contiguous(depth_in);
  const Tensor depth_sem = as_contiguous(depth_sem_in);
  Tensor confidence = empty_as(depth);
  if (signed_w != nullptr) *signed_w = empty_as(depth);
  std::tuple<Tensor, Tensor> out;
  dispatch_confidence_rows(a, [&](const auto& rows) {
    using Rows = std::decay_t<decltype(rows)>;
    using scalar_t = typename Rows::scalar_t;
    const ConfidenceWeightRow<Rows> weight_row{rows, confidence.mutable_data_ptr<scalar_t>(), a.H, a.W};
    out = weighted_l1_rows<scalar_t>(depth, depth_sem, reduction, weight_row,
                                     signed_w != nullptr ? signed_w->mutable_data_ptr<scalar_t>() : nullptr);
  });
  return {std::get<0>(out), confidence, std::get<1>(out)};
}

std::tuple<Tensor, Tensor> consistency_loss_cpu(const Tensor& depth, const Tensor& depth_sem,
                                                        const Tensor& weight, const std::string& reduction) {
  return consistency_loss_impl(depth, depth_sem, weight, reduction, nullptr);
}

std::tuple<Tensor, Tensor, Tensor> consistency_loss_train_cpu(const Tensor& depth,
                                                                          const Tensor& depth_sem,
                                                                          const Tensor& weight,
                                                                          const std::string& reduction) {
  Tensor signed_w;
  auto [loss, norm] = consistency_loss_impl(depth, depth_sem, weight, reduction, &signed_w);
  return {loss, norm, signed_w};
}

std::tuple<Tensor, Tensor, Tensor> semantic_consistency_loss_cpu(
    const Tensor& depth, const Tensor& depth_sem, const Tensor& semantic,
    const std::optional<Tensor>& image, const std::optional<Tensor>& edges, double edge_weight,
    double boundary_weight, int64_t ignore_index, const std::optional<Tensor>& ignore_classes,
    const std::string& reduction) {
  return semantic_consistency_loss_impl(depth, depth_sem, semantic, image, edges, edge_weight, boundary_weight,
                                        ignore_index, ignore_classes, reduction, nullptr);
}

std::tuple<Tensor, Tensor, Tensor, Tensor> semantic_consistency_loss_train_cpu(
    const Tensor& depth, const Tensor& depth_sem, const Tensor& semantic,
    const std::optional<Tensor>& image, const std::optional<Tensor>& edges, double edge_weight,
    double boundary_weight, int64_t ignore_index, const std::optional<Tensor>& ignore_classes,
    const std::string& reduction) {
  Tensor signed_w;
  auto [loss, confidence, norm] =
      semantic_consistency_loss_impl(depth, depth_sem, semantic, image, edges, edge_weight, boundary_weight,
                                     ignore_index, ignore_classes, reduction, &signed_w);
  return {loss, confidence, norm, signed_w};
}

// The backward of the training forwards: from the signed weights alone.
// output_mask: which of the two gradients to compute (the other is returned
// empty, shape (0,)).
std::tuple<Tensor, Tensor> consistency_loss_backward_signed_cpu(const Tensor& grad_in,
                                                                        const Tensor& signed_w_in,
                                                                        const Tensor& norm,
                                                                        const std::string& reduction,
                                                                        const std::vector<bool>& output_mask) {
  check_reduction(reduction, /*allow_none=*/true);
  check_depth(signed_w_in, "signed_weight");
  check_norm(norm, signed_w_in);
  DESC_CHECK(output_mask.size() == 2, "output_mask must hold 2 values, got ", output_mask.size());
  const bool none = reduction == "none";
  if (none) {
    check_same_device(grad_in, "grad", signed_w_in, "signed_weight");
    check_floating(grad_in, "grad");
    check_map(grad_in, "grad", signed_w_in.size(0), signed_w_in.size(2), signed_w_in.size(3));
  } else {
    check_scalar_grad(grad_in, signed_w_in);
  }
  const Tensor signed_w = as_contiguous(signed_w_in);
  Tensor grad_depth = output_mask[0] ? empty_as(signed_w) : empty({0}, signed_w.scalar_type(), signed_w.device());
  Tensor grad_depth_sem = output_mask[1] ? empty_as(signed_w) : empty({0}, signed_w.scalar_type(), signed_w.device());
  if (signed_w.numel() == 0) return {grad_depth, grad_depth_sem};
  DESC_DISPATCH_FLOATING(signed_w.scalar_type(), "consistency_loss_backward", [&] {
    using acc_t = opmath_t<scalar_t>;
    const Tensor grad = none ? as_contiguous(to_dtype(grad_in, signed_w.scalar_type())) : grad_in;
    const scalar_t* g_p = none ? grad.const_data_ptr<scalar_t>() : nullptr;
    const acc_t scale = none ? acc_t(1)
                             : static_cast<acc_t>(item(grad)) / static_cast<acc_t>(item(norm));
    const scalar_t* w_p = signed_w.const_data_ptr<scalar_t>();
    scalar_t* gd_p = output_mask[0] ? grad_depth.mutable_data_ptr<scalar_t>() : nullptr;
    scalar_t* gs_p = output_mask[1] ? grad_depth_sem.mutable_data_ptr<scalar_t>() : nullptr;
    const int64_t n = signed_w.numel(), block = 16384;
    torch::stable::parallel_for(0, (n + block - 1) / block, 1, [&](int64_t begin, int64_t end) {
      const int64_t i = begin * block, m = std::min(end * block, n) - i;
      signed_grad<scalar_t>(w_p + i, g_p != nullptr ? g_p + i : nullptr, scale, m,
                            gd_p != nullptr ? gd_p + i : nullptr, gs_p != nullptr ? gs_p + i : nullptr);
    });
  });
  return {grad_depth, grad_depth_sem};
}

std::tuple<Tensor, Tensor> consistency_loss_backward_cpu(
    const Tensor& grad_in, const Tensor& depth_in, const Tensor& depth_sem_in,
    const Tensor& weight_in, const Tensor& norm, const std::string& reduction) {
  check_consistency_backward_args(grad_in, depth_in, depth_sem_in, weight_in, norm, reduction);
  const bool none = reduction == "none";
  const Tensor depth = as_contiguous(depth_in);
  const Tensor depth_sem = as_contiguous(depth_sem_in);
  const Tensor weight = as_contiguous(weight_in);
  Tensor grad_depth = empty_as(depth);
  Tensor grad_depth_sem = empty_as(depth);
  if (depth.numel() == 0) return {grad_depth, grad_depth_sem};
  DESC_DISPATCH_FLOATING(depth.scalar_type(), "consistency_loss_backward", [&] {
    using acc_t = opmath_t<scalar_t>;
    const Tensor grad = none ? as_contiguous(to_dtype(grad_in, depth.scalar_type())) : grad_in;
    const scalar_t* g_p = none ? grad.const_data_ptr<scalar_t>() : nullptr;
    const acc_t scale = none ? acc_t(1)
                             : static_cast<acc_t>(item(grad)) / static_cast<acc_t>(item(norm));
    const scalar_t* d_p = depth.const_data_ptr<scalar_t>();
    const scalar_t* s_p = depth_sem.const_data_ptr<scalar_t>();
    const scalar_t* w_p = weight.const_data_ptr<scalar_t>();
    scalar_t* gd_p = grad_depth.mutable_data_ptr<scalar_t>();
    scalar_t* gs_p = grad_depth_sem.mutable_data_ptr<scalar_t>();
    // Fixed 16384-element blocks, whatever the threads (the result is elementwise anyway).
    const int64_t n = depth.numel(), block = 16384;
    torch::stable::parallel_for(0, (n + block - 1) / block, 1, [&](int64_t begin, int64_t end) {
      const int64_t i = begin * block, m = std::min(end * block, n) - i;
      l1_grad<scalar_t>(d_p + i, s_p + i, w_p + i, g_p != nullptr ? g_p + i : nullptr, scale, m, gd_p + i, gs_p + i);
    });
  });
  return {grad_depth, grad_depth_sem};
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(desc_ops, CPU, m) {
  m.impl("consistency_loss", TORCH_BOX(&consistency_loss_cpu));
  m.impl("semantic_consistency_loss", TORCH_BOX(&semantic_consistency_loss_cpu));
  m.impl("_consistency_loss_backward", TORCH_BOX(&consistency_loss_backward_cpu));
  m.impl("_consistency_loss_train", TORCH_BOX(&consistency_loss_train_cpu));
  m.impl("_semantic_consistency_loss_train", TORCH_BOX(&semantic_consistency_loss_train_cpu));
  m.impl("_consistency_loss_backward_signed", TORCH_BOX(&consistency_loss_backward_signed_cpu));
}

}  // namespace cpu
}  // namespace desc_ops
