// Element-wise and row kernels whose cost is a transcendental function per element: e^x for
// softmax, and the Gaussian CDF for GELU. libm computes one element per call; here eight lanes
// evaluate a polynomial with fused multiply-adds.
#include "CKernels.h"

#include <immintrin.h>
#include <math.h>

#define TARGET __attribute__((target("avx2,fma")))

/// e^x in eight lanes for x in [-87.33654, 88.72283] (results from the smallest normal float to
/// the largest), within 2 units in the last place. The argument is split as x = n ln 2 + r with
/// |r| <= ln 2 / 2 (ln 2 in two parts, so that n ln 2 is exact), e^r is a degree-7 polynomial
/// (Cephes' coefficients for expf), and 2^n goes into the exponent field.
TARGET static inline __m256 expInRange8(__m256 x) {
  __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1)));
  // n + 127 is in [1, 255]: 2^n is that, shifted into the exponent field; the largest n (128,
  // from 88.72 / ln 2 rounded) is applied as 2^127 · 2.
  __m256i e = _mm256_cvtps_epi32(n);
  __m256i top = _mm256_cmpgt_epi32(e, _mm256_set1_epi32(127));
  e = _mm256_sub_epi32(e, _mm256_and_si256(top, _mm256_set1_epi32(1)));
  __m256 y = _mm256_mul_ps(p, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e, _mm256_set1_epi32(127)), 23)));
  return _mm256_blendv_ps(y, _mm256_add_ps(y, y), _mm256_castsi256_ps(top));
}

/// e^x in eight lanes for x <= 0 (or -inf): 0 below the smallest normal float. NaN lanes give
/// unspecified values; callers multiply them into NaN.
TARGET static inline __m256 expNonPositive8(__m256 x) {
  const __m256 low = _mm256_set1_ps(-87.33654f);
  __m256 y = expInRange8(_mm256_max_ps(x, low));
  return _mm256_andnot_ps(_mm256_cmp_ps(x, low, _CMP_LT_OQ), y);
}

/// e^x in eight lanes for any x: 0 below the smallest normal float, +inf above the largest
/// finite result, NaN for NaN.
TARGET static inline __m256 exp8(__m256 x) {
  const __m256 low = _mm256_set1_ps(-87.33654f), high = _mm256_set1_ps(88.72283f);
  __m256 y = expInRange8(_mm256_min_ps(_mm256_max_ps(x, low), high));
  y = _mm256_andnot_ps(_mm256_cmp_ps(x, low, _CMP_LT_OQ), y);
  y = _mm256_blendv_ps(y, _mm256_set1_ps(INFINITY), _mm256_cmp_ps(x, high, _CMP_GT_OQ));
  return _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

/// Loads up to 8 floats (the rest 0), so that a row's tail runs through the same lanes.
TARGET static inline __m256 load(const float *p, long count) {
  if (count >= 8) return _mm256_loadu_ps(p);
  float lanes[8] = {0};
  for (long i = 0; i < count; i++) lanes[i] = p[i];
  return _mm256_loadu_ps(lanes);
}

/// Stores the first `count` (up to 8) lanes.
TARGET static inline void store(float *p, __m256 v, long count) {
  if (count >= 8) {
    _mm256_storeu_ps(p, v);
    return;
  }
  float lanes[8];
  _mm256_storeu_ps(lanes, v);
  for (long i = 0; i < count; i++) p[i] = lanes[i];
}

TARGET static inline float horizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

TARGET static inline float horizontalMax(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

/// A sum over a row in eight lanes, moved into double precision every 64 vectors (512 terms), so
/// that long rows (a vocabulary) lose no more than short ones.
typedef struct {
  __m256 block;
  double total;
  int vectors;
} RowSum;

TARGET static inline void rowSumAdd(RowSum *s, __m256 v) {
  s->block = _mm256_add_ps(s->block, v);
  if (++s->vectors == 64) {
    s->total += horizontalSum(s->block);
    s->block = _mm256_setzero_ps();
    s->vectors = 0;
  }
}

TARGET static inline double rowSumValue(RowSum *s) { return s->total + horizontalSum(s->block); }

TARGET void reprise_exp_f32(const float *x, float *y, long count) {
  long i = 0;
  for (; i + 32 <= count; i += 32) {
    __m256 e0 = exp8(_mm256_loadu_ps(x + i)), e1 = exp8(_mm256_loadu_ps(x + i + 8));
    __m256 e2 = exp8(_mm256_loadu_ps(x + i + 16)), e3 = exp8(_mm256_loadu_ps(x + i + 24));
    _mm256_storeu_ps(y + i, e0);
    _mm256_storeu_ps(y + i + 8, e1);
    _mm256_storeu_ps(y + i + 16, e2);
    _mm256_storeu_ps(y + i + 24, e3);
  }
  for (; i < count; i += 8) store(y + i, exp8(load(x + i, count - i)), count - i);
}

TARGET void reprise_softmax_rows_f32(const float *x, float *y, long rows, long length, bool logarithm) {
  for (long r = 0; r < rows; r++, x += length, y += length) {
    __m256 m = _mm256_set1_ps(-INFINITY);
    for (long i = 0; i < length; i += 8) {
      __m256 v = load(x + i, length - i);
      if (length - i < 8) v = _mm256_blendv_ps(v, _mm256_set1_ps(-INFINITY), _mm256_castsi256_ps(_mm256_cmpgt_epi32(
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32((int)(length - i - 1)))));
      m = _mm256_max_ps(m, v);
    }
    float peak = horizontalMax(m);
    __m256 shift = _mm256_set1_ps(peak);
    RowSum s = {_mm256_setzero_ps(), 0, 0};
    for (long i = 0; i < length; i += 8) {
      long left = length - i;
      __m256 e = exp8(_mm256_sub_ps(load(x + i, left), shift));
      if (left < 8) e = _mm256_blendv_ps(e, _mm256_setzero_ps(), _mm256_castsi256_ps(_mm256_cmpgt_epi32(
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32((int)(left - 1)))));
      rowSumAdd(&s, e);
      if (!logarithm) store(y + i, e, left);
    }
    double total = rowSumValue(&s);
    if (isnan(total) || isinf(peak)) {
      // A NaN, or a row of -inf or with +inf: the plain formula gives what libm would (NaN where
      // it is undefined); such rows are rare enough that their speed does not matter.
      for (long i = 0; i < length; i++) y[i] = logarithm ? x[i] - peak : expf(x[i] - peak);
      if (!logarithm) for (long i = 0; i < length; i++) y[i] /= (float)total;
      else for (long i = 0; i < length; i++) y[i] -= logf((float)total);
      continue;
    }
    if (logarithm) {
      __m256 logTotal = _mm256_set1_ps((float)log(total));
      for (long i = 0; i < length; i += 8)
        store(y + i, _mm256_sub_ps(_mm256_sub_ps(load(x + i, length - i), shift), logTotal), length - i);
    } else {
      __m256 scale = _mm256_set1_ps((float)(1 / total));
      for (long i = 0; i < length; i += 8) store(y + i, _mm256_mul_ps(load(y + i, length - i), scale), length - i);
    }
  }
}

TARGET void reprise_softmax_backward_rows_f32(
  const float *y, const float *gradient, float *result, long rows, long length, bool logarithm) {
  for (long r = 0; r < rows; r++, y += length, gradient += length, result += length) {
    // softmax: dx = y (g - Σ g y); log-softmax: dx = g - e^y Σ g.
    RowSum s = {_mm256_setzero_ps(), 0, 0};
    for (long i = 0; i < length; i += 8) {
      __m256 g = load(gradient + i, length - i);
      rowSumAdd(&s, logarithm ? g : _mm256_mul_ps(g, load(y + i, length - i)));
    }
    __m256 total = _mm256_set1_ps((float)rowSumValue(&s));
    for (long i = 0; i < length; i += 8) {
      long left = length - i;
      __m256 g = load(gradient + i, left), v = load(y + i, left);
      store(result + i, logarithm ? _mm256_fnmadd_ps(exp8(v), total, g) : _mm256_mul_ps(v, _mm256_sub_ps(g, total)), left);
    }
  }
}

/// Φ(x), the standard normal CDF, and (through `density`) φ(x). Φ(x) = erfc(-x/√2) / 2, with
/// erfc(z) = t e^(-z² + P(t)), t = 1 / (1 + z/2), for z >= 0 (Numerical Recipes' Chebyshev fit,
/// relative error below 1.2e-7 everywhere), and erfc(-z) = 2 - erfc(z). Computing the tail
/// directly keeps Φ accurate far into the negative side, where 1 + erf would cancel.
TARGET static inline __m256 normalCDF8(__m256 x, __m256 *density) {
  const __m256 half = _mm256_set1_ps(0.5f);
  __m256 z = _mm256_and_ps(_mm256_mul_ps(x, _mm256_set1_ps(0.70710678118654752f)), _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)));
  // t = 1 / (1 + z/2): the 12-bit reciprocal estimate and one Newton step (within an ulp or two),
  // cheaper than a division.
  __m256 denominator = _mm256_fmadd_ps(half, z, _mm256_set1_ps(1)), t = _mm256_rcp_ps(denominator);
  t = _mm256_mul_ps(t, _mm256_fnmadd_ps(denominator, t, _mm256_set1_ps(2)));
  __m256 p = _mm256_set1_ps(0.17087277f);
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.82215223f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.48851587f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.13520398f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.27886807f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.18628806f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.09678418f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.37409196f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.00002368f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.26551223f));
  __m256 minusSquare = _mm256_mul_ps(_mm256_sub_ps(_mm256_setzero_ps(), z), z);
  __m256 tail = _mm256_mul_ps(half, _mm256_mul_ps(t, expNonPositive8(_mm256_add_ps(minusSquare, p))));  // erfc(|x|/√2) / 2
  if (density) *density = _mm256_mul_ps(_mm256_set1_ps(0.39894228040143268f), expNonPositive8(minusSquare));
  __m256 positive = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GT_OQ);
  return _mm256_blendv_ps(tail, _mm256_sub_ps(_mm256_set1_ps(1), tail), positive);
}

// The element-wise loops take four vectors an iteration: one vector's e^x and polynomial are a
// chain of about 30 dependent instructions, and four independent chains keep the units busy.

TARGET void reprise_gelu_f32(const float *x, float *y, long count) {
  long i = 0;
  for (; i + 32 <= count; i += 32) {
    __m256 v0 = _mm256_loadu_ps(x + i), v1 = _mm256_loadu_ps(x + i + 8);
    __m256 v2 = _mm256_loadu_ps(x + i + 16), v3 = _mm256_loadu_ps(x + i + 24);
    _mm256_storeu_ps(y + i, _mm256_mul_ps(v0, normalCDF8(v0, 0)));
    _mm256_storeu_ps(y + i + 8, _mm256_mul_ps(v1, normalCDF8(v1, 0)));
    _mm256_storeu_ps(y + i + 16, _mm256_mul_ps(v2, normalCDF8(v2, 0)));
    _mm256_storeu_ps(y + i + 24, _mm256_mul_ps(v3, normalCDF8(v3, 0)));
  }
  for (; i < count; i += 8) {
    __m256 v = load(x + i, count - i);
    store(y + i, _mm256_mul_ps(v, normalCDF8(v, 0)), count - i);
  }
}

TARGET static inline __m256 geluGradient8(__m256 v, __m256 g) {
  __m256 density, cdf = normalCDF8(v, &density);
  return _mm256_mul_ps(g, _mm256_fmadd_ps(v, density, cdf));
}

TARGET void reprise_gelu_backward_f32(const float *x, const float *gradient, float *result, long count) {
  long i = 0;
  for (; i + 32 <= count; i += 32) {
    __m256 r0 = geluGradient8(_mm256_loadu_ps(x + i), _mm256_loadu_ps(gradient + i));
    __m256 r1 = geluGradient8(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(gradient + i + 8));
    __m256 r2 = geluGradient8(_mm256_loadu_ps(x + i + 16), _mm256_loadu_ps(gradient + i + 16));
    __m256 r3 = geluGradient8(_mm256_loadu_ps(x + i + 24), _mm256_loadu_ps(gradient + i + 24));
    _mm256_storeu_ps(result + i, r0);
    _mm256_storeu_ps(result + i + 8, r1);
    _mm256_storeu_ps(result + i + 16, r2);
    _mm256_storeu_ps(result + i + 24, r3);
  }
  for (; i < count; i += 8) store(result + i, geluGradient8(load(x + i, count - i), load(gradient + i, count - i)), count - i);
}

/// The gradient where lower < x < upper, else 0: ordered comparisons, false at NaN.
TARGET static inline __m256 clampGradient8(__m256 x, __m256 g, __m256 lower, __m256 upper) {
  const __m256 inside = _mm256_and_ps(_mm256_cmp_ps(x, lower, _CMP_GT_OQ), _mm256_cmp_ps(x, upper, _CMP_LT_OQ));
  return _mm256_and_ps(inside, g);
}

TARGET void reprise_clamp_backward_f32(const float *x, const float *gradient, float *result, long count, float lower, float upper) {
  const __m256 lo = _mm256_set1_ps(lower), hi = _mm256_set1_ps(upper);
  long i = 0;
  for (; i + 16 <= count; i += 16) {
    _mm256_storeu_ps(result + i, clampGradient8(_mm256_loadu_ps(x + i), _mm256_loadu_ps(gradient + i), lo, hi));
    _mm256_storeu_ps(result + i + 8, clampGradient8(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(gradient + i + 8), lo, hi));
  }
  for (; i < count; i += 8) store(result + i, clampGradient8(load(x + i, count - i), load(gradient + i, count - i), lo, hi), count - i);
}
