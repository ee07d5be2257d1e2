// Run-time choice of AVX2 + FMA and AVX-512 builds of the hot row loops, and
// the fixed-width vectors they are written in.
//
// The extension is compiled for the baseline x86-64 ISA so that it runs
// anywhere; a row function marked DESC_OPS_AVX2 or DESC_OPS_AVX512 gets the
// wider instructions where the CPU has them. Its body must be an
// always_inline template, so that every build comes from one source, and
// must not call lambdas (a lambda does not take the build's target, and
// code that is not inlined into it would run the baseline ISA).
//
// Loops that sum are written with Vec<acc_t, B> (GCC vector extensions of
// the build's native width: B = 16 bytes baseline, 32 AVX2, 64 AVX-512)
// instead of relying on the auto-vectoriser, which may not reorder a
// floating-point sum: lane j of a row's partial sum holds the elements j,
// j + N, j + 2N, ... and the N lanes are added in a fixed tree at the end
// (lane_reduce). The order depends on the row length and the build, never
// on the threads.
#pragma once

#include "../stable_api.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <limits>

#include <type_traits>
#include <utility>

#include "../desc_math.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define DESC_OPS_HAS_AVX2_DISPATCH 1
#define DESC_OPS_AVX2 __attribute__((target("avx2,fma")))
#define DESC_OPS_AVX512 \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,prefer-vector-width=512")))
#endif
#define DESC_OPS_ALWAYS_INLINE __attribute__((always_inline)) inline

namespace desc_ops {
namespace cpu {

enum class Isa { kBase = 0, kAvx2 = 1, kAvx512 = 2 };

// The widest build this CPU runs; the environment variable
// DESC_OPS_CPU_ISA=base or avx2, read once, caps it (to compare builds).
inline Isa cpu_isa_detect() {
#ifdef DESC_OPS_HAS_AVX2_DISPATCH
  Isa cap = Isa::kAvx512;
  if (const char* env = getenv("DESC_OPS_CPU_ISA")) {
    if (strcmp(env, "base") == 0) cap = Isa::kBase;
    if (strcmp(env, "avx2") == 0) cap = Isa::kAvx2;
  }
  Isa isa = Isa::kBase;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) isa = Isa::kAvx2;
  if (isa == Isa::kAvx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) {
    isa = Isa::kAvx512;
  }
  return static_cast<int>(isa) < static_cast<int>(cap) ? isa : cap;
#else
  return Isa::kBase;
#endif
}
inline Isa cpu_isa() {
  static const Isa isa = cpu_isa_detect();
  return isa;
}
inline bool cpu_has_avx2() { return cpu_isa() >= Isa::kAvx2; }

// The dtypes the wide builds are made for (the others run the baseline build).
template <typename scalar_t>
constexpr bool kWideBuilds = std::is_same_v<scalar_t, float> || std::is_same_v<scalar_t, BFloat16>;

// Defines `name`, a function template over scalar_t that runs
// `body<scalar_t>` in the widest build the CPU has. `params` is the
// parenthesised parameter list (scalar_t and acc_t = opmath_type<scalar_t>
// may appear in it), `args` the parenthesised argument names.
#ifdef DESC_OPS_HAS_AVX2_DISPATCH
#define DESC_OPS_ISA_VARIANTS(name, body, params, args)                              \
  template <typename scalar_t, typename acc_t = opmath_t<scalar_t>>           \
  DESC_OPS_AVX2 void name##_avx2 params { body<scalar_t, 32> args; }                     \
  template <typename scalar_t, typename acc_t = opmath_t<scalar_t>>           \
  DESC_OPS_AVX512 void name##_avx512 params { body<scalar_t, 64> args; }                 \
  template <typename scalar_t, typename acc_t = opmath_t<scalar_t>>           \
  void name params {                                                                 \
    if constexpr (::desc_ops::cpu::kWideBuilds<scalar_t>) {                          \
      const ::desc_ops::cpu::Isa isa = ::desc_ops::cpu::cpu_isa();                   \
      if (isa == ::desc_ops::cpu::Isa::kAvx512) return name##_avx512<scalar_t> args; \
      if (isa == ::desc_ops::cpu::Isa::kAvx2) return name##_avx2<scalar_t> args;     \
    }                                                                                \
    body<scalar_t, 16> args;                                                         \
  }
#else
#define DESC_OPS_ISA_VARIANTS(name, body, params, args)                    \
  template <typename scalar_t, typename acc_t = opmath_t<scalar_t>> \
  void name params {                                                       \
    body<scalar_t, 16> args;                                               \
  }
#endif

// ------------------------------------------------------------- vectors

// Vectors of B bytes: each build uses its native width (B = 16 baseline,
// 32 AVX2, 64 AVX-512), so B / sizeof(acc_t) lanes.
template <typename T, int B>
struct VecOf {
  typedef T type __attribute__((vector_size(B)));
};
template <typename acc_t, int B>
using Vec = typename VecOf<acc_t, B>::type;
template <typename acc_t, int B>
constexpr int kLanes = B / static_cast<int>(sizeof(acc_t));
template <typename acc_t>
using IntOf = std::conditional_t<sizeof(acc_t) == 8, int64_t, int32_t>;
template <typename acc_t>
using UIntOf = std::conditional_t<sizeof(acc_t) == 8, uint64_t, uint32_t>;
// The element type of a vector, and its width in bytes.
template <typename V>
using ElemOf = std::remove_cv_t<std::remove_reference_t<decltype(std::declval<V>()[0])>>;
template <typename V>
constexpr int kBytesOf = static_cast<int>(sizeof(V));

template <int B, typename acc_t>
DESC_OPS_ALWAYS_INLINE Vec<acc_t, B> vsplat(acc_t v) {
  return Vec<acc_t, B>{} + v;
}

// bfloat16 <-> float bits as one shuffle of 16-bit lanes (GCC splits
// __builtin_convertvector into several instructions): the bfloat16 bits are
// the high half of the float's (little endian: the odd 16-bit lanes).
template <typename H, size_t... J>
DESC_OPS_ALWAYS_INLINE auto bf16_widen(H h, std::index_sequence<J...>) {
  constexpr int N = static_cast<int>(sizeof...(J)) / 2;  // lanes of h
  return __builtin_shufflevector(H{}, h, (J % 2 == 0 ? 0 : N + static_cast<int>(J / 2))...);
}
template <typename W, size_t... I>
DESC_OPS_ALWAYS_INLINE auto bf16_narrow(W w, std::index_sequence<I...>) {
  return __builtin_shufflevector(w, w, static_cast<int>(2 * I + 1)...);
}

// N consecutive elements as acc_t. float and double: a plain load; bfloat16:
// the bits shifted into the high half of a float (exact); half: per element.
template <typename acc_t, int B, typename scalar_t>
DESC_OPS_ALWAYS_INLINE Vec<acc_t, B> vload(const scalar_t* p) {
  Vec<acc_t, B> v;
  if constexpr (std::is_same_v<scalar_t, acc_t>) {
    memcpy(&v, p, sizeof(v));
  } else if constexpr (std::is_same_v<scalar_t, BFloat16>) {
    Vec<uint16_t, B / 2> h;
    memcpy(&h, p, sizeof(h));
    const Vec<uint16_t, B> u = bf16_widen(h, std::make_index_sequence<B / 2>());
    memcpy(&v, &u, sizeof(v));
  } else {
    for (int j = 0; j < kLanes<acc_t, B>; ++j) v[j] = static_cast<acc_t>(p[j]);
  }
  return v;
}

// Stores N elements rounded to scalar_t, bit for bit as static_cast would
// (bfloat16: round to nearest even, NaN as 0x7FC0, as BFloat16).
template <typename scalar_t, typename V>
DESC_OPS_ALWAYS_INLINE void vstore(scalar_t* p, V v) {
  using acc_t = ElemOf<V>;
  constexpr int B = kBytesOf<V>;
  if constexpr (std::is_same_v<scalar_t, acc_t>) {
    memcpy(p, &v, sizeof(v));
  } else if constexpr (std::is_same_v<scalar_t, BFloat16>) {
    using U = Vec<uint32_t, B>;
    U u;
    memcpy(&u, &v, sizeof(u));
    // The bfloat16 is the high half of: u + rounding bias, or the quiet NaN.
    const U rounded = u + (((u >> 16) & 1u) + 0x7FFFu);
    const U bits = v != v ? U{} + 0x7FC00000u : rounded;
    Vec<uint16_t, B> halves;
    memcpy(&halves, &bits, sizeof(halves));
    const Vec<uint16_t, B / 2> h = bf16_narrow(halves, std::make_index_sequence<B / 4>());
    memcpy(p, &h, sizeof(h));
  } else {
    for (int j = 0; j < kLanes<acc_t, B>; ++j) p[j] = static_cast<scalar_t>(v[j]);
  }
}

// The first n < N elements, the other lanes `fill`; and its store.
template <typename acc_t, int B, typename scalar_t>
DESC_OPS_ALWAYS_INLINE Vec<acc_t, B> vload_part(const scalar_t* p, int64_t n, acc_t fill = acc_t(0)) {
  Vec<acc_t, B> v = vsplat<B>(fill);
  for (int64_t j = 0; j < n; ++j) v[j] = static_cast<acc_t>(p[j]);
  return v;
}
template <typename scalar_t, typename V>
DESC_OPS_ALWAYS_INLINE void vstore_part(scalar_t* p, V v, int64_t n) {
  scalar_t tmp[kLanes<ElemOf<V>, kBytesOf<V>>];
  vstore<scalar_t>(tmp, v);
  for (int64_t j = 0; j < n; ++j) p[j] = tmp[j];
}

// |x| as fabs: the sign bit cleared.
template <typename V>
DESC_OPS_ALWAYS_INLINE V vabs(V x) {
  using I = Vec<IntOf<ElemOf<V>>, kBytesOf<V>>;
  I b;
  memcpy(&b, &x, sizeof(b));
  b &= std::numeric_limits<IntOf<ElemOf<V>>>::max();
  memcpy(&x, &b, sizeof(x));
  return x;
}

// math::fast_exp's 2^n exp(r) for x clamped to [-87.3, 88.3] and
// n = round(x log2(e)), half away from zero.
template <typename V, typename I>
DESC_OPS_ALWAYS_INLINE V vexp_reduced(V x, I n) {
  const V p = math::exp_reduced_poly(x, __builtin_convertvector(n, V));
  const I bits = (n + 127) << 23;
  V scale;
  memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

// math::fast_exp lane by lane: the same value for every input.
template <typename V>
DESC_OPS_ALWAYS_INLINE V vexp(V in) {
  if constexpr (std::is_same_v<ElemOf<V>, double>) {
    V out;
    for (int j = 0; j < kLanes<double, kBytesOf<V>>; ++j) out[j] = ::exp(in[j]);
    return out;
  } else {
    using I = Vec<int32_t, kBytesOf<V>>;
    // The clamp to [-87.3, 88.3], NaN to -87.3 (math::fast_exp maps NaN to 0
    // before its clamp; either way a NaN input returns NaN below).
    V x = in > -87.3f ? in : V{} - 87.3f;
    x = x > 88.3f ? V{} + 88.3f : x;
    const V t = x * 1.44269504088896341f;
    const I n = __builtin_convertvector(t + (t >= 0.f ? V{} + 0.5f : V{} - 0.5f), I);
    return in == in ? vexp_reduced(x, n) : in;
  }
}

// vexp for arguments <= 0 (or NaN), such as the edge-aware weights: the same
// values, without the upper clamp and the sign test of the rounding (for
// t <= 0, t - 0.5 truncated is fast_exp's rounding).
template <typename V>
DESC_OPS_ALWAYS_INLINE V vexp_nonpositive(V in) {
  if constexpr (std::is_same_v<ElemOf<V>, double>) {
    return vexp(in);
  } else {
    using I = Vec<int32_t, kBytesOf<V>>;
    const V x = in > -87.3f ? in : V{} - 87.3f;
    const I n = __builtin_convertvector(x * 1.44269504088896341f - 0.5f, I);
    return in == in ? vexp_reduced(x, n) : in;
  }
}

}  // namespace cpu

// The vector forms desc_math.h declares for its formulas (math::weighted_l1,
// math::edge_aware_weight).
namespace math {
template <typename V>
DESC_OPS_ALWAYS_INLINE V abs_(V x) {
  return cpu::vabs(x);
}
template <typename V>
DESC_OPS_ALWAYS_INLINE V exp_nonpositive(V x) {
  return cpu::vexp_nonpositive(x);
}
}  // namespace math

namespace cpu {

// The lanes added in a fixed tree: lane j + N/2 onto lane j, then N/4, ...
// Written as half vectors added whole, one instruction a level: GCC compiles
// the lane-by-lane loop through the stack, which cost the memory-bound
// consistency_loss forward several percent.
template <typename V>
DESC_OPS_ALWAYS_INLINE ElemOf<V> lane_reduce(V v) {
  using T = ElemOf<V>;
  constexpr int kHalf = kBytesOf<V> / 2;
  if constexpr (kHalf == static_cast<int>(sizeof(T))) {
    return v[0] + v[1];
  } else {
    using Half = typename VecOf<T, kHalf>::type;
    Half lo, hi;
    memcpy(&lo, &v, kHalf);
    memcpy(&hi, reinterpret_cast<const char*>(&v) + kHalf, kHalf);
    return lane_reduce(Half(lo + hi));
  }
}

}  // namespace cpu
}  // namespace desc_ops
