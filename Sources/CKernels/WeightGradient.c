// The weight gradient of CKernels.h: register tiles of 3 outputs by 4 (channel, tap) pairs (AVX2)
// or of 4 outputs by 6 pairs (AVX-512).
//
// Each tile streams a block of output rows: per 8 positions it loads 3 vectors of the output
// gradient and 4 of the shifted input and does 12 fused multiply-adds into vector accumulators,
// which go to memory once per block. Where the grid's margins, which hold no outputs, are wide (a
// 7x7 kernel's on 8x8 planes are as many positions again as the outputs), they are skipped. The
// shifted output gradient (taps x outputs rows) that the matrix-product form builds is never
// written. The AVX-512 tile takes 16 positions a step, 10 operands for 24 fused multiply-adds,
// always along the rows without their margins: rows a multiple of 16 wide in whole vectors, others
// in pieces of 8, two pieces to a vector (the AVX-512 tile used to run over the margins, since
// steps along rows of 8 left half of every vector idle; pairing the rows took the 7x7 weight
// gradient on 8x8 planes from 50 to 83 GFLOP/s, docs/performance.md#weight-gradient-rows). It folds
// its 16 lanes to the 8 of the partial sums at the end of a block (so its sums round differently
// from the AVX2 tile's, deterministically).
#include "CKernels.h"
#include "Lanes.h"

#include <immintrin.h>

enum { ROWS = 3, COLUMNS = 4, BLOCK = 512 };

/// One step of 8 positions from t into the accumulators of a `rows` x `columns` tile: plain loads
/// when `whole`, else loads of the `mask`ed lanes only (the end of a range).
__attribute__((target("avx2,fma"), always_inline)) static inline void step(
  int rows, int columns, int whole, __m256i mask, const float *gradient, long gradientChannelStride, const float *grid,
  const long *pairRows, long t, __m256 acc[ROWS][COLUMNS]) {
  __m256 dy[ROWS];
  for (int i = 0; i < rows; i++) {
    const float *p = gradient + i * gradientChannelStride + t;
    dy[i] = whole ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, mask);
  }
  for (int j = 0; j < columns; j++) {
    const float *p = grid + pairRows[j] + t;
    const __m256 x = whole ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, mask);
    for (int i = 0; i < rows; i++) acc[i][j] = _mm256_fmadd_ps(dy[i], x, acc[i][j]);
  }
}

/// `rows` outputs by `columns` pairs (constants after inlining) over the `count` output rows of
/// `width` positions starting at `starts`: whole steps of 8, then a masked one for a row's rest.
__attribute__((target("avx2,fma"), always_inline)) static inline void tile(
  int rows, int columns, const float *gradient, long gradientChannelStride, const float *grid, const long *pairRows,
  const long *starts, long count, long width, float *partial, long pairs) {
  __m256 acc[ROWS][COLUMNS];
  for (int i = 0; i < rows; i++)
    for (int j = 0; j < columns; j++) acc[i][j] = _mm256_setzero_ps();
  const __m256i mask = lanesBelow(width % 8);
  for (long r = 0; r < count; r++) {
    const long end = starts[r] + width;
    long t = starts[r];
    for (; t + 8 <= end; t += 8)
      step(rows, columns, 1, _mm256_setzero_si256(), gradient, gradientChannelStride, grid, pairRows, t, acc);
    if (t < end) step(rows, columns, 0, mask, gradient, gradientChannelStride, grid, pairRows, t, acc);
  }
  for (int i = 0; i < rows; i++)
    for (int j = 0; j < columns; j++) {
      float *p = partial + (i * pairs + j) * 8;
      _mm256_storeu_ps(p, _mm256_add_ps(_mm256_loadu_ps(p), acc[i][j]));
    }
}

/// Where output row `row` (row row % rowsPerImage of image row / rowsPerImage) starts on the grid.
static inline long rowStart(long row, long rowsPerImage, long gridImageStride, long gridRowStride) {
  return row / rowsPerImage * gridImageStride + row % rowsPerImage * gridRowStride;
}

/// The AVX-512 tile's sums go to memory once per WIDE_BLOCK positions: twice the AVX2 tile's
/// block, since its faster steps make the fold and store at the end of a block weigh twice as much
/// (docs/performance.md#kernel-rate).
enum { WIDE_ROWS = 4, WIDE_COLUMNS = 6, WIDE_BLOCK = 1024 };

#define WIDE __attribute__((target("avx2,fma,avx512f,avx512vl,avx512dq")))

/// One step of 16 positions from t, as `step` takes 8.
WIDE __attribute__((always_inline)) static inline void wideStep(
  int rows, int columns, const float *gradient, long gradientChannelStride, const float *grid, const long *pairRows, long t,
  __m512 acc[WIDE_ROWS][WIDE_COLUMNS]) {
  __m512 dy[WIDE_ROWS];
  for (int i = 0; i < rows; i++) dy[i] = _mm512_loadu_ps(gradient + i * gradientChannelStride + t);
  for (int j = 0; j < columns; j++) {
    const __m512 x = _mm512_loadu_ps(grid + pairRows[j] + t);
    for (int i = 0; i < rows; i++) acc[i][j] = _mm512_fmadd_ps(dy[i], x, acc[i][j]);
  }
}

/// The 8 positions at p + t0 under mask0 in lanes 0-7 and those at p + t1 under mask1 in lanes 8-15
/// (masked-off lanes zero and unread); plain loads when both masks are full.
WIDE __attribute__((always_inline)) static inline __m512 pairedLoad(
  const float *p, long t0, long t1, __mmask8 mask0, __mmask8 mask1) {
  const int full = mask0 == 0xFF && mask1 == 0xFF;
  const __m256 low = full ? _mm256_loadu_ps(p + t0) : _mm256_maskz_loadu_ps(mask0, p + t0);
  const __m256 high = full ? _mm256_loadu_ps(p + t1) : _mm256_maskz_loadu_ps(mask1, p + t1);
  return _mm512_insertf32x8(_mm512_castps256_ps512(low), high, 1);
}

/// One step of 16 positions from two rows of at most 8 (lanes 0-7 from t0, 8-15 from t1, the lanes
/// of each under its mask; an empty mask reads nothing): rows of 8 outputs (the last stage of
/// CIFAR networks) fill whole vectors instead of half of each.
WIDE __attribute__((always_inline)) static inline void pairedStep(
  int rows, int columns, __mmask8 mask0, __mmask8 mask1, const float *gradient, long gradientChannelStride, const float *grid,
  const long *pairRows, long t0, long t1, __m512 acc[WIDE_ROWS][WIDE_COLUMNS]) {
  __m512 dy[WIDE_ROWS];
  for (int i = 0; i < rows; i++) dy[i] = pairedLoad(gradient + i * gradientChannelStride, t0, t1, mask0, mask1);
  for (int j = 0; j < columns; j++) {
    const __m512 x = pairedLoad(grid + pairRows[j], t0, t1, mask0, mask1);
    for (int i = 0; i < rows; i++) acc[i][j] = _mm512_fmadd_ps(dy[i], x, acc[i][j]);
  }
}

/// `rows` outputs by `columns` pairs over `count` steps: with `paired`, step k takes the positions
/// from t0[k] under mask0[k] and from t1[k] under mask1[k] (pieces of output rows, see
/// `wideRowsWeightGradient`), else the 16 positions from t0[k]. One flat loop, so that the sums
/// stay in registers.
WIDE __attribute__((always_inline)) static inline void wideRowTile(
  int rows, int columns, int paired, const float *gradient, long gradientChannelStride, const float *grid, const long *pairRows,
  const long *t0, const long *t1, const __mmask8 *mask0, const __mmask8 *mask1, long count, float *partial, long pairs) {
  __m512 acc[WIDE_ROWS][WIDE_COLUMNS];
  for (int i = 0; i < rows; i++)
    for (int j = 0; j < columns; j++) acc[i][j] = _mm512_setzero_ps();
  // Steps of two whole pieces (rows of 8) with constant masks, which the loads then need no
  // register for; the others with theirs.
  long k = 0;
  if (paired)
    for (; k < count && (mask0[k] & mask1[k]) == 0xFF; k++)
      pairedStep(rows, columns, 0xFF, 0xFF, gradient, gradientChannelStride, grid, pairRows, t0[k], t1[k], acc);
  for (; k < count; k++) {
    if (paired) pairedStep(rows, columns, mask0[k], mask1[k], gradient, gradientChannelStride, grid, pairRows, t0[k], t1[k], acc);
    else wideStep(rows, columns, gradient, gradientChannelStride, grid, pairRows, t0[k], acc);
  }
  for (int i = 0; i < rows; i++)
    for (int j = 0; j < columns; j++) {
      float *p = partial + (i * pairs + j) * 8;
      const __m256 folded = _mm256_add_ps(_mm512_castps512_ps256(acc[i][j]), _mm512_extractf32x8_ps(acc[i][j], 1));
      _mm256_storeu_ps(p, _mm256_add_ps(_mm256_loadu_ps(p), folded));
    }
}

#define WIDE_ROW_TILE(r, c, paired) wideRowTile(r, c, paired, gradient + o * gradientChannelStride, gradientChannelStride, grid, \
  rows + p, t0, t1, mask0, mask1, steps, partial + (o * pairs + p) * 8, pairs)

/// All tiles of outputs by pairs over one block of steps.
#define WIDE_ROW_TILES(paired) \
  for (long o = 0; o < outputs; o += WIDE_ROWS) { \
    const long r = outputs - o < WIDE_ROWS ? outputs - o : WIDE_ROWS; \
    long p = 0; \
    for (; p + WIDE_COLUMNS <= pairs; p += WIDE_COLUMNS) { \
      if (r == 4) WIDE_ROW_TILE(4, WIDE_COLUMNS, paired); \
      else if (r == 3) WIDE_ROW_TILE(3, WIDE_COLUMNS, paired); \
      else if (r == 2) WIDE_ROW_TILE(2, WIDE_COLUMNS, paired); \
      else WIDE_ROW_TILE(1, WIDE_COLUMNS, paired); \
    } \
    for (; p < pairs; p++) { \
      if (r == 4) WIDE_ROW_TILE(4, 1, paired); \
      else if (r == 3) WIDE_ROW_TILE(3, 1, paired); \
      else if (r == 2) WIDE_ROW_TILE(2, 1, paired); \
      else WIDE_ROW_TILE(1, 1, paired); \
    } \
  }

/// The output rows [firstRow, firstRow + rowCount) without the margins between them, in blocks of
/// up to WIDE_BLOCK positions: rows a multiple of 16 wide in whole steps of 16; others cut into
/// pieces of 8 positions (the last one masked), two pieces to a step, so that rows of 8 (the last
/// stage of CIFAR networks) fill whole vectors where a step along one row would leave half of
/// every vector idle.
WIDE static void wideRowsWeightGradient(
  const float *gradient, long gradientChannelStride, long outputs, const float *grid, const long *rows, long pairs,
  long firstRow, long rowCount, long rowsPerImage, long width, long gridImageStride, long gridRowStride, float *partial) {
  enum { STEPS = WIDE_BLOCK / 16 };
  long t0[STEPS], t1[STEPS];
  __mmask8 mask0[STEPS], mask1[STEPS];
  const int paired = width % 16 != 0;
  const long piece = paired ? 8 : 16;
  long row = firstRow, offset = 0;  // the next piece: `offset` positions into `row`
  while (row < firstRow + rowCount) {
    long steps = 0;
    for (; steps < STEPS && row < firstRow + rowCount; steps++) {
      for (int half = 0; half < 1 + paired; half++) {
        long *t = half ? t1 : t0;
        __mmask8 *mask = half ? mask1 : mask0;
        if (row == firstRow + rowCount) {  // an empty half: it reads nothing
          t[steps] = t0[steps];
          mask[steps] = 0;
          continue;
        }
        const long left = width - offset < piece ? width - offset : piece;
        t[steps] = rowStart(row, rowsPerImage, gridImageStride, gridRowStride) + offset;
        mask[steps] = (__mmask8)((1u << (left < 8 ? left : 8)) - 1);
        offset += left;
        if (offset == width) {
          row++;
          offset = 0;
        }
      }
    }
    if (paired) {
      WIDE_ROW_TILES(1)
    } else {
      WIDE_ROW_TILES(0)
    }
  }
}

#define TILE(r, c) tile(r, c, gradient + o * gradientChannelStride, gradientChannelStride, grid, rows + p, starts, count, \
  width, partial + (o * pairs + p) * 8, pairs)

__attribute__((target("avx2,fma"))) void reprise_shifted_weight_gradient_f32(
  const float *gradient, long gradientChannelStride, long outputs, const float *grid, const long *rows, long pairs,
  long firstRow, long rowCount, long rowsPerImage, long rowWidth, long gridImageStride, long gridRowStride, float *partial) {
  if (rowCount <= 0) return;
  if (reprise_wide_kernels_enabled())
    return wideRowsWeightGradient(
      gradient, gradientChannelStride, outputs, grid, rows, pairs, firstRow, rowCount, rowsPerImage, rowWidth, gridImageStride,
      gridRowStride, partial);
  // The positions from the first row's start to the last row's end.
  const long first = rowStart(firstRow, rowsPerImage, gridImageStride, gridRowStride);
  const long end = rowStart(firstRow + rowCount - 1, rowsPerImage, gridImageStride, gridRowStride) + rowWidth;
  // Blocks of whole rows, about BLOCK positions each, whose starts are worked out once per block.
  // Where the margins are narrow, a block is instead one run of BLOCK positions, margins included
  // (whose output gradient is zero): a row costs about half a step more than its steps, and the
  // runs are taken when their steps cost no more than that (a 3x3 kernel's margins on 32x32
  // planes, or the phases of a stride-2 one, one position a row; not a 7x7 kernel's).
  enum { MAX_ROWS = 64 };
  const int runs = 2 * gridImageStride <= 8 * rowsPerImage * (2 * ((rowWidth + 7) / 8) + 1);
  const long perBlock = runs || rowWidth >= BLOCK ? 1 : BLOCK / rowWidth < MAX_ROWS ? BLOCK / rowWidth : MAX_ROWS;
  const long blocks = runs ? (end - first + BLOCK - 1) / BLOCK : (rowCount + perBlock - 1) / perBlock;
  long starts[MAX_ROWS];
  for (long b = 0; b < blocks; b++) {
    const long r0 = firstRow + b * perBlock;
    const long count = runs ? 1 : firstRow + rowCount - r0 < perBlock ? firstRow + rowCount - r0 : perBlock;
    const long width = runs ? (end - first - b * BLOCK < BLOCK ? end - first - b * BLOCK : BLOCK) : rowWidth;
    if (runs) starts[0] = first + b * BLOCK;
    else
      for (long r = 0; r < count; r++) starts[r] = rowStart(r0 + r, rowsPerImage, gridImageStride, gridRowStride);
    for (long o = 0; o < outputs; o += ROWS) {
      const long r = outputs - o < ROWS ? outputs - o : ROWS;
      long p = 0;
      for (; p + COLUMNS <= pairs; p += COLUMNS) {
        if (r == 3) TILE(3, 4);
        else if (r == 2) TILE(2, 4);
        else TILE(1, 4);
      }
      for (; p < pairs; p++) {
        if (r == 3) TILE(3, 1);
        else if (r == 2) TILE(2, 1);
        else TILE(1, 1);
      }
    }
  }
}
