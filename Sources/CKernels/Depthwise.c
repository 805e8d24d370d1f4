// The depthwise convolution of CKernels.h on one zero-padded plane: tiles of 8 segments of
// 8 output positions.
//
// Swift compiles for baseline x86-64 (4-wide SSE, no fused multiply-add), and the rows of these
// planes are short (4 to 32 outputs), so the Swift loops spend as much on loop control as on
// arithmetic. Here a tile holds 8 accumulators, each a segment of up to 8 outputs of one row (rows
// of 8 fill a tile with 8 rows, rows of 32 with 2), and per tap it broadcasts the weight once and
// does 8 loads and 8 fused multiply-adds. The plane is padded by the caller, so no tap checks a
// border.
#include "CKernels.h"
#include "Lanes.h"

#include <immintrin.h>

#define TARGET __attribute__((target("avx2,fma")))

enum { SEGMENTS = 8 };

typedef struct {
  long position;
  long output;
  int width;
} Piece;

/// The segments of the output rows in order: row y, columns x..x+7, reading the grid from y·pitch + x.
static long pieces(long height, long width, long pitch, Piece *out) {
  long count = 0;
  for (long y = 0; y < height; y++)
    for (long x = 0; x < width; x += 8) out[count++] = (Piece){y * pitch + x, y * width + x, width - x < 8 ? (int)(width - x) : 8};
  return count;
}

long reprise_depthwise_scratch_count(long height, long width) { return height * ((width + 7) / 8) * (long)(sizeof(Piece) / sizeof(float) + 1); }

TARGET void reprise_depthwise_plane_f32(
  const float *grid, long pitch, const float *weights, const long *offsets, long taps, long height, long width,
  float *output, float *scratch) {
  Piece *segments = (Piece *)scratch;
  const long count = pieces(height, width, pitch, segments);
  for (long s0 = 0; s0 < count; s0 += SEGMENTS) {
    const long n = count - s0 < SEGMENTS ? count - s0 : SEGMENTS;
    const Piece *p = segments + s0;
    __m256 acc[SEGMENTS];
    __m256i mask[SEGMENTS];
    int full = n == SEGMENTS;
    for (int i = 0; i < SEGMENTS; i++) {
      acc[i] = _mm256_setzero_ps();
      mask[i] = lanesBelow(i < n ? p[i].width : 0);
      if (i < n) full &= p[i].width == 8;
    }
    if (full) {
      for (long t = 0; t < taps; t++) {
        const __m256 w = _mm256_broadcast_ss(weights + t);
        const float *g = grid + offsets[t];
        for (int i = 0; i < SEGMENTS; i++) acc[i] = _mm256_fmadd_ps(w, _mm256_loadu_ps(g + p[i].position), acc[i]);
      }
      for (int i = 0; i < SEGMENTS; i++) _mm256_storeu_ps(output + p[i].output, acc[i]);
    } else {
      for (long t = 0; t < taps; t++) {
        const __m256 w = _mm256_broadcast_ss(weights + t);
        const float *g = grid + offsets[t];
        for (int i = 0; i < n; i++) acc[i] = _mm256_fmadd_ps(w, _mm256_maskload_ps(g + p[i].position, mask[i]), acc[i]);
      }
      for (int i = 0; i < n; i++) _mm256_maskstore_ps(output + p[i].output, mask[i], acc[i]);
    }
  }
}

// The column phases of stride-2 planes. Swift's loops move one float per iteration with a stride
// of two on one side, and profiled at 4% (the copy into phases) and 6% (the scatter back) of a
// MobileNetV2 step; here eight floats move per iteration through shuffles.

TARGET void reprise_split_columns_f32(const float *row, long count, float *even, float *odd) {
  long i = 0;
  for (; i + 16 <= count; i += 16) {
    const __m256 a = _mm256_loadu_ps(row + i), b = _mm256_loadu_ps(row + i + 8);
    // [a0 a2 b0 b2 | a4 a6 b4 b6] and [a1 a3 b1 b3 | a5 a7 b5 b7], then their quarters in order.
    const __m256 e = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)), o = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
    _mm256_storeu_ps(even + i / 2, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), _MM_SHUFFLE(3, 1, 2, 0))));
    _mm256_storeu_ps(odd + i / 2, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), _MM_SHUFFLE(3, 1, 2, 0))));
  }
  for (; i < count; i++) (i % 2 == 0 ? even : odd)[i / 2] = row[i];
}

TARGET void reprise_spread_columns_f32(const float *values, long count, float *to) {
  long j = 0;
  // Each step reads and rewrites to[2j .. 2j + 7], keeping the odd positions as they were; it stops
  // while 2j + 7 is still a position of this row's span (below 2 count - 1), so that nothing past
  // the row is touched, which another thread may be writing.
  const __m256i spread = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
  for (; 2 * j + 8 <= 2 * count - 1; j += 4) {
    const __m256 v = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(values + j)), spread);
    _mm256_storeu_ps(to + 2 * j, _mm256_blend_ps(_mm256_loadu_ps(to + 2 * j), v, 0x55));
  }
  for (; j < count; j++) to[2 * j] = values[j];
}
