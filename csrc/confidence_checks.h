// The inputs of the confidence map (docs/ops.md §1), checked and made contiguous once
// for every kernel that evaluates it: confidence_map itself and the fused
// semantic_consistency_loss, on any device.
#pragma once

#include <optional>

#include "checks.h"

namespace desc_ops {

struct ConfidenceArgs {
  Tensor logits;  // (B, C, H, W) floating, or undefined
  Tensor labels;  // (B, H, W) int32/int64, or undefined
  Tensor image;   // (B, 1|3, H, W), or undefined
  Tensor edges;   // (B, 1, H, W), or undefined
  Tensor ignore;  // (n,) int64 on the device of the inputs (n may be 0)
  int64_t B = 0, C = 0, H = 0, W = 0;
  double edge_weight = 1.0;
  double boundary_weight = 0.5;
  int64_t ignore_index = -1;
  // The floating dtype the map is computed for: that of the logits, else of
  // the image or edges, else float32 (docs/ops.md §0).
  ScalarType dtype = kFloat;

  bool has_logits() const { return logits.defined(); }
};

inline ConfidenceArgs make_confidence_args(
    const Tensor& semantic, const std::optional<Tensor>& image,
    const std::optional<Tensor>& edges, double edge_weight,
    double boundary_weight, int64_t ignore_index,
    const std::optional<Tensor>& ignore_classes) {
  ConfidenceArgs a;
  a.edge_weight = edge_weight;
  a.boundary_weight = boundary_weight;
  a.ignore_index = ignore_index;
  if (is_floating(semantic.scalar_type())) {
    DESC_CHECK(semantic.dim() == 4 && semantic.size(1) >= 1,
               "semantic logits must have shape [B, C, H, W] with C >= 1, got ",
               describe(semantic));
    a.logits = as_contiguous(semantic);
    a.B = semantic.size(0);
    a.C = semantic.size(1);
    a.H = semantic.size(2);
    a.W = semantic.size(3);
    a.dtype = semantic.scalar_type();
  } else {
    check_index(semantic, "semantic labels");
    DESC_CHECK(semantic.dim() == 3,
               "semantic labels must have shape [B, H, W], got ",
               describe(semantic));
    a.labels = as_contiguous(semantic);
    a.B = semantic.size(0);
    a.H = semantic.size(1);
    a.W = semantic.size(2);
  }
  const bool has_image = image.has_value() && image->defined();
  const bool has_edges = edges.has_value() && edges->defined();
  DESC_CHECK(!(has_image && has_edges),
             "give image or edges to confidence_map, not both");
  if (has_image) {
    check_floating(*image, "image");
    check_same_device(*image, "image", semantic, "semantic");
    DESC_CHECK(image->dim() == 4 && image->size(0) == a.B &&
                   (image->size(1) == 1 || image->size(1) == 3) &&
                   image->size(2) == a.H && image->size(3) == a.W,
               "image must have shape [", a.B, ", 3 or 1, ", a.H, ", ",
               a.W, "], got ", describe(*image));
    if (a.has_logits()) check_same_dtype(*image, "image", semantic, "semantic");
    a.image = as_contiguous(*image);
    if (!a.has_logits()) a.dtype = image->scalar_type();
  }
  if (has_edges) {
    check_floating(*edges, "edges");
    check_same_device(*edges, "edges", semantic, "semantic");
    check_map(*edges, "edges", a.B, a.H, a.W);
    if (a.has_logits()) check_same_dtype(*edges, "edges", semantic, "semantic");
    a.edges = as_contiguous(*edges);
    if (!a.has_logits()) a.dtype = edges->scalar_type();
  }
  if (ignore_classes.has_value() && ignore_classes->defined()) {
    DESC_CHECK(ignore_classes->dim() == 1 &&
                   is_integral(ignore_classes->scalar_type()),
               "ignore_classes must be a 1-D integer tensor, got ",
               describe(*ignore_classes));
    a.ignore = as_contiguous(to(to_dtype(*ignore_classes, kLong), semantic.device()));
  } else {
    a.ignore = empty({0}, kLong, semantic.device());
  }
  return a;
}

}  // namespace desc_ops
