// The direct stride-1 convolution of CKernels.h: register tiles of 6 outputs by 16 positions
// (AVX2) or by 64 positions (AVX-512).
//
// Per tap and input channel the AVX2 tile loads two vectors of 8 grid values and broadcasts 6
// weights, then does 12 fused multiply-adds. The grid is read where it lies (no packing: the input
// rows a tile reads stay in the L1 and L2 caches while the tile steps through the outputs), and
// every output is written once (no zeroing pass, no accumulation over taps in memory), which is
// what the per-tap matrix products this replaces could not avoid.
//
// The AVX-512 tile holds 4 vectors of 16 lanes, each lane pair of 8 a segment of its own, so rows
// of 8 (the last stage of CIFAR networks) fill whole vectors as rows of 16 and 32 do: 24 fused
// multiply-adds per 6 broadcasts and 4 vector loads (two half loads where a vector's segments are
// not next to each other on the grid). Every output is the same sum in the same order (k, c) as in
// the AVX2 tile, so the two give the same bits.
#include "CKernels.h"
#include "Lanes.h"

#include <immintrin.h>
#include <stdint.h>

enum { MR = 6 };

bool reprise_kernels_available(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

/// -1 until first asked; then whether the AVX-512 tiles run.
static int wideTiles = -1;

bool reprise_wide_kernels_enabled(void) {
  if (wideTiles < 0) {
    __builtin_cpu_init();
    wideTiles = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  }
  return wideTiles;
}

bool reprise_set_wide_kernels_enabled(bool enabled) {
  const bool previous = reprise_wide_kernels_enabled();
  __builtin_cpu_init();
  wideTiles = enabled && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  return previous;
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

/// Up to 8 consecutive positions of one output row: where they start on the grid, where they go,
/// and the taps that read anything but zeros there.
typedef struct {
  long position;
  float *output;
  int width;
  long firstTap, endTap;
} Segment;

/// Asks the caches for what the next group of segments will read and this one did not: for every
/// channel, the `ahead` positions past this group's furthest read, `furthest` (the largest tap
/// offset) past `first` + `ahead` (the next group lies `ahead` further along the grid when it
/// continues the rows, as it does but for the last of an image). A tile steps from channel to
/// channel a whole channel's grid apart, a stride the hardware prefetchers do not follow, so
/// without this the first tile of a group waits on each new line of every channel in turn
/// (docs/performance.md#kernel-rate). A prefetch past the grid's end (after the last group) does no
/// harm: prefetches never fault.
static inline void prefetchAhead(
  const float *grid, long gridChannelStride, long channels, long furthest, long first, long ahead) {
  // Addresses as integers: the last group's lie past the grid, where pointer arithmetic is undefined.
  uintptr_t next = (uintptr_t)grid + sizeof(float) * (uintptr_t)(first + ahead + furthest);
  for (long c = 0; c < channels; c++, next += sizeof(float) * (uintptr_t)gridChannelStride)
    for (long j = 0; j < ahead + 16; j += 16) _mm_prefetch((const char *)(next + sizeof(float) * (uintptr_t)j), _MM_HINT_T0);
}

/// One tile: `rows` (1 to 6) outputs at segments a and b, over taps [firstTap, endTap) (`w` points
/// at the first one's weights). With `full` (both segments 8 wide), plain loads and stores; else
/// masked ones, which touch only their lanes. Both are constants after inlining: on AMD's
/// processors a masked store takes many times as long as a plain one, and a tile's 12 masked
/// stores held a tenth of the kernel's samples on the 16 channels of a stride-2 layer, while a
/// choice made per store inside one body left the compiler short of registers for the 12 sums
/// (docs/performance.md#plain-tile-stores).
__attribute__((target("avx2,fma"), always_inline)) static inline void tile(
  int rows, int full, const float *grid, long gridChannelStride, long channels, const float *w, const long *offsets,
  long firstTap, long endTap, Segment a, Segment b, long outputChannelStride) {
  __m256 accA[MR], accB[MR];
  for (int i = 0; i < rows; i++) accA[i] = accB[i] = _mm256_setzero_ps();
  const __m256i maskA = lanesBelow(a.width), maskB = lanesBelow(b.width);
  for (long k = firstTap; k < endTap; k++) {
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
    if (full) {
      _mm256_storeu_ps(a.output + i * outputChannelStride, accA[i]);
      _mm256_storeu_ps(b.output + i * outputChannelStride, accB[i]);
    } else {
      _mm256_maskstore_ps(a.output + i * outputChannelStride, maskA, accA[i]);
      _mm256_maskstore_ps(b.output + i * outputChannelStride, maskB, accB[i]);
    }
  }
}

/// `tile` for full segments or for partial ones, each with `full` a constant.
__attribute__((target("avx2,fma"), always_inline)) static inline void segmentTile(
  int rows, const float *grid, long gridChannelStride, long channels, const float *w, const long *offsets,
  long firstTap, long endTap, Segment a, Segment b, long outputChannelStride) {
  if (a.width == 8 && b.width == 8) tile(rows, 1, grid, gridChannelStride, channels, w, offsets, firstTap, endTap, a, b, outputChannelStride);
  else tile(rows, 0, grid, gridChannelStride, channels, w, offsets, firstTap, endTap, a, b, outputChannelStride);
}

/// All outputs at two segments, tile by tile, over the taps that read anything but zeros at
/// either.
__attribute__((target("avx2,fma"))) static void segmentPair(
  const float *grid, long gridChannelStride, long channels, const float *packed, long outputs,
  const long *offsets, long taps, Segment a, Segment b, long outputChannelStride) {
  const long first = a.firstTap < b.firstTap ? a.firstTap : b.firstTap, end = a.endTap > b.endTap ? a.endTap : b.endTap;
  for (long o0 = 0; o0 < outputs; o0 += MR) {
    const float *w = packed + (o0 * taps + first * MR) * channels;
    Segment ta = a, tb = b;
    ta.output += o0 * outputChannelStride;
    tb.output += o0 * outputChannelStride;
    switch (outputs - o0 < MR ? outputs - o0 : MR) {
    case 1: segmentTile(1, grid, gridChannelStride, channels, w, offsets, first, end, ta, tb, outputChannelStride); break;
    case 2: segmentTile(2, grid, gridChannelStride, channels, w, offsets, first, end, ta, tb, outputChannelStride); break;
    case 3: segmentTile(3, grid, gridChannelStride, channels, w, offsets, first, end, ta, tb, outputChannelStride); break;
    case 4: segmentTile(4, grid, gridChannelStride, channels, w, offsets, first, end, ta, tb, outputChannelStride); break;
    case 5: segmentTile(5, grid, gridChannelStride, channels, w, offsets, first, end, ta, tb, outputChannelStride); break;
    default: segmentTile(6, grid, gridChannelStride, channels, w, offsets, first, end, ta, tb, outputChannelStride); break;
    }
  }
}

#define WIDE __attribute__((target("avx2,fma,avx512f,avx512vl,avx512dq")))

/// Four vectors of two segments each: segment 2v in the low 8 lanes of vector v, 2v + 1 in the high.
typedef struct {
  Segment s[8];
} Quad;

WIDE static inline __mmask16 laneMask(const Segment *lo, const Segment *hi) {
  return (__mmask16)(((1u << lo->width) - 1) | (((1u << hi->width) - 1) << 8));
}

/// `rows` outputs (1 to 6) at the 8 segments of `q`. With `joined`, every vector's two segments are
/// next to each other on the grid and one load fills it; otherwise each half is loaded apart.
WIDE __attribute__((always_inline)) static inline void wideTile(
  int rows, int joined, const float *grid, long gridChannelStride, long channels, const float *w, const long *offsets,
  long firstTap, long endTap, const Quad *q, long outputChannelStride) {
  __m512 acc[4][MR];
  __mmask16 mask[4];
  for (int v = 0; v < 4; v++) {
    mask[v] = laneMask(&q->s[2 * v], &q->s[2 * v + 1]);
    for (int i = 0; i < rows; i++) acc[v][i] = _mm512_setzero_ps();
  }
  for (long k = firstTap; k < endTap; k++) {
    const float *base = grid + offsets[k];
    for (long c = 0; c < channels; c++, base += gridChannelStride, w += MR) {
      __m512 x[4];
      for (int v = 0; v < 4; v++) {
        const float *lo = base + q->s[2 * v].position;
        if (joined) {
          x[v] = _mm512_maskz_loadu_ps(mask[v], lo);
        } else {
          const __m256 l = _mm256_maskz_loadu_ps((__mmask8)mask[v], lo);
          const __m256 h = _mm256_maskz_loadu_ps((__mmask8)(mask[v] >> 8), base + q->s[2 * v + 1].position);
          x[v] = _mm512_insertf32x8(_mm512_castps256_ps512(l), h, 1);
        }
      }
      for (int i = 0; i < rows; i++) {
        const __m512 s = _mm512_set1_ps(w[i]);
        for (int v = 0; v < 4; v++) acc[v][i] = _mm512_fmadd_ps(s, x[v], acc[v][i]);
      }
    }
  }
  for (int v = 0; v < 4; v++) {
    const Segment *lo = &q->s[2 * v], *hi = &q->s[2 * v + 1];
    for (int i = 0; i < rows; i++) {
      _mm256_mask_storeu_ps(lo->output + i * outputChannelStride, (__mmask8)mask[v], _mm512_castps512_ps256(acc[v][i]));
      _mm256_mask_storeu_ps(hi->output + i * outputChannelStride, (__mmask8)(mask[v] >> 8), _mm512_extractf32x8_ps(acc[v][i], 1));
    }
  }
}

#define WIDE_TILES(joined) \
  switch (outputs - o0 < MR ? outputs - o0 : MR) { \
  case 1: wideTile(1, joined, grid, gridChannelStride, channels, w, offsets, first, end, &t, outputChannelStride); break; \
  case 2: wideTile(2, joined, grid, gridChannelStride, channels, w, offsets, first, end, &t, outputChannelStride); break; \
  case 3: wideTile(3, joined, grid, gridChannelStride, channels, w, offsets, first, end, &t, outputChannelStride); break; \
  case 4: wideTile(4, joined, grid, gridChannelStride, channels, w, offsets, first, end, &t, outputChannelStride); break; \
  case 5: wideTile(5, joined, grid, gridChannelStride, channels, w, offsets, first, end, &t, outputChannelStride); break; \
  default: wideTile(6, joined, grid, gridChannelStride, channels, w, offsets, first, end, &t, outputChannelStride); break; \
  }

/// All outputs at the 8 segments of `q`, tile by tile, over the taps that read anything but zeros at
/// any of them.
WIDE static void segmentQuad(
  const float *grid, long gridChannelStride, long channels, const float *packed, long outputs,
  const long *offsets, long taps, const Quad *q, long outputChannelStride) {
  int joined = 1;
  for (int v = 0; v < 4; v++)
    joined &= q->s[2 * v].width == 8 && q->s[2 * v + 1].position == q->s[2 * v].position + 8;
  long first = q->s[0].firstTap, end = q->s[0].endTap;
  for (int j = 1; j < 8; j++) {
    first = q->s[j].firstTap < first ? q->s[j].firstTap : first;
    end = q->s[j].endTap > end ? q->s[j].endTap : end;
  }
  for (long o0 = 0; o0 < outputs; o0 += MR) {
    const float *w = packed + (o0 * taps + first * MR) * channels;
    Quad t = *q;
    for (int j = 0; j < 8; j++) t.s[j].output += o0 * outputChannelStride;
    if (joined) {
      WIDE_TILES(1)
    } else {
      WIDE_TILES(0)
    }
  }
}

/// One group of segments, the first `group` (2 or 8) of `q`: the prefetch for the next group, then
/// all outputs at them, tile by tile.
static void convolveGroup(
  int group, const float *grid, long gridChannelStride, long channels, const float *packed, long outputs,
  const long *offsets, long taps, long furthest, const Quad *q, long outputChannelStride) {
  const long first = q->s[0].position;
  prefetchAhead(grid, gridChannelStride, channels, furthest, first, q->s[group - 1].position + 8 - first);
  if (group == 8) {
    segmentQuad(grid, gridChannelStride, channels, packed, outputs, offsets, taps, q, outputChannelStride);
  } else {
    segmentPair(grid, gridChannelStride, channels, packed, outputs, offsets, taps, q->s[0], q->s[1], outputChannelStride);
  }
}

void reprise_shifted_convolution_f32(
  const float *grid, long gridChannelStride, long channels, const float *packed, long outputs,
  const long *offsets, long taps, const long *tapRanges, long firstRow, long rowCount, long rowsPerImage, long rowWidth,
  long gridImageStride, long gridRowStride, long gridOrigin, float *output, long outputImageStride,
  long outputChannelStride) {
  // Segments of 8 positions along the rows, in groups of 2 (AVX2) or 8 (AVX-512); a group may span
  // rows. The last group is filled up with empty segments, which read and write nothing.
  const int group = reprise_wide_kernels_enabled() ? 8 : 2;
  long furthest = offsets[0];
  for (long k = 1; k < taps; k++) furthest = offsets[k] > furthest ? offsets[k] : furthest;
  Quad pending;
  int count = 0;
  for (long r = firstRow; r < firstRow + rowCount; r++) {
    const long n = r / rowsPerImage, y = r % rowsPerImage;
    const long position = gridOrigin + n * gridImageStride + y * gridRowStride;
    float *out = output + n * outputImageStride + y * rowWidth;
    const long firstTap = tapRanges ? tapRanges[2 * y] : 0, endTap = tapRanges ? tapRanges[2 * y + 1] : taps;
    for (long j = 0; j < rowWidth; j += 8) {
      pending.s[count++] = (Segment){position + j, out + j, rowWidth - j < 8 ? (int)(rowWidth - j) : 8, firstTap, endTap};
      if (count < group) continue;
      convolveGroup(group, grid, gridChannelStride, channels, packed, outputs, offsets, taps, furthest, &pending, outputChannelStride);
      count = 0;
    }
  }
  if (count > 0) {
    for (int j = count; j < group; j++) {
      const Segment *last = &pending.s[j - 1];
      pending.s[j] = (Segment){last->position + 8, last->output, 0, last->firstTap, last->endTap};
    }
    convolveGroup(group, grid, gridChannelStride, channels, packed, outputs, offsets, taps, furthest, &pending, outputChannelStride);
  }
}
