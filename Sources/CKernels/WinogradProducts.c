// The 16 or 36 matrix products of Winograd's F(2x2, 3x3) or F(4x4, 3x3) (Winograd.c has the transforms), for layers too
// narrow for OpenBLAS: with 16 or 32 channels each product is a few tens of thousands of
// multiply-adds, and OpenBLAS spends longer packing its operands and clearing its result than
// multiplying. Here the operands are used where they lie, in the layout the transforms wrote.
//
// The forward pass and input gradient take the transformed weights in panels of 6 rows, each panel
// a row after row of its 6 rows' elements at one depth (Winograd.c writes them so): the kernel
// broadcasts 6 rows' elements at each step of the depth, and from rows hundreds of floats apart
// these were 6 streams, which for 96 channels or more the prefetchers did not keep in the L1 cache.
// From a panel they are one stream of consecutive floats.
//
// The kernel keeps 12 8-lane sums in registers (of the 16), so that each step loads 8 vectors or
// broadcasts for 12 multiply-adds and the two FMA units never wait on a sum: 6 rows x 2 vectors of
// columns (6 x 2 rather than 4 x 3, so that the sums, operands and broadcast fit the registers
// without a spill). Where the processor has AVX-512 (`reprise_wide_kernels_enabled`), the same
// 8-lane instructions have 32 registers, and the kernel keeps 6 rows x 4 vectors of sums: 10 loads
// or broadcasts for 24 multiply-adds. The forward and input-gradient products there take 16-lane
// vectors, 6 rows x 4 of them: each broadcast of the weights then feeds twice the lanes, and the
// weights of wide layers, whose panels come from the L2 cache, are read half as often per
// multiply-add (docs/performance.md#sixteen-lanes). The sums run over the depth in the same order
// in all of them, so the bits are the same; only their speed differs
// (docs/performance.md#wide-products).
//
// A pointwise convolution's gradients take the same kernel (at the end of the file): the input
// gradient dx = w^T dy with w^T in panels, and the weight gradient, transposed, x dy^T with dy
// transposed into a panel as the weight gradient's B is here.
//
// The weight gradient's products, C += A B^T, have both operands' rows along the tiles. Taken as
// dot products along the tiles (a chunk has 64 to 112 of them), each sum ended in a horizontal
// reduction and a scalar update that cost as much as a third of its multiply-adds; B is instead
// transposed, 8 x 8 at a time, into a panel with the columns of C along its rows, and the same
// kernel runs on it, each sum kept in a lane to the end.
#include "CKernels.h"
#include "Lanes.h"

#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma")))
#define WIDE __attribute__((target("avx2,fma,avx512f,avx512vl")))

/// The kernel's block of rows, and the weights' panel height.
#define PANEL_ROWS REPRISE_WINOGRAD_PANEL_ROWS
_Static_assert(PANEL_ROWS == 6, "productColumns has a case for each block of 1 to 6 rows, and the sums fill 12 or 24 registers");

/// Where the elements of A lie: row k (counting from the layout's first row, which is `first` rows
/// before A's row 0) in the block of 6 rows k / 6, blocks `blockStride` floats apart, at k % 6 *
/// `rowStride` in it, and the depth `depthStride` apart. A matrix with rows `s` apart has rowStride
/// s and blockStride 6 s; the transformed weights, in panels of 6 rows, rowStride 1, depthStride 6
/// and blockStride 6 * depth, so that the kernel reads a block's broadcasts from one stream.
typedef struct {
  const float *a;
  long rowStride, depthStride, blockStride, first;
} Operand;

/// `exact` for stores that bypass the caches (C's rows 32-byte aligned): see `reprise_pointwise_products_f32`.
#define STREAMING 2

/// Rows r..r+R-1 of C = A B, or C += A B with `accumulate`, for columns col..col+8W-1, W up to 4 (the last
/// vector's lanes under `mask` read from B; unless `exact`, those past them store zeros), with A's
/// element (i, d) at a[i * rowStride + d * depthStride], B's rows `ldb` apart and C's `ldc`.
AVX2 __attribute__((always_inline)) static inline void productBlock(
  const int R, const int W, const float *a, long rowStride, long depthStride, long depth, const float *b, long ldb, float *c,
  long ldc, __m256i mask, int full, int accumulate, int exact) {
  __m256 sum[PANEL_ROWS][4];
  for (int i = 0; i < R; i++)
    for (int j = 0; j < W; j++)
      sum[i][j] = !accumulate ? _mm256_setzero_ps()
                  : j == W - 1 && !full ? _mm256_maskload_ps(c + i * ldc + 8 * j, mask)
                                        : _mm256_loadu_ps(c + i * ldc + 8 * j);
  for (long d = 0; d < depth; d++) {
    const float *row = b + d * ldb;
    __m256 x[4];
    for (int j = 0; j < W; j++) x[j] = j == W - 1 && !full ? _mm256_maskload_ps(row + 8 * j, mask) : _mm256_loadu_ps(row + 8 * j);
    for (int i = 0; i < R; i++) {
      const __m256 y = _mm256_broadcast_ss(a + i * rowStride + d * depthStride);
      for (int j = 0; j < W; j++) sum[i][j] = _mm256_fmadd_ps(y, x[j], sum[i][j]);
    }
  }
  // Unless `exact`, whole vectors, also past the last column: C's rows have room for them (see
  // CKernels.h), and a masked store takes AMD's processors many times longer than a plain one.
  for (int i = 0; i < R; i++)
    for (int j = 0; j < W; j++)
      if (exact && j == W - 1 && !full) _mm256_maskstore_ps(c + i * ldc + 8 * j, mask, sum[i][j]);
      else if (exact == STREAMING) _mm256_stream_ps(c + i * ldc + 8 * j, sum[i][j]);
      else _mm256_storeu_ps(c + i * ldc + 8 * j, sum[i][j]);
}

/// The rows of C's block from row `r`: to the end of A's block of 6 rows that row `r` is in, and
/// no further than `rows`; `*a` is set to the block's first row.
static inline long rowBlock(Operand A, long r, long rows, const float **a) {
  const long k = A.first + r;
  *a = A.a + k / PANEL_ROWS * A.blockStride + k % PANEL_ROWS * A.rowStride;
  return PANEL_ROWS - k % PANEL_ROWS < rows - r ? PANEL_ROWS - k % PANEL_ROWS : rows - r;
}

/// `BLOCK(R)` for each block of C's `rows` rows along A's blocks of 6 (`rowBlock`), with `a` the
/// block's first row of A and `cr` its first row of C (rows `ldc` apart), and its R rows a constant
/// in each case, so that the block's sums are registers.
#define EACH_ROW_BLOCK(A, rows, c, ldc, BLOCK) \
  for (long r = 0; r < (rows);) { \
    const float *a; \
    const long count = rowBlock((A), r, (rows), &a); \
    float *cr = (c) + r * (ldc); \
    switch (count) { \
    case 6: BLOCK(6); break; \
    case 5: BLOCK(5); break; \
    case 4: BLOCK(4); break; \
    case 3: BLOCK(3); break; \
    case 2: BLOCK(2); break; \
    case 1: BLOCK(1); break; \
    default: break; \
    } \
    r += count; \
  }

/// All rows of C (+)= A B for the columns of one block of W vectors, 6 rows at a time along A's
/// blocks (fewer where A starts or ends inside one).
AVX2 __attribute__((always_inline)) static inline void productColumns(
  const int W, Operand A, long rows, long depth, const float *b, long ldb, float *c, long ldc, __m256i mask, int full,
  int accumulate, int exact) {
#define BLOCK(R) productBlock(R, W, a, A.rowStride, A.depthStride, depth, b, ldb, cr, ldc, mask, full, accumulate, exact)
  EACH_ROW_BLOCK(A, rows, c, ldc, BLOCK)
#undef BLOCK
}

/// C (+)= A B for all of C's `columns`, over depth rows `depth` of B: blocks of `widest` vectors (2,
/// or 4 with AVX-512's registers), then of 2, then the rest.
AVX2 __attribute__((always_inline)) static inline void productSlab(
  const int widest, Operand A, long rows, long depth, const float *b, long ldb, float *c, long ldc, long columns, int accumulate,
  int exact) {
  long col = 0;
  if (widest == 4)
    for (; col + 32 <= columns; col += 32)
      productColumns(4, A, rows, depth, b + col, ldb, c + col, ldc, lanesBelow(8), 1, accumulate, exact);
  for (; col + 16 <= columns; col += 16)
    productColumns(2, A, rows, depth, b + col, ldb, c + col, ldc, lanesBelow(8), 1, accumulate, exact);
  const long left = columns - col;
  const __m256i mask = lanesBelow(left - (left - 1) / 8 * 8);
  const int full = left % 8 == 0;
  if (left > 8) productColumns(2, A, rows, depth, b + col, ldb, c + col, ldc, mask, full, accumulate, exact);
  else if (left > 0) productColumns(1, A, rows, depth, b + col, ldb, c + col, ldc, mask, full, accumulate, exact);
}

/// C (+)= A B, the depth taken in slabs of at most `DEPTH_SLAB` rows of B, each slab's sums added to
/// the last's in C. A column block of B down a depth of 384 (1.5 cache lines a row, its rows a chunk's
/// tiles apart) takes 48 KB and is read once per 6 rows of C: it outgrew the 32 KB L1 cache and came
/// from L2 for every block of rows. A slab's block stays in L1. The sums still run over the depth in
/// order, through C between slabs, so the bits are those of one pass.
#define DEPTH_SLAB 128

/// `SLAB(slab, depth, b, accumulate)` for each slab of `depth` rows of B (rows `ldb` apart), with
/// `slab` A from the slab's first depth, and `accumulate` for every slab after the first.
#define EACH_DEPTH_SLAB(A, depth, b, ldb, accumulate, SLAB) \
  do { \
    const long slabs = ((depth) + DEPTH_SLAB - 1) / DEPTH_SLAB; \
    for (long s = 0; s < slabs; s++) { \
      const long d0 = (depth) * s / slabs, d1 = (depth) * (s + 1) / slabs; \
      Operand slab = (A); \
      slab.a += d0 * (A).depthStride; \
      SLAB(slab, d1 - d0, (b) + d0 * (ldb), (accumulate) || s > 0); \
    } \
  } while (0)

AVX2 __attribute__((always_inline)) static inline void product(
  const int widest, Operand A, long rows, long depth, const float *b, long ldb, float *c, long ldc, long columns, int accumulate,
  int exact) {
#define SLAB(slab, count, from, add) productSlab(widest, slab, rows, count, from, ldb, c, ldc, columns, add, exact)
  EACH_DEPTH_SLAB(A, depth, b, ldb, accumulate, SLAB);
#undef SLAB
}

/// `productBlock` with 16-lane vectors, W up to 4 (64 columns), for the products' C (never `exact`:
/// whole vectors are stored past the last column, into the room C's rows have for them; the
/// last vector's lanes outside `mask` read nothing from B).
WIDE __attribute__((always_inline)) static inline void productBlock16(
  const int R, const int W, const float *a, long rowStride, long depthStride, long depth, const float *b, long ldb, float *c,
  long ldc, __mmask16 mask, int full, int accumulate) {
  __m512 sum[PANEL_ROWS][4];
  for (int i = 0; i < R; i++)
    for (int j = 0; j < W; j++)
      sum[i][j] = !accumulate ? _mm512_setzero_ps()
                  : j == W - 1 && !full ? _mm512_maskz_loadu_ps(mask, c + i * ldc + 16 * j)
                                        : _mm512_loadu_ps(c + i * ldc + 16 * j);
  for (long d = 0; d < depth; d++) {
    const float *row = b + d * ldb;
    __m512 x[4];
    for (int j = 0; j < W; j++) x[j] = j == W - 1 && !full ? _mm512_maskz_loadu_ps(mask, row + 16 * j) : _mm512_loadu_ps(row + 16 * j);
    for (int i = 0; i < R; i++) {
      const __m512 y = _mm512_set1_ps(a[i * rowStride + d * depthStride]);
      for (int j = 0; j < W; j++) sum[i][j] = _mm512_fmadd_ps(y, x[j], sum[i][j]);
    }
  }
  for (int i = 0; i < R; i++)
    for (int j = 0; j < W; j++) _mm512_storeu_ps(c + i * ldc + 16 * j, sum[i][j]);
}

/// `productColumns` with 16-lane vectors.
WIDE __attribute__((always_inline)) static inline void productColumns16(
  const int W, Operand A, long rows, long depth, const float *b, long ldb, float *c, long ldc, __mmask16 mask, int full,
  int accumulate) {
#define BLOCK(R) productBlock16(R, W, a, A.rowStride, A.depthStride, depth, b, ldb, cr, ldc, mask, full, accumulate)
  EACH_ROW_BLOCK(A, rows, c, ldc, BLOCK)
#undef BLOCK
}

/// `productSlab` with 16-lane vectors: blocks of 4, then of 2, then the rest; a rest of 8 columns
/// or fewer takes one 8-lane vector, which reads and multiplies half as many lanes.
WIDE __attribute__((always_inline)) static inline void productSlab16(
  Operand A, long rows, long depth, const float *b, long ldb, float *c, long ldc, long columns, int accumulate) {
  long col = 0;
  for (; col + 64 <= columns; col += 64) productColumns16(4, A, rows, depth, b + col, ldb, c + col, ldc, 0xffff, 1, accumulate);
  for (; col + 32 <= columns; col += 32) productColumns16(2, A, rows, depth, b + col, ldb, c + col, ldc, 0xffff, 1, accumulate);
  const long left = columns - col;
  const __mmask16 mask = (__mmask16)((1u << (left - (left - 1) / 16 * 16)) - 1);
  const int full = left % 16 == 0;
  if (left > 16) productColumns16(2, A, rows, depth, b + col, ldb, c + col, ldc, mask, full, accumulate);
  else if (left > 8) productColumns16(1, A, rows, depth, b + col, ldb, c + col, ldc, mask, full, accumulate);
  else if (left > 0) productColumns(1, A, rows, depth, b + col, ldb, c + col, ldc, lanesBelow(left), left == 8, accumulate, 0);
}

/// `product` with 16-lane vectors, in the same slabs of the depth.
WIDE __attribute__((always_inline)) static inline void product16(
  Operand A, long rows, long depth, const float *b, long ldb, float *c, long ldc, long columns, int accumulate) {
#define SLAB(slab, count, from, add) productSlab16(slab, rows, count, from, ldb, c, ldc, columns, add)
  EACH_DEPTH_SLAB(A, depth, b, ldb, accumulate, SLAB);
#undef SLAB
}

long reprise_winograd_weight_plane(long rows, long columns) {
  return (rows + PANEL_ROWS - 1) / PANEL_ROWS * PANEL_ROWS * columns;
}

long reprise_winograd_weight_count(long rows, long columns, long tile) {
  return (tile + 2) * (tile + 2) * reprise_winograd_weight_plane(rows, columns);
}

/// The transformed weights of position `xi` as A (`reprise_winograd_products_f32`'s arguments).
static inline Operand weightsAt(long xi, const float *u, long uRows, long uDepth, long firstRow, long firstDepth) {
  const Operand A = {
    u + xi * reprise_winograd_weight_plane(uRows, uDepth) + firstDepth * PANEL_ROWS, 1, PANEL_ROWS, PANEL_ROWS * uDepth, firstRow};
  return A;
}

AVX2 static void productsNarrow(
  long positions, const float *u, long uRows, long uDepth, long firstRow, long rows, long firstDepth, long depth, const float *b,
  float *c, long columns, long ld, int accumulate) {
  for (long xi = 0; xi < positions; xi++)
    product(
      2, weightsAt(xi, u, uRows, uDepth, firstRow, firstDepth), rows, depth, b + xi * reprise_winograd_stream(depth, ld), ld,
      c + xi * reprise_winograd_stream(rows, ld), ld, columns, accumulate, 0);
}

WIDE static void productsWide(
  long positions, const float *u, long uRows, long uDepth, long firstRow, long rows, long firstDepth, long depth, const float *b,
  float *c, long columns, long ld, int accumulate) {
  for (long xi = 0; xi < positions; xi++)
    product16(
      weightsAt(xi, u, uRows, uDepth, firstRow, firstDepth), rows, depth, b + xi * reprise_winograd_stream(depth, ld), ld,
      c + xi * reprise_winograd_stream(rows, ld), ld, columns, accumulate);
}

void reprise_winograd_products_f32(
  long positions, const float *u, long uRows, long uDepth, long firstRow, long rows, long firstDepth, long depth, const float *b,
  float *c, long columns, long ld, int accumulate) {
  (reprise_wide_kernels_enabled() ? productsWide : productsNarrow)(
    positions, u, uRows, uDepth, firstRow, rows, firstDepth, depth, b, c, columns, ld, accumulate);
}

/// The panel p[t][j] = b[j][t] (t < count, j < columns, rows of p `pitch` apart) of b's rows `ld`
/// apart, 8 x 8 at a time; lanes past `columns` hold zeros, and so do the rows from `count` up to
/// the next multiple of 8 (nothing of b past its `count` columns is read: a pointwise layer's dy
/// ends there).
AVX2 static inline void transposePanel(const float *b, long columns, long count, long ld, float *p, long pitch) {
  for (long j = 0; j < columns; j += 8)
    for (long t = 0; t < count; t += 8) {
      const int whole = t + 8 <= count;
      const __m256i mask = lanesBelow(count - t);
      __m256 r[8];
      for (int i = 0; i < 8; i++)
        r[i] = j + i >= columns ? _mm256_setzero_ps()
               : whole          ? _mm256_loadu_ps(b + (j + i) * ld + t)
                                : _mm256_maskload_ps(b + (j + i) * ld + t, mask);
      transpose8(r);
      for (int i = 0; i < 8; i++) _mm256_storeu_ps(p + (t + i) * pitch + j, r[i]);
    }
}

/// The panel's row pitch: an odd number of cache lines. The kernel reads a column block down the
/// panel's rows and keeps it in the L1 cache for every block of rows of C; rows 384 floats (24
/// lines) apart fell into a quarter of the cache's sets, where the block's 128 lines (64 rows)
/// evicted each other, and a 384-channel weight gradient ran at two thirds of the FMA peak
/// (docs/performance.md#panel-pitch).
static inline long panelPitch(long columns) { return 16 * (((columns + 15) / 16) | 1); }

long reprise_winograd_panel_count(long columns, long count) { return panelPitch(columns) * ((count + 7) / 8 * 8); }

/// `reprise_winograd_transposed_products_f32` with blocks of up to `widest` vectors of columns.
AVX2 __attribute__((always_inline)) static inline void transposedProducts(
  const int widest, long positions, const float *a, long rows, const float *b, long columns, long count, long ld, float *c, long ldc,
  int accumulate, float *panel) {
  const long pitch = panelPitch(columns);
  for (long xi = 0; xi < positions; xi++) {
    transposePanel(b + xi * reprise_winograd_stream(columns, ld), columns, count, ld, panel, pitch);
    const Operand A = {a + xi * reprise_winograd_stream(rows, ld), ld, 1, PANEL_ROWS * ld, 0};
    product(widest, A, rows, count, panel, pitch, c + xi * rows * ldc, ldc, columns, accumulate, 1);
  }
}

AVX2 static void transposedProductsNarrow(
  long positions, const float *a, long rows, const float *b, long columns, long count, long ld, float *c, long ldc, int accumulate,
  float *panel) {
  transposedProducts(2, positions, a, rows, b, columns, count, ld, c, ldc, accumulate, panel);
}

WIDE static void transposedProductsWide(
  long positions, const float *a, long rows, const float *b, long columns, long count, long ld, float *c, long ldc, int accumulate,
  float *panel) {
  transposedProducts(4, positions, a, rows, b, columns, count, ld, c, ldc, accumulate, panel);
}

void reprise_winograd_transposed_products_f32(
  long positions, const float *a, long rows, const float *b, long columns, long count, long ld, float *c, long ldc, int accumulate,
  float *panel) {
  (reprise_wide_kernels_enabled() ? transposedProductsWide : transposedProductsNarrow)(
    positions, a, rows, b, columns, count, ld, c, ldc, accumulate, panel);
}

void reprise_pack_transposed_panel_f32(const float *a, long lda, long rows, long depth, float *panel) {
  for (long i = 0; i < rows; i++)
    for (long d = 0; d < depth; d++) panel[i / PANEL_ROWS * PANEL_ROWS * depth + d * PANEL_ROWS + i % PANEL_ROWS] = a[d * lda + i];
}

/// `reprise_pointwise_products_f32` with blocks of up to `widest` vectors of columns. Within one
/// slab of the depth, 6 rows of C at a time across all the columns: each row of C is then written
/// in runs of `columns` floats rather than of one block of columns, 2 cache lines, at a time. A
/// pointwise layer's input gradient has rows a channel of the batch apart, 256 KB in a DenseNet's
/// first block: written a block of columns at a time, C's rows fell into one set of the caches and
/// each line was evicted before the next block reached it (docs/performance.md#pointwise-input).
AVX2 __attribute__((always_inline)) static inline void pointwiseProducts(
  const int widest, const float *panel, long rows, long depth, const float *b, long ldb, float *c, long ldc, long columns,
  int streaming) {
  if (depth > DEPTH_SLAB) {
    const Operand A = {panel, 1, PANEL_ROWS, PANEL_ROWS * depth, 0};
    product(widest, A, rows, depth, b, ldb, c, ldc, columns, 0, 1);
    return;
  }
  streaming = streaming && ((unsigned long)c & 31) == 0 && ldc % 8 == 0;
  for (long r = 0; r < rows; r += PANEL_ROWS) {
    const Operand A = {panel + r * depth, 1, PANEL_ROWS, PANEL_ROWS * depth, 0};
    const long count = rows - r < PANEL_ROWS ? rows - r : PANEL_ROWS;
    if (streaming) productSlab(widest, A, count, depth, b, ldb, c + r * ldc, ldc, columns, 0, STREAMING);
    else productSlab(widest, A, count, depth, b, ldb, c + r * ldc, ldc, columns, 0, 1);
  }
  if (streaming) _mm_sfence();
}

AVX2 static void pointwiseProductsNarrow(
  const float *panel, long rows, long depth, const float *b, long ldb, float *c, long ldc, long columns, int streaming) {
  pointwiseProducts(2, panel, rows, depth, b, ldb, c, ldc, columns, streaming);
}

WIDE static void pointwiseProductsWide(
  const float *panel, long rows, long depth, const float *b, long ldb, float *c, long ldc, long columns, int streaming) {
  pointwiseProducts(4, panel, rows, depth, b, ldb, c, ldc, columns, streaming);
}

void reprise_pointwise_products_f32(
  const float *panel, long rows, long depth, const float *b, long ldb, float *c, long ldc, long columns, int streaming) {
  (reprise_wide_kernels_enabled() ? pointwiseProductsWide : pointwiseProductsNarrow)(
    panel, rows, depth, b, ldb, c, ldc, columns, streaming);
}

/// `reprise_pointwise_weight_products_f32` with blocks of up to `widest` vectors of columns: the
/// transposed weight gradient's sums, x's rows (the channels) broadcast down the chunk's columns
/// against a panel of dy transposed.
AVX2 __attribute__((always_inline)) static inline void pointwiseWeightProducts(
  const int widest, const float *a, long lda, long rows, const float *b, long ldb, long columns, long count, float *c, long ldc,
  int accumulate, float *panel) {
  const long pitch = panelPitch(columns);
  transposePanel(b, columns, count, ldb, panel, pitch);
  const Operand A = {a, lda, 1, PANEL_ROWS * lda, 0};
  product(widest, A, rows, count, panel, pitch, c, ldc, columns, accumulate, 1);
}

AVX2 static void pointwiseWeightProductsNarrow(
  const float *a, long lda, long rows, const float *b, long ldb, long columns, long count, float *c, long ldc, int accumulate,
  float *panel) {
  pointwiseWeightProducts(2, a, lda, rows, b, ldb, columns, count, c, ldc, accumulate, panel);
}

WIDE static void pointwiseWeightProductsWide(
  const float *a, long lda, long rows, const float *b, long ldb, long columns, long count, float *c, long ldc, int accumulate,
  float *panel) {
  pointwiseWeightProducts(4, a, lda, rows, b, ldb, columns, count, c, ldc, accumulate, panel);
}

void reprise_pointwise_weight_products_f32(
  const float *a, long lda, long rows, const float *b, long ldb, long columns, long count, float *c, long ldc, int accumulate,
  float *panel) {
  (reprise_wide_kernels_enabled() ? pointwiseWeightProductsWide : pointwiseWeightProductsNarrow)(
    a, lda, rows, b, ldb, columns, count, c, ldc, accumulate, panel);
}
