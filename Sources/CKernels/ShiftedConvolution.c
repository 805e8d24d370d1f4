// The direct stride-1 convolution of CKernels.h: register tiles of 6 outputs by 16 positions.
//
// Per tap and input channel the tile loads two vectors of 8 grid values and broadcasts 6 weights,
// then does 12 fused multiply-adds. The grid is read where it lies (no packing: the input rows a
// tile reads stay in the L1 and L2 caches while the tile steps through the outputs), and every
// output is written once (no zeroing pass, no accumulation over taps in memory), which is what the
// per-tap matrix products this replaces could not avoid.
#include "CKernels.h"

#include <immintrin.h>

enum { MR = 6 };

bool reprise_kernels_available(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

long reprise_packed_taps_count(long outputs, long channels, long taps) {
  return (outputs + MR - 1) / MR * MR * channels * taps;
}

void reprise_pack_taps_f32(
  const float *weights, long outputs, long channels, long taps, long outputStride, long channelStride,
  long tapStride, float *packed) {
  for (long o0 = 0; o0 < outputs; o0 += MR)
    for (long k = 0; k < taps; k++)
      for (long c = 0; c < channels; c++)
        for (long i = 0; i < MR; i++)
          *packed++ = o0 + i < outputs ? weights[(o0 + i) * outputStride + c * channelStride + k * tapStride] : 0;
}

/// Up to 8 consecutive positions of one output row: where they start on the grid, where they go.
typedef struct {
  long position;
  float *output;
  int width;
} Segment;

__attribute__((target("avx2,fma"))) static inline __m256i lanesBelow(int width) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(width), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/// One tile: `rows` (1 to 6, a constant after inlining) outputs at segments a and b. Full segments
/// use plain loads; partial ones masked loads and stores, which touch only their lanes.
__attribute__((target("avx2,fma"), always_inline)) static inline void tile(
  int rows, const float *grid, long gridChannelStride, long channels, const float *w, const long *offsets,
  long taps, Segment a, Segment b, long outputChannelStride) {
  __m256 accA[MR], accB[MR];
  for (int i = 0; i < rows; i++) accA[i] = accB[i] = _mm256_setzero_ps();
  const __m256i maskA = lanesBelow(a.width), maskB = lanesBelow(b.width);
  const int full = a.width == 8 && b.width == 8;
  for (long k = 0; k < taps; k++) {
    const float *pa = grid + a.position + offsets[k], *pb = grid + b.position + offsets[k];
    for (long c = 0; c < channels; c++, pa += gridChannelStride, pb += gridChannelStride, w += MR) {
      __m256 va, vb;
      if (full) {
        va = _mm256_loadu_ps(pa);
        vb = _mm256_loadu_ps(pb);
      } else {
        va = _mm256_maskload_ps(pa, maskA);
        vb = _mm256_maskload_ps(pb, maskB);
      }
      for (int i = 0; i < rows; i++) {
        const __m256 s = _mm256_broadcast_ss(w + i);
        accA[i] = _mm256_fmadd_ps(s, va, accA[i]);
        accB[i] = _mm256_fmadd_ps(s, vb, accB[i]);
      }
    }
  }
  for (int i = 0; i < rows; i++) {
    _mm256_maskstore_ps(a.output + i * outputChannelStride, maskA, accA[i]);
    _mm256_maskstore_ps(b.output + i * outputChannelStride, maskB, accB[i]);
  }
}

/// All outputs at two segments, tile by tile.
__attribute__((target("avx2,fma"))) static void segmentPair(
  const float *grid, long gridChannelStride, long channels, const float *packed, long outputs,
  const long *offsets, long taps, Segment a, Segment b, long outputChannelStride) {
  for (long o0 = 0; o0 < outputs; o0 += MR) {
    const float *w = packed + o0 * taps * channels;
    Segment ta = a, tb = b;
    ta.output += o0 * outputChannelStride;
    tb.output += o0 * outputChannelStride;
    switch (outputs - o0 < MR ? outputs - o0 : MR) {
    case 1: tile(1, grid, gridChannelStride, channels, w, offsets, taps, ta, tb, outputChannelStride); break;
    case 2: tile(2, grid, gridChannelStride, channels, w, offsets, taps, ta, tb, outputChannelStride); break;
    case 3: tile(3, grid, gridChannelStride, channels, w, offsets, taps, ta, tb, outputChannelStride); break;
    case 4: tile(4, grid, gridChannelStride, channels, w, offsets, taps, ta, tb, outputChannelStride); break;
    case 5: tile(5, grid, gridChannelStride, channels, w, offsets, taps, ta, tb, outputChannelStride); break;
    default: tile(6, grid, gridChannelStride, channels, w, offsets, taps, ta, tb, outputChannelStride); break;
    }
  }
}

void reprise_shifted_convolution_f32(
  const float *grid, long gridChannelStride, long channels, const float *packed, long outputs,
  const long *offsets, long taps, long firstRow, long rowCount, long rowsPerImage, long rowWidth,
  long gridImageStride, long gridRowStride, long gridOrigin, float *output, long outputImageStride,
  long outputChannelStride) {
  // Segments of 8 positions along the rows, in pairs; a pair may span two rows (rows of 8 or 12).
  Segment pending = {0, output, 0};
  int havePending = 0;
  for (long r = firstRow; r < firstRow + rowCount; r++) {
    const long n = r / rowsPerImage, y = r % rowsPerImage;
    const long position = gridOrigin + n * gridImageStride + y * gridRowStride;
    float *out = output + n * outputImageStride + y * rowWidth;
    for (long j = 0; j < rowWidth; j += 8) {
      const Segment s = {position + j, out + j, rowWidth - j < 8 ? (int)(rowWidth - j) : 8};
      if (!havePending) {
        pending = s;
        havePending = 1;
      } else {
        segmentPair(grid, gridChannelStride, channels, packed, outputs, offsets, taps, pending, s, outputChannelStride);
        havePending = 0;
      }
    }
  }
  if (havePending) {
    const Segment none = {pending.position, pending.output, 0};
    segmentPair(grid, gridChannelStride, channels, packed, outputs, offsets, taps, pending, none, outputChannelStride);
  }
}
