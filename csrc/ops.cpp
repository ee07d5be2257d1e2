// The schemas of every desc_ops operator (docs/ops.md), declared
// once. Kernels are registered per device in csrc/cpu and csrc/cuda;
// autograd and fake kernels are added in Python (desc_ops/_ops.py).
//
// Optional depth in instance_stats: without it the three depth outputs are
// empty tensors, so that the schema has a fixed number of outputs.
#ifndef DESC_OPS_NO_PYTHON
#include <Python.h>
#endif

#include "stable_api.h"

namespace desc_ops {

STABLE_TORCH_LIBRARY(desc_ops, m) {
  m.def(
      "confidence_map(Tensor semantic, Tensor? image, Tensor? edges, float edge_weight, "
      "float boundary_weight, int ignore_index, Tensor? ignore_classes) -> Tensor");
  m.def("consistency_loss(Tensor depth, Tensor depth_sem, Tensor weight, str reduction) -> (Tensor, Tensor)");
  m.def(
      "semantic_consistency_loss(Tensor depth, Tensor depth_sem, Tensor semantic, Tensor? image, "
      "Tensor? edges, float edge_weight, float boundary_weight, int ignore_index, "
      "Tensor? ignore_classes, str reduction) -> (Tensor, Tensor, Tensor)");
  m.def(
      "_consistency_loss_backward(Tensor grad, Tensor depth, Tensor depth_sem, Tensor weight, "
      "Tensor norm, str reduction) -> (Tensor, Tensor)");
  // CPU training forms (desc_ops/functional.py uses them when a gradient is
  // needed): the forward also returns what a cheaper backward reads.
  m.def(
      "_consistency_loss_train(Tensor depth, Tensor depth_sem, Tensor weight, str reduction) "
      "-> (Tensor, Tensor, Tensor)");
  m.def(
      "_semantic_consistency_loss_train(Tensor depth, Tensor depth_sem, Tensor semantic, Tensor? image, "
      "Tensor? edges, float edge_weight, float boundary_weight, int ignore_index, "
      "Tensor? ignore_classes, str reduction) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def("_consistency_loss_backward_signed(Tensor grad, Tensor signed_weight, Tensor norm, str reduction, "
        "bool[2] output_mask) -> (Tensor, Tensor)");
  m.def(
      "instance_stats(Tensor instance_ids, int num_instances, Tensor? depth, bool validate) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "instance_prior_loss(Tensor depth, Tensor instance_ids, Tensor heights, Tensor focal, "
      "int min_pixels, float? max_depth, str reduction, bool validate) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "_instance_prior_loss_backward(Tensor grad, Tensor depth, Tensor instance_ids, Tensor z, "
      "Tensor dz_dh, Tensor sign_sum, Tensor norm, str reduction=\"mean\") -> (Tensor, Tensor)");
  m.def("smoothness_loss(Tensor depth, Tensor image, str reduction=\"mean\") -> Tensor");
  m.def("_smoothness_loss_backward(Tensor grad, Tensor depth, Tensor image, str reduction=\"mean\") -> Tensor");
  m.def("_smoothness_loss_train(Tensor depth, Tensor image) -> (Tensor, Tensor)");
  m.def("_smoothness_loss_backward_saved(Tensor grad, Tensor unit_grad, ScalarType dtype) -> Tensor");
  m.def(
      "stereo_photometric_loss(Tensor depth, Tensor image, Tensor image_other, Tensor focal_baseline, "
      "float alpha=0.85, str ssim=\"valid\", str reduction=\"mean\") -> Tensor");
  m.def(
      "_stereo_photometric_loss_backward(Tensor grad, Tensor depth, Tensor image, Tensor image_other, "
      "Tensor focal_baseline, float alpha, str ssim, str reduction) -> Tensor");
}

}  // namespace desc_ops

#ifndef DESC_OPS_NO_PYTHON
// Importing desc_ops._C runs the registrations above and those of the CPU
// kernels; the module itself is empty (no pybind11 bindings, only the
// limited C API of Python 3.9, so one abi3 build serves every Python). The
// CUDA kernels are another module (csrc/cuda/module.cpp). The CMake build for
// C++ users defines DESC_OPS_NO_PYTHON and is loaded with
// torch.ops.load_library.
PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
#endif
