// The pre-activation unit's normalisation and ReLU for the pointwise products' chunks
// (ConvolutionPlan+Pointwise.swift).
//
// A chunk is a few hundred columns of every input channel: one short run of each channel's row,
// the rows a whole batch of planes apart. Each run is too short for the hardware prefetchers to
// start on before it ends, so the loop waited on every row's first lines; here the rows a few
// ahead are asked for while this one is written.
#include "CKernels.h"
#include "Lanes.h"

#include <immintrin.h>

#define TARGET __attribute__((target("avx2,fma")))

/// How many rows ahead the prefetches run.
enum { AHEAD = 4 };

TARGET static inline void prefetchRow(const float *row, long count) { prefetchLines(row, (long)sizeof(float) * count); }

TARGET void reprise_normalize_columns_f32(
  const float *x, long ldx, long count, long channels, const float *scale, const float *shift, float *block) {
  for (long c = 0; c < AHEAD && c < channels; c++) prefetchRow(x + c * ldx, count);
  const __m256 zero = _mm256_setzero_ps();
  for (long c = 0; c < channels; c++) {
    if (c + AHEAD < channels) prefetchRow(x + (c + AHEAD) * ldx, count);
    const float *from = x + c * ldx;
    float *to = block + c * count;
    const __m256 s = _mm256_set1_ps(scale[c]), t = _mm256_set1_ps(shift[c]);
    long i = 0;
    for (; i + 8 <= count; i += 8) {
      // Rounded after the product and after the sum, and max(v, 0) as Swift's `0 >= v ? 0 : v`.
      const __m256 v = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(from + i), s), t);
      _mm256_storeu_ps(to + i, _mm256_blendv_ps(v, zero, _mm256_cmp_ps(zero, v, _CMP_GE_OQ)));
    }
    for (; i < count; i++) {
      const float product = from[i] * scale[c];  // two statements: no contraction into an FMA
      const float v = product + shift[c];
      to[i] = 0 >= v ? 0 : v;
    }
  }
}
