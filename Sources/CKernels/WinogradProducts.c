// The 16 or 36 matrix products of Winograd's F(2x2, 3x3) or F(4x4, 3x3) (Winograd.c has the transforms), for layers too
// narrow for OpenBLAS: with 16 or 32 channels each product is a few tens of thousands of
// multiply-adds, and OpenBLAS spends longer packing its operands and clearing its result than
// multiplying. Here the operands are used where they lie, in the layout the transforms wrote.
//
// Both kernels keep 12 8-lane sums in registers (of the 16), so that each step loads 7 or 8 vectors
// or broadcasts for 12 multiply-adds and the two FMA units never wait on a sum: 6 rows x 2 vectors
// of columns for C = A B (6 x 2 rather than 4 x 3, so that the sums, operands and broadcast fit the
// registers without a spill), 4 x 3 for C = A B^T.
#include "CKernels.h"
#include "Lanes.h"

#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma")))

/// Rows r..r+R-1 of C = A B for columns col..col+8W-1 (the last vector's lanes under `mask` read from
/// B; those past them store zeros), with
/// A's element (i, d) at a[i * rowStride + d * depthStride] and B's and C's rows `ld` apart.
AVX2 __attribute__((always_inline)) static inline void productBlock(
  const int R, const int W, const float *a, long rowStride, long depthStride, long depth, const float *b, float *c,
  long ld, __m256i mask, int full) {
  __m256 sum[6][2];
  for (int i = 0; i < R; i++)
    for (int j = 0; j < W; j++) sum[i][j] = _mm256_setzero_ps();
  for (long d = 0; d < depth; d++) {
    const float *row = b + d * ld;
    __m256 x[2];
    for (int j = 0; j < W; j++) x[j] = j == W - 1 && !full ? _mm256_maskload_ps(row + 8 * j, mask) : _mm256_loadu_ps(row + 8 * j);
    for (int i = 0; i < R; i++) {
      const __m256 y = _mm256_broadcast_ss(a + i * rowStride + d * depthStride);
      for (int j = 0; j < W; j++) sum[i][j] = _mm256_fmadd_ps(y, x[j], sum[i][j]);
    }
  }
  // Whole vectors, also past the last column: C's rows have room for them (see CKernels.h), and a
  // masked store takes AMD's processors many times longer than a plain one.
  for (int i = 0; i < R; i++)
    for (int j = 0; j < W; j++) _mm256_storeu_ps(c + i * ld + 8 * j, sum[i][j]);
}

/// All rows of C = A B for the columns of one block of W vectors.
AVX2 __attribute__((always_inline)) static inline void productColumns(
  const int W, const float *a, long rowStride, long depthStride, long rows, long depth, const float *b, float *c, long ld,
  __m256i mask, int full) {
  long r = 0;
  for (; r + 6 <= rows; r += 6) productBlock(6, W, a + r * rowStride, rowStride, depthStride, depth, b, c + r * ld, ld, mask, full);
  const float *ar = a + r * rowStride;
  float *cr = c + r * ld;
  switch (rows - r) {
  case 5: productBlock(5, W, ar, rowStride, depthStride, depth, b, cr, ld, mask, full); break;
  case 4: productBlock(4, W, ar, rowStride, depthStride, depth, b, cr, ld, mask, full); break;
  case 3: productBlock(3, W, ar, rowStride, depthStride, depth, b, cr, ld, mask, full); break;
  case 2: productBlock(2, W, ar, rowStride, depthStride, depth, b, cr, ld, mask, full); break;
  case 1: productBlock(1, W, ar, rowStride, depthStride, depth, b, cr, ld, mask, full); break;
  default: break;
  }
}

AVX2 void reprise_winograd_products_f32(
  long positions, const float *a, long rowStride, long depthStride, long rows, long depth, const float *b, float *c, long columns,
  long ld) {
  for (long xi = 0; xi < positions; xi++) {
    const float *ax = a + xi * rows * depth, *bx = b + xi * depth * ld;
    float *cx = c + xi * rows * ld;
    long col = 0;
    for (; col + 16 <= columns; col += 16)
      productColumns(2, ax, rowStride, depthStride, rows, depth, bx + col, cx + col, ld, lanesBelow(8), 1);
    const long left = columns - col;
    const __m256i mask = lanesBelow(left - (left - 1) / 8 * 8);
    if (left > 8) productColumns(2, ax, rowStride, depthStride, rows, depth, bx + col, cx + col, ld, mask, 0);
    else if (left > 0) productColumns(1, ax, rowStride, depthStride, rows, depth, bx + col, cx + col, ld, mask, 0);
  }
}

/// The sums of each of 4 vectors, in lane order: [Σ s0, Σ s1, Σ s2, Σ s3].
AVX2 static inline __m128 sumsOf4(__m256 s0, __m256 s1, __m256 s2, __m256 s3) {
  const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(s0, s1), _mm256_hadd_ps(s2, s3));
  return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

/// Elements (r+i, q+j), i < R and j < W, of C (+)= A B^T, with A's rows (R of them) and B's rows
/// (W) `ld` apart and `count` long, and C's rows `cld` apart.
AVX2 __attribute__((always_inline)) static inline void transposedBlock(
  const int R, const int W, const float *a, const float *b, long count, long ld, float *c, long cld, int accumulate) {
  __m256 sum[4][3];
  for (int i = 0; i < 4; i++)
    for (int j = 0; j < W; j++) sum[i][j] = _mm256_setzero_ps();
  long k = 0;
  for (; k + 8 <= count; k += 8) {
    __m256 y[3];
    for (int j = 0; j < W; j++) y[j] = _mm256_loadu_ps(b + j * ld + k);
    for (int i = 0; i < R; i++) {
      const __m256 x = _mm256_loadu_ps(a + i * ld + k);
      for (int j = 0; j < W; j++) sum[i][j] = _mm256_fmadd_ps(x, y[j], sum[i][j]);
    }
  }
  if (k < count) {
    const __m256i mask = lanesBelow(count - k);
    __m256 y[3];
    for (int j = 0; j < W; j++) y[j] = _mm256_maskload_ps(b + j * ld + k, mask);
    for (int i = 0; i < R; i++) {
      const __m256 x = _mm256_maskload_ps(a + i * ld + k, mask);
      for (int j = 0; j < W; j++) sum[i][j] = _mm256_fmadd_ps(x, y[j], sum[i][j]);
    }
  }
  for (int j = 0; j < W; j++) {
    float s[4];
    _mm_storeu_ps(s, sumsOf4(sum[0][j], sum[1][j], sum[2][j], sum[3][j]));
    for (int i = 0; i < R; i++) c[i * cld + j] = accumulate ? c[i * cld + j] + s[i] : s[i];
  }
}

/// The elements of C (+)= A B^T in rows r..r+R-1, for every column.
AVX2 __attribute__((always_inline)) static inline void transposedRows(
  const int R, const float *a, const float *b, long columns, long count, long ld, float *c, int accumulate) {
  long q = 0;
  for (; q + 3 <= columns; q += 3) transposedBlock(R, 3, a, b + q * ld, count, ld, c + q, columns, accumulate);
  if (columns - q == 2) transposedBlock(R, 2, a, b + q * ld, count, ld, c + q, columns, accumulate);
  else if (columns - q == 1) transposedBlock(R, 1, a, b + q * ld, count, ld, c + q, columns, accumulate);
}

AVX2 void reprise_winograd_transposed_products_f32(
  long positions, const float *a, long rows, const float *b, long columns, long count, long ld, float *c, int accumulate) {
  for (long xi = 0; xi < positions; xi++) {
    const float *ax = a + xi * rows * ld, *bx = b + xi * columns * ld;
    float *cx = c + xi * rows * columns;
    long r = 0;
    for (; r + 4 <= rows; r += 4) transposedRows(4, ax + r * ld, bx, columns, count, ld, cx + r * columns, accumulate);
    switch (rows - r) {
    case 3: transposedRows(3, ax + r * ld, bx, columns, count, ld, cx + r * columns, accumulate); break;
    case 2: transposedRows(2, ax + r * ld, bx, columns, count, ld, cx + r * columns, accumulate); break;
    case 1: transposedRows(1, ax + r * ld, bx, columns, count, ld, cx + r * columns, accumulate); break;
    default: break;
    }
  }
}
