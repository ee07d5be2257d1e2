// Argument checks of consistency_loss, semantic_consistency_loss and their
// backward (docs/ops.md §2), shared by the CPU and CUDA kernels.
#pragma once

#include <string>

#include "checks.h"
#include "confidence_checks.h"

namespace desc_ops {

inline void check_depth_pair(const Tensor& depth, const Tensor& depth_sem) {
  check_depth(depth);
  check_map_like(depth_sem, "depth_sem", depth);
}

inline void check_consistency_args(const Tensor& depth, const Tensor& depth_sem,
                                   const Tensor& weight, const std::string& reduction) {
  check_reduction(reduction, /*allow_none=*/true);
  check_depth_pair(depth, depth_sem);
  check_map_like(weight, "weight", depth);
  check_not_empty(depth, reduction);
}

// The confidence inputs of the fused loss, computed in the dtype of depth.
inline ConfidenceArgs semantic_consistency_args(
    const Tensor& depth, const Tensor& depth_sem, const Tensor& semantic,
    const std::optional<Tensor>& image, const std::optional<Tensor>& edges, double edge_weight,
    double boundary_weight, int64_t ignore_index, const std::optional<Tensor>& ignore_classes,
    const std::string& reduction) {
  check_reduction(reduction, /*allow_none=*/true);
  check_depth_pair(depth, depth_sem);
  check_same_device(semantic, "semantic", depth, "depth");
  ConfidenceArgs a = make_confidence_args(semantic, image, edges, edge_weight, boundary_weight, ignore_index,
                                          ignore_classes);
  DESC_CHECK(a.B == depth.size(0) && a.H == depth.size(2) && a.W == depth.size(3),
             "semantic must cover the pixels of depth ", describe(depth), ", got ", describe(semantic));
  if (a.logits.defined() || a.image.defined() || a.edges.defined()) {
    DESC_CHECK(a.dtype == depth.scalar_type(), "semantic, image and edges must have the dtype of depth (",
               depth.scalar_type(), "), got ", a.dtype);
  }
  check_not_empty(depth, reduction);
  a.dtype = depth.scalar_type();
  return a;
}

// The backward reads depth, depth_sem and weight pixel by pixel: all must match.
inline void check_consistency_backward_args(const Tensor& grad, const Tensor& depth,
                                            const Tensor& depth_sem, const Tensor& weight,
                                            const Tensor& norm, const std::string& reduction) {
  check_reduction(reduction, /*allow_none=*/true);
  check_depth_pair(depth, depth_sem);
  check_map_like(weight, "weight", depth);
  check_norm(norm, depth);
  check_grad(grad, depth, reduction);
}

}  // namespace desc_ops
