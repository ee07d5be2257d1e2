// The Python module desc_ops._C_cuda<major>: importing it runs the
// registrations of the CUDA kernels (csrc/cuda/*.cu) on the operators that
// desc_ops._C defines. Its name carries the CUDA major version it was built
// with (setup.py), so that desc_ops loads it only under a torch of the same
// major (desc_ops/_backend.py); CUDA_VERSION is the toolkit's full version.
#ifndef DESC_OPS_NO_PYTHON
#include <Python.h>
#include <cuda_runtime_api.h>

#define DESC_OPS_STR_(x) #x
#define DESC_OPS_STR(x) DESC_OPS_STR_(x)
#define DESC_OPS_CAT_(a, b) a##b
#define DESC_OPS_CAT(a, b) DESC_OPS_CAT_(a, b)

static_assert(CUDART_VERSION / 1000 == DESC_OPS_CUDA_MAJOR, "DESC_OPS_CUDA_MAJOR must be the toolkit's major");

PyMODINIT_FUNC DESC_OPS_CAT(PyInit__C_cuda, DESC_OPS_CUDA_MAJOR)(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C_cuda" DESC_OPS_STR(DESC_OPS_CUDA_MAJOR), nullptr,
                                          -1, nullptr};
  PyObject* module = PyModule_Create(&module_def);
  if (module != nullptr && PyModule_AddIntConstant(module, "CUDA_VERSION", CUDART_VERSION) < 0) {
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}
#endif
