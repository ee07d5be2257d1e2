// consistency_loss, its fused form semantic_consistency_loss, and their common
// backward on the CPU (docs/ops.md §2).
//
// Sums are taken per image row and the row partials added in row order, so
// the result does not depend on how rows were split between threads.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../consistency_loss_checks.h"
#include "confidence_rows.h"

namespace desc_ops {
namespace cpu {
namespace {

// Runs the weighted L1 over every row. `weight_row(b, y, w)` fills w[0..W)
// with the weights of that row (and may write them somewhere as a side
// effect). Returns (loss, norm) as the op's outputs.
template <typename scalar_t, typename WeightRow>
std::tuple<at::Tensor, at::Tensor> weighted_l1_rows(const at::Tensor& depth,
                                                    const at::Tensor& depth_sem,
                                                    const std::string& reduction,
                                                    const WeightRow& weight_row) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t B = depth.size(0), H = depth.size(2), W = depth.size(3);
  const bool none = reduction == "none";
  const auto acc_opts = depth.options().dtype(opmath_dtype(depth.scalar_type()));
  at::Tensor loss = none ? at::empty_like(depth) : at::empty({}, depth.options());
  at::Tensor partials = at::zeros({B * H, 2}, acc_opts);
  const scalar_t* d_p = depth.data_ptr<scalar_t>();
  const scalar_t* s_p = depth_sem.data_ptr<scalar_t>();
  scalar_t* map_p = none ? loss.data_ptr<scalar_t>() : nullptr;
  acc_t* part_p = partials.data_ptr<acc_t>();

  at::parallel_for(0, B * H, row_grain(W), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> w(W);
    auto scratch = weight_row.scratch();
    for (int64_t r = begin; r < end; ++r) {
      weight_row(r / H, r % H, w.data(), scratch);
      const scalar_t* d = d_p + r * W;
      const scalar_t* s = s_p + r * W;
      acc_t sum = 0, weight_sum = 0;
      for (int64_t x = 0; x < W; ++x) {
        const acc_t l = math::weighted_l1(w[x], static_cast<acc_t>(d[x]), static_cast<acc_t>(s[x]));
        if (map_p != nullptr) map_p[r * W + x] = static_cast<scalar_t>(l);
        sum += l;
        weight_sum += w[x];
      }
      part_p[2 * r] = sum;
      part_p[2 * r + 1] = weight_sum;
    }
  });

  acc_t total = 0, weight_total = 0;
  for (int64_t r = 0; r < B * H; ++r) {
    total += part_p[2 * r];
    weight_total += part_p[2 * r + 1];
  }
  acc_t norm = 1;
  if (reduction == "mean") {
    // W_tot == 0: every weight is 0, so the loss and its gradients are 0.
    if (weight_total != acc_t(0)) norm = weight_total;
    loss.fill_(weight_total != acc_t(0) ? total / norm : acc_t(0));
  } else if (reduction == "sum") {
    loss.fill_(total);
  }
  return {loss, at::full({}, norm, acc_opts)};
}

// Weights read from a map.
template <typename scalar_t>
struct WeightMapRow {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* weight;
  int64_t H, W;
  int scratch() const { return 0; }
  void operator()(int64_t b, int64_t y, acc_t* w, int) const {
    const scalar_t* p = weight + (b * H + y) * W;
    for (int64_t x = 0; x < W; ++x) w[x] = static_cast<acc_t>(p[x]);
  }
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
  typename Rows::Scratch scratch() const { return typename Rows::Scratch(W); }
  void operator()(int64_t b, int64_t y, acc_t* w, typename Rows::Scratch& s) const {
    rows.row(b, y, w, s);
    scalar_t* c = confidence + (b * H + y) * W;
    for (int64_t x = 0; x < W; ++x) {
      c[x] = static_cast<scalar_t>(w[x]);
      w[x] = static_cast<acc_t>(c[x]);
    }
  }
};

std::tuple<at::Tensor, at::Tensor> consistency_loss_cpu(const at::Tensor& depth_in,
                                                        const at::Tensor& depth_sem_in,
                                                        const at::Tensor& weight_in,
                                                        c10::string_view reduction_sv) {
  const std::string reduction(reduction_sv);
  check_consistency_args(depth_in, depth_sem_in, weight_in, reduction);
  const at::Tensor depth = depth_in.contiguous();
  const at::Tensor depth_sem = depth_sem_in.contiguous();
  const at::Tensor weight = weight_in.contiguous();
  std::tuple<at::Tensor, at::Tensor> out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, depth.scalar_type(), "consistency_loss", [&] {
    const WeightMapRow<scalar_t> weight_row{weight.data_ptr<scalar_t>(), depth.size(2), depth.size(3)};
    out = weighted_l1_rows<scalar_t>(depth, depth_sem, reduction, weight_row);
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> semantic_consistency_loss_cpu(
    const at::Tensor& depth_in, const at::Tensor& depth_sem_in, const at::Tensor& semantic,
    const std::optional<at::Tensor>& image, const std::optional<at::Tensor>& edges,
    double edge_weight, double boundary_weight, int64_t ignore_index,
    const std::optional<at::Tensor>& ignore_classes, c10::string_view reduction_sv) {
  const std::string reduction(reduction_sv);
  const ConfidenceArgs a = semantic_consistency_args(depth_in, depth_sem_in, semantic, image, edges, edge_weight,
                                                     boundary_weight, ignore_index, ignore_classes, reduction);
  const at::Tensor depth = depth_in.contiguous();
  const at::Tensor depth_sem = depth_sem_in.contiguous();
  at::Tensor confidence = at::empty_like(depth);
  std::tuple<at::Tensor, at::Tensor> out;
  dispatch_confidence_rows(a, [&](const auto& rows) {
    using Rows = std::decay_t<decltype(rows)>;
    using scalar_t = typename Rows::scalar_t;
    const ConfidenceWeightRow<Rows> weight_row{rows, confidence.data_ptr<scalar_t>(), a.H, a.W};
    out = weighted_l1_rows<scalar_t>(depth, depth_sem, reduction, weight_row);
  });
  return {std::get<0>(out), confidence, std::get<1>(out)};
}

std::tuple<at::Tensor, at::Tensor> consistency_loss_backward_cpu(
    const at::Tensor& grad_in, const at::Tensor& depth_in, const at::Tensor& depth_sem_in,
    const at::Tensor& weight_in, const at::Tensor& norm, c10::string_view reduction_sv) {
  const std::string reduction(reduction_sv);
  check_consistency_backward_args(grad_in, depth_in, depth_sem_in, weight_in, norm, reduction);
  const bool none = reduction == "none";
  const at::Tensor depth = depth_in.contiguous();
  const at::Tensor depth_sem = depth_sem_in.contiguous();
  const at::Tensor weight = weight_in.contiguous();
  at::Tensor grad_depth = at::empty_like(depth);
  at::Tensor grad_depth_sem = at::empty_like(depth);
  if (depth.numel() == 0) return {grad_depth, grad_depth_sem};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, depth.scalar_type(), "consistency_loss_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const at::Tensor grad = none ? grad_in.to(depth.scalar_type()).contiguous() : grad_in;
    const scalar_t* g_p = none ? grad.data_ptr<scalar_t>() : nullptr;
    const acc_t scale = none ? acc_t(1)
                             : static_cast<acc_t>(grad.item<double>()) /
                                   static_cast<acc_t>(norm.item<double>());
    const scalar_t* d_p = depth.data_ptr<scalar_t>();
    const scalar_t* s_p = depth_sem.data_ptr<scalar_t>();
    const scalar_t* w_p = weight.data_ptr<scalar_t>();
    scalar_t* gd_p = grad_depth.data_ptr<scalar_t>();
    scalar_t* gs_p = grad_depth_sem.data_ptr<scalar_t>();
    at::parallel_for(0, depth.numel(), 16384, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const acc_t sc = g_p != nullptr ? static_cast<acc_t>(g_p[i]) : scale;
        const acc_t g = math::weighted_l1_grad(sc, static_cast<acc_t>(w_p[i]),
                                               static_cast<acc_t>(d_p[i]), static_cast<acc_t>(s_p[i]));
        gd_p[i] = static_cast<scalar_t>(g);
        gs_p[i] = static_cast<scalar_t>(-g);
      }
    });
  });
  return {grad_depth, grad_depth_sem};
}

}  // namespace

TORCH_LIBRARY_IMPL(desc_ops, CPU, m) {
  m.impl("consistency_loss", &consistency_loss_cpu);
  m.impl("semantic_consistency_loss", &semantic_consistency_loss_cpu);
  m.impl("_consistency_loss_backward", &consistency_loss_backward_cpu);
}

}  // namespace cpu
}  // namespace desc_ops
