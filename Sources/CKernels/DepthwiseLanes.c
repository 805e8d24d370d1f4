// The depthwise convolution of CKernels.h with 8 channels in the lanes of a vector.
//
// Depthwise.c vectorises along a plane's rows, which pays for planes of 16x16 and more. MobileNetV2's
// last stages have planes of 4x4 and 2x2: rows of 4 and 2 outputs fill half or a quarter of a vector,
// with masked loads and stores, and each plane is a call with its own grid and segment list, for 16
// or 4 outputs. Here the vector runs across 8 channels of one image at one position instead: each
// plane is transposed into (or out of) an interleaved grid, [position][8 channels], and every tap is
// one full load, one fused multiply-add with the 8 channels' weights, no masks and no phases for a
// stride (position (y·s + ky, x·s + kx) is just another vector).
#include "CKernels.h"
#include "Lanes.h"

#include <immintrin.h>
#include <string.h>

#define TARGET __attribute__((target("avx2,fma")))

/// Lanes below `lanes` from 8 planes `stride` apart, elements [j, j + count) of each (count <= 8),
/// transposed: v[k] holds element j + k of every plane. Lanes from `lanes` on are zero.
TARGET static inline void loadColumns(const float *planes, long stride, long lanes, long j, long count, __m256 v[8]) {
  for (long l = 0; l < 8; l++) {
    if (l >= lanes) {
      v[l] = _mm256_setzero_ps();
    } else if (count == 8) {
      v[l] = _mm256_loadu_ps(planes + l * stride + j);
    } else {
      v[l] = _mm256_maskload_ps(planes + l * stride + j, lanesBelow(count));
    }
  }
  transpose8(v);
}

TARGET static void interleave(const float *planes, long stride, long lanes, long count, const long *index, float *to) {
  __m256 v[8];
  for (long j = 0; j < count; j += 8) {
    const long n = count - j < 8 ? count - j : 8;
    loadColumns(planes, stride, lanes, j, n, v);
    for (long k = 0; k < n; k++) _mm256_storeu_ps(to + 8 * (index ? index[j + k] : j + k), v[k]);
  }
}

TARGET static void deinterleave(const float *from, const long *index, long count, long lanes, float *planes, long stride) {
  __m256 v[8];
  for (long j = 0; j < count; j += 8) {
    const long n = count - j < 8 ? count - j : 8;
    for (long k = 0; k < 8; k++) v[k] = k < n ? _mm256_loadu_ps(from + 8 * (index ? index[j + k] : j + k)) : _mm256_setzero_ps();
    transpose8(v);
    for (long l = 0; l < lanes; l++) {
      if (n == 8) {
        _mm256_storeu_ps(planes + l * stride + j, v[l]);
      } else {
        _mm256_maskstore_ps(planes + l * stride + j, lanesBelow(n), v[l]);
      }
    }
  }
}

/// Output position (y, x)'s first tap on the grid, in vectors.
static inline long origin(const RepriseLaneGeometry *g, long y, long x) { return y * g->strideHeight * g->pitch + x * g->strideWidth; }

/// One image's outputs into `buffer`. Inlined with `taps` 9 (3x3 kernels), the weights stay in
/// registers; other sizes load them per tap.
TARGET __attribute__((always_inline)) static inline void forwardImage(
  const RepriseLaneGeometry *g, const float *weights, const float *grid, float *buffer, const long taps) {
  __m256 w[taps <= 9 ? taps : 1];
  if (taps <= 9)
    for (long t = 0; t < taps; t++) w[t] = _mm256_loadu_ps(weights + 8 * t);
  for (long y = 0; y < g->outputHeight; y++) {
    for (long x = 0; x < g->outputWidth; x++) {
      const float *p = grid + 8 * origin(g, y, x);
      __m256 acc = _mm256_setzero_ps();
      for (long t = 0; t < taps; t++)
        acc = _mm256_fmadd_ps(taps <= 9 ? w[t] : _mm256_loadu_ps(weights + 8 * t), _mm256_loadu_ps(p + 8 * g->offsets[t]), acc);
      _mm256_storeu_ps(buffer + 8 * (y * g->outputWidth + x), acc);
    }
  }
}

TARGET void reprise_depthwise_lanes_forward_f32(
  const RepriseLaneGeometry *g, const float *weights, const float *input, long inputLaneStride, long inputImageStride,
  float *output, long outputLaneStride, long outputImageStride, long lanes, long images, float *grid, float *buffer) {
  const long positions = g->outputHeight * g->outputWidth;
  memset(grid, 0, sizeof(float) * 8 * g->gridCount);
  for (long n = 0; n < images; n++) {
    interleave(input + n * inputImageStride, inputLaneStride, lanes, g->height * g->width, g->inputIndex, grid);
    if (g->taps == 9) {
      forwardImage(g, weights, grid, buffer, 9);
    } else {
      forwardImage(g, weights, grid, buffer, g->taps);
    }
    deinterleave(buffer, NULL, positions, lanes, output + n * outputImageStride, outputLaneStride);
  }
}

TARGET void reprise_depthwise_lanes_input_gradient_f32(
  const RepriseLaneGeometry *g, const float *weights, const float *gradient, long gradientLaneStride,
  long gradientImageStride, float *inputGradient, long inputLaneStride, long inputImageStride, long lanes, long images,
  float *grid, float *buffer) {
  const long positions = g->outputHeight * g->outputWidth;
  for (long n = 0; n < images; n++) {
    interleave(gradient + n * gradientImageStride, gradientLaneStride, lanes, positions, NULL, buffer);
    memset(grid, 0, sizeof(float) * 8 * g->gridCount);
    // Each output position adds its gradient through every tap into the grid positions it read. In
    // row-major order of the outputs, a grid position receives its taps' terms in reverse tap order,
    // each a fused multiply-add onto the sum so far: Depthwise.c's correlation, bit for bit.
    for (long y = 0; y < g->outputHeight; y++) {
      for (long x = 0; x < g->outputWidth; x++) {
        float *p = grid + 8 * origin(g, y, x);
        const __m256 dy = _mm256_loadu_ps(buffer + 8 * (y * g->outputWidth + x));
        for (long t = 0; t < g->taps; t++) {
          float *q = p + 8 * g->offsets[t];
          _mm256_storeu_ps(q, _mm256_fmadd_ps(_mm256_loadu_ps(weights + 8 * t), dy, _mm256_loadu_ps(q)));
        }
      }
    }
    deinterleave(grid, g->inputIndex, g->height * g->width, lanes, inputGradient + n * inputImageStride, inputLaneStride);
  }
}

/// Adds 8 Float32 lanes into 8 Float64 totals.
TARGET static inline void addToTotals(__m256 sum, double *total) {
  _mm256_storeu_pd(total, _mm256_add_pd(_mm256_loadu_pd(total), _mm256_cvtps_pd(_mm256_castps256_ps128(sum))));
  _mm256_storeu_pd(total + 4, _mm256_add_pd(_mm256_loadu_pd(total + 4), _mm256_cvtps_pd(_mm256_extractf128_ps(sum, 1))));
}

/// Output rows [first, last)'s part of the weight gradient, added into `sums`. Up to 9 taps (3x3
/// kernels), each tap's sum is one register, the positions in turn (each loaded once for all the
/// taps); more taps go tap by tap, with four running sums each so that consecutive fused
/// multiply-adds do not wait on each other.
TARGET __attribute__((always_inline)) static inline void weightGradientRows(
  const RepriseLaneGeometry *g, const float *grid, const float *buffer, long first, long last, double *sums, const long taps) {
  if (taps <= 9) {
    __m256 acc[taps <= 9 ? taps : 1];
    for (long t = 0; t < taps; t++) acc[t] = _mm256_setzero_ps();
    for (long y = first; y < last; y++) {
      for (long x = 0; x < g->outputWidth; x++) {
        const __m256 dy = _mm256_loadu_ps(buffer + 8 * (y * g->outputWidth + x));
        const float *p = grid + 8 * origin(g, y, x);
        for (long t = 0; t < taps; t++) acc[t] = _mm256_fmadd_ps(dy, _mm256_loadu_ps(p + 8 * g->offsets[t]), acc[t]);
      }
    }
    for (long t = 0; t < taps; t++) addToTotals(acc[t], sums + 8 * t);
    return;
  }
  for (long t = 0; t < taps; t++) {
    const float *p = grid + 8 * g->offsets[t];
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (long y = first, i = 0; y < last; y++) {
      for (long x = 0; x < g->outputWidth; x++, i++) {
        acc[i & 3] = _mm256_fmadd_ps(
          _mm256_loadu_ps(buffer + 8 * (y * g->outputWidth + x)), _mm256_loadu_ps(p + 8 * origin(g, y, x)), acc[i & 3]);
      }
    }
    addToTotals(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])), sums + 8 * t);
  }
}

TARGET void reprise_depthwise_lanes_weight_gradient_f32(
  const RepriseLaneGeometry *g, const float *gradient, long gradientLaneStride, long gradientImageStride,
  const float *input, long inputLaneStride, long inputImageStride, long lanes, long images, double *sums, float *grid,
  float *buffer) {
  const long positions = g->outputHeight * g->outputWidth;
  memset(grid, 0, sizeof(float) * 8 * g->gridCount);
  // Float32 sums run over blocks of rows of about 64 positions (a whole row if longer) and then join
  // the Float64 totals, so that no Float32 sum has many terms.
  const long block = g->outputWidth >= 64 ? 1 : 64 / g->outputWidth;
  for (long n = 0; n < images; n++) {
    interleave(input + n * inputImageStride, inputLaneStride, lanes, g->height * g->width, g->inputIndex, grid);
    interleave(gradient + n * gradientImageStride, gradientLaneStride, lanes, positions, NULL, buffer);
    for (long first = 0; first < g->outputHeight; first += block) {
      const long last = first + block < g->outputHeight ? first + block : g->outputHeight;
      if (g->taps == 9) {
        weightGradientRows(g, grid, buffer, first, last, sums, 9);
      } else {
        weightGradientRows(g, grid, buffer, first, last, sums, g->taps);
      }
    }
  }
}
