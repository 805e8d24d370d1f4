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
