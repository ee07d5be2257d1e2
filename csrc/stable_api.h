// What the kernels use of libtorch, all of it from the LibTorch stable ABI
// (torch/csrc/stable, torch/headeronly), in one place.
//
// The build defines TORCH_TARGET_VERSION as torch 2.10: the headers then hide
// every API newer than 2.10 and make an ATen or c10 include a compile error,
// so one binary runs on every torch from 2.10 on (docs/ops.md §0). Everything
// here must also compile against torch 2.10's own headers, which lack some
// wrappers that newer headers mark "minimum 2.10".
#pragma once

#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/macros.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/core/ScalarType.h>
#include <torch/headeronly/util/BFloat16.h>
#include <torch/headeronly/util/Half.h>
#include <torch/headeronly/util/shim_utils.h>

#include <array>
#include <cstdint>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace desc_ops {

using Tensor = torch::stable::Tensor;
using Device = torch::stable::Device;
using ScalarType = torch::headeronly::ScalarType;
using DeviceType = torch::headeronly::DeviceType;
using Half = c10::Half;
using BFloat16 = c10::BFloat16;

constexpr ScalarType kFloat = ScalarType::Float;
constexpr ScalarType kDouble = ScalarType::Double;
constexpr ScalarType kHalf = ScalarType::Half;
constexpr ScalarType kBFloat16 = ScalarType::BFloat16;
constexpr ScalarType kInt = ScalarType::Int;
constexpr ScalarType kLong = ScalarType::Long;
constexpr ScalarType kBool = ScalarType::Bool;

// The type sums run in for a floating element type: float for half,
// bfloat16 and float, double for double (as at::opmath_type).
template <typename T>
struct OpMath {
  using type = T;
};
template <>
struct OpMath<Half> {
  using type = float;
};
template <>
struct OpMath<BFloat16> {
  using type = float;
};
template <typename T>
using opmath_t = typename OpMath<T>::type;

// The same as a ScalarType.
inline ScalarType opmath_dtype(ScalarType t) { return t == kDouble ? kDouble : kFloat; }

inline bool is_floating(ScalarType t) { return t == kFloat || t == kDouble || t == kHalf || t == kBFloat16; }
inline bool is_complex(ScalarType t) {
  return t == ScalarType::ComplexHalf || t == ScalarType::ComplexFloat || t == ScalarType::ComplexDouble;
}
inline bool is_integral(ScalarType t) {
  return t == ScalarType::Byte || t == ScalarType::Char || t == ScalarType::Short || t == kInt || t == kLong ||
         t == ScalarType::UInt16 || t == ScalarType::UInt32 || t == ScalarType::UInt64;
}

// ------------------------------------------------------------ messages

// Checks the status of a stable C shim call. Newer headers' form carries the
// message of the error inside libtorch; torch 2.10's own headers lack it.
#ifdef STABLE_TORCH_ERROR_CODE_CHECK
#define DESC_SHIM_CHECK(call) STABLE_TORCH_ERROR_CODE_CHECK(call)
#else
#define DESC_SHIM_CHECK(call) TORCH_ERROR_CODE_CHECK(call)
#endif

// Concatenates its arguments as an ostream would.
template <typename... Args>
std::string str(const Args&... args) {
  std::ostringstream out;
  ((out << args), ...);
  return out.str();
}

// A failed argument check: a RuntimeError in Python carrying exactly this
// message (the stable ABI has no ValueError; the public functions check their
// arguments in Python first and raise ValueError there, docs/ops.md §0).
#define DESC_CHECK(cond, ...)                                   \
  do {                                                          \
    if (!(cond)) throw std::runtime_error(::desc_ops::str(__VA_ARGS__)); \
  } while (0)

inline const char* dtype_name(ScalarType t) { return torch::headeronly::toString(t); }

// "cpu", "cuda:0", "meta", as torch prints a device.
inline std::string device_name(const Device& d) {
  std::string name;
  switch (d.type()) {
    case DeviceType::CPU: name = "cpu"; break;
    case DeviceType::CUDA: name = "cuda"; break;
    case DeviceType::Meta: name = "meta"; break;
    default: name = "device type " + std::to_string(static_cast<int>(d.type())); break;
  }
  return d.index() >= 0 && d.type() != DeviceType::CPU && d.type() != DeviceType::Meta
             ? name + ":" + std::to_string(d.index())
             : name;
}

inline bool same_device(const Tensor& a, const Tensor& b) {
  const Device da = a.device(), db = b.device();
  return da.type() == db.type() && da.index() == db.index();
}

// ------------------------------------------------------------ tensors

using Sizes = torch::headeronly::IntHeaderOnlyArrayRef;

// torch::stable's own where it has the function: unqualified calls on a
// Tensor find them by argument-dependent lookup anyway.
using torch::stable::reshape;
using torch::stable::to;

// `t` itself when it is contiguous (no round trip through the dispatcher, as
// at::Tensor::contiguous), else a contiguous copy.
inline Tensor as_contiguous(const Tensor& t) { return t.is_contiguous() ? t : torch::stable::contiguous(t); }

// `t` itself when it has `dtype` (no round trip through the dispatcher), else a copy.
inline Tensor to_dtype(const Tensor& t, ScalarType dtype) {
  return t.scalar_type() == dtype ? t : torch::stable::to(t, dtype);
}

// A new contiguous tensor. aoti_torch_empty_strided is a direct C call;
// torch::stable::empty goes through the boxed dispatcher, which costs a small
// input microseconds per output.
inline Tensor empty(Sizes sizes, ScalarType dtype, const Device& device) {
  constexpr size_t kMaxDims = 8;
  DESC_CHECK(sizes.size() <= kMaxDims, "desc_ops allocates at most ", kMaxDims, " dimensions");
  int64_t strides[kMaxDims];
  int64_t stride = 1;
  for (size_t i = sizes.size(); i-- > 0;) {
    strides[i] = stride;
    stride *= sizes[i] > 1 ? sizes[i] : 1;
  }
  using torch::stable::detail::from;
  AtenTensorHandle handle = nullptr;
  DESC_SHIM_CHECK(aoti_torch_empty_strided(
      static_cast<int64_t>(sizes.size()), sizes.data(), strides,
      torch::stable::detail::to<int32_t>(from(dtype)), torch::stable::detail::to<int32_t>(from(device.type())),
      device.index() < 0 ? 0 : device.index(), &handle));
  return Tensor(handle);
}
// A new contiguous tensor of the shape and device of `t` (and its dtype, or `dtype`).
inline Tensor empty_as(const Tensor& t, ScalarType dtype) { return empty(t.sizes(), dtype, t.device()); }
inline Tensor empty_as(const Tensor& t) { return empty_as(t, t.scalar_type()); }
inline Tensor zeros(Sizes sizes, ScalarType dtype, const Device& device) {
  return torch::stable::full(sizes, 0.0, dtype, std::nullopt, device);
}

// A call of an ATen operator by name, for the few that have no stable wrapper
// in torch 2.10: `args` in schema order, the first `N` results returned.
template <size_t N, typename... Args>
std::array<Tensor, N> call_aten(const char* name, const char* overload, const Args&... args) {
  constexpr size_t kSlots = sizeof...(Args) > N ? sizeof...(Args) : N;
  std::array<StableIValue, kSlots> stack{torch::stable::detail::from(args)...};
  DESC_SHIM_CHECK(torch_call_dispatcher(name, overload, stack.data(), TORCH_ABI_VERSION));
  std::array<Tensor, N> out;
  for (size_t i = 0; i < N; ++i) out[i] = torch::stable::detail::to<Tensor>(stack[i]);
  return out;
}

// Elementwise tensor arithmetic on the device of the inputs. Call them
// qualified (desc_ops::mul): a newer torch::stable may add its own.
inline Tensor mul(const Tensor& a, const Tensor& b) { return call_aten<1>("aten::mul", "Tensor", a, b)[0]; }
inline Tensor div(const Tensor& a, const Tensor& b) { return call_aten<1>("aten::div", "Tensor", a, b)[0]; }
inline Tensor neg(const Tensor& a) { return call_aten<1>("aten::neg", "", a)[0]; }

// ------------------------------------------------------------ dispatch

template <typename T>
struct TypeTag {
  using type = T;
};

template <typename F>
void dispatch_floating_impl(ScalarType t, const char* name, const F& f) {
  switch (t) {
    case kFloat: f(TypeTag<float>{}); return;
    case kDouble: f(TypeTag<double>{}); return;
    case kHalf: f(TypeTag<Half>{}); return;
    case kBFloat16: f(TypeTag<BFloat16>{}); return;
    default: throw std::runtime_error(str(name, ": dtype ", dtype_name(t), " is not a floating dtype"));
  }
}

template <typename F>
void dispatch_index_impl(ScalarType t, const char* name, const F& f) {
  switch (t) {
    case kInt: f(TypeTag<int32_t>{}); return;
    case kLong: f(TypeTag<int64_t>{}); return;
    default: throw std::runtime_error(str(name, ": dtype ", dtype_name(t), " is not int32 or int64"));
  }
}

}  // namespace desc_ops

// Runs the lambda given after NAME with `scalar_t` the floating type of TYPE
// (float, double, Half, BFloat16), as AT_DISPATCH_FLOATING_TYPES_AND2. The
// lambda is the variadic argument so that the commas of a kernel launch in it
// need no protection.
#define DESC_DISPATCH_FLOATING(TYPE, NAME, ...)                     \
  ::desc_ops::dispatch_floating_impl(TYPE, NAME, [&](auto desc_tag_) { \
    using scalar_t = typename decltype(desc_tag_)::type;           \
    return __VA_ARGS__();                                          \
  })

// The same with `index_t` int32_t or int64_t, as AT_DISPATCH_INDEX_TYPES.
#define DESC_DISPATCH_INDEX(TYPE, NAME, ...)                     \
  ::desc_ops::dispatch_index_impl(TYPE, NAME, [&](auto desc_tag_) { \
    using index_t = typename decltype(desc_tag_)::type;         \
    return __VA_ARGS__();                                       \
  })

namespace desc_ops {

// The one element of `t` (on any device) as a double or an int64: a host read
// (on the CPU, a plain read).
inline double item(const Tensor& t) {
  if (t.is_cpu() && is_floating(t.scalar_type())) {
    double v = 0;
    DESC_DISPATCH_FLOATING(t.scalar_type(), "item", [&] { v = static_cast<double>(*t.const_data_ptr<scalar_t>()); });
    return v;
  }
  return *to(to(t, Device(DeviceType::CPU)), kDouble).const_data_ptr<double>();
}
inline int64_t item_long(const Tensor& t) {
  if (t.is_cpu() && t.scalar_type() == kLong) return *t.const_data_ptr<int64_t>();
  return *to(to(t, Device(DeviceType::CPU)), kLong).const_data_ptr<int64_t>();
}

// (min, max) of an integer tensor with at least one element: one host read.
inline std::pair<int64_t, int64_t> min_max(const Tensor& t) {
  const auto mm = call_aten<2>("aten::aminmax", "", t, std::optional<int64_t>(), false);
  return {item_long(mm[0]), item_long(mm[1])};
}

}  // namespace desc_ops
