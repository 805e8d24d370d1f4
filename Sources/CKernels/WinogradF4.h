// The transforms of Winograd's F(4x4, 3x3) (Lavin and Gray 2016, section 4.2), a private header of
// Winograd.c, which drives them over planes exactly as it drives those of F(2x2, 3x3).
//
// A tile is a 4x4 block of outputs and its patch the 6x6 block of inputs around it; a transformed
// tile has 36 positions, so the products do 36 multiply-adds per 16 outputs, channel and output:
// 2.25 an output where F(2x2, 3x3) does 4 and the direct sum 9. The price is in rounding: the
// matrices' entries reach 8 (A), 5 (B) and 1/24 (G), so the results stray further from the exact sum
// than those of F(2x2, 3x3), whose entries are 0, ±1 and ±1/2 (docs/numerics.md#winograd has the
// measured errors).
//
//        | 4  0 -5  0  1  0 |            | 1  1  1  1  1  0 |          |  1/4     0     0  |
//        | 0 -4 -4  1  1  0 |      A^T = | 0  1 -1  2 -2  0 |      G = | -1/6  -1/6  -1/6  |
//  B^T = | 0  4 -4 -1  1  0 |            | 0  1  1  4  4  0 |          | -1/6   1/6  -1/6  |
//        | 0 -2 -1  2  1  0 |            | 0  1 -1  8 -8  1 |          | 1/24  1/12   1/6  |
//        | 0  2 -1 -2  1  0 |                                          | 1/24 -1/12   1/6  |
//        | 0  4  0 -5  0  1 |                                          |    0     0     1  |
//
// Eight tiles are taken at a time, one per lane: four whose corners lie 4 floats apart and four more
// `half` floats after them. A row of their patches is read as 128-bit quarters, [tile i | tile i + 4]
// in the two halves of a vector, and a 4x4 transpose within each half turns these into the patch
// columns, tile i in lane i. Planes of 8x8 (2x2 tiles) are taken two at a time as a mosaic: two
// planes side by side, `mosaicOffset` floats apart, so that the four tiles of a half are the top
// (or bottom) tile rows of both planes, their corners at 0, 4, m and m + 4 floats.
#ifndef REPRISE_WINOGRAD_F4_H
#define REPRISE_WINOGRAD_F4_H

#include <immintrin.h>

#define F4 __attribute__((target("avx2,fma"), always_inline)) static inline

/// The 4x4 transposes within each 128-bit half of x0..x3: lane (h, i) of result j is lane (h, j) of
/// x_i.
F4 void transposeHalves(__m256 x0, __m256 x1, __m256 x2, __m256 x3, __m256 r[4]) {
  const __m256 t0 = _mm256_unpacklo_ps(x0, x1), t1 = _mm256_unpackhi_ps(x0, x1);
  const __m256 t2 = _mm256_unpacklo_ps(x2, x3), t3 = _mm256_unpackhi_ps(x2, x3);
  r[0] = _mm256_shuffle_ps(t0, t2, 0x44);
  r[1] = _mm256_shuffle_ps(t0, t2, 0xEE);
  r[2] = _mm256_shuffle_ps(t1, t3, 0x44);
  r[3] = _mm256_shuffle_ps(t1, t3, 0xEE);
}

/// The distance between the two planes of a mosaic: an 8-wide plane and its two border columns.
enum { mosaicOffset = 10 };

/// Where the i-th tile of a half starts: 4i floats along a row, or, in a mosaic, 0, 4, then the
/// second plane's 0 and 4.
F4 long quarter(int i, int mosaic) { return mosaic && i >= 2 ? mosaicOffset + 4 * (i - 2) : 4 * i; }

/// The four floats at p + offset and at p + half + offset, as the two halves of a vector.
F4 __m256 quarters(const float *p, long half, long offset) { return _mm256_loadu2_m128(p + half + offset, p + offset); }

/// Columns 0 to `n` - 1 (4 or 6) of one row of the eight tiles' patches: c[j] holds element j of
/// tile i's row in lane i.
F4 void patchRow(const float *p, long half, int n, int mosaic, __m256 c[6]) {
  const __m256 y0 = quarters(p, half, quarter(0, mosaic)), y1 = quarters(p, half, quarter(1, mosaic));
  const __m256 y2 = quarters(p, half, quarter(2, mosaic)), y3 = quarters(p, half, quarter(3, mosaic));
  transposeHalves(y0, y1, y2, y3, c);
  if (n == 4) return;
  // Elements 4 and 5 of tile i are elements 0 and 1 of the quarter after it: tile i + 1's along a
  // row (and a fifth quarter after the fourth tile); in a mosaic, tile 1's after tile 0 and tile 3's
  // after tile 2, and new quarters after tiles 1 and 3.
  const __m256 e1 = mosaic ? quarters(p, half, 8) : y2, e3 = quarters(p, half, quarter(3, mosaic) + 4);
  const __m256 s0 = _mm256_unpacklo_ps(y1, e1), s1 = _mm256_unpacklo_ps(y3, e3);
  c[4] = _mm256_shuffle_ps(s0, s1, 0x44);
  c[5] = _mm256_shuffle_ps(s0, s1, 0xEE);
}

F4 __m256 times(float k, __m256 x) { return _mm256_mul_ps(_mm256_set1_ps(k), x); }

/// B^T d for one column d of a patch.
F4 void inputColumn(const __m256 d[6], __m256 t[6]) {
  const __m256 a = _mm256_fnmadd_ps(_mm256_set1_ps(4), d[2], d[4]), b = _mm256_fnmadd_ps(_mm256_set1_ps(4), d[1], d[3]);
  const __m256 c = _mm256_sub_ps(d[4], d[2]), e = times(2, _mm256_sub_ps(d[3], d[1]));
  t[0] = _mm256_fmadd_ps(_mm256_set1_ps(4), d[0], _mm256_fnmadd_ps(_mm256_set1_ps(5), d[2], d[4]));
  t[1] = _mm256_add_ps(a, b);
  t[2] = _mm256_sub_ps(a, b);
  t[3] = _mm256_add_ps(c, e);
  t[4] = _mm256_sub_ps(c, e);
  t[5] = _mm256_fmadd_ps(_mm256_set1_ps(4), d[1], _mm256_fnmadd_ps(_mm256_set1_ps(5), d[3], d[5]));
}

/// A^T m for one column m of a transformed tile.
F4 void outputColumn(const __m256 m[6], __m256 y[4]) {
  const __m256 p = _mm256_add_ps(m[1], m[2]), q = _mm256_sub_ps(m[1], m[2]);
  const __m256 r = _mm256_add_ps(m[3], m[4]), s = _mm256_sub_ps(m[3], m[4]);
  y[0] = _mm256_add_ps(_mm256_add_ps(m[0], p), r);
  y[1] = _mm256_fmadd_ps(_mm256_set1_ps(2), s, q);
  y[2] = _mm256_fmadd_ps(_mm256_set1_ps(4), r, p);
  y[3] = _mm256_add_ps(_mm256_fmadd_ps(_mm256_set1_ps(8), s, q), m[5]);
}

/// A g for one column g of an output-gradient tile.
F4 void gradientColumn(const __m256 g[4], __m256 h[6]) {
  const __m256 even = _mm256_add_ps(g[0], g[2]), odd = _mm256_add_ps(g[1], g[3]);
  const __m256 even2 = _mm256_fmadd_ps(_mm256_set1_ps(4), g[2], g[0]), odd2 = _mm256_fmadd_ps(_mm256_set1_ps(4), g[3], g[1]);
  h[0] = g[0];
  h[1] = _mm256_add_ps(even, odd);
  h[2] = _mm256_sub_ps(even, odd);
  h[3] = _mm256_fmadd_ps(_mm256_set1_ps(2), odd2, even2);
  h[4] = _mm256_fnmadd_ps(_mm256_set1_ps(2), odd2, even2);
  h[5] = g[3];
}

/// G g for one column g of a filter.
F4 void filterColumn(const __m256 g[3], __m256 u[6]) {
  const __m256 outer = _mm256_add_ps(g[0], g[2]);
  const __m256 sixth = times(-1.0f / 6, _mm256_add_ps(outer, g[1])), sixth2 = times(-1.0f / 6, _mm256_sub_ps(outer, g[1]));
  const __m256 base = _mm256_fmadd_ps(_mm256_set1_ps(1.0f / 24), g[0], times(1.0f / 6, g[2])), middle = times(1.0f / 12, g[1]);
  u[0] = times(0.25f, g[0]);
  u[1] = sixth;
  u[2] = sixth2;
  u[3] = _mm256_add_ps(base, middle);
  u[4] = _mm256_sub_ps(base, middle);
  u[5] = g[2];
}

/// G^T m for one column m of a transformed weight gradient.
F4 void filterGradientColumn(const __m256 m[6], __m256 g[3]) {
  const __m256 p = _mm256_add_ps(m[1], m[2]), q = _mm256_sub_ps(m[2], m[1]);
  const __m256 r = _mm256_add_ps(m[3], m[4]), s = _mm256_sub_ps(m[3], m[4]);
  g[0] = _mm256_fmadd_ps(_mm256_set1_ps(1.0f / 24), r, _mm256_fmadd_ps(_mm256_set1_ps(-1.0f / 6), p, times(0.25f, m[0])));
  g[1] = _mm256_fmadd_ps(_mm256_set1_ps(1.0f / 12), s, times(1.0f / 6, q));
  g[2] = _mm256_fmadd_ps(_mm256_set1_ps(1.0f / 6), _mm256_sub_ps(r, p), m[5]);
}

/// One group's transformed input patches (B^T d B), stored to the 36 streams at `out`.
F4 void patchTransform4(const float *corner, long pitch, long half, float *out, long stream, int mosaic) {
  __m256 rows[6][6];  // d B, row by row: B^T applied along each row of the patch
  for (int r = 0; r < 6; r++) {
    __m256 d[6];
    patchRow(corner + r * pitch, half, 6, mosaic, d);
    inputColumn(d, rows[r]);
  }
  for (int j = 0; j < 6; j++) {  // B^T (d B), column by column
    const __m256 d[6] = {rows[0][j], rows[1][j], rows[2][j], rows[3][j], rows[4][j], rows[5][j]};
    __m256 t[6];
    inputColumn(d, t);
    for (int i = 0; i < 6; i++) _mm256_storeu_ps(out + (6 * i + j) * stream, t[i]);
  }
}

/// One group's transformed output-gradient tiles (A g A^T), stored to the 36 streams at `out`.
F4 void gradientTransform4(const float *corner, long pitch, long half, float *out, long stream, int mosaic) {
  __m256 rows[4][6];  // g A^T, row by row
  for (int r = 0; r < 4; r++) {
    __m256 g[6];
    patchRow(corner + r * pitch, half, 4, mosaic, g);
    gradientColumn(g, rows[r]);
  }
  for (int j = 0; j < 6; j++) {  // A (g A^T)
    const __m256 g[4] = {rows[0][j], rows[1][j], rows[2][j], rows[3][j]};
    __m256 h[6];
    gradientColumn(g, h);
    for (int i = 0; i < 6; i++) _mm256_storeu_ps(out + (6 * i + j) * stream, h[i]);
  }
}

/// One group's outputs (A^T M A) from the 36 streams at `in` (the lanes under `mask`, or all when
/// `full`), written as four rows of eight 4-float tiles at `corner` and `corner + half`.
F4 void outputTransform4(const float *in, long stream, __m256i mask, int full, float *corner, long pitch, long half, int mosaic) {
  __m256 columns[4][6];  // A^T M, column by column
  for (int j = 0; j < 6; j++) {
    __m256 m[6], y[4];
    for (int i = 0; i < 6; i++) m[i] = full ? _mm256_loadu_ps(in + (6 * i + j) * stream) : _mm256_maskload_ps(in + (6 * i + j) * stream, mask);
    outputColumn(m, y);
    for (int r = 0; r < 4; r++) columns[r][j] = y[r];
  }
  for (int r = 0; r < 4; r++) {  // (A^T M) A, row by row, each row's four columns transposed back into tiles
    __m256 y[4], z[4];
    outputColumn(columns[r], y);
    transposeHalves(y[0], y[1], y[2], y[3], z);
    float *row = corner + r * pitch;
    for (int i = 0; i < 4; i++) _mm256_storeu2_m128(row + half + quarter(i, mosaic), row + quarter(i, mosaic), z[i]);
  }
}

/// The transforms along rows of tiles and in mosaics, for Winograd.c's plane loops.
F4 void patchTransform4Rows(const float *c, long pitch, long half, float *out, long stream) { patchTransform4(c, pitch, half, out, stream, 0); }
F4 void patchTransform4Mosaic(const float *c, long pitch, long half, float *out, long stream) { patchTransform4(c, pitch, half, out, stream, 1); }
F4 void gradientTransform4Rows(const float *c, long pitch, long half, float *out, long stream) { gradientTransform4(c, pitch, half, out, stream, 0); }
F4 void gradientTransform4Mosaic(const float *c, long pitch, long half, float *out, long stream) { gradientTransform4(c, pitch, half, out, stream, 1); }
F4 void outputTransform4Rows(const float *in, long stream, __m256i mask, int full, float *c, long pitch, long half) {
  outputTransform4(in, stream, mask, full, c, pitch, half, 0);
}
F4 void outputTransform4Mosaic(const float *in, long stream, __m256i mask, int full, float *c, long pitch, long half) {
  outputTransform4(in, stream, mask, full, c, pitch, half, 1);
}

#undef F4

#endif
