// Run-time choice of an AVX2 + FMA build of a hot row loop. The extension is
// compiled for the baseline x86-64 ISA so that it runs anywhere; a row
// function marked DESC_OPS_AVX2 gets the wider vectors where the CPU has them.
// Its body must be an always_inline template, so that both builds come from
// one source.
#pragma once

#include <stdint.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define DESC_OPS_HAS_AVX2_DISPATCH 1
#define DESC_OPS_AVX2 __attribute__((target("avx2,fma")))
#endif
#define DESC_OPS_ALWAYS_INLINE __attribute__((always_inline)) inline

namespace desc_ops {
namespace cpu {

inline bool cpu_has_avx2() {
#ifdef DESC_OPS_HAS_AVX2_DISPATCH
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
#else
  return false;
#endif
}

// Sum of v[0, n) as 8 interleaved partial sums added in a fixed order: the
// loop vectorises, and the result depends on n alone, not on threads.
template <typename acc_t>
DESC_OPS_ALWAYS_INLINE acc_t lane_sum(const acc_t* __restrict__ v, int64_t n) {
  acc_t lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) lanes[j] += v[i + j];
  }
  acc_t s = 0;
  for (; i < n; ++i) s += v[i];
  for (int j = 0; j < 8; ++j) s += lanes[j];
  return s;
}

}  // namespace cpu
}  // namespace desc_ops
