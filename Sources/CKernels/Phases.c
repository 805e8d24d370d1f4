// The phases of strided planes (CKernels.h): the column phases of a stride-2 row for the
// depthwise kernels (DepthwiseConvolution+Planes.swift), and whole planes split into their phases
// and merged back for the phase grid (PhaseGrid.swift).
//
// Swift compiles for baseline x86-64 and moves one float per iteration where one side has a stride
// of two; here eight move per iteration through AVX2 shuffles. The copies are bound by their
// reads: each plane is a fresh page or a few, where the hardware prefetchers start cold, so the
// phase split names the next plane, whose lines are asked for while this one is copied.
#include "CKernels.h"
#include "Lanes.h"

#include <immintrin.h>
#include <string.h>

#define TARGET __attribute__((target("avx2,fma")))

// The depthwise kernels' column phases: Swift's loops profiled at 4% (the copy into phases) and
// 6% (the scatter back) of a MobileNetV2 step.

/// The even-indexed and the odd-indexed of the 16 values in a and b, in order: the shuffles give
/// [a0 a2 b0 b2 | a4 a6 b4 b6] and [a1 a3 b1 b3 | a5 a7 b5 b7], then their quarters are put in order.
TARGET static inline __m256 evenOf(__m256 a, __m256 b) {
  const __m256 e = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
  return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), _MM_SHUFFLE(3, 1, 2, 0)));
}

TARGET static inline __m256 oddOf(__m256 a, __m256 b) {
  const __m256 o = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
  return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), _MM_SHUFFLE(3, 1, 2, 0)));
}

TARGET void reprise_split_columns_f32(const float *row, long count, float *even, float *odd) {
  long i = 0;
  for (; i + 16 <= count; i += 16) {
    const __m256 a = _mm256_loadu_ps(row + i), b = _mm256_loadu_ps(row + i + 8);
    _mm256_storeu_ps(even + i / 2, evenOf(a, b));
    _mm256_storeu_ps(odd + i / 2, oddOf(a, b));
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

// The phase grid's planes.

/// to[j] = from[2j] for j < count. Eight at a time as the even lanes of 16 loaded values; the last
/// eight as the odd lanes of the 16 values from one position earlier, so that nothing past
/// from[2(count - 1)] is read.
TARGET static void gatherEven(const float *from, long count, float *to) {
  if (count < 9) {
    for (long j = 0; j < count; j++) to[j] = from[2 * j];
    return;
  }
  for (long j = 0; j + 8 < count; j += 8) _mm256_storeu_ps(to + j, evenOf(_mm256_loadu_ps(from + 2 * j), _mm256_loadu_ps(from + 2 * j + 8)));
  const long last = count - 8;
  _mm256_storeu_ps(to + last, oddOf(_mm256_loadu_ps(from + 2 * last - 1), _mm256_loadu_ps(from + 2 * last + 7)));
}

/// Zeros in to[0 ..< lower] and to[lower + count ..< width]: a phase row's pixels on the padding.
static inline void zeroOutside(float *to, long lower, long count, long width) {
  for (long j = 0; j < lower; j++) to[j] = 0;
  for (long j = lower + count; j < width; j++) to[j] = 0;
}

/// Phases (a, 0) and (a, 1) of stride 2 from one pass over each input row: row[2m] goes to
/// even[m] and row[2m + 1] to odd[m], eight of each from two loads, where one phase at a time
/// loads every row twice and uses half of each load. `even` and `odd` are the phase (k of
/// `ranges`) whose first covered column is input column 0 and 1. False, with nothing written,
/// where the ranges are not of that form.
TARGET static int splitRowPairs(
  const float *plane, long width, long padTop, long padLeft, const long *remainders, const long *ranges, long phaseCount,
  long phaseHeight, long phaseWidth, float *out, long phaseStride, long a) {
  long k[2] = {-1, -1};
  for (long p = 0; p < phaseCount; p++) {
    if (remainders[2 * p] == a) k[remainders[2 * p + 1]] = p;
  }
  if (k[0] < 0 || k[1] < 0) return 0;
  // Phase (a, b)'s first covered column j reads input column 2j + b - padLeft: 0 for one phase, 1
  // for the other.
  const long e = (2 * ranges[4 * k[0] + 2] - padLeft) == 0 ? 0 : 1;
  const long *re = ranges + 4 * k[e], *ro = ranges + 4 * k[1 - e];
  if (2 * re[2] + e - padLeft != 0 || 2 * ro[2] + (1 - e) - padLeft != 1 || re[0] != ro[0] || re[1] != ro[1]) return 0;
  const long pairs = re[3] < ro[3] ? re[3] : ro[3];
  float *toEven = out + k[e] * phaseStride, *toOdd = out + k[1 - e] * phaseStride;
  for (long i = 0; i < phaseHeight; i++, toEven += phaseWidth, toOdd += phaseWidth) {
    if (i < re[0] || i >= re[0] + re[1] || (re[3] == 0 && ro[3] == 0)) {
      memset(toEven, 0, sizeof(float) * (size_t)phaseWidth);
      memset(toOdd, 0, sizeof(float) * (size_t)phaseWidth);
      continue;
    }
    const float *row = plane + (2 * i + a - padTop) * width;
    float *even = toEven + re[2], *odd = toOdd + ro[2];
    long m = 0;
    for (; m + 8 <= pairs && 2 * m + 16 <= width; m += 8) {
      const __m256 x = _mm256_loadu_ps(row + 2 * m), y = _mm256_loadu_ps(row + 2 * m + 8);
      _mm256_storeu_ps(even + m, evenOf(x, y));
      _mm256_storeu_ps(odd + m, oddOf(x, y));
    }
    for (long j = m; j < re[3]; j++) even[j] = row[2 * j];
    for (long j = m; j < ro[3]; j++) odd[j] = row[2 * j + 1];
    zeroOutside(toEven, re[2], re[3], phaseWidth);
    zeroOutside(toOdd, ro[2], ro[3], phaseWidth);
  }
  return 1;
}

TARGET void reprise_phase_split_f32(
  const float *plane, long height, long width, long strideY, long strideX, long padTop, long padLeft,
  const long *remainders, const long *ranges, long phaseCount, long phaseHeight, long phaseWidth, float *out,
  long phaseStride, const float *next) {
  if (next) {
    // The next plane's first 4 KiB (all of a 32 x 32 plane); on larger planes the prefetchers
    // have the rest of its first page to learn from.
    const long bytes = (long)sizeof(float) * height * width;
    prefetchLines(next, bytes < 4096 ? bytes : 4096);
  }
  // Stride 2 with both column phases of each row remainder (a 3x3 kernel's four): row pairs.
  if (strideX == 2 && strideY == 2 && phaseCount == 4 &&
      splitRowPairs(plane, width, padTop, padLeft, remainders, ranges, phaseCount, phaseHeight, phaseWidth, out, phaseStride, 0) &&
      splitRowPairs(plane, width, padTop, padLeft, remainders, ranges, phaseCount, phaseHeight, phaseWidth, out, phaseStride, 1))
    return;
  for (long k = 0; k < phaseCount; k++) {
    const long a = remainders[2 * k], b = remainders[2 * k + 1];
    const long *r = ranges + 4 * k;  // rows lower, rows count, columns lower, columns count
    const long lower = r[2];
    float *to = out + k * phaseStride;
    for (long i = 0; i < phaseHeight; i++, to += phaseWidth) {
      if (i < r[0] || i >= r[0] + r[1] || r[3] == 0) {
        memset(to, 0, sizeof(float) * (size_t)phaseWidth);
        continue;
      }
      // Phase pixel (i, j) is input pixel (i·strideY + a - padTop, j·strideX + b - padLeft).
      const float *from = plane + (i * strideY + a - padTop) * width + lower * strideX + b - padLeft;
      if (strideX == 2) {
        gatherEven(from, r[3], to + lower);
      } else {
        for (long j = 0; j < r[3]; j++) to[lower + j] = from[j * strideX];
      }
      zeroOutside(to, lower, r[3], phaseWidth);
    }
  }
}

/// row[2m] = even[m] and row[2m + 1] = odd[m] for 2m, 2m + 1 < width: eight of each at a time,
/// interleaved in registers and stored as two whole vectors.
TARGET static void interleaveColumns(const float *even, const float *odd, long width, float *row) {
  long m = 0;
  for (; 2 * m + 16 <= width; m += 8) {
    const __m256 e = _mm256_loadu_ps(even + m), o = _mm256_loadu_ps(odd + m);
    const __m256 lo = _mm256_unpacklo_ps(e, o), hi = _mm256_unpackhi_ps(e, o);
    _mm256_storeu_ps(row + 2 * m, _mm256_permute2f128_ps(lo, hi, 0x20));
    _mm256_storeu_ps(row + 2 * m + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
  }
  for (long x = 2 * m; x < width; x++) row[x] = x % 2 ? odd[x / 2] : even[x / 2];
}

/// Points rows[0] and rows[1] at the values of input row (a, i)'s even and odd columns when phases
/// (a, 0) and (a, 1) cover all of that row's columns between them (3x3 stride 2 on every row but
/// those on the padding): the row is then their interleaving, with no zeros and no copy. 0 otherwise.
static int wholeRowPhases(
  long a, long i, long width, long padLeft, const long *phaseIndex, const float *const *values, const long *ranges,
  long planeIndex, const float *rows[2]) {
  for (long b = 0; b < 2; b++) {
    const long k = phaseIndex[2 * a + b];
    if (k < 0) return 0;
    const long *r = ranges + 4 * k;
    // The input column of the phase's first covered column, 0 or 1 (of parity b - padLeft) when
    // the phase covers its parity from the row's start; then it must cover the rest of it.
    const long first = 2 * r[2] + b - padLeft;
    if (i < r[0] || i >= r[0] + r[1] || (first != 0 && first != 1) || r[3] != (width - first + 1) / 2) return 0;
    rows[first] = values[k] + (planeIndex * r[1] + i - r[0]) * r[3];
  }
  return 1;
}

/// The widest plane whose rows the stride-2 merge builds on the stack.
enum { MERGE_WIDTH = 1024 };

TARGET void reprise_phase_merge_f32(
  float *plane, long height, long width, long strideY, long strideX, long padTop, long padLeft, const long *phaseIndex,
  const float *const *values, const long *ranges, long planeIndex) {
  // Stride 2 (every strided layer of the models) interleaves each row's even and odd columns, so
  // that the row is written once in whole vectors: straight from the two phases' values where they
  // cover the row, else from copies on the stack between the padding's zeros. Other strides write
  // the row's zeros and then each phase's values in place.
  float columns[2][MERGE_WIDTH / 2];
  const int paired = strideX == 2 && width <= MERGE_WIDTH;
  const long half = (width + 1) / 2;
  for (long y = 0; y < height; y++) {
    float *row = plane + y * width;
    const long i = (y + padTop) / strideY, a = (y + padTop) % strideY;
    const float *whole[2];
    if (strideX == 2 && wholeRowPhases(a, i, width, padLeft, phaseIndex, values, ranges, planeIndex, whole)) {
      interleaveColumns(whole[0], whole[1], width, row);
      continue;
    }
    if (paired) {
      memset(columns[0], 0, sizeof(float) * (size_t)half);
      memset(columns[1], 0, sizeof(float) * (size_t)half);
    } else {
      memset(row, 0, sizeof(float) * (size_t)width);
    }
    for (long b = 0; b < strideX; b++) {
      const long k = phaseIndex[a * strideX + b];
      if (k < 0) continue;
      const long *r = ranges + 4 * k;  // rows lower, rows count, columns lower, columns count
      if (i < r[0] || i >= r[0] + r[1] || r[3] == 0) continue;
      const float *from = values[k] + (planeIndex * r[1] + i - r[0]) * r[3];
      // Phase column j is input column j·strideX + b - padLeft, which lies in the row.
      const long first = r[2] * strideX + b - padLeft;
      if (paired) {
        memcpy(columns[first % 2] + first / 2, from, sizeof(float) * (size_t)r[3]);
      } else {
        for (long j = 0; j < r[3]; j++) row[first + j * strideX] = from[j];
      }
    }
    if (paired) interleaveColumns(columns[0], columns[1], width, row);
  }
}
