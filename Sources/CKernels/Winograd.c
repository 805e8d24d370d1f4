// The transforms of Winograd's minimal filtering algorithm F(2x2, 3x3) (Lavin and Gray, "Fast
// Algorithms for Convolutional Neural Networks", 2016), for 3x3 stride-1 convolutions padded by 1.
//
// Each 2x2 block of outputs (a tile) is Y = A^T [(G g G^T) ⊙ (B^T d B)] A for its 4x4 input patch
// d, so a convolution becomes three steps: transform every patch (16 values per channel and tile),
// 16 matrix products (one per position ξ of the 4x4 transformed tile, outputs x channels times
// channels x tiles), and transform back. The products do 16 multiply-adds per tile, channel and
// output where the direct convolution does 36: 2.25 times fewer.
//
// The weight gradient is the transpose of the same linear maps: the output gradient's tiles are
// transformed by A (dM = A dY A^T), and the weight gradient is G^T dU G with dU the product of dM
// with the patches' V. The input gradient of a stride-1 convolution padded by 1 is itself such a
// convolution, of the output gradient with each filter rotated by 180° and the roles of channels and
// outputs swapped, so it takes the forward transforms (with the weights `reversed`): cheaper than
// the transposed map B dV B^T, whose 4x4 results overlap and must be added.
//
// The transforms handle 8 tiles at a time, one per vector lane (of one tile row, or of two where a
// row has only 4 tiles): a tile's 4 columns are every other element of two 16-element runs, split
// apart by shuffles. A plane is first copied into a zero-bordered scratch plane, so that no
// transform needs a bounds check.
//
// F(4x4, 3x3), 36 multiply-adds per 4x4 block where F(2x2, 3x3) does 64, has its transforms in
// WinogradF4.h; the plane loops below drive both, chosen by the `tile` argument (2 or 4).
#include "CKernels.h"
#include "Lanes.h"
#include "WinogradF4.h"

#include <immintrin.h>
#include <string.h>

#define AVX2 __attribute__((target("avx2,fma")))

/// The even and odd elements of the 8 floats at a followed by the 8 at b: [a0 a2 a4 a6 b0 b2 b4 b6]
/// and [a1 a3 a5 a7 b1 b3 b5 b7].
AVX2 static inline void deinterleave(const float *pa, const float *pb, __m256 *even, __m256 *odd) {
  const __m256 a = _mm256_loadu_ps(pa), b = _mm256_loadu_ps(pb);
  *even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xD8));
  *odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xDD)), 0xD8));
}

/// The 16 floats e0 o0 e1 o1 ... e7 o7, as two vectors (the first 8 and the last 8).
AVX2 static inline void interleave(__m256 e, __m256 o, __m256 *first, __m256 *second) {
  const __m256 lo = _mm256_unpacklo_ps(e, o), hi = _mm256_unpackhi_ps(e, o);
  *first = _mm256_permute2f128_ps(lo, hi, 0x20);
  *second = _mm256_permute2f128_ps(lo, hi, 0x31);
}

/// Stores the lanes of v that `mask` selects, with a plain store when `full`: AMD's processors take
/// many times longer over a masked store than a plain one.
AVX2 __attribute__((always_inline)) static inline void store(float *x, __m256 v, __m256i mask, int full) {
  if (full) _mm256_storeu_ps(x, v);
  else _mm256_maskstore_ps(x, mask, v);
}

/// The lanes at x that `mask` selects (the others zero), as ``store`` stores them.
AVX2 __attribute__((always_inline)) static inline __m256 load(const float *x, __m256i mask, int full) {
  return full ? _mm256_loadu_ps(x) : _mm256_maskload_ps(x, mask);
}

long reprise_winograd_tiles(long height, long width, long tile) {
  return ((height + tile - 1) / tile) * ((width + tile - 1) / tile);
}

/// The scratch plane's row length: `tile` columns per tile, the border, and room for the last
/// group's whole vectors (16-element runs for F(2x2, 3x3), five quarters past each half for
/// F(4x4, 3x3)).
static inline long scratchWidth(long width, long tile) {
  return tile == 2 ? 2 * ((width + 1) / 2) + 24 : 4 * ((width + 3) / 4) + 40;
}

long reprise_winograd_stream(long rows, long tileCount) {
  // An odd number of cache lines: the transforms write (and the output transform reads) one vector
  // of each of the P matrices in turn, and matrices a multiple of 2^k lines apart fall into 1/2^k of
  // the L1 cache's sets, where 16 or 36 streams over a few sets of 8 ways evict each other's lines
  // before they are full (with 64 channels they fell into 2 sets, with 128 into one;
  // docs/performance.md#cache-sets-and-channel-blocks).
  return 16 * (((rows * tileCount + 15) / 16) | 1);
}

long reprise_winograd_scratch_count(long height, long width, long tile) {
  // Two tile rows past the plane's, read by a last pair of tile rows that has one, and the patches'
  // rows past their tiles'.
  return (tile * ((height + tile - 1) / tile) + 2 * tile + 2) * scratchWidth(width, tile);
}

/// A plane's tiles, taken 8 at a time (a group), one per lane: along a tile row, or, where a row has
/// only 4 tiles (planes 7 or 8 wide for F(2x2, 3x3), 13 to 16 for F(4x4, 3x3)), two tile rows at
/// once, so that no lane idles. Either way a group's tiles are consecutive in the tile numbering, and
/// its lanes are two halves of 4 tiles whose scratch positions lie `half` floats apart (4 tiles along
/// a row, or a tile row down). Planes of 2x2 tiles of F(4x4, 3x3) are taken two `images` at a time,
/// side by side in the scratch plane (WinogradF4.h's mosaics): one group of both images' tiles.
typedef struct {
  long tilesDown, tilesAcross, pitch, count, size, images;
  int paired;
} Tiling;

typedef struct {
  long tile, base, half, count;  // the first tile's number, its scratch position, the halves' distance, tiles
} Group;

static inline Tiling tiling(long height, long width, long tile) {
  Tiling t = {(height + tile - 1) / tile, (width + tile - 1) / tile, scratchWidth(width, tile), 0, tile, 1, 0};
  t.images = tile == 4 && t.tilesDown == 2 && t.tilesAcross == 2 ? 2 : 1;
  t.paired = t.tilesAcross == 4;
  t.count = t.images == 2 ? 1 : t.paired ? (t.tilesDown + 1) / 2 : t.tilesDown * ((t.tilesAcross + 7) / 8);
  return t;
}

int reprise_winograd_pairs_images(long height, long width, long tile) { return tiling(height, width, tile).images == 2; }

static inline Group group(const Tiling *t, long k) {
  if (t->images == 2) return (Group){0, 0, 4 * t->pitch, 8};
  if (t->paired) {
    const long ty = 2 * k;
    return (Group){ty * 4, t->size * ty * t->pitch, t->size * t->pitch, (t->tilesDown - ty) * 4 < 8 ? (t->tilesDown - ty) * 4 : 8};
  }
  const long across = (t->tilesAcross + 7) / 8, ty = k / across, tx = k % across * 8;
  return (Group){
    ty * t->tilesAcross + tx, t->size * (ty * t->pitch + tx), 4 * t->size, t->tilesAcross - tx < 8 ? t->tilesAcross - tx : 8};
}

/// The 9 taps of `count` (at most 8) filters `apart` floats apart, one filter per lane: taps[j] holds
/// tap j of each, and lanes past `count` zeros. Each filter's first 8 taps are one load and an 8 x 8
/// transpose sets them in lanes; a gather (of the taps 9 floats or 9 channels apart) took AMD's
/// processors about as long as the whole transform.
AVX2 static inline void filterTaps(const float *filters, long apart, long count, __m256 taps[9]) {
  float last[8] = {0};
  for (long i = 0; i < 8; i++) {
    taps[i] = i < count ? _mm256_loadu_ps(filters + i * apart) : _mm256_setzero_ps();
    if (i < count) last[i] = filters[i * apart + 8];
  }
  transpose8(taps);
  taps[8] = _mm256_loadu_ps(last);
}

/// G g G^T of the 8 filters in the lanes of g (row by row), stored at u + ξ * plane, the lanes under
/// `mask` (all when `full`).
AVX2 static inline void filterTransform2(__m256 g[3][3], float *u, long plane, __m256i mask, int full) {
  const __m256 half = _mm256_set1_ps(0.5f);
  __m256 t[4][3];
  for (int j = 0; j < 3; j++) {  // G g: rows of G combine the filter's rows
    const __m256 outer = _mm256_add_ps(g[0][j], g[2][j]);
    t[0][j] = g[0][j];
    t[1][j] = _mm256_mul_ps(half, _mm256_add_ps(outer, g[1][j]));
    t[2][j] = _mm256_mul_ps(half, _mm256_sub_ps(outer, g[1][j]));
    t[3][j] = g[2][j];
  }
  for (int k = 0; k < 4; k++) {  // (G g) G^T
    float *row = u + (4 * k) * plane;
    const __m256 outer = _mm256_add_ps(t[k][0], t[k][2]);
    store(row, t[k][0], mask, full);
    store(row + plane, _mm256_mul_ps(half, _mm256_add_ps(outer, t[k][1])), mask, full);
    store(row + 2 * plane, _mm256_mul_ps(half, _mm256_sub_ps(outer, t[k][1])), mask, full);
    store(row + 3 * plane, t[k][2], mask, full);
  }
}

/// ``filterTransform2`` for F(4x4, 3x3): 36 positions.
AVX2 static inline void filterTransform4(__m256 g[3][3], float *u, long plane, __m256i mask, int full) {
  __m256 t[6][3];
  for (int j = 0; j < 3; j++) {  // G g, column by column
    const __m256 column[3] = {g[0][j], g[1][j], g[2][j]};
    __m256 h[6];
    filterColumn(column, h);
    for (int k = 0; k < 6; k++) t[k][j] = h[k];
  }
  for (int k = 0; k < 6; k++) {  // (G g) G^T, row by row
    __m256 h[6];
    filterColumn(t[k], h);
    for (int l = 0; l < 6; l++) store(u + (6 * k + l) * plane, h[l], mask, full);
  }
}

AVX2 void reprise_winograd_weights_f32(
  const float *weights, long outputs, long channels, int reversed, long tile, long first, long count, float *u) {
  // Row i of each u[ξ] is output i's (channel i's when reversed), and its columns are taken 8 at a
  // time, one filter per lane: the filters of consecutive channels lie 9 floats apart, those of
  // consecutive outputs 9 * channels. Reversed, each filter's taps are read last to first. A
  // panel's R rows are transformed into t (its rows R to 7 are zeros, as are those past the last
  // row), and each position's 8 x 8 block is transposed into 8 columns of R rows: consecutive
  // R-float runs, each stored as a whole vector whose lanes past R the next run overwrites, the
  // row's last run masked.
  const long rows = reversed ? channels : outputs, columns = reversed ? outputs : channels, positions = (tile + 2) * (tile + 2);
  const long rowStride = reversed ? 9 : 9 * channels, columnStride = reversed ? 9 * channels : 9;
  const long R = REPRISE_WINOGRAD_PANEL_ROWS, plane = reprise_winograd_weight_plane(rows, columns);
  float t[36][8][8] __attribute__((aligned(32))) = {{{0}}};
  for (long p = first; p < first + count && R * p < rows; p++) {
    if (R * p + R > rows) memset(t, 0, sizeof t);
    for (long c = 0; c < columns; c += 8) {
      const __m256i mask = lanesBelow(columns - c);
      for (long r = 0; r < R && R * p + r < rows; r++) {
        const float *filters = weights + (R * p + r) * rowStride + c * columnStride;
        __m256 taps[9], g[3][3];
        filterTaps(filters, columnStride, columns - c, taps);
        for (int j = 0; j < 9; j++) g[j / 3][j % 3] = taps[reversed ? 8 - j : j];
        if (tile == 2) filterTransform2(g, &t[0][r][0], 64, mask, 1);
        else filterTransform4(g, &t[0][r][0], 64, mask, 1);
      }
      for (long x = 0; x < positions; x++) {
        __m256 v[8];
        for (int r = 0; r < 8; r++) v[r] = _mm256_load_ps(t[x][r]);
        transpose8(v);
        float *panel = u + x * plane + R * p * columns + R * c;
        for (long k = 0; k < 8 && c + k < columns; k++)
          if (c + k == columns - 1) _mm256_maskstore_ps(panel + R * k, lanesBelow(R), v[k]);
          else _mm256_storeu_ps(panel + R * k, v[k]);
      }
    }
  }
}

/// G^T dU G of the 8 channels in the lanes of the sums at du + ξ * plane (the lanes under `mask`),
/// as taps[tap][lane].
AVX2 static inline void filterGradient2(const float *du, long plane, __m256i mask, float taps[9][8]) {
  const __m256 half = _mm256_set1_ps(0.5f);
  __m256 m[4][4], t[3][4];
  for (int x = 0; x < 16; x++) m[x / 4][x % 4] = _mm256_maskload_ps(du + x * plane, mask);
  for (int j = 0; j < 4; j++) {  // G^T m: G's columns combine the rows
    const __m256 inner = _mm256_mul_ps(half, _mm256_add_ps(m[1][j], m[2][j]));
    t[0][j] = _mm256_add_ps(m[0][j], inner);
    t[1][j] = _mm256_mul_ps(half, _mm256_sub_ps(m[1][j], m[2][j]));
    t[2][j] = _mm256_add_ps(inner, m[3][j]);
  }
  for (int i = 0; i < 3; i++) {  // (G^T m) G
    const __m256 inner = _mm256_mul_ps(half, _mm256_add_ps(t[i][1], t[i][2]));
    _mm256_storeu_ps(taps[3 * i], _mm256_add_ps(t[i][0], inner));
    _mm256_storeu_ps(taps[3 * i + 1], _mm256_mul_ps(half, _mm256_sub_ps(t[i][1], t[i][2])));
    _mm256_storeu_ps(taps[3 * i + 2], _mm256_add_ps(inner, t[i][3]));
  }
}

/// ``filterGradient2`` for F(4x4, 3x3), from 36 positions.
AVX2 static inline void filterGradient4(const float *du, long plane, __m256i mask, float taps[9][8]) {
  __m256 s[6][3];  // dU G, row by row
  for (int a = 0; a < 6; a++) {
    __m256 m[6];
    for (int b = 0; b < 6; b++) m[b] = _mm256_maskload_ps(du + (6 * a + b) * plane, mask);
    filterGradientColumn(m, s[a]);
  }
  for (int j = 0; j < 3; j++) {  // G^T (dU G), column by column
    const __m256 m[6] = {s[0][j], s[1][j], s[2][j], s[3][j], s[4][j], s[5][j]};
    __m256 g[3];
    filterGradientColumn(m, g);
    for (int i = 0; i < 3; i++) _mm256_storeu_ps(taps[3 * i + j], g[i]);
  }
}

AVX2 void reprise_winograd_weight_gradient_f32(
  const float *du, long outputs, long channels, long tile, long first, long count, float *weightGradient) {
  const long plane = outputs * channels;
  for (long o = first; o < first + count && o < outputs; o++)
    for (long c = 0; c < channels; c += 8) {  // 8 channels at a time, one per lane
      const __m256i mask = lanesBelow(channels - c);
      float taps[9][8];
      if (tile == 2) filterGradient2(du + o * channels + c, plane, mask, taps);
      else filterGradient4(du + o * channels + c, plane, mask, taps);
      float *g = weightGradient + (o * channels + c) * 9;
      for (long lane = 0; lane < 8 && c + lane < channels; lane++)
        for (int j = 0; j < 9; j++) g[lane * 9 + j] = taps[j][lane];
    }
}

/// Copies the height x width plane at `source` into `scratch` at row `top`, column `left`; the rest
/// of `scratch` is left as it is (zero). With `affine` = {scale, shift}, each value v is copied as
/// max(v · scale + shift, 0), rounded after the product and after the sum and with the comparison
/// written as `0 >= x ? 0 : x`, as Swift's `max(x, 0)` is: the bits of the batch normalisation and
/// ReLU the pre-activation unit applies before its convolution.
AVX2 static inline void placePlane(
  const float *source, long height, long width, const float *affine, int relu, float *scratch, long pitch, long top, long left) {
  if (!affine) {
    for (long y = 0; y < height; y++) copyRow(scratch + (y + top) * pitch + left, source + y * width, width);
    return;
  }
  const __m256 scale = _mm256_set1_ps(affine[0]), shift = _mm256_set1_ps(affine[1]), zero = _mm256_setzero_ps();
  for (long y = 0; y < height; y++) {
    const float *from = source + y * width;
    float *to = scratch + (y + top) * pitch + left;
    for (long x = 0; x < width; x += 8) {
      const __m256i mask = lanesBelow(width - x);
      const int full = width - x >= 8;
      const __m256 scaled = _mm256_mul_ps(load(from + x, mask, full), scale);
      if (!relu) {  // a plane's constant factor alone: x * s, the bits of the product
        store(to + x, scaled, mask, full);
        continue;
      }
      const __m256 v = _mm256_add_ps(scaled, shift);
      store(to + x, _mm256_blendv_ps(v, zero, _mm256_cmp_ps(zero, v, _CMP_GE_OQ)), mask, full);
    }
  }
}

/// One group's transformed input patches (B^T d B): the 4x4 patches whose top left corners are at
/// `row` and `row + half` in the scratch plane, stored to the 16 streams at `out`.
AVX2 __attribute__((always_inline)) static inline void patchTransform(
  const float *corner, long pitch, long half, float *out, long stream) {
  __m256 d[4][4];
  for (int r = 0; r < 4; r++) {
    const float *row = corner + r * pitch;
    deinterleave(row, row + half, &d[r][0], &d[r][1]);
    deinterleave(row + 2, row + 2 + half, &d[r][2], &d[r][3]);
  }
  __m256 t[4][4];  // B^T d
  for (int j = 0; j < 4; j++) {
    t[0][j] = _mm256_sub_ps(d[0][j], d[2][j]);
    t[1][j] = _mm256_add_ps(d[1][j], d[2][j]);
    t[2][j] = _mm256_sub_ps(d[2][j], d[1][j]);
    t[3][j] = _mm256_sub_ps(d[1][j], d[3][j]);
  }
  for (int i = 0; i < 4; i++) {  // (B^T d) B
    float *x = out + (4 * i) * stream;
    _mm256_storeu_ps(x, _mm256_sub_ps(t[i][0], t[i][2]));
    _mm256_storeu_ps(x + stream, _mm256_add_ps(t[i][1], t[i][2]));
    _mm256_storeu_ps(x + 2 * stream, _mm256_sub_ps(t[i][2], t[i][1]));
    _mm256_storeu_ps(x + 3 * stream, _mm256_sub_ps(t[i][1], t[i][3]));
  }
}

/// One group's transformed output-gradient tiles (A g A^T) of the 2x2 tiles at `corner` and
/// `corner + half`.
AVX2 __attribute__((always_inline)) static inline void gradientTransform(
  const float *corner, long pitch, long half, float *out, long stream) {
  __m256 g[2][2];
  for (int r = 0; r < 2; r++) deinterleave(corner + r * pitch, corner + r * pitch + half, &g[r][0], &g[r][1]);
  __m256 h[4][2];  // A g
  for (int j = 0; j < 2; j++) {
    h[0][j] = g[0][j];
    h[1][j] = _mm256_add_ps(g[0][j], g[1][j]);
    h[2][j] = _mm256_sub_ps(g[0][j], g[1][j]);
    h[3][j] = _mm256_sub_ps(_mm256_setzero_ps(), g[1][j]);
  }
  for (int i = 0; i < 4; i++) {  // (A g) A^T
    float *x = out + (4 * i) * stream;
    _mm256_storeu_ps(x, h[i][0]);
    _mm256_storeu_ps(x + stream, _mm256_add_ps(h[i][0], h[i][1]));
    _mm256_storeu_ps(x + 2 * stream, _mm256_sub_ps(h[i][0], h[i][1]));
    _mm256_storeu_ps(x + 3 * stream, _mm256_sub_ps(_mm256_setzero_ps(), h[i][1]));
  }
}

typedef void (*TileTransform)(const float *, long, long, float *, long);

/// Asks for part `k` of `parts` of the cache lines of the `count` floats at `p`.
AVX2 static inline void prefetchPart(const float *p, long count, long k, long parts) {
  const long lines = (count + 15) / 16;
  for (long i = k * lines / parts; i < (k + 1) * lines / parts; i++) _mm_prefetch((const char *)(p + 16 * i), _MM_HINT_T0);
}

/// Every plane (n, r) of `planes` copied into the scratch plane at row and column `border` (with the
/// plane of image n + 1 beside it in a mosaic, or zeros where an odd last image has none), and its
/// tiles transformed group by group by `transform` into the P streams of out[P][rows][tileCount],
/// `stream` floats apart (the rows may be some of a larger matrix's: then its stream). A group
/// stores all 8 lanes, also past a partial group's tiles (AMD's processors take many times longer
/// over a masked store than a plain one, and planes 14 or 28 wide end every tile row in a partial
/// group): the extra lanes land on the next tiles of the plane or the next image, which are written
/// after them, or past the chunk's tiles, where `tileCount` leaves room for them.
AVX2 __attribute__((always_inline)) static inline void transformPlanes(
  const float *planes, long rowStride, long imageStride, long rows, long images, long height, long width, long border,
  const float *scale, const float *shift, const float *planeScale, long planeScaleStride, long tile, float *out, long tileCount,
  long stream, float *scratch, TileTransform transform) {
  const Tiling tiles = tiling(height, width, tile);
  const long step = tiles.images;
  memset(scratch, 0, sizeof(float) * (size_t)reprise_winograd_scratch_count(height, width, tile));
  for (long n = 0; n < images; n += step) {
    if (n + step > images)  // a mosaic without its second plane: zeros there, whose transforms are zeros
      for (long y = 0; y < height; y++) memset(scratch + (y + border) * tiles.pitch + border + mosaicOffset, 0, sizeof(float) * (size_t)width);
    for (long r = 0; r < rows; r++) {
      for (long k = 0; k < step && n + k < images; k++) {
        const float affine[2] = {scale ? scale[r] : planeScale ? planeScale[(n + k) * planeScaleStride + r] : 0, shift ? shift[r] : 0};
        placePlane(
          planes + (n + k) * imageStride + r * rowStride, height, width, scale || planeScale ? affine : NULL, scale != NULL,
          scratch, tiles.pitch, border, border + k * mosaicOffset);
      }
      float *plane = out + r * tileCount + n * tiles.tilesDown * tiles.tilesAcross;
      // The next plane is asked for while this one is transformed: planes are read once, from
      // memory, and the copy into the scratch plane otherwise waits for every line of it.
      const float *next = r + 1 < rows ? planes + n * imageStride + (r + 1) * rowStride : n + step < images ? planes + (n + step) * imageStride : NULL;
      for (long k = 0; k < tiles.count; k++) {
        const Group q = group(&tiles, k);
        if (next) prefetchPart(next, height * width, k, tiles.count);
        transform(scratch + q.base, tiles.pitch, q.half, plane + q.tile, stream);
      }
    }
  }
}

AVX2 void reprise_winograd_input_f32(
  const float *input, long channelStride, long imageStride, long channels, long images, long height, long width,
  const float *scale, const float *shift, const float *planeScale, long planeScaleStride, long tile, float *v, long tileCount,
  long stream, float *scratch) {
  if (tile == 2)
    transformPlanes(
      input, channelStride, imageStride, channels, images, height, width, 1, scale, shift, planeScale, planeScaleStride, 2, v, tileCount,
      stream, scratch, patchTransform);
  else if (reprise_winograd_pairs_images(height, width, 4))
    transformPlanes(
      input, channelStride, imageStride, channels, images, height, width, 1, scale, shift, planeScale, planeScaleStride, 4, v, tileCount,
      stream, scratch, patchTransform4Mosaic);
  else
    transformPlanes(
      input, channelStride, imageStride, channels, images, height, width, 1, scale, shift, planeScale, planeScaleStride, 4, v, tileCount,
      stream, scratch, patchTransform4Rows);
}

AVX2 void reprise_winograd_output_gradient_f32(
  const float *gradient, long channelStride, long imageStride, long outputs, long images, long height, long width, long tile,
  float *m, long tileCount, long stream, float *scratch) {
  if (tile == 2)
    transformPlanes(
      gradient, channelStride, imageStride, outputs, images, height, width, 0, NULL, NULL, NULL, 0, 2, m, tileCount, stream, scratch,
      gradientTransform);
  else if (reprise_winograd_pairs_images(height, width, 4))
    transformPlanes(
      gradient, channelStride, imageStride, outputs, images, height, width, 0, NULL, NULL, NULL, 0, 4, m, tileCount, stream,
      scratch, gradientTransform4Mosaic);
  else
    transformPlanes(
      gradient, channelStride, imageStride, outputs, images, height, width, 0, NULL, NULL, NULL, 0, 4, m, tileCount, stream,
      scratch, gradientTransform4Rows);
}

/// One group's outputs (A^T M A) from the 16 streams at `in`, written as two rows of 2x2 tiles to the
/// scratch plane at `corner` and `corner + half`.
AVX2 __attribute__((always_inline)) static inline void outputTransform(
  const float *in, long stream, __m256i mask, int full, float *corner, long pitch, long half) {
  __m256 u[2][4];  // A^T M
  for (int j = 0; j < 4; j++) {
    const __m256 m0 = load(in + j * stream, mask, full), m1 = load(in + (4 + j) * stream, mask, full);
    const __m256 m2 = load(in + (8 + j) * stream, mask, full), m3 = load(in + (12 + j) * stream, mask, full);
    u[0][j] = _mm256_add_ps(_mm256_add_ps(m0, m1), m2);
    u[1][j] = _mm256_sub_ps(_mm256_sub_ps(m1, m2), m3);
  }
  for (int r = 0; r < 2; r++) {  // (A^T M) A, two output rows of 8 tiles' 2 columns
    const __m256 e = _mm256_add_ps(_mm256_add_ps(u[r][0], u[r][1]), u[r][2]);
    const __m256 odd = _mm256_sub_ps(_mm256_sub_ps(u[r][1], u[r][2]), u[r][3]);
    __m256 first, second;
    interleave(e, odd, &first, &second);
    float *row = corner + r * pitch;
    _mm256_storeu_ps(row, first);
    _mm256_storeu_ps(row + half, second);
  }
}

typedef void (*OutputTransform)(const float *, long, __m256i, int, float *, long, long);

/// Where the output planes go: plane (n, o) at base[n * imageStride + o * channelStride], or with
/// `planes`, at planes[o][n * imageStrides[o]]; with `planeScale`, multiplied by planeScale[n *
/// planeScaleStride + o] on the way, and added to the values there where `adding[o]`.
typedef struct {
  float *base;
  long channelStride, imageStride;
  float *const *planes;
  const long *imageStrides;
  const unsigned char *adding;
  const float *planeScale;
  long planeScaleStride;
} OutputTargets;

AVX2 static inline float *targetPlane(const OutputTargets *t, long o, long n) {
  return t->planes ? t->planes[o] + n * t->imageStrides[o] : t->base + o * t->channelStride + n * t->imageStride;
}

/// `to = from * scale`, or with `adding`, `to + from * scale`: the product rounded, then added, the
/// bits of a product followed by an accumulation.
AVX2 static inline void deliverRow(float *to, const float *from, long width, float factor, int adding) {
  const __m256 scale = _mm256_set1_ps(factor);
  for (long x = 0; x < width; x += 8) {
    const __m256i mask = lanesBelow(width - x);
    const int full = width - x >= 8;
    const __m256 v = _mm256_mul_ps(load(from + x, mask, full), scale);
    store(to + x, adding ? _mm256_add_ps(load(to + x, mask, full), v) : v, mask, full);
  }
}

/// Every plane (n, o) of the P streams m[P][outputs][tileCount] transformed back group by group into
/// the scratch plane, and its height x width part copied to its target (a mosaic's two planes to
/// images n and n + 1, if there is one). Lanes past a partial group read zeros and land outside
/// that part.
AVX2 __attribute__((always_inline)) static inline void outputPlanes(
  const float *m, long outputs, long images, long height, long width, long tile, long tileCount, const OutputTargets *targets,
  float *scratch, OutputTransform transform) {
  const Tiling tiles = tiling(height, width, tile);
  const long stream = reprise_winograd_stream(outputs, tileCount), step = tiles.images;
  const int plain = !targets->planes && !targets->planeScale;
  for (long n = 0; n < images; n += step)
    for (long o = 0; o < outputs; o++) {
      const float *plane = m + o * tileCount + n * tiles.tilesDown * tiles.tilesAcross;
      float *destination = targetPlane(targets, o, n);
      for (long k = 0; k < tiles.count; k++) {
        const Group q = group(&tiles, k);
        prefetchPart(destination, height * width, k, tiles.count);  // its lines are read before they are written
        if (q.count == 8) transform(plane + q.tile, stream, lanesBelow(8), 1, scratch + q.base, tiles.pitch, q.half);
        else transform(plane + q.tile, stream, lanesBelow(q.count), 0, scratch + q.base, tiles.pitch, q.half);
      }
      for (long k = 0; k < step && n + k < images; k++) {
        float *to = targetPlane(targets, o, n + k);
        const float *from = scratch + k * mosaicOffset;
        if (plain) {
          for (long y = 0; y < height; y++) copyRow(to + y * width, from + y * tiles.pitch, width);
          continue;
        }
        const float factor = targets->planeScale ? targets->planeScale[(n + k) * targets->planeScaleStride + o] : 1;
        const int adding = targets->adding && targets->adding[o];
        for (long y = 0; y < height; y++) deliverRow(to + y * width, from + y * tiles.pitch, width, factor, adding);
      }
    }
}

AVX2 static inline void outputTo(
  const float *m, long outputs, long images, long height, long width, long tile, long tileCount, const OutputTargets *targets,
  float *scratch) {
  if (tile == 2)
    outputPlanes(m, outputs, images, height, width, 2, tileCount, targets, scratch, outputTransform);
  else if (reprise_winograd_pairs_images(height, width, 4))
    outputPlanes(m, outputs, images, height, width, 4, tileCount, targets, scratch, outputTransform4Mosaic);
  else
    outputPlanes(m, outputs, images, height, width, 4, tileCount, targets, scratch, outputTransform4Rows);
}

AVX2 void reprise_winograd_output_f32(
  const float *m, long outputs, long images, long height, long width, long tile, long tileCount, float *output,
  long outputChannelStride, long outputImageStride, float *scratch) {
  const OutputTargets targets = {output, outputChannelStride, outputImageStride, NULL, NULL, NULL, NULL, 0};
  outputTo(m, outputs, images, height, width, tile, tileCount, &targets, scratch);
}

AVX2 void reprise_winograd_output_planes_f32(
  const float *m, long outputs, long images, long height, long width, long tile, long tileCount, float *const *planes,
  const long *imageStrides, const unsigned char *adding, const float *planeScale, long planeScaleStride, float *scratch) {
  const OutputTargets targets = {NULL, 0, 0, planes, imageStrides, adding, planeScale, planeScaleStride};
  outputTo(m, outputs, images, height, width, tile, tileCount, &targets, scratch);
}
